"""Singleton background jobs: each runs on exactly one node at a time, under a lease in the database.

Several ``masd run`` nodes may share one PostgreSQL database. Sending, intake and the servers run on
every node (claims use ``FOR UPDATE SKIP LOCKED``), but some work must be done once: the webhook sender,
each DB-polling interface, the meeting scheduler, housekeeping. Each is a *job* with a lease in
``job_leases`` (:mod:`masd.store.jobs`)::

    JobRunner.run
    ├── the keeper: every RENEW_SECONDS one write renews the leases this node holds and tries to take
    │   the others (sooner when another node's lease is about to run out)
    └── job × N: each runs in its own cancel scope while this node holds its lease

A lease runs LEASE_SECONDS past its last renewal, so the jobs of a node that dies move to a survivor
within about LEASE_SECONDS (at most LEASE_SECONDS + RENEW_SECONDS). A job is cancelled at once when a
renewal finds its lease taken, or when the job's own writes find it so (:class:`~masd.store.jobs.LeaseLost`);
when renewals cannot reach the database, a job runs on only while its lease is certainly still its own
by this node's clock. A job that fails is started again after a pause, still under its lease. On SQLite
(one node) every lease is taken at the first round, and holding them costs one small write per round.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
import structlog
import trio
from prometheus_client import CollectorRegistry, Gauge

from masd.store import jobs as job_store
from masd.store.db import Database
from masd.store.jobs import Fence, LeaseLost

__all__ = ["LEASE_SECONDS", "RENEW_SECONDS", "Fence", "Job", "JobRunner", "LeaseLost"]

log = structlog.get_logger("masd.jobs")

LEASE_SECONDS = 10.0
RENEW_SECONDS = 3.0
MARGIN_SECONDS = 2.0  # a lease this node cannot renew is given up this long before it could run out
RESTART_FIRST = 1.0
RESTART_MAX = 30.0

Job = Callable[[Fence], Awaitable[None]]


@dataclasses.dataclass(eq=False)
class _Held:
    fence: Fence
    scope: trio.CancelScope
    valid_until: float  # trio clock: the lease is certainly ours until then
    done: trio.Event = dataclasses.field(default_factory=trio.Event)


class JobRunner:
    """Runs the jobs added to it, each while this node holds its lease (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        node: str,
        *,
        registry: CollectorRegistry | None = None,
        lease: float = LEASE_SECONDS,
        renew: float = RENEW_SECONDS,
    ) -> None:
        if renew * 2 >= lease:
            raise ValueError(f"renew every {renew:g} s does not fit twice into a lease of {lease:g} s")
        self.db = db
        self.node = node
        self.lease = lease
        self.renew = renew
        self._jobs: dict[str, Job] = {}
        self._held: dict[str, _Held] = {}
        self._nursery: trio.Nursery | None = None
        self._stopping = False
        self._gauge = Gauge(
            "masd_job_held",
            "1 while this node holds the job's lease and runs it",
            ["job"],
            registry=registry,
        )

    def add(self, name: str, job: Job) -> None:
        if self._nursery is not None:
            raise RuntimeError("add jobs before the runner starts")
        self._jobs[name] = job
        self._gauge.labels(name).set(0)

    @property
    def names(self) -> list[str]:
        return list(self._jobs)

    def held(self) -> dict[str, int]:
        """The jobs this node runs now, each with its lease's generation."""
        return {name: h.fence.epoch for name, h in self._held.items()}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the leases and run the jobs until cancelled; the first round of takes is made before
        ``task_status.started()``, so on a node alone every job runs by then."""
        if not self._jobs:
            task_status.started()
            return
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                wait = await self._round()
                task_status.started()
                while True:
                    await trio.sleep(wait)
                    wait = await self._round()
        finally:
            for name in self._held:
                self._gauge.labels(name).set(0)
            self._held.clear()
            self._nursery = None
            self._stopping = False

    async def stop(self) -> None:
        """Cancel every job, wait for them, and give their leases back so another node takes them at once."""
        self._stopping = True
        held = dict(self._held)
        for h in held.values():
            h.scope.cancel()
        for h in held.values():
            await h.done.wait()
        if held:
            fences = {name: h.fence.epoch for name, h in held.items()}
            try:
                await self.db.write(lambda c: job_store.release(c, held=fences, node=self.node))
            except Exception as e:
                log.warning("could not give job leases back; they run out by themselves", error=str(e))
            else:
                log.info("job leases given back", jobs=sorted(fences))
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # ----- the keeper ----------------------------------------------------------------------------------

    async def _round(self) -> float:
        """Renew what this node holds, try to take the rest; returns seconds until the next round."""
        if self._stopping:
            return self.renew
        started = trio.current_time()
        now = time.time()
        held = {name: h.fence.epoch for name, h in self._held.items()}
        wanted = [name for name in self._jobs if name not in self._held]

        def work(conn: sa.Connection) -> tuple[set[str], job_store.Taken]:
            kept = job_store.renew(conn, held=held, node=self.node, now=now, lease=self.lease)
            taken = job_store.take(conn, jobs=wanted, node=self.node, now=now, lease=self.lease)
            return kept, taken

        try:
            kept, taken = await self.db.write(work)
        except Exception as e:
            for name, h in list(self._held.items()):
                if trio.current_time() >= h.valid_until:
                    self._lose(name, "its lease could not be renewed in time", error=str(e))
            log.warning("could not renew or take job leases; will try again", error=str(e))
            return min(1.0, self.renew)
        if self._stopping:
            return self.renew
        valid_until = started + self.lease - MARGIN_SECONDS
        for name in held:
            mine = self._held.get(name)
            if mine is None or mine.fence.epoch != held[name]:
                continue
            if name in kept:
                mine.valid_until = valid_until
            else:
                self._lose(name, "another node took its lease")
        for name, epoch in taken.held.items():
            self._start(name, Fence(name, self.node, epoch), valid_until)
        wait = self.renew
        for until in taken.others.values():
            # Try again just after another node's lease would run out, if that comes before the next round.
            wait = min(wait, max(0.05, until - time.time() + 0.05))
        return wait

    def _start(self, name: str, fence: Fence, valid_until: float) -> None:
        assert self._nursery is not None
        h = _Held(fence, trio.CancelScope(), valid_until)
        self._held[name] = h
        self._gauge.labels(name).set(1)
        log.info("job lease taken", job=name, node=self.node, epoch=fence.epoch)
        self._nursery.start_soon(self._run_job, name, h)

    def _lose(self, name: str, why: str, **kw: object) -> None:
        h = self._held.pop(name, None)
        if h is None:
            return
        h.scope.cancel()
        self._gauge.labels(name).set(0)
        log.warning(
            "job lease lost; job stopped", job=name, node=self.node, epoch=h.fence.epoch, why=why, **kw
        )

    # ----- one job -------------------------------------------------------------------------------------

    async def _run_job(self, name: str, h: _Held) -> None:
        job = self._jobs[name]
        delay = RESTART_FIRST
        try:
            with h.scope:
                while True:
                    lost = False
                    try:
                        await job(h.fence)
                        log.warning("job returned; starting it again", job=name, delay=delay)
                    except* LeaseLost:
                        lost = True
                    except* Exception as group:
                        log.error(
                            "job failed; starting it again",
                            job=name,
                            delay=delay,
                            exc_info=group.exceptions[0] if len(group.exceptions) == 1 else group,
                        )
                    if lost:
                        self._lose(name, "its own write found the lease taken")
                        break
                    await trio.sleep(delay)
                    delay = min(delay * 2, RESTART_MAX)
        finally:
            h.done.set()
