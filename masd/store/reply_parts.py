"""Long replies part by part: each part of a concatenated MO kept as it arrives, the reply handed over once.

A driver acknowledges a part to the SMSC only once it is stored here, so a restart between the parts of
a long reply loses none of them: parts stored before it are completed by parts arriving after it, on
any bind, process or node of the same database. The core (``masd.core.gateway``) calls
:func:`add_part` for each part and :func:`take_expired` from the channel's timer; in the same
transaction it joins what they hand over (:func:`masd.core.reply_parts.join`) and stores the reply, so
the reply is stored exactly once, as the parts are deleted.

The parts are kept as raw bytes with the name of the codec that reads them, and joined by the core
rather than by the driver or here: decoding must see the joined bytes (a character may straddle two
parts), and bytes plus a codec name can be joined after a restart without the driver that received
them. This module knows nothing of codings; it keeps bytes and decides when a reply is whole.

Each call first locks the reply's row in ``reply_assemblies`` (creating it if need be), so parts of one
reply that arrive at the same moment (two binds, two nodes, a resend racing the original) take turns,
and exactly one of them finds the set complete. After a hand-over the row stays for the length of the
timeout with a digest of each part, so that a part the SMSC sends again because it missed our
deliver_sm_resp is recognised and dropped rather than opening a new, bogus reply; a part that differs
(a handset reusing its reference for a new message) starts a new one.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from masd.store.tables import reply_assemblies as ra
from masd.store.tables import reply_parts as rp

__all__ = ["HandedOver", "add_part", "has_expired", "take_expired"]

_EXPIRE_BATCH = 500  # replies given up on in one transaction at most; the rest at the next tick


@dataclasses.dataclass(frozen=True, slots=True)
class HandedOver:
    """A long reply leaving the store: every part, or what arrived of it once the wait was given up."""

    channel: str
    sender: str
    destination: str
    total: int
    parts: dict[int, tuple[str, bytes]]  # seq → (codec, body)
    first_seen: float

    @property
    def complete(self) -> bool:
        return len(self.parts) == self.total


def add_part(
    conn: sa.Connection,
    *,
    channel: str,
    sender: str,
    destination: str,
    reference: str,
    total: int,
    seq: int,
    codec: str,
    body: bytes,
    received_at: float,
    now: float,
) -> list[HandedOver]:
    """Store one part; what it completes, to be stored as replies in this transaction.

    That is the whole reply when this part was the last one missing. It is also, first, the reply that
    held this reference until now with another ``total``: the reference was reused for a new message
    before the old one completed, so the old one leaves with its gaps. Nothing is handed over when the
    part is held, repeats a part held (the first copy stands), or is a late copy of a part of a reply
    handed over within the timeout.
    """
    if not 1 <= seq <= total:
        raise ValueError(f"part {seq} of {total}: seq must be from 1 to total")
    head = _lock(conn, channel, sender, destination, reference, total, received_at)
    out: list[HandedOver] = []
    if head.handed_over_at is not None:
        if head.total == total and _digest_at(head.digests, seq) == _digest(body):
            return out
        head = _reopen(conn, head, total, received_at)
    elif head.total != total:
        out.append(_hand_over(conn, head, _parts_of(conn, [head.id]).get(head.id, {}), now))
        head = _reopen(conn, head, total, received_at)
    held = _parts_of(conn, [head.id]).get(head.id, {})
    if seq in held:
        return out
    conn.execute(
        sa.insert(rp).values(assembly_id=head.id, seq=seq, codec=codec, body=body, received_at=received_at)
    )
    held[seq] = (codec, body)
    if len(held) >= total:
        out.append(_hand_over(conn, head, held, now))
    return out


def has_expired(conn: sa.Connection, *, channel: str, older_than: float) -> bool:
    """Whether :func:`take_expired` has anything to do: a cheap read, so that a timer ticking every
    second does not take the write lock for nothing."""
    q = (
        sa.select(ra.c.id)
        .where(
            ra.c.channel == channel,
            ra.c.first_seen < older_than,
            sa.or_(ra.c.handed_over_at.is_(None), ra.c.handed_over_at < older_than),
        )
        .limit(1)
    )
    return conn.execute(q).first() is not None


def take_expired(
    conn: sa.Connection, *, channel: str, older_than: float, now: float, limit: int = _EXPIRE_BATCH
) -> list[HandedOver]:
    """The replies of ``channel`` still incomplete whose first part came before ``older_than``, with what
    arrived of them, oldest first (at most ``limit``); and the memory of replies handed over before
    ``older_than`` is dropped."""
    heads = list(
        conn.execute(
            sa.select(ra)
            .where(ra.c.channel == channel, ra.c.first_seen < older_than, ra.c.handed_over_at.is_(None))
            .order_by(ra.c.first_seen, ra.c.id)
            .limit(limit)
            .with_for_update()
        )
    )
    parts = _parts_of(conn, [h.id for h in heads])
    out = [_hand_over(conn, head, parts.get(head.id, {}), now) for head in heads]
    conn.execute(
        sa.delete(ra).where(
            ra.c.channel == channel, ra.c.first_seen < older_than, ra.c.handed_over_at < older_than
        )
    )
    return out


# -- the steps ---------------------------------------------------------------------------------------


def _lock(
    conn: sa.Connection,
    channel: str,
    sender: str,
    destination: str,
    reference: str,
    total: int,
    first_seen: float,
) -> Any:
    """The reply's row, locked until the transaction ends; created when this is its first part."""
    key = (
        ra.c.channel == channel,
        ra.c.sender == sender,
        ra.c.destination == destination,
        ra.c.reference == reference,
    )
    for _ in range(3):
        # A locking read sees the latest committed row whatever the isolation level.
        row = conn.execute(sa.select(ra).where(*key).with_for_update()).first()
        if row is not None:
            return row
        # Another transaction may be inserting the same row: then this waits for it and inserts nothing.
        _insert_if_absent(
            conn,
            ra,
            {
                "channel": channel,
                "sender": sender,
                "destination": destination,
                "reference": reference,
                "total": total,
                "first_seen": first_seen,
            },
        )
    # Created and deleted again (by an expiry) twice while we looked: not something that happens.
    raise RuntimeError(f"reply assembly {channel}/{sender}/{destination}/{reference} keeps vanishing")


def _reopen(conn: sa.Connection, head: Any, total: int, first_seen: float) -> Any:
    """Make the reply's row wait for a new message under the same reference."""
    values = {"total": total, "first_seen": first_seen, "handed_over_at": None, "digests": None}
    conn.execute(sa.update(ra).where(ra.c.id == head.id).values(**values))
    return conn.execute(sa.select(ra).where(ra.c.id == head.id)).one()


def _parts_of(conn: sa.Connection, ids: Sequence[int]) -> dict[int, dict[int, tuple[str, bytes]]]:
    """The parts held for each of these replies: id → seq → (codec, body)."""
    out: dict[int, dict[int, tuple[str, bytes]]] = {}
    if not ids:
        return out
    q = sa.select(rp.c.assembly_id, rp.c.seq, rp.c.codec, rp.c.body).where(rp.c.assembly_id.in_(ids))
    for row in conn.execute(q.with_for_update()):
        out.setdefault(int(row.assembly_id), {})[int(row.seq)] = (str(row.codec), bytes(row.body))
    return out


def _hand_over(conn: sa.Connection, head: Any, parts: dict[int, tuple[str, bytes]], now: float) -> HandedOver:
    """Delete the reply's parts and remember their digests; the reply as it leaves."""
    conn.execute(sa.delete(rp).where(rp.c.assembly_id == head.id))
    digests = ",".join(_digest(parts[s][1]) if s in parts else "" for s in range(1, head.total + 1))
    conn.execute(sa.update(ra).where(ra.c.id == head.id).values(handed_over_at=now, digests=digests))
    return HandedOver(
        channel=head.channel,
        sender=head.sender,
        destination=head.destination,
        total=int(head.total),
        parts=dict(parts),
        first_seen=float(head.first_seen),
    )


def _digest(body: bytes) -> str:
    # Tells a re-sent part from a new message under a reused reference; not a security measure.
    return hashlib.blake2b(body, digest_size=8).hexdigest()


def _digest_at(digests: str | None, seq: int) -> str | None:
    """The digest kept of part ``seq`` of a reply handed over; None if that part never arrived."""
    found = (digests or "").split(",")
    if seq > len(found):
        return None
    return found[seq - 1] or None


def _insert_if_absent(conn: sa.Connection, table: sa.Table, row: dict[str, object]) -> None:
    """Insert ``row`` unless a row with its unique key exists or is being inserted by another
    transaction (which this then waits for)."""
    name = conn.dialect.name
    stmt: sa.Executable
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table).values(row).on_conflict_do_nothing()
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).values(row).on_conflict_do_nothing()
    elif name in ("mysql", "mariadb"):
        stmt = sa.insert(table).values(row).prefix_with("IGNORE")
    else:
        stmt = sa.insert(table).values(row)
    conn.execute(stmt)
