"""Cursors never skip a row that commits late: ids taken in one order and committed in another, on the
two databases where that happens (PostgreSQL sequences, MariaDB auto-increment). SQLite has one writer,
whose ids commit in order."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from masd.store import apps as app_store
from masd.store import events as ev
from masd.store import replies as reply_store
from masd.store import settled
from masd.store.db import Database
from masd.store.tables import app_events, deliveries

pytestmark = pytest.mark.parametrize("store_url", ["postgresql", "mariadb"], indirect=True)
NOW = 1_780_000_000.0


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url, group_commit_ms=1)
    database.upgrade()
    yield database
    database.dispose()


def make_app(db: Database, name: str = "oa") -> int:
    app_id, _ = db.write_sync(lambda c: app_store.create_app(c, name, now=NOW))
    return app_id


def reply(conn: sa.Connection, app_id: int, text: str) -> int:
    return reply_store.insert_reply(
        conn,
        channel="sim",
        sender="13800000001",
        destination="106571234",
        text=text,
        now=time.time(),
        app_id=app_id,
        matched_by="extension",
        extension="",
        delivery_id=None,
    )


@contextlib.contextmanager
def open_transaction(db: Database) -> Iterator[tuple[sa.Connection, sa.RootTransaction]]:
    """A transaction left open by the test; rolled back at the end if the test did not finish it (a
    transaction left open would keep the test's database from being dropped)."""
    conn = db.write_engine.connect()
    tx = conn.begin()
    try:
        yield conn, tx
    finally:
        if tx.is_active:
            tx.rollback()
        conn.close()


def event_texts(
    db: Database, app_id: int, after: int = 0, settle: float = settled.SETTLE_SECONDS
) -> list[str]:
    return [
        str(e["text"]) for e in db.read_sync(lambda c: ev.read_events(c, app_id, after=after, settle=settle))
    ]


def reply_texts(
    db: Database, app_id: int, after: int = 0, settle: float = settled.SETTLE_SECONDS
) -> list[str]:
    found = db.read_sync(lambda c: reply_store.list_replies(c, app_id=app_id, after=after, settle=settle))
    return [str(r["text"]) for r in found]


def test_an_event_above_one_still_in_flight_waits_until_that_one_commits(db: Database) -> None:
    app = make_app(db)
    with open_transaction(db) as (early, tx):
        reply(early, app, "first")  # takes the lower ids, commits last
        with db.write_engine.begin() as late:
            reply(late, app, "second")
        assert event_texts(db, app) == []
        assert reply_texts(db, app) == []
        tx.commit()
    assert event_texts(db, app) == ["first", "second"]
    assert reply_texts(db, app) == ["first", "second"]


def test_rows_below_the_first_hole_are_handed_on_at_once(db: Database) -> None:
    app = make_app(db)
    with db.write_engine.begin() as c:
        reply(c, app, "before")
    with open_transaction(db) as (early, _):
        reply(early, app, "in flight")
        with db.write_engine.begin() as c:
            reply(c, app, "after")
        assert event_texts(db, app) == ["before"]
        assert reply_texts(db, app) == ["before"]


def test_a_rolled_back_id_is_passed_once_the_rows_above_it_are_older_than_settle(db: Database) -> None:
    app = make_app(db)
    with open_transaction(db) as (gone, _):
        reply(gone, app, "rolled back")
    with db.write_engine.begin() as c:
        reply(c, app, "kept")
    assert event_texts(db, app) == []  # it could still be in flight, as far as a reader can tell
    time.sleep(0.3)
    assert event_texts(db, app, settle=0.2) == ["kept"]
    assert reply_texts(db, app, settle=0.2) == ["kept"]


def test_holes_below_the_cursor_do_not_hold_a_reader_back(db: Database) -> None:
    app = make_app(db)
    with open_transaction(db) as (gone, _):
        reply(gone, app, "rolled back")
    with db.write_engine.begin() as c:
        first = reply(c, app, "one")
    (e,) = db.read_sync(lambda c: ev.read_events(c, app, after=0, settle=0.0))
    with db.write_engine.begin() as c:
        reply(c, app, "two")
    assert event_texts(db, app, after=int(e["event"])) == ["two"]
    assert reply_texts(db, app, after=first) == ["two"]


def test_a_reader_following_concurrent_writers_that_commit_out_of_order_sees_every_event(
    db: Database,
) -> None:
    app = make_app(db)
    writers, each = 4, 40

    def write(w: int) -> None:
        rnd = random.Random(w)
        for i in range(each):
            with db.write_engine.begin() as c:
                reply(c, app, f"{w}-{i}")
                time.sleep(rnd.uniform(0, 0.01))  # commit a little later, so ids commit out of order

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    seen: list[str] = []
    cursor = 0
    deadline = time.monotonic() + 60
    while len(seen) < writers * each and time.monotonic() < deadline:
        batch = db.read_sync(lambda c: ev.read_events(c, app, after=cursor, limit=7))
        for e in batch:
            seen.append(str(e["text"]))
            cursor = int(e["event"])
    for t in threads:
        t.join()
    assert sorted(seen) == sorted(f"{w}-{i}" for w in range(writers) for i in range(each))


def test_receipt_events_written_together_take_consecutive_ids(db: Database) -> None:
    """INSERT … SELECT on MariaDB leaves unused auto-increment ids behind (holes every reader would
    wait out); receipt events are written as VALUES there instead."""
    from .test_events import notified
    from .test_store import insert

    app = make_app(db)
    insert(db, *[notified(f"138000000{i:02d}", app_id=app) for i in range(15)])
    delivery_ids = db.read_sync(lambda c: [r[0] for r in c.execute(sa.select(deliveries.c.id)).all()])
    for part in (delivery_ids[:5], delivery_ids[5:11], delivery_ids[11:]):
        assert db.write_sync(lambda c, part=part: ev.record_final(c, part, now=time.time())) == len(part)
    ids = db.read_sync(
        lambda c: [r[0] for r in c.execute(sa.select(app_events.c.id).order_by(app_events.c.id))]
    )
    assert ids == list(range(ids[0], ids[0] + 15))
