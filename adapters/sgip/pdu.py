"""SGIP 1.2 PDUs as bytes: the 20-octet header, and the bodies of Bind, Unbind, Submit, Deliver and Report
with their responses; pure, no I/O.

This module owns the wire layout: which fields a PDU has, their widths and order. A PDU is a header —
Message Length, Command ID (4 octets each) and the 12-octet Sequence Number (:mod:`.sequence`) — and a
body. Integers are big-endian unsigned; octet strings have a fixed width, are NUL-padded on encoding, and
lose their trailing NULs on decoding. They are handled as text through Latin-1, which maps every octet to
one character and back, so a peer's odd octet never breaks decoding and survives a round trip. Unlike
CMPP, MessageLength is 4 octets and SGIP has one version, so nothing here takes a version. The four
responses that have a body (Bind_Resp, Submit_Resp, Deliver_Resp, Report_Resp) share its layout: Result
and 8 reserved octets; Submit_Resp carries no message id — a Report names its Submit by the Submit's own
Sequence Number.

Decoding is bounds-checked: malformed input raises :class:`PduError` naming the PDU and the field, never
``IndexError`` or ``struct.error``, because a peer's garbage must drop the link, not crash the driver.
Encoding refuses values that do not fit their field (ValueError naming it) rather than cutting them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from .. import _codec
from . import sequence as seq
from .constants import (
    BIND,
    BIND_RESP,
    CHARGE_NUMBER_SP,
    DELIVER,
    DELIVER_RESP,
    FEE_FREE,
    LOGIN_SP_TO_SMG,
    MESSAGE_TYPE_SMS,
    MT_NOT_FOR_MO,
    REPORT,
    REPORT_ALWAYS,
    REPORT_RESP,
    REPORT_TYPE_SUBMIT,
    RESULT_OK,
    SUBMIT,
    SUBMIT_RESP,
    UNBIND,
    UNBIND_RESP,
    command_name,
)
from .sequence import SequenceNumber

__all__ = [
    "HEADER_LENGTH",
    "MAX_PDU",
    "MAX_USERS",
    "Bind",
    "BindResp",
    "Deliver",
    "DeliverResp",
    "Header",
    "Packet",
    "Pdu",
    "PduError",
    "Report",
    "ReportResp",
    "Submit",
    "SubmitResp",
    "Unbind",
    "UnbindResp",
    "decode",
    "decode_header",
    "encode",
    "encode_header",
]

HEADER_LENGTH = 20
# The spec says a packet is at most 2K octets, yet a Submit to its 100 users with 160 content octets is
# 2,403 (go_sgip refuses above 2,048). Refusing only what no legal PDU reaches keeps such a peer working.
MAX_PDU = 4096
MAX_USERS = 100  # UserCount: at most 100 numbers per Submit

_HEADER = struct.Struct(">II12s")


class PduError(_codec.PduError):
    """Bytes that are not a well-formed SGIP PDU; the link should be dropped.

    ``command`` is the PDU's name when known, ``field`` the spec's name of the field at fault.
    """


# ----- the PDUs ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bind:
    """SGIP_BIND: a login, by the SP to the SMG (Login_Type 1) or by the SMG to the SP's listener (2)."""

    login_type: int = LOGIN_SP_TO_SMG
    login_name: str = ""  # 16
    login_password: str = ""  # 16
    reserve: str = ""  # 8


@dataclass(frozen=True, slots=True)
class _Response:
    result: int = RESULT_OK  # see constants.RESULT_NAMES
    reserve: str = ""  # 8


@dataclass(frozen=True, slots=True)
class BindResp(_Response):
    """SGIP_BIND_RESP: Result 0 is a login."""


@dataclass(frozen=True, slots=True)
class SubmitResp(_Response):
    """SGIP_SUBMIT_RESP: the SMG's Result for the Submit of the same Sequence Number (11 node busy is a
    throttle); no message id."""


@dataclass(frozen=True, slots=True)
class DeliverResp(_Response):
    """SGIP_DELIVER_RESP: the SP's Result for a reply."""


@dataclass(frozen=True, slots=True)
class ReportResp(_Response):
    """SGIP_REPORT_RESP: the SP's Result for a Report."""


@dataclass(frozen=True, slots=True)
class Unbind:
    """SGIP_UNBIND: the end of the session, from either side; no body."""


@dataclass(frozen=True, slots=True)
class UnbindResp:
    """SGIP_UNBIND_RESP; no body."""


@dataclass(frozen=True, slots=True)
class Submit:
    """SGIP_SUBMIT: one message to 1 … 100 users. Numbers carry the "86" country code. The defaults are an
    office's notice: the SP pays (ChargeNumber 21 zeros), free for the user, not caused by an MO, and a
    Report asked for whatever the outcome (the spec's default, 0, reports failures only)."""

    sp_number: str = ""  # 21: the SP's access number + extension, shown to the user as the sender
    charge_number: str = CHARGE_NUMBER_SP  # 21
    user_numbers: tuple[str, ...] = ()  # UserCount of them, 21 octets each
    corp_id: str = ""  # 5
    service_type: str = ""  # 10
    fee_type: int = FEE_FREE
    fee_value: str = "0"  # 6: fen, 0 … 99999
    given_value: str = "0"  # 6: fen given to the user
    agent_flag: int = 0
    morelateto_mt_flag: int = MT_NOT_FOR_MO
    priority: int = 0  # 0 … 9
    expire_time: str = ""  # 16: yymmddhhmmsstnnp, empty for the SMSC's default
    schedule_time: str = ""  # 16: yymmddhhmmsstnnp, empty to send now
    report_flag: int = REPORT_ALWAYS
    tp_pid: int = 0
    tp_udhi: int = 0  # 1 when message_content starts with a UDH
    message_coding: int = 0
    message_type: int = MESSAGE_TYPE_SMS
    message_content: bytes = b""  # MessageLength octets, the UDH included when tp_udhi is 1
    reserve: str = ""  # 8


@dataclass(frozen=True, slots=True)
class Deliver:
    """SGIP_DELIVER: a reply (MO) from a user, sent by the SMG on its link to the SP."""

    user_number: str  # 21: the user who wrote, "86…"
    sp_number: str  # 21: the number written to (access number + extension: routes the reply)
    tp_pid: int = 0
    tp_udhi: int = 0
    message_coding: int = 0
    message_content: bytes = b""
    reserve: str = ""  # 8


@dataclass(frozen=True, slots=True)
class Report:
    """SGIP_REPORT: the outcome of an earlier Submit (ReportType 0), named by that Submit's Sequence
    Number, for one user. State 0 delivered, 1 waiting, 2 failed with ErrorCode (constants.RESULT_NAMES).
    The fields are in the order a caller fills them; on the wire ReportType follows SubmitSequenceNumber."""

    submit_sequence_number: SequenceNumber
    user_number: str  # 21
    state: int
    error_code: int = 0
    report_type: int = REPORT_TYPE_SUBMIT
    reserve: str = ""  # 8


Pdu = (
    Bind | BindResp | Unbind | UnbindResp | Submit | SubmitResp | Deliver | DeliverResp | Report | ReportResp
)


_AnyResponse = BindResp | SubmitResp | DeliverResp | ReportResp  # the four of one layout


class Header(NamedTuple):
    message_length: int
    command_id: int
    sequence_number: SequenceNumber


class Packet(NamedTuple):
    """A decoded PDU and the Sequence Number its response must carry."""

    sequence_number: SequenceNumber
    pdu: Pdu


# ----- encoding ------------------------------------------------------------------------------------------


def _uint(value: int, width: int, field: str) -> bytes:
    if not 0 <= value < 1 << (8 * width):
        raise ValueError(f"{field} {value} does not fit {width} octet(s)")
    return value.to_bytes(width, "big")


def _octets(value: str, width: int, field: str) -> bytes:
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{field} {value!r} has a character that is not one octet") from None
    if len(raw) > width:
        raise ValueError(f"{field} {value!r} is {len(raw)} octets; the field has {width}")
    return raw.ljust(width, b"\0")


def _content(value: bytes) -> bytes:
    return _uint(len(value), 4, "MessageLength") + value


def _encode_submit(p: Submit) -> bytes:
    if not 1 <= len(p.user_numbers) <= MAX_USERS:
        raise ValueError(f"UserCount {len(p.user_numbers)}: a Submit has 1 … {MAX_USERS} user numbers")
    parts = [
        _octets(p.sp_number, 21, "SPNumber"),
        _octets(p.charge_number, 21, "ChargeNumber"),
        bytes((len(p.user_numbers),)),
    ]
    parts += [_octets(n, 21, f"UserNumber[{i}]") for i, n in enumerate(p.user_numbers)]
    parts += [
        _octets(p.corp_id, 5, "CorpId"),
        _octets(p.service_type, 10, "ServiceType"),
        _uint(p.fee_type, 1, "FeeType"),
        _octets(p.fee_value, 6, "FeeValue"),
        _octets(p.given_value, 6, "GivenValue"),
        _uint(p.agent_flag, 1, "AgentFlag"),
        _uint(p.morelateto_mt_flag, 1, "MorelatetoMTFlag"),
        _uint(p.priority, 1, "Priority"),
        _octets(p.expire_time, 16, "ExpireTime"),
        _octets(p.schedule_time, 16, "ScheduleTime"),
        _uint(p.report_flag, 1, "ReportFlag"),
        _uint(p.tp_pid, 1, "TP_pid"),
        _uint(p.tp_udhi, 1, "TP_udhi"),
        _uint(p.message_coding, 1, "MessageCoding"),
        _uint(p.message_type, 1, "MessageType"),
        _content(p.message_content),
        _octets(p.reserve, 8, "Reserve"),
    ]
    return b"".join(parts)


def _encode_body(pdu: Pdu) -> tuple[int, bytes]:
    if isinstance(pdu, Bind):
        body = (
            _uint(pdu.login_type, 1, "Login_Type")
            + _octets(pdu.login_name, 16, "Login_Name")
            + _octets(pdu.login_password, 16, "Login_Password")
            + _octets(pdu.reserve, 8, "Reserve")
        )
        return BIND, body
    if isinstance(pdu, _AnyResponse):
        return _RESPONSE_IDS[type(pdu)], _uint(pdu.result, 1, "Result") + _octets(pdu.reserve, 8, "Reserve")
    if isinstance(pdu, Unbind):
        return UNBIND, b""
    if isinstance(pdu, UnbindResp):
        return UNBIND_RESP, b""
    if isinstance(pdu, Submit):
        return SUBMIT, _encode_submit(pdu)
    if isinstance(pdu, Deliver):
        body = (
            _octets(pdu.user_number, 21, "UserNumber")
            + _octets(pdu.sp_number, 21, "SPNumber")
            + _uint(pdu.tp_pid, 1, "TP_pid")
            + _uint(pdu.tp_udhi, 1, "TP_udhi")
            + _uint(pdu.message_coding, 1, "MessageCoding")
            + _content(pdu.message_content)
            + _octets(pdu.reserve, 8, "Reserve")
        )
        return DELIVER, body
    if isinstance(pdu, Report):
        body = (
            seq.to_bytes(pdu.submit_sequence_number)
            + _uint(pdu.report_type, 1, "ReportType")
            + _octets(pdu.user_number, 21, "UserNumber")
            + _uint(pdu.state, 1, "State")
            + _uint(pdu.error_code, 1, "ErrorCode")
            + _octets(pdu.reserve, 8, "Reserve")
        )
        return REPORT, body
    raise TypeError(f"not an SGIP PDU: {pdu!r}")


_RESPONSE_IDS: dict[type[_AnyResponse], int] = {
    BindResp: BIND_RESP,
    SubmitResp: SUBMIT_RESP,
    DeliverResp: DELIVER_RESP,
    ReportResp: REPORT_RESP,
}


def encode_header(header: Header) -> bytes:
    for value, field in ((header.message_length, "Message Length"), (header.command_id, "Command ID")):
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"{field} {value} does not fit 4 octets")
    return _HEADER.pack(header.message_length, header.command_id, seq.to_bytes(header.sequence_number))


def encode(pdu: Pdu, *, sequence_number: SequenceNumber) -> bytes:
    """The whole PDU, header included. A request carries a fresh Sequence Number (a
    :class:`~.sequence.Sequencer`'s), a response the one of the request it answers."""
    command_id, body = _encode_body(pdu)
    length = HEADER_LENGTH + len(body)
    if length > MAX_PDU:
        raise ValueError(f"{command_name(command_id)} would be {length} octets; a PDU has at most {MAX_PDU}")
    return encode_header(Header(length, command_id, sequence_number)) + body


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
        return self.take(self.uint(4, "MessageLength"), "MessageContent")

    def end(self) -> None:
        extra = len(self.data) - self.offset
        if extra:
            raise PduError(
                f"oversized: {extra} octet(s) after the last field, {self.last}",
                command=self.command,
                field=self.last,
            )


def decode_header(data: bytes) -> Header:
    """The header at the start of ``data``; checks Message Length is 20 … :data:`MAX_PDU` (a framing reader
    calls this on the first 20 octets to learn how many more to wait for)."""
    if len(data) < HEADER_LENGTH:
        raise PduError(
            f"truncated: a header is {HEADER_LENGTH} octets, got {len(data)}", field="Message Length"
        )
    length, command_id, number = _HEADER.unpack_from(data)
    header = Header(length, command_id, seq.from_bytes(number))
    if not HEADER_LENGTH <= length <= MAX_PDU:
        raise PduError(
            f"{length} is out of range ({HEADER_LENGTH} … {MAX_PDU})",
            command=command_name(command_id),
            field="Message Length",
        )
    return header


def _decode_submit(r: _Reader) -> Submit:
    sp_number = r.text(21, "SPNumber")
    charge_number = r.text(21, "ChargeNumber")
    count = r.uint(1, "UserCount")
    user_numbers = tuple(r.text(21, f"UserNumber[{i}]") for i in range(count))
    return Submit(
        sp_number=sp_number,
        charge_number=charge_number,
        user_numbers=user_numbers,
        corp_id=r.text(5, "CorpId"),
        service_type=r.text(10, "ServiceType"),
        fee_type=r.uint(1, "FeeType"),
        fee_value=r.text(6, "FeeValue"),
        given_value=r.text(6, "GivenValue"),
        agent_flag=r.uint(1, "AgentFlag"),
        morelateto_mt_flag=r.uint(1, "MorelatetoMTFlag"),
        priority=r.uint(1, "Priority"),
        expire_time=r.text(16, "ExpireTime"),
        schedule_time=r.text(16, "ScheduleTime"),
        report_flag=r.uint(1, "ReportFlag"),
        tp_pid=r.uint(1, "TP_pid"),
        tp_udhi=r.uint(1, "TP_udhi"),
        message_coding=r.uint(1, "MessageCoding"),
        message_type=r.uint(1, "MessageType"),
        message_content=r.content(),
        reserve=r.text(8, "Reserve"),
    )


def _decode_body(command_id: int, r: _Reader) -> Pdu:
    pdu: Pdu
    response = _RESPONSE_TYPES.get(command_id)
    if response is not None:
        pdu = response(r.uint(1, "Result"), r.text(8, "Reserve"))
    elif command_id == BIND:
        pdu = Bind(
            r.uint(1, "Login_Type"),
            r.text(16, "Login_Name"),
            r.text(16, "Login_Password"),
            r.text(8, "Reserve"),
        )
    elif command_id == UNBIND:
        pdu = Unbind()
    elif command_id == UNBIND_RESP:
        pdu = UnbindResp()
    elif command_id == SUBMIT:
        pdu = _decode_submit(r)
    elif command_id == DELIVER:
        pdu = Deliver(
            user_number=r.text(21, "UserNumber"),
            sp_number=r.text(21, "SPNumber"),
            tp_pid=r.uint(1, "TP_pid"),
            tp_udhi=r.uint(1, "TP_udhi"),
            message_coding=r.uint(1, "MessageCoding"),
            message_content=r.content(),
            reserve=r.text(8, "Reserve"),
        )
    elif command_id == REPORT:
        pdu = Report(
            submit_sequence_number=seq.from_bytes(r.take(seq.LENGTH, "SubmitSequenceNumber")),
            report_type=r.uint(1, "ReportType"),
            user_number=r.text(21, "UserNumber"),
            state=r.uint(1, "State"),
            error_code=r.uint(1, "ErrorCode"),
            reserve=r.text(8, "Reserve"),
        )
    else:
        raise PduError(
            f"Command ID 0x{command_id:08X} is not decoded here", command=r.command, field="Command ID"
        )
    r.end()
    return pdu


_RESPONSE_TYPES: dict[int, type[_AnyResponse]] = {command: cls for cls, command in _RESPONSE_IDS.items()}


def decode(data: bytes) -> Packet:
    """One whole PDU (header included, nothing after it).

    Raises :class:`PduError` when Message Length disagrees with ``len(data)``, the Command ID is not one of
    the PDUs above, or the body is shorter or longer than its fields.
    """
    header = decode_header(data)
    command = command_name(header.command_id)
    if header.message_length != len(data):
        raise PduError(
            f"{header.message_length} but {len(data)} octets were given",
            command=command,
            field="Message Length",
        )
    reader = _Reader(data[HEADER_LENGTH:], command)
    return Packet(header.sequence_number, _decode_body(header.command_id, reader))
