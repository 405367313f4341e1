"""How a ``cmpp`` channel cuts a text into segments: the :class:`~masd_adapters.base.Segmenter` the core
asks to count a delivery's segments when it accepts a message and to encode them when it sends.

This module owns the step from :mod:`.text`'s part planner to the driver contract's
:class:`~masd_adapters.base.OutboundSegment`: ``data_coding`` carries the Msg_Fmt (0 ASCII, 8 UCS-2,
15 GBK), ``short_message`` the Msg_Content with its UDH, ``udh`` the TP_udhi bit and ``seq``/``total``
the Pk_number/Pk_total. Counting and encoding go through the same plan, so the two agree for every text.
A channel's ``concat`` must be ``udh8`` or ``udh16``: CMPP has no SAR fields and no message_payload.
"""

from __future__ import annotations

from masd.core.split import TooManySegments
from masd_adapters.base import OutboundSegment, Segmenter

from . import text as cmpp_text
from .constants import MSG_FMT_ASCII, MSG_FMT_GBK, MSG_FMT_UCS2

__all__ = ["CmppSegmenter"]

# Msg_Fmt in the words of the SMS splitter's encodings (gsm7, ucs2).
_ENCODINGS = {MSG_FMT_ASCII: "ascii", MSG_FMT_UCS2: "ucs2", MSG_FMT_GBK: "gbk"}
_CONCATS: tuple[cmpp_text.Concat, ...] = ("udh8", "udh16")


class CmppSegmenter(Segmenter):
    """CMPP's text rules for one channel: GBK only when the channel allows it (``allow_gbk``)."""

    def __init__(self, *, allow_gbk: bool = False) -> None:
        self.allow_gbk = allow_gbk

    def count(self, text: str, *, concat: str, max_segments: int) -> int:
        return len(self._plan(text, concat, max_segments).parts)

    def encode(self, text: str, *, concat: str, ref: int, max_segments: int) -> list[OutboundSegment]:
        scheme = _concat(concat)
        parts = cmpp_text.encode_parts(self._plan(text, scheme, max_segments), concat=scheme, ref=ref)
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
        fmt = cmpp_text.choose_msg_fmt(text, allow_gbk=self.allow_gbk)
        return _ENCODINGS.get(fmt, str(fmt))

    def _plan(self, text: str, concat: str, max_segments: int) -> cmpp_text.Plan:
        scheme = _concat(concat)
        try:
            return cmpp_text.plan(text, allow_gbk=self.allow_gbk, concat=scheme, max_parts=max_segments)
        except cmpp_text.TooManyParts as e:
            # The core catches the splitter's error whatever the protocol, so it is the one raised.
            encoding = _ENCODINGS.get(e.msg_fmt, str(e.msg_fmt))
            raise TooManySegments(e.needed, e.maximum, length=len(text), encoding=encoding) from None


def _concat(concat: str) -> cmpp_text.Concat:
    for scheme in _CONCATS:
        if concat == scheme:
            return scheme
    raise ValueError(
        f"concat {concat!r} cannot be carried by CMPP; use udh8 or udh16 (CMPP has no SAR or message_payload)"
    )
