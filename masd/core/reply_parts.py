"""Long replies: the text of a concatenated mobile-originated message, made from its parts' bytes.

Pure functions, no I/O. A driver names, for each part, the codec that reads it (it alone knows what its
wire's coding field means: SMPP's data_coding and CMPP's Msg_Fmt differ); the store keeps each part's
raw bytes with that name (:mod:`masd.store.reply_parts`); the gateway calls :func:`join` in the
transaction that stores the last part, or that gives up waiting for a missing one. Keeping bytes and a
codec name, rather than a driver's own decoder, lets a part stored before a restart be joined after it
with no driver in the loop, and makes the result the same however the parts were spread over binds,
processes and nodes.

Parts are joined as bytes and each run of parts read by the same codec is decoded once. Handsets split at
octet boundaries, so a UCS-2 surrogate pair (an emoji, a rare CJK character) or a GSM escape sequence
may straddle two parts; decoding each part alone would turn both halves into replacement characters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from masd.core.gsm7 import decode_unpacked

__all__ = ["MISSING", "Part", "decode", "gaps", "join"]

MISSING = "[…]"  # stands in for each run of parts that never arrived

Part = tuple[str, bytes]  # (codec, body): how to read it, and the user data without its UDH


def decode(codec: str, body: bytes) -> str:
    """The text of ``body`` read with ``codec``. Never raises.

    Codecs: ``"gsm7"``, GSM 03.38 as unpacked septets (an octet above 0x7F cannot be a septet, so such
    data is read as Latin-1); ``"ucs2"``, UTF-16-BE, which is UCS-2 plus the surrogate pairs handsets do
    send; any other name is a Python codec (``"latin-1"``, ``"gb18030"``, ``"shift_jis"`` …), read with
    replacement characters for bytes it cannot decode. An unknown name reads as Latin-1, which keeps
    every byte recoverable from the text.
    """
    if codec == "gsm7":
        try:
            return decode_unpacked(body)
        except ValueError:
            return body.decode("latin-1")
    if codec == "ucs2":
        # An odd last octet is a truncation; drop it rather than lose the whole text.
        return body[: len(body) & ~1].decode("utf-16-be", errors="replace")
    try:
        return body.decode(codec, errors="replace")
    except LookupError:
        return body.decode("latin-1")


def join(total: int, parts: Mapping[int, Part]) -> str:
    """The text of a message of ``total`` parts from those that arrived (by seq, 1-based): runs of
    consecutive parts read by one codec are decoded as one byte string each; each run of missing parts
    becomes one :data:`MISSING`."""
    pieces: list[str] = []
    run: list[bytes] = []
    run_codec: str | None = None
    gap = False  # the previous seq was missing: consecutive missing parts share one marker
    for seq in range(1, total + 1):
        part = parts.get(seq)
        if part is None or part[0] != run_codec:
            if run and run_codec is not None:
                pieces.append(decode(run_codec, b"".join(run)))
                run = []
            if part is None:
                if not gap:
                    pieces.append(MISSING)
                gap = True
                run_codec = None
                continue
            run_codec = part[0]
        gap = False
        run.append(part[1])
    if run and run_codec is not None:
        pieces.append(decode(run_codec, b"".join(run)))
    return "".join(pieces)


def gaps(total: int, arrived: Iterable[int]) -> str:
    """What an incomplete message lacks, for logs and the reply's ``raw``:
    ``"incomplete: parts 1,3 of 4 (missing 2,4)"``."""
    have = sorted(set(arrived))
    missing = [seq for seq in range(1, total + 1) if seq not in have]
    return f"incomplete: parts {','.join(map(str, have))} of {total} (missing {','.join(map(str, missing))})"
