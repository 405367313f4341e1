"""Per-segment sending in the store, on SQLite, PostgreSQL and MariaDB: acknowledged segments are kept
when the rest fail, the next claim knows them, throttles do not count as attempts, and receipts that
came for early segments decide the delivery once the rest are submitted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from masd.core.states import DeliveryState
from masd.store import queue as q
from masd.store import receipts as rc
from masd.store.db import Database
from masd.store.tables import deliveries
from tests.store.test_store import NOW, claim, insert, new_message


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url, group_commit_ms=1)
    database.upgrade()
    yield database
    database.dispose()


def record(db: Database, *results: q.SubmitResult, now: float = NOW + 1) -> None:
    db.write_sync(lambda c: q.record_results(c, channel="sim", results=list(results), now=now))


def receipt(db: Database, carrier_id: str, status: str) -> None:
    item = rc.IncomingReceipt(carrier_id, status, None)
    db.write_sync(lambda c: rc.store_receipts(c, channel="sim", items=[item], now=NOW + 2))


def row(db: Database, delivery_id: int) -> dict[str, object]:
    r = db.read_sync(lambda c: c.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).first())
    assert r is not None
    return dict(r._mapping)


def seg(seq: int, carrier_id: str) -> q.SegmentRecord:
    return q.SegmentRecord(seq, 3, carrier_id)


def test_a_retry_claim_knows_the_segments_already_acknowledged(db: Database) -> None:
    insert(db, new_message("13800000001", segments_each=3))
    (cl,) = claim(db)
    assert cl.sent == frozenset()
    record(db, q.SubmitResult(cl.delivery_id, DeliveryState.QUEUED, "0x08", NOW, segments=[seg(1, "a1")]))
    (again,) = claim(db, now=NOW + 5)
    assert again.sent == frozenset({1}) and again.attempts == 2


def test_a_throttled_attempt_is_not_counted(db: Database) -> None:
    insert(db, new_message("13800000001"))
    (cl,) = claim(db)
    record(db, q.SubmitResult(cl.delivery_id, DeliveryState.QUEUED, "0x58", NOW, uncounted=True))
    assert row(db, cl.delivery_id)["attempts"] == 0
    (again,) = claim(db, now=NOW + 5)
    assert again.attempts == 1


def test_receipts_of_early_segments_count_once_the_rest_are_submitted(db: Database) -> None:
    insert(db, new_message("13800000001", segments_each=3))
    (cl,) = claim(db)
    record(db, q.SubmitResult(cl.delivery_id, DeliveryState.QUEUED, "0x08", NOW, segments=[seg(1, "a1")]))
    receipt(db, "a1", "delivered")  # arrives while the delivery waits to send parts 2 and 3
    assert row(db, cl.delivery_id)["state"] == DeliveryState.QUEUED.value
    (again,) = claim(db, now=NOW + 5)
    record(
        db,
        q.SubmitResult(
            again.delivery_id, DeliveryState.SUBMITTED, segments=[seg(2, "a2"), seg(3, "a3")], resumed=True
        ),
    )
    assert row(db, cl.delivery_id)["seg_delivered"] == 1
    receipt(db, "a2", "delivered")
    receipt(db, "a3", "delivered")
    assert row(db, cl.delivery_id)["state"] == DeliveryState.DELIVERED.value


def test_a_failed_receipt_of_an_early_segment_decides_the_delivery_when_the_rest_are_submitted(
    db: Database,
) -> None:
    insert(db, new_message("13800000001", segments_each=3))
    (cl,) = claim(db)
    record(db, q.SubmitResult(cl.delivery_id, DeliveryState.QUEUED, "0x08", NOW, segments=[seg(1, "b1")]))
    receipt(db, "b1", "undelivered")
    (again,) = claim(db, now=NOW + 5)
    record(
        db,
        q.SubmitResult(
            again.delivery_id, DeliveryState.SUBMITTED, segments=[seg(2, "b2"), seg(3, "b3")], resumed=True
        ),
    )
    r = row(db, cl.delivery_id)
    assert r["state"] == DeliveryState.UNDELIVERED.value
    assert "segment 1/3" in str(r["reason"])


def test_segments_of_a_delivery_that_ends_rejected_are_kept(db: Database) -> None:
    insert(db, new_message("13800000001", segments_each=3))
    (cl,) = claim(db)
    record(db, q.SubmitResult(cl.delivery_id, DeliveryState.REJECTED, "0x0B", segments=[seg(1, "c1")]))
    n = db.read_sync(
        lambda c: c.execute(
            sa.text("SELECT COUNT(*) FROM segments WHERE delivery_id = :d"), {"d": cl.delivery_id}
        )
    ).scalar()
    assert n == 1


def test_an_operators_retry_sends_the_delivery_again_whole(db: Database) -> None:
    from masd.store import messages as msg_store

    insert(db, new_message("13800000001", segments_each=3))
    (cl,) = claim(db)
    record(db, q.SubmitResult(cl.delivery_id, DeliveryState.FAILED, "gave up", segments=[seg(1, "d1")]))
    assert (
        db.write_sync(lambda c: msg_store.retry(c, delivery_ids=[cl.delivery_id], now=NOW + 3, validity=60))
        == 1
    )
    (again,) = claim(db, now=NOW + 5)
    assert again.sent == frozenset()  # the earlier part stays in the history only
