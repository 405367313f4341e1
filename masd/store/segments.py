"""Segments sent again whole: what earlier attempts put on the wire stays, as history only.

An operator's retry, a resend after a failed receipt and a move to another channel (failover) send a
delivery again from its first part; the segments recorded before are marked ``superseded``, so that the
next claim sends every part again and a late receipt for an old part decides nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from masd.store.tables import segments as s

__all__ = ["SUPERSEDED", "supersede_segments"]

# A segment replaced by a later attempt: kept as history, never counted, and sent again with the rest.
SUPERSEDED = "superseded"


def supersede_segments(conn: sa.Connection, delivery_ids: Sequence[int]) -> None:
    """The deliveries are sent again whole: their recorded segments stay as history only."""
    if delivery_ids:
        conn.execute(
            sa.update(s)
            .where(s.c.delivery_id.in_(list(delivery_ids)), s.c.state != SUPERSEDED)
            .values(state=SUPERSEDED)
        )
