"""Resends after a failed receipt and channel failover in the store, on SQLite, PostgreSQL and MariaDB:
a receipt with resends left puts the delivery back in the queue with a history row and no app event;
the last one ends it and the app is told; failover moves queued deliveries to the backup and back, never
claimed ones; an app's retry keeps the message's own validity period."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

from masd.core.states import DeliveryState
from masd.store import messages as msg_store
from masd.store import queue as q
from masd.store import receipts as rc
from masd.store import resends as rs
from masd.store.db import MIGRATIONS, Database
from masd.store.tables import app_events, deliveries, segments
from tests.store.test_store import NOW, new_message

POLICY = rs.ResendPolicy(frozenset({"undelivered", "expired"}), delay=60.0, via="alt")


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url, group_commit_ms=1)
    database.upgrade()
    yield database
    database.dispose()


def send(
    db: Database, *recipients: str, resends: int = 1, segments_each: int = 1, channel: str = "sim"
) -> int:
    """A message that asks for app events, to app 1, with ``resends`` allowed per delivery."""
    msg = new_message(*recipients, app_id=1, segments_each=segments_each)
    msg = dataclasses.replace(
        msg,
        notify=True,
        deliveries=[dataclasses.replace(dl, max_resends=resends, channel=channel) for dl in msg.deliveries],
    )
    (ins,) = db.write_sync(lambda c: msg_store.insert_messages(c, [msg], now=NOW))
    return ins.message_id


def claim(db: Database, channel: str = "sim", now: float = NOW, limit: int = 100) -> list[q.Claim]:
    return db.write_sync(lambda c: q.claim(c, channel=channel, node="n1", now=now, lease=60, limit=limit))


def submitted(db: Database, cl: q.Claim, carrier_id: str, channel: str = "sim", total: int = 1) -> None:
    segs = [q.SegmentRecord(i + 1, total, f"{carrier_id}-{i + 1}") for i in range(total)]
    result = q.SubmitResult(cl.delivery_id, DeliveryState.SUBMITTED, segments=segs)
    db.write_sync(lambda c: q.record_results(c, channel=channel, results=[result], now=NOW + 1))


def receipt(
    db: Database,
    carrier_id: str,
    status: str,
    *,
    channel: str = "sim",
    policy: rs.ResendPolicy | None = POLICY,
    at: float = NOW + 2,
) -> rc.ReceiptOutcome:
    item = rc.ReceiptItem(channel, rc.IncomingReceipt(carrier_id, status, 13), at, resend=policy)
    (out,) = db.write_sync(lambda c: rc.store_receipt_items(c, [item]))
    return out


def row(db: Database, delivery_id: int) -> dict[str, object]:
    r = db.read_sync(lambda c: c.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).first())
    assert r is not None
    return dict(r._mapping)


def events(db: Database) -> list[int]:
    return list(db.read_sync(lambda c: c.execute(sa.select(app_events.c.delivery_id)).scalars().all()))


def history(db: Database, delivery_id: int) -> list[dict[str, object]]:
    return db.read_sync(lambda c: rs.history_for(c, [delivery_id])).get(delivery_id, [])


def segment_states(db: Database, delivery_id: int) -> list[str]:
    return list(
        db.read_sync(
            lambda c: (
                c.execute(
                    sa.select(segments.c.state)
                    .where(segments.c.delivery_id == delivery_id)
                    .order_by(segments.c.id)
                )
                .scalars()
                .all()
            )
        )
    )


# ----- resends -------------------------------------------------------------------------------------------


def test_an_undelivered_receipt_with_a_resend_left_queues_the_delivery_again_through_the_fallback(
    db: Database,
) -> None:
    send(db, "13800000001")
    (cl,) = claim(db)
    submitted(db, cl, "a")
    out = receipt(db, "a-1", "undelivered")
    assert out.delivery_state is None and out.resent_to == "alt"
    r = row(db, cl.delivery_id)
    assert r["state"] == "queued" and r["channel"] == "alt" and r["resends"] == 1
    assert r["not_before"] == pytest.approx(NOW + 2 + 60)
    assert r["attempts"] == 0 and r["seg_delivered"] == 0 and r["done_at"] is None
    assert r["expires_at"] == NOW + 3600  # the message's validity, not a fresh one
    assert "resend 1 of 1 via alt after carrier receipt for segment 1/1: undelivered" in str(r["reason"])
    assert segment_states(db, cl.delivery_id) == ["superseded"]
    assert events(db) == []  # the app hears only the final outcome
    (h,) = history(db, cl.delivery_id)
    assert (h["event"], h["channel"], h["state"], h["error_code"], h["next_channel"]) == (
        "resend",
        "sim",
        "undelivered",
        13,
        "alt",
    )
    assert h["at"] == NOW + 2


def test_the_last_resend_failing_ends_the_delivery_and_the_app_is_told(db: Database) -> None:
    send(db, "13800000001")
    (cl,) = claim(db)
    submitted(db, cl, "a")
    receipt(db, "a-1", "undelivered")
    assert claim(db, "alt") == []  # not before the delay
    (again,) = claim(db, "alt", now=NOW + 100)
    assert again.delivery_id == cl.delivery_id and again.sent == frozenset()
    submitted(db, again, "b", channel="alt")
    out = receipt(db, "b-1", "expired", channel="alt", policy=rs.ResendPolicy())
    assert out.delivery_state == "expired" and out.resent_to is None
    r = row(db, cl.delivery_id)
    assert r["state"] == "expired" and r["resends"] == 1 and r["channel"] == "alt"
    assert events(db) == [cl.delivery_id]
    assert [h["event"] for h in history(db, cl.delivery_id)] == ["resend"]


def test_a_resent_delivery_that_is_delivered_ends_delivered_with_its_history(db: Database) -> None:
    send(db, "13800000001", resends=2)
    (cl,) = claim(db)
    submitted(db, cl, "a")
    receipt(db, "a-1", "undelivered", policy=dataclasses.replace(POLICY, via=None, delay=0))
    (again,) = claim(db, now=NOW + 3)
    submitted(db, again, "b")
    assert receipt(db, "b-1", "delivered").delivery_state == "delivered"
    assert row(db, cl.delivery_id)["resends"] == 1
    assert segment_states(db, cl.delivery_id) == ["superseded", "delivered"]
    assert events(db) == [cl.delivery_id]


def test_an_outcome_the_policy_does_not_name_ends_the_delivery(db: Database) -> None:
    send(db, "13800000001")
    (cl,) = claim(db)
    submitted(db, cl, "a")
    assert receipt(db, "a-1", "rejected").delivery_state == "rejected"
    assert history(db, cl.delivery_id) == [] and events(db) == [cl.delivery_id]


def test_without_resends_allowed_a_failed_receipt_is_final(db: Database) -> None:
    send(db, "13800000001", resends=0)
    (cl,) = claim(db)
    submitted(db, cl, "a")
    assert receipt(db, "a-1", "undelivered").delivery_state == "undelivered"


def test_no_resend_once_the_validity_would_be_over_when_it_is_due(db: Database) -> None:
    send(db, "13800000001")
    (cl,) = claim(db)
    submitted(db, cl, "a")
    out = receipt(db, "a-1", "undelivered", at=NOW + 3600 - 30)  # the delay is 60 s
    assert out.delivery_state == "undelivered"
    assert row(db, cl.delivery_id)["resends"] == 0


def test_one_failed_part_of_three_resends_the_whole_delivery(db: Database) -> None:
    send(db, "13800000001", segments_each=3)
    (cl,) = claim(db)
    submitted(db, cl, "a", total=3)
    receipt(db, "a-1", "delivered")
    out = receipt(db, "a-2", "undelivered")
    assert out.resent_to == "alt"
    r = row(db, cl.delivery_id)
    assert r["state"] == "queued" and r["seg_delivered"] == 0
    assert segment_states(db, cl.delivery_id) == ["superseded"] * 3
    assert receipt(db, "a-3", "delivered").delivery_state is None  # a late part decides nothing
    assert row(db, cl.delivery_id)["state"] == "queued"


def test_a_failed_part_that_came_while_the_rest_waited_resends_once_they_are_submitted(db: Database) -> None:
    send(db, "13800000001", segments_each=3)
    (cl,) = claim(db)
    first = q.SubmitResult(
        cl.delivery_id, DeliveryState.QUEUED, "0x08", NOW, segments=[q.SegmentRecord(1, 3, "p1")]
    )
    db.write_sync(lambda c: q.record_results(c, channel="sim", results=[first], now=NOW + 1, resend=POLICY))
    receipt(db, "p1", "undelivered")  # the delivery is queued: only the segment is marked
    assert row(db, cl.delivery_id)["state"] == "queued"
    (again,) = claim(db, now=NOW + 5)
    rest = q.SubmitResult(
        again.delivery_id,
        DeliveryState.SUBMITTED,
        segments=[q.SegmentRecord(2, 3, "p2"), q.SegmentRecord(3, 3, "p3")],
        resumed=True,
    )
    db.write_sync(lambda c: q.record_results(c, channel="sim", results=[rest], now=NOW + 6, resend=POLICY))
    r = row(db, cl.delivery_id)
    assert r["state"] == "queued" and r["channel"] == "alt" and r["resends"] == 1
    assert events(db) == []
    assert [h["event"] for h in history(db, cl.delivery_id)] == ["resend"]


def test_a_delivery_sent_through_another_channel_takes_that_channels_part_count(db: Database) -> None:
    send(db, "13800000001", segments_each=3)
    (cl,) = claim(db)
    # The backup carries the text as one message_payload PDU: one receipt decides it.
    submitted(db, cl, "a", total=1)
    assert row(db, cl.delivery_id)["segments"] == 1
    assert receipt(db, "a-1", "delivered").delivery_state == "delivered"


# ----- an app's retry and cancel --------------------------------------------------------------------------


def test_an_apps_retry_queues_its_failed_deliveries_with_the_messages_own_validity(db: Database) -> None:
    mid = send(db, "13800000001", "13800000002", resends=0)
    c1, c2 = claim(db)
    submitted(db, c1, "a")
    submitted(db, c2, "b")
    receipt(db, "a-1", "undelivered")
    receipt(db, "b-1", "delivered")
    later = NOW + 5000
    n = db.write_sync(
        lambda c: msg_store.retry(c, message_id=mid, now=later, validity=None, reason="retried by the app")
    )
    assert n == 1
    r = row(db, c1.delivery_id)
    assert r["state"] == "queued" and r["reason"] == "retried by the app"
    assert r["expires_at"] == pytest.approx(later + 3600)
    assert row(db, c2.delivery_id)["state"] == "delivered"
    (h,) = history(db, c1.delivery_id)
    assert (h["event"], h["state"], h["channel"]) == ("retry", "undelivered", "sim")


def test_a_message_belongs_only_to_its_own_app(db: Database) -> None:
    mid = send(db, "13800000001")
    assert db.read_sync(lambda c: msg_store.owns(c, mid, 1))
    assert not db.read_sync(lambda c: msg_store.owns(c, mid, 2))
    assert not db.read_sync(lambda c: msg_store.owns(c, mid + 1, 1))


# ----- failover --------------------------------------------------------------------------------------------


def fail_over(db: Database, channel: str = "sim", backup: str = "alt") -> int:
    return db.write_sync(lambda c: rs.fail_over(c, channel=channel, backup=backup, now=NOW + 10))


def fail_back(db: Database, channel: str = "sim") -> int:
    return db.write_sync(lambda c: rs.fail_back(c, channel=channel, now=NOW + 20))


def test_failover_moves_queued_deliveries_to_the_backup_and_failback_brings_them_home(db: Database) -> None:
    send(db, "13800000001", "13800000002", "13800000003")
    (taken,) = claim(db, limit=1)
    assert fail_over(db) == 2
    moved = [i for i in (1, 2, 3) if i != taken.delivery_id]
    for i in moved:
        r = row(db, i)
        assert (r["channel"], r["home_channel"], r["state"]) == ("alt", "sim", "queued")
        (h,) = history(db, i)
        assert (h["event"], h["channel"], h["next_channel"]) == ("failover", "sim", "alt")
    claimed = row(db, taken.delivery_id)
    assert (claimed["channel"], claimed["home_channel"]) == ("sim", None)  # a claim stays where it is
    (on_backup,) = claim(db, "alt", limit=1)  # the backup claims one; it finishes it
    assert fail_back(db) == 1
    back = next(i for i in moved if i != on_backup.delivery_id)
    r = row(db, back)
    assert (r["channel"], r["home_channel"]) == ("sim", None)
    assert [h["event"] for h in history(db, back)] == ["failover", "failback"]
    assert history(db, back)[1]["channel"] == "alt"
    assert row(db, on_backup.delivery_id)["channel"] == "alt"
    assert events(db) == []


def test_a_partly_sent_delivery_moved_to_the_backup_is_sent_there_whole(db: Database) -> None:
    send(db, "13800000001", segments_each=3)
    (cl,) = claim(db)
    part = q.SubmitResult(
        cl.delivery_id, DeliveryState.QUEUED, "0x08", NOW, segments=[q.SegmentRecord(1, 3, "p1")]
    )
    db.write_sync(lambda c: q.record_results(c, channel="sim", results=[part], now=NOW + 1))
    assert fail_over(db) == 1
    (moved,) = claim(db, "alt", now=NOW + 30)
    assert moved.sent == frozenset()


def test_a_backup_failing_over_in_turn_keeps_the_first_home(db: Database) -> None:
    send(db, "13800000001")
    fail_over(db, "sim", "alt")
    fail_over(db, "alt", "third")
    r = row(db, 1)
    assert (r["channel"], r["home_channel"]) == ("third", "sim")
    assert db.write_sync(lambda c: rs.fail_back(c, channel="alt", now=NOW + 20)) == 0
    assert fail_back(db) == 1 and row(db, 1)["channel"] == "sim"


def test_deliveries_accepted_during_a_failover_come_home_too(db: Database) -> None:
    msg = new_message("13800000001")
    msg = dataclasses.replace(
        msg, deliveries=[dataclasses.replace(msg.deliveries[0], channel="alt", home_channel="sim")]
    )
    db.write_sync(lambda c: msg_store.insert_messages(c, [msg], now=NOW))
    assert fail_back(db) == 1 and row(db, 1)["channel"] == "sim"


def migrate(database: Database, how: str, revision: str) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with database.write_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, how)(cfg, revision)


def test_the_resends_migration_can_be_undone_and_done_again(db: Database) -> None:
    send(db, "13800000001")
    migrate(db, "downgrade", "0010")
    columns = db.read_sync(lambda c: {x["name"] for x in sa.inspect(c).get_columns("deliveries")})
    assert not {"resends", "max_resends", "home_channel"} & columns
    assert "delivery_history" not in db.read_sync(lambda c: sa.inspect(c).get_table_names())
    migrate(db, "upgrade", "head")
    assert row(db, 1)["resends"] == 0 and row(db, 1)["home_channel"] is None
