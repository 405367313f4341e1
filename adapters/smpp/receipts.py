"""Delivery receipts: recognising them, reading them, and matching their ids to submit_sm_resp ids.

This module owns everything between a receipt-bearing deliver_sm and an :class:`InboundReceipt`: which
esm_class values mark a receipt, reading the receipted_message_id / message_state / network_error_code
TLVs (preferred) and the de-facto text form of SMPP 3.4 Appendix B ("id:… sub:… dlvrd:… submit date:…
done date:… stat:… err:… text:…") as found in the wild, and the message-id normalisation that lets a
receipt find the segment it reports on even when the SMSC writes the id differently in the two places.

Message ids. masd stores ``canonical_id(resp_message_id, fmt)`` for each submitted segment and looks a
receipt up by ``id_candidates(receipt_id, fmt)``, first candidate first; ``parse_receipt`` already returns
the receipt's canonical id, which is the first candidate. SMSCs differ in three ways: the same number in
hex in the submit_sm_resp and in decimal in the receipt (or the other way round), leading zeros, and the
case of hex digits. The formats, i.e. the channel's ``id_format`` option:

* ``"as-is"``: ids are opaque strings, compared exactly (surrounding whitespace removed).
* ``"hex"``: the SMSC's ids are hexadecimal numbers. Canonical form: lower-case hex digits without
  leading zeros. A receipt id made only of decimal digits may be the decimal rendering of the hex id,
  so its hex rendering is a second candidate.
* ``"decimal"``: the SMSC's ids are decimal numbers. Canonical form: decimal digits without leading
  zeros; an id containing a-f is a hex rendering and is converted to decimal. A digits-only receipt id
  may still be hex that happens to have no letters, so its decimal value is a second candidate.
* ``"auto"`` (default): nothing is known. Canonical form is textual: an id of hex digits with at least one
  letter a-f becomes lower-case hex without leading zeros, a digits-only id loses its leading zeros,
  anything else (UUIDs, alphanumerics) is kept as it is. Candidates add both cross-base readings: a
  digits-only id read as decimal and rendered in hex, and any hex-digit id read as hex and rendered in
  decimal. A false match needs two live segments whose ids are each other's base conversion, which the
  lookup should make rarer still by only matching segments of this channel awaiting a receipt.

In every format an id that is not a number in the expected base is kept as it is, so nothing is lost.
"""

from __future__ import annotations

import re
from typing import Literal

from masd_adapters.base import InboundReceipt, ReceiptStatus
from masd_adapters.smpp.constants import (
    DATA_CODING_UCS2,
    ESM_DELIVERY_RECEIPT,
    ESM_INTERMEDIATE_NOTIFICATION,
    ESM_SME_ACK,
    ESM_TYPE_MASK,
    MESSAGE_PAYLOAD,
    MESSAGE_STATE,
    NETWORK_ERROR_CODE,
    RECEIPTED_MESSAGE_ID,
    STATE_ACCEPTED,
    STATE_DELETED,
    STATE_DELIVERED,
    STATE_ENROUTE,
    STATE_EXPIRED,
    STATE_REJECTED,
    STATE_UNDELIVERABLE,
    STATE_UNKNOWN,
)
from masd_adapters.smpp.fast import SubmitSm

__all__ = ["IdFormat", "canonical_id", "id_candidates", "is_receipt", "parse_receipt"]

IdFormat = Literal["auto", "hex", "decimal", "as-is"]

# esm_class bits 5-2 of a deliver_sm (SMPP 3.4 §5.2.12): 0x04 SMSC delivery receipt, 0x08 SME delivery
# acknowledgement, 0x20 intermediate delivery notification. The last is a receipt too (ENROUTE and the
# like, same text form); treating it as a mobile-originated message would show "id:… stat:ENROUTE" to a
# user as a reply. 0x10 (user acknowledgement) and 0x18 (conversation abort) carry no receipt.
_RECEIPT_TYPES = frozenset({ESM_DELIVERY_RECEIPT, ESM_SME_ACK, ESM_INTERMEDIATE_NOTIFICATION})

# message_state TLV values (SMPP 3.4 §5.3.2.35).
_STATES = {
    STATE_ENROUTE: ReceiptStatus.ENROUTE,
    STATE_DELIVERED: ReceiptStatus.DELIVERED,
    STATE_EXPIRED: ReceiptStatus.EXPIRED,
    STATE_DELETED: ReceiptStatus.DELETED,
    STATE_UNDELIVERABLE: ReceiptStatus.UNDELIVERED,
    STATE_ACCEPTED: ReceiptStatus.ACCEPTED,
    STATE_UNKNOWN: ReceiptStatus.UNKNOWN,
    STATE_REJECTED: ReceiptStatus.REJECTED,
}

# stat: values of the text form (Appendix B), plus the spelled-out forms some SMSCs write instead.
_STATS = {
    "DELIVRD": ReceiptStatus.DELIVERED,
    "DELIVERED": ReceiptStatus.DELIVERED,
    "EXPIRED": ReceiptStatus.EXPIRED,
    "DELETED": ReceiptStatus.DELETED,
    "UNDELIV": ReceiptStatus.UNDELIVERED,
    "UNDELIVERED": ReceiptStatus.UNDELIVERED,
    "UNDELIVERABLE": ReceiptStatus.UNDELIVERED,
    "ACCEPTD": ReceiptStatus.ACCEPTED,
    "ACCEPTED": ReceiptStatus.ACCEPTED,
    "UNKNOWN": ReceiptStatus.UNKNOWN,
    "REJECTD": ReceiptStatus.REJECTED,
    "REJECTED": ReceiptStatus.REJECTED,
    "ENROUTE": ReceiptStatus.ENROUTE,
}

# Keys are matched case-insensitively with any spacing around the colon. "text:" ends the structured
# part: whatever follows is the start of the original message and may itself contain "id:" or "stat:".
_TEXT_KEY = re.compile(r"\btext\s*:", re.IGNORECASE)
_ID = re.compile(r"\bid\s*:\s*(\S+)", re.IGNORECASE)
_STAT = re.compile(r"\bstat\s*:\s*([A-Za-z_]+)", re.IGNORECASE)
_ERR = re.compile(r"\berr\s*:\s*([0-9A-Za-z]+)", re.IGNORECASE)

# The Appendix B text exactly as most SMSCs (and the simulated one) write it, every field present, one
# space apart, values plain. When it matches, it gives what the separate searches below would find (none
# of them can match earlier inside it), in one pass instead of four.
_STANDARD = re.compile(
    r"id:([0-9A-Za-z]+) sub:[0-9A-Za-z]* dlvrd:[0-9A-Za-z]* submit date:[0-9]* done date:[0-9]* "
    r"stat:([A-Za-z_]+) err:([0-9A-Za-z]+) text:",
    re.IGNORECASE,
)

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_HEX_LETTERS = frozenset("abcdefABCDEF")
# int() refuses strings of thousands of digits; real ids are at most 64 characters (receipted_message_id
# is a 65-octet C-string), so longer ones are simply not treated as numbers.
_MAX_NUMERIC_ID = 64


def is_receipt(esm_class: int) -> bool:
    """Whether a deliver_sm with this esm_class carries a receipt rather than a mobile-originated message."""
    return esm_class & ESM_TYPE_MASK in _RECEIPT_TYPES


def _is_decimal(s: str) -> bool:
    # str.isdigit accepts non-ASCII digits such as '²'; ids are ASCII.
    return 0 < len(s) <= _MAX_NUMERIC_ID and s.isascii() and s.isdigit()


def _is_hex(s: str) -> bool:
    return 0 < len(s) <= _MAX_NUMERIC_ID and _HEX_DIGITS.issuperset(s)


def _strip_zeros(s: str) -> str:
    return s.lstrip("0") or "0"


def canonical_id(message_id: str, id_format: IdFormat = "auto") -> str:
    """The form under which an id is stored (submit path) and looked up (receipt path); see the module
    docstring for each format."""
    s = message_id.strip()
    if id_format == "as-is":
        return s
    if id_format == "decimal":
        if _is_decimal(s):
            return _strip_zeros(s)
        if _is_hex(s):
            return str(int(s, 16))
        return s
    # "hex" and "auto" agree on every id that is a number: hex text and digit strings are both written
    # without leading zeros, hex in lower case. They differ only in id_candidates.
    if _is_hex(s):
        return _strip_zeros(s.lower())
    return s


def id_candidates(raw_id: str, id_format: IdFormat = "auto") -> list[str]:
    """Canonical ids a receipt's id may stand for, most likely first and without repeats."""
    first = canonical_id(raw_id, id_format)
    out = [first]
    if id_format == "as-is":
        return out
    if id_format in ("hex", "auto") and _is_decimal(first):
        # The SMSC answered submit_sm with a hex id and wrote the receipt's id in decimal.
        out.append(format(int(first), "x"))
    if id_format in ("decimal", "auto") and _is_hex(first):
        # The SMSC answered with a decimal id and wrote the receipt's id in hex (letters or not).
        out.append(str(int(first, 16)))
    return list(dict.fromkeys(out))


def _receipt_text(sm: SubmitSm) -> str:
    body = sm.short_message or sm.tlvs.get(MESSAGE_PAYLOAD, b"")
    if sm.data_coding == DATA_CODING_UCS2:
        # A few SMSCs write the receipt text in UCS-2; drop an odd trailing byte rather than fail.
        return body[: len(body) & ~1].decode("utf-16-be", errors="replace")
    # Everything else: the receipt text is ASCII, and Latin-1 never fails on a stray byte.
    return body.decode("latin-1")


def _parse_err(value: str) -> int | None:
    # err: is three characters, nominally decimal ("000"); some SMSCs put hex there ("00A").
    if _is_decimal(value):
        return int(value)
    if _is_hex(value):
        return int(value, 16)
    return None


def _text_fields(text: str, want_id: bool, want_stat: bool, want_err: bool) -> tuple[str | None, ...]:
    """The id:, stat: and err: values of a receipt text (None where absent or not wanted), read before its
    text: field."""
    standard = _STANDARD.match(text)
    if standard is not None:
        return standard.groups()
    return _search_fields(text, want_id, want_stat, want_err)


def _search_fields(text: str, want_id: bool, want_stat: bool, want_err: bool) -> tuple[str | None, ...]:
    head = text
    text_key = _TEXT_KEY.search(text)
    if text_key is not None:
        head = text[: text_key.start()]
    found: list[str | None] = []
    for wanted, pattern in ((want_id, _ID), (want_stat, _STAT), (want_err, _ERR)):
        match = pattern.search(head) if wanted else None
        found.append(None if match is None else match.group(1))
    return tuple(found)


def parse_receipt(sm: SubmitSm, *, id_format: IdFormat = "auto") -> InboundReceipt | None:
    """The receipt a deliver_sm carries, or None when neither its TLVs nor its text give an id and a
    state. TLVs win over the text field by field. Does not look at esm_class: check is_receipt first."""
    tlvs = sm.tlvs
    carrier_id: str | None = None
    state: ReceiptStatus | None = None
    error_code: int | None = None

    tlv_id = tlvs.get(RECEIPTED_MESSAGE_ID)
    if tlv_id is not None:
        # A C-octet string: cut at the NUL, but tolerate SMSCs that leave it out.
        candidate = tlv_id.split(b"\0", 1)[0].decode("latin-1").strip()
        carrier_id = candidate or None
    tlv_state = tlvs.get(MESSAGE_STATE)
    if tlv_state is not None and len(tlv_state) == 1:
        # A value outside 1-8 (e.g. SMPP 5.0's SCHEDULED = 0) is left for the text to settle.
        state = _STATES.get(tlv_state[0])
    tlv_err = tlvs.get(NETWORK_ERROR_CODE)
    if tlv_err is not None and len(tlv_err) == 3:
        # network_type (1 = ANSI-136, 2 = IS-95, 3 = GSM, …) then a 2-octet code; the code is what counts.
        error_code = int.from_bytes(tlv_err[1:3], "big")

    text = _receipt_text(sm)
    text_id, text_stat, text_err = _text_fields(text, carrier_id is None, state is None, error_code is None)
    if carrier_id is None:
        carrier_id = text_id
    unknown_stat = ""
    if state is None and text_stat is not None:
        word = text_stat.upper()
        state = _STATS.get(word)
        if state is None:
            unknown_stat = word
    if error_code is None and text_err is not None:
        error_code = _parse_err(text_err)

    if carrier_id is None:
        return None
    if state is None:
        if not unknown_stat and tlv_state is None:
            # Neither a state TLV nor a stat: field: this is not a receipt we can read.
            return None
        # The SMSC did report a state, just not one we know: keep the receipt, as "unknown".
        state = ReceiptStatus.UNKNOWN
    raw = text.strip()
    if not raw:
        raw = f"receipted_message_id={carrier_id} message_state={tlv_state.hex() if tlv_state else '-'}"
    return InboundReceipt(
        carrier_id=canonical_id(carrier_id, id_format), status=state, error_code=error_code, raw=raw
    )
