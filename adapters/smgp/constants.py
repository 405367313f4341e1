"""SMGP 3.0 numbers, in one place: request ids, the protocol version, login modes, MsgType, MsgFormat,
the Status codes of every response with their names (and which of them are waits), the optional
parameters' tags, and the words of a status report (stat and err).

The codec (:mod:`.pdu`), the MsgID (:mod:`.msgid`), the driver and the simulated SMGW take these from
here. What a code *means* for a message (retry, slow down, fail) belongs to whoever classifies it; this
module names the numbers, and marks the two Status codes the spec makes a matter of time rather than of
the message (:data:`STATUS_WAITS`). The numbers are those of China Telecom's "短消息网关协议（SMGP）"
V3.0.3 (CT/T SN RC1, 2008), sections 4.2, 6.1.2, 6.2 and 6.3; yedamao/go_smgp and Lihuanghe/SMSGate
use the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from .._codec import other_error

# ----- RequestID (6.1.2) -----------------------------------------------------------------------------

RESPONSE: Final = 0x80000000  # the bit a response's RequestID adds to its request's
LOGIN: Final = 0x00000001
SUBMIT: Final = 0x00000002
DELIVER: Final = 0x00000003
ACTIVE_TEST: Final = 0x00000004
FORWARD: Final = 0x00000005  # SMGW to SMGW only
EXIT: Final = 0x00000006
QUERY: Final = 0x00000007  # SP statistics

LOGIN_RESP: Final = LOGIN | RESPONSE
SUBMIT_RESP: Final = SUBMIT | RESPONSE
DELIVER_RESP: Final = DELIVER | RESPONSE
ACTIVE_TEST_RESP: Final = ACTIVE_TEST | RESPONSE
FORWARD_RESP: Final = FORWARD | RESPONSE
EXIT_RESP: Final = EXIT | RESPONSE
QUERY_RESP: Final = QUERY | RESPONSE

# 0x08 … 0x12 are the routing and prepaid operations between gateways, GNS and billing; an SP never
# sees them, but a peer's stray one should be named in the error rather than shown as a number.
_REQUEST_NAMES = {
    LOGIN: "Login",
    SUBMIT: "Submit",
    DELIVER: "Deliver",
    ACTIVE_TEST: "Active_Test",
    FORWARD: "Forward",
    EXIT: "Exit",
    QUERY: "Query",
    0x08: "Query_TE_Route",
    0x09: "Query_SP_Route",
    0x0A: "Payment_Request",
    0x0B: "Payment_Affirm",
    0x0C: "Query_UserState",
    0x0D: "Get_All_TE_Route",
    0x0E: "Get_All_SP_Route",
    0x0F: "Update_TE_Route",
    0x10: "Update_SP_Route",
    0x11: "Push_Update_TE_Route",
    0x12: "Push_Update_SP_Route",
}

COMMAND_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        **{rid: f"SMGP_{name}" for rid, name in _REQUEST_NAMES.items()},
        **{rid | RESPONSE: f"SMGP_{name}_Resp" for rid, name in _REQUEST_NAMES.items()},
    }
)


def command_name(request_id: int) -> str:
    """The spec's name of a RequestID (``SMGP_Submit_Resp``), or its hex for one SMGP does not define."""
    return COMMAND_NAMES.get(request_id, f"0x{request_id:08X}")


# ----- versions, port and timers (4.2, 4.3, 6.2.5) -------------------------------------------------

# ClientVersion / ServerVersion: the high nibble is the major version, the low one the minor.
VERSION_30: Final = 0x30

PORT: Final = 8890  # SMGW ← SP; 8900 is SMGW ↔ SMGW, 8901 SMGW ← GNS

# The spec's suggested values: a link check every C when idle, T to wait for any response, N tries in
# all before the link (or the message) is given up, W requests in flight before a response.
ACTIVE_TEST_INTERVAL: Final = 180.0  # C, seconds
RESPONSE_TIMEOUT: Final = 60.0  # T, seconds
ATTEMPTS: Final = 3  # N
WINDOW: Final = 16  # W

# ----- LoginMode (6.2.3) ---------------------------------------------------------------------------

LOGIN_MODE_SEND: Final = 0  # the SP submits only
LOGIN_MODE_RECEIVE: Final = 1  # the SMGW delivers only (replies and reports)
LOGIN_MODE_TRANSMIT: Final = 2  # both on one link

LOGIN_MODE_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {LOGIN_MODE_SEND: "send", LOGIN_MODE_RECEIVE: "receive", LOGIN_MODE_TRANSMIT: "transmit"}
)

# ----- MsgType, NeedReport, IsReport, Priority (6.2.9 … 6.2.11, 6.2.27) ------------------------------

MSG_TYPE_MO: Final = 0  # terminal to SP
MSG_TYPE_MT: Final = 6  # SP to terminal: what an SP's Submit carries
MSG_TYPE_P2P: Final = 7  # terminal to terminal

NEED_REPORT_NONE: Final = 0
NEED_REPORT: Final = 1

IS_REPORT_NONE: Final = 0  # a Deliver carrying a reply (MO)
IS_REPORT: Final = 1  # a Deliver carrying a status report in MsgContent

PRIORITY_LOW: Final = 0
PRIORITY_NORMAL: Final = 1
PRIORITY_HIGHER: Final = 2
PRIORITY_HIGHEST: Final = 3

# ----- FeeType (6.2.13) ------------------------------------------------------------------------------

FEE_TYPE_FREE: Final = "00"
FEE_TYPE_PER_MESSAGE: Final = "01"  # FeeCode is the price of each message, in fen
FEE_TYPE_MONTHLY: Final = "02"  # FixedFee is the monthly fee
FEE_TYPE_CAPPED: Final = "03"  # per message (FeeCode) up to a cap (FixedFee)

# ----- MsgFormat (6.2.16) ----------------------------------------------------------------------------

MSG_FORMAT_ASCII: Final = 0  # also what a status report is in
MSG_FORMAT_CARD: Final = 3  # SIM card write (短消息写卡操作)
MSG_FORMAT_BINARY: Final = 4
MSG_FORMAT_UCS2: Final = 8  # UCS-2, big-endian
MSG_FORMAT_GB18030: Final = 15  # the spec asks 15 for any text message; GBK is a subset of it
MSG_FORMAT_USIM: Final = 246  # (U)SIM related (0xF6)

MSG_FORMAT_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        MSG_FORMAT_ASCII: "ASCII",
        MSG_FORMAT_CARD: "card write",
        MSG_FORMAT_BINARY: "binary",
        MSG_FORMAT_UCS2: "UCS-2",
        MSG_FORMAT_GB18030: "GB18030",
        MSG_FORMAT_USIM: "(U)SIM",
    }
)

# MsgLength (6.2.23): one octet on the wire, and at most 140 in an MT message.
MAX_MT_LENGTH: Final = 140

# ----- Status (6.2.6): one table for Login_Resp, Submit_Resp, Deliver_Resp and the rest -------------

STATUS_OK: Final = 0
STATUS_SYSTEM_BUSY: Final = 1
STATUS_TOO_MANY_CONNECTIONS: Final = 2
STATUS_BAD_STRUCTURE: Final = 10
STATUS_BAD_COMMAND: Final = 11
STATUS_DUPLICATE_SEQUENCE: Final = 12
STATUS_BAD_IP_ADDRESS: Final = 20
STATUS_AUTH_FAILED: Final = 21
STATUS_VERSION_TOO_HIGH: Final = 22
STATUS_BAD_MSG_TYPE: Final = 30
STATUS_BAD_PRIORITY: Final = 31
STATUS_BAD_FEE_TYPE: Final = 32
STATUS_BAD_FEE_CODE: Final = 33
STATUS_BAD_MSG_FORMAT: Final = 34
STATUS_BAD_TIME_FORMAT: Final = 35
STATUS_BAD_MSG_LENGTH: Final = 36
STATUS_VALIDITY_EXPIRED: Final = 37
STATUS_BAD_QUERY_TYPE: Final = 38
STATUS_ROUTING_ERROR: Final = 39
STATUS_BAD_FIXED_FEE: Final = 40
STATUS_BAD_UPDATE_TYPE: Final = 41
STATUS_BAD_ROUTE_ID: Final = 42
STATUS_BAD_SERVICE_ID: Final = 43
STATUS_BAD_VALID_TIME: Final = 44
STATUS_BAD_AT_TIME: Final = 45
STATUS_BAD_SRC_TERM_ID: Final = 46
STATUS_BAD_DEST_TERM_ID: Final = 47
STATUS_BAD_CHARGE_TERM_ID: Final = 48
STATUS_BAD_SP_CODE: Final = 49
STATUS_BAD_SRC_GATEWAY_ID: Final = 56
STATUS_BAD_QUERY_TERM_ID: Final = 57
STATUS_NO_ROUTE: Final = 58
STATUS_BAD_SP_TYPE: Final = 59
STATUS_BAD_LAST_ROUTE_ID: Final = 60
STATUS_BAD_ROUTE_TYPE: Final = 61
STATUS_BAD_DEST_GATEWAY_ID: Final = 62
STATUS_BAD_DEST_GATEWAY_IP: Final = 63
STATUS_BAD_DEST_GATEWAY_PORT: Final = 64
STATUS_BAD_TERM_RANGE_ID: Final = 65
STATUS_BAD_PROVINCE_CODE: Final = 66
STATUS_BAD_USER_TYPE: Final = 67
STATUS_ROUTE_UPDATE_UNSUPPORTED: Final = 68
STATUS_BAD_SP_ID: Final = 69
STATUS_BAD_SP_ACCESS_TYPE: Final = 70
STATUS_ROUTE_UPDATE_FAILED: Final = 71
STATUS_BAD_TIMESTAMP: Final = 72
STATUS_BAD_M_SERVICE_ID: Final = 73
STATUS_SENDING_BANNED_NOW: Final = 74  # SP禁止下发时段
STATUS_DAILY_VOLUME_EXCEEDED: Final = 75  # SP发送超过日流量
STATUS_ACCOUNT_EXPIRED: Final = 76  # SP帐号过有效期

STATUS_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        STATUS_OK: "ok",
        STATUS_SYSTEM_BUSY: "system busy",
        STATUS_TOO_MANY_CONNECTIONS: "too many connections",
        STATUS_BAD_STRUCTURE: "message structure error",
        STATUS_BAD_COMMAND: "command word error",
        STATUS_DUPLICATE_SEQUENCE: "duplicate sequence number",
        STATUS_BAD_IP_ADDRESS: "IP address error",
        STATUS_AUTH_FAILED: "authentication failed",
        STATUS_VERSION_TOO_HIGH: "version too high",
        STATUS_BAD_MSG_TYPE: "illegal MsgType",
        STATUS_BAD_PRIORITY: "illegal Priority",
        STATUS_BAD_FEE_TYPE: "illegal FeeType",
        STATUS_BAD_FEE_CODE: "illegal FeeCode",
        STATUS_BAD_MSG_FORMAT: "illegal MsgFormat",
        STATUS_BAD_TIME_FORMAT: "illegal time format",
        STATUS_BAD_MSG_LENGTH: "illegal MsgLength",
        STATUS_VALIDITY_EXPIRED: "validity period expired",
        STATUS_BAD_QUERY_TYPE: "illegal QueryType",
        STATUS_ROUTING_ERROR: "routing error",
        STATUS_BAD_FIXED_FEE: "illegal FixedFee",
        STATUS_BAD_UPDATE_TYPE: "illegal UpdateType",
        STATUS_BAD_ROUTE_ID: "illegal RouteId",
        STATUS_BAD_SERVICE_ID: "illegal ServiceId",
        STATUS_BAD_VALID_TIME: "illegal ValidTime",
        STATUS_BAD_AT_TIME: "illegal AtTime",
        STATUS_BAD_SRC_TERM_ID: "illegal SrcTermID",
        STATUS_BAD_DEST_TERM_ID: "illegal DestTermID",
        STATUS_BAD_CHARGE_TERM_ID: "illegal ChargeTermID",
        STATUS_BAD_SP_CODE: "illegal SPCode",
        STATUS_BAD_SRC_GATEWAY_ID: "illegal SrcGatewayID",
        STATUS_BAD_QUERY_TERM_ID: "illegal QueryTermID",
        STATUS_NO_ROUTE: "no matching route",
        STATUS_BAD_SP_TYPE: "illegal SPType",
        STATUS_BAD_LAST_ROUTE_ID: "illegal LastRouteID",
        STATUS_BAD_ROUTE_TYPE: "illegal RouteType",
        STATUS_BAD_DEST_GATEWAY_ID: "illegal DestGatewayID",
        STATUS_BAD_DEST_GATEWAY_IP: "illegal DestGatewayIP",
        STATUS_BAD_DEST_GATEWAY_PORT: "illegal DestGatewayPort",
        STATUS_BAD_TERM_RANGE_ID: "illegal TermRangeID",
        STATUS_BAD_PROVINCE_CODE: "illegal ProvinceCode",
        STATUS_BAD_USER_TYPE: "illegal UserType",
        STATUS_ROUTE_UPDATE_UNSUPPORTED: "route updates not supported by this node",
        STATUS_BAD_SP_ID: "illegal SPID",
        STATUS_BAD_SP_ACCESS_TYPE: "illegal SPAccessType",
        STATUS_ROUTE_UPDATE_FAILED: "route update failed",
        STATUS_BAD_TIMESTAMP: "illegal timestamp (Time)",
        STATUS_BAD_M_SERVICE_ID: "illegal MServiceID",
        STATUS_SENDING_BANNED_NOW: "sending banned in this time window",
        STATUS_DAILY_VOLUME_EXCEEDED: "daily volume exceeded",
        STATUS_ACCOUNT_EXPIRED: "SP account expired",
    }
)

# Waits, not failures: the SMGW refuses the message *now* (outside the SP's permitted hours, or past
# its quota for today) and would take the same message later, so it must be held, not failed.
STATUS_WAITS: Final = frozenset({STATUS_SENDING_BANNED_NOW, STATUS_DAILY_VOLUME_EXCEEDED})

# 128 … 255 are the gateway vendor's own (厂家自定义); 50 … 55 and 112 … 116 are "other uses".
_VENDOR_STATUSES = range(128, 256)


def status_name(status: int) -> str:
    """The name of a Status, e.g. ``status_name(21) == "authentication failed"``."""
    if status in _VENDOR_STATUSES and status not in STATUS_NAMES:
        return f"vendor-defined error ({status})"
    return other_error(STATUS_NAMES, status)


def status_is_wait(status: int) -> bool:
    """Whether the SMGW asks for the message later rather than refusing it (see :data:`STATUS_WAITS`)."""
    return status in STATUS_WAITS


# ----- optional parameters: TLV tags (6.3.1) ------------------------------------------------------

TAG_TP_PID: Final = 0x0001
TAG_TP_UDHI: Final = 0x0002
TAG_LINK_ID: Final = 0x0003
TAG_CHARGE_USER_TYPE: Final = 0x0004
TAG_CHARGE_TERM_TYPE: Final = 0x0005
TAG_CHARGE_TERM_PSEUDO: Final = 0x0006
TAG_DEST_TERM_TYPE: Final = 0x0007
TAG_DEST_TERM_PSEUDO: Final = 0x0008
TAG_PK_TOTAL: Final = 0x0009
TAG_PK_NUMBER: Final = 0x000A
TAG_SUBMIT_MSG_TYPE: Final = 0x000B
TAG_SP_DEAL_RESULT: Final = 0x000C
TAG_SRC_TERM_TYPE: Final = 0x000D
TAG_SRC_TERM_PSEUDO: Final = 0x000E
TAG_NODES_COUNT: Final = 0x000F
TAG_MSG_SRC: Final = 0x0010
TAG_SRC_TYPE: Final = 0x0011
TAG_M_SERVICE_ID: Final = 0x0012

TAG_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        TAG_TP_PID: "TP_pid",
        TAG_TP_UDHI: "TP_udhi",
        TAG_LINK_ID: "LinkID",
        TAG_CHARGE_USER_TYPE: "ChargeUserType",
        TAG_CHARGE_TERM_TYPE: "ChargeTermType",
        TAG_CHARGE_TERM_PSEUDO: "ChargeTermPseudo",
        TAG_DEST_TERM_TYPE: "DestTermType",
        TAG_DEST_TERM_PSEUDO: "DestTermPseudo",
        TAG_PK_TOTAL: "PkTotal",
        TAG_PK_NUMBER: "PkNumber",
        TAG_SUBMIT_MSG_TYPE: "SubmitMsgType",
        TAG_SP_DEAL_RESULT: "SPDealResult",
        TAG_SRC_TERM_TYPE: "SrcTermType",
        TAG_SRC_TERM_PSEUDO: "SrcTermPseudo",
        TAG_NODES_COUNT: "NodesCount",
        TAG_MSG_SRC: "MsgSrc",
        TAG_SRC_TYPE: "SrcType",
        TAG_M_SERVICE_ID: "MServiceID",
    }
)

# The Value width the spec gives each tag: an Integer of 1 octet, a fixed Octet String (LinkID 20,
# MsgSrc 8, MServiceID 21), or None for the pseudo-codes, whose width is their Length.
TAG_WIDTHS: Final[Mapping[int, int | None]] = MappingProxyType(
    {
        TAG_TP_PID: 1,
        TAG_TP_UDHI: 1,
        TAG_LINK_ID: 20,
        TAG_CHARGE_USER_TYPE: 1,
        TAG_CHARGE_TERM_TYPE: 1,
        TAG_CHARGE_TERM_PSEUDO: None,
        TAG_DEST_TERM_TYPE: 1,
        TAG_DEST_TERM_PSEUDO: None,
        TAG_PK_TOTAL: 1,
        TAG_PK_NUMBER: 1,
        TAG_SUBMIT_MSG_TYPE: 1,
        TAG_SP_DEAL_RESULT: 1,
        TAG_SRC_TERM_TYPE: 1,
        TAG_SRC_TERM_PSEUDO: None,
        TAG_NODES_COUNT: 1,
        TAG_MSG_SRC: 8,
        TAG_SRC_TYPE: 1,
        TAG_M_SERVICE_ID: 21,
    }
)


def tag_name(tag: int) -> str:
    """The spec's name of an optional parameter's Tag, or its hex for one it does not define."""
    return TAG_NAMES.get(tag, f"TLV 0x{tag:04X}")


# ----- the status report in a Deliver with IsReport = 1 (6.2.63) -----------------------------------

# stat (6.2.63.1): the SMPP 3.4 words. Gateways also put their own codes in the 7 octets; those are
# kept as they come and read as undelivered by whoever classifies them.
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
        STAT_ACCEPTED: "accepted by the end user",
        STAT_UNKNOWN: "unknown state",
        STAT_REJECTED: "rejected",
    }
)

# err (6.2.63.2): three digits, each with the stat the spec pairs it with.
ERR_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "000": "success",
        "001": "user cannot be reached",
        "002": "user busy",
        "003": "terminal lacks this feature",
        "004": "illegal user",
        "005": "user on the blacklist",
        "006": "system error",
        "007": "user's memory full",
        "008": "not a messaging terminal",
        "009": "data error",
        "010": "data lost",
        "999": "unknown error",
    }
)

ERR_STATS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "000": STAT_DELIVERED,
        "001": STAT_EXPIRED,
        "002": STAT_EXPIRED,
        "003": STAT_UNDELIVERABLE,
        "004": STAT_UNDELIVERABLE,
        "005": STAT_UNDELIVERABLE,
        "006": STAT_UNDELIVERABLE,
        "007": STAT_EXPIRED,
        "008": STAT_UNDELIVERABLE,
        "009": STAT_UNDELIVERABLE,
        "010": STAT_UNDELIVERABLE,
        "999": STAT_UNKNOWN,
    }
)
