"""Webhook progress in the store: each app's ``webhook`` cursor, the events parked after every attempt
failed, and the requests to send parked events again.

The webhook sender (:mod:`masd.interfaces.webhooks`) and ``masd webhooks`` read and write through these
functions; each takes an open connection and is handed to :meth:`masd.store.db.Database.read` or
``write``. A parked event is a row of ``webhook_parked`` with the attempts it failed; ``attempts = 0``
(:data:`RETRY_REQUESTED`) marks one someone asked to send again, which the sender sends before the
app's next new event. The cursor is the consumer :data:`CONSUMER` of ``event_cursors``, moved forward
only (:func:`masd.store.events.set_cursor`) and, under a job lease, only by the node that holds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from masd.store import events as event_store
from masd.store import jobs as job_store
from masd.store.jobs import Fence
from masd.store.tables import app_events, apps, event_cursors, webhook_parked

__all__ = [
    "CONSUMER",
    "RETRY_REQUESTED",
    "apps_with_webhooks",
    "list_parked",
    "move_cursor",
    "not_parked",
    "park",
    "pending",
    "repark",
    "request_retry",
    "retries_requested",
    "skip_to_latest",
    "unpark",
    "webhook_status",
]

CONSUMER = "webhook"  # this consumer's name in event_cursors
RETRY_REQUESTED = 0  # attempts of a parked row someone asked to send again (a parked row has >= 1)
ERROR_LENGTH = 512  # characters of an error kept with a parked event (the column's size)


# ----- which apps have a webhook ------------------------------------------------------------------------


def apps_with_webhooks(conn: sa.Connection) -> list[dict[str, Any]]:
    """The live apps with a ``webhook_url``: the columns an app's webhook task needs (an ``App`` row)."""
    rows = conn.execute(
        sa.select(
            apps.c.id,
            apps.c.name,
            apps.c.channels,
            apps.c.rate,
            apps.c.quota_per_day,
            apps.c.extension,
            apps.c.webhook_url,
            apps.c.webhook_secret,
        ).where(apps.c.webhook_url.is_not(None), apps.c.webhook_url != "", apps.c.revoked_at.is_(None))
    ).mappings()
    return [dict(r) for r in rows]


# ----- an app's progress ----------------------------------------------------------------------------------


def pending(
    conn: sa.Connection, app_id: int, *, limit: int
) -> tuple[list[tuple[int, int]], int, list[dict[str, Any]]]:
    """What an app's webhook task has to do, in one read for the common case of nothing: (the retries
    requested, as :func:`retries_requested`; the cursor; up to ``limit`` events past it)."""
    cursor = event_store.get_cursor(conn, app_id, CONSUMER)
    batch = event_store.read_events(conn, app_id, after=cursor, limit=limit)
    return retries_requested(conn, app_id), cursor, batch


def move_cursor(conn: sa.Connection, app_id: int, event_id: int, *, now: float, fence: Fence | None) -> None:
    """Move the app's webhook cursor to ``event_id``. Under a job lease (``fence``) it first checks the
    lease is still this node's: :class:`masd.store.jobs.LeaseLost` otherwise, and the transaction moves
    nothing."""
    if fence is not None:
        job_store.check(conn, fence)
    event_store.set_cursor(conn, app_id, CONSUMER, event_id, now=now)


def skip_to_latest(conn: sa.Connection, app_id: int, *, now: float) -> int:
    """Move the app's webhook cursor past every event written so far; returns the new cursor."""
    latest = event_store.latest_event_id(conn, app_id)
    event_store.set_cursor(conn, app_id, CONSUMER, latest, now=now)
    return latest


def webhook_status(conn: sa.Connection) -> list[dict[str, Any]]:
    """Each app with a webhook or parked events: its URL, cursor, latest event, events not yet sent
    and parked events."""
    cursor = (
        sa.select(event_cursors.c.last_event_id)
        .where(event_cursors.c.app_id == apps.c.id, event_cursors.c.consumer == CONSUMER)
        .scalar_subquery()
    )
    parked = (
        sa.select(sa.func.count())
        .select_from(webhook_parked)
        .where(webhook_parked.c.app_id == apps.c.id)
        .scalar_subquery()
    )
    rows = conn.execute(
        sa.select(
            apps.c.id,
            apps.c.name,
            apps.c.webhook_url,
            apps.c.revoked_at,
            sa.func.coalesce(cursor, 0).label("cursor"),
            parked.label("parked"),
        ).order_by(apps.c.id)
    ).mappings()
    out = []
    for r in rows:
        if not r["webhook_url"] and not r["parked"]:
            continue
        app_id = int(r["id"])
        latest = event_store.latest_event_id(conn, app_id)
        behind = event_store.count_after(conn, app_id, int(r["cursor"]))
        out.append(
            {
                "app": r["name"],
                "webhook_url": r["webhook_url"] or None,
                "active": bool(r["webhook_url"]) and r["revoked_at"] is None,
                "cursor": int(r["cursor"]),
                "latest_event": latest,
                "behind": int(behind),
                "parked": int(r["parked"]),
            }
        )
    return out


# ----- parked events --------------------------------------------------------------------------------------


def park(conn: sa.Connection, *, app_id: int, event_id: int, attempts: int, error: str, now: float) -> int:
    """Keep an event every attempt failed for; ``masd webhooks retry`` can send it again."""
    return int(
        conn.execute(
            sa.insert(webhook_parked)
            .values(
                app_id=app_id,
                event_id=event_id,
                attempts=attempts,
                last_error=error[:ERROR_LENGTH],
                parked_at=now,
            )
            .returning(webhook_parked.c.id)
        ).scalar_one()
    )


def repark(conn: sa.Connection, parked_id: int, *, attempts: int, error: str, now: float) -> None:
    """A parked event sent again failed again: keep it, with this try's attempts and error."""
    conn.execute(
        sa.update(webhook_parked)
        .where(webhook_parked.c.id == parked_id)
        .values(attempts=attempts, last_error=error[:ERROR_LENGTH], parked_at=now)
    )


def unpark(conn: sa.Connection, parked_id: int) -> None:
    """A parked event was sent (or no longer exists): forget it."""
    conn.execute(sa.delete(webhook_parked).where(webhook_parked.c.id == parked_id))


def retries_requested(conn: sa.Connection, app_id: int) -> list[tuple[int, int]]:
    """(parked id, event id) of this app's parked events marked to be sent again, oldest event first."""
    rows = conn.execute(
        sa.select(webhook_parked.c.id, webhook_parked.c.event_id)
        .where(webhook_parked.c.app_id == app_id, webhook_parked.c.attempts == RETRY_REQUESTED)
        .order_by(webhook_parked.c.event_id)
    )
    return [(int(r.id), int(r.event_id)) for r in rows]


def list_parked(
    conn: sa.Connection, *, app_id: int | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Parked events, oldest first, with their app's name, the event's type, and whether a retry of
    each was requested and not yet made."""
    q = (
        sa.select(
            webhook_parked.c.id,
            apps.c.name.label("app"),
            webhook_parked.c.event_id,
            app_events.c.kind.label("type"),
            webhook_parked.c.attempts,
            webhook_parked.c.last_error,
            webhook_parked.c.parked_at,
        )
        .select_from(
            webhook_parked.join(apps, apps.c.id == webhook_parked.c.app_id).outerjoin(
                app_events, app_events.c.id == webhook_parked.c.event_id
            )
        )
        .order_by(webhook_parked.c.id)
    )
    if app_id is not None:
        q = q.where(webhook_parked.c.app_id == app_id)
    if limit is not None:
        q = q.limit(limit)
    out = []
    for r in conn.execute(q).mappings():
        row = dict(r)
        row["retry_requested"] = row["attempts"] == RETRY_REQUESTED
        out.append(row)
    return out


def not_parked(conn: sa.Connection, ids: Sequence[int], *, app_id: int | None = None) -> list[int]:
    """Those of ``ids`` that name no parked event (of the app, when one is given), in the order given."""
    if not ids:
        return []
    q = sa.select(webhook_parked.c.id).where(webhook_parked.c.id.in_(list(ids)))
    if app_id is not None:
        q = q.where(webhook_parked.c.app_id == app_id)
    known = {int(x) for x in conn.execute(q).scalars()}
    return [i for i in ids if i not in known]


def request_retry(conn: sa.Connection, *, ids: Sequence[int] = (), app_id: int | None = None) -> int:
    """Mark parked events to be sent again (by id, or every one of an app); returns how many."""
    if not ids and app_id is None:
        raise ValueError("name parked events by id, or an app")
    q = sa.update(webhook_parked).where(webhook_parked.c.attempts != RETRY_REQUESTED)
    if ids:
        q = q.where(webhook_parked.c.id.in_(list(ids)))
    if app_id is not None:
        q = q.where(webhook_parked.c.app_id == app_id)
    return conn.execute(q.values(attempts=RETRY_REQUESTED)).rowcount or 0
