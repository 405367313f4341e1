"""CMPP 2.0 / 3.0 numbers, in one place: command ids, protocol versions, Msg_Fmt values, the status codes
of CONNECT_RESP, SUBMIT_RESP and DELIVER_RESP with their names, and the Stat words of a status report.

The codec (:mod:`.pdu`), the text rules (:mod:`.text`), the driver and the simulated ISMG take these from
here. What a code *means* for a message (retry, slow down, fail) belongs to whoever classifies it; this
module only names the numbers. The numbers are those of the CMPP 2.0 and 3.0 specifications (China
Mobile, "中国移动通信互联网短信网关接口协议").
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from .._codec import other_error

# ----- Command_Id --------------------------------------------------------------------------------------

RESPONSE: Final = 0x80000000  # the bit a response's Command_Id adds to its request's
CONNECT: Final = 0x00000001
TERMINATE: Final = 0x00000002
SUBMIT: Final = 0x00000004
DELIVER: Final = 0x00000005
QUERY: Final = 0x00000006
CANCEL: Final = 0x00000007
ACTIVE_TEST: Final = 0x00000008

CONNECT_RESP: Final = CONNECT | RESPONSE
TERMINATE_RESP: Final = TERMINATE | RESPONSE
SUBMIT_RESP: Final = SUBMIT | RESPONSE
DELIVER_RESP: Final = DELIVER | RESPONSE
QUERY_RESP: Final = QUERY | RESPONSE
CANCEL_RESP: Final = CANCEL | RESPONSE
ACTIVE_TEST_RESP: Final = ACTIVE_TEST | RESPONSE

COMMAND_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        CONNECT: "CMPP_CONNECT",
        CONNECT_RESP: "CMPP_CONNECT_RESP",
        TERMINATE: "CMPP_TERMINATE",
        TERMINATE_RESP: "CMPP_TERMINATE_RESP",
        SUBMIT: "CMPP_SUBMIT",
        SUBMIT_RESP: "CMPP_SUBMIT_RESP",
        DELIVER: "CMPP_DELIVER",
        DELIVER_RESP: "CMPP_DELIVER_RESP",
        QUERY: "CMPP_QUERY",
        QUERY_RESP: "CMPP_QUERY_RESP",
        CANCEL: "CMPP_CANCEL",
        CANCEL_RESP: "CMPP_CANCEL_RESP",
        ACTIVE_TEST: "CMPP_ACTIVE_TEST",
        ACTIVE_TEST_RESP: "CMPP_ACTIVE_TEST_RESP",
    }
)


def command_name(command_id: int) -> str:
    """The spec's name of a Command_Id, or its hex for one CMPP does not define."""
    return COMMAND_NAMES.get(command_id, f"0x{command_id:08X}")


# ----- Version (CONNECT, CONNECT_RESP) ---------------------------------------------------------------------

# The high nibble is the major version, the low one the minor: 0x30 is 3.0. The field widths that differ
# between the versions (see :mod:`.pdu`) are those of 2.0 and 3.0; 2.1 (0x21) uses the 2.0 layout.
VERSION_20: Final = 0x20
VERSION_30: Final = 0x30
VERSIONS: Final = frozenset({VERSION_20, VERSION_30})

# ----- Msg_Fmt ---------------------------------------------------------------------------------------------

MSG_FMT_ASCII: Final = 0  # one octet per character; CMPP has no GSM 7-bit alphabet
MSG_FMT_CARD: Final = 3  # SIM card write (短信写卡操作): binary
MSG_FMT_BINARY: Final = 4  # binary (二进制信息)
MSG_FMT_UCS2: Final = 8  # UCS-2, big-endian
MSG_FMT_GBK: Final = 15  # GB (GBK) Chinese text (含GB汉字)

MSG_FMT_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        MSG_FMT_ASCII: "ASCII",
        MSG_FMT_CARD: "card write",
        MSG_FMT_BINARY: "binary",
        MSG_FMT_UCS2: "UCS-2",
        MSG_FMT_GBK: "GBK",
    }
)

# ----- CONNECT_RESP Status -----------------------------------------------------------------------------

CONNECT_OK: Final = 0
CONNECT_BAD_STRUCTURE: Final = 1
CONNECT_BAD_SOURCE_ADDR: Final = 2
CONNECT_AUTH_FAILED: Final = 3
CONNECT_VERSION_TOO_HIGH: Final = 4

CONNECT_STATUS_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        CONNECT_OK: "ok",
        CONNECT_BAD_STRUCTURE: "message structure error",
        CONNECT_BAD_SOURCE_ADDR: "illegal source address",
        CONNECT_AUTH_FAILED: "authentication failed",
        CONNECT_VERSION_TOO_HIGH: "version too high",
    }
)


def connect_status_name(status: int) -> str:
    """The name of a CONNECT_RESP Status; 5 and above are all "other error" in the spec."""
    return other_error(CONNECT_STATUS_NAMES, status)


# ----- SUBMIT_RESP / DELIVER_RESP Result -------------------------------------------------------------

# One table for both responses: the spec gives DELIVER_RESP the same Result codes as SUBMIT_RESP.
RESULT_OK: Final = 0
RESULT_BAD_STRUCTURE: Final = 1
RESULT_BAD_COMMAND: Final = 2
RESULT_DUPLICATE_SEQUENCE: Final = 3
RESULT_BAD_MSG_LENGTH: Final = 4
RESULT_BAD_FEE_CODE: Final = 5
RESULT_TOO_LONG: Final = 6
RESULT_BAD_SERVICE_ID: Final = 7
RESULT_FLOW_CONTROL: Final = 8  # the ISMG's "send slower": a throttle, not a failure of the message

RESULT_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        RESULT_OK: "ok",
        RESULT_BAD_STRUCTURE: "message structure error",
        RESULT_BAD_COMMAND: "command word error",
        RESULT_DUPLICATE_SEQUENCE: "duplicate sequence number",
        RESULT_BAD_MSG_LENGTH: "message length error",
        RESULT_BAD_FEE_CODE: "fee code error",
        RESULT_TOO_LONG: "message too long",
        RESULT_BAD_SERVICE_ID: "service code error",
        RESULT_FLOW_CONTROL: "flow control",
    }
)


def result_name(result: int) -> str:
    """The name of a SUBMIT_RESP or DELIVER_RESP Result; 9 and above are "other error" here."""
    return other_error(RESULT_NAMES, result)


# ----- Status report Stat (DELIVER with Registered_Delivery = 1) ----------------------------------------

# The seven words of the spec. ISMGs also put carrier codes in the 7 octets (e.g. "MA:0001", "MK:0005",
# "DB:0008"); those are kept as they come and read as undelivered by whoever classifies them.
STAT_DELIVERED: Final = "DELIVRD"
STAT_EXPIRED: Final = "EXPIRED"
STAT_DELETED: Final = "DELETED"
STAT_UNDELIVERABLE: Final = "UNDELIV"
STAT_ACCEPTED: Final = "ACCEPTD"
STAT_UNKNOWN: Final = "UNKNOWN"
STAT_REJECTED: Final = "REJECTD"

STAT_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        STAT_DELIVERED: "delivered to the handset",
        STAT_EXPIRED: "validity period expired",
        STAT_DELETED: "deleted",
        STAT_UNDELIVERABLE: "undeliverable",
        STAT_ACCEPTED: "accepted (read by a person at the SMSC)",
        STAT_UNKNOWN: "unknown state",
        STAT_REJECTED: "rejected",
    }
)

# ----- Registered_Delivery ------------------------------------------------------------------------------

REGISTERED_DELIVERY_NONE: Final = 0  # SUBMIT: no report wanted; DELIVER: an MO message
REGISTERED_DELIVERY_REPORT: Final = 1  # SUBMIT: report wanted; DELIVER: this is a status report
