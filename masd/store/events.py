"""The app event outbox: what each app is to be told, and how far each of its consumers has read.

An event is written in the same transaction as the change it reports — a delivery reaching its final
state (kind ``receipt``, only for messages stored with ``notify``) or a reply routed to the app (kind
``reply``) — so it can neither be lost nor reported for a change that was rolled back. Consumers (the
socket server, the webhook sender, the DB poller) read past their cursor and move it once what they read
is safely handed on: delivery to them is at-least-once, in event order. A reader is never handed an
event above one that may still commit (:mod:`masd.store.settled`), so a cursor never skips an event
whose transaction committed after a later one's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from masd.store import settled
from masd.store._bulk import change_in, executemany, in_params, select_in
from masd.store.tables import app_events as e
from masd.store.tables import deliveries as d
from masd.store.tables import event_cursors as c
from masd.store.tables import messages as m
from masd.store.tables import replies as rp

__all__ = [
    "RECEIPT",
    "REPLY",
    "get_cursor",
    "latest_event_id",
    "prune",
    "read_events",
    "record_final",
    "record_reply",
    "set_cursor",
]

RECEIPT = "receipt"
REPLY = "reply"


def record_final(conn: sa.Connection, delivery_ids: Sequence[int], *, now: float) -> int:
    """Write a receipt event for each of these (just finalised) deliveries whose message asked for one.
    Returns how many were written."""
    if not delivery_ids:
        return 0
    if conn.dialect.name in ("mysql", "mariadb"):
        return _record_final_as_values(conn, sorted(delivery_ids), now=now)

    def build(n: int) -> sa.ClauseElement:
        sel = (
            sa.select(m.c.app_id, sa.literal(RECEIPT), d.c.id, sa.bindparam("b_now", type_=sa.Double))
            .select_from(d.join(m, m.c.id == d.c.message_id))
            .where(d.c.id.in_(in_params(n)), m.c.notify == 1, m.c.app_id.is_not(None))
            .order_by(d.c.id)
        )
        return sa.insert(e).from_select(["app_id", "kind", "delivery_id", "created_at"], sel)

    return change_in(conn, "record_final_events", build, sorted(delivery_ids), {"b_now": now})


def _record_final_as_values(conn: sa.Connection, delivery_ids: Sequence[int], *, now: float) -> int:
    """MariaDB's INSERT … SELECT takes auto-increment ids in growing blocks and leaves the ones it did
    not use as holes, which every reader would wait out (masd.store.settled); a multi-row VALUES takes
    exactly as many ids as it has rows."""
    rows = select_in(
        conn,
        "final_event_apps",
        lambda n: (
            sa.select(m.c.app_id, d.c.id)
            .select_from(d.join(m, m.c.id == d.c.message_id))
            .where(d.c.id.in_(in_params(n)), m.c.notify == 1, m.c.app_id.is_not(None))
            .order_by(d.c.id)
        ),
        delivery_ids,
    )
    seen: set[int] = set()  # an IN list padded by repeating its last value returns that row again
    values = []
    for app_id, delivery_id in rows:
        if delivery_id not in seen:
            seen.add(delivery_id)
            values.append({"app_id": app_id, "kind": RECEIPT, "delivery_id": delivery_id, "created_at": now})
    executemany(
        conn,
        "insert_final_events",
        lambda: sa.insert(e).values(
            app_id=sa.bindparam("app_id"),
            kind=sa.bindparam("kind"),
            delivery_id=sa.bindparam("delivery_id"),
            created_at=sa.bindparam("created_at"),
        ),
        values,
    )
    return len(values)


def record_reply(conn: sa.Connection, *, app_id: int, reply_id: int, now: float) -> None:
    conn.execute(sa.insert(e).values(app_id=app_id, kind=REPLY, reply_id=reply_id, created_at=now))


def latest_event_id(conn: sa.Connection, app_id: int) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(e.c.id), 0)).where(e.c.app_id == app_id)
        ).scalar_one()
    )


def count_after(conn: sa.Connection, app_id: int, after: int) -> int:
    """How many of the app's events lie past ``after`` (a consumer's cursor): what it has yet to hand on."""
    return int(
        conn.execute(
            sa.select(sa.func.count()).select_from(e).where(e.c.app_id == app_id, e.c.id > after)
        ).scalar_one()
    )


def read_events(
    conn: sa.Connection,
    app_id: int,
    *,
    after: int,
    limit: int = 100,
    settle: float = settled.SETTLE_SECONDS,
) -> list[dict[str, Any]]:
    """The app's events after ``after``, oldest first, each with what a consumer needs to report it.
    None above an id that may still commit (``settle``: see :mod:`masd.store.settled`).

    receipt: event, type, message_id, client_ref, delivery_id, recipient, state, reason, error_code,
             done_at, resends (times it was sent again after a failed receipt)
    reply:   event, type, reply_id, sender, destination, extension, text, received_at, matched_by,
             delivery_id and message_id/client_ref of what it answers (if known)
    """
    check = settled.needs_check(conn)
    columns = [e.c.id, e.c.kind, e.c.delivery_id, e.c.reply_id]

    def fetch(after: int, below: int | None = None) -> Sequence[Any]:
        q = sa.select(*columns).where(e.c.app_id == app_id, e.c.id > after).order_by(e.c.id).limit(limit)
        if below is not None:
            q = q.where(e.c.id < below)
        elif check:
            q = q.add_columns(settled.is_old(conn, e, settle).label("old"))
        return conn.execute(q).all()

    while True:
        evs = fetch(after)
        if not evs:
            return []
        if check:
            below = settled.safe_below(
                conn, e, after=after, candidates=[(x.id, bool(x.old)) for x in evs], settle=settle
            )
            if below is not None:
                evs = fetch(after, below)
                if not evs:
                    return []
        out = _payloads(conn, evs)
        if out or len(evs) < limit:
            return out
        # A whole batch of events about purged rows: read on, so a consumer never stalls on them.
        after = evs[-1].id


def _payloads(conn: sa.Connection, evs: Sequence[Any]) -> list[dict[str, Any]]:
    reply_ids = [x.reply_id for x in evs if x.reply_id is not None]
    replies: dict[int, Any] = {}
    if reply_ids:
        replies = {
            row.id: row
            for row in conn.execute(
                sa.select(
                    rp.c.id,
                    rp.c.sender,
                    rp.c.destination,
                    rp.c.extension,
                    rp.c.text,
                    rp.c.received_at,
                    rp.c.matched_by,
                    rp.c.delivery_id,
                    rp.c.channel,
                ).where(rp.c.id.in_(reply_ids))
            )
        }
    delivery_ids = {x.delivery_id for x in evs if x.delivery_id is not None}
    delivery_ids |= {r.delivery_id for r in replies.values() if r.delivery_id is not None}
    dels: dict[int, Any] = {}
    if delivery_ids:
        dels = {
            row.id: row
            for row in conn.execute(
                sa.select(
                    d.c.id,
                    d.c.message_id,
                    d.c.recipient,
                    d.c.state,
                    d.c.reason,
                    d.c.error_code,
                    d.c.done_at,
                    d.c.resends,
                    m.c.client_ref,
                )
                .select_from(d.join(m, m.c.id == d.c.message_id))
                .where(d.c.id.in_(list(delivery_ids)))
            )
        }
    out: list[dict[str, Any]] = []
    for x in evs:
        if x.kind == RECEIPT:
            dl = dels.get(x.delivery_id)
            if dl is None:  # the message was purged since; nothing left to report
                continue
            out.append(
                {
                    "event": x.id,
                    "type": RECEIPT,
                    "message_id": dl.message_id,
                    "client_ref": dl.client_ref,
                    "delivery_id": dl.id,
                    "recipient": dl.recipient,
                    "state": dl.state,
                    "reason": dl.reason,
                    "error_code": dl.error_code,
                    "done_at": dl.done_at,
                    "resends": dl.resends,
                }
            )
        elif x.kind == REPLY:
            r = replies.get(x.reply_id)
            if r is None:
                continue
            ans = dels.get(r.delivery_id) if r.delivery_id is not None else None
            out.append(
                {
                    "event": x.id,
                    "type": REPLY,
                    "reply_id": r.id,
                    "sender": r.sender,
                    "destination": r.destination,
                    "extension": r.extension,
                    "text": r.text,
                    "received_at": r.received_at,
                    "matched_by": r.matched_by,
                    "channel": r.channel,
                    "delivery_id": r.delivery_id,
                    "message_id": ans.message_id if ans else None,
                    "client_ref": ans.client_ref if ans else None,
                }
            )
    return out


def get_cursor(conn: sa.Connection, app_id: int, consumer: str) -> int:
    v = conn.execute(
        sa.select(c.c.last_event_id).where(c.c.app_id == app_id, c.c.consumer == consumer)
    ).scalar_one_or_none()
    return int(v or 0)


def set_cursor(conn: sa.Connection, app_id: int, consumer: str, last_event_id: int, *, now: float) -> None:
    """Move a consumer's cursor forward (never back: a late write from an old connection is ignored)."""
    res = conn.execute(
        sa.update(c)
        .where(c.c.app_id == app_id, c.c.consumer == consumer, c.c.last_event_id < last_event_id)
        .values(last_event_id=last_event_id, updated_at=now)
    )
    if res.rowcount:
        return
    exists = conn.execute(
        sa.select(c.c.last_event_id).where(c.c.app_id == app_id, c.c.consumer == consumer)
    ).first()
    if exists is None:
        conn.execute(
            sa.insert(c).values(app_id=app_id, consumer=consumer, last_event_id=last_event_id, updated_at=now)
        )


def prune(conn: sa.Connection, *, before: float) -> int:
    """Drop events older than the retention period, read or not."""
    return conn.execute(sa.delete(e).where(e.c.created_at < before)).rowcount or 0
