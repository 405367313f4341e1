"""CMPP's text rules are the Chinese carriers' shared ones, :mod:`masd_adapters.cn_text`; this module keeps
the name they had first, which the tests and the simulated gateways import."""

from __future__ import annotations

from ..cn_text import (
    SINGLE_OCTETS,
    UDH_LENGTH,
    Concat,
    Concatenation,
    Part,
    Plan,
    TooManyParts,
    capacity,
    choose_msg_fmt,
    decode_content,
    encode_parts,
    encode_text,
    plan,
    read_concatenation,
    read_reference,
    reassemble,
)

__all__ = [
    "SINGLE_OCTETS",
    "UDH_LENGTH",
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
    "plan",
    "read_concatenation",
    "read_reference",
    "reassemble",
]
