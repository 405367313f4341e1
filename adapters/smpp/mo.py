"""Mobile-originated (MO) messages: decoding their text and reassembling concatenated ones.

This module owns the path from a non-receipt deliver_sm's user data to an :class:`InboundReply`: the
data_coding → text mapping (SMPP 3.4 §5.2.19 for 0x00-0x0F, the GSM 03.38 §4 coding groups above), the
User Data Header split (esm_class UDHI bit), the concatenation information (UDH IE 0x00 with an 8-bit
reference, IE 0x08 with a 16-bit one, or the SAR TLVs), and :class:`Reassembler`, which joins the parts
of a long message in whatever order they arrive and, after a timeout, hands over what it has with the
gaps marked, so that a part that never comes cannot make the rest silently disappear.

The parts of a long message are joined as bytes and the joined bytes decoded once. Handsets split at
octet boundaries, so a UCS-2 surrogate pair (an emoji, a rare CJK character) or a GSM escape sequence
may straddle two parts; decoding each part alone would turn both halves into replacement characters.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from masd.core.gsm7 import decode_unpacked
from masd_adapters.base import InboundReply
from masd_adapters.smpp.fast import MESSAGE_PAYLOAD, SAR_MSG_REF_NUM, SAR_SEGMENT_SEQNUM, SAR_TOTAL_SEGMENTS

__all__ = ["MISSING", "Reassembler", "concat_info", "decode_text", "split_udh"]

MISSING = "[…]"  # stands in for each run of parts that never arrived

DefaultAlphabet = Literal["gsm7", "latin-1"]

_UDHI = 0x40
_IE_CONCAT_8 = 0x00
_IE_CONCAT_16 = 0x08

# SMPP 3.4 §5.2.19 data_coding 0x00-0x0F, as Python codec names; "gsm7" and "ucs2" are handled apart.
# Binary (0x02, 0x04) and pictogram (0x09) data have no text form: we decode them as Latin-1, which maps
# every octet to one character and so keeps the bytes recoverable from the text.
_SMPP_CODINGS: dict[int, str] = {
    0x00: "gsm7",  # the SMSC default alphabet; see decode_text's default_alphabet
    0x01: "latin-1",  # IA5 (ASCII); Latin-1 agrees on 0x00-0x7F and keeps a stray high bit visible
    0x02: "latin-1",
    0x03: "latin-1",
    0x04: "latin-1",
    0x05: "shift_jis",  # JIS X 0208, which Japanese SMSCs send in Shift_JIS
    0x06: "iso8859_5",
    0x07: "iso8859_8",
    0x08: "ucs2",
    0x09: "latin-1",
    0x0A: "iso2022_jp",
    0x0D: "euc_jp",  # JIS X 0212 only exists inside EUC-JP among Python's codecs
    0x0E: "euc_kr",  # KS C 5601
    # Reserved in SMPP 3.4, but Chinese SMSCs (after CMPP's MSG_FMT 15) use it for GBK; GB18030 is a
    # superset of GBK.
    0x0F: "gb18030",
}


def _codec(data_coding: int) -> str:
    if data_coding <= 0x0F:
        return _SMPP_CODINGS.get(data_coding, "latin-1")
    if data_coding <= 0x7F:
        # GSM 03.38 general data coding (0x00-0x3F) and automatic deletion (0x40-0x7F) groups:
        # bit 5 = compressed, bits 3-2 = alphabet. TS 23.042 compression is unused in practice, so
        # compressed text is passed on undecoded as Latin-1.
        if data_coding & 0x20:
            return "latin-1"
        return ("gsm7", "latin-1", "ucs2", "latin-1")[(data_coding >> 2) & 0x03]
    if data_coding <= 0xBF:
        return "latin-1"  # reserved coding groups
    if data_coding <= 0xDF:
        return "gsm7"  # message waiting indication, discard / store: default alphabet
    if data_coding <= 0xEF:
        return "ucs2"  # message waiting indication, store, UCS-2
    # Data coding / message class group: bit 2 clear = default alphabet, set = 8-bit data.
    return "latin-1" if data_coding & 0x04 else "gsm7"


def decode_text(data_coding: int, body: bytes, *, default_alphabet: DefaultAlphabet = "gsm7") -> str:
    """The text of a message's user data (UDH already removed). Never raises.

    ``default_alphabet`` is what the SMSC means by data_coding 0: GSM 03.38 as unpacked septets per the
    spec, but some SMSCs send ASCII/Latin-1 there. An octet above 0x7F cannot be a septet, so such data
    is read as Latin-1 even when "gsm7" is configured.
    """
    codec = _codec(data_coding)
    if codec == "gsm7":
        if default_alphabet == "gsm7" or data_coding != 0x00:
            try:
                return decode_unpacked(body)
            except ValueError:
                pass
        return body.decode("latin-1")
    if codec == "ucs2":
        # UTF-16-BE is UCS-2 plus surrogate pairs, which handsets do send. An odd last octet is a
        # truncation; drop it rather than lose the whole text.
        return body[: len(body) & ~1].decode("utf-16-be", errors="replace")
    return body.decode(codec, errors="replace")


def split_udh(short_message: bytes, esm_class: int) -> tuple[bytes, bytes]:
    """(udh, body) with ``udh + body == short_message``; ``udh`` includes its length octet (UDHL).

    Without the UDHI bit, or with a UDHL that runs past the data (a malformed header), the UDH is empty
    and everything is body: better to show a stray character than drop the message.
    """
    if not esm_class & _UDHI or not short_message:
        return b"", short_message
    end = 1 + short_message[0]
    if end > len(short_message):
        return b"", short_message
    return short_message[:end], short_message[end:]


def concat_info(udh: bytes, tlvs: dict[int, bytes]) -> tuple[str, int, int] | None:
    """(reference key, total, seq) when this part belongs to a concatenated message, else None.

    The key names the scheme ("udh8:…", "udh16:…", "sar:…") so that references from different schemes
    never meet. The UDH wins over SAR TLVs. Inconsistent values (total 0, seq 0 or beyond total) count
    as no concatenation: the part is then delivered as a message of its own rather than held forever.
    """
    found: tuple[str, int, int] | None = None
    pos, end = 1, len(udh)
    while pos + 2 <= end:
        iei, length = udh[pos], udh[pos + 1]
        data = udh[pos + 2 : pos + 2 + length]
        if len(data) < length:
            break  # truncated IE: ignore it and anything after
        if iei == _IE_CONCAT_8 and length == 3:
            found = (f"udh8:{data[0]}", data[1], data[2])
        elif iei == _IE_CONCAT_16 and length == 4:
            found = (f"udh16:{int.from_bytes(data[:2], 'big')}", data[2], data[3])
        pos += 2 + length
    if found is None:
        ref = tlvs.get(SAR_MSG_REF_NUM)
        total = tlvs.get(SAR_TOTAL_SEGMENTS)
        seq = tlvs.get(SAR_SEGMENT_SEQNUM)
        if ref is not None and total and seq and len(ref) == 2:
            found = (f"sar:{int.from_bytes(ref, 'big')}", total[0], seq[0])
    if found is None:
        return None
    _, total_parts, seq_no = found
    if total_parts < 1 or not 1 <= seq_no <= total_parts:
        return None
    return found


_Key = tuple[str, str, str]


@dataclass(slots=True)
class _Assembly:
    sender: str
    destination: str
    total: int
    first_seen: float
    parts: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # seq → (data_coding, body)


@dataclass(slots=True)
class _Done:
    completed: float
    total: int
    parts: dict[int, bytes]


class Reassembler:
    """Joins the parts of concatenated MO messages, keyed by (sender, destination, reference).

    ``add`` returns a reply as soon as it is complete: at once for a single-part message, on the last
    missing part for a long one (parts may come in any order; a repeated part is ignored). ``expire``
    must be called periodically: it returns messages still incomplete ``timeout`` seconds after their
    first part, with :data:`MISSING` for each gap, and any that were pushed out because more than
    ``max_open`` were open at once.

    A part that repeats a message completed less than ``timeout`` ago (same key, same seq, same bytes) is
    dropped too: an SMSC re-sends a deliver_sm whose deliver_sm_resp it did not see, and that late copy
    would otherwise open a new assembly and come out as a bogus partial message.
    """

    def __init__(
        self, timeout: float = 60.0, *, max_open: int = 10_000, default_alphabet: DefaultAlphabet = "gsm7"
    ) -> None:
        if max_open < 1:
            raise ValueError("max_open must be at least 1")
        self.timeout = timeout
        self.max_open = max_open
        self.default_alphabet: DefaultAlphabet = default_alphabet
        # Insertion order is first-seen order (add is called with a non-decreasing clock), so the first
        # entry is always the oldest: eviction and expiry never need to scan the rest.
        self._open: OrderedDict[_Key, _Assembly] = OrderedDict()
        self._done: OrderedDict[_Key, _Done] = OrderedDict()
        self._evicted: list[InboundReply] = []

    def __len__(self) -> int:
        """Messages waiting for parts."""
        return len(self._open)

    def add(
        self,
        *,
        sender: str,
        destination: str,
        data_coding: int,
        short_message: bytes,
        esm_class: int,
        tlvs: dict[int, bytes],
        now: float,
    ) -> InboundReply | None:
        """Take one deliver_sm's user data; the whole message once it is complete, else None."""
        if not short_message:
            # The text may travel in message_payload instead (§5.3.2.32); the UDH, if any, comes with it.
            short_message = tlvs.get(MESSAGE_PAYLOAD, b"")
        udh, body = split_udh(short_message, esm_class)
        info = concat_info(udh, tlvs)
        if info is None:
            return InboundReply(sender, destination, self._decode(data_coding, body))
        ref, total, seq = info
        if total == 1:
            return InboundReply(sender, destination, self._decode(data_coding, body))
        key = (sender, destination, ref)

        done = self._done.get(key)
        if done is not None and done.total == total and done.parts.get(seq) == body:
            return None

        assembly = self._open.get(key)
        if assembly is not None and assembly.total != total:
            # The reference was reused for a different message before the old one completed: hand the
            # old one over as incomplete and start afresh.
            self._evicted.append(self._partial(self._open.pop(key)))
            assembly = None
        if assembly is None:
            assembly = _Assembly(sender, destination, total, now)
            self._open[key] = assembly
            while len(self._open) > self.max_open:
                _, oldest = self._open.popitem(last=False)
                self._evicted.append(self._partial(oldest))
        if seq in assembly.parts:
            return None  # a repeat of a part we hold; the first copy stands
        assembly.parts[seq] = (data_coding, body)
        if len(assembly.parts) < total:
            return None

        del self._open[key]
        self._done[key] = _Done(now, total, {s: part for s, (_, part) in assembly.parts.items()})
        self._done.move_to_end(key)
        while len(self._done) > self.max_open:
            self._done.popitem(last=False)
        return InboundReply(sender, destination, self._join(assembly))

    def expire(self, now: float) -> list[InboundReply]:
        """Messages given up on: incomplete after ``timeout``, or evicted to respect ``max_open``."""
        out, self._evicted = self._evicted, []
        while self._open:
            key, oldest = next(iter(self._open.items()))
            if now - oldest.first_seen < self.timeout:
                break
            del self._open[key]
            out.append(self._partial(oldest))
        while self._done:
            key, done = next(iter(self._done.items()))
            if now - done.completed < self.timeout:
                break
            del self._done[key]
        return out

    def _decode(self, data_coding: int, body: bytes) -> str:
        return decode_text(data_coding, body, default_alphabet=self.default_alphabet)

    def _join(self, assembly: _Assembly) -> str:
        """Decode runs of consecutive parts that share a data_coding as one byte string each (see the
        module docstring); a missing run becomes one MISSING marker."""
        pieces: list[str] = []
        run: list[bytes] = []
        run_coding = -1
        gap = False  # the previous seq was missing: consecutive missing parts share one marker
        for seq in range(1, assembly.total + 1):
            part = assembly.parts.get(seq)
            if part is None or part[0] != run_coding:
                if run:
                    pieces.append(self._decode(run_coding, b"".join(run)))
                    run = []
                if part is None:
                    if not gap:
                        pieces.append(MISSING)
                    gap = True
                    run_coding = -1
                    continue
                run_coding = part[0]
            gap = False
            run.append(part[1])
        if run:
            pieces.append(self._decode(run_coding, b"".join(run)))
        return "".join(pieces)

    def _partial(self, assembly: _Assembly) -> InboundReply:
        have = sorted(assembly.parts)
        missing = [seq for seq in range(1, assembly.total + 1) if seq not in assembly.parts]
        raw = (
            f"incomplete: parts {','.join(map(str, have))} of {assembly.total}"
            f" (missing {','.join(map(str, missing))})"
        )
        return InboundReply(assembly.sender, assembly.destination, self._join(assembly), raw=raw)
