"""Mobile-originated (MO) messages: what a non-receipt deliver_sm's user data says.

This module owns the path from that user data to an :class:`InboundReply` (a message that came whole)
or an :class:`InboundReplyPart` (one part of a long one): the data_coding → codec mapping (SMPP 3.4
§5.2.19 for 0x00-0x0F, the GSM 03.38 §4 coding groups above), the User Data Header split (esm_class UDHI
bit) and the concatenation information (UDH IE 0x00 with an 8-bit reference, IE 0x08 with a 16-bit one,
or the SAR TLVs). It holds no state: the driver hands each part to the core as it arrives, the core
stores it (raw bytes and the codec's name) and joins the parts once they are all in, or once the
channel's ``mo_timeout`` gives up on a missing one (:mod:`masd.core.reply_parts`; the text is decoded
from the joined bytes, since a character may straddle two parts). So nothing the SMSC was told we have
is only in this process's memory.
"""

from __future__ import annotations

from typing import Literal

from masd.core.reply_parts import MISSING, decode
from masd_adapters.base import InboundReply, InboundReplyPart
from masd_adapters.smpp.constants import (
    ESM_UDHI,
    MESSAGE_PAYLOAD,
    SAR_MSG_REF_NUM,
    SAR_SEGMENT_SEQNUM,
    SAR_TOTAL_SEGMENTS,
)

__all__ = ["MISSING", "codec_of", "concat_info", "decode_text", "read_mo", "split_udh"]

DefaultAlphabet = Literal["gsm7", "latin-1"]

_IE_CONCAT_8 = 0x00
_IE_CONCAT_16 = 0x08

# SMPP 3.4 §5.2.19 data_coding 0x00-0x0F, as codec names for masd.core.reply_parts.decode.
# Binary (0x02, 0x04) and pictogram (0x09) data have no text form: we decode them as Latin-1, which maps
# every octet to one character and so keeps the bytes recoverable from the text.
_SMPP_CODINGS: dict[int, str] = {
    0x00: "gsm7",  # the SMSC default alphabet, unless codec_of is told otherwise
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


def codec_of(data_coding: int, *, default_alphabet: DefaultAlphabet = "gsm7") -> str:
    """The codec (a name :func:`masd.core.reply_parts.decode` knows) that reads user data sent with this
    data_coding. ``default_alphabet`` is what the SMSC means by data_coding 0: GSM 03.38 as unpacked
    septets per the spec, but some SMSCs send ASCII/Latin-1 there."""
    if data_coding == 0x00:
        return default_alphabet
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
    """The text of a message's user data (UDH already removed). Never raises. An octet above 0x7F cannot
    be a septet, so such data is read as Latin-1 even when "gsm7" applies."""
    return decode(codec_of(data_coding, default_alphabet=default_alphabet), body)


def split_udh(short_message: bytes, esm_class: int) -> tuple[bytes, bytes]:
    """(udh, body) with ``udh + body == short_message``; ``udh`` includes its length octet (UDHL).

    Without the UDHI bit, or with a UDHL that runs past the data (a malformed header), the UDH is empty
    and everything is body: better to show a stray character than drop the message.
    """
    if not esm_class & ESM_UDHI or not short_message:
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


def read_mo(
    *,
    sender: str,
    destination: str,
    data_coding: int,
    short_message: bytes,
    esm_class: int,
    tlvs: dict[int, bytes],
    received_at: float,
    default_alphabet: DefaultAlphabet = "gsm7",
) -> InboundReply | InboundReplyPart:
    """One deliver_sm's user data: the whole reply, or one part of a long one (``received_at``, epoch
    seconds, goes with the part: the missing-part timeout runs from the first part's). Never raises for
    anything an SMSC can send: a malformed header or inconsistent concatenation values make the PDU a
    message of its own rather than a part held forever."""
    if not short_message:
        # The text may travel in message_payload instead (§5.3.2.32); the UDH, if any, comes with it.
        short_message = tlvs.get(MESSAGE_PAYLOAD, b"")
    udh, body = split_udh(short_message, esm_class)
    codec = codec_of(data_coding, default_alphabet=default_alphabet)
    info = concat_info(udh, tlvs)
    if info is None or info[1] == 1:
        return InboundReply(sender, destination, decode(codec, body))
    reference, total, seq = info
    return InboundReplyPart(sender, destination, reference, total, seq, codec, body, received_at)
