"""Replies: storing what handsets sent, with where routing sent it, and reading them back.

Reading by cursor (``after``, as ``GET /v1/replies?after=`` does) never hands on a reply above one that
may still commit, so a client's cursor never skips a reply (see :mod:`masd.store.settled`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from masd.store import events, settled
from masd.store.tables import deliveries as d
from masd.store.tables import messages as m
from masd.store.tables import replies as rp

__all__ = ["answered", "disown", "insert_reply", "latest_delivery", "list_replies", "reroute"]

_COLUMNS = (
    rp.c.id,
    rp.c.channel,
    rp.c.sender,
    rp.c.destination,
    rp.c.extension,
    rp.c.text,
    rp.c.received_at,
    rp.c.app_id,
    rp.c.matched_by,
    rp.c.delivery_id,
)


def latest_delivery(
    conn: sa.Connection, sender: str, *, since: float, extension: str | None = None, app_id: int | None = None
) -> tuple[int, int | None] | None:
    """The most recent delivery to ``sender`` created since ``since`` (optionally sent with this exact
    extension, or for this app): (delivery id, its message's app id)."""
    q = (
        sa.select(d.c.id, m.c.app_id)
        .select_from(d.join(m, m.c.id == d.c.message_id))
        .where(d.c.recipient == sender, d.c.created_at >= since)
        .order_by(d.c.id.desc())
        .limit(1)
    )
    if extension is not None:
        q = q.where(d.c.extension == extension)
    if app_id is not None:
        q = q.where(m.c.app_id == app_id)
    row = conn.execute(q).first()
    return (int(row.id), row.app_id) if row else None


def insert_reply(
    conn: sa.Connection,
    *,
    channel: str,
    sender: str,
    destination: str,
    text: str,
    now: float,
    app_id: int | None,
    matched_by: str,
    extension: str,
    delivery_id: int | None,
) -> int:
    """Store a reply and, when it has an owner, the owner's event — in one transaction."""
    reply_id = conn.execute(
        sa.insert(rp)
        .values(
            channel=channel,
            sender=sender,
            destination=destination,
            text=text,
            received_at=now,
            app_id=app_id,
            matched_by=matched_by,
            extension=extension,
            delivery_id=delivery_id,
        )
        .returning(rp.c.id)
    ).scalar_one()
    if app_id is not None:
        events.record_reply(conn, app_id=app_id, reply_id=int(reply_id), now=now)
    return int(reply_id)


def list_replies(
    conn: sa.Connection,
    *,
    app_id: int | None = None,
    unmatched: bool = False,
    after: int = 0,
    limit: int = 100,
    since: float | None = None,
    settle: float = settled.SETTLE_SECONDS,
) -> list[dict[str, Any]]:
    """Replies oldest first after the id ``after`` (a cursor), for one app, or those nobody owns; none
    above an id that may still commit."""
    check = settled.needs_check(conn)
    q = sa.select(*_COLUMNS).where(rp.c.id > after).order_by(rp.c.id).limit(limit)
    if unmatched:
        q = q.where(rp.c.app_id.is_(None))
    elif app_id is not None:
        q = q.where(rp.c.app_id == app_id)
    if since is not None:
        q = q.where(rp.c.received_at >= since)
    if not check:
        return [dict(x) for x in conn.execute(q).mappings()]
    found = conn.execute(q.add_columns(settled.is_old(conn, rp, settle).label("old"))).all()
    below = settled.safe_below(
        conn, rp, after=after, candidates=[(r.id, bool(r.old)) for r in found], settle=settle
    )
    if below is not None:
        return [dict(x) for x in conn.execute(q.where(rp.c.id < below)).mappings()]
    return [{k: v for k, v in x._mapping.items() if k != "old"} for x in found]


def answered(conn: sa.Connection, delivery_ids: list[int]) -> dict[int, tuple[int, str | None]]:
    """Delivery id → (message id, client_ref) of the messages that replies to these deliveries answer."""
    rows = conn.execute(
        sa.select(d.c.id, m.c.id, m.c.client_ref)
        .select_from(d.join(m, m.c.id == d.c.message_id))
        .where(d.c.id.in_(delivery_ids))
    )
    return {int(did): (int(mid), ref) for did, mid, ref in rows}


def disown(conn: sa.Connection, reply_id: int, *, app_id: int) -> bool:
    """The owning app says the reply is not for it (e.g. a stranger answered a meeting notice): it
    becomes unmatched, listed by ``masd replies --unmatched``."""
    res = conn.execute(
        sa.update(rp).where(rp.c.id == reply_id, rp.c.app_id == app_id).values(app_id=None, matched_by="none")
    )
    return bool(res.rowcount)


def reroute(conn: sa.Connection, reply_id: int, *, app_id: int, now: float) -> bool:
    """Give an unmatched reply to an app by hand (``masd replies assign``); the app is told."""
    res = conn.execute(
        sa.update(rp)
        .where(rp.c.id == reply_id, rp.c.app_id.is_(None))
        .values(app_id=app_id, matched_by="manual")
    )
    if not res.rowcount:
        return False
    events.record_reply(conn, app_id=app_id, reply_id=reply_id, now=now)
    return True
