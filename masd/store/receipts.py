"""Receipts: storing what carriers report and rolling segment outcomes up into the delivery.

A receipt names a carrier message id. If a segment with that id on that channel is known, the receipt
moves the segment to its final state and the delivery follows: delivered once every segment is
delivered, otherwise the first segment that failed decides (undelivered, expired or rejected). If no
segment is known yet — the receipt overtook its own submit response — the receipt is stored "held"
(``segment_id`` NULL) and applied when the submit response is recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import sqlalchemy as sa

from masd.core.states import DeliveryState, delivery_state_for_segment_failure
from masd.store.tables import deliveries as d
from masd.store.tables import receipts as r
from masd.store.tables import segments as s

__all__ = ["IncomingReceipt", "ReceiptOutcome", "apply_held", "store_receipts"]

FINAL_SEGMENT = frozenset({"delivered", "undelivered", "expired", "rejected", "deleted", "unknown"})
SUBMITTED = DeliveryState.SUBMITTED.value


@dataclasses.dataclass(frozen=True, slots=True)
class IncomingReceipt:
    carrier_id: str
    status: str
    error_code: int | None = None
    raw: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class ReceiptOutcome:
    carrier_id: str
    segment_id: int | None  # None: held until its submit response is recorded
    delivery_id: int | None
    delivery_state: str | None  # the delivery's state if this receipt made it final


def store_receipts(
    conn: sa.Connection, *, channel: str, items: Sequence[IncomingReceipt], now: float
) -> list[ReceiptOutcome]:
    if not items:
        return []
    ids = list({i.carrier_id for i in items})
    known: dict[str, tuple[int, int]] = {}
    for seg_id, carrier_id, delivery_id in conn.execute(
        sa.select(s.c.id, s.c.carrier_id, s.c.delivery_id)
        .where(s.c.channel == channel, s.c.carrier_id.in_(ids))
        .order_by(s.c.id)
    ):
        known[carrier_id] = (seg_id, delivery_id)  # the latest segment wins if a carrier reused an id
    outcomes: list[ReceiptOutcome] = []
    rows = []
    for item in items:
        hit = known.get(item.carrier_id)
        rows.append(
            {
                "channel": channel,
                "carrier_id": item.carrier_id,
                "segment_id": hit[0] if hit else None,
                "status": item.status,
                "error_code": item.error_code,
                "raw": item.raw[:2000] if item.raw else None,
                "received_at": now,
            }
        )
        if hit is None:
            outcomes.append(ReceiptOutcome(item.carrier_id, None, None, None))
            continue
        state = _apply(conn, segment_id=hit[0], delivery_id=hit[1], receipt=item, now=now)
        outcomes.append(ReceiptOutcome(item.carrier_id, hit[0], hit[1], state))
    conn.execute(sa.insert(r), rows)
    return outcomes


def apply_held(conn: sa.Connection, *, channel: str, carrier_ids: Sequence[str], now: float) -> int:
    """Apply receipts that arrived before these carrier ids were known. Returns how many."""
    if not carrier_ids:
        return 0
    held = conn.execute(
        sa.select(r.c.id, r.c.carrier_id, r.c.status, r.c.error_code)
        .where(r.c.channel == channel, r.c.segment_id.is_(None), r.c.carrier_id.in_(list(carrier_ids)))
        .order_by(r.c.id)
    ).all()
    if not held:
        return 0
    segs = {
        carrier_id: (seg_id, delivery_id)
        for seg_id, carrier_id, delivery_id in conn.execute(
            sa.select(s.c.id, s.c.carrier_id, s.c.delivery_id).where(
                s.c.channel == channel, s.c.carrier_id.in_([h.carrier_id for h in held])
            )
        )
    }
    applied = 0
    for h in held:
        hit = segs.get(h.carrier_id)
        if hit is None:
            continue
        conn.execute(sa.update(r).where(r.c.id == h.id).values(segment_id=hit[0]))
        _apply(
            conn,
            segment_id=hit[0],
            delivery_id=hit[1],
            receipt=IncomingReceipt(h.carrier_id, h.status, h.error_code),
            now=now,
        )
        applied += 1
    return applied


def _apply(
    conn: sa.Connection, *, segment_id: int, delivery_id: int, receipt: IncomingReceipt, now: float
) -> str | None:
    """Move one segment to its final state and roll the delivery up; return the delivery's new final
    state if this receipt decided it."""
    if receipt.status not in FINAL_SEGMENT:
        return None  # intermediate (accepted, enroute): kept in receipts, changes nothing
    changed = conn.execute(
        sa.update(s)
        .where(s.c.id == segment_id, s.c.state == "submitted")
        .values(state=receipt.status, error_code=receipt.error_code, receipt_at=now)
    ).rowcount
    if not changed:
        return None  # a repeated receipt for a segment already decided
    if receipt.status == "delivered":
        # `state` is assigned before `seg_delivered` so that MySQL, which evaluates SET clauses left to
        # right with the new values, computes the same result as PostgreSQL and SQLite.
        done = d.c.seg_delivered + 1 >= d.c.segments
        res = conn.execute(
            sa.update(d)
            .where(d.c.id == delivery_id, d.c.state == SUBMITTED)
            .ordered_values(
                (d.c.state, sa.case((done, DeliveryState.DELIVERED.value), else_=d.c.state)),
                (d.c.done_at, sa.case((done, now), else_=d.c.done_at)),
                (d.c.seg_delivered, d.c.seg_delivered + 1),
                (d.c.updated_at, now),
            )
        )
        if not res.rowcount:
            return None
        state = conn.execute(sa.select(d.c.state).where(d.c.id == delivery_id)).scalar_one()
        return str(state) if state == DeliveryState.DELIVERED.value else None
    final = delivery_state_for_segment_failure(receipt.status)
    seq, total = conn.execute(sa.select(s.c.seq, s.c.total).where(s.c.id == segment_id)).one()
    code = f", error code {receipt.error_code}" if receipt.error_code is not None else ""
    res = conn.execute(
        sa.update(d)
        .where(d.c.id == delivery_id, d.c.state == SUBMITTED)
        .values(
            state=final.value,
            reason=f"carrier receipt for segment {seq}/{total}: {receipt.status}{code}",
            done_at=now,
            updated_at=now,
        )
    )
    return final.value if res.rowcount else None
