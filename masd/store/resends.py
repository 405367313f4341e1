"""Resends after a failed receipt, channel failover, and the history both leave on a delivery.

A receipt that fails a delivery (undelivered, expired, rejected) normally ends it. When the delivery has
resends left (``max_resends``, set at acceptance from the app's or the channel's count) and the
channel's policy (:class:`ResendPolicy`) names that outcome, the same transaction puts the delivery back
in the queue instead: queued after the policy's delay, on the policy's fallback channel if it has one,
with fresh attempts, its segments kept only as history, and no app event (the app is told the final
outcome only). The validity period stays the message's: a delivery whose validity would be over before
the resend is due ends as the receipt says.

Failover moves a down channel's queued deliveries to its backup, remembering their ``home_channel``,
and failing back moves them home again; neither touches a claimed delivery. Every resend, move and
retry leaves a row in ``delivery_history`` naming the channel of the attempt it ended and its outcome.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from masd.core.states import DeliveryState
from masd.store._bulk import executemany
from masd.store.segments import supersede_segments
from masd.store.tables import deliveries as d
from masd.store.tables import delivery_history as h

__all__ = [
    "FAILBACK",
    "FAILOVER",
    "RESEND",
    "RETRY",
    "Failed",
    "ResendPolicy",
    "Resent",
    "fail_back",
    "fail_over",
    "history_for",
    "record_retries",
    "resend",
    "wants_resend",
]

RESEND = "resend"
FAILOVER = "failover"
FAILBACK = "failback"
RETRY = "retry"

QUEUED = DeliveryState.QUEUED.value
SUBMITTED = DeliveryState.SUBMITTED.value
_CHUNK = 1000
_REASON = 255


@dataclasses.dataclass(frozen=True, slots=True)
class ResendPolicy:
    """A channel's resend settings (``resend_states``, ``resend_delay_seconds``, ``resend_via``); how
    many resends a delivery may have is its own ``max_resends``."""

    states: frozenset[str] = frozenset({"undelivered", "expired"})
    delay: float = 300.0
    via: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Failed:
    """A submitted delivery a receipt has just failed, with what deciding a resend needs."""

    delivery_id: int
    channel: str  # the channel the receipt came on
    state: str  # the final state the receipt would give it
    reason: str
    error_code: int | None
    resends: int
    max_resends: int
    expires_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Resent:
    delivery_id: int
    channel: str  # where it is queued now
    resends: int  # counting this one


def wants_resend(failed: Failed, policy: ResendPolicy | None, now: float) -> bool:
    """Whether this failure is resent rather than final: the policy names the outcome, the delivery
    has resends left, and its validity lasts until the resend is due."""
    return (
        policy is not None
        and failed.state in policy.states
        and failed.resends < failed.max_resends
        and now + policy.delay < failed.expires_at
    )


def _resend_reason(f: Failed, policy: ResendPolicy, channel: str) -> str:
    via = f" via {channel}" if channel != f.channel else ""
    return f"resend {f.resends + 1} of {f.max_resends}{via} after {f.reason}"[:_REASON]


def resend(conn: sa.Connection, failed: Sequence[tuple[Failed, ResendPolicy]], *, now: float) -> list[Resent]:
    """Put these failed deliveries (locked, still ``submitted``) back in the queue, each with a history
    row for the attempt its receipt ended."""
    if not failed:
        return []
    supersede_segments(conn, [f.delivery_id for f, _ in failed])
    rows: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    out: list[Resent] = []
    for f, policy in failed:
        channel = policy.via or f.channel
        rows.append(
            {
                "b_id": f.delivery_id,
                "b_channel": channel,
                "b_not_before": now + policy.delay,
                "b_reason": _resend_reason(f, policy, channel),
                "b_now": now,
            }
        )
        history.append(
            _history_row(f.delivery_id, RESEND, f.channel, now, f.state, f.reason, f.error_code, channel)
        )
        out.append(Resent(f.delivery_id, channel, f.resends + 1))
    executemany(
        conn,
        "resend_deliveries",
        lambda: (
            sa.update(d)
            .where(d.c.id == sa.bindparam("b_id"), d.c.state == SUBMITTED)
            .values(
                state=QUEUED,
                channel=sa.bindparam("b_channel"),
                resends=d.c.resends + 1,
                not_before=sa.bindparam("b_not_before"),
                reason=sa.bindparam("b_reason"),
                error_code=None,
                attempts=0,
                seg_delivered=0,
                claimed_by=None,
                lease_until=None,
                done_at=None,
                updated_at=sa.bindparam("b_now"),
            )
        ),
        rows,
    )
    _insert_history(conn, history)
    return out


def _history_row(
    delivery_id: int,
    event: str,
    channel: str,
    at: float,
    state: str | None = None,
    reason: str | None = None,
    error_code: int | None = None,
    next_channel: str | None = None,
) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id,
        "at": at,
        "event": event,
        "channel": channel,
        "state": state,
        "reason": reason[:_REASON] if reason else reason,
        "error_code": error_code,
        "next_channel": next_channel,
    }


_HISTORY_COLUMNS = ("delivery_id", "at", "event", "channel", "state", "reason", "error_code", "next_channel")


def _insert_history(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        executemany(
            conn,
            "insert_delivery_history",
            lambda: sa.insert(h).values({c: sa.bindparam(c) for c in _HISTORY_COLUMNS}),
            list(rows),
        )


def _queued_ids(conn: sa.Connection, cond: sa.ColumnElement[bool]) -> list[tuple[int, str]]:
    """(id, channel) of the queued deliveries matching ``cond``, locked; rows another transaction is
    claiming right now are skipped (they are that dispatcher's)."""
    q = sa.select(d.c.id, d.c.channel).where(d.c.state == QUEUED, cond).order_by(d.c.id)
    if conn.dialect.name != "sqlite":
        q = q.with_for_update(skip_locked=True)
    return [(int(i), str(c)) for i, c in conn.execute(q)]


def fail_over(conn: sa.Connection, *, channel: str, backup: str, now: float) -> int:
    """Move ``channel``'s queued deliveries to ``backup``; each remembers the channel it goes back to
    (its first home, should the backup fail over in turn). Claimed ones stay. Returns how many moved."""
    found = _queued_ids(conn, d.c.channel == channel)
    reason = f"failover: channel {channel} is down; sent through {backup}"
    for i in range(0, len(found), _CHUNK):
        ids = [x for x, _ in found[i : i + _CHUNK]]
        # Sent again whole on the backup, which may split the text otherwise.
        supersede_segments(conn, ids)
        conn.execute(
            sa.update(d)
            .where(d.c.id.in_(ids), d.c.state == QUEUED, d.c.channel == channel)
            .values(
                channel=backup,
                home_channel=sa.func.coalesce(d.c.home_channel, channel),
                reason=reason,
                updated_at=now,
            )
        )
        _insert_history(conn, [_history_row(x, FAILOVER, channel, now, next_channel=backup) for x in ids])
    return len(found)


def fail_back(conn: sa.Connection, *, channel: str, now: float) -> int:
    """Move the queued deliveries whose home is ``channel`` back to it from wherever a failover put
    them. Claimed ones stay where they are. Returns how many moved."""
    found = _queued_ids(conn, d.c.home_channel == channel)
    reason = f"failback: channel {channel} is up again"
    for i in range(0, len(found), _CHUNK):
        chunk = found[i : i + _CHUNK]
        ids = [x for x, _ in chunk]
        supersede_segments(conn, ids)
        conn.execute(
            sa.update(d)
            .where(d.c.id.in_(ids), d.c.state == QUEUED, d.c.home_channel == channel)
            .values(channel=channel, home_channel=None, reason=reason, updated_at=now)
        )
        _insert_history(
            conn, [_history_row(x, FAILBACK, away, now, next_channel=channel) for x, away in chunk]
        )
    return len(found)


def record_retries(conn: sa.Connection, delivery_ids: Sequence[int], *, now: float) -> None:
    """A history row for each of these ended deliveries about to be retried: the outcome it had."""
    for i in range(0, len(delivery_ids), _CHUNK):
        rows = conn.execute(
            sa.select(d.c.id, d.c.channel, d.c.state, d.c.reason, d.c.error_code).where(
                d.c.id.in_(list(delivery_ids[i : i + _CHUNK]))
            )
        ).all()
        _insert_history(
            conn,
            [_history_row(x.id, RETRY, x.channel, now, x.state, x.reason, x.error_code) for x in rows],
        )


def history_for(conn: sa.Connection, delivery_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Each delivery's history, oldest first."""
    out: dict[int, list[dict[str, Any]]] = {}
    for i in range(0, len(delivery_ids), _CHUNK):
        q = (
            sa.select(h.c.delivery_id, h.c.at, h.c.event, h.c.channel, h.c.state, h.c.reason)
            .add_columns(h.c.error_code, h.c.next_channel)
            .where(h.c.delivery_id.in_(list(delivery_ids[i : i + _CHUNK])))
            .order_by(h.c.delivery_id, h.c.id)
        )
        for row in conn.execute(q).mappings():
            item = dict(row)
            out.setdefault(int(item.pop("delivery_id")), []).append(item)
    return out
