"""SGIP 1.2 numbers, in one place: command ids, login types, the Result / ErrorCode table with its names,
MessageCoding values, the Submit flags (FeeType, AgentFlag, MorelatetoMTFlag, ReportFlag) and the
ReportType and State of a Report.

The codec (:mod:`.pdu`), the driver and the simulated SMG take these from here. What a code *means* for a
message (retry, slow down, fail) belongs to whoever classifies it; this module only names the numbers.
The numbers are those of the SGIP 1.2 specification (China Unicom, "中国联通短消息网关系统接口协议"), as
the public implementations read here agree on them (yedamao/go_sgip, Lihuanghe/SMSGate,
bromine0x23/sgip, an SP's table of the SMG's codes).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from .._codec import other_error

# ----- Command ID ------------------------------------------------------------------------------------------

RESPONSE: Final = 0x80000000  # the bit a response's Command ID adds to its request's
BIND: Final = 0x00000001
UNBIND: Final = 0x00000002
SUBMIT: Final = 0x00000003
DELIVER: Final = 0x00000004
REPORT: Final = 0x00000005
# Between SMGs and the GNS (routing); an SP never sees them. Named so that a log says what arrived.
ADDSP: Final = 0x00000006
MODIFYSP: Final = 0x00000007
DELETESP: Final = 0x00000008
QUERYROUTE: Final = 0x00000009
ADDTELESEG: Final = 0x0000000A
MODIFYTELESEG: Final = 0x0000000B
DELETETELESEG: Final = 0x0000000C
ADDSMG: Final = 0x0000000D
MODIFYSMG: Final = 0x0000000E
DELETESMG: Final = 0x0000000F
CHECKUSER: Final = 0x00000010
USERRPT: Final = 0x00000011
TRACE: Final = 0x00001000

BIND_RESP: Final = BIND | RESPONSE
UNBIND_RESP: Final = UNBIND | RESPONSE
SUBMIT_RESP: Final = SUBMIT | RESPONSE
DELIVER_RESP: Final = DELIVER | RESPONSE
REPORT_RESP: Final = REPORT | RESPONSE

_REQUEST_NAMES = {
    BIND: "SGIP_BIND",
    UNBIND: "SGIP_UNBIND",
    SUBMIT: "SGIP_SUBMIT",
    DELIVER: "SGIP_DELIVER",
    REPORT: "SGIP_REPORT",
    ADDSP: "SGIP_ADDSP",
    MODIFYSP: "SGIP_MODIFYSP",
    DELETESP: "SGIP_DELETESP",
    QUERYROUTE: "SGIP_QUERYROUTE",
    ADDTELESEG: "SGIP_ADDTELESEG",
    MODIFYTELESEG: "SGIP_MODIFYTELESEG",
    DELETETELESEG: "SGIP_DELETETELESEG",
    ADDSMG: "SGIP_ADDSMG",
    MODIFYSMG: "SGIP_MODIFYSMG",
    DELETESMG: "SGIP_DELETESMG",
    CHECKUSER: "SGIP_CHECKUSER",
    USERRPT: "SGIP_USERRPT",
    TRACE: "SGIP_TRACE",
}

COMMAND_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        **_REQUEST_NAMES,
        **{command | RESPONSE: f"{name}_RESP" for command, name in _REQUEST_NAMES.items()},
    }
)


def command_name(command_id: int) -> str:
    """The spec's name of a Command ID, or its hex for one SGIP does not define."""
    return COMMAND_NAMES.get(command_id, f"0x{command_id:08X}")


# ----- Bind Login_Type -------------------------------------------------------------------------------------

# SGIP runs two links: the SP binds to the SMG to submit (1), and the SMG binds to the SP's own listener
# to deliver replies and reports (2). The other types are between SMGs and the GNS.
LOGIN_SP_TO_SMG: Final = 1
LOGIN_SMG_TO_SP: Final = 2
LOGIN_SMG_TO_SMG: Final = 3
LOGIN_SMG_TO_GNS: Final = 4
LOGIN_GNS_TO_SMG: Final = 5
LOGIN_GNS_TO_GNS: Final = 6

LOGIN_TYPE_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        LOGIN_SP_TO_SMG: "SP to SMG",
        LOGIN_SMG_TO_SP: "SMG to SP",
        LOGIN_SMG_TO_SMG: "SMG to SMG",
        LOGIN_SMG_TO_GNS: "SMG to GNS",
        LOGIN_GNS_TO_SMG: "GNS to SMG",
        LOGIN_GNS_TO_GNS: "GNS to GNS",
    }
)

# ----- Result (every response) and ErrorCode (Report) --------------------------------------------------

# One table: the spec numbers the errors once, 1–11 "usually in responses", 21–33 "usually in Report"
# (its ErrorCode when State is 2). An SMG also sends its own codes above these (e.g. 34, 57, 93, 101 …,
# the charging platform's); they are kept as numbers and named "other error (N)".
RESULT_OK: Final = 0
RESULT_ILLEGAL_LOGIN: Final = 1  # wrong login name or password
RESULT_REPEATED_LOGIN: Final = 2  # a second Bind on one connection
RESULT_TOO_MANY_CONNECTIONS: Final = 3
RESULT_LOGIN_TYPE_WRONG: Final = 4
RESULT_PARAMETER_FORMAT: Final = 5
RESULT_ILLEGAL_PHONE_NUMBER: Final = 6  # e.g. a number without its "86"
RESULT_MESSAGE_ID: Final = 7  # "消息ID错": the spec's message id is the Command ID
RESULT_MESSAGE_LENGTH: Final = 8
RESULT_ILLEGAL_SEQUENCE: Final = 9  # a repeated or malformed Sequence Number
RESULT_ILLEGAL_GNS_OPERATION: Final = 10
RESULT_NODE_BUSY: Final = 11  # the SMG's queue is full: a throttle, not a failure of the message
RESULT_DESTINATION_NOT_REACHABLE: Final = 21
RESULT_ROUTE_ERROR: Final = 22
RESULT_ROUTE_NOT_EXIST: Final = 23
RESULT_CHARGE_NUMBER_INVALID: Final = 24
RESULT_USER_CANNOT_COMMUNICATE: Final = 25  # out of coverage, switched off
RESULT_PHONE_MEMORY_FULL: Final = 26
RESULT_PHONE_NO_SMS: Final = 27
RESULT_ERROR_RECEIVING: Final = 28
RESULT_UNKNOWN_USER: Final = 29
RESULT_NO_SUCH_FUNCTION: Final = 30
RESULT_ILLEGAL_DEVICE: Final = 31
RESULT_SYSTEM_FAILURE: Final = 32
RESULT_SMSC_QUEUE_FULL: Final = 33

RESULT_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        RESULT_OK: "ok",
        RESULT_ILLEGAL_LOGIN: "illegal login",
        RESULT_REPEATED_LOGIN: "repeated login",
        RESULT_TOO_MANY_CONNECTIONS: "too many connections",
        RESULT_LOGIN_TYPE_WRONG: "login type wrong",
        RESULT_PARAMETER_FORMAT: "parameter format error",
        RESULT_ILLEGAL_PHONE_NUMBER: "illegal phone number",
        RESULT_MESSAGE_ID: "message id error",
        RESULT_MESSAGE_LENGTH: "message length error",
        RESULT_ILLEGAL_SEQUENCE: "illegal sequence number",
        RESULT_ILLEGAL_GNS_OPERATION: "illegal GNS operation",
        RESULT_NODE_BUSY: "node busy",
        RESULT_DESTINATION_NOT_REACHABLE: "destination not reachable",
        RESULT_ROUTE_ERROR: "route error",
        RESULT_ROUTE_NOT_EXIST: "route does not exist",
        RESULT_CHARGE_NUMBER_INVALID: "charge number invalid",
        RESULT_USER_CANNOT_COMMUNICATE: "user cannot communicate",
        RESULT_PHONE_MEMORY_FULL: "phone memory full",
        RESULT_PHONE_NO_SMS: "phone does not support SMS",
        RESULT_ERROR_RECEIVING: "error receiving the message",
        RESULT_UNKNOWN_USER: "unknown user",
        RESULT_NO_SUCH_FUNCTION: "no such function",
        RESULT_ILLEGAL_DEVICE: "illegal device",
        RESULT_SYSTEM_FAILURE: "system failure",
        RESULT_SMSC_QUEUE_FULL: "SMSC queue full",
    }
)


def result_name(result: int) -> str:
    """The name of a response's Result or a Report's ErrorCode; codes the spec does not name are
    "other error (N)"."""
    return other_error(RESULT_NAMES, result)


# ----- MessageCoding ---------------------------------------------------------------------------------------

CODING_ASCII: Final = 0
CODING_CARD: Final = 3  # SIM card write (写卡操作): binary
CODING_BINARY: Final = 4
CODING_UCS2: Final = 8  # UCS-2, big-endian
CODING_GBK: Final = 15

CODING_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        CODING_ASCII: "ASCII",
        CODING_CARD: "card write",
        CODING_BINARY: "binary",
        CODING_UCS2: "UCS-2",
        CODING_GBK: "GBK",
    }
)

# ----- Submit flags ----------------------------------------------------------------------------------------

# ChargeNumber: 21 zeros bill the SP; empty bills each UserNumber (the spec allows empty only for a
# Submit to several users that charges them); otherwise the number ("86…") to bill.
CHARGE_NUMBER_SP: Final = "0" * 21

FEE_CHANNEL_ONLY: Final = 0  # a "send" record that only offsets the SP's channel fee
FEE_FREE: Final = 1  # free for the charge number
FEE_PER_MESSAGE: Final = 2
FEE_MONTHLY: Final = 3
FEE_BY_SP: Final = 4  # charged by the SP itself

AGENT_RECEIVABLE: Final = 0  # AgentFlag 应收
AGENT_RECEIVED: Final = 1  # AgentFlag 实收

# MorelatetoMTFlag: why this MT is sent.
MT_FIRST_FOR_MO: Final = 0  # the first MT answering an MO (点播)
MT_MORE_FOR_MO: Final = 1  # a further MT answering an MO
MT_NOT_FOR_MO: Final = 2  # not caused by an MO: an office's notices
MT_SYSTEM_FEEDBACK: Final = 3

REPORT_ON_ERROR: Final = 0  # a Report only when delivery finally fails (the spec's default)
REPORT_ALWAYS: Final = 1  # a Report whatever the outcome: what masd asks for
REPORT_NONE: Final = 2
REPORT_CHARGE_ONLY: Final = 3  # a monthly charge record, not sent to the user, reported

MESSAGE_TYPE_SMS: Final = 0

# ----- Report ----------------------------------------------------------------------------------------------

REPORT_TYPE_SUBMIT: Final = 0  # on an earlier Submit: the SP's own Sequence Number names it
REPORT_TYPE_DELIVER: Final = 1  # on an earlier forwarded Deliver

STATE_DELIVERED: Final = 0
STATE_WAITING: Final = 1  # not final: a later Report follows
STATE_FAILED: Final = 2  # ErrorCode says why (RESULT_NAMES)

STATE_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        STATE_DELIVERED: "delivered",
        STATE_WAITING: "waiting",
        STATE_FAILED: "failed",
    }
)


def state_name(state: int) -> str:
    """The name of a Report's State; others are "unknown state (N)"."""
    return STATE_NAMES.get(state, f"unknown state ({state})")
