"""The store, specified once and run against SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio

from masd.core.states import DeliveryState
from masd.store import apps as app_store
from masd.store import messages as msg_store
from masd.store import queue as q
from masd.store import receipts as rc
from masd.store.db import Database, _Op
from masd.store.tables import deliveries, receipts, segments

NOW = 1_800_000_000.0


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url, group_commit_ms=1)
    database.upgrade()
    yield database
    database.dispose()


def new_message(
    *recipients: str,
    text: str = "hello",
    priority: int = 5,
    send_at: float | None = None,
    client_ref: str | None = None,
    app_id: int | None = None,
    segments_each: int = 1,
    expires_at: float = NOW + 3600,
) -> msg_store.NewMessage:
    return msg_store.NewMessage(
        text=text,
        encoding="gsm7",
        interface="test",
        priority=priority,
        expires_at=expires_at,
        max_attempts=3,
        deliveries=[msg_store.NewDelivery(r, "sim", segments_each, 7) for r in recipients],
        app_id=app_id,
        client_ref=client_ref,
        send_at=send_at,
    )


def insert(db: Database, *items: msg_store.NewMessage) -> list[int]:
    return [i.message_id for i in db.write_sync(lambda c: msg_store.insert_messages(c, items, now=NOW))]


def claim(db: Database, *, node: str = "n1", now: float = NOW, limit: int = 100) -> list[q.Claim]:
    return db.write_sync(lambda c: q.claim(c, channel="sim", node=node, now=now, lease=60, limit=limit))


def states(db: Database) -> dict[int, str]:
    return dict(db.read_sync(lambda c: c.execute(sa.select(deliveries.c.id, deliveries.c.state)).all()))  # type: ignore[arg-type]


def submit_ok(db: Database, claims: list[q.Claim], *, prefix: str = "c") -> None:
    results = [
        q.SubmitResult(
            cl.delivery_id,
            DeliveryState.SUBMITTED,
            segments=[q.SegmentRecord(1, 1, f"{prefix}{cl.delivery_id}")],
        )
        for cl in claims
    ]
    db.write_sync(lambda c: q.record_results(c, channel="sim", results=results, now=NOW + 1))


def receipt(db: Database, carrier_id: str, status: str, code: int | None = None) -> list[rc.ReceiptOutcome]:
    item = rc.IncomingReceipt(carrier_id, status, code)
    return db.write_sync(lambda c: rc.store_receipts(c, channel="sim", items=[item], now=NOW + 2))


def test_migrations_bring_the_schema_to_head_and_are_idempotent(db: Database) -> None:
    assert db.current_revision() == db.head_revision()
    assert db.upgrade() == db.head_revision()


def test_a_message_is_stored_with_one_queued_delivery_per_recipient(db: Database) -> None:
    (mid,) = insert(db, new_message("13800138000", "13900139000"))
    msg = db.read_sync(lambda c: msg_store.get_message(c, mid))
    assert msg is not None
    assert [d["recipient"] for d in msg["deliveries"]] == ["13800138000", "13900139000"]
    assert {d["state"] for d in msg["deliveries"]} == {"queued"}


def test_a_repeated_client_ref_returns_the_stored_message(db: Database) -> None:
    first = db.write_sync(
        lambda c: msg_store.insert_messages(
            c, [new_message("13800138000", client_ref="r1", app_id=1)], now=NOW
        )
    )
    again = db.write_sync(
        lambda c: msg_store.insert_messages(
            c, [new_message("13800138000", client_ref="r1", app_id=1)], now=NOW
        )
    )
    other_app = db.write_sync(
        lambda c: msg_store.insert_messages(
            c, [new_message("13800138000", client_ref="r1", app_id=2)], now=NOW
        )
    )
    assert first[0].created and not again[0].created
    assert again[0].message_id == first[0].message_id
    assert other_app[0].created and other_app[0].message_id != first[0].message_id
    assert len(states(db)) == 2


def test_a_client_ref_repeated_within_one_batch_is_stored_once(db: Database) -> None:
    out = db.write_sync(
        lambda c: msg_store.insert_messages(
            c,
            [
                new_message("13800138000", client_ref="x", app_id=1),
                new_message("13800138000", client_ref="x", app_id=1),
            ],
            now=NOW,
        )
    )
    assert out[0].message_id == out[1].message_id
    assert [o.created for o in out] == [True, False]
    assert len(states(db)) == 1


def test_claims_take_the_highest_priority_first_then_the_oldest(db: Database) -> None:
    low, high, mid_ = insert(
        db,
        new_message("13800000001", priority=1),
        new_message("13800000002", priority=9),
        new_message("13800000003", priority=5),
    )
    order = [cl.message_id for cl in claim(db)]
    assert order == [high, mid_, low]


def test_on_sqlite_a_claim_finds_its_rows_by_id_not_by_walking_every_queued_one(tmp_path: Path) -> None:
    # Without statistics SQLite's planner preferred the state index to the id list: a claim of 100
    # walked the whole backlog (~25 ms with 100,000 queued instead of ~0.1 ms).
    database = Database(f"sqlite:///{tmp_path / 'q.db'}")
    database.upgrade()
    try:
        insert(database, *[new_message(f"139{i:08d}") for i in range(20)])
        executed: list[str] = []

        def traced_claim(conn: sa.Connection) -> list[q.Claim]:
            raw: Any = conn.connection.driver_connection
            raw.set_trace_callback(executed.append)
            try:
                return q.claim(conn, channel="sim", node="n1", now=NOW, lease=60, limit=10)
            finally:
                raw.set_trace_callback(None)

        assert len(database.write_sync(traced_claim)) == 10
        by_id = [sql for sql in executed if "deliveries.id IN" in sql]
        assert len(by_id) == 2  # the take and the read-back
        with contextlib.closing(sqlite3.connect(tmp_path / "q.db")) as plain:
            for sql in by_id:
                plan = " ".join(row[3] for row in plain.execute("EXPLAIN QUERY PLAN " + sql))
                assert "USING INTEGER PRIMARY KEY" in plan and "ix_deliveries_state" not in plan, plan
    finally:
        database.dispose()


def test_sqlite_writers_wait_for_the_write_lock_beside_the_database_file(tmp_path: Path) -> None:
    # Another process (an intake worker, the CLI) holding the lock keeps this one's write waiting, and
    # the write goes ahead once the lock is let go.
    db = Database(f"sqlite:///{tmp_path / 'masd.db'}")
    db.upgrade()
    fd = os.open(tmp_path / "masd.db-writelock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        wrote = threading.Event()

        def write() -> None:
            db.write_sync(lambda c: c.exec_driver_sql("CREATE TABLE scratch (a INTEGER)"))
            wrote.set()

        writer = threading.Thread(target=write)
        writer.start()
        assert not wrote.wait(0.3)
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert wrote.wait(5)
        writer.join()
    finally:
        os.close(fd)
        db.dispose()


def test_a_scheduled_delivery_is_not_claimed_before_its_time(db: Database) -> None:
    insert(db, new_message("13800138000", send_at=NOW + 600))
    assert claim(db) == []
    assert len(claim(db, now=NOW + 601)) == 1


def test_a_claimed_delivery_is_submitting_under_a_lease_and_not_claimed_twice(db: Database) -> None:
    insert(db, new_message("13800138000", "13900139000"))
    first = claim(db, node="a", limit=1)
    second = claim(db, node="b")
    assert len(first) == 1 and len(second) == 1
    assert first[0].delivery_id != second[0].delivery_id
    assert claim(db, node="c") == []
    row = db.read_sync(
        lambda c: (
            c.execute(sa.select(deliveries).where(deliveries.c.id == first[0].delivery_id)).mappings().one()
        )
    )
    assert row["state"] == "submitting" and row["claimed_by"] == "a" and row["lease_until"] == NOW + 60
    assert row["attempts"] == 1


def test_an_expired_lease_returns_the_delivery_to_the_queue_and_counts_it(db: Database) -> None:
    insert(db, new_message("13800138000"))
    (cl,) = claim(db, node="dead")
    assert db.write_sync(lambda c: q.return_expired_leases(c, now=NOW + 30)) == 0
    assert db.write_sync(lambda c: q.return_expired_leases(c, now=NOW + 61)) == 1
    (again,) = claim(db, node="alive", now=NOW + 62)
    assert again.delivery_id == cl.delivery_id
    assert again.recovered == 1
    assert again.attempts == 1  # the lost attempt is not held against it


def test_a_restarted_node_gets_its_own_claims_back_at_once(db: Database) -> None:
    insert(db, new_message("13800138000", "13900139000"))
    claim(db, node="me")
    assert db.write_sync(lambda c: q.return_node_claims(c, node="other", now=NOW)) == 0
    assert db.write_sync(lambda c: q.return_node_claims(c, node="me", now=NOW)) == 2
    assert set(states(db).values()) == {"queued"}


def test_released_claims_are_queued_again_without_using_an_attempt(db: Database) -> None:
    insert(db, new_message("13800138000"))
    (cl,) = claim(db)
    assert db.write_sync(lambda c: q.release(c, delivery_ids=[cl.delivery_id], now=NOW)) == 1
    (again,) = claim(db)
    assert again.attempts == 1


def test_a_delivery_is_delivered_when_every_segment_is(db: Database) -> None:
    insert(db, new_message("13800138000", segments_each=2))
    (cl,) = claim(db)
    res = q.SubmitResult(
        cl.delivery_id,
        DeliveryState.SUBMITTED,
        segments=[q.SegmentRecord(1, 2, "A1"), q.SegmentRecord(2, 2, "A2")],
    )
    db.write_sync(lambda c: q.record_results(c, channel="sim", results=[res], now=NOW))
    assert states(db)[cl.delivery_id] == "submitted"
    assert receipt(db, "A1", "delivered")[0].delivery_state is None
    assert states(db)[cl.delivery_id] == "submitted"
    assert receipt(db, "A2", "delivered")[0].delivery_state == "delivered"
    assert states(db)[cl.delivery_id] == "delivered"


def test_one_undelivered_segment_makes_the_delivery_undelivered_with_the_reason(db: Database) -> None:
    insert(db, new_message("13800138000", segments_each=2))
    (cl,) = claim(db)
    res = q.SubmitResult(
        cl.delivery_id,
        DeliveryState.SUBMITTED,
        segments=[q.SegmentRecord(1, 2, "B1"), q.SegmentRecord(2, 2, "B2")],
    )
    db.write_sync(lambda c: q.record_results(c, channel="sim", results=[res], now=NOW))
    receipt(db, "B1", "delivered")
    assert receipt(db, "B2", "undelivered", 1)[0].delivery_state == "undelivered"
    msg = db.read_sync(lambda c: msg_store.get_message(c, cl.message_id))
    assert msg is not None
    reason = msg["deliveries"][0]["reason"]
    assert "segment 2/2" in reason and "undelivered" in reason and "error code 1" in reason


def test_a_repeated_receipt_changes_nothing(db: Database) -> None:
    insert(db, new_message("13800138000"))
    cls = claim(db)
    submit_ok(db, cls)
    receipt(db, f"c{cls[0].delivery_id}", "delivered")
    assert receipt(db, f"c{cls[0].delivery_id}", "undelivered")[0].delivery_state is None
    assert states(db)[cls[0].delivery_id] == "delivered"


def test_a_receipt_that_overtakes_its_submit_response_is_held_then_applied(db: Database) -> None:
    insert(db, new_message("13800138000"))
    cls = claim(db)
    out = receipt(db, f"c{cls[0].delivery_id}", "delivered")
    assert out[0].segment_id is None
    assert states(db)[cls[0].delivery_id] == "submitting"
    submit_ok(db, cls)
    assert states(db)[cls[0].delivery_id] == "delivered"
    held = db.read_sync(
        lambda c: c.execute(
            sa.select(sa.func.count()).select_from(receipts).where(receipts.c.segment_id.is_(None))
        ).scalar_one()
    )
    assert held == 0


def test_an_intermediate_receipt_is_kept_but_decides_nothing(db: Database) -> None:
    insert(db, new_message("13800138000"))
    cls = claim(db)
    submit_ok(db, cls)
    receipt(db, f"c{cls[0].delivery_id}", "enroute")
    assert states(db)[cls[0].delivery_id] == "submitted"
    n = db.read_sync(lambda c: c.execute(sa.select(sa.func.count()).select_from(receipts)).scalar_one())
    assert n == 1


def test_a_retriable_failure_requeues_with_a_later_time_and_a_final_one_records_why(db: Database) -> None:
    insert(db, new_message("13800000001"), new_message("13800000002"))
    a, b = claim(db)
    results = [
        q.SubmitResult(a.delivery_id, DeliveryState.QUEUED, "ESME_RTHROTTLED (0x58)", NOW + 30),
        q.SubmitResult(b.delivery_id, DeliveryState.REJECTED, "ESME_RINVDSTADR (0x0B)"),
    ]
    db.write_sync(lambda c: q.record_results(c, channel="sim", results=results, now=NOW))
    assert claim(db, now=NOW + 10) == []
    (again,) = claim(db, now=NOW + 31)
    assert again.delivery_id == a.delivery_id and again.attempts == 2
    row = db.read_sync(
        lambda c: c.execute(
            sa.select(deliveries.c.state, deliveries.c.reason).where(deliveries.c.id == b.delivery_id)
        ).one()
    )
    assert tuple(row) == ("rejected", "ESME_RINVDSTADR (0x0B)")


def test_overdue_deliveries_expire_with_a_reason(db: Database) -> None:
    insert(db, new_message("13800000001", expires_at=NOW + 10), new_message("13800000002", "13800000003"))
    cls = claim(db, limit=2)
    submitted = [cl for cl in cls if cl.recipient == "13800000002"]
    db.write_sync(
        lambda c: q.release(c, delivery_ids=[cl.delivery_id for cl in cls if cl not in submitted], now=NOW)
    )
    submit_ok(db, submitted)
    swept = db.write_sync(lambda c: q.sweep_overdue(c, now=NOW + 20, receipt_timeout=5))
    assert swept == {"expired_in_queue": 1, "no_receipt": 1}
    assert sorted(states(db).values()) == ["expired", "expired", "queued"]


def test_only_queued_deliveries_can_be_cancelled(db: Database) -> None:
    (mid,) = insert(db, new_message("13800000001", "13800000002"))
    claim(db, limit=1)
    assert db.write_sync(lambda c: msg_store.cancel(c, message_id=mid, now=NOW)) == 1
    assert sorted(states(db).values()) == ["cancelled", "submitting"]


def test_retry_requeues_failed_deliveries_with_fresh_attempts(db: Database) -> None:
    insert(db, new_message("13800000001"))
    (cl,) = claim(db)
    db.write_sync(
        lambda c: q.record_results(
            c, channel="sim", results=[q.SubmitResult(cl.delivery_id, DeliveryState.FAILED, "x")], now=NOW
        )
    )
    assert db.write_sync(lambda c: msg_store.retry(c, states=["failed"], now=NOW, validity=60)) == 1
    (again,) = claim(db)
    assert again.attempts == 1


def test_pending_count_counts_only_unfinished_deliveries(db: Database) -> None:
    (mid,) = insert(db, new_message("13800000001", "13800000002", "13800000003"))
    db.write_sync(lambda c: msg_store.cancel(c, message_id=mid, now=NOW))
    insert(db, new_message("13800000004"))
    assert db.read_sync(q.pending_count) == 1


def test_an_app_key_is_stored_only_as_a_hash_and_can_be_revoked(db: Database) -> None:
    app_id, key = db.write_sync(lambda c: app_store.create_app(c, "oa", now=NOW))
    assert key.startswith("masd_")
    found = db.read_sync(lambda c: app_store.find_by_key(c, key))
    assert found is not None and (found["id"], found["name"]) == (app_id, "oa")
    listed = db.read_sync(app_store.list_apps)
    assert key not in str(listed)
    with pytest.raises(app_store.AppExists):
        db.write_sync(lambda c: app_store.create_app(c, "oa", now=NOW))
    assert db.write_sync(lambda c: app_store.revoke_app(c, "oa", now=NOW))
    assert db.read_sync(lambda c: app_store.find_by_key(c, key)) is None


def test_concurrent_nodes_never_claim_the_same_delivery(db: Database) -> None:
    insert(db, *[new_message(f"138{i:08d}") for i in range(200)])
    got: dict[str, list[int]] = {"a": [], "b": [], "c": []}

    def worker(node: str) -> None:
        while True:
            cls = claim(db, node=node, limit=7)
            if not cls:
                return
            got[node].extend(cl.delivery_id for cl in cls)

    threads = [threading.Thread(target=worker, args=(n,)) for n in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [x for ids in got.values() for x in ids]
    assert len(everything) == 200
    assert len(set(everything)) == 200


async def test_group_commit_joins_concurrent_writes_into_few_transactions(db: Database) -> None:
    results: list[int] = []

    async def one(i: int) -> None:
        ids = await db.write(lambda c: msg_store.insert_messages(c, [new_message(f"139{i:08d}")], now=NOW))
        results.append(ids[0].message_id)

    async with trio.open_nursery() as n:
        await n.start(db.run_committer)
        async with trio.open_nursery() as writers:
            for i in range(300):
                writers.start_soon(one, i)
        n.cancel_scope.cancel()
    assert len(set(results)) == 300
    assert db.batches < 300 / 3
    assert len(states(db)) == 300


async def test_a_lone_write_does_not_wait_out_group_commit_ms_when_nothing_else_can_join(
    store_url: str,
) -> None:
    database = Database(store_url, group_commit_ms=30_000)
    database.upgrade()
    try:
        async with trio.open_nursery() as n:
            await n.start(database.run_committer)
            with trio.fail_after(10):  # far below the 30 s the write may wait for company
                ids = await database.write(
                    lambda c: msg_store.insert_messages(c, [new_message("13900000001")], now=NOW)
                )
            n.cancel_scope.cancel()
        assert len(ids) == 1 and database.batches == 1
    finally:
        database.dispose()


async def test_writes_from_tasks_running_together_join_one_transaction(store_url: str) -> None:
    database = Database(store_url, group_commit_ms=30_000)
    database.upgrade()
    try:

        async def one(i: int) -> None:
            await database.write(
                lambda c: msg_store.insert_messages(c, [new_message(f"139{i:08d}")], now=NOW)
            )

        async with trio.open_nursery() as n:
            await n.start(database.run_committer)
            with trio.fail_after(10):
                async with trio.open_nursery() as writers:
                    for i in range(50):
                        writers.start_soon(one, i)
            n.cancel_scope.cancel()
        # All fifty were runnable at once: the committer waited until each had queued its write.
        assert database.batches == 1 and database.batched_ops == 50
    finally:
        database.dispose()


async def test_intake_is_spread_over_transactions_and_other_writes_go_first(store_url: str) -> None:
    database = Database(store_url, group_commit_ms=30_000, intake_rows_per_commit=250)
    database.upgrade()
    transactions: list[list[str]] = []  # what each transaction ran, in order

    def tag(name: str) -> Any:
        def run(conn: sa.Connection) -> None:
            if not transactions or conn is not transactions[-1][0]:
                transactions.append([conn])  # type: ignore[list-item]
            transactions[-1].append(name)

        return run

    try:

        async def intake(i: int) -> None:
            await database.write_item(
                lambda c, items: [tag(f"intake{i}")(c) for _ in items], i, bulk_rows=100
            )

        async def other() -> None:
            await database.write(tag("outcome"))

        async with trio.open_nursery() as n:
            await n.start(database.run_committer)
            with trio.fail_after(10):
                async with trio.open_nursery() as writers:
                    for i in range(5):
                        writers.start_soon(intake, i)
                    writers.start_soon(other)  # queued after all five intake writes
            n.cancel_scope.cancel()
    finally:
        database.dispose()
    ran = [names[1:] for names in transactions]
    # 100 rows each, at most 250 a transaction: two intake writes a transaction; the other write, queued
    # with them, runs in the first transaction, ahead of the intake.
    assert [len(t) for t in ran] == [3, 2, 1] and ran[0][0] == "outcome"
    assert sorted(name for t in ran for name in t if name != "outcome") == [f"intake{i}" for i in range(5)]


async def test_an_intake_write_larger_than_the_limit_still_gets_a_transaction(store_url: str) -> None:
    database = Database(store_url, intake_rows_per_commit=10)
    database.upgrade()
    try:
        async with trio.open_nursery() as n:
            await n.start(database.run_committer)
            with trio.fail_after(10):
                ids = await database.write_item(
                    lambda c, items: [
                        msg_store.insert_messages(c, [new_message(f"139{i:08d}") for i in range(50)], now=NOW)
                        for _ in items
                    ],
                    None,
                    bulk_rows=50,
                )
            n.cancel_scope.cancel()
    finally:
        database.dispose()
    assert len(ids) == 50 and database.batches == 1


async def test_a_write_waits_at_most_group_commit_ms_while_the_trio_thread_stays_busy(db: Database) -> None:
    async def busy() -> None:
        while True:
            await trio.sleep(0)  # always runnable: the trio thread is never idle

    async with trio.open_nursery() as n:
        await n.start(db.run_committer)
        n.start_soon(busy)
        with trio.fail_after(10):
            ids = await db.write(
                lambda c: msg_store.insert_messages(c, [new_message("13900000002")], now=NOW)
            )
        n.cancel_scope.cancel()
    assert len(ids) == 1


async def test_items_written_together_share_one_handler_call_and_each_gets_its_own_results(
    db: Database,
) -> None:
    calls: list[list[int]] = []

    def double(conn: sa.Connection, items: list[int]) -> list[int]:
        calls.append(list(items))
        return [2 * i for i in items]

    answers: dict[str, list[int]] = {}

    async def write(name: str, items: list[int]) -> None:
        answers[name] = await db.write_items(double, items)

    async with trio.open_nursery() as n:
        await n.start(db.run_committer)
        async with trio.open_nursery() as writers:
            writers.start_soon(write, "a", [1, 2, 3])
            writers.start_soon(write, "b", [10])
            writers.start_soon(write, "c", [20, 21])
        assert await db.write_item(double, 7) == 14
        n.cancel_scope.cancel()
    assert answers == {"a": [2, 4, 6], "b": [20], "c": [40, 42]}
    assert sorted(calls[0]) == [1, 2, 3, 10, 20, 21]  # the three waited for one transaction: one call


async def test_one_failing_write_does_not_fail_the_others_in_its_batch(db: Database) -> None:
    outcomes: list[str] = []

    async def good(i: int) -> None:
        await db.write(lambda c: msg_store.insert_messages(c, [new_message(f"139{i:08d}")], now=NOW))
        outcomes.append("ok")

    async def bad() -> None:
        try:
            await db.write(lambda c: c.execute(sa.text("SELECT * FROM no_such_table")))
        except Exception:
            outcomes.append("failed")

    async with trio.open_nursery() as n:
        await n.start(db.run_committer)
        async with trio.open_nursery() as writers:
            for i in range(20):
                writers.start_soon(good, i)
            writers.start_soon(bad)
        n.cancel_scope.cancel()
    assert sorted(outcomes) == ["failed"] + ["ok"] * 20
    assert len(states(db)) == 20


def test_segments_keep_their_carrier_ids(db: Database) -> None:
    insert(db, new_message("13800138000"))
    cls = claim(db)
    submit_ok(db, cls, prefix="AbC")
    ids = db.read_sync(lambda c: c.execute(sa.select(segments.c.carrier_id)).scalars().all())
    assert ids == [f"AbC{cls[0].delivery_id}"]
    # Carrier ids differ only by case on some SMSCs: they must not be confused.
    assert receipt(db, f"abc{cls[0].delivery_id}", "delivered")[0].segment_id is None
    assert time.time() > 0


def test_the_head_read_from_the_migration_files_is_alembics(db: Database) -> None:
    # Database.upgrade skips Alembic when the stored revision is this head; it must be Alembic's own.
    from masd.store.db import _newest_migration

    assert _newest_migration() == db.head_revision() == db.upgrade() == db.current_revision()


def test_items_of_a_kind_run_where_the_last_of_them_was_queued() -> None:
    # A receipt queued after its submit outcome's write must find that segment, even when an earlier
    # receipt of the same batch was queued before the outcome.
    order: list[object] = []

    def receipts_handler(conn: sa.Connection, items: list[str]) -> list[str]:
        order.append(list(items))
        return [i.upper() for i in items]

    def outcome(conn: sa.Connection) -> str:
        order.append("outcome")
        return "recorded"

    ops = [
        _Op(None, handler=receipts_handler, items=["early"]),
        _Op(outcome),
        _Op(None, handler=receipts_handler, items=["late"]),
    ]
    results = Database._run_ops(None, ops)  # type: ignore[arg-type]  # the ops here need no connection
    assert order == ["outcome", ["early", "late"]]
    assert results == [["EARLY"], "recorded", ["LATE"]]
