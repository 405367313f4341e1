"""SMGP 3.0 PDUs as bytes: the header, the bodies of Login, Submit, Deliver, Active_Test and Exit with their
responses, the optional parameters (TLVs) after a Submit's or a Deliver's fixed fields, and the status
report carried inside a Deliver; pure, no I/O.

This module owns the wire layout (SMGP 3.0.3, sections 5.2 and 6): which fields a PDU has, their widths
and order. A PDU is a 12-octet header (PacketLength, RequestID, SequenceID, big-endian unsigned) and a
body. Integers are big-endian; octet strings have a fixed width, are NUL-padded on encoding and lose
their trailing NULs on decoding. They are handled as text through Latin-1, which maps every octet to one
character and back, so a peer's odd octet never breaks decoding and survives a round trip. A MsgID is
kept as its raw 10 octets (:mod:`.msgid` reads the digits). Login's TimeStamp is MMDDHHMMSS read as a
decimal integer, as in CMPP, but AuthenticatorClient pads the ClientID with 7 zero octets, not 9.

Submit and Deliver end with optional parameters, each a TLV: Tag (2 octets), Length (2), Value (Length
octets). The ones the spec lists for the PDU are fields of its dataclass, ``None`` when absent; any other
(a tag this module does not know, or a second copy of one it does) is kept in ``other_tlvs`` as it came,
so nothing a gateway sends is lost, and is otherwise ignored.

Decoding is bounds-checked: malformed input raises :class:`PduError` naming the PDU and the field, never
``IndexError`` or ``struct.error``, because a peer's garbage must drop the link, not crash the driver.
Encoding refuses values that do not fit their field (ValueError naming it) rather than cutting them.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from .. import _codec
from .constants import (
    ACTIVE_TEST,
    ACTIVE_TEST_RESP,
    DELIVER,
    DELIVER_RESP,
    EXIT,
    EXIT_RESP,
    IS_REPORT,
    LOGIN,
    LOGIN_RESP,
    MAX_MT_LENGTH,
    MSG_TYPE_MT,
    NEED_REPORT,
    SUBMIT,
    SUBMIT_RESP,
    TAG_CHARGE_TERM_PSEUDO,
    TAG_CHARGE_TERM_TYPE,
    TAG_CHARGE_USER_TYPE,
    TAG_DEST_TERM_PSEUDO,
    TAG_DEST_TERM_TYPE,
    TAG_LINK_ID,
    TAG_M_SERVICE_ID,
    TAG_MSG_SRC,
    TAG_PK_NUMBER,
    TAG_PK_TOTAL,
    TAG_SP_DEAL_RESULT,
    TAG_SRC_TERM_PSEUDO,
    TAG_SRC_TERM_TYPE,
    TAG_SUBMIT_MSG_TYPE,
    TAG_TP_PID,
    TAG_TP_UDHI,
    TAG_WIDTHS,
    VERSION_30,
    command_name,
    tag_name,
)

__all__ = [
    "HEADER_LENGTH",
    "MAX_DESTINATIONS",
    "MAX_PDU",
    "REPORT_LENGTH",
    "ActiveTest",
    "ActiveTestResp",
    "Deliver",
    "DeliverResp",
    "Exit",
    "ExitResp",
    "Header",
    "Login",
    "LoginResp",
    "Packet",
    "Pdu",
    "PduError",
    "Report",
    "Submit",
    "SubmitResp",
    "Tlv",
    "authenticator_client",
    "authenticator_server",
    "decode",
    "decode_header",
    "decode_report",
    "encode",
    "encode_header",
    "encode_report",
    "login_request",
    "timestamp_of",
    "timestamp_text",
]

HEADER_LENGTH = 12
# Above any legal PDU: the largest is a Submit to 100 terminals (2,100 octets of DestTermID) with 140
# content octets and every optional parameter (under 2,600 in all).
MAX_PDU = 4096
MAX_DESTINATIONS = 100  # DestTermIDCount (6.2.21)
REPORT_LENGTH = 122  # a status report's MsgContent as the spec lays it out (6.2.63)

_HEADER = struct.Struct(">III")
_MSG_ID = 10
_TERM_ID = 21
_MAX_MSG_LENGTH = 255  # MsgLength is one octet
_TLV_HEAD = 4  # Tag 2 + Length 2
_MAX_TLV_VALUE = 0xFFFF


class PduError(_codec.PduError):
    """Bytes that are not a well-formed SMGP PDU (or status report); the link should be dropped.

    ``command`` is the PDU's name when known, ``field`` the spec's name of the field at fault.
    """


# ----- the PDUs ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tlv:
    """One optional parameter as it is on the wire: its Tag and its Value's octets."""

    tag: int
    value: bytes


@dataclass(frozen=True, slots=True)
class Login:
    """SMGP Login: the SP's login to the SMGW. Build one with :func:`login_request`."""

    client_id: str  # 8: the SP's account (its service code)
    authenticator_client: bytes  # 16, see authenticator_client()
    login_mode: int  # LOGIN_MODE_SEND, _RECEIVE or _TRANSMIT
    timestamp: int  # MMDDHHMMSS read as a decimal integer
    client_version: int = VERSION_30


@dataclass(frozen=True, slots=True)
class LoginResp:
    """SMGP Login_Resp: ``status`` 0 is a login; ``server_version`` the highest the SMGW supports."""

    status: int
    authenticator_server: bytes  # 16; all zero when authentication failed
    server_version: int = VERSION_30


@dataclass(frozen=True, slots=True)
class Submit:
    """SMGP Submit: an MT message from the SP. The fields after ``reserve`` are the optional parameters the
    spec lists for a Submit (5.2.2.2.1), ``None`` when not sent; ``other_tlvs`` holds any other."""

    msg_type: int = MSG_TYPE_MT
    need_report: int = NEED_REPORT
    priority: int = 0
    service_id: str = ""  # 10
    fee_type: str = ""  # 2: "00" free, "01" per message, …
    fee_code: str = ""  # 6, in fen
    fixed_fee: str = ""  # 6, in fen
    msg_format: int = 0
    valid_time: str = ""  # 17, SMPP time format
    at_time: str = ""  # 17
    src_term_id: str = ""  # 21: "118" + SP service code + extension, or the carrier's long number
    charge_term_id: str = ""  # 21
    dest_term_ids: tuple[str, ...] = ()  # DestTermIDCount of them, 21 octets each
    msg_content: bytes = b""  # MsgLength octets, at most 140; the UDH included when tp_udhi is 1
    reserve: str = ""  # 8
    tp_pid: int | None = None
    tp_udhi: int | None = None
    link_id: str | None = None  # 20
    msg_src: str | None = None  # 8
    charge_user_type: int | None = None
    charge_term_type: int | None = None
    charge_term_pseudo: str | None = None
    dest_term_type: int | None = None
    dest_term_pseudo: str | None = None
    pk_total: int | None = None
    pk_number: int | None = None
    submit_msg_type: int | None = None
    sp_deal_result: int | None = None
    m_service_id: str | None = None  # 21
    other_tlvs: tuple[Tlv, ...] = ()


@dataclass(frozen=True, slots=True)
class SubmitResp:
    """SMGP Submit_Resp: the MsgID the SMGW gave the Submit (10 raw octets), and its Status."""

    msg_id: bytes
    status: int


@dataclass(frozen=True, slots=True)
class Deliver:
    """SMGP Deliver: a reply (``is_report`` 0) or a status report (1, the report in ``msg_content``: see
    :func:`decode_report`). The fields after ``reserve`` are the spec's optional parameters for a Deliver
    (5.2.2.3.1), ``None`` when not sent; ``other_tlvs`` holds any other."""

    msg_id: bytes  # 10
    is_report: int = 0
    msg_format: int = 0
    recv_time: str = ""  # 14: YYYYMMDDHHMMSS
    src_term_id: str = ""  # 21: the user's number
    dest_term_id: str = ""  # 21: the number the user wrote to (service code + extension)
    msg_content: bytes = b""
    reserve: str = ""  # 8
    tp_pid: int | None = None
    tp_udhi: int | None = None
    link_id: str | None = None  # 20
    src_term_type: int | None = None
    src_term_pseudo: str | None = None
    submit_msg_type: int | None = None
    sp_deal_result: int | None = None
    other_tlvs: tuple[Tlv, ...] = ()

    @property
    def carries_report(self) -> bool:
        return self.is_report == IS_REPORT


@dataclass(frozen=True, slots=True)
class DeliverResp:
    """SMGP Deliver_Resp: the Deliver's MsgID and the SP's Status."""

    msg_id: bytes
    status: int


@dataclass(frozen=True, slots=True)
class ActiveTest:
    """SMGP Active_Test: the link check either side may send; no body."""


@dataclass(frozen=True, slots=True)
class ActiveTestResp:
    """SMGP Active_Test_Resp; no body (unlike CMPP's, which has a Reserved octet)."""


@dataclass(frozen=True, slots=True)
class Exit:
    """SMGP Exit: the end of the session, from either side; no body."""


@dataclass(frozen=True, slots=True)
class ExitResp:
    """SMGP Exit_Resp; no body."""


@dataclass(frozen=True, slots=True)
class Report:
    """The status report in a Deliver's MsgContent (IsReport = 1), in the SMPP 3.4 text layout with fixed
    widths: ``id:`` MsgID(10, raw) `` sub:`` 3 `` dlvrd:`` 3 `` Submit date:`` 10 `` done date:`` 10
    `` stat:`` 7 `` err:`` 3 `` Text:`` 20, 122 octets in all."""

    msg_id: bytes  # the Submit_Resp's MsgID of the segment this reports on
    stat: str  # 7: DELIVRD, UNDELIV, … or a gateway's code
    submit_date: str  # 10: YYMMDDHHMM
    done_date: str  # 10: YYMMDDHHMM
    err: str = "000"  # 3, see constants.ERR_NAMES
    sub: str = "001"  # 3
    dlvrd: str = "001"  # 3
    text: bytes = b""  # 20: the message's length (3 ASCII digits) and its first 17 octets


Pdu = (
    Login
    | LoginResp
    | Submit
    | SubmitResp
    | Deliver
    | DeliverResp
    | ActiveTest
    | ActiveTestResp
    | Exit
    | ExitResp
)


class Header(NamedTuple):
    packet_length: int
    request_id: int
    sequence_id: int


class Packet(NamedTuple):
    """A decoded PDU and the SequenceID its response must carry."""

    sequence_id: int
    pdu: Pdu


# The optional parameters each PDU names, in the spec's tag order: (dataclass field, tag, is an Integer).
_SUBMIT_TLVS = (
    ("tp_pid", TAG_TP_PID, True),
    ("tp_udhi", TAG_TP_UDHI, True),
    ("link_id", TAG_LINK_ID, False),
    ("charge_user_type", TAG_CHARGE_USER_TYPE, True),
    ("charge_term_type", TAG_CHARGE_TERM_TYPE, True),
    ("charge_term_pseudo", TAG_CHARGE_TERM_PSEUDO, False),
    ("dest_term_type", TAG_DEST_TERM_TYPE, True),
    ("dest_term_pseudo", TAG_DEST_TERM_PSEUDO, False),
    ("pk_total", TAG_PK_TOTAL, True),
    ("pk_number", TAG_PK_NUMBER, True),
    ("submit_msg_type", TAG_SUBMIT_MSG_TYPE, True),
    ("sp_deal_result", TAG_SP_DEAL_RESULT, True),
    ("msg_src", TAG_MSG_SRC, False),
    ("m_service_id", TAG_M_SERVICE_ID, False),
)
_DELIVER_TLVS = (
    ("tp_pid", TAG_TP_PID, True),
    ("tp_udhi", TAG_TP_UDHI, True),
    ("link_id", TAG_LINK_ID, False),
    ("submit_msg_type", TAG_SUBMIT_MSG_TYPE, True),
    ("sp_deal_result", TAG_SP_DEAL_RESULT, True),
    ("src_term_type", TAG_SRC_TERM_TYPE, True),
    ("src_term_pseudo", TAG_SRC_TERM_PSEUDO, False),
)
_MAX_INTEGER_TLV = 4  # the spec's Integers are 1 octet; some SPs send 2 (go_smgp's own test does)


# ----- authentication ------------------------------------------------------------------------------------


def timestamp_text(timestamp: int) -> str:
    """The TimeStamp as the 10 characters MMDDHHMMSS that enter AuthenticatorClient: right-aligned and
    padded with "0" (the spec's 1 March 00:00:00 is 0x11F0E540, its text 0301000000)."""
    if not 0 <= timestamp <= 9_999_999_999:
        raise ValueError(f"TimeStamp {timestamp} is not MMDDHHMMSS")
    return f"{timestamp:010d}"


def timestamp_of(moment: datetime) -> int:
    """The Login TimeStamp for a local time: MMDDHHMMSS read as a decimal integer."""
    return int(moment.strftime("%m%d%H%M%S"))


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def authenticator_client(client_id: str, secret: str | bytes, timestamp: int) -> bytes:
    """MD5(ClientID + 7 zero octets + shared secret + TimeStamp as MMDDHHMMSS) (6.2.2). The spec keeps the
    secret to 15 octets; a longer one is hashed as given."""
    material = (
        client_id.encode("latin-1") + bytes(7) + _secret_bytes(secret) + timestamp_text(timestamp).encode()
    )
    return hashlib.md5(material).digest()


def authenticator_server(status: int, client: bytes, secret: str | bytes) -> bytes:
    """MD5(Status as 4 octets + AuthenticatorClient + shared secret) (6.2.7); an SP rarely checks this, the
    simulated SMGW must send it."""
    return hashlib.md5(_uint(status, 4, "Status") + client + _secret_bytes(secret)).digest()


def login_request(
    client_id: str, secret: str | bytes, *, timestamp: int, login_mode: int, version: int = VERSION_30
) -> Login:
    """A Login for this account and secret, its authenticator computed."""
    auth = authenticator_client(client_id, secret, timestamp)
    return Login(client_id, auth, login_mode, timestamp, version)


# ----- encoding ------------------------------------------------------------------------------------------


def _uint(value: int, width: int, field: str) -> bytes:
    if not 0 <= value < 1 << (8 * width):
        raise ValueError(f"{field} {value} does not fit {width} octet(s)")
    return value.to_bytes(width, "big")


def _latin1(value: str, field: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{field} {value!r} has a character that is not one octet") from None


def _octets(value: str, width: int, field: str) -> bytes:
    raw = _latin1(value, field)
    if len(raw) > width:
        raise ValueError(f"{field} {value!r} is {len(raw)} octets; the field has {width}")
    return raw.ljust(width, b"\0")


def _fixed(value: bytes, width: int, field: str) -> bytes:
    if len(value) != width:
        raise ValueError(f"{field} is {len(value)} octets; it must be {width}")
    return value


def _content(value: bytes, limit: int) -> bytes:
    if len(value) > limit:
        raise ValueError(f"MsgContent is {len(value)} octets; MsgLength allows {limit} here")
    return bytes((len(value),)) + value


def _tlv(tag: int, value: bytes) -> bytes:
    if not 0 <= tag <= 0xFFFF:
        raise ValueError(f"Tag {tag} does not fit 2 octets")
    if len(value) > _MAX_TLV_VALUE:
        raise ValueError(f"{tag_name(tag)} is {len(value)} octets; a TLV's Length allows {_MAX_TLV_VALUE}")
    return struct.pack(">HH", tag, len(value)) + value


def _encode_tlvs(pdu: Submit | Deliver, table: tuple[tuple[str, int, bool], ...]) -> bytes:
    parts = []
    for name, tag, integer in table:
        value = getattr(pdu, name)
        if value is None:
            continue
        field = tag_name(tag)
        if integer:
            octets = _uint(value, 1, field)
        else:
            width = TAG_WIDTHS[tag]
            octets = _latin1(value, field) if width is None else _octets(value, width, field)
        parts.append(_tlv(tag, octets))
    named = {tag: name for name, tag, _ in table}
    for extra in pdu.other_tlvs:
        owner = named.get(extra.tag)
        if owner is not None and getattr(pdu, owner) is None:
            # It would come back as the named field: one meaning, one place.
            raise ValueError(f"{tag_name(extra.tag)} is a field of this PDU: set {owner}, not other_tlvs")
        parts.append(_tlv(extra.tag, extra.value))
    return b"".join(parts)


def _encode_submit(p: Submit) -> bytes:
    if not 1 <= len(p.dest_term_ids) <= MAX_DESTINATIONS:
        raise ValueError(
            f"DestTermIDCount {len(p.dest_term_ids)}: a Submit has 1 … {MAX_DESTINATIONS} terminals"
        )
    parts = [
        _uint(p.msg_type, 1, "MsgType"),
        _uint(p.need_report, 1, "NeedReport"),
        _uint(p.priority, 1, "Priority"),
        _octets(p.service_id, 10, "ServiceID"),
        _octets(p.fee_type, 2, "FeeType"),
        _octets(p.fee_code, 6, "FeeCode"),
        _octets(p.fixed_fee, 6, "FixedFee"),
        _uint(p.msg_format, 1, "MsgFormat"),
        _octets(p.valid_time, 17, "ValidTime"),
        _octets(p.at_time, 17, "AtTime"),
        _octets(p.src_term_id, _TERM_ID, "SrcTermID"),
        _octets(p.charge_term_id, _TERM_ID, "ChargeTermID"),
        bytes((len(p.dest_term_ids),)),
    ]
    parts += [_octets(d, _TERM_ID, f"DestTermID[{i}]") for i, d in enumerate(p.dest_term_ids)]
    parts.append(_content(p.msg_content, MAX_MT_LENGTH))
    parts.append(_octets(p.reserve, 8, "Reserve"))
    parts.append(_encode_tlvs(p, _SUBMIT_TLVS))
    return b"".join(parts)


def _encode_deliver(p: Deliver) -> bytes:
    return b"".join(
        (
            _fixed(p.msg_id, _MSG_ID, "MsgID"),
            _uint(p.is_report, 1, "IsReport"),
            _uint(p.msg_format, 1, "MsgFormat"),
            _octets(p.recv_time, 14, "RecvTime"),
            _octets(p.src_term_id, _TERM_ID, "SrcTermID"),
            _octets(p.dest_term_id, _TERM_ID, "DestTermID"),
            _content(p.msg_content, _MAX_MSG_LENGTH),
            _octets(p.reserve, 8, "Reserve"),
            _encode_tlvs(p, _DELIVER_TLVS),
        )
    )


def _encode_body(pdu: Pdu) -> tuple[int, bytes]:
    if isinstance(pdu, Login):
        body = (
            _octets(pdu.client_id, 8, "ClientID")
            + _fixed(pdu.authenticator_client, 16, "AuthenticatorClient")
            + _uint(pdu.login_mode, 1, "LoginMode")
            + _uint(pdu.timestamp, 4, "TimeStamp")
            + _uint(pdu.client_version, 1, "ClientVersion")
        )
        return LOGIN, body
    if isinstance(pdu, LoginResp):
        body = (
            _uint(pdu.status, 4, "Status")
            + _fixed(pdu.authenticator_server, 16, "AuthenticatorServer")
            + _uint(pdu.server_version, 1, "ServerVersion")
        )
        return LOGIN_RESP, body
    if isinstance(pdu, Submit):
        return SUBMIT, _encode_submit(pdu)
    if isinstance(pdu, SubmitResp):
        return SUBMIT_RESP, _fixed(pdu.msg_id, _MSG_ID, "MsgID") + _uint(pdu.status, 4, "Status")
    if isinstance(pdu, Deliver):
        return DELIVER, _encode_deliver(pdu)
    if isinstance(pdu, DeliverResp):
        return DELIVER_RESP, _fixed(pdu.msg_id, _MSG_ID, "MsgID") + _uint(pdu.status, 4, "Status")
    if isinstance(pdu, ActiveTest):
        return ACTIVE_TEST, b""
    if isinstance(pdu, ActiveTestResp):
        return ACTIVE_TEST_RESP, b""
    if isinstance(pdu, Exit):
        return EXIT, b""
    if isinstance(pdu, ExitResp):
        return EXIT_RESP, b""
    raise TypeError(f"not an SMGP PDU: {pdu!r}")


def _check_range(value: int, field: str) -> int:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{field} {value} does not fit 4 octets")
    return value


def encode_header(header: Header) -> bytes:
    return _HEADER.pack(
        _check_range(header.packet_length, "PacketLength"),
        _check_range(header.request_id, "RequestID"),
        _check_range(header.sequence_id, "SequenceID"),
    )


def encode(pdu: Pdu, *, sequence_id: int) -> bytes:
    """The whole PDU, header included."""
    request_id, body = _encode_body(pdu)
    return encode_header(Header(HEADER_LENGTH + len(body), request_id, sequence_id)) + body


# (label, width, Report field) in order; the labels are the spec's (SMPP 3.4's) words.
_REPORT_LAYOUT = (
    ("id:", _MSG_ID, "msg_id"),
    (" sub:", 3, "sub"),
    (" dlvrd:", 3, "dlvrd"),
    (" Submit date:", 10, "submit_date"),
    (" done date:", 10, "done_date"),
    (" stat:", 7, "stat"),
    (" err:", 3, "err"),
    (" Text:", 20, "text"),
)
# Everything before the Text's value: a report must have this much for its fields to be where they are.
_REPORT_MINIMUM = REPORT_LENGTH - 20


def encode_report(report: Report) -> bytes:
    """The MsgContent of a status report Deliver: the 122 octets of the spec's layout."""
    parts = []
    for label, width, name in _REPORT_LAYOUT:
        value = getattr(report, name)
        if name == "msg_id":
            octets = _fixed(value, width, "Id")
        elif name == "text":
            if len(value) > width:
                raise ValueError(f"Text is {len(value)} octets; the field has {width}")
            octets = value.ljust(width, b"\0")
        else:
            octets = _octets(value, width, label.strip(" :"))
        parts.append(label.encode("ascii") + octets)
    return b"".join(parts)


# ----- decoding ------------------------------------------------------------------------------------------


class _Reader:
    """Reads fields off a body in order; every short read names the field it was reading."""

    __slots__ = ("command", "data", "last", "offset")

    def __init__(self, data: bytes, command: str) -> None:
        self.data = data
        self.command = command
        self.offset = 0
        self.last = "the header"

    def take(self, width: int, field: str) -> bytes:
        end = self.offset + width
        if end > len(self.data):
            left = len(self.data) - self.offset
            raise PduError(
                f"truncated: {width} octet(s) needed at body offset {self.offset}, {left} left",
                command=self.command,
                field=field,
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        self.last = field
        return chunk

    def uint(self, width: int, field: str) -> int:
        return int.from_bytes(self.take(width, field), "big")

    def text(self, width: int, field: str) -> str:
        return self.take(width, field).rstrip(b"\0").decode("latin-1")

    def content(self) -> bytes:
        return self.take(self.uint(1, "MsgLength"), "MsgContent")

    @property
    def left(self) -> int:
        return len(self.data) - self.offset

    def end(self) -> None:
        if self.left:
            raise PduError(
                f"oversized: {self.left} octet(s) after the last field, {self.last}",
                command=self.command,
                field=self.last,
            )


def _decode_tlvs(r: _Reader, table: tuple[tuple[str, int, bool], ...]) -> dict[str, object]:
    """The optional parameters up to the end of the body: the named ones by field, the rest in order."""
    named = {tag: (name, integer) for name, tag, integer in table}
    fields: dict[str, object] = {}
    others: list[Tlv] = []
    while r.left:
        if r.left < _TLV_HEAD:
            raise PduError(
                f"truncated: {r.left} octet(s) after {r.last}; an optional parameter's Tag and Length are 4",
                command=r.command,
                field="TLV",
            )
        tag = r.uint(2, "Tag")
        length = r.uint(2, "Length")
        field = tag_name(tag)
        value = r.take(length, field)
        spec = named.get(tag)
        if spec is None or spec[0] in fields:
            others.append(Tlv(tag, value))
            continue
        name, integer = spec
        if integer:
            if not 1 <= length <= _MAX_INTEGER_TLV:
                raise PduError(
                    f"Length {length}: an Integer parameter is 1 octet", command=r.command, field=field
                )
            fields[name] = int.from_bytes(value, "big")
        else:
            fields[name] = value.rstrip(b"\0").decode("latin-1")
    fields["other_tlvs"] = tuple(others)
    return fields


def decode_header(data: bytes) -> Header:
    """The header at the start of ``data``; checks PacketLength is 12 … :data:`MAX_PDU` (a framing reader
    calls this on the first 12 octets to learn how many more to wait for)."""
    if len(data) < HEADER_LENGTH:
        raise PduError(
            f"truncated: a header is {HEADER_LENGTH} octets, got {len(data)}", field="PacketLength"
        )
    header = Header(*_HEADER.unpack_from(data))
    if not HEADER_LENGTH <= header.packet_length <= MAX_PDU:
        raise PduError(
            f"{header.packet_length} is out of range ({HEADER_LENGTH} … {MAX_PDU})",
            command=command_name(header.request_id),
            field="PacketLength",
        )
    return header


def _decode_submit(r: _Reader) -> Submit:
    msg_type = r.uint(1, "MsgType")
    need_report = r.uint(1, "NeedReport")
    priority = r.uint(1, "Priority")
    service_id = r.text(10, "ServiceID")
    fee_type = r.text(2, "FeeType")
    fee_code = r.text(6, "FeeCode")
    fixed_fee = r.text(6, "FixedFee")
    msg_format = r.uint(1, "MsgFormat")
    valid_time = r.text(17, "ValidTime")
    at_time = r.text(17, "AtTime")
    src_term_id = r.text(_TERM_ID, "SrcTermID")
    charge_term_id = r.text(_TERM_ID, "ChargeTermID")
    count = r.uint(1, "DestTermIDCount")
    dest_term_ids = tuple(r.text(_TERM_ID, f"DestTermID[{i}]") for i in range(count))
    msg_content = r.content()
    reserve = r.text(8, "Reserve")
    options = _decode_tlvs(r, _SUBMIT_TLVS)
    return Submit(
        msg_type=msg_type,
        need_report=need_report,
        priority=priority,
        service_id=service_id,
        fee_type=fee_type,
        fee_code=fee_code,
        fixed_fee=fixed_fee,
        msg_format=msg_format,
        valid_time=valid_time,
        at_time=at_time,
        src_term_id=src_term_id,
        charge_term_id=charge_term_id,
        dest_term_ids=dest_term_ids,
        msg_content=msg_content,
        reserve=reserve,
        **options,  # type: ignore[arg-type]
    )


def _decode_deliver(r: _Reader) -> Deliver:
    msg_id = r.take(_MSG_ID, "MsgID")
    is_report = r.uint(1, "IsReport")
    msg_format = r.uint(1, "MsgFormat")
    recv_time = r.text(14, "RecvTime")
    src_term_id = r.text(_TERM_ID, "SrcTermID")
    dest_term_id = r.text(_TERM_ID, "DestTermID")
    msg_content = r.content()
    reserve = r.text(8, "Reserve")
    options = _decode_tlvs(r, _DELIVER_TLVS)
    return Deliver(
        msg_id=msg_id,
        is_report=is_report,
        msg_format=msg_format,
        recv_time=recv_time,
        src_term_id=src_term_id,
        dest_term_id=dest_term_id,
        msg_content=msg_content,
        reserve=reserve,
        **options,  # type: ignore[arg-type]
    )


def _decode_body(request_id: int, r: _Reader) -> Pdu:
    pdu: Pdu
    if request_id == LOGIN:
        pdu = Login(
            r.text(8, "ClientID"),
            r.take(16, "AuthenticatorClient"),
            r.uint(1, "LoginMode"),
            r.uint(4, "TimeStamp"),
            r.uint(1, "ClientVersion"),
        )
    elif request_id == LOGIN_RESP:
        pdu = LoginResp(r.uint(4, "Status"), r.take(16, "AuthenticatorServer"), r.uint(1, "ServerVersion"))
    elif request_id == SUBMIT:
        pdu = _decode_submit(r)
    elif request_id == SUBMIT_RESP:
        pdu = SubmitResp(r.take(_MSG_ID, "MsgID"), r.uint(4, "Status"))
    elif request_id == DELIVER:
        pdu = _decode_deliver(r)
    elif request_id == DELIVER_RESP:
        pdu = DeliverResp(r.take(_MSG_ID, "MsgID"), r.uint(4, "Status"))
    elif request_id == ACTIVE_TEST:
        pdu = ActiveTest()
    elif request_id == ACTIVE_TEST_RESP:
        pdu = ActiveTestResp()
    elif request_id == EXIT:
        pdu = Exit()
    elif request_id == EXIT_RESP:
        pdu = ExitResp()
    else:
        raise PduError(
            f"RequestID 0x{request_id:08X} is not decoded here", command=r.command, field="RequestID"
        )
    r.end()
    return pdu


def decode(data: bytes) -> Packet:
    """One whole PDU (header included, nothing after it).

    Raises :class:`PduError` when PacketLength disagrees with ``len(data)``, the RequestID is not one of
    the PDUs above, or the body is shorter or longer than its fields (a Submit's or Deliver's optional
    parameters must fill the rest of the body exactly).
    """
    header = decode_header(data)
    command = command_name(header.request_id)
    if header.packet_length != len(data):
        raise PduError(
            f"{header.packet_length} but {len(data)} octets were given", command=command, field="PacketLength"
        )
    reader = _Reader(data[HEADER_LENGTH:], command)
    return Packet(header.sequence_id, _decode_body(header.request_id, reader))


def decode_report(content: bytes) -> Report:
    """The status report in a Deliver's MsgContent, read by position as go_smgp and SMSGate read it: the
    labels are not compared, because gateways spell them differently ("Submit date:", "submit date:",
    "Submit_Date:", even another separator) at the same widths. The Text may be shorter than its 20
    octets (SMSGate accepts that) or run to the end of the content; fewer than the 102 octets before it
    raise :class:`PduError`."""
    if len(content) < _REPORT_MINIMUM:
        raise PduError(
            f"{len(content)} octets; a status report is {REPORT_LENGTH} (at least {_REPORT_MINIMUM})",
            command="status report",
            field="MsgContent",
        )
    r = _Reader(content, "status report")
    fields: dict[str, object] = {}
    for label, width, name in _REPORT_LAYOUT:
        r.take(len(label), label.strip(" :"))
        if name == "msg_id":
            fields[name] = r.take(width, "Id")
        elif name == "text":
            fields[name] = r.take(r.left, "Text").rstrip(b"\0")
        else:
            fields[name] = r.text(width, label.strip(" :"))
    return Report(**fields)  # type: ignore[arg-type]
