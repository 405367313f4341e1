"""Job leases: which node runs each singleton background job, until when, and in which generation.

A row of ``job_leases`` per job (``webhooks``, ``dbpoll:<code>``, ``meeting``, ``housekeeping``). A node
*takes* a job that is free, whose lease has run out, or that it held itself before a restart, in one
conditional UPDATE; the row is inserted first if it is missing, race-free on every dialect. Each take
adds one to ``epoch``, the lease's generation: a holder *renews* only while holder and epoch are still
its own, so a node that was paused past its lease and finds the job taken — even taken and given up
since — learns it lost the lease and stops. A job's writes that must not be made by a node that lost the
lease (moving a cursor) call :func:`check` in the same transaction; it locks the lease row for share,
so a taker waits for that transaction and then sees its writes.

Times are each node's wall clock, as for the queue's claim leases: nodes need synchronised clocks (NTP),
and a lease is honoured for ``lease`` seconds by the clock of the node that reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from masd.store._rows import insert_missing
from masd.store.tables import job_leases as jl

__all__ = ["Fence", "LeaseLost", "check", "holds", "leases", "release", "renew", "take"]


@dataclasses.dataclass(frozen=True, slots=True)
class Fence:
    """What a job holds: its name, the node, and the lease's generation when the node took it."""

    job: str
    node: str
    epoch: int


class LeaseLost(RuntimeError):
    """The job's lease is no longer this node's: another node took it (or this node's lease ran out)."""

    def __init__(self, fence: Fence) -> None:
        super().__init__(
            f"job {fence.job!r}: node {fence.node!r} no longer holds its lease (epoch {fence.epoch})"
        )
        self.fence = fence


@dataclasses.dataclass(frozen=True, slots=True)
class Taken:
    """The outcome of :func:`take`: the jobs now held (job → epoch) and, for the rest, until when
    another node holds them (a node tries again then)."""

    held: dict[str, int]
    others: dict[str, float]


def _take_one(conn: sa.Connection, job: str, node: str, now: float, until: float) -> int:
    return (
        conn.execute(
            sa.update(jl)
            .where(
                jl.c.job == job, sa.or_(jl.c.holder.is_(None), jl.c.holder == node, jl.c.lease_until < now)
            )
            .values(holder=node, epoch=jl.c.epoch + 1, lease_until=until, taken_at=now, renewed_at=now)
        ).rowcount
        or 0
    )


def take(conn: sa.Connection, *, jobs: Iterable[str], node: str, now: float, lease: float) -> Taken:
    """Take every job of ``jobs`` that is free, expired, or held by ``node`` itself (an earlier run of
    it); each take starts a new generation."""
    held: dict[str, int] = {}
    others: dict[str, float] = {}
    for job in jobs:
        if not _take_one(conn, job, node, now, now + lease):
            row = conn.execute(sa.select(jl.c.job).where(jl.c.job == job)).first()
            if row is None:
                insert_missing(conn, jl, {"job": job, "holder": None, "epoch": 0, "lease_until": 0.0})
                _take_one(conn, job, node, now, now + lease)
        row = conn.execute(
            sa.select(jl.c.holder, jl.c.epoch, jl.c.lease_until).where(jl.c.job == job)
        ).first()
        if row is not None and row.holder == node:
            held[job] = int(row.epoch)
        elif row is not None:
            others[job] = float(row.lease_until)
    return Taken(held, others)


def renew(conn: sa.Connection, *, held: Mapping[str, int], node: str, now: float, lease: float) -> set[str]:
    """Extend the leases ``node`` holds (job → epoch); returns the jobs still held. A job missing from
    the answer was taken by another node since: its holder must stop it at once."""
    kept: set[str] = set()
    for job, epoch in held.items():
        res = conn.execute(
            sa.update(jl)
            .where(jl.c.job == job, jl.c.holder == node, jl.c.epoch == epoch)
            .values(lease_until=now + lease, renewed_at=now)
        )
        if res.rowcount:
            kept.add(job)
    return kept


def release(conn: sa.Connection, *, held: Mapping[str, int], node: str) -> int:
    """Give up leases (a clean shutdown), so another node takes the jobs at its next try."""
    n = 0
    for job, epoch in held.items():
        n += (
            conn.execute(
                sa.update(jl)
                .where(jl.c.job == job, jl.c.holder == node, jl.c.epoch == epoch)
                .values(holder=None, lease_until=0.0)
            ).rowcount
            or 0
        )
    return n


def holds(conn: sa.Connection, fence: Fence) -> bool:
    """Whether the fence's node still holds the job in the fence's generation. The lease row stays
    locked for share until the transaction ends: no other node takes the job in between."""
    row = conn.execute(
        sa.select(jl.c.holder, jl.c.epoch).where(jl.c.job == fence.job).with_for_update(read=True)
    ).first()
    return row is not None and row.holder == fence.node and int(row.epoch) == fence.epoch


def check(conn: sa.Connection, fence: Fence) -> None:
    """Raise :class:`LeaseLost` unless the fence still holds (see :func:`holds`)."""
    if not holds(conn, fence):
        raise LeaseLost(fence)


def leases(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every job's lease: job, holder (None when free), epoch, lease_until, taken_at, renewed_at."""
    return [dict(r) for r in conn.execute(sa.select(jl).order_by(jl.c.job)).mappings()]
