"""Splitting message text into SMS segments, and encoding those segments for the wire; pure, no I/O.

This module owns the decisions that fix how many segments a message costs and what each carries: the
encoding (GSM 7-bit default alphabet when every character allows it, UCS-2 otherwise), the per-segment
limits for each concatenation method (UDH with 8- or 16-bit reference, SAR TLVs, or one message_payload
that the network splits), and the cut points, which never fall inside a GSM escape pair or a UTF-16
surrogate pair. smpplib's own splitter gets exactly those wrong, which is why the core uses this one and
hands drivers finished :class:`~masd_adapters.base.OutboundSegment` values. :func:`reassemble` is the
inverse of :func:`encode`, for the tests and the SMSC simulator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from masd.core import gsm7
from masd_adapters.base import OutboundSegment

__all__ = [
    "Concat",
    "Encoding",
    "Plan",
    "TooManySegments",
    "choose_encoding",
    "count_segments",
    "encode",
    "plan",
    "reassemble",
    "single_segment",
]

Concat = Literal["udh8", "udh16", "sar", "payload"]
Encoding = Literal["gsm7", "ucs2"]

DATA_CODING: dict[Encoding, int] = {"gsm7": 0, "ucs2": 8}

# Concatenation counters (UDH total/seq, SAR total/seq) are single octets.
_MAX_PARTS = 255

# Units per segment: septets for GSM 7-bit, UTF-16 code units for UCS-2. A single segment has the whole
# 140-octet user data; a part of a concatenated message loses room to the header (6 octets for udh8,
# 7 for udh16) - SAR carries its counters in TLVs, but the network re-adds a UDH when it delivers the
# parts, so SAR parts keep the udh8 size. "payload" is split by the network, which uses udh8-sized parts.
_SINGLE: dict[Encoding, int] = {"gsm7": 160, "ucs2": 70}
_SURROGATE = re.compile("[\ud800-\udfff]")
_MULTI: dict[Encoding, dict[Concat, int]] = {
    "gsm7": {"udh8": 153, "udh16": 152, "sar": 153, "payload": 153},
    "ucs2": {"udh8": 67, "udh16": 66, "sar": 67, "payload": 67},
}


class TooManySegments(ValueError):
    """The text would need more segments than the caller (or the 8-bit concatenation counter) allows.
    ``encoding`` names the wire's alphabet: gsm7 or ucs2 here, a driver's own (ascii, gbk) from its
    :class:`~masd_adapters.base.Segmenter`."""

    def __init__(self, needed: int, maximum: int, *, length: int, encoding: str) -> None:
        self.needed = needed
        self.maximum = maximum
        self.length = length
        self.encoding = encoding
        super().__init__(
            f"text needs {needed} segments; the maximum is {maximum} ({length} chars, encoding {encoding})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments defeat the default exception pickling; errors cross process boundaries.
        return (_rebuild_too_many, (self.needed, self.maximum, self.length, self.encoding))


def _rebuild_too_many(needed: int, maximum: int, length: int, encoding: str) -> TooManySegments:
    return TooManySegments(needed, maximum, length=length, encoding=encoding)


@dataclass(frozen=True, slots=True)
class Plan:
    """How a text will be sent: its encoding, the matching SMPP data_coding, and the text of each part.

    For concat "payload" the parts are where the network will cut the single PDU (they decide the count
    and the charge); :func:`encode` joins them again.
    """

    encoding: Encoding
    data_coding: int
    parts: list[str]


def choose_encoding(text: str) -> Encoding:
    """GSM 7-bit when the default alphabet and its extension cover every character, else UCS-2."""
    return "gsm7" if gsm7.is_gsm7(text) else "ucs2"


def _check_no_lone_surrogate(text: str) -> None:
    # A lone surrogate (it can arrive through a JSON "\ud83d" escape) has no UTF-16 encoding; letting it
    # through would either crash the encoder later or merge with a neighbour into a different character.
    found = _SURROGATE.search(text)  # in C: this runs for every message accepted
    if found is not None:
        code, index = ord(found[0]), found.start()
        raise ValueError(f"text contains an unpaired surrogate U+{code:04X} at index {index}")


def _unit_costs(text: str, encoding: Encoding) -> list[int] | None:
    """Cost of each character in segment units, or None when every character costs one (the common case,
    which allows counting by division)."""
    if encoding == "gsm7":
        if gsm7.septet_length(text) == len(text):
            return None
        return [2 if ch in gsm7.EXTENSION_CHARS else 1 for ch in text]
    if not text or max(text) <= "\uffff":
        return None
    return [2 if ch > "\uffff" else 1 for ch in text]


def _cut_points(costs: list[int], limit: int) -> list[int]:
    """Greedy cut: fill each part up to ``limit`` units without dividing a character (a character here
    is an escape pair or a surrogate pair as a whole). Returns the end index of each part."""
    ends: list[int] = []
    used = 0
    for index, cost in enumerate(costs):
        if used + cost > limit:
            ends.append(index)
            used = 0
        used += cost
    ends.append(len(costs))
    return ends


def _split(text: str, encoding: Encoding, concat: Concat) -> list[str]:
    costs = _unit_costs(text, encoding)
    total = len(text) if costs is None else sum(costs)
    if total <= _SINGLE[encoding]:
        return [text]
    limit = _MULTI[encoding][concat]
    if costs is None:
        return [text[start : start + limit] for start in range(0, len(text), limit)]
    parts: list[str] = []
    start = 0
    for end in _cut_points(costs, limit):
        parts.append(text[start:end])
        start = end
    return parts


def _count(text: str, encoding: Encoding, concat: Concat) -> int:
    costs = _unit_costs(text, encoding)
    total = len(text) if costs is None else sum(costs)
    if total <= _SINGLE[encoding]:
        return 1
    limit = _MULTI[encoding][concat]
    if costs is None:
        return -(-len(text) // limit)
    return len(_cut_points(costs, limit))


def _effective_maximum(max_segments: int) -> int:
    if max_segments < 1:
        raise ValueError(f"max_segments must be at least 1, got {max_segments}")
    return min(max_segments, _MAX_PARTS)


def plan(text: str, *, concat: Concat = "udh8", max_segments: int = 10) -> Plan:
    """Choose the encoding for ``text`` and cut it into parts that each fit one segment under ``concat``.

    A text that fits one segment is never cut (and so never carries UDH or SAR). Raises
    :class:`TooManySegments` when more than ``max_segments`` (at most 255) parts are needed, and
    ValueError for text with an unpaired surrogate. The empty text is one empty part.
    """
    _check_concat(concat)
    maximum = _effective_maximum(max_segments)
    _check_no_lone_surrogate(text)
    encoding = choose_encoding(text)
    parts = _split(text, encoding, concat)
    if len(parts) > maximum:
        raise TooManySegments(len(parts), maximum, length=len(text), encoding=encoding)
    return Plan(encoding=encoding, data_coding=DATA_CODING[encoding], parts=parts)


def count_segments(text: str, concat: Concat = "udh8") -> int:
    """Segments ``text`` costs, without building the parts; equals ``len(plan(text, concat=...).parts)``.

    For "payload" this is the count the network will produce when it splits the payload (udh8 limits).
    There is no maximum here: callers use it to quote a cost or to reject before planning.
    """
    _check_concat(concat)
    _check_no_lone_surrogate(text)
    return _count(text, choose_encoding(text), concat)


def _check_concat(concat: str) -> None:
    if concat not in _MULTI["gsm7"]:
        raise ValueError(f"unknown concat method {concat!r}; expected one of udh8, udh16, sar, payload")


def _encode_text(text: str, encoding: Encoding) -> bytes:
    if encoding == "gsm7":
        return gsm7.encode_unpacked(text)
    return text.encode("utf-16-be")


def _units(body: bytes, encoding: Encoding) -> int:
    return len(body) if encoding == "gsm7" else len(body) // 2


def encode(plan: Plan, *, concat: Concat, ref: int) -> list[OutboundSegment]:
    """Turn a plan into wire segments for ``concat``, numbering a multipart message with reference ``ref``.

    ``ref`` is masked to the field's width (8 bits for udh8, 16 for udh16 and SAR), so a caller may pass a
    running counter. GSM 7-bit bodies are unpacked septets (data_coding 0), UCS-2 bodies UTF-16-BE
    (data_coding 8). Raises ValueError when a part does not fit a segment under ``concat`` - e.g. a plan
    made for udh8 encoded for udh16.
    """
    _check_concat(concat)
    encoding = plan.encoding
    data_coding = DATA_CODING[encoding]
    if concat == "payload":
        payload = b"".join(_encode_text(part, encoding) for part in plan.parts)
        return [
            OutboundSegment(
                seq=1, total=1, data_coding=data_coding, short_message=b"", message_payload=payload
            )
        ]

    bodies = [_encode_text(part, encoding) for part in plan.parts]
    total = len(bodies)
    limit = _SINGLE[encoding] if total == 1 else _MULTI[encoding][concat]
    for seq, body in enumerate(bodies, start=1):
        units = _units(body, encoding)
        if units > limit:
            raise ValueError(f"part {seq} of {total} is {units} units; {concat} allows {limit} ({encoding})")
    if total > _MAX_PARTS:
        raise TooManySegments(total, _MAX_PARTS, length=sum(map(len, plan.parts)), encoding=encoding)
    if total == 1:
        return [OutboundSegment(seq=1, total=1, data_coding=data_coding, short_message=bodies[0])]

    segments: list[OutboundSegment] = []
    for seq, body in enumerate(bodies, start=1):
        if concat == "udh8":
            header = bytes((0x05, 0x00, 0x03, ref & 0xFF, total, seq))
            segments.append(OutboundSegment(seq, total, data_coding, header + body, udh=True))
        elif concat == "udh16":
            ref16 = ref & 0xFFFF
            header = bytes((0x06, 0x08, 0x04, ref16 >> 8, ref16 & 0xFF, total, seq))
            segments.append(OutboundSegment(seq, total, data_coding, header + body, udh=True))
        else:
            segments.append(OutboundSegment(seq, total, data_coding, body, sar=(ref & 0xFFFF, total, seq)))
    return segments


def single_segment(text: str) -> list[OutboundSegment] | None:
    """What ``encode(plan(text, concat=c), concat=c, ref=r)`` gives for a text that fits one segment, for
    any ``c`` but "payload" and any ``r``, found in a fraction of the time (no planning, no per-character
    costs); None for any other text. Most texts fit one segment, and every delivery is encoded."""
    if gsm7.is_gsm7(text):
        body = gsm7.encode_unpacked(text)  # an escape pair costs two septets, so the length is the cost
        if len(body) <= _SINGLE["gsm7"]:
            return [OutboundSegment(1, 1, DATA_CODING["gsm7"], body)]
        return None
    try:
        body = text.encode("utf-16-be")  # refuses lone surrogates, which plan() refuses too
    except UnicodeEncodeError:
        return None
    if len(body) <= 2 * _SINGLE["ucs2"]:  # a character beyond the BMP costs two code units
        return [OutboundSegment(1, 1, DATA_CODING["ucs2"], body)]
    return None


def _decode_body(body: bytes, data_coding: int) -> str:
    if data_coding == 0:
        return gsm7.decode_unpacked(body)
    if data_coding == 8:
        return body.decode("utf-16-be")
    raise ValueError(f"data_coding {data_coding} is neither 0 (GSM 7-bit) nor 8 (UCS-2)")


def reassemble(segments: list[OutboundSegment]) -> str:
    """Recover the text from segments made by :func:`encode` (in any order).

    Bodies are joined before decoding, so this stays correct even for segments cut by a splitter less
    careful than this one. Raises ValueError on an empty list, mixed data codings, or missing or
    duplicated sequence numbers.
    """
    if not segments:
        raise ValueError("no segments to reassemble")
    data_codings = {segment.data_coding for segment in segments}
    if len(data_codings) != 1:
        raise ValueError(f"segments mix data codings {sorted(data_codings)}")
    (data_coding,) = data_codings
    if len(segments) == 1 and segments[0].message_payload is not None:
        return _decode_body(segments[0].message_payload, data_coding)

    ordered = sorted(segments, key=lambda segment: segment.seq)
    expected = list(range(1, len(ordered) + 1))
    if [segment.seq for segment in ordered] != expected or any(
        segment.total != len(ordered) for segment in ordered
    ):
        raise ValueError(f"segments are not a complete set: seq {[s.seq for s in segments]}")
    bodies: list[bytes] = []
    for segment in ordered:
        message = segment.short_message
        if segment.udh:
            if not message or message[0] + 1 > len(message):
                raise ValueError(f"segment {segment.seq} has a truncated user data header")
            message = message[1 + message[0] :]
        bodies.append(message)
    return _decode_body(b"".join(bodies), data_coding)
