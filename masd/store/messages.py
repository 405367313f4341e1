"""Messages and their deliveries: storing accepted work, looking it up, and operator actions on it.

Acceptance writes a message and one delivery per recipient in the same transaction, so a request is
stored whole or not at all. A ``client_ref`` is unique per app: submitting it again returns the message
already stored instead of a second one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from masd.core.states import FINAL_VALUES, DeliveryState
from masd.store import limits
from masd.store import resends as resend_store
from masd.store._bulk import executemany
from masd.store._final import finalise_where
from masd.store.limits import Charge, Over
from masd.store.segments import supersede_segments
from masd.store.tables import app_usage as u
from masd.store.tables import deliveries as d
from masd.store.tables import messages as m
from masd.store.tables import receipts as r
from masd.store.tables import segments as s

__all__ = [
    "NewDelivery",
    "NewMessage",
    "cancel",
    "get_message",
    "insert_messages",
    "list_deliveries",
    "retry",
]


@dataclasses.dataclass(frozen=True, slots=True)
class NewDelivery:
    recipient: str
    channel: str
    segments: int
    concat_ref: int
    extension: str = ""
    max_resends: int = 0  # resends after a failed receipt (the app's or the channel's count)
    home_channel: str | None = None  # routed to a channel in failover: the channel it goes back to


@dataclasses.dataclass(frozen=True, slots=True)
class NewMessage:
    text: str
    encoding: str
    interface: str
    priority: int
    expires_at: float
    max_attempts: int
    deliveries: Sequence[NewDelivery]
    app_id: int | None = None
    client_ref: str | None = None
    send_at: float | None = None
    notify: bool = False  # write an app event when each delivery ends


@dataclasses.dataclass(frozen=True, slots=True)
class Inserted:
    message_id: int
    created: bool  # False: the client_ref was already stored, and this is that message


_DELIVERY_COLUMNS = (
    "message_id",
    "recipient",
    "extension",
    "channel",
    "state",
    "priority",
    "not_before",
    "expires_at",
    "attempts",
    "max_attempts",
    "segments",
    "seg_delivered",
    "concat_ref",
    "recovered",
    "created_at",
    "updated_at",
    "max_resends",
    "home_channel",
)


_MESSAGE_COLUMNS = (
    "id",
    "app_id",
    "interface",
    "client_ref",
    "text",
    "encoding",
    "priority",
    "send_at",
    "expires_at",
    "created_at",
    "notify",
)


def _insert_messages_with_ids() -> sa.ClauseElement:
    return sa.insert(m).values({c: sa.bindparam(c) for c in _MESSAGE_COLUMNS})


def _insert_deliveries() -> sa.ClauseElement:
    return sa.insert(d).values({c: sa.bindparam(c) for c in _DELIVERY_COLUMNS})


def insert_messages(conn: sa.Connection, items: Sequence[NewMessage], *, now: float) -> list[Inserted]:
    """Store messages with their deliveries; answer with each one's id, in order."""
    existing: dict[tuple[int | None, str], int] = {}
    refs = [(i.app_id, i.client_ref) for i in items if i.client_ref is not None]
    if refs:
        for app_id in {a for a, _ in refs}:
            wanted = [c for a, c in refs if a == app_id]
            cond = m.c.app_id.is_(None) if app_id is None else m.c.app_id == app_id
            for mid, cref in conn.execute(
                sa.select(m.c.id, m.c.client_ref).where(cond, m.c.client_ref.in_(wanted))
            ):
                existing[(app_id, cref)] = mid
    out: list[Inserted | None] = []
    fresh: list[NewMessage] = []
    seen_in_batch: dict[tuple[int | None, str], int] = {}
    for i, item in enumerate(items):
        key = (item.app_id, item.client_ref) if item.client_ref is not None else None
        if key is not None and key in existing:
            out.append(Inserted(existing[key], False))
        elif key is not None and key in seen_in_batch:
            out.append(None)  # filled in below with the first one's id
        else:
            if key is not None:
                seen_in_batch[key] = i
            out.append(None)
            fresh.append(item)
    if fresh:
        msg_rows = [
            {
                "app_id": x.app_id,
                "interface": x.interface,
                "client_ref": x.client_ref,
                "text": x.text,
                "encoding": x.encoding,
                "priority": x.priority,
                "send_at": x.send_at,
                "expires_at": x.expires_at,
                "created_at": now,
                "notify": 1 if x.notify else 0,
            }
            for x in fresh
        ]
        ids: Sequence[int]
        if conn.dialect.name == "sqlite":
            # SQLite runs an INSERT … RETURNING once per row. It has one writer and this transaction holds
            # the write lock (BEGIN IMMEDIATE), so the next ids are ours to hand out.
            top = conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM messages").scalar_one()
            ids = range(top + 1, top + 1 + len(msg_rows))
            for mid, row in zip(ids, msg_rows, strict=True):
                row["id"] = mid
            executemany(conn, "insert_messages_with_ids", _insert_messages_with_ids, msg_rows)
        else:
            ids = (
                conn.execute(sa.insert(m).returning(m.c.id, sort_by_parameter_order=True), msg_rows)
                .scalars()
                .all()
            )
        rows: list[dict[str, Any]] = []
        for mid, x in zip(ids, fresh, strict=True):
            for dl in x.deliveries:
                rows.append(
                    {
                        "message_id": mid,
                        "recipient": dl.recipient,
                        "extension": dl.extension,
                        "channel": dl.channel,
                        "state": DeliveryState.QUEUED.value,
                        "priority": x.priority,
                        "not_before": x.send_at if x.send_at is not None else now,
                        "expires_at": x.expires_at,
                        "attempts": 0,
                        "max_attempts": x.max_attempts,
                        "segments": dl.segments,
                        "seg_delivered": 0,
                        "concat_ref": dl.concat_ref,
                        "recovered": 0,
                        "created_at": now,
                        "updated_at": now,
                        "max_resends": dl.max_resends,
                        "home_channel": dl.home_channel,
                    }
                )
        executemany(conn, "insert_deliveries", _insert_deliveries, rows)
        it = iter(ids)
        by_key: dict[tuple[int | None, str], int] = {}
        for idx, item in enumerate(items):
            if out[idx] is not None:
                continue
            key = (item.app_id, item.client_ref) if item.client_ref is not None else None
            if key is not None and key in by_key:
                out[idx] = Inserted(by_key[key], False)
                continue
            mid = next(it)
            if key is not None:
                by_key[key] = mid
            out[idx] = Inserted(mid, True)
    return [o for o in out if o is not None]


def existing_refs(conn: sa.Connection, app_id: int, refs: Sequence[str]) -> set[str]:
    """Which of these client references the app has stored already."""
    found: set[str] = set()
    for i in range(0, len(refs), 500):
        chunk = list(refs[i : i + 500])
        q = sa.select(m.c.client_ref).where(m.c.app_id == app_id, m.c.client_ref.in_(chunk))
        found.update(conn.execute(q).scalars())
    return found


def usage_on(conn: sa.Connection, app_id: int, day: str) -> int:
    """Recipients the app had accepted on that local day."""
    v = conn.execute(
        sa.select(u.c.recipients).where(u.c.app_id == app_id, u.c.day == day)
    ).scalar_one_or_none()
    return int(v or 0)


def insert_message_items(
    conn: sa.Connection, items: Sequence[tuple[Sequence[NewMessage], float, Charge | None]]
) -> list[list[Inserted] | Over]:
    """Batch handler for :meth:`Database.write_item`: several requests' messages in one insert. A
    request with a :class:`~masd.store.limits.Charge` is stored only if its app's rate and quota have
    room for it (charged here, in this transaction); otherwise its answer is the :class:`Over` and
    nothing of it is stored."""
    out: list[list[Inserted] | Over | None] = [None] * len(items)
    admitted = list(range(len(items)))
    charged = [i for i, (_, _, c) in enumerate(items) if c is not None]
    if charged:
        known = _stored_refs(conn, [m for i in charged for m in items[i][0]])
        # One app's charges in turn, apps in id order: transactions of several nodes lock alike.
        for i in sorted(charged, key=lambda i: (items[i][2].app_id, i)):  # type: ignore[union-attr]
            batch, now, c = items[i]
            assert c is not None
            cost = sum(
                len(x.deliveries)
                for x in batch
                if x.client_ref is None or (x.app_id, x.client_ref) not in known
            )
            over = limits.charge(conn, c, cost, now=now)
            if over is not None:
                out[i] = over
        admitted = [i for i in admitted if out[i] is None]
    flat = [m for i in admitted for m in items[i][0]]
    if flat:
        done = insert_messages(conn, flat, now=max(items[i][1] for i in admitted))
        at = 0
        for i in admitted:
            n = len(items[i][0])
            out[i] = done[at : at + n]
            at += n
    return [o if o is not None else [] for o in out]


def _stored_refs(conn: sa.Connection, items: Sequence[NewMessage]) -> set[tuple[int | None, str]]:
    """(app id, client_ref) of these messages that are already stored: a repeat costs nothing again."""
    found: set[tuple[int | None, str]] = set()
    by_app: dict[int, list[str]] = {}
    for x in items:
        if x.app_id is not None and x.client_ref is not None:
            by_app.setdefault(x.app_id, []).append(x.client_ref)
    for app_id, refs in by_app.items():
        found.update((app_id, ref) for ref in existing_refs(conn, app_id, refs))
    return found


def get_message(conn: sa.Connection, message_id: int, *, app_id: int | None = None) -> dict[str, Any] | None:
    """A message with each delivery, its segments (``segment_list``) and what happened before its
    current attempt (``history``, :mod:`masd.store.resends`); None if absent (or another app's)."""
    cond: sa.ColumnElement[bool] = m.c.id == message_id
    if app_id is not None:
        cond = sa.and_(cond, m.c.app_id == app_id)
    msg = conn.execute(sa.select(m).where(cond)).mappings().first()
    if msg is None:
        return None
    dels = [
        dict(x)
        for x in conn.execute(sa.select(d).where(d.c.message_id == message_id).order_by(d.c.id)).mappings()
    ]
    by_id = {x["id"]: x for x in dels}
    for x in dels:
        x["segment_list"] = []
    if dels:
        seg_rows = conn.execute(
            sa.select(s).where(s.c.delivery_id.in_(list(by_id))).order_by(s.c.delivery_id, s.c.id)
        ).mappings()
        for seg in seg_rows:
            by_id[seg["delivery_id"]]["segment_list"].append(dict(seg))
    history = resend_store.history_for(conn, list(by_id))
    for x in dels:
        x["history"] = history.get(x["id"], [])
    out = dict(msg)
    out["deliveries"] = dels
    return out


def receipts_for(conn: sa.Connection, segment_ids: Sequence[int]) -> list[dict[str, Any]]:
    if not segment_ids:
        return []
    return [
        dict(x) for x in conn.execute(sa.select(r).where(r.c.segment_id.in_(list(segment_ids)))).mappings()
    ]


def list_deliveries(
    conn: sa.Connection,
    *,
    states: Sequence[str] = (),
    channel: str | None = None,
    limit: int = 50,
    after_id: int = 0,
) -> list[dict[str, Any]]:
    q = sa.select(
        d.c.id,
        d.c.message_id,
        d.c.recipient,
        d.c.channel,
        d.c.state,
        d.c.reason,
        d.c.priority,
        d.c.attempts,
        d.c.not_before,
        d.c.created_at,
        d.c.updated_at,
    ).where(d.c.id > after_id)
    if states:
        q = q.where(d.c.state.in_(list(states)))
    if channel:
        q = q.where(d.c.channel == channel)
    return [dict(x) for x in conn.execute(q.order_by(d.c.id).limit(limit)).mappings()]


def state_counts(conn: sa.Connection) -> dict[str, int]:
    return {st: n for st, n in conn.execute(sa.select(d.c.state, sa.func.count()).group_by(d.c.state))}


def counts_of(conn: sa.Connection, message_id: int) -> dict[str, int]:
    """The message's deliveries per state."""
    q = sa.select(d.c.state, sa.func.count()).where(d.c.message_id == message_id).group_by(d.c.state)
    return {str(st): int(n) for st, n in conn.execute(q)}


def owns(conn: sa.Connection, message_id: int, app_id: int) -> bool:
    """Whether the message exists and belongs to the app."""
    found = conn.execute(sa.select(m.c.id).where(m.c.id == message_id, m.c.app_id == app_id)).first()
    return found is not None


def cancel(
    conn: sa.Connection,
    *,
    delivery_ids: Sequence[int] = (),
    message_id: int | None = None,
    now: float,
    reason: str = "cancelled by operator",
) -> int:
    """Cancel deliveries still waiting in the queue. Ones already handed to a carrier cannot be."""
    cond: sa.ColumnElement[bool] = d.c.state == DeliveryState.QUEUED.value
    if message_id is not None and delivery_ids:
        cond = sa.and_(cond, sa.or_(d.c.message_id == message_id, d.c.id.in_(list(delivery_ids))))
    elif message_id is not None:
        cond = sa.and_(cond, d.c.message_id == message_id)
    else:
        cond = sa.and_(cond, d.c.id.in_(list(delivery_ids)))
    return finalise_where(
        conn,
        cond,
        {
            "state": DeliveryState.CANCELLED.value,
            "reason": reason,
            "updated_at": now,
            "done_at": now,
        },
        now=now,
    )


def retry(
    conn: sa.Connection,
    *,
    delivery_ids: Sequence[int] = (),
    states: Sequence[str] = (),
    message_id: int | None = None,
    now: float,
    validity: float | None,
    reason: str = "retried by operator",
) -> int:
    """Put ended-but-unsuccessful deliveries back in the queue with fresh attempts, resends and
    validity: ``validity`` seconds from now, or with None the message's own validity period again.
    What each had ended with stays in its history."""
    retriable = [
        x for x in FINAL_VALUES if x not in (DeliveryState.DELIVERED.value, DeliveryState.CANCELLED.value)
    ]
    cond: sa.ColumnElement[bool] = d.c.state.in_(
        [x for x in states if x in retriable] if states else retriable
    )
    if delivery_ids:
        cond = sa.and_(cond, d.c.id.in_(list(delivery_ids)))
    if message_id is not None:
        cond = sa.and_(cond, d.c.message_id == message_id)
    q = sa.select(d.c.id).where(cond)
    if conn.dialect.name != "sqlite":
        q = q.with_for_update()
    ids = list(conn.execute(q).scalars())
    if not ids:
        return 0
    # Sent again whole: what earlier attempts recorded stays as history, not as parts already sent.
    supersede_segments(conn, ids)
    resend_store.record_retries(conn, ids, now=now)
    expires: Any
    if validity is not None:
        expires = now + validity
    else:
        start = sa.case((m.c.send_at > m.c.created_at, m.c.send_at), else_=m.c.created_at)
        period = sa.select(m.c.expires_at - start).where(m.c.id == d.c.message_id).scalar_subquery()
        expires = now + period
    return (
        conn.execute(
            sa.update(d)
            .where(d.c.id.in_(ids), cond)
            .values(
                state=DeliveryState.QUEUED.value,
                reason=reason,
                error_code=None,
                attempts=0,
                seg_delivered=0,
                resends=0,
                not_before=now,
                expires_at=expires,
                updated_at=now,
                done_at=None,
            )
        ).rowcount
        or 0
    )
