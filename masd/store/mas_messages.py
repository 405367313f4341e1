"""Which of masd's messages came from which row of an OA's ``api_mt_<code>`` (table ``dbpoll_messages``).

The DB poller (:mod:`masd.interfaces.dbpoll`) notes each message it accepted with the row's interface
code, SM_ID and SRC_ID, so that a receipt goes to that code's ``api_rpt`` with the OA's SM_ID and a
reply sent to a SRC_ID goes to the ``api_mo`` of the code that sent with it. These functions run on
masd's own store (handed to :meth:`masd.store.db.Database.read` or ``write``), not on the OA's database
(:mod:`masd.store.mas`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlalchemy as sa

from masd.store import events as event_store
from masd.store.tables import dbpoll_messages as dm

__all__ = ["consumer", "count", "events_pending", "note", "origins", "sent_with"]


def consumer(code: str) -> str:
    """The name of a code's poller among the consumers of the app's events (``event_cursors``)."""
    return f"dbpoll:{code}"


def note(conn: sa.Connection, code: str, rows: Mapping[int, tuple[int, str]], *, now: float) -> None:
    """Note messages (message id → (SM_ID, SRC_ID)) as taken from this code's api_mt. A message noted
    already is left as it is, so noting a row read again is harmless."""
    have = set(conn.execute(sa.select(dm.c.message_id).where(dm.c.message_id.in_(list(rows)))).scalars())
    new = [
        {"message_id": mid, "code": code, "sm_id": sm_id, "src_id": src_id, "created_at": now}
        for mid, (sm_id, src_id) in rows.items()
        if mid not in have
    ]
    if new:
        conn.execute(sa.insert(dm), new)


def origins(conn: sa.Connection, message_ids: Iterable[int]) -> dict[int, tuple[str, int]]:
    """message id → (interface code, SM_ID) of those of the messages that came from an api_mt row."""
    wanted = list(message_ids)
    if not wanted:
        return {}
    return {
        int(r.message_id): (str(r.code), int(r.sm_id))
        for r in conn.execute(
            sa.select(dm.c.message_id, dm.c.code, dm.c.sm_id).where(dm.c.message_id.in_(wanted))
        )
    }


def sent_with(conn: sa.Connection, code: str, src_ids: Iterable[str]) -> set[str]:
    """Those of the SRC_IDs that this code has sent a message with (a reply to one is this code's)."""
    found: set[str] = set()
    for src_id in src_ids:
        hit = conn.execute(
            sa.select(dm.c.message_id).where(dm.c.code == code, dm.c.src_id == src_id).limit(1)
        ).first()
        if hit is not None:
            found.add(src_id)
    return found


def count(conn: sa.Connection, code: str) -> int:
    """How many messages have come from this code's api_mt (and are still in the store)."""
    return int(conn.execute(sa.select(sa.func.count()).where(dm.c.code == code)).scalar_one())


def events_pending(conn: sa.Connection, app_id: int, code: str) -> int:
    """How many of the app's events lie past the cursor of this code's poller: what it has yet to write
    into the code's api_rpt and api_mo."""
    return event_store.count_after(conn, app_id, event_store.get_cursor(conn, app_id, consumer(code)))
