"""Lean struct-based encoding and decoding of the hot SMPP 3.4 PDUs.

This module owns the wire format of the four PDUs every message costs — submit_sm, its submit_sm_resp,
the receipt's deliver_sm and its deliver_sm_resp — without going through smpplib, whose generic codec
costs tens of microseconds per PDU (see DESIGN.md, "Facts that save time"). Everything else (binds,
enquire_link, unbind, generic_nack handling) stays with smpplib through :mod:`masd_adapters.smpp.pdu`,
and smpplib is the reference the tests compare this module against. Decoding is bounds-checked: any
malformed input raises :class:`PduError`, never ``IndexError`` or ``struct.error``, because a peer's
garbage must drop the link rather than crash the driver.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from masd_adapters.smpp.constants import (
    DELIVER_SM,
    DELIVER_SM_RESP,
    MESSAGE_PAYLOAD,
    RESPONSE,
    SUBMIT_SM,
    SUBMIT_SM_RESP,
)
from masd_adapters.smpp.pdu import HEADER, PduError

__all__ = [
    "DeliverSm",
    "SubmitSm",
    "decode_resp",
    "decode_sm",
    "encode_deliver_sm",
    "encode_resp",
    "encode_submit_sm",
    "encode_tlv",
]


_TLV_HEAD = struct.Struct(">HH")
_U8x3 = struct.Struct(">BBB")
_U8x5 = struct.Struct(">BBBBB")

# Encoding limits from SMPP 3.4 §4.4.1 (C-string maxima include the terminating NUL).
_MAX_SERVICE_TYPE = 5
_MAX_ADDR = 20
_MAX_TIME = 16
_MAX_SHORT_MESSAGE = 254
_MAX_SEQUENCE = 0x7FFFFFFF


@dataclass(slots=True)
class SubmitSm:
    """The body of a submit_sm or deliver_sm (SMPP 3.4 §4.4.1 / §4.6.1) plus its sequence number.

    C-string fields are the raw bytes without their NUL; ``tlvs`` maps tag → value as received (a tag
    repeated in one PDU keeps its last value).
    """

    sequence: int
    service_type: bytes
    source_addr_ton: int
    source_addr_npi: int
    source_addr: bytes
    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: bytes
    esm_class: int
    protocol_id: int
    priority_flag: int
    schedule_delivery_time: bytes
    validity_period: bytes
    registered_delivery: int
    replace_if_present_flag: int
    data_coding: int
    sm_default_msg_id: int
    short_message: bytes
    tlvs: dict[int, bytes] = field(default_factory=dict)


# deliver_sm carries exactly the submit_sm body (the SMSC leaves the scheduling fields NULL).
DeliverSm = SubmitSm


def encode_tlv(tag: int, value: bytes) -> bytes:
    """One optional parameter: 2-byte tag, 2-byte length, value."""
    if not 0 <= tag <= 0xFFFF:
        raise ValueError(f"TLV tag {tag:#x} does not fit in 16 bits")
    if len(value) > 0xFFFF:
        raise ValueError(f"TLV {tag:#06x} value is {len(value)} bytes; at most 65535 fit")
    return _TLV_HEAD.pack(tag, len(value)) + value


def _cstring(value: str, limit: int, what: str) -> bytes:
    # Addresses and the like are ASCII on the wire; a NUL inside would end the field early and shift
    # every field after it, so refuse it here rather than send a PDU the SMSC will misread.
    raw = value.encode("ascii")
    if len(raw) > limit:
        raise ValueError(f"{what} {value!r} is longer than {limit} characters")
    if b"\0" in raw:
        raise ValueError(f"{what} contains a NUL")
    return raw


def _encode_sm(
    command_id: int,
    seq: int,
    source_addr: str,
    destination_addr: str,
    short_message: bytes,
    esm_class: int,
    data_coding: int,
    registered_delivery: int,
    source_addr_ton: int,
    source_addr_npi: int,
    dest_addr_ton: int,
    dest_addr_npi: int,
    service_type: str,
    protocol_id: int,
    priority_flag: int,
    validity_period: str,
    tlvs: dict[int, bytes] | None,
) -> bytes:
    if not 1 <= seq <= _MAX_SEQUENCE:
        raise ValueError(f"sequence_number {seq} is outside 1 … 0x7FFFFFFF")
    if len(short_message) > _MAX_SHORT_MESSAGE:
        raise ValueError(f"short_message is {len(short_message)} bytes; use message_payload above 254")
    parts = [
        _cstring(service_type, _MAX_SERVICE_TYPE, "service_type"),
        # bytes((…)) range-checks each octet (ValueError outside 0 … 255) for free.
        b"\0" + bytes((source_addr_ton, source_addr_npi)),
        _cstring(source_addr, _MAX_ADDR, "source_addr"),
        b"\0" + bytes((dest_addr_ton, dest_addr_npi)),
        _cstring(destination_addr, _MAX_ADDR, "destination_addr"),
        # schedule_delivery_time is always NULL: masd schedules sends itself.
        b"\0" + bytes((esm_class, protocol_id, priority_flag)) + b"\0",
        _cstring(validity_period, _MAX_TIME, "validity_period"),
        # replace_if_present_flag and sm_default_msg_id are always 0.
        b"\0" + bytes((registered_delivery, 0, data_coding, 0, len(short_message))),
        short_message,
    ]
    if tlvs:
        if short_message and MESSAGE_PAYLOAD in tlvs:
            # §5.3.2.32: an SMSC must reject a PDU that carries both.
            raise ValueError("short_message and message_payload cannot both be set")
        parts.extend(encode_tlv(tag, value) for tag, value in tlvs.items())
    body = b"".join(parts)
    return HEADER.pack(16 + len(body), command_id, 0, seq) + body


def encode_submit_sm(
    seq: int,
    *,
    source_addr: str,
    destination_addr: str,
    short_message: bytes = b"",
    esm_class: int = 0,
    data_coding: int = 0,
    registered_delivery: int = 1,
    source_addr_ton: int = 0,
    source_addr_npi: int = 0,
    dest_addr_ton: int = 1,
    dest_addr_npi: int = 1,
    service_type: str = "",
    protocol_id: int = 0,
    priority_flag: int = 0,
    validity_period: str = "",
    tlvs: dict[int, bytes] | None = None,
) -> bytes:
    """A whole submit_sm PDU (header included). Raises ValueError on a field that cannot be encoded."""
    return _encode_sm(
        SUBMIT_SM,
        seq,
        source_addr,
        destination_addr,
        short_message,
        esm_class,
        data_coding,
        registered_delivery,
        source_addr_ton,
        source_addr_npi,
        dest_addr_ton,
        dest_addr_npi,
        service_type,
        protocol_id,
        priority_flag,
        validity_period,
        tlvs,
    )


def encode_deliver_sm(
    seq: int,
    *,
    source_addr: str,
    destination_addr: str,
    short_message: bytes = b"",
    esm_class: int = 0,
    data_coding: int = 0,
    registered_delivery: int = 0,
    source_addr_ton: int = 0,
    source_addr_npi: int = 0,
    dest_addr_ton: int = 0,
    dest_addr_npi: int = 0,
    service_type: str = "",
    protocol_id: int = 0,
    priority_flag: int = 0,
    validity_period: str = "",
    tlvs: dict[int, bytes] | None = None,
) -> bytes:
    """A whole deliver_sm PDU (header included), as the simulated SMSC sends receipts and MO messages."""
    return _encode_sm(
        DELIVER_SM,
        seq,
        source_addr,
        destination_addr,
        short_message,
        esm_class,
        data_coding,
        registered_delivery,
        source_addr_ton,
        source_addr_npi,
        dest_addr_ton,
        dest_addr_npi,
        service_type,
        protocol_id,
        priority_flag,
        validity_period,
        tlvs,
    )


def _header(raw: bytes) -> tuple[int, int, int, int]:
    if len(raw) < 16:
        raise PduError(f"PDU of {len(raw)} bytes is shorter than its 16-byte header")
    length, command_id, status, seq = HEADER.unpack_from(raw)
    if length != len(raw):
        raise PduError(f"command_length {length} does not match the {len(raw)} bytes given")
    return length, command_id, status, seq


def decode_sm(raw: bytes) -> SubmitSm:
    """Decode a whole submit_sm or deliver_sm (header included); PduError on anything malformed."""
    end, command_id, _, seq = _header(raw)
    if command_id != SUBMIT_SM and command_id != DELIVER_SM:
        raise PduError(f"command_id 0x{command_id:08X} is neither submit_sm nor deliver_sm")
    find = raw.find
    # Each C-string must end inside the PDU; we do not enforce the spec's maxima on input because real
    # SMSCs overstep them (long alphanumeric sources) and the framing stays unambiguous anyway.
    pos = 16
    nul = find(b"\0", pos, end)
    if nul < 0:
        raise PduError("service_type is not NUL-terminated")
    service_type = raw[pos:nul]
    pos = nul + 3
    if pos > end:
        raise PduError("PDU ends inside source_addr_ton/npi")
    source_addr_ton = raw[pos - 2]
    source_addr_npi = raw[pos - 1]
    nul = find(b"\0", pos, end)
    if nul < 0:
        raise PduError("source_addr is not NUL-terminated")
    source_addr = raw[pos:nul]
    pos = nul + 3
    if pos > end:
        raise PduError("PDU ends inside dest_addr_ton/npi")
    dest_addr_ton = raw[pos - 2]
    dest_addr_npi = raw[pos - 1]
    nul = find(b"\0", pos, end)
    if nul < 0:
        raise PduError("destination_addr is not NUL-terminated")
    destination_addr = raw[pos:nul]
    pos = nul + 4
    if pos > end:
        raise PduError("PDU ends inside esm_class/protocol_id/priority_flag")
    esm_class, protocol_id, priority_flag = _U8x3.unpack_from(raw, pos - 3)
    nul = find(b"\0", pos, end)
    if nul < 0:
        raise PduError("schedule_delivery_time is not NUL-terminated")
    schedule_delivery_time = raw[pos:nul]
    pos = nul + 1
    nul = find(b"\0", pos, end)
    if nul < 0:
        raise PduError("validity_period is not NUL-terminated")
    validity_period = raw[pos:nul]
    pos = nul + 6
    if pos > end:
        raise PduError("PDU ends inside registered_delivery … sm_length")
    registered_delivery, replace_if_present, data_coding, default_msg_id, sm_length = _U8x5.unpack_from(
        raw, pos - 5
    )
    if pos + sm_length > end:
        raise PduError(f"sm_length {sm_length} runs past the end of the PDU")
    short_message = raw[pos : pos + sm_length]
    pos += sm_length
    tlvs: dict[int, bytes] = {}
    while pos < end:
        if pos + 4 > end:
            raise PduError(f"{end - pos} stray bytes where a TLV header should be")
        tag, size = _TLV_HEAD.unpack_from(raw, pos)
        pos += 4
        if pos + size > end:
            raise PduError(f"TLV {tag:#06x} of length {size} runs past the end of the PDU")
        tlvs[tag] = raw[pos : pos + size]
        pos += size
    return SubmitSm(
        seq,
        service_type,
        source_addr_ton,
        source_addr_npi,
        source_addr,
        dest_addr_ton,
        dest_addr_npi,
        destination_addr,
        esm_class,
        protocol_id,
        priority_flag,
        schedule_delivery_time,
        validity_period,
        registered_delivery,
        replace_if_present,
        data_coding,
        default_msg_id,
        short_message,
        tlvs,
    )


def encode_resp(command_id: int, seq: int, status: int = 0, message_id: str | None = None) -> bytes:
    """A submit_sm_resp or deliver_sm_resp.

    submit_sm_resp: the body is message_id as a C-string, and is left out entirely when status is non-zero
    (SMPP 3.4 §4.4.2). deliver_sm_resp: the body is always one NUL, the unused message_id (§4.6.2), so
    ``message_id`` is ignored.
    """
    if not 0 <= seq <= 0xFFFFFFFF:
        # A response echoes the peer's sequence number, whatever it was, so only the field width counts.
        raise ValueError(f"sequence_number {seq} does not fit in 32 bits")
    if not 0 <= status <= 0xFFFFFFFF:
        raise ValueError(f"command_status {status} does not fit in 32 bits")
    if command_id == SUBMIT_SM_RESP:
        body = b"" if status else _cstring(message_id or "", 64, "message_id") + b"\0"
    elif command_id == DELIVER_SM_RESP:
        body = b"\0"
    else:
        raise ValueError(f"command_id 0x{command_id:08X} is not submit_sm_resp or deliver_sm_resp")
    return HEADER.pack(16 + len(body), command_id, status, seq) + body


def decode_resp(raw: bytes) -> tuple[int, int, int, str]:
    """(command_id, command_status, sequence_number, message_id or "") of a response PDU.

    Accepts any response whose body is at most a message_id (submit_sm_resp, deliver_sm_resp, and a
    generic_nack sent in their place). Tolerant on purpose: a body after an error status, or a message_id
    missing its NUL, is read rather than refused, since the status is what matters and dropping the link
    over it would lose every other message in flight.
    """
    _, command_id, status, seq = _header(raw)
    if not command_id & RESPONSE:
        raise PduError(f"command_id 0x{command_id:08X} is not a response")
    nul = raw.find(b"\0", 16)
    body = raw[16:] if nul < 0 else raw[16:nul]
    # Message ids are ASCII by spec; Latin-1 never fails, so a stray high byte cannot raise.
    return command_id, status, seq, body.decode("latin-1")
