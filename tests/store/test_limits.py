"""Rate and quota charged with the store, on SQLite, PostgreSQL and MariaDB: exact under concurrency."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from masd.store import apps as app_store
from masd.store import limits
from masd.store import messages as msg_store
from masd.store.db import Database
from masd.store.limits import Charge, Over
from masd.store.tables import deliveries

NOW = 1_800_000_000.0
DAY = "2027-01-15"


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url, group_commit_ms=1)
    database.upgrade()
    yield database
    database.dispose()


def make_app(db: Database, name: str = "oa") -> int:
    return db.write_sync(lambda c: app_store.create_app(c, name, now=NOW))[0]


def message(app_id: int, n: int, ref: str | None = None) -> msg_store.NewMessage:
    return msg_store.NewMessage(
        text="hi",
        encoding="gsm7",
        interface="test",
        priority=5,
        expires_at=NOW + 3600,
        max_attempts=3,
        deliveries=[msg_store.NewDelivery(f"139{i:08d}", "sim", 1, 7) for i in range(n)],
        app_id=app_id,
        client_ref=ref,
    )


def submit(db: Database, msgs: list[msg_store.NewMessage], c: Charge, now: float = NOW) -> object:
    return db.write_sync(lambda conn: msg_store.insert_message_items(conn, [(msgs, now, c)]))[0]


def stored(db: Database) -> int:
    return int(db.read_sync(lambda c: c.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar()))


def test_quota_admits_up_to_the_limit_and_refuses_the_rest_whole(db: Database) -> None:
    app = make_app(db)
    c = Charge(app, DAY, quota=5)
    assert isinstance(submit(db, [message(app, 3)], c), list)
    over = submit(db, [message(app, 3)], c)
    assert over == Over("quota", 3)
    assert isinstance(submit(db, [message(app, 2)], c), list)
    assert stored(db) == 5
    assert db.read_sync(lambda conn: msg_store.usage_on(conn, app, DAY)) == 5
    assert db.read_sync(lambda conn: msg_store.usage_on(conn, app, "2027-01-16")) == 0


def test_a_client_ref_already_stored_costs_nothing_again(db: Database) -> None:
    app = make_app(db)
    c = Charge(app, DAY, quota=2)
    submit(db, [message(app, 2, ref="r1")], c)
    again = submit(db, [message(app, 2, ref="r1")], c)
    assert isinstance(again, list) and not again[0].created
    assert db.read_sync(lambda conn: msg_store.usage_on(conn, app, DAY)) == 2


def test_rate_admits_one_seconds_worth_then_refills(db: Database) -> None:
    app = make_app(db)
    c = Charge(app, DAY, rate=5.0)
    for _ in range(5):
        assert isinstance(submit(db, [message(app, 1)], c), list)
    over = submit(db, [message(app, 1)], c)
    assert isinstance(over, Over) and over.limit == "rate"
    assert over.wait == pytest.approx(0.2)
    assert isinstance(submit(db, [message(app, 1)], c, now=NOW + 0.2), list)
    assert stored(db) == 6


def test_a_request_larger_than_the_burst_never_fits(db: Database) -> None:
    app = make_app(db)
    over = submit(db, [message(app, 6)], Charge(app, DAY, rate=5.0))
    assert over == Over("rate", 5.0, None)
    assert stored(db) == 0


def test_a_quota_refusal_gives_the_rate_back(db: Database) -> None:
    app = make_app(db)
    c = Charge(app, DAY, quota=2, rate=5.0)
    submit(db, [message(app, 2)], c)
    assert isinstance(submit(db, [message(app, 1)], c), Over)  # quota: 2 of 2
    bigger = Charge(app, DAY, quota=10, rate=5.0)
    assert isinstance(submit(db, [message(app, 3)], bigger), list)  # 5 - 2 = 3 tokens left, not 2


def test_a_refused_request_in_a_merged_write_stores_only_the_others(db: Database) -> None:
    a, b = make_app(db, "a"), make_app(db, "b")
    out = db.write_sync(
        lambda conn: msg_store.insert_message_items(
            conn,
            [
                ([message(a, 2)], NOW, Charge(a, DAY, quota=1)),
                ([message(b, 2)], NOW, Charge(b, DAY, quota=9)),
                ([message(a, 1)], NOW, None),
            ],
        )
    )
    assert isinstance(out[0], Over)
    assert isinstance(out[1], list) and isinstance(out[2], list)
    assert stored(db) == 3


def test_parallel_connections_never_overshoot_quota_or_burst(db: Database) -> None:
    """Forty threads, each with its own connection and transaction, as several nodes would."""
    app = make_app(db)
    c = Charge(app, DAY, quota=20, rate=1000.0)
    results: list[object] = []
    lock = threading.Lock()
    start = threading.Barrier(40)

    def one() -> None:
        start.wait()
        for _ in range(3):
            r = db.write_sync(
                lambda conn: msg_store.insert_message_items(conn, [([message(app, 1)], NOW, c)])
            )
            with lock:
                results.append(r[0])

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, list) for r in results) == 20
    assert stored(db) == 20
    assert db.read_sync(lambda conn: msg_store.usage_on(conn, app, DAY)) == 20


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.floats(0, 2)), min_size=1, max_size=25))
def test_admitted_recipients_never_exceed_burst_plus_refill(requests: list[tuple[int, float]]) -> None:
    """The bucket, as a property: whatever the sizes and gaps, what it admits up to time t is at most
    the burst plus t × rate."""
    import tempfile

    rate = 3.0
    with tempfile.TemporaryDirectory() as d:
        db = Database(f"sqlite:///{d}/masd.db")
        db.upgrade()
        try:
            app = make_app(db)
            now, admitted = NOW, 0
            for size, gap in requests:
                now += gap
                got = db.write_sync(
                    lambda conn: limits.charge(conn, Charge(app, DAY, rate=rate), size, now=now)
                )
                if got is None:
                    admitted += size
                elif got.wait is not None:
                    assert got.wait > 0
                assert admitted <= rate + (now - NOW) * rate + 1e-9
        finally:
            db.dispose()
