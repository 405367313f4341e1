"""The pure rules for the rows of the China Mobile MAS "DB interface" tables.

An OA system that integrates with a MAS writes what it wants sent into ``api_mt_<code>``, and reads
receipts from ``api_rpt_<code>`` and replies from ``api_mo_<code>``. This module owns the decisions
about one row: which numbers an api_mt row names, what its text is (GBK or UTF-8 bytes included), when
it is due and what is wrong with it; and what masd writes back (RPT_CODE, RPT_DESC, api_mo's SM_ID and
MSG_FMT). Nothing here does I/O: the tables and the statements on them are :mod:`masd.store.mas`, and
:mod:`masd.interfaces.dbpoll` drives both.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import hashlib
import re
import time
import unicodedata
from collections.abc import Mapping
from typing import Any

from masd.core import recipients as rcpt
from masd.core.times import local_datetime
from masd.store.mas import DESC_LENGTH, MAX_CONTENT, MOBILE_LENGTH

__all__ = [
    "CODES",
    "MAX_ID",
    "BadRow",
    "MoRow",
    "MtRow",
    "RptRow",
    "client_ref",
    "decode_content",
    "local_time",
    "mo_msg_fmt",
    "parse_mobiles",
    "parse_send_time",
    "read_mt_row",
    "receipt_code",
    "receipt_desc",
    "ref_prefix",
    "rejected_code",
    "sm_id_from_ref",
    "sm_id_of_reply",
]

MAX_ID = 99_999_999  # SM_ID and SRC_ID are 0..99999999

# RPT_CODE values masd writes itself. Carrier error codes are small numbers (SMPP/CMPP statuses and
# receipt error fields); masd's own start at 9001 so that an OA can tell the two apart.
CODES: dict[str, int] = {
    "bad_mobile": 9001,  # no valid number in MOBILES, or this number is not valid
    "empty_content": 9002,  # CONTENT (and URL) empty
    "content_too_long": 9003,  # over 2000 characters, or more segments than the gateway sends
    "bad_send_time": 9004,  # SEND_TIME unreadable
    "bad_sm_id": 9005,  # SM_ID not 0..99999999
    "bad_src_id": 9006,  # SRC_ID not 0..99999999, or too long with the app's extension
    "unreadable_content": 9007,  # CONTENT bytes are neither UTF-8 nor GBK
    "rejected": 9008,  # refused by the gateway for another reason (see RPT_DESC)
    "forbidden": 9009,  # the app this interface acts as may not send SMS
    "over_rate": 9010,  # more numbers in MOBILES than the app's rate lets go at once (its burst)
    # A delivery that did not succeed and whose carrier gave no error code:
    "undelivered": 9101,
    "expired": 9102,
    "rejected_by_carrier": 9103,
    "failed": 9104,
    "cancelled": 9105,
}
_STATE_CODES = {
    "undelivered": CODES["undelivered"],
    "expired": CODES["expired"],
    "rejected": CODES["rejected_by_carrier"],
    "failed": CODES["failed"],
    "cancelled": CODES["cancelled"],
}


# ----- reading one api_mt row ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RptRow:
    """One row for api_rpt_<code>."""

    sm_id: int
    mobile: str
    rpt_code: int
    rpt_desc: str
    rpt_time: dt.datetime

    def values(self) -> dict[str, Any]:
        return {
            "sm_id": self.sm_id,
            "mobile": self.mobile[:MOBILE_LENGTH],
            "rpt_code": self.rpt_code,
            "rpt_desc": self.rpt_desc[:DESC_LENGTH],
            "rpt_time": self.rpt_time,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class MoRow:
    """One row for api_mo_<code>: a reply."""

    sm_id: int
    mobile: str
    content: str
    mo_time: dt.datetime
    msg_fmt: int

    def values(self) -> dict[str, Any]:
        return {
            "sm_id": self.sm_id,
            "mobile": self.mobile[:MOBILE_LENGTH],
            "content": self.content[:MAX_CONTENT],
            "mo_time": self.mo_time,
            "msg_fmt": self.msg_fmt,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class MtRow:
    """A row that can be sent: its numbers, text and time, and reports for numbers that could not."""

    auto_sn: int
    sm_id: int
    src_id: str  # "" for SRC_ID 0: no extension
    recipients: list[str]
    text: str
    send_at: float | None  # epoch seconds; None = now
    ref: str  # the client_ref that makes intake idempotent
    invalid: list[tuple[str, str]]  # (number as written, why) for numbers left out


@dataclasses.dataclass(frozen=True, slots=True)
class BadRow:
    """A row that will never be sent: reported in api_rpt (unless SM_ID is 0) and removed."""

    auto_sn: int
    sm_id: int
    mobiles: list[str]  # as written, one report row each (one empty one if there were none)
    code: int
    reason: str

    def reports(self, now: dt.datetime) -> list[RptRow]:
        return [RptRow(self.sm_id, m, self.code, self.reason, now) for m in (self.mobiles or [""])]


class BadValue(ValueError):
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(reason)


# MOBILES as OA systems write it: commas, but also full-width commas, semicolons, the ideographic comma
# and whitespace or line breaks between numbers.
_SEPARATORS = re.compile(r"[,;，；、\s]+")


def _text(value: Any) -> str:
    """A short text column's value (SQLite hands every text over as bytes: see the poller)."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def parse_mobiles(value: Any) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """MOBILES → (every entry as written, valid numbers in normal form without repeats, (entry, why) for
    each invalid one)."""
    entries = [e for e in _SEPARATORS.split(unicodedata.normalize("NFKC", _text(value))) if e]
    valid: list[str] = []
    invalid: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in entries:
        try:
            number = rcpt.normalize(entry)
        except rcpt.InvalidRecipient as e:
            invalid.append((entry, e.reason))
            continue
        if number not in seen:
            seen.add(number)
            valid.append(number)
    return entries, valid, invalid


def _id(value: Any, column: str, code: int) -> int:
    """SM_ID or SRC_ID as an int in 0..99999999; NULL or empty reads as 0."""
    raw = _text(value).strip() if isinstance(value, str | bytes | bytearray | memoryview) else value
    if raw is None or raw == "":
        return 0
    try:
        number = decimal.Decimal(str(raw))
    except decimal.InvalidOperation:
        raise BadValue(code, f"{column} {raw!r} is not a number from 0 to {MAX_ID}") from None
    if number != number.to_integral_value() or not 0 <= number <= MAX_ID:
        raise BadValue(code, f"{column} {raw} is not a whole number from 0 to {MAX_ID}")
    return int(number)


def _raw_sm_id(value: Any) -> int:
    """The SM_ID to echo in a report about a row whose SM_ID is itself wrong: as given when whole, else 0."""
    try:
        number = decimal.Decimal(_text(value).strip() if not isinstance(value, int) else value)
    except (decimal.InvalidOperation, ValueError):
        return 0
    if number != number.to_integral_value() or abs(number) >= 1 << 63:
        return 0
    return int(number)


_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y%m%d%H%M%S")


def parse_send_time(value: Any) -> float | None:
    """SEND_TIME ('yyyy-MM-dd HH:mm:ss', local time) → epoch seconds; NULL or empty → None (now).

    Also read: fractional seconds, a 'T' between date and time, slashes, 'yyyyMMddHHmmss', and a
    DATETIME column's value (a naive one is local time). Anything else raises :class:`BadValue`."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()  # naive → local time, as the OA meant
    if isinstance(value, dt.date):
        return time.mktime(value.timetuple())
    text = _text(value).strip()
    if not text:
        return None
    cleaned = re.sub(r"\.\d+$", "", text.replace("T", " "))
    for fmt in _TIME_FORMATS:
        try:
            parsed = dt.datetime.strptime(cleaned, fmt)
        except ValueError:
            continue
        return parsed.timestamp()
    raise BadValue(CODES["bad_send_time"], f"SEND_TIME {text[:40]!r} is not a time like 2024-05-01 09:30:00")


def decode_content(value: Any, encoding: str = "auto") -> str:
    """CONTENT as text. Bytes (a BLOB, a latin1 column, SQLite text) are decoded: ``auto`` tries UTF-8
    then GBK, ``utf-8`` and ``gbk`` take that one. GBK is read as GB18030, its superset, so characters
    an OA's GBK library adds beyond GB2312 come through too.

    A latin1 column read as text shows GBK bytes as Latin-1 letters; with ``gbk`` those are put back."""
    if value is None:
        return ""
    if isinstance(value, str):
        if encoding == "gbk" and value and max(value) <= "\xff" and not value.isascii():
            try:
                return value.encode("latin-1").decode("gb18030")
            except UnicodeDecodeError:
                return value
        return value
    if not isinstance(value, bytes | bytearray | memoryview):
        return str(value)
    data = bytes(value)
    tries = {"auto": ("utf-8", "gb18030"), "utf-8": ("utf-8",), "gbk": ("gb18030",)}[encoding]
    for codec in tries:
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    named = "UTF-8 nor GBK" if encoding == "auto" else encoding.upper()
    raise BadValue(CODES["unreadable_content"], f"CONTENT is not valid {named} ({len(data)} bytes)")


def client_ref(code: str, auto_sn: int, sm_id: int, digest_of: str) -> str:
    """The reference that makes intake of one row idempotent: ``mas:<code>:<AUTO_SN>:<SM_ID>:<digest>``.

    AUTO_SN alone is not enough: an OA may drop and recreate its table (or MariaDB before 10.2.4 may
    reuse AUTO_INCREMENT values of deleted rows after a restart), and a new row would then be taken
    for an old one and never sent. The digest of the row's content tells them apart. SM_ID is in the
    reference so that receipts find it even before masd has noted the row in ``dbpoll_messages``."""
    digest = hashlib.sha1(digest_of.encode("utf-8", errors="surrogatepass")).hexdigest()[:10]
    return f"mas:{code}:{auto_sn}:{sm_id}:{digest}"


def ref_prefix(code: str) -> str:
    return f"mas:{code}:"


def sm_id_from_ref(ref: str | None, code: str) -> int | None:
    """The SM_ID carried in a client_ref of this code, or None if the reference is not this code's."""
    if not ref or not ref.startswith(ref_prefix(code)):
        return None
    parts = ref.split(":")
    try:
        return int(parts[3])
    except (IndexError, ValueError):
        return None


def read_mt_row(raw: Mapping[str, Any], *, code: str, encoding: str = "auto") -> MtRow | BadRow:
    """Decide what one api_mt row is: something to send, or a bad row with the reason."""
    auto_sn = int(raw["auto_sn"])
    entries, valid, invalid = parse_mobiles(raw.get("mobiles"))
    try:
        sm_id = _id(raw.get("sm_id"), "SM_ID", CODES["bad_sm_id"])
    except BadValue as e:
        return BadRow(auto_sn, _raw_sm_id(raw.get("sm_id")), entries, e.code, e.reason)

    def bad(code_: int, reason: str) -> BadRow:
        return BadRow(auto_sn, sm_id, entries, code_, reason)

    try:
        src = _id(raw.get("src_id"), "SRC_ID", CODES["bad_src_id"])
        text = decode_content(raw.get("content"), encoding)
        send_at = parse_send_time(raw.get("send_time"))
    except BadValue as e:
        return bad(e.code, e.reason)
    if not valid:
        if not entries:
            return bad(CODES["bad_mobile"], "MOBILES is empty")
        return bad(CODES["bad_mobile"], f"no valid number in MOBILES: {invalid[0][0]}: {invalid[0][1]}")
    url = _text(raw.get("url")).strip()
    if _id_or_zero(raw.get("is_wap")) and url:
        # masd sends no WAP push; the link goes at the end of the text, which every handset shows.
        text = f"{text} {url}" if text else url
    if not text.strip():
        return bad(CODES["empty_content"], "CONTENT is empty")
    if len(text) > MAX_CONTENT:
        return bad(
            CODES["content_too_long"], f"CONTENT is {len(text)} characters; the maximum is {MAX_CONTENT}"
        )
    ref = client_ref(code, auto_sn, sm_id, f"{src}|{','.join(entries)}|{text}|{send_at}")
    return MtRow(auto_sn, sm_id, "" if src == 0 else str(src), valid, text, send_at, ref, invalid)


def _id_or_zero(value: Any) -> int:
    try:
        return int(decimal.Decimal(_text(value).strip() or "0"))
    except (decimal.InvalidOperation, ValueError):
        return 0


# ----- what masd writes back -------------------------------------------------------------------------------

_REJECTED_FIELDS = {
    "text": CODES["content_too_long"],
    "recipients": CODES["bad_mobile"],
    "extension": CODES["bad_src_id"],
}


def sm_id_of_reply(extension: str) -> int:
    """api_mo.SM_ID for a reply sent to the service number + the app's extension + ``extension``: that
    SRC_ID, which the MAS API client reads replies by (``SM_ID = srcID``); 0 when there is none (the
    bare extension) or it is not one masd could have sent with."""
    if extension.isdigit() and int(extension) <= MAX_ID:
        return int(extension)
    return 0


def rejected_code(field: str) -> int:
    """RPT_CODE for a row the gateway refused, by the field it named (``messages[3].text`` → text)."""
    return _REJECTED_FIELDS.get(field.rsplit(".", 1)[-1], CODES["rejected"])


def receipt_code(state: str, error_code: int | None) -> int:
    """RPT_CODE for a delivery's final state: 0 when delivered, else the carrier's error code, else
    masd's code for the state."""
    if state == "delivered":
        return 0
    if error_code:
        return int(error_code)
    return _STATE_CODES.get(state, CODES["failed"])


def receipt_desc(state: str, reason: str | None) -> str:
    text = state.upper() if state != "delivered" else "DELIVRD"
    return f"{text}: {reason}" if reason else text


def mo_msg_fmt(text: str) -> int:
    """MSG_FMT of a reply as CMPP numbers it: 15 (GBK) when GBK can carry the text, else 8 (UCS-2)."""
    try:
        text.encode("gbk")
    except UnicodeEncodeError:
        return 8
    return 15


def local_time(epoch: float | None) -> dt.datetime:
    """Epoch seconds (None: now) → the naive local time an OA reads, in whole seconds."""
    return local_datetime(time.time() if epoch is None else epoch)
