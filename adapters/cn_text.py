"""The Chinese carriers' text rules, which CMPP, SGIP and SMGP share; pure, no I/O: choosing the data
coding of a text, encoding and decoding the message content, cutting a long text into the parts of a
concatenated SMS, the :class:`~masd_adapters.base.Segmenter` the ``cmpp``, ``sgip`` and ``smgp`` channels
cut texts with, and reading a received reply or one part of a long one. The rules speak CMPP's words
(Msg_Fmt, Msg_Content, Pk_total); SGIP's MessageCoding and SMGP's MsgFormat number the codings alike.
``masd_adapters.cmpp.text`` and ``masd_adapters.cmpp.segments``, where they were first, still import.

This module owns what a text costs. Msg_Fmt 0 (ASCII, one octet a character; CMPP has no GSM 7-bit
alphabet, so an ASCII text has 140 characters, not 160) when every character is ASCII; 15 (GBK: one
octet for ASCII, two for a Chinese character) when the channel allows it and GBK can encode the text; 8
(UCS-2 big-endian) otherwise. A SUBMIT carries at most 140 octets of Msg_Content; a part of a long
message spends 6 of them on the UDH ``05 00 03 ref total number`` (8-bit reference) or 7 on
``06 08 04 ref_hi ref_lo total number`` (16-bit), with TP_udhi = 1 — Pk_total/Pk_number alone do not
join parts on a handset. So: ASCII and GBK 140 octets / 134 / 133, UCS-2 70 / 67 / 66 characters.

masd/core/split.py is not reused: it plans GSM 7-bit or UCS-2 only and picks the encoding itself, so an
ASCII text would come out as GSM septets (160/153 per part, and ``@ $ _`` as other octets than ASCII's),
and it has neither GBK nor characters of one *or* two octets; its cutting helpers are private. This
planner keeps its rules: a text that fits one part has no UDH, a cut never divides a character (a
surrogate pair in UCS-2, a double-octet character in GBK), at most 255 parts, the reference is masked to
its field's width.

:class:`CmppSegmenter` is the step from the part planner to the driver contract's
:class:`~masd_adapters.base.OutboundSegment`, which the core asks to count a delivery's segments when it
accepts a message and to encode them when it sends: ``data_coding`` carries the Msg_Fmt (0 ASCII, 8
UCS-2, 15 GBK), ``short_message`` the Msg_Content with its UDH, ``udh`` the TP_udhi bit and
``seq``/``total`` the Pk_number/Pk_total. Counting and encoding go through the same plan, so the two
agree for every text. A channel's ``concat`` must be ``udh8`` or ``udh16``: CMPP has no SAR fields and
no message_payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from masd.core.split import TooManySegments
from masd_adapters.base import InboundReply, InboundReplyPart, OutboundSegment, Segmenter

__all__ = [
    "PART_CODECS",
    "SINGLE_OCTETS",
    "UDH_LENGTH",
    "CmppSegmenter",
    "Concat",
    "Concatenation",
    "Part",
    "Plan",
    "TooManyParts",
    "capacity",
    "choose_msg_fmt",
    "decode_content",
    "encode_parts",
    "encode_text",
    "part_codec",
    "plan",
    "read_concatenation",
    "read_reference",
    "read_reply",
    "reassemble",
]

# The data codings the three protocols number alike: CMPP's Msg_Fmt, SGIP's MessageCoding and SMGP's
# MsgFormat (which names 15 GB18030, of which GBK is a subset). The rules below speak CMPP's words.
MSG_FMT_ASCII = 0
MSG_FMT_CARD = 3  # SIM card write: binary
MSG_FMT_BINARY = 4
MSG_FMT_UCS2 = 8  # big-endian
MSG_FMT_GBK = 15

Concat = Literal["udh8", "udh16"]

SINGLE_OCTETS = 140  # Msg_Content of one SUBMIT
UDH_LENGTH: dict[Concat, int] = {"udh8": 6, "udh16": 7}
_MAX_PARTS = 255  # Pk_total and the UDH's counters are single octets
_CODECS = {MSG_FMT_ASCII: "ascii", MSG_FMT_UCS2: "utf-16-be", MSG_FMT_GBK: "gbk"}


class TooManyParts(ValueError):
    """The text needs more parts than the caller (or the one-octet Pk_total) allows."""

    def __init__(self, needed: int, maximum: int, msg_fmt: int) -> None:
        self.needed = needed
        self.maximum = maximum
        self.msg_fmt = msg_fmt
        super().__init__(f"text needs {needed} parts in Msg_Fmt {msg_fmt}; the maximum is {maximum}")

    def __reduce__(self) -> tuple[object, ...]:
        return (TooManyParts, (self.needed, self.maximum, self.msg_fmt))


@dataclass(frozen=True, slots=True)
class Plan:
    """How a text will be sent: its Msg_Fmt and the text of each part."""

    msg_fmt: int
    parts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Part:
    """The SUBMIT fields of one part: Msg_Content includes the UDH when ``tp_udhi`` is 1."""

    pk_total: int
    pk_number: int
    tp_udhi: int
    msg_fmt: int
    msg_content: bytes


@dataclass(frozen=True, slots=True)
class Concatenation:
    """What the UDH of a received part says: reference, total, number, and the body after the UDH."""

    ref: int
    total: int
    number: int
    body: bytes


def choose_msg_fmt(text: str, *, allow_gbk: bool = False) -> int:
    """0 for an all-ASCII text; 15 when ``allow_gbk`` and GBK encodes the text; 8 (UCS-2) otherwise.

    GBK is off by default: every ISMG takes UCS-2, while Msg_Fmt 15 is accepted by some only; a channel
    that takes it gains room for mixed text (ASCII costs one octet, not two).
    """
    if text.isascii():
        return MSG_FMT_ASCII
    if allow_gbk:
        try:
            text.encode("gbk")
        except UnicodeEncodeError:
            pass
        else:
            return MSG_FMT_GBK
    return MSG_FMT_UCS2


def encode_text(text: str, msg_fmt: int) -> bytes:
    """``text`` in Msg_Fmt 0, 8 or 15; ValueError when the text has a character that format lacks (or an
    unpaired surrogate, which has no UCS-2 form)."""
    codec = _CODECS.get(msg_fmt)
    if codec is None:
        raise ValueError(f"Msg_Fmt {msg_fmt} is not a text format here (0 ASCII, 8 UCS-2, 15 GBK)")
    try:
        return text.encode(codec)
    except UnicodeEncodeError as e:
        raise ValueError(
            f"Msg_Fmt {msg_fmt} cannot encode {e.object[e.start]!r} at index {e.start}"
        ) from None


def capacity(msg_fmt: int, concat: Concat | None = None) -> int:
    """Octets of text one part carries: a single message when ``concat`` is None, else a part of a long
    one (the UDH taken off). UCS-2 rounds down to whole code units: 140, 134, 132 octets."""
    octets = SINGLE_OCTETS - (0 if concat is None else UDH_LENGTH[concat])
    return octets - octets % 2 if msg_fmt == MSG_FMT_UCS2 else octets


def _costs(text: str, msg_fmt: int) -> list[int]:
    if msg_fmt == MSG_FMT_ASCII:
        return [1] * len(text)
    if msg_fmt == MSG_FMT_UCS2:
        return [4 if ch > "\uffff" else 2 for ch in text]
    return [len(ch.encode("gbk")) for ch in text]


def plan(text: str, *, allow_gbk: bool = False, concat: Concat = "udh8", max_parts: int = 10) -> Plan:
    """Choose Msg_Fmt for ``text`` and cut it into parts that each fit one SUBMIT under ``concat``.

    Raises :class:`TooManyParts` above ``max_parts`` (itself at most 255) and ValueError for a text the
    chosen format cannot encode (an unpaired surrogate). The empty text is one empty part.
    """
    if concat not in UDH_LENGTH:
        raise ValueError(f"unknown concat {concat!r}; expected udh8 or udh16")
    if max_parts < 1:
        raise ValueError(f"max_parts must be at least 1, got {max_parts}")
    maximum = min(max_parts, _MAX_PARTS)
    msg_fmt = choose_msg_fmt(text, allow_gbk=allow_gbk)
    encoded = encode_text(text, msg_fmt)  # refuses what cannot be sent before any cutting
    if len(encoded) <= capacity(msg_fmt):
        return Plan(msg_fmt, (text,))
    limit = capacity(msg_fmt, concat)
    parts: list[str] = []
    start = used = 0
    for index, cost in enumerate(_costs(text, msg_fmt)):
        if used + cost > limit:
            parts.append(text[start:index])
            start, used = index, 0
        used += cost
    parts.append(text[start:])
    if len(parts) > maximum:
        raise TooManyParts(len(parts), maximum, msg_fmt)
    return Plan(msg_fmt, tuple(parts))


def encode_parts(plan: Plan, *, concat: Concat, ref: int) -> list[Part]:
    """The SUBMIT contents of a plan, a long message numbered with reference ``ref`` (masked to 8 bits
    for udh8, 16 for udh16, so a running counter may be passed). ValueError when a part does not fit —
    e.g. a plan made for udh8 encoded for udh16."""
    if concat not in UDH_LENGTH:
        raise ValueError(f"unknown concat {concat!r}; expected udh8 or udh16")
    bodies = [encode_text(part, plan.msg_fmt) for part in plan.parts]
    total = len(bodies)
    if total > _MAX_PARTS:
        raise TooManyParts(total, _MAX_PARTS, plan.msg_fmt)
    if total == 1:
        if len(bodies[0]) > capacity(plan.msg_fmt):
            raise ValueError(f"the text is {len(bodies[0])} octets; one SUBMIT carries {SINGLE_OCTETS}")
        return [Part(1, 1, 0, plan.msg_fmt, bodies[0])]
    limit = capacity(plan.msg_fmt, concat)
    parts: list[Part] = []
    for number, body in enumerate(bodies, start=1):
        if len(body) > limit:
            raise ValueError(f"part {number} of {total} is {len(body)} octets; {concat} allows {limit}")
        if concat == "udh8":
            header = bytes((0x05, 0x00, 0x03, ref & 0xFF, total, number))
        else:
            header = bytes((0x06, 0x08, 0x04, (ref >> 8) & 0xFF, ref & 0xFF, total, number))
        parts.append(Part(total, number, 1, plan.msg_fmt, header + body))
    return parts


def read_concatenation(content: bytes) -> Concatenation | None:
    """The concatenation element of a Msg_Content that starts with a UDH (TP_udhi = 1): the 8-bit
    (IEI 0x00) or 16-bit (IEI 0x08) reference. None when the UDH has no such element; ValueError when the
    UDH runs past the content."""
    if not content or content[0] + 1 > len(content):
        raise ValueError("Msg_Content has a truncated user data header")
    end = 1 + content[0]
    position = 1
    while position + 2 <= end:
        iei, length = content[position], content[position + 1]
        value = content[position + 2 : position + 2 + length]
        if position + 2 + length > end:
            raise ValueError(f"UDH element 0x{iei:02X} runs past the header")
        if iei == 0x00 and length == 3:
            return Concatenation(value[0], value[1], value[2], content[end:])
        if iei == 0x08 and length == 4:
            return Concatenation((value[0] << 8) | value[1], value[2], value[3], content[end:])
        position += 2 + length
    return None


def decode_content(content: bytes, msg_fmt: int) -> str | bytes:
    """Msg_Content as text for the text formats, as the octets themselves for binary ones (3, 4).

    Lenient, because an MO text must reach the app even from a gateway that labels it loosely:
    Msg_Fmt 0 with octets above 0x7F is not ASCII, so GBK (CMPP's other octet text) is tried, then
    Latin-1, which never fails; 8 is read as UTF-16-BE (so a surrogate pair is one character) with a
    broken unit replaced by U+FFFD; 15 as GBK, then GB18030 (its superset) with replacement. A value CMPP
    does not define is read by its alphabet bits as the GSM data coding scheme defines them, which is
    what Msg_Fmt follows (0, 4, 8 are GSM's values) and what SMSGate does: bits 3-2 are 00 ASCII, 01
    binary, 10 UCS-2, and 11 GBK (GSM leaves 11 reserved; CMPP put GB at 15).
    """
    if msg_fmt in (MSG_FMT_CARD, MSG_FMT_BINARY):
        return bytes(content)
    if msg_fmt == MSG_FMT_ASCII:
        if content.isascii():
            return content.decode("ascii")
        try:
            return content.decode("gbk")
        except UnicodeDecodeError:
            return content.decode("latin-1")
    if msg_fmt == MSG_FMT_UCS2:
        return content.decode("utf-16-be", errors="replace")
    if msg_fmt == MSG_FMT_GBK:
        try:
            return content.decode("gbk")
        except UnicodeDecodeError:
            return content.decode("gb18030", errors="replace")
    return decode_content(content, _alphabet(msg_fmt))


def reassemble(parts: list[Part]) -> str:
    """The text of parts made by :func:`encode_parts`, in any order (for the tests and the simulated ISMG).
    Bodies are joined before decoding, so a character cut by a less careful sender is still whole.
    ValueError for no parts, mixed formats, or an incomplete set."""
    if not parts:
        raise ValueError("no parts to reassemble")
    formats = {part.msg_fmt for part in parts}
    if len(formats) != 1:
        raise ValueError(f"parts mix Msg_Fmt {sorted(formats)}")
    ordered = sorted(parts, key=lambda part: part.pk_number)
    if [p.pk_number for p in ordered] != list(range(1, len(ordered) + 1)) or any(
        p.pk_total != len(ordered) for p in ordered
    ):
        raise ValueError(f"parts are not a complete set: Pk_number {[p.pk_number for p in parts]}")
    bodies: list[bytes] = []
    for part in ordered:
        if part.tp_udhi:
            found = read_concatenation(part.msg_content)
            bodies.append(part.msg_content[1 + part.msg_content[0] :] if found is None else found.body)
        else:
            bodies.append(part.msg_content)
    text = decode_content(b"".join(bodies), formats.pop())
    if isinstance(text, bytes):
        raise ValueError("binary parts have no text")
    return text


def read_reference(content: bytes) -> tuple[Concat, Concatenation] | None:
    """:func:`read_concatenation` with the scheme of the reference it found (``udh8`` for IEI 0x00,
    ``udh16`` for 0x08), so that a driver can key a received part by scheme and reference: the same
    number under the two schemes names two messages. None when the UDH has no concatenation element;
    ValueError when the UDH runs past the content."""
    found = read_concatenation(content)
    if found is None:
        return None
    position = 1
    while position + 2 <= 1 + content[0]:
        iei, length = content[position], content[position + 1]
        if (iei, length) in ((0x00, 3), (0x08, 4)):
            return ("udh8" if iei == 0x00 else "udh16"), found
        position += 2 + length
    raise AssertionError("read_concatenation found an element this walk did not")  # pragma: no cover


# ----- the segmenter ------------------------------------------------------------------------------------

# Msg_Fmt in the words of the SMS splitter's encodings (gsm7, ucs2).
_ENCODINGS = {MSG_FMT_ASCII: "ascii", MSG_FMT_UCS2: "ucs2", MSG_FMT_GBK: "gbk"}
_CONCATS: tuple[Concat, ...] = ("udh8", "udh16")


_PLANS_REMEMBERED = 256  # texts whose plan a segmenter keeps (as the dispatcher does for SMPP)


class CmppSegmenter(Segmenter):
    """CMPP's text rules for one channel: GBK only when the channel allows it (``allow_gbk``).

    Plans are remembered by text: the Gateway counts a message once and the dispatcher encodes it once
    per delivery, so a notice to a thousand people is planned once, not a thousand and one times."""

    def __init__(self, *, allow_gbk: bool = False) -> None:
        self.allow_gbk = allow_gbk
        self._plans: dict[tuple[str, Concat, int], Plan] = {}

    def count(self, text: str, *, concat: str, max_segments: int) -> int:
        return len(self._plan(text, concat, max_segments).parts)

    def encode(self, text: str, *, concat: str, ref: int, max_segments: int) -> list[OutboundSegment]:
        parts = encode_parts(self._plan(text, concat, max_segments), concat=_concat(concat), ref=ref)
        return [
            OutboundSegment(
                seq=part.pk_number,
                total=part.pk_total,
                data_coding=part.msg_fmt,
                short_message=part.msg_content,
                udh=bool(part.tp_udhi),
            )
            for part in parts
        ]

    def encoding(self, text: str) -> str | None:
        fmt = choose_msg_fmt(text, allow_gbk=self.allow_gbk)
        return _ENCODINGS.get(fmt, str(fmt))

    def _plan(self, text: str, concat: str, max_segments: int) -> Plan:
        scheme = _concat(concat)
        key = (text, scheme, max_segments)
        known = self._plans.get(key)
        if known is not None:
            return known
        try:
            found = plan(text, allow_gbk=self.allow_gbk, concat=scheme, max_parts=max_segments)
        except TooManyParts as e:
            # The core catches the splitter's error whatever the protocol, so it is the one raised.
            encoding = _ENCODINGS.get(e.msg_fmt, str(e.msg_fmt))
            raise TooManySegments(e.needed, e.maximum, length=len(text), encoding=encoding) from None
        if len(self._plans) >= _PLANS_REMEMBERED:
            self._plans.clear()
        self._plans[key] = found
        return found


def _concat(concat: str) -> Concat:
    for scheme in _CONCATS:
        if concat == scheme:
            return scheme
    raise ValueError(
        f"concat {concat!r} cannot be carried by CMPP; use udh8 or udh16 (CMPP has no SAR or message_payload)"
    )


# ----- a received reply ---------------------------------------------------------------------------------

# The data coding as the codec masd.core.reply_parts.decode reads a part with. GB18030 is a superset of
# GBK and of ASCII, so it also reads an ASCII-labelled reply whose octets are GBK (gateways send that).
PART_CODECS = {
    MSG_FMT_ASCII: "gb18030",
    MSG_FMT_GBK: "gb18030",
    MSG_FMT_UCS2: "ucs2",
    MSG_FMT_BINARY: "latin-1",
    MSG_FMT_CARD: "latin-1",
}


def part_codec(msg_fmt: int) -> str:
    """The codec of a part in ``msg_fmt``; a value the protocols do not define by its alphabet bits, as
    :func:`decode_content` reads it."""
    return PART_CODECS.get(msg_fmt) or PART_CODECS[_alphabet(msg_fmt)]


def _alphabet(msg_fmt: int) -> int:
    return {0x00: MSG_FMT_ASCII, 0x04: MSG_FMT_BINARY, 0x08: MSG_FMT_UCS2, 0x0C: MSG_FMT_GBK}[msg_fmt & 0x0C]


def read_reply(
    sender: str, destination: str, content: bytes, *, udhi: int | None, msg_fmt: int, received_at: float
) -> InboundReply | InboundReplyPart:
    """A mobile-originated message as a whole reply or a part of a long one (its content starts with a
    UDH when ``udhi``). Never raises for what a gateway can send: a malformed UDH or inconsistent
    counters make the message a reply of its own, and a UDH without concatenation is dropped."""
    if udhi:
        try:
            found = read_reference(content)
        except ValueError:
            found = None
        if found is not None:
            scheme, part = found
            if part.total > 1 and 1 <= part.number <= part.total:
                return InboundReplyPart(
                    sender,
                    destination,
                    f"{scheme}:{part.ref}",
                    part.total,
                    part.number,
                    part_codec(msg_fmt),
                    part.body,
                    received_at,
                )
            content = part.body
        elif content and content[0] + 1 <= len(content):
            content = content[1 + content[0] :]  # a UDH without concatenation: drop it, keep the text
    decoded = decode_content(content, msg_fmt)
    return InboundReply(
        sender, destination, decoded if isinstance(decoded, str) else decoded.decode("latin-1")
    )
