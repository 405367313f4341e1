"""Which messages came from which OA row (masd.store.mas_messages), specified once for SQLite,
PostgreSQL and MariaDB: noting is idempotent, receipts find their code and SM_ID, replies find the code
that sent with their SRC_ID, and ``masd dbpoll status`` counts what is left to write."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from masd.store import apps as app_store
from masd.store import events as event_store
from masd.store import mas_messages
from masd.store import messages as msg_store
from masd.store.db import Database

from .test_store import NOW, new_message


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url, group_commit_ms=1)
    database.upgrade()
    yield database
    database.dispose()


def messages(db: Database, count: int) -> list[int]:
    batch = [new_message(f"1380013800{i}") for i in range(count)]
    return [ins.message_id for ins in db.write_sync(lambda c: msg_store.insert_messages(c, batch, now=NOW))]


def test_a_noted_message_is_found_with_its_code_and_sm_id(db: Database) -> None:
    a, b, c = messages(db, 3)
    db.write_sync(lambda conn: mas_messages.note(conn, "oa1", {a: (7, "12"), b: (0, "")}, now=NOW))
    found = db.read_sync(lambda conn: mas_messages.origins(conn, [a, b, c]))
    assert found == {a: ("oa1", 7), b: ("oa1", 0)}
    assert db.read_sync(lambda conn: mas_messages.origins(conn, [])) == {}


def test_noting_a_message_again_keeps_what_was_noted_first(db: Database) -> None:
    (a,) = messages(db, 1)
    db.write_sync(lambda conn: mas_messages.note(conn, "oa1", {a: (7, "12")}, now=NOW))
    db.write_sync(lambda conn: mas_messages.note(conn, "oa2", {a: (8, "13")}, now=NOW + 1))
    assert db.read_sync(lambda conn: mas_messages.origins(conn, [a])) == {a: ("oa1", 7)}
    assert db.read_sync(lambda conn: mas_messages.count(conn, "oa1")) == 1
    assert db.read_sync(lambda conn: mas_messages.count(conn, "oa2")) == 0


def test_a_src_id_belongs_to_the_code_that_sent_with_it(db: Database) -> None:
    a, b = messages(db, 2)
    db.write_sync(lambda conn: mas_messages.note(conn, "oa1", {a: (1, "12")}, now=NOW))
    db.write_sync(lambda conn: mas_messages.note(conn, "oa2", {b: (2, "34")}, now=NOW))
    assert db.read_sync(lambda conn: mas_messages.sent_with(conn, "oa1", ["12", "34", "56"])) == {"12"}
    assert db.read_sync(lambda conn: mas_messages.sent_with(conn, "oa2", ["12", "34"])) == {"34"}


def test_events_pending_are_those_past_the_code_s_cursor(db: Database) -> None:
    app_id, _ = db.write_sync(lambda c: app_store.create_app(c, "oa", now=NOW))
    for reply_id in (1, 2, 3):
        db.write_sync(lambda c, r=reply_id: event_store.record_reply(c, app_id=app_id, reply_id=r, now=NOW))
    assert db.read_sync(lambda c: mas_messages.events_pending(c, app_id, "oa1")) == 3
    first = db.read_sync(lambda c: event_store.latest_event_id(c, app_id)) - 2
    db.write_sync(lambda c: event_store.set_cursor(c, app_id, mas_messages.consumer("oa1"), first, now=NOW))
    assert db.read_sync(lambda c: mas_messages.events_pending(c, app_id, "oa1")) == 2
    assert db.read_sync(lambda c: mas_messages.events_pending(c, app_id, "oa2")) == 3
