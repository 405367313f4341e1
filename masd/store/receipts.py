"""Receipts: storing what carriers report and rolling segment outcomes up into the delivery.

A receipt names a carrier message id. If a segment with that id on that channel is known, the receipt
moves the segment to its final state and the delivery follows: delivered once every segment is
delivered, otherwise the first segment that failed decides (undelivered, expired or rejected) — unless
the channel's resend policy sends the delivery again (:mod:`masd.store.resends`). If no
segment is known yet — the receipt overtook its own submit response — the receipt is stored "held"
(``segment_id`` NULL) and applied when the submit response is recorded.

With several nodes on one database a receipt can arrive at one node while another records the submit:
each transaction is blind to the other's uncommitted row, and the receipt stays held though its
segment is known by the time both commit. :func:`held_now_known` finds those, and housekeeping applies
them with :func:`apply_held` (SQLite, one writer at a time, has no such race).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from masd.core.states import DeliveryState, delivery_state_for_segment_failure
from masd.store import events
from masd.store import resends as resend_store
from masd.store._bulk import MAX_IN, executemany, in_params, select_in
from masd.store.tables import deliveries as d
from masd.store.tables import receipts as r
from masd.store.tables import segments as s

__all__ = [
    "HeldReceipts",
    "IncomingReceipt",
    "ReceiptItem",
    "ReceiptOutcome",
    "apply_held",
    "held_now_known",
    "latest_receipt_id",
    "store_receipt_items",
    "store_receipts",
]

FINAL_SEGMENT = frozenset({"delivered", "undelivered", "expired", "rejected", "deleted", "unknown"})
SUBMITTED = DeliveryState.SUBMITTED.value


@dataclasses.dataclass(frozen=True, slots=True)
class IncomingReceipt:
    carrier_id: str
    status: str
    error_code: int | None = None
    raw: str = ""


class HeldReceipts:
    """Carrier ids of the receipts this process stored as held, so that recording a submit outcome asks
    the database for waiting receipts only when one may be there.

    Only trustworthy where this process stores every receipt — SQLite, which one machine's masd owns.
    With PostgreSQL or MariaDB another node may hold a receipt for our segment, so there every record
    asks. The set is a hint: a stale entry costs a query, never a wrong answer."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self._ids: set[tuple[str, str]] = set()
        self.overflowed = False  # too many orphans to track: ask every time, as without the hint

    def add(self, channel: str, carrier_id: str) -> None:
        if len(self._ids) >= self.LIMIT:
            self.overflowed = True
            self._ids.clear()
        if not self.overflowed:
            self._ids.add((channel, carrier_id))

    def waiting(self, channel: str, carrier_ids: Sequence[str]) -> list[str]:
        if self.overflowed:
            return list(carrier_ids)
        return [c for c in carrier_ids if (channel, c) in self._ids]

    def applied(self, channel: str, carrier_ids: Sequence[str]) -> None:
        for c in carrier_ids:
            self._ids.discard((channel, c))


@dataclasses.dataclass(frozen=True, slots=True)
class ReceiptItem:
    channel: str
    receipt: IncomingReceipt
    now: float
    held: HeldReceipts | None = None
    resend: resend_store.ResendPolicy | None = None  # the channel's; None: a failure is final


@dataclasses.dataclass(frozen=True, slots=True)
class ReceiptOutcome:
    carrier_id: str
    segment_id: int | None  # None: held until its submit response is recorded
    delivery_id: int | None
    delivery_state: str | None  # the delivery's state if this receipt made it final
    resent_to: str | None = None  # the channel it was queued on again, if this receipt failed it


def store_receipts(
    conn: sa.Connection, *, channel: str, items: Sequence[IncomingReceipt], now: float
) -> list[ReceiptOutcome]:
    return store_receipt_items(conn, [ReceiptItem(channel, i, now) for i in items])


class _Segment(NamedTuple):
    id: int
    carrier_id: str
    delivery_id: int
    state: str
    seq: int
    total: int


@dataclasses.dataclass(slots=True)
class _Hit:
    segment: _Segment
    status: str
    error_code: int | None
    now: float
    channel: str
    resend: resend_store.ResendPolicy | None
    segment_id: int = dataclasses.field(init=False)
    delivery_id: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.segment_id = self.segment.id
        self.delivery_id = self.segment.delivery_id


_RECEIPT_COLUMNS = ("channel", "carrier_id", "segment_id", "status", "error_code", "raw", "received_at")


def _insert_receipts() -> sa.ClauseElement:
    return sa.insert(r).values({c: sa.bindparam(c) for c in _RECEIPT_COLUMNS})


def _segments_query(locking: bool) -> Callable[[int], sa.ClauseElement]:
    def build(n: int) -> sa.ClauseElement:
        q = (
            sa.select(s.c.id, s.c.carrier_id, s.c.delivery_id, s.c.state, s.c.seq, s.c.total)
            .where(s.c.channel == sa.bindparam("b_channel"), s.c.carrier_id.in_(in_params(n)))
            .order_by(s.c.id)
        )
        # Another node may apply a receipt for the same delivery at the same time; SQLite has one writer.
        return q.with_for_update() if locking else q

    return build


def _segments(conn: sa.Connection, channel: str, carrier_ids: Sequence[str]) -> dict[str, _Segment]:
    """The segments these carrier ids name on this channel, locked, with what applying a receipt needs.
    If a carrier reused an id, the latest segment wins."""
    locking = conn.dialect.name != "sqlite"
    rows = select_in(
        conn,
        "receipt_segments_locked" if locking else "receipt_segments_select",
        _segments_query(locking),
        sorted(carrier_ids),
        {"b_channel": channel},
    )
    # Chunks come back each in id order; sort them all so that the latest segment of an id wins.
    if len(carrier_ids) > MAX_IN:
        rows.sort(key=lambda row: row[0])
    return {row[1]: _Segment._make(row) for row in rows}


def store_receipt_items(conn: sa.Connection, items: Sequence[ReceiptItem]) -> list[ReceiptOutcome]:
    """Store a batch of receipts and apply them, in a handful of statements whatever the batch size."""
    if not items:
        return []
    wanted: dict[str, set[str]] = {}
    for it in items:
        wanted.setdefault(it.channel, set()).add(it.receipt.carrier_id)
    known = {channel: _segments(conn, channel, list(ids)) for channel, ids in wanted.items()}
    rows: list[dict[str, Any]] = []
    hits: list[_Hit | None] = []
    for it in items:
        rec = it.receipt
        hit = known[it.channel].get(rec.carrier_id)
        rows.append(
            {
                "channel": it.channel,
                "carrier_id": rec.carrier_id,
                "segment_id": hit.id if hit else None,
                "status": rec.status,
                "error_code": rec.error_code,
                "raw": rec.raw[:2000] if rec.raw else None,
                "received_at": it.now,
            }
        )
        hits.append(_Hit(hit, rec.status, rec.error_code, it.now, it.channel, it.resend) if hit else None)
        if hit is None and it.held is not None:
            it.held.add(it.channel, rec.carrier_id)
    executemany(conn, "insert_receipts", _insert_receipts, rows)
    applied = _apply_many(conn, hits)
    return [
        ReceiptOutcome(
            it.receipt.carrier_id, h.segment_id if h else None, h.delivery_id if h else None, st, to
        )
        for it, h, (st, to) in zip(items, hits, applied, strict=True)
    ]


def apply_held(
    conn: sa.Connection,
    *,
    channel: str,
    carrier_ids: Sequence[str],
    now: float,
    resend: resend_store.ResendPolicy | None = None,
) -> int:
    """Apply receipts that arrived before these carrier ids were known. Returns how many."""
    if not carrier_ids:
        return 0
    held = select_in(
        conn,
        "held_receipts",
        lambda n: (
            sa.select(r.c.id, r.c.carrier_id, r.c.status, r.c.error_code)
            .where(
                r.c.channel == sa.bindparam("b_channel"),
                r.c.segment_id.is_(None),
                r.c.carrier_id.in_(in_params(n)),
            )
            .order_by(r.c.id)
        ),
        sorted(set(carrier_ids)),
        {"b_channel": channel},
    )
    if not held:
        return 0
    held.sort(key=lambda row: row[0])  # oldest first across chunks
    segs = _segments(conn, channel, list({h[1] for h in held}))
    hits: list[_Hit | None] = []
    links = []
    for receipt_id, carrier_id, status, error_code in held:
        hit = segs.get(carrier_id)
        if hit is None:
            continue
        links.append({"b_id": receipt_id, "b_segment_id": hit.id})
        hits.append(_Hit(hit, status, error_code, now, channel, resend))
    if links:
        executemany(
            conn,
            "link_held_receipts",
            lambda: (
                sa.update(r)
                .where(r.c.id == sa.bindparam("b_id"))
                .values(segment_id=sa.bindparam("b_segment_id"))
            ),
            links,
        )
        _apply_many(conn, hits)
    return len(links)


def latest_receipt_id(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(r.c.id), 0))).scalar_one())


def held_now_known(conn: sa.Connection, *, after_id: int, up_to: int) -> dict[str, list[str]]:
    """The held receipts with ids in (``after_id``, ``up_to``] whose carrier id now names a segment on
    their channel: channel → carrier ids, for :func:`apply_held`. Receipts are walked by id, so a sweep
    reads only those that came in since it last looked."""
    segment_known = (
        sa.select(s.c.id).where(s.c.channel == r.c.channel, s.c.carrier_id == r.c.carrier_id).exists()
    )
    rows = conn.execute(
        sa.select(r.c.channel, r.c.carrier_id)
        .where(r.c.id > after_id, r.c.id <= up_to, r.c.segment_id.is_(None), segment_known)
        .order_by(r.c.id)
    ).all()
    out: dict[str, list[str]] = {}
    for channel, carrier_id in rows:
        out.setdefault(str(channel), []).append(str(carrier_id))
    return out


def _apply_many(conn: sa.Connection, hits: Sequence[_Hit | None]) -> list[tuple[str | None, str | None]]:
    """Move segments to their final states and roll their deliveries up. Returns, per hit, the
    delivery's new final state if that receipt decided it, and the channel it was queued on again if
    the receipt failed it and it is resent instead."""
    out: list[tuple[str | None, str | None]] = [(None, None)] * len(hits)
    live = [(i, h) for i, h in enumerate(hits) if h is not None and h.status in FINAL_SEGMENT]
    if not live:
        return out
    # A segment's state as this batch leaves it: two receipts for one segment apply only the first.
    seg_state = {h.segment_id: h.segment.state for _, h in live}
    seg_updates: list[dict[str, Any]] = []
    finalised: list[tuple[int, _Hit]] = []
    for i, h in live:
        if seg_state.get(h.segment_id) != "submitted":
            continue  # a repeated receipt for a segment already decided
        seg_state[h.segment_id] = h.status
        seg_updates.append(
            {"b_id": h.segment_id, "b_state": h.status, "b_error": h.error_code, "b_at": h.now}
        )
        finalised.append((i, h))
    if not seg_updates:
        return out
    executemany(
        conn,
        "receipt_segments",
        lambda: (
            sa.update(s)
            .where(s.c.id == sa.bindparam("b_id"))
            .values(
                state=sa.bindparam("b_state"),
                error_code=sa.bindparam("b_error", type_=sa.Integer),
                receipt_at=sa.bindparam("b_at"),
            )
        ),
        seg_updates,
    )
    del_ids = list({h.delivery_id for _, h in finalised})
    locking = conn.dialect.name != "sqlite"

    def build(n: int) -> sa.ClauseElement:
        q = sa.select(
            d.c.id, d.c.state, d.c.segments, d.c.seg_delivered, d.c.resends, d.c.max_resends, d.c.expires_at
        ).where(d.c.id.in_(in_params(n)))
        return q.with_for_update() if locking else q

    dels = {
        row[0]: list(row[1:])
        for row in select_in(
            conn, "receipt_deliveries_locked" if locking else "receipt_deliveries_select", build, del_ids
        )
    }
    changed: dict[int, dict[str, Any]] = {}
    resending: dict[int, tuple[int, resend_store.Failed, resend_store.ResendPolicy, float]] = {}
    for i, h in finalised:
        cur = dels.get(h.delivery_id)
        if cur is None or cur[0] != SUBMITTED:
            continue
        if h.status != "delivered":
            code = f", error code {h.error_code}" if h.error_code is not None else ""
            seg = h.segment
            failed = resend_store.Failed(
                delivery_id=h.delivery_id,
                channel=h.channel,
                state=delivery_state_for_segment_failure(h.status).value,
                reason=f"carrier receipt for segment {seg.seq}/{seg.total}: {h.status}{code}",
                error_code=h.error_code,
                resends=cur[3],
                max_resends=cur[4],
                expires_at=cur[5],
            )
            if h.resend is not None and resend_store.wants_resend(failed, h.resend, h.now):
                # Sent again instead of ended: what earlier receipts of this batch counted is undone
                # with it (the resend starts from no segment delivered).
                cur[0] = resend_store.QUEUED
                changed.pop(h.delivery_id, None)
                resending[h.delivery_id] = (i, failed, h.resend, h.now)
                continue
        upd = changed.setdefault(
            h.delivery_id, {"b_id": h.delivery_id, "b_reason": None, "b_done": None, "b_code": None}
        )
        upd["b_at"] = h.now
        if h.status == "delivered":
            cur[2] += 1
            if cur[2] >= cur[1]:
                cur[0] = DeliveryState.DELIVERED.value
                upd["b_done"] = h.now
                out[i] = (cur[0], None)
        else:
            code = f", error code {h.error_code}" if h.error_code is not None else ""
            cur[0] = delivery_state_for_segment_failure(h.status).value
            seg = h.segment
            upd["b_reason"] = f"carrier receipt for segment {seg.seq}/{seg.total}: {h.status}{code}"
            upd["b_code"] = h.error_code
            upd["b_done"] = h.now
            out[i] = (cur[0], None)
        upd["b_state"] = cur[0]
        upd["b_seg"] = cur[2]
    if changed:
        executemany(
            conn,
            "receipt_deliveries",
            lambda: (
                sa.update(d)
                .where(d.c.id == sa.bindparam("b_id"))
                .values(
                    state=sa.bindparam("b_state"),
                    seg_delivered=sa.bindparam("b_seg"),
                    reason=sa.func.coalesce(sa.bindparam("b_reason", type_=sa.String), d.c.reason),
                    error_code=sa.func.coalesce(sa.bindparam("b_code", type_=sa.Integer), d.c.error_code),
                    done_at=sa.bindparam("b_done", type_=sa.Double),
                    updated_at=sa.bindparam("b_at"),
                )
            ),
            list(changed.values()),
        )
        done = [u["b_id"] for u in changed.values() if u["b_done"] is not None]
        if done:
            events.record_final(conn, done, now=max(h.now for _, h in finalised))
    if resending:
        now = max(at for _, _, _, at in resending.values())
        queued = resend_store.resend(conn, [(f, p) for _, f, p, _ in resending.values()], now=now)
        for r in queued:
            out[resending[r.delivery_id][0]] = (None, r.channel)
    return out
