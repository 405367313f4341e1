"""The SGIP Sequence Number: the 12 octets of every header that name one command — the sending node's id,
the time it was made (MMDDHHMMSS read as a decimal integer) and a counter, three big-endian unsigned
32-bit integers. A response carries its request's, and a Report names the Submit it reports on by that
Submit's Sequence Number (SubmitSequenceNumber): SGIP has no message id, so this is a segment's carrier id.

This module owns that value (:class:`SequenceNumber`), its octets (:func:`to_bytes`, :func:`from_bytes`),
the text masd stores per segment to match Reports (:func:`to_text`, :func:`from_text`), the SP's node id
(:func:`sp_node_id`) and a counter that hands them out (:class:`Sequencer`).

The stored text is the three integers as 10-digit, zero-padded, unsigned decimals, 30 digits in all,
because: it is lossless and one-to-one with the 12 octets (an unsigned 32-bit integer has at most 10
digits), so a Report's SubmitSequenceNumber matches its Submit's by plain string equality; it is the form
SMSGate prints and SMG operators quote (node id, MMDDHHMMSS, sequence), so the same string can be looked
up in the carrier's records; it is unsigned on purpose — every SP node id (3AAAAQQQQQ, e.g. 3010092008) is
above 2**31, so a signed reading (a Java ``int``) turns it negative and two tools disagree about one
message; and it keeps the timestamp as the integer that was sent, not re-rendered from a date, so a
peer's clock writing month 0 still matches. Unlike CMPP's Msg_Id the SP mints this key itself, before
any response: it must not repeat, so one node id must not reuse a counter value within a second (several
connections or masd nodes sharing a node id take disjoint counters: :class:`Sequencer`'s start and step).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "LENGTH",
    "MAX",
    "SequenceNumber",
    "Sequencer",
    "from_bytes",
    "from_text",
    "sp_node_id",
    "timestamp_of",
    "to_bytes",
    "to_text",
]

LENGTH = 12
MAX = 0xFFFFFFFF  # each of the three parts
_TEXT_LENGTH = 30
_OCTETS = struct.Struct(">III")


@dataclass(frozen=True, slots=True, order=True)
class SequenceNumber:
    """The three parts of a Sequence Number. Only their widths are checked, not the calendar: the peer is
    the authority on its numbers, and a Report must be matched whatever its sender's clock wrote."""

    node_id: int
    timestamp: int  # MMDDHHMMSS as a decimal integer, e.g. 1120203225 for 20 November 20:32:25
    sequence: int

    def __post_init__(self) -> None:
        for name in ("node_id", "timestamp", "sequence"):
            value = getattr(self, name)
            if not 0 <= value <= MAX:
                raise ValueError(f"Sequence Number {name} {value} does not fit 4 octets (0 … {MAX})")


def to_bytes(number: SequenceNumber) -> bytes:
    """The 12 octets on the wire."""
    return _OCTETS.pack(number.node_id, number.timestamp, number.sequence)


def from_bytes(octets: bytes) -> SequenceNumber:
    """The Sequence Number of 12 wire octets; ValueError for any other length."""
    if len(octets) != LENGTH:
        raise ValueError(f"a Sequence Number is {LENGTH} octets, got {len(octets)}")
    return SequenceNumber(*_OCTETS.unpack(octets))


def to_text(number: SequenceNumber) -> str:
    """The carrier id masd stores: 30 digits (see the module's docstring for why)."""
    return f"{number.node_id:010d}{number.timestamp:010d}{number.sequence:010d}"


def from_text(text: str) -> SequenceNumber:
    """The inverse of :func:`to_text`; ValueError for anything but its 30 digits."""
    if not (len(text) == _TEXT_LENGTH and text.isascii() and text.isdigit()):
        raise ValueError(f"a Sequence Number text is 30 digits (node id, time, sequence), got {text!r}")
    return SequenceNumber(int(text[:10]), int(text[10:20]), int(text[20:]))


def timestamp_of(moment: datetime) -> int:
    """The time part for a local time: MMDDHHMMSS read as a decimal integer."""
    return int(moment.strftime("%m%d%H%M%S"))


def sp_node_id(area_code: str, corp_id: str) -> int:
    """An SP's node id by the spec's rule 3AAAAQQQQQ: ``3``, the long-distance area code with its leading
    0 (left-aligned, right-padded with 0 to four digits: 010 → 0100) and the 5-digit corp id. The carrier
    usually states the node id outright; this is for when it gives only the area code and corp id."""
    if not (area_code.isascii() and area_code.isdigit() and 3 <= len(area_code) <= 4):
        raise ValueError(f"an area code is 3 or 4 digits with its leading 0 (010, 0311), got {area_code!r}")
    if not (corp_id.isascii() and corp_id.isdigit() and len(corp_id) == 5):
        raise ValueError(f"a corp id is 5 digits, got {corp_id!r}")
    return int("3" + area_code.ljust(4, "0") + corp_id)


class Sequencer:
    """Hands out one node's Sequence Numbers: ``start``, ``start + step``, … wrapping at 2**32, each with
    the time it is asked at. Connections (or masd nodes) that share a node id use one step and different
    starts, so that their numbers never meet."""

    __slots__ = ("_next", "_step", "node_id")

    def __init__(self, node_id: int, *, start: int = 1, step: int = 1) -> None:
        SequenceNumber(node_id, 0, start)  # checks both widths
        if not 1 <= step <= MAX:
            raise ValueError(f"step {step} must be 1 … {MAX}")
        self.node_id = node_id
        self._next = start
        self._step = step

    def next(self, moment: datetime) -> SequenceNumber:
        number = SequenceNumber(self.node_id, timestamp_of(moment), self._next)
        self._next = (self._next + self._step) & MAX
        return number
