"""The CMPP Msg_Id: a 64-bit number the ISMG gives each SUBMIT in its SUBMIT_RESP and repeats in the
status report, packed as month 4 | day 5 | hour 5 | minute 6 | second 6 | ISMG code 22 | sequence 16 bits
(most significant first) and sent as 8 big-endian octets.

This module owns that layout (:class:`MsgId`, :func:`pack`, :func:`unpack`) and the text form masd stores
as a segment's carrier id (:func:`to_text`, :func:`from_text`). The text is the decimal of the *unsigned*
64-bit integer, because: it is lossless and one-to-one with the 8 octets, so a report's Msg_Id matches its
SUBMIT_RESP's by plain string equality; it is what most SP implementations and ISMG logs show (gocmpp,
for one, hands out a uint64); and it is unsigned on purpose — any month from 8 on sets bit 63, so the
signed reading (a Java ``long``, an SQL ``BIGINT``) turns half the year's ids negative and two tools then
disagree about the same message. SMSGate's 22-digit "MMDDHHMMSS + 7-digit ISMG + 5-digit sequence" is a
readable view, offered here as :meth:`MsgId.readable` for logs, never as the key.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX", "MsgId", "from_bytes", "from_text", "pack", "to_bytes", "to_text", "unpack"]

MAX = (1 << 64) - 1

# (name, width in bits), most significant first; the widths add up to 64.
_FIELDS = (
    ("month", 4),
    ("day", 5),
    ("hour", 5),
    ("minute", 6),
    ("second", 6),
    ("ismg_code", 22),
    ("sequence", 16),
)


@dataclass(frozen=True, slots=True)
class MsgId:
    """The seven fields of a Msg_Id. Only the widths are checked, not the calendar: the ISMG is the
    authority on its ids, and a report must be matched even when a gateway's clock wrote month 0."""

    month: int
    day: int
    hour: int
    minute: int
    second: int
    ismg_code: int
    sequence: int

    def __post_init__(self) -> None:
        for name, width in _FIELDS:
            value = getattr(self, name)
            if not 0 <= value < 1 << width:
                raise ValueError(f"Msg_Id {name} {value} does not fit {width} bits (0 … {(1 << width) - 1})")

    def readable(self) -> str:
        """MMDDHHMMSS, the ISMG code (7 digits) and the sequence (5 digits), as SMSGate prints it."""
        return (
            f"{self.month:02d}{self.day:02d}{self.hour:02d}{self.minute:02d}{self.second:02d}"
            f"{self.ismg_code:07d}{self.sequence:05d}"
        )


def pack(msg_id: MsgId) -> int:
    """The 64-bit value of ``msg_id``."""
    value = 0
    for name, width in _FIELDS:
        value = (value << width) | getattr(msg_id, name)
    return value


def unpack(value: int) -> MsgId:
    """The fields of a 64-bit Msg_Id; ValueError for a value outside 0 … 2**64 - 1."""
    _check(value)
    fields: dict[str, int] = {}
    shift = 64
    for name, width in _FIELDS:
        shift -= width
        fields[name] = (value >> shift) & ((1 << width) - 1)
    return MsgId(**fields)


def to_bytes(value: int) -> bytes:
    """The 8 octets of a Msg_Id on the wire (big-endian)."""
    _check(value)
    return value.to_bytes(8, "big")


def from_bytes(octets: bytes) -> int:
    """The value of 8 wire octets; ValueError for any other length."""
    if len(octets) != 8:
        raise ValueError(f"a Msg_Id is 8 octets, got {len(octets)}")
    return int.from_bytes(octets, "big")


def to_text(value: int) -> str:
    """The carrier id masd stores: the unsigned decimal (see the module's docstring for why)."""
    _check(value)
    return str(value)


def from_text(text: str) -> int:
    """The inverse of :func:`to_text`; ValueError for anything but the canonical decimal of a 64-bit value."""
    if not (text.isascii() and text.isdigit() and 1 <= len(text) <= 20):
        raise ValueError(f"a Msg_Id text is the decimal of an unsigned 64-bit integer, got {text!r}")
    value = int(text)
    _check(value)
    if text != str(value):
        # One value, one text: "007" and "7" must not become two carrier ids for one message.
        raise ValueError(f"a Msg_Id text has no leading zeros, got {text!r}")
    return value


def _check(value: int) -> None:
    if not 0 <= value <= MAX:
        raise ValueError(f"a Msg_Id is an unsigned 64-bit integer, got {value}")
