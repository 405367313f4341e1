"""GSM 03.38 (3GPP TS 23.038) default alphabet and its basic extension table, and nothing else.

This module owns the mapping between Unicode text and GSM 7-bit septets: deciding whether a text can be
sent in the default alphabet at all, how many septets it costs (an extension character is an escape 0x1B
followed by its code, so it costs two), converting to and from the *unpacked* form (one septet per octet,
which is what SMPP carries with data_coding 0) and to and from the *packed* form (eight septets in seven
octets, optionally after fill bits, as found in TP-UD when decoding mobile-originated messages). National
language shift tables are deliberately not supported: no SMSC we target negotiates them.
"""

from __future__ import annotations

__all__ = [
    "ESCAPE",
    "EXTENSION_CHARS",
    "decode_unpacked",
    "encode_unpacked",
    "is_gsm7",
    "pack_septets",
    "septet_length",
    "unpack_septets",
]

ESCAPE = 0x1B

# The default alphabet, indexed by septet value. Position 0x1B is the escape to the extension table and has
# no character of its own; the placeholder is never produced by decoding.
_DEFAULT = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(_DEFAULT) == 128

# Basic extension table: character -> code that follows the escape.
_EXTENSION: dict[str, int] = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

_BASIC: dict[str, int] = {ch: code for code, ch in enumerate(_DEFAULT) if code != ESCAPE}
_EXTENSION_BY_CODE: dict[int, str] = {code: ch for ch, code in _EXTENSION.items()}
EXTENSION_CHARS: frozenset[str] = frozenset(_EXTENSION)
_ALL_CHARS: frozenset[str] = frozenset(_BASIC) | EXTENSION_CHARS

# str.translate tables: encoding goes through Latin-1 so each septet becomes exactly one octet, which keeps
# the hot path (every outgoing message) inside C code.
_TO_SEPTETS: dict[int, str] = {ord(ch): chr(code) for ch, code in _BASIC.items()}
_TO_SEPTETS.update({ord(ch): chr(ESCAPE) + chr(code) for ch, code in _EXTENSION.items()})


def is_gsm7(text: str) -> bool:
    """True if every character of ``text`` is in the default alphabet or the basic extension table."""
    return _ALL_CHARS.issuperset(text)


def _first_unencodable(text: str) -> tuple[int, str]:
    for index, ch in enumerate(text):
        if ch not in _ALL_CHARS:
            return index, ch
    raise AssertionError("called on encodable text")  # pragma: no cover


def _not_gsm7_error(text: str) -> ValueError:
    index, ch = _first_unencodable(text)
    return ValueError(f"character {ch!r} (U+{ord(ch):04X}) at index {index} is not in the GSM 7-bit alphabet")


def encode_unpacked(text: str) -> bytes:
    """Encode ``text`` as one septet per octet; extension characters become 0x1B followed by their code.

    Raises ValueError naming the first character that the alphabet lacks.
    """
    if not is_gsm7(text):
        raise _not_gsm7_error(text)
    return text.translate(_TO_SEPTETS).encode("latin-1")


def septet_length(text: str) -> int:
    """Septets ``text`` costs in the default alphabet: one per character, two per extension character."""
    if not is_gsm7(text):
        raise _not_gsm7_error(text)
    if EXTENSION_CHARS.isdisjoint(text):  # the common case, decided in C
        return len(text)
    return len(text.translate(_TO_SEPTETS))


def decode_unpacked(data: bytes) -> str:
    """Decode one-septet-per-octet data back to text.

    Decoding is lenient in the ways TS 23.038 prescribes for a receiver, because this also reads what
    handsets and foreign SMSCs send: an escape followed by a code the extension table lacks shows the
    default-alphabet character for that code, and an escape followed by another escape (reserved for a
    future table) or an escape at the very end shows a space. An octet above 0x7F is not a septet at all,
    so it raises ValueError.
    """
    out: list[str] = []
    i = 0
    n = len(data)
    while i < n:
        septet = data[i]
        if septet > 0x7F:
            raise ValueError(f"octet 0x{septet:02X} at offset {i} is not a 7-bit septet")
        if septet != ESCAPE:
            out.append(_DEFAULT[septet])
            i += 1
            continue
        if i + 1 >= n:
            out.append(" ")
            break
        code = data[i + 1]
        if code > 0x7F:
            raise ValueError(f"octet 0x{code:02X} at offset {i + 1} is not a 7-bit septet")
        if code == ESCAPE:
            out.append(" ")
        else:
            out.append(_EXTENSION_BY_CODE.get(code, _DEFAULT[code]))
        i += 2
    return "".join(out)


def _check_fill_bits(fill_bits: int) -> None:
    if not 0 <= fill_bits <= 6:
        raise ValueError(f"fill_bits must be 0..6, got {fill_bits}")


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets eight-into-seven, least significant bit first, after ``fill_bits`` zero bits.

    The fill bits align the first septet to a septet boundary when a User Data Header precedes it
    (TS 23.040 9.2.3.24); the caller works out how many from the header's length.
    """
    _check_fill_bits(fill_bits)
    value = 0
    for index, septet in enumerate(septets):
        if septet > 0x7F:
            raise ValueError(f"octet 0x{septet:02X} at offset {index} is not a 7-bit septet")
        value |= septet << (fill_bits + 7 * index)
    total_bits = fill_bits + 7 * len(septets)
    return value.to_bytes((total_bits + 7) // 8, "little")


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> bytes:
    """Inverse of :func:`pack_septets`: the first ``count`` septets after ``fill_bits`` bits of ``data``.

    ``count`` is needed because the packed form cannot tell seven trailing zero bits from an ``@``; on the
    air interface it is TP-UDL.
    """
    _check_fill_bits(fill_bits)
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    if fill_bits + 7 * count > 8 * len(data):
        raise ValueError(f"{len(data)} octets cannot hold {count} septets after {fill_bits} fill bits")
    value = int.from_bytes(data, "little") >> fill_bits
    return bytes((value >> (7 * index)) & 0x7F for index in range(count))
