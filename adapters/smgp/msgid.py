"""The SMGP MsgID: the 10 octets the SMGW gives each Submit in its Submit_Resp and repeats in the status
report (and gives each Deliver), packed BCD as SMGW code (3 octets, 6 digits: province area code 3 +
device class 2, "06" for an SMGW, + device number 1) | MMDDHHMM (4 octets) | sequence (3 octets,
000000 … 999999), most significant digit first (SMGP 3.0.3, 6.2.26).

This module owns that layout (:class:`MsgId`, :func:`pack`, :func:`unpack`) and the text form masd stores
as a segment's carrier id (:func:`to_text`, :func:`from_text`). The text is the 20 hex digits of the 10
octets, which for a well-formed id are exactly its 20 BCD digits (the spec's own example prints the id
as ``0x01006101161700012345``), because: it is lossless and one-to-one with the octets, so a report's
MsgID matches its Submit_Resp's by plain string equality; the leading zeros of the SMGW code (Beijing's
area code is 010) survive, which reading the digits as an integer would drop; it is what the carrier's
logs and other SP software show (go_smgp's ``Id.String()`` and SMSGate's MsgId are this hex text), so a
support ticket and masd name a message the same way; and a gateway that writes a nibble above 9 still
gets one stable key (SMSGate keeps such ids as raw octets for that reason), instead of an error that
would lose the report. The PDUs carry the raw 10 octets; only this module reads the digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["LENGTH", "MsgId", "from_text", "pack", "to_text", "unpack"]

LENGTH = 10

# (name, number of BCD digits), most significant first; the digits add up to 20 (10 octets).
_FIELDS = (
    ("smgw_code", 6),
    ("month", 2),
    ("day", 2),
    ("hour", 2),
    ("minute", 2),
    ("sequence", 6),
)
_TEXT = re.compile(r"[0-9a-f]{20}")


@dataclass(frozen=True, slots=True)
class MsgId:
    """The six fields of a MsgID. Only the digit counts are checked, not the calendar: the SMGW is the
    authority on its ids, and a report must be matched even when a gateway's clock wrote month 00."""

    smgw_code: int
    month: int
    day: int
    hour: int
    minute: int
    sequence: int

    def __post_init__(self) -> None:
        for name, digits in _FIELDS:
            value = getattr(self, name)
            if not 0 <= value < 10**digits:
                top = 10**digits - 1
                raise ValueError(f"MsgID {name} {value} does not fit {digits} BCD digits (0 … {top})")

    def digits(self) -> str:
        """The 20 digits, as the spec prints an id (and as :func:`to_text` gives its octets)."""
        return "".join(f"{getattr(self, name):0{width}d}" for name, width in _FIELDS)


def pack(msg_id: MsgId) -> bytes:
    """The 10 BCD octets of ``msg_id``."""
    return bytes.fromhex(msg_id.digits())


def unpack(octets: bytes) -> MsgId:
    """The fields of 10 wire octets; ValueError for another length or a nibble that is not a decimal digit
    (such an id is still a valid key: use :func:`to_text`)."""
    text = to_text(octets)
    if not text.isdigit():
        raise ValueError(f"MsgID {text} is not BCD: a nibble is above 9")
    fields: dict[str, int] = {}
    offset = 0
    for name, width in _FIELDS:
        fields[name] = int(text[offset : offset + width])
        offset += width
    return MsgId(**fields)


def to_text(octets: bytes) -> str:
    """The carrier id masd stores: the 20 (lower-case) hex digits of the octets (see the module's
    docstring for why)."""
    _check(octets)
    return octets.hex()


def from_text(text: str) -> bytes:
    """The inverse of :func:`to_text`; ValueError for anything but 20 lower-case hex digits, so that one id
    has one text."""
    if not _TEXT.fullmatch(text):
        raise ValueError(f"a MsgID text is 20 digits (lower-case hex if not BCD), got {text!r}")
    return bytes.fromhex(text)


def _check(octets: bytes) -> None:
    if len(octets) != LENGTH:
        raise ValueError(f"a MsgID is {LENGTH} octets, got {len(octets)}")
