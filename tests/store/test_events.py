"""The app event outbox, reply storage and app usage, specified once for SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from masd.core.states import DeliveryState
from masd.store import apps as app_store
from masd.store import events as ev
from masd.store import messages as msg_store
from masd.store import queue as q
from masd.store import replies as reply_store
from masd.store.db import Database

from .test_store import NOW, claim, insert, new_message, receipt, submit_ok


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url, group_commit_ms=1)
    database.upgrade()
    yield database
    database.dispose()


def make_app(db: Database, name: str = "oa", **settings: object) -> int:
    app_id, _ = db.write_sync(lambda c: app_store.create_app(c, name, now=NOW, **settings))
    return app_id


def notified(*recipients: str, app_id: int, notify: bool = True, **kw: object) -> msg_store.NewMessage:
    return dataclasses.replace(new_message(*recipients, app_id=app_id, **kw), notify=notify)  # type: ignore[arg-type]


def events(db: Database, app_id: int, after: int = 0) -> list[dict[str, object]]:
    return db.read_sync(lambda c: ev.read_events(c, app_id, after=after))


def test_a_delivered_receipt_writes_one_event_for_a_message_that_asked(db: Database) -> None:
    app = make_app(db)
    insert(db, notified("13800000001", app_id=app, client_ref="r1"))
    submit_ok(db, claim(db))
    did = 1  # the only delivery
    receipt(db, f"c{did}", "delivered")
    (e,) = events(db, app)
    assert e["type"] == "receipt" and e["state"] == "delivered" and e["client_ref"] == "r1"
    assert e["recipient"] == "13800000001" and e["delivery_id"] == did
    receipt(db, f"c{did}", "delivered")  # a repeated receipt changes nothing and tells nothing again
    assert len(events(db, app)) == 1


def test_messages_that_did_not_ask_write_no_events(db: Database) -> None:
    app = make_app(db)
    insert(db, notified("13800000001", app_id=app, notify=False))
    submit_ok(db, claim(db))
    receipt(db, "c1", "delivered")
    assert events(db, app) == []


def test_a_failed_receipt_carries_the_carriers_error_code(db: Database) -> None:
    app = make_app(db)
    insert(db, notified("13800000001", app_id=app))
    submit_ok(db, claim(db))
    receipt(db, "c1", "undelivered", 0x0B)
    (e,) = events(db, app)
    assert e["state"] == "undelivered" and e["error_code"] == 0x0B


def test_a_refused_submit_writes_an_event_with_the_status_code(db: Database) -> None:
    app = make_app(db)
    insert(db, notified("13800000001", app_id=app))
    (cl,) = claim(db)
    result = q.SubmitResult(cl.delivery_id, DeliveryState.REJECTED, "ESME_RINVDSTADR (0x0B)", error_code=0x0B)
    db.write_sync(lambda c: q.record_results(c, channel="sim", results=[result], now=NOW + 1))
    (e,) = events(db, app)
    assert (e["state"], e["error_code"], e["reason"]) == ("rejected", 0x0B, "ESME_RINVDSTADR (0x0B)")


def test_cancel_and_the_validity_sweep_write_events(db: Database) -> None:
    app = make_app(db)
    (m1,) = insert(db, notified("13800000001", app_id=app))
    insert(db, notified("13800000002", app_id=app, expires_at=NOW + 10))
    db.write_sync(lambda c: msg_store.cancel(c, message_id=m1, now=NOW))
    swept = db.write_sync(lambda c: q.sweep_overdue(c, now=NOW + 20, receipt_timeout=3600))
    assert swept["expired_in_queue"] == 1
    assert [(e["recipient"], e["state"]) for e in events(db, app)] == [
        ("13800000001", "cancelled"),
        ("13800000002", "expired"),
    ]


def test_events_are_per_app_and_read_after_a_cursor(db: Database) -> None:
    a, b = make_app(db, "a"), make_app(db, "b")
    insert(
        db,
        notified("13800000001", app_id=a),
        notified("13800000002", app_id=b),
        notified("13800000003", app_id=a),
    )
    db.write_sync(lambda c: msg_store.cancel(c, delivery_ids=[1, 2, 3], now=NOW))
    first, second = events(db, a)
    assert [e["recipient"] for e in events(db, b)] == ["13800000002"]
    assert events(db, a, after=int(first["event"])) == [second]  # type: ignore[call-overload]


def test_a_cursor_only_moves_forward(db: Database) -> None:
    app = make_app(db)
    assert db.read_sync(lambda c: ev.get_cursor(c, app, "socket")) == 0
    db.write_sync(lambda c: ev.set_cursor(c, app, "socket", 5, now=NOW))
    db.write_sync(lambda c: ev.set_cursor(c, app, "socket", 3, now=NOW))
    db.write_sync(lambda c: ev.set_cursor(c, app, "webhook", 1, now=NOW))
    assert db.read_sync(lambda c: ev.get_cursor(c, app, "socket")) == 5
    assert db.read_sync(lambda c: ev.get_cursor(c, app, "webhook")) == 1


def test_a_routed_reply_is_stored_with_its_owner_and_told_to_it(db: Database) -> None:
    app = make_app(db, extension="42")
    rid = db.write_sync(
        lambda c: reply_store.insert_reply(
            c,
            channel="sim",
            sender="13800000001",
            destination="10657000142137",
            text="1 参加",
            now=NOW,
            app_id=app,
            matched_by="extension",
            extension="137",
            delivery_id=None,
        )
    )
    (e,) = events(db, app)
    assert (e["type"], e["reply_id"], e["extension"], e["text"]) == ("reply", rid, "137", "1 参加")
    listed = db.read_sync(lambda c: reply_store.list_replies(c, app_id=app))
    assert [r["id"] for r in listed] == [rid]


def test_unmatched_replies_are_listed_and_can_be_assigned_once(db: Database) -> None:
    app = make_app(db)

    def store(c: object, text: str) -> int:
        return reply_store.insert_reply(
            c,  # type: ignore[arg-type]
            channel="sim",
            sender="13800000009",
            destination="106570001",
            text=text,
            now=NOW,
            app_id=None,
            matched_by="none",
            extension="",
            delivery_id=None,
        )

    r1 = db.write_sync(lambda c: store(c, "谁？"))
    r2 = db.write_sync(lambda c: store(c, "hello"))
    assert [r["id"] for r in db.read_sync(lambda c: reply_store.list_replies(c, unmatched=True))] == [r1, r2]
    assert [
        r["id"] for r in db.read_sync(lambda c: reply_store.list_replies(c, unmatched=True, after=r1))
    ] == [r2]
    assert db.write_sync(lambda c: reply_store.reroute(c, r1, app_id=app, now=NOW))
    assert not db.write_sync(lambda c: reply_store.reroute(c, r1, app_id=app, now=NOW))
    assert [e["reply_id"] for e in events(db, app)] == [r1]
    assert [r["id"] for r in db.read_sync(lambda c: reply_store.list_replies(c, unmatched=True))] == [r2]


def test_the_latest_delivery_to_a_sender_is_found_within_the_window(db: Database) -> None:
    a, b = make_app(db, "a"), make_app(db, "b")
    insert(db, new_message("13800000001", app_id=a))
    insert(db, new_message("13800000001", app_id=b))
    insert(db, new_message("13800000002", app_id=a))
    assert db.read_sync(lambda c: reply_store.latest_delivery(c, "13800000001", since=NOW - 1)) == (2, b)
    assert db.read_sync(lambda c: reply_store.latest_delivery(c, "13800000001", since=NOW - 1, app_id=a)) == (
        1,
        a,
    )
    assert db.read_sync(lambda c: reply_store.latest_delivery(c, "13800000001", since=NOW + 1)) is None


def test_overlapping_extensions_are_refused(db: Database) -> None:
    make_app(db, "a", extension="42")
    with pytest.raises(ValueError, match="overlaps app 'a'"):
        make_app(db, "b", extension="421")
    with pytest.raises(ValueError, match="overlaps"):
        make_app(db, "c", extension="4")
    make_app(db, "d", extension="43")
