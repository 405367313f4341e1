"""Job leases, specified once for SQLite, PostgreSQL and MariaDB: one holder per job, a new generation at
every change of hands, and fencing of a holder that lost its lease."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from masd.store import jobs
from masd.store.db import Database
from masd.store.jobs import Fence, LeaseLost

NOW = 1_800_000_000.0
LEASE = 10.0


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url, group_commit_ms=1)
    database.upgrade()
    yield database
    database.dispose()


def take(db: Database, node: str, *names: str, now: float = NOW) -> jobs.Taken:
    return db.write_sync(lambda c: jobs.take(c, jobs=names, node=node, now=now, lease=LEASE))


def renew(db: Database, node: str, held: dict[str, int], now: float) -> set[str]:
    return db.write_sync(lambda c: jobs.renew(c, held=held, node=node, now=now, lease=LEASE))


def test_a_job_nobody_holds_is_taken_in_its_first_generation(db: Database) -> None:
    taken = take(db, "a", "webhooks", "meeting")
    assert taken.held == {"webhooks": 1, "meeting": 1}
    (row, _) = db.read_sync(jobs.leases)
    assert row["job"] == "meeting" and row["holder"] == "a" and row["lease_until"] == NOW + LEASE


def test_a_job_held_by_another_node_is_not_taken_while_its_lease_runs(db: Database) -> None:
    take(db, "a", "webhooks")
    taken = take(db, "b", "webhooks", now=NOW + LEASE - 0.1)
    assert taken.held == {} and taken.others == {"webhooks": NOW + LEASE}


def test_an_expired_lease_is_taken_in_a_new_generation_and_its_old_holder_cannot_renew(db: Database) -> None:
    take(db, "a", "webhooks")
    assert take(db, "b", "webhooks", now=NOW + LEASE + 0.1).held == {"webhooks": 2}
    assert renew(db, "a", {"webhooks": 1}, NOW + LEASE + 0.2) == set()
    assert renew(db, "b", {"webhooks": 2}, NOW + LEASE + 0.2) == {"webhooks"}


def test_a_renewed_lease_keeps_others_out(db: Database) -> None:
    take(db, "a", "webhooks")
    assert renew(db, "a", {"webhooks": 1}, NOW + 8) == {"webhooks"}
    assert take(db, "b", "webhooks", now=NOW + LEASE + 1).held == {}


def test_a_node_takes_back_what_it_held_before_a_restart_at_once(db: Database) -> None:
    take(db, "a", "webhooks")
    assert take(db, "a", "webhooks", now=NOW + 1).held == {"webhooks": 2}
    assert renew(db, "a", {"webhooks": 1}, NOW + 2) == set()  # the earlier run's generation is over


def test_a_released_lease_is_taken_by_another_node_at_once(db: Database) -> None:
    take(db, "a", "webhooks")
    assert db.write_sync(lambda c: jobs.release(c, held={"webhooks": 1}, node="a")) == 1
    assert take(db, "b", "webhooks", now=NOW + 1).held == {"webhooks": 2}


def test_a_lease_lost_and_taken_back_is_a_new_generation_the_old_holder_is_fenced_by(db: Database) -> None:
    take(db, "a", "webhooks")
    take(db, "b", "webhooks", now=NOW + LEASE + 1)
    db.write_sync(lambda c: jobs.release(c, held={"webhooks": 2}, node="b"))
    assert take(db, "a", "webhooks", now=NOW + LEASE + 2).held == {"webhooks": 3}
    assert db.read_sync(lambda c: jobs.holds(c, Fence("webhooks", "a", 3)))
    with pytest.raises(LeaseLost):
        db.write_sync(lambda c: jobs.check(c, Fence("webhooks", "a", 1)))


def test_nodes_racing_for_a_new_job_end_with_exactly_one_holder(db: Database) -> None:
    nodes = ["a", "b"] if db.dialect == "sqlite" else [f"n{i}" for i in range(6)]
    results: dict[str, jobs.Taken] = {}
    start = threading.Barrier(len(nodes))

    def race(node: str) -> None:
        start.wait()
        results[node] = take(db, node, "dbpoll:oa", "housekeeping")

    threads = [threading.Thread(target=race, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for job in ("dbpoll:oa", "housekeeping"):
        holders = [n for n, r in results.items() if job in r.held]
        assert len(holders) == 1, (job, results)
    rows = {r["job"]: r for r in db.read_sync(jobs.leases)}
    assert rows["housekeeping"]["epoch"] == 1 and rows["dbpoll:oa"]["epoch"] == 1
