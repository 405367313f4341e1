"""CMPP 2.0 / 3.0 PDUs as bytes: the header, and the bodies of CONNECT, SUBMIT, DELIVER, ACTIVE_TEST and
TERMINATE with their responses, plus the status report carried inside a DELIVER; pure, no I/O.

This module owns the wire layout: which fields a PDU has in each version, their widths and order. A PDU
is a 12-octet header (Total_Length, Command_Id, Sequence_Id, big-endian unsigned) and a body. Integers
are big-endian; octet strings have a fixed width, are NUL-padded on encoding, and lose their trailing
NULs on decoding. They are handled as text through Latin-1, which maps every octet to one character and
back, so a peer's odd octet never breaks decoding and survives a round trip. Version 3.0 differs from 2.0
in its terminal ids (32 octets, not 21), the ``*_terminal_type`` octets, LinkID (20 octets) where 2.0 has
Reserve (8), and the width of Status / Result in the responses (4 octets, not 1).

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
    CONNECT,
    CONNECT_RESP,
    DELIVER,
    DELIVER_RESP,
    REGISTERED_DELIVERY_REPORT,
    SUBMIT,
    SUBMIT_RESP,
    TERMINATE,
    TERMINATE_RESP,
    VERSION_20,
    VERSION_30,
    VERSIONS,
    command_name,
)

__all__ = [
    "HEADER_LENGTH",
    "MAX_DESTINATIONS",
    "MAX_PDU",
    "REPORT_LENGTH",
    "ActiveTest",
    "ActiveTestResp",
    "Connect",
    "ConnectResp",
    "Deliver",
    "DeliverResp",
    "Header",
    "Packet",
    "Pdu",
    "PduError",
    "Report",
    "Submit",
    "SubmitResp",
    "Terminate",
    "TerminateResp",
    "authenticator_ismg",
    "authenticator_source",
    "connect_request",
    "decode",
    "decode_header",
    "decode_report",
    "encode",
    "encode_header",
    "encode_report",
    "timestamp_of",
    "timestamp_text",
]

HEADER_LENGTH = 12
# Above any legal PDU: the largest is a 3.0 SUBMIT to 100 terminals with 255 content octets (3,618).
MAX_PDU = 4096
MAX_DESTINATIONS = 100  # DestUsr_tl: the spec allows at most 100 terminals per SUBMIT
REPORT_LENGTH = {VERSION_20: 60, VERSION_30: 71}

_HEADER = struct.Struct(">III")
_TERMINAL_ID = {VERSION_20: 21, VERSION_30: 32}
_RESULT = {VERSION_20: 1, VERSION_30: 4}  # SUBMIT_RESP / DELIVER_RESP Result, CONNECT_RESP Status
_MAX_MSG_LENGTH = 255  # Msg_Length is one octet
# CONNECT_RESP bodies: Status + AuthenticatorISMG (16) + Version.
_CONNECT_RESP_BODY = {1 + 16 + 1: VERSION_20, 4 + 16 + 1: VERSION_30}


class PduError(_codec.PduError):
    """Bytes that are not a well-formed CMPP PDU (or status report); the link should be dropped.

    ``command`` is the PDU's name when known, ``field`` the spec's name of the field at fault.
    """


# ----- the PDUs ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect:
    """CMPP_CONNECT: the SP's login. ``version`` is the octet sent (0x30, 0x20, or e.g. 0x21); the layout
    is the same in every version. Build one with :func:`connect_request`."""

    source_addr: str  # the SP id, 6 octets
    authenticator_source: bytes  # 16 octets, see authenticator_source()
    version: int
    timestamp: int  # MMDDHHMMSS read as a decimal integer


@dataclass(frozen=True, slots=True)
class ConnectResp:
    """CMPP_CONNECT_RESP: ``status`` 0 is a login; ``version`` the highest the ISMG supports."""

    status: int
    authenticator_ismg: bytes  # 16 octets; all zero when authentication failed
    version: int


@dataclass(frozen=True, slots=True)
class Submit:
    """CMPP_SUBMIT. ``fee_terminal_type``, ``dest_terminal_type`` and ``link_id`` exist in 3.0 only,
    ``reserve`` in 2.0 only; encoding in the other version refuses them unless they keep their default."""

    msg_id: int = 0  # filled in by the ISMG; the SP sends 0
    pk_total: int = 1
    pk_number: int = 1
    registered_delivery: int = REGISTERED_DELIVERY_REPORT
    msg_level: int = 0
    service_id: str = ""  # 10
    fee_user_type: int = 0
    fee_terminal_id: str = ""  # 21 in 2.0, 32 in 3.0
    fee_terminal_type: int = 0  # 3.0
    tp_pid: int = 0
    tp_udhi: int = 0
    msg_fmt: int = 0
    msg_src: str = ""  # 6: the SP id
    fee_type: str = ""  # 2
    fee_code: str = ""  # 6
    valid_time: str = ""  # 17
    at_time: str = ""  # 17
    src_id: str = ""  # 21: service code + extension
    dest_terminal_ids: tuple[str, ...] = ()  # DestUsr_tl of them, 21 / 32 octets each
    dest_terminal_type: int = 0  # 3.0
    msg_content: bytes = b""  # Msg_Length octets, the UDH included when tp_udhi is 1
    link_id: str = ""  # 3.0, 20
    reserve: str = ""  # 2.0, 8


@dataclass(frozen=True, slots=True)
class SubmitResp:
    """CMPP_SUBMIT_RESP: the Msg_Id the ISMG gave the SUBMIT, and its Result (see constants)."""

    msg_id: int
    result: int


@dataclass(frozen=True, slots=True)
class Deliver:
    """CMPP_DELIVER: an MO message (``registered_delivery`` 0) or a status report (1, the report in
    ``msg_content``: see :func:`decode_report`). ``src_terminal_type`` and ``link_id`` are 3.0 only,
    ``reserve`` 2.0 only."""

    msg_id: int
    dest_id: str  # 21: the number the user wrote to (service code + extension)
    service_id: str = ""  # 10
    tp_pid: int = 0
    tp_udhi: int = 0
    msg_fmt: int = 0
    src_terminal_id: str = ""  # 21 in 2.0, 32 in 3.0
    src_terminal_type: int = 0  # 3.0
    registered_delivery: int = 0
    msg_content: bytes = b""
    link_id: str = ""  # 3.0, 20
    reserve: str = ""  # 2.0, 8

    @property
    def is_report(self) -> bool:
        return self.registered_delivery == REGISTERED_DELIVERY_REPORT


@dataclass(frozen=True, slots=True)
class DeliverResp:
    """CMPP_DELIVER_RESP: the DELIVER's Msg_Id and the SP's Result (0 taken, 8 slow down)."""

    msg_id: int
    result: int


@dataclass(frozen=True, slots=True)
class ActiveTest:
    """CMPP_ACTIVE_TEST: the link check either side may send; no body."""


@dataclass(frozen=True, slots=True)
class ActiveTestResp:
    """CMPP_ACTIVE_TEST_RESP: one Reserved octet."""

    reserved: int = 0


@dataclass(frozen=True, slots=True)
class Terminate:
    """CMPP_TERMINATE: the end of the session, from either side; no body."""


@dataclass(frozen=True, slots=True)
class TerminateResp:
    """CMPP_TERMINATE_RESP; no body."""


@dataclass(frozen=True, slots=True)
class Report:
    """The status report in a DELIVER's Msg_Content (Registered_Delivery = 1): 60 octets in 2.0 (a 21-octet
    Dest_terminal_Id), 71 in 3.0 (32)."""

    msg_id: int  # the SUBMIT_RESP's Msg_Id of the segment this reports on
    stat: str  # 7: DELIVRD, UNDELIV, … or a carrier code
    submit_time: str  # 10: YYMMDDHHMM
    done_time: str  # 10: YYMMDDHHMM
    dest_terminal_id: str
    smsc_sequence: int


Pdu = (
    Connect
    | ConnectResp
    | Submit
    | SubmitResp
    | Deliver
    | DeliverResp
    | ActiveTest
    | ActiveTestResp
    | Terminate
    | TerminateResp
)


class Header(NamedTuple):
    total_length: int
    command_id: int
    sequence_id: int


class Packet(NamedTuple):
    """A decoded PDU and the Sequence_Id its response must carry."""

    sequence_id: int
    pdu: Pdu


# ----- authentication ------------------------------------------------------------------------------------


def timestamp_text(timestamp: int) -> str:
    """The Timestamp as the 10 characters MMDDHHMMSS that enter AuthenticatorSource (zero-padded: the
    integer of 1 February is 201…, its text 0201…)."""
    if not 0 <= timestamp <= 9_999_999_999:
        raise ValueError(f"Timestamp {timestamp} is not MMDDHHMMSS")
    return f"{timestamp:010d}"


def timestamp_of(moment: datetime) -> int:
    """The CONNECT Timestamp for a local time: MMDDHHMMSS read as a decimal integer."""
    return int(moment.strftime("%m%d%H%M%S"))


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def authenticator_source(source_addr: str, secret: str | bytes, timestamp: int) -> bytes:
    """MD5(Source_Addr + 9 zero octets + shared secret + Timestamp as MMDDHHMMSS)."""
    material = (
        source_addr.encode("latin-1") + bytes(9) + _secret_bytes(secret) + timestamp_text(timestamp).encode()
    )
    return hashlib.md5(material).digest()


def authenticator_ismg(status: int, source: bytes, secret: str | bytes, *, version: int) -> bytes:
    """MD5(Status + AuthenticatorSource + shared secret), Status in its wire width (1 octet in 2.0, 4 in 3.0)
    as gocmpp computes it; an SP rarely checks this, the simulated ISMG must send it."""
    width = _RESULT[_check_version(version)]
    return hashlib.md5(_uint(status, width, "Status") + source + _secret_bytes(secret)).digest()


def connect_request(source_addr: str, secret: str | bytes, *, timestamp: int, version: int) -> Connect:
    """A CONNECT for this SP id and secret, its authenticator computed."""
    return Connect(source_addr, authenticator_source(source_addr, secret, timestamp), version, timestamp)


# ----- encoding ------------------------------------------------------------------------------------------


def _check_version(version: int) -> int:
    if version not in VERSIONS:
        raise ValueError(f"CMPP version 0x{version:02X} has no layout here; use 0x20 (2.0) or 0x30 (3.0)")
    return version


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


def _fixed(value: bytes, width: int, field: str) -> bytes:
    if len(value) != width:
        raise ValueError(f"{field} is {len(value)} octets; it must be {width}")
    return value


def _content(value: bytes) -> bytes:
    if len(value) > _MAX_MSG_LENGTH:
        raise ValueError(f"Msg_Content is {len(value)} octets; Msg_Length allows {_MAX_MSG_LENGTH}")
    return bytes((len(value),)) + value


def _only_in(version: int, pdu: Submit | Deliver, fields: dict[str, object]) -> None:
    for name, default in fields.items():
        if getattr(pdu, name) != default:
            raise ValueError(
                f"{name} does not exist in CMPP {version >> 4}.{version & 15}; leave it {default!r}"
            )


def _encode_submit(p: Submit, version: int) -> bytes:
    tid = _TERMINAL_ID[version]
    if version == VERSION_20:
        _only_in(version, p, {"fee_terminal_type": 0, "dest_terminal_type": 0, "link_id": ""})
    else:
        _only_in(version, p, {"reserve": ""})
    if not 1 <= len(p.dest_terminal_ids) <= MAX_DESTINATIONS:
        raise ValueError(
            f"DestUsr_tl {len(p.dest_terminal_ids)}: a SUBMIT has 1 … {MAX_DESTINATIONS} terminals"
        )
    parts = [
        _uint(p.msg_id, 8, "Msg_Id"),
        _uint(p.pk_total, 1, "Pk_total"),
        _uint(p.pk_number, 1, "Pk_number"),
        _uint(p.registered_delivery, 1, "Registered_Delivery"),
        _uint(p.msg_level, 1, "Msg_level"),
        _octets(p.service_id, 10, "Service_Id"),
        _uint(p.fee_user_type, 1, "Fee_UserType"),
        _octets(p.fee_terminal_id, tid, "Fee_terminal_Id"),
    ]
    if version == VERSION_30:
        parts.append(_uint(p.fee_terminal_type, 1, "Fee_terminal_type"))
    parts += [
        _uint(p.tp_pid, 1, "TP_pId"),
        _uint(p.tp_udhi, 1, "TP_udhi"),
        _uint(p.msg_fmt, 1, "Msg_Fmt"),
        _octets(p.msg_src, 6, "Msg_src"),
        _octets(p.fee_type, 2, "FeeType"),
        _octets(p.fee_code, 6, "FeeCode"),
        _octets(p.valid_time, 17, "ValId_Time"),
        _octets(p.at_time, 17, "At_Time"),
        _octets(p.src_id, 21, "Src_Id"),
        bytes((len(p.dest_terminal_ids),)),
    ]
    parts += [_octets(d, tid, f"Dest_terminal_Id[{i}]") for i, d in enumerate(p.dest_terminal_ids)]
    if version == VERSION_30:
        parts.append(_uint(p.dest_terminal_type, 1, "Dest_terminal_type"))
    parts.append(_content(p.msg_content))
    parts.append(
        _octets(p.link_id, 20, "LinkID") if version == VERSION_30 else _octets(p.reserve, 8, "Reserve")
    )
    return b"".join(parts)


def _encode_deliver(p: Deliver, version: int) -> bytes:
    if version == VERSION_20:
        _only_in(version, p, {"src_terminal_type": 0, "link_id": ""})
    else:
        _only_in(version, p, {"reserve": ""})
    parts = [
        _uint(p.msg_id, 8, "Msg_Id"),
        _octets(p.dest_id, 21, "Dest_Id"),
        _octets(p.service_id, 10, "Service_Id"),
        _uint(p.tp_pid, 1, "TP_pid"),
        _uint(p.tp_udhi, 1, "TP_udhi"),
        _uint(p.msg_fmt, 1, "Msg_Fmt"),
        _octets(p.src_terminal_id, _TERMINAL_ID[version], "Src_terminal_Id"),
    ]
    if version == VERSION_30:
        parts.append(_uint(p.src_terminal_type, 1, "Src_terminal_type"))
    parts.append(_uint(p.registered_delivery, 1, "Registered_Delivery"))
    parts.append(_content(p.msg_content))
    parts.append(
        _octets(p.link_id, 20, "LinkID") if version == VERSION_30 else _octets(p.reserve, 8, "Reserve")
    )
    return b"".join(parts)


def _encode_body(pdu: Pdu, version: int) -> tuple[int, bytes]:
    if isinstance(pdu, Connect):
        body = (
            _octets(pdu.source_addr, 6, "Source_Addr")
            + _fixed(pdu.authenticator_source, 16, "AuthenticatorSource")
            + _uint(pdu.version, 1, "Version")
            + _uint(pdu.timestamp, 4, "Timestamp")
        )
        return CONNECT, body
    if isinstance(pdu, ConnectResp):
        body = (
            _uint(pdu.status, _RESULT[version], "Status")
            + _fixed(pdu.authenticator_ismg, 16, "AuthenticatorISMG")
            + _uint(pdu.version, 1, "Version")
        )
        return CONNECT_RESP, body
    if isinstance(pdu, Submit):
        return SUBMIT, _encode_submit(pdu, version)
    if isinstance(pdu, SubmitResp):
        return SUBMIT_RESP, _uint(pdu.msg_id, 8, "Msg_Id") + _uint(pdu.result, _RESULT[version], "Result")
    if isinstance(pdu, Deliver):
        return DELIVER, _encode_deliver(pdu, version)
    if isinstance(pdu, DeliverResp):
        return DELIVER_RESP, _uint(pdu.msg_id, 8, "Msg_Id") + _uint(pdu.result, _RESULT[version], "Result")
    if isinstance(pdu, ActiveTest):
        return ACTIVE_TEST, b""
    if isinstance(pdu, ActiveTestResp):
        return ACTIVE_TEST_RESP, _uint(pdu.reserved, 1, "Reserved")
    if isinstance(pdu, Terminate):
        return TERMINATE, b""
    if isinstance(pdu, TerminateResp):
        return TERMINATE_RESP, b""
    raise TypeError(f"not a CMPP PDU: {pdu!r}")


def encode_header(header: Header) -> bytes:
    return _HEADER.pack(
        _check_range(header.total_length, "Total_Length"),
        _check_range(header.command_id, "Command_Id"),
        _check_range(header.sequence_id, "Sequence_Id"),
    )


def _check_range(value: int, field: str) -> int:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{field} {value} does not fit 4 octets")
    return value


def encode(pdu: Pdu, *, sequence_id: int, version: int) -> bytes:
    """The whole PDU, header included, in the layout of ``version`` (0x20 or 0x30)."""
    command_id, body = _encode_body(pdu, _check_version(version))
    return encode_header(Header(HEADER_LENGTH + len(body), command_id, sequence_id)) + body


def encode_report(report: Report, *, version: int) -> bytes:
    """The Msg_Content of a status report DELIVER: 60 octets for 2.0, 71 for 3.0."""
    return b"".join(
        (
            _uint(report.msg_id, 8, "Msg_Id"),
            _octets(report.stat, 7, "Stat"),
            _octets(report.submit_time, 10, "Submit_time"),
            _octets(report.done_time, 10, "Done_time"),
            _octets(report.dest_terminal_id, _TERMINAL_ID[_check_version(version)], "Dest_terminal_Id"),
            _uint(report.smsc_sequence, 4, "SMSC_sequence"),
        )
    )


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
        return self.take(self.uint(1, "Msg_Length"), "Msg_Content")

    def end(self) -> None:
        extra = len(self.data) - self.offset
        if extra:
            raise PduError(
                f"oversized: {extra} octet(s) after the last field, {self.last}",
                command=self.command,
                field=self.last,
            )


def decode_header(data: bytes) -> Header:
    """The header at the start of ``data``; checks Total_Length is 12 … :data:`MAX_PDU` (a framing reader
    calls this on the first 12 octets to learn how many more to wait for)."""
    if len(data) < HEADER_LENGTH:
        raise PduError(
            f"truncated: a header is {HEADER_LENGTH} octets, got {len(data)}", field="Total_Length"
        )
    header = Header(*_HEADER.unpack_from(data))
    if not HEADER_LENGTH <= header.total_length <= MAX_PDU:
        raise PduError(
            f"{header.total_length} is out of range ({HEADER_LENGTH} … {MAX_PDU})",
            command=command_name(header.command_id),
            field="Total_Length",
        )
    return header


def _decode_submit(r: _Reader, version: int) -> Submit:
    tid = _TERMINAL_ID[version]
    v30 = version == VERSION_30
    msg_id = r.uint(8, "Msg_Id")
    pk_total = r.uint(1, "Pk_total")
    pk_number = r.uint(1, "Pk_number")
    registered_delivery = r.uint(1, "Registered_Delivery")
    msg_level = r.uint(1, "Msg_level")
    service_id = r.text(10, "Service_Id")
    fee_user_type = r.uint(1, "Fee_UserType")
    fee_terminal_id = r.text(tid, "Fee_terminal_Id")
    fee_terminal_type = r.uint(1, "Fee_terminal_type") if v30 else 0
    tp_pid = r.uint(1, "TP_pId")
    tp_udhi = r.uint(1, "TP_udhi")
    msg_fmt = r.uint(1, "Msg_Fmt")
    msg_src = r.text(6, "Msg_src")
    fee_type = r.text(2, "FeeType")
    fee_code = r.text(6, "FeeCode")
    valid_time = r.text(17, "ValId_Time")
    at_time = r.text(17, "At_Time")
    src_id = r.text(21, "Src_Id")
    count = r.uint(1, "DestUsr_tl")
    dest_terminal_ids = tuple(r.text(tid, f"Dest_terminal_Id[{i}]") for i in range(count))
    dest_terminal_type = r.uint(1, "Dest_terminal_type") if v30 else 0
    msg_content = r.content()
    link_id = r.text(20, "LinkID") if v30 else ""
    reserve = "" if v30 else r.text(8, "Reserve")
    return Submit(
        msg_id=msg_id,
        pk_total=pk_total,
        pk_number=pk_number,
        registered_delivery=registered_delivery,
        msg_level=msg_level,
        service_id=service_id,
        fee_user_type=fee_user_type,
        fee_terminal_id=fee_terminal_id,
        fee_terminal_type=fee_terminal_type,
        tp_pid=tp_pid,
        tp_udhi=tp_udhi,
        msg_fmt=msg_fmt,
        msg_src=msg_src,
        fee_type=fee_type,
        fee_code=fee_code,
        valid_time=valid_time,
        at_time=at_time,
        src_id=src_id,
        dest_terminal_ids=dest_terminal_ids,
        dest_terminal_type=dest_terminal_type,
        msg_content=msg_content,
        link_id=link_id,
        reserve=reserve,
    )


def _decode_deliver(r: _Reader, version: int) -> Deliver:
    v30 = version == VERSION_30
    msg_id = r.uint(8, "Msg_Id")
    dest_id = r.text(21, "Dest_Id")
    service_id = r.text(10, "Service_Id")
    tp_pid = r.uint(1, "TP_pid")
    tp_udhi = r.uint(1, "TP_udhi")
    msg_fmt = r.uint(1, "Msg_Fmt")
    src_terminal_id = r.text(_TERMINAL_ID[version], "Src_terminal_Id")
    src_terminal_type = r.uint(1, "Src_terminal_type") if v30 else 0
    registered_delivery = r.uint(1, "Registered_Delivery")
    msg_content = r.content()
    link_id = r.text(20, "LinkID") if v30 else ""
    reserve = "" if v30 else r.text(8, "Reserve")
    return Deliver(
        msg_id=msg_id,
        dest_id=dest_id,
        service_id=service_id,
        tp_pid=tp_pid,
        tp_udhi=tp_udhi,
        msg_fmt=msg_fmt,
        src_terminal_id=src_terminal_id,
        src_terminal_type=src_terminal_type,
        registered_delivery=registered_delivery,
        msg_content=msg_content,
        link_id=link_id,
        reserve=reserve,
    )


def _decode_body(command_id: int, r: _Reader, version: int) -> Pdu:
    width = _RESULT[version]
    pdu: Pdu
    if command_id == CONNECT:
        pdu = Connect(
            r.text(6, "Source_Addr"),
            r.take(16, "AuthenticatorSource"),
            r.uint(1, "Version"),
            r.uint(4, "Timestamp"),
        )
    elif command_id == CONNECT_RESP:
        # The ISMG answers in the layout of the version it speaks, which may not be the one we asked for
        # (a 2.0-only ISMG refusing a 3.0 CONNECT), so the body's length decides; the status must be read.
        layout = _CONNECT_RESP_BODY.get(len(r.data))
        if layout is None:
            sizes = " or ".join(str(n) for n in _CONNECT_RESP_BODY)
            raise PduError(
                f"body is {len(r.data)} octets; it must be {sizes}", command=r.command, field="Status"
            )
        pdu = ConnectResp(
            r.uint(_RESULT[layout], "Status"), r.take(16, "AuthenticatorISMG"), r.uint(1, "Version")
        )
        if layout != version and layout == VERSION_20 and pdu.status == 0:
            # A 3.0 login answered in 2.0's shorter layout can only be a refusal (version too high):
            # read as a success, it is a 3.0 answer cut short.
            raise PduError(
                f"body is {len(r.data)} octets, a 2.0 answer that says ok to a 3.0 CONNECT; a 3.0 answer "
                f"is {4 + 16 + 1}",
                command=r.command,
                field="Status",
            )
    elif command_id == SUBMIT:
        pdu = _decode_submit(r, version)
    elif command_id == SUBMIT_RESP:
        pdu = SubmitResp(r.uint(8, "Msg_Id"), r.uint(width, "Result"))
    elif command_id == DELIVER:
        pdu = _decode_deliver(r, version)
    elif command_id == DELIVER_RESP:
        pdu = DeliverResp(r.uint(8, "Msg_Id"), r.uint(width, "Result"))
    elif command_id == ACTIVE_TEST:
        pdu = ActiveTest()
    elif command_id == ACTIVE_TEST_RESP:
        pdu = ActiveTestResp(r.uint(1, "Reserved"))
    elif command_id == TERMINATE:
        pdu = Terminate()
    elif command_id == TERMINATE_RESP:
        pdu = TerminateResp()
    else:
        raise PduError(
            f"Command_Id 0x{command_id:08X} is not decoded here", command=r.command, field="Command_Id"
        )
    r.end()
    return pdu


def decode(data: bytes, *, version: int) -> Packet:
    """One whole PDU (header included, nothing after it) in the layout of ``version``.

    Raises :class:`PduError` when Total_Length disagrees with ``len(data)``, the Command_Id is not one of
    the PDUs above, or the body is shorter or longer than its fields.
    """
    _check_version(version)
    header = decode_header(data)
    command = command_name(header.command_id)
    if header.total_length != len(data):
        raise PduError(
            f"{header.total_length} but {len(data)} octets were given", command=command, field="Total_Length"
        )
    reader = _Reader(data[HEADER_LENGTH:], command)
    return Packet(header.sequence_id, _decode_body(header.command_id, reader, version))


def decode_report(content: bytes) -> Report:
    """The status report in a DELIVER's Msg_Content. Its length decides the layout (60 octets: 2.0, 71:
    3.0) rather than the session's version, because gateways are known to send the 2.0 size on 3.0 links
    (SMSGate works around one such ISMG); any other length raises :class:`PduError`."""
    widths = {length: _TERMINAL_ID[version] for version, length in REPORT_LENGTH.items()}
    width = widths.get(len(content))
    if width is None:
        raise PduError(
            f"{len(content)} octets; a status report is 60 (CMPP 2.0) or 71 (3.0)",
            command="status report",
            field="Msg_Content",
        )
    r = _Reader(content, "status report")
    report = Report(
        msg_id=r.uint(8, "Msg_Id"),
        stat=r.text(7, "Stat"),
        submit_time=r.text(10, "Submit_time"),
        done_time=r.text(10, "Done_time"),
        dest_terminal_id=r.text(width, "Dest_terminal_Id"),
        smsc_sequence=r.uint(4, "SMSC_sequence"),
    )
    r.end()
    return report
