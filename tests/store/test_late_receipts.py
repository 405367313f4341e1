"""A receipt stored by one node while another records its submit: each transaction is blind to the other's
uncommitted row, so on PostgreSQL the receipt stays held though its segment is known by the time both
have committed; housekeeping's sweep (held_now_known + apply_held) then applies it. MariaDB's locking
read waits for the submit instead; the sweep finds nothing to do there."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from masd.core.states import DeliveryState
from masd.store import queue as q
from masd.store import receipts as rc
from masd.store.db import Database
from masd.store.tables import receipts

from .test_store import NOW, claim, insert, new_message, states

pytestmark = pytest.mark.parametrize("store_url", ["postgresql", "mariadb"], indirect=True)


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url, group_commit_ms=1)
    database.upgrade()
    yield database
    database.dispose()


def test_a_receipt_that_came_in_while_another_node_recorded_the_submit_is_applied_by_the_sweep(
    db: Database,
) -> None:
    insert(db, new_message("13800000001"))
    (cl,) = claim(db)
    result = q.SubmitResult(
        cl.delivery_id, DeliveryState.SUBMITTED, segments=[q.SegmentRecord(1, 1, "c-late")]
    )
    recording = db.write_engine.connect()  # the node that sent it, still in its transaction
    tx = recording.begin()
    try:
        assert q.record_results(recording, channel="sim", results=[result], now=NOW + 1) == 0
        stored = threading.Thread(
            target=lambda: db.write_sync(
                lambda c: rc.store_receipts(
                    c, channel="sim", items=[rc.IncomingReceipt("c-late", "delivered")], now=NOW + 2
                )
            )
        )
        stored.start()  # the other node, which the SMSC gave the receipt to
        time.sleep(0.5)
        tx.commit()
    finally:
        if tx.is_active:
            tx.rollback()
        recording.close()
    stored.join(timeout=10)
    top = db.read_sync(rc.latest_receipt_id)
    found = db.read_sync(lambda c: rc.held_now_known(c, after_id=0, up_to=top))
    if found:
        assert found == {"sim": ["c-late"]}
        assert states(db)[cl.delivery_id] == "submitted"  # held, though its segment is known
        assert (
            db.write_sync(lambda c: rc.apply_held(c, channel="sim", carrier_ids=found["sim"], now=NOW + 3))
            == 1
        )
    assert states(db)[cl.delivery_id] == "delivered"
    held = db.read_sync(
        lambda c: c.execute(sa.select(receipts.c.id).where(receipts.c.segment_id.is_(None))).all()
    )
    assert held == []
    if db.dialect == "postgresql":
        assert found, "PostgreSQL's FOR UPDATE does not wait for a row it cannot see: the race is real there"


def test_the_sweep_skips_receipts_of_carrier_ids_nobody_sent(db: Database) -> None:
    db.write_sync(
        lambda c: rc.store_receipts(
            c, channel="sim", items=[rc.IncomingReceipt("unknown", "delivered")], now=NOW
        )
    )
    top = db.read_sync(rc.latest_receipt_id)
    assert db.read_sync(lambda c: rc.held_now_known(c, after_id=0, up_to=top)) == {}
    assert db.read_sync(lambda c: rc.held_now_known(c, after_id=top, up_to=top)) == {}
