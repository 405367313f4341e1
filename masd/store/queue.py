"""The durable queue: claiming deliveries as leases, recording submit outcomes, returning lost claims.

Every function here takes an open connection inside a transaction and is meant to be handed to
:meth:`masd.store.db.Database.write` (or ``read``), so that many of them share one commit. A claim moves
a delivery to ``submitting`` with ``claimed_by`` and ``lease_until``; that row is the record that a send
may be under way, so after a crash the claim either expires or is returned at start, and the delivery is
sent again (at-least-once: the possible duplicates are exactly the claims returned, counted in
``recovered``). On PostgreSQL and MariaDB claims use ``FOR UPDATE SKIP LOCKED`` so several nodes share one
queue; SQLite has one writer at a time and needs nothing more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from masd.core.states import PENDING_VALUES, DeliveryState, delivery_state_for_segment_failure
from masd.store import events
from masd.store import receipts as receipt_store
from masd.store import resends as resend_store
from masd.store._bulk import change_in, executemany, in_params, select, select_in
from masd.store._final import finalise_where
from masd.store.segments import SUPERSEDED, supersede_segments
from masd.store.tables import deliveries as d
from masd.store.tables import messages as m
from masd.store.tables import segments as s

__all__ = [
    "Claim",
    "ResultItem",
    "SegmentRecord",
    "SubmitResult",
    "claim",
    "pending_count",
    "record_result_items",
    "record_results",
    "release",
    "return_expired_leases",
    "return_node_claims",
    "supersede_segments",
    "sweep_overdue",
]

QUEUED = DeliveryState.QUEUED.value
SUBMITTING = DeliveryState.SUBMITTING.value
SUBMITTED = DeliveryState.SUBMITTED.value


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    delivery_id: int
    message_id: int
    recipient: str
    extension: str
    attempts: int  # including the attempt this claim is for
    max_attempts: int
    expires_at: float
    concat_ref: int
    text: str
    recovered: int
    # Segments an earlier attempt had acknowledged (their seq): only the others are sent again, with the
    # same concatenation reference, so the handset joins the parts of both attempts.
    sent: frozenset[int] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentRecord:
    seq: int
    total: int
    carrier_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitResult:
    """What became of one claimed delivery: submitted, back to the queue, or final. ``segments``: the
    segments this attempt had acknowledged, whatever the state (a delivery sent again later sends only
    the others)."""

    delivery_id: int
    state: DeliveryState
    reason: str | None = None
    not_before: float | None = None
    segments: Sequence[SegmentRecord] = ()
    error_code: int | None = None  # the carrier's status code, when it refused
    uncounted: bool = False  # back to the queue without counting the attempt (the carrier throttled)
    resumed: bool = False  # earlier attempts had acknowledged segments, whose receipts may be in


_SEGMENT_COLUMNS = ("delivery_id", "seq", "total", "channel", "carrier_id", "state", "submitted_at")


def _insert_segments() -> sa.ClauseElement:
    return sa.insert(s).values({c: sa.bindparam(c) for c in _SEGMENT_COLUMNS})


_CLAIMED_COLUMNS = (
    d.c.id,
    d.c.message_id,
    d.c.recipient,
    d.c.extension,
    d.c.attempts,
    d.c.max_attempts,
    d.c.expires_at,
    d.c.concat_ref,
    m.c.text,
    d.c.recovered,
)


def _pick(locking: bool) -> sa.Select[Any]:
    pick = (
        sa.select(d.c.id)
        .where(
            d.c.channel == sa.bindparam("b_channel"),
            d.c.state == QUEUED,
            d.c.not_before <= sa.bindparam("b_now"),
        )
        .order_by(d.c.priority.desc(), d.c.id)
        .limit(sa.bindparam("b_limit", type_=sa.Integer, literal_execute=False))
    )
    return pick.with_for_update(skip_locked=True) if locking else pick


def _state_by_id(sqlite: bool) -> Any:
    """The state column for a condition beside ``id IN (…)``. SQLite's planner, which has no statistics
    here, takes an equality on ``state`` for the more selective term and walks every row of that state
    through ``ix_deliveries_state_lease`` — with 100,000 queued, a claim of 100 took ~25 ms instead of
    ~0.1 ms. SQLite's unary ``+`` keeps the term from choosing an index; the other databases plan by
    statistics and need nothing."""
    return sa.literal_column("+deliveries.state", sa.String) if sqlite else d.c.state


def _take(n: int, sqlite: bool) -> sa.ClauseElement:
    return (
        sa.update(d)
        .where(d.c.id.in_(in_params(n)), _state_by_id(sqlite) == QUEUED)
        .values(
            state=SUBMITTING,
            claimed_by=sa.bindparam("b_node"),
            lease_until=sa.bindparam("b_lease"),
            attempts=d.c.attempts + 1,
            updated_at=sa.bindparam("b_now"),
        )
    )


def _claimed(n: int, sqlite: bool) -> sa.ClauseElement:
    return (
        sa.select(*_CLAIMED_COLUMNS)
        .join(m, m.c.id == d.c.message_id)
        .where(
            d.c.id.in_(in_params(n)),
            d.c.claimed_by == sa.bindparam("b_node"),
            _state_by_id(sqlite) == SUBMITTING,
        )
        .order_by(d.c.priority.desc(), d.c.id)
    )


def _sent_segments(n: int) -> sa.ClauseElement:
    return sa.select(s.c.delivery_id, s.c.seq).where(
        s.c.delivery_id.in_(in_params(n)), s.c.state != SUPERSEDED
    )


def claim(
    conn: sa.Connection, *, channel: str, node: str, now: float, lease: float, limit: int
) -> list[Claim]:
    locking = conn.dialect.name != "sqlite"
    ids = [
        row[0]
        for row in select(
            conn,
            "claim_pick_locked" if locking else "claim_pick",
            lambda: _pick(locking),
            {"b_channel": channel, "b_now": now, "b_limit": limit},
        )
    ]
    if not ids:
        return []
    sqlite = not locking
    change_in(
        conn,
        "claim_take",
        lambda n: _take(n, sqlite),
        ids,
        {"b_node": node, "b_lease": now + lease, "b_now": now},
    )
    rows = select_in(conn, "claim_rows", lambda n: _claimed(n, sqlite), ids, {"b_node": node})
    claims = [Claim(*row) for row in rows]
    # Segments earlier attempts had acknowledged (throttles and crashes leave no other trace that a
    # delivery was tried): one indexed lookup per claim batch, empty for first attempts.
    sent: dict[int, set[int]] = {}
    for delivery_id, seq in select_in(conn, "claim_sent_segments", _sent_segments, ids):
        sent.setdefault(delivery_id, set()).add(seq)
    if not sent:
        return claims
    return [
        dataclasses.replace(c, sent=frozenset(sent[c.delivery_id])) if c.delivery_id in sent else c
        for c in claims
    ]


def release(conn: sa.Connection, *, delivery_ids: Sequence[int], now: float) -> int:
    """Give unsent claims back to the queue (shutdown, or a link that went down before sending)."""
    if not delivery_ids:
        return 0
    res = conn.execute(
        sa.update(d)
        .where(d.c.id.in_(list(delivery_ids)), d.c.state == SUBMITTING)
        .values(state=QUEUED, claimed_by=None, lease_until=None, attempts=d.c.attempts - 1, updated_at=now)
    )
    return res.rowcount or 0


def record_results(
    conn: sa.Connection,
    *,
    channel: str,
    results: Sequence[SubmitResult],
    now: float,
    held: receipt_store.HeldReceipts | None = None,
    resend: resend_store.ResendPolicy | None = None,
) -> int:
    """Write the outcome of a batch of submits; apply any receipts that were waiting for these carrier
    ids (``resend``: the channel's policy for those that fail a delivery). Returns how many held
    receipts were applied."""
    submitted = [r for r in results if r.state == DeliveryState.SUBMITTED]
    requeued = [r for r in results if r.state == DeliveryState.QUEUED]
    final = [r for r in results if r.state not in (DeliveryState.SUBMITTED, DeliveryState.QUEUED)]
    guard = sa.and_(d.c.id == sa.bindparam("b_id"), d.c.state == SUBMITTING)
    if submitted:
        executemany(
            conn,
            "mark_submitted",
            lambda: (
                sa.update(d)
                .where(guard)
                .values(
                    state=SUBMITTED,
                    # The parts this channel split the text into: after a failover or a resend through
                    # another channel they may be more or fewer than the routed channel's.
                    segments=sa.func.coalesce(sa.bindparam("b_total", type_=sa.Integer), d.c.segments),
                    submitted_at=sa.bindparam("b_now"),
                    updated_at=sa.bindparam("b_now"),
                    claimed_by=None,
                    lease_until=None,
                )
            ),
            [
                {"b_id": r.delivery_id, "b_now": now, "b_total": r.segments[0].total if r.segments else None}
                for r in submitted
            ],
        )
    # Every acknowledged segment is recorded, whatever became of its delivery: its receipt will come,
    # and a delivery sent again must not send it twice.
    with_segments = [r for r in results if r.segments]
    if with_segments:
        seg_rows = [
            {
                "delivery_id": r.delivery_id,
                "seq": seg.seq,
                "total": seg.total,
                "channel": channel,
                "carrier_id": seg.carrier_id,
                "state": "submitted",
                "submitted_at": now,
            }
            for r in with_segments
            for seg in r.segments
        ]
        executemany(conn, "insert_segments", _insert_segments, seg_rows)
    if requeued:
        conn.execute(
            sa.update(d)
            .where(guard)
            .values(
                state=QUEUED,
                reason=sa.bindparam("b_reason"),
                not_before=sa.bindparam("b_not_before"),
                attempts=d.c.attempts - sa.bindparam("b_undo", type_=sa.Integer),
                claimed_by=None,
                lease_until=None,
                updated_at=now,
            ),
            [
                {
                    "b_id": r.delivery_id,
                    "b_reason": r.reason,
                    "b_not_before": r.not_before,
                    "b_undo": 1 if r.uncounted else 0,
                }
                for r in requeued
            ],
        )
    if final:
        conn.execute(
            sa.update(d)
            .where(guard)
            .values(
                state=sa.bindparam("b_state"),
                reason=sa.bindparam("b_reason"),
                error_code=sa.bindparam("b_code", type_=sa.Integer),
                attempts=d.c.attempts - sa.bindparam("b_undo", type_=sa.Integer),
                claimed_by=None,
                lease_until=None,
                updated_at=now,
                done_at=now,
            ),
            [
                {
                    "b_id": r.delivery_id,
                    "b_state": r.state.value,
                    "b_reason": r.reason,
                    "b_code": r.error_code,
                    "b_undo": 1 if r.uncounted else 0,
                }
                for r in final
            ],
        )
        events.record_final(conn, [r.delivery_id for r in final], now=now)
    n = 0
    if with_segments:
        carrier_ids = [seg.carrier_id for r in with_segments for seg in r.segments]
        if held is not None:
            carrier_ids = held.waiting(channel, carrier_ids)
        if carrier_ids:
            n = receipt_store.apply_held(
                conn, channel=channel, carrier_ids=carrier_ids, now=now, resend=resend
            )
            if held is not None:
                held.applied(channel, carrier_ids)
    resumed = [r.delivery_id for r in submitted if r.resumed]
    if resumed:
        _roll_up(conn, resumed, channel=channel, now=now, resend=resend)
    return n


def _roll_up(
    conn: sa.Connection,
    delivery_ids: Sequence[int],
    *,
    channel: str,
    now: float,
    resend: resend_store.ResendPolicy | None,
) -> None:
    """Deliveries just submitted whose earlier segments may already have receipts (those applied while
    the delivery waited to send the rest only marked their segments): decide them from all segments,
    a failure as a receipt would (resent if the policy says so)."""
    by_delivery: dict[int, list[tuple[int, int, str, int | None]]] = {}
    for delivery_id, seq, total, state, code in conn.execute(
        sa.select(s.c.delivery_id, s.c.seq, s.c.total, s.c.state, s.c.error_code).where(
            s.c.delivery_id.in_(list(delivery_ids)), s.c.state != SUPERSEDED
        )
    ):
        by_delivery.setdefault(delivery_id, []).append((seq, total, state, code))
    limits = {
        row.id: row
        for row in conn.execute(
            sa.select(d.c.id, d.c.resends, d.c.max_resends, d.c.expires_at).where(
                d.c.id.in_(list(by_delivery))
            )
        )
    }
    finals: list[int] = []
    resending: list[tuple[resend_store.Failed, resend_store.ResendPolicy]] = []
    for delivery_id, segs in by_delivery.items():
        delivered = sum(1 for _, _, state, _ in segs if state == "delivered")
        failed = next(
            (seg for seg in segs if seg[2] in receipt_store.FINAL_SEGMENT and seg[2] != "delivered"), None
        )
        values: dict[str, Any] = {"seg_delivered": delivered, "updated_at": now}
        if failed is not None:
            seq, total, state, code = failed
            reason = f"carrier receipt for segment {seq}/{total}: {state}" + (
                f", error code {code}" if code is not None else ""
            )
            lim = limits[delivery_id]
            failure = resend_store.Failed(
                delivery_id,
                channel,
                delivery_state_for_segment_failure(state).value,
                reason,
                code,
                lim.resends,
                lim.max_resends,
                lim.expires_at,
            )
            if resend is not None and resend_store.wants_resend(failure, resend, now):
                resending.append((failure, resend))
                continue
            values.update(state=failure.state, reason=reason, error_code=code, done_at=now)
        elif delivered >= segs[0][1]:
            values.update(state=DeliveryState.DELIVERED.value, done_at=now)
        hit = conn.execute(
            sa.update(d).where(d.c.id == delivery_id, d.c.state == SUBMITTED).values(**values)
        ).rowcount
        if hit and "done_at" in values:
            finals.append(delivery_id)
    if finals:
        events.record_final(conn, finals, now=now)
    resend_store.resend(conn, resending, now=now)


@dataclasses.dataclass(frozen=True, slots=True)
class ResultItem:
    channel: str
    result: SubmitResult
    now: float
    held: receipt_store.HeldReceipts | None = None
    resend: resend_store.ResendPolicy | None = None


def record_result_items(conn: sa.Connection, items: Sequence[ResultItem]) -> list[int]:
    """Batch handler for :meth:`Database.write_item`: the outcomes of many submits in a few statements."""
    by_channel: dict[str, list[ResultItem]] = {}
    for it in items:
        by_channel.setdefault(it.channel, []).append(it)
    for channel, its in by_channel.items():
        record_results(
            conn,
            channel=channel,
            results=[i.result for i in its],
            now=max(i.now for i in its),
            held=its[0].held,
            resend=its[0].resend,
        )
    return [0] * len(items)


def return_node_claims(conn: sa.Connection, *, node: str, now: float) -> int:
    """At start: this node's earlier process is gone, so its claims go back to the queue at once."""
    return _return(conn, sa.and_(d.c.state == SUBMITTING, d.c.claimed_by == node), now)


def return_expired_leases(conn: sa.Connection, *, now: float) -> int:
    """Claims whose lease ran out (their node died) go back to the queue."""
    return _return(conn, sa.and_(d.c.state == SUBMITTING, d.c.lease_until < now), now)


def _return(conn: sa.Connection, where: sa.ColumnElement[bool], now: float) -> int:
    # The attempt that was under way is not counted against the delivery: whether it reached the
    # carrier is unknown, and that uncertainty is what `recovered` records.
    res = conn.execute(
        sa.update(d)
        .where(where)
        .values(
            state=QUEUED,
            claimed_by=None,
            lease_until=None,
            not_before=now,
            attempts=sa.case((d.c.attempts > 0, d.c.attempts - 1), else_=0),
            recovered=d.c.recovered + 1,
            updated_at=now,
        )
    )
    return res.rowcount or 0


def sweep_overdue(conn: sa.Connection, *, now: float, receipt_timeout: float) -> dict[str, int]:
    """End what can no longer succeed: queued past validity, submitted with no receipt for too long."""
    expired = finalise_where(
        conn,
        sa.and_(d.c.state == QUEUED, d.c.expires_at < now),
        {
            "state": DeliveryState.EXPIRED.value,
            "reason": "validity period ended before it could be sent",
            "updated_at": now,
            "done_at": now,
        },
        now=now,
    )
    no_receipt = finalise_where(
        conn,
        sa.and_(d.c.state == SUBMITTED, d.c.submitted_at < now - receipt_timeout),
        {
            "state": DeliveryState.EXPIRED.value,
            "reason": f"no delivery receipt within {int(receipt_timeout)} s of submission",
            "updated_at": now,
            "done_at": now,
        },
        now=now,
    )
    return {"expired_in_queue": expired, "no_receipt": no_receipt}


def pending_count(conn: sa.Connection) -> int:
    """Deliveries not yet final: what the queue limit counts."""
    return int(
        conn.execute(
            sa.select(sa.func.count()).select_from(d).where(d.c.state.in_(PENDING_VALUES))
        ).scalar_one()
    )
