"""The job runner: a job runs while its node holds the lease, stops at once when the lease is taken, and
its lease is given back on a clean stop. SQLite here; PostgreSQL with two daemons in
tests/e2e/test_job_leases.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
from prometheus_client import CollectorRegistry

from masd.jobs import JobRunner
from masd.store import jobs as job_store
from masd.store.db import Database
from masd.store.jobs import Fence, LeaseLost
from masd.store.tables import job_leases

LEASE, RENEW = 1.0, 0.2


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'masd.db'}", group_commit_ms=1)
    database.upgrade()
    async with trio.open_nursery() as nursery:
        await nursery.start(database.run_committer)
        yield database
        nursery.cancel_scope.cancel()
    database.dispose()


def runner(db: Database, node: str = "a", registry: CollectorRegistry | None = None) -> JobRunner:
    return JobRunner(db, node, registry=registry, lease=LEASE, renew=RENEW)


def holder(db: Database, job: str) -> tuple[str | None, int]:
    row = db.read_sync(
        lambda c: c.execute(
            sa.select(job_leases.c.holder, job_leases.c.epoch).where(job_leases.c.job == job)
        ).one()
    )
    return row.holder, int(row.epoch)


def steal(db: Database, job: str, node: str = "b") -> None:
    """Another node takes the job, as after this node's lease ran out."""
    db.write_sync(
        lambda c: c.execute(
            sa.update(job_leases)
            .where(job_leases.c.job == job)
            .values(holder=node, epoch=job_leases.c.epoch + 1, lease_until=9e12)
        )
    )


async def test_on_a_node_alone_every_job_runs_once_the_runner_has_started(db: Database) -> None:
    started: list[Fence] = []

    async def job(fence: Fence) -> None:
        started.append(fence)
        await trio.sleep_forever()

    registry = CollectorRegistry()
    jobs = runner(db, registry=registry)
    jobs.add("webhooks", job)
    jobs.add("meeting", job)
    async with trio.open_nursery() as nursery:
        await nursery.start(jobs.run)
        await trio.sleep(0.05)
        assert sorted(f.job for f in started) == ["meeting", "webhooks"]
        assert jobs.held() == {"webhooks": 1, "meeting": 1}
        assert registry.get_sample_value("masd_job_held", {"job": "webhooks"}) == 1
        nursery.cancel_scope.cancel()


async def test_a_job_whose_lease_another_node_took_is_stopped_at_the_next_renewal(db: Database) -> None:
    stopped = trio.Event()

    async def job(fence: Fence) -> None:
        try:
            await trio.sleep_forever()
        finally:
            stopped.set()

    registry = CollectorRegistry()
    jobs = runner(db, registry=registry)
    jobs.add("webhooks", job)
    async with trio.open_nursery() as nursery:
        await nursery.start(jobs.run)
        steal(db, "webhooks")
        with trio.fail_after(RENEW * 3):
            await stopped.wait()
        assert jobs.held() == {}
        assert registry.get_sample_value("masd_job_held", {"job": "webhooks"}) == 0
        nursery.cancel_scope.cancel()


async def test_a_job_whose_own_write_finds_the_lease_taken_stops_and_waits_for_the_lease(
    db: Database,
) -> None:
    runs: list[int] = []

    async def job(fence: Fence) -> None:
        runs.append(fence.epoch)
        if len(runs) == 1:
            steal(db, "webhooks")
            await db.write(lambda c: job_store.check(c, fence))
        await trio.sleep_forever()

    jobs = runner(db)
    jobs.add("webhooks", job)
    async with trio.open_nursery() as nursery:
        await nursery.start(jobs.run)
        await trio.sleep(0.1)
        assert runs == [1] and jobs.held() == {}
        # The other node dies: once its lease runs out, this node takes the job in a new generation.
        db.write_sync(lambda c: c.execute(sa.update(job_leases).values(lease_until=0.0)))
        with trio.fail_after(RENEW * 3):
            while len(runs) < 2:
                await trio.sleep(0.02)
        assert runs == [1, 3]
        nursery.cancel_scope.cancel()


async def test_a_job_that_fails_is_started_again_under_the_same_lease(db: Database) -> None:
    runs: list[int] = []

    async def job(fence: Fence) -> None:
        runs.append(fence.epoch)
        if len(runs) == 1:
            raise RuntimeError("boom")
        await trio.sleep_forever()

    jobs = runner(db)
    jobs.add("housekeeping", job)
    async with trio.open_nursery() as nursery:
        await nursery.start(jobs.run)
        with trio.fail_after(3):
            while len(runs) < 2:
                await trio.sleep(0.05)
        assert runs == [1, 1]
        nursery.cancel_scope.cancel()


async def test_a_clean_stop_gives_the_leases_back(db: Database) -> None:
    async def job(fence: Fence) -> None:
        await trio.sleep_forever()

    jobs = runner(db)
    jobs.add("webhooks", job)
    async with trio.open_nursery() as nursery:
        await nursery.start(jobs.run)
        await jobs.stop()
    assert holder(db, "webhooks") == (None, 1)
    other = runner(db, "b")
    other.add("webhooks", job)
    async with trio.open_nursery() as nursery:
        await nursery.start(other.run)
        assert other.held() == {"webhooks": 2}
        nursery.cancel_scope.cancel()


async def test_a_second_node_runs_nothing_until_the_first_stops_renewing(db: Database) -> None:
    ran: dict[str, float] = {}

    def job_of(node: str):  # type: ignore[no-untyped-def]
        async def job(fence: Fence) -> None:
            ran[node] = trio.current_time()
            await trio.sleep_forever()

        return job

    first, second = runner(db, "a"), runner(db, "b")
    first.add("webhooks", job_of("a"))
    second.add("webhooks", job_of("b"))
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def run_first() -> None:
            with scope:
                await first.run()

        nursery.start_soon(run_first)
        await trio.sleep(0.05)
        await nursery.start(second.run)
        await trio.sleep(LEASE * 1.5)
        assert list(ran) == ["a"]
        died = trio.current_time()
        scope.cancel()  # as a kill: nothing is given back
        with trio.fail_after(LEASE + RENEW * 3):
            while "b" not in ran:
                await trio.sleep(0.02)
        assert ran["b"] - died <= LEASE + RENEW + 0.2
        nursery.cancel_scope.cancel()


def test_leases_must_be_renewed_at_least_twice_per_lease(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'masd.db'}")
    with pytest.raises(ValueError):
        JobRunner(db, "a", lease=5, renew=3)
    db.dispose()


def test_lease_lost_names_the_job_and_node() -> None:
    assert "webhooks" in str(LeaseLost(Fence("webhooks", "a", 2)))
