"""SMPP 3.4 numbers, in one place: command ids, command_status codes and names, esm_class and
registered_delivery bits, data codings, message states and the optional parameter (TLV) tags.

Every other module of the SMPP package (the driver, the lean codec, the simulated SMSC, the receipt and
status readers) and the simulators take these from here. What a status *means* for a message (retry,
rebind, slow down) is :mod:`.status`'s business; this module only names the numbers. Section numbers
refer to the SMPP 3.4 specification.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

# ----- command_id (§5.1.2.1) ------------------------------------------------------------------------------

RESPONSE: Final = 0x80000000  # the bit a response's command_id adds to its request's
GENERIC_NACK: Final = 0x80000000
BIND_RECEIVER: Final = 0x00000001
BIND_TRANSMITTER: Final = 0x00000002
QUERY_SM: Final = 0x00000003
SUBMIT_SM: Final = 0x00000004
DELIVER_SM: Final = 0x00000005
UNBIND: Final = 0x00000006
REPLACE_SM: Final = 0x00000007
CANCEL_SM: Final = 0x00000008
BIND_TRANSCEIVER: Final = 0x00000009
OUTBIND: Final = 0x0000000B
ENQUIRE_LINK: Final = 0x00000015
SUBMIT_MULTI: Final = 0x00000021
ALERT_NOTIFICATION: Final = 0x00000102
DATA_SM: Final = 0x00000103

BIND_RECEIVER_RESP: Final = BIND_RECEIVER | RESPONSE
BIND_TRANSMITTER_RESP: Final = BIND_TRANSMITTER | RESPONSE
BIND_TRANSCEIVER_RESP: Final = BIND_TRANSCEIVER | RESPONSE
SUBMIT_SM_RESP: Final = SUBMIT_SM | RESPONSE
DELIVER_SM_RESP: Final = DELIVER_SM | RESPONSE
UNBIND_RESP: Final = UNBIND | RESPONSE
ENQUIRE_LINK_RESP: Final = ENQUIRE_LINK | RESPONSE

# ----- command_status (§5.1.3) ----------------------------------------------------------------------------

ESME_ROK: Final = 0x00
ESME_RINVMSGLEN: Final = 0x01
ESME_RINVCMDLEN: Final = 0x02
ESME_RINVCMDID: Final = 0x03
ESME_RINVBNDSTS: Final = 0x04
ESME_RALYBND: Final = 0x05
ESME_RINVPRTFLG: Final = 0x06
ESME_RINVREGDLVFLG: Final = 0x07
ESME_RSYSERR: Final = 0x08
ESME_RINVSRCADR: Final = 0x0A
ESME_RINVDSTADR: Final = 0x0B
ESME_RINVMSGID: Final = 0x0C
ESME_RBINDFAIL: Final = 0x0D
ESME_RINVPASWD: Final = 0x0E
ESME_RINVSYSID: Final = 0x0F
ESME_RCANCELFAIL: Final = 0x11
ESME_RREPLACEFAIL: Final = 0x13
ESME_RMSGQFUL: Final = 0x14
ESME_RINVSERTYP: Final = 0x15
ESME_RINVNUMDESTS: Final = 0x33
ESME_RINVDLNAME: Final = 0x34
ESME_RINVDESTFLAG: Final = 0x40
ESME_RINVSUBREP: Final = 0x42
ESME_RINVESMCLASS: Final = 0x43
ESME_RCNTSUBDL: Final = 0x44
ESME_RSUBMITFAIL: Final = 0x45
ESME_RINVSRCTON: Final = 0x48
ESME_RINVSRCNPI: Final = 0x49
ESME_RINVDSTTON: Final = 0x50
ESME_RINVDSTNPI: Final = 0x51
ESME_RINVSYSTYP: Final = 0x53
ESME_RINVREPFLAG: Final = 0x54
ESME_RINVNUMMSGS: Final = 0x55
ESME_RTHROTTLED: Final = 0x58
ESME_RINVSCHED: Final = 0x61
ESME_RINVEXPIRY: Final = 0x62
ESME_RINVDFTMSGID: Final = 0x63
ESME_RX_T_APPN: Final = 0x64  # temporary application error: the SMSC keeps the message and sends it again
ESME_RX_P_APPN: Final = 0x65
ESME_RX_R_APPN: Final = 0x66
ESME_RQUERYFAIL: Final = 0x67
ESME_RINVOPTPARSTREAM: Final = 0xC0
ESME_ROPTPARNOTALLWD: Final = 0xC1
ESME_RINVPARLEN: Final = 0xC2
ESME_RMISSINGOPTPARAM: Final = 0xC3
ESME_RINVOPTPARAMVAL: Final = 0xC4
ESME_RDELIVERYFAILURE: Final = 0xFE
ESME_RUNKNOWNERR: Final = 0xFF

# Every code above by its name: the constants are the table, so a code and its name cannot drift apart.
STATUS_NAMES: Mapping[int, str] = MappingProxyType(
    {code: name for name, code in list(globals().items()) if name.startswith("ESME_")}
)

# ----- esm_class (§5.2.12) and registered_delivery (§5.2.17) ----------------------------------------------

ESM_UDHI: Final = 0x40  # the short_message starts with a User Data Header
ESM_TYPE_MASK: Final = 0x3C  # bits 5-2: the message type of a deliver_sm
ESM_DELIVERY_RECEIPT: Final = 0x04  # SMSC delivery receipt
ESM_SME_ACK: Final = 0x08  # SME delivery acknowledgement
ESM_INTERMEDIATE_NOTIFICATION: Final = 0x20

REGISTERED_DELIVERY_MASK: Final = 0x03  # bits 1-0: which receipt the ESME asks for
REGISTERED_DELIVERY_FINAL: Final = 0x01  # a receipt on success or failure
REGISTERED_DELIVERY_FAILURE: Final = 0x02  # a receipt on failure only

# ----- data_coding (§5.2.19) ------------------------------------------------------------------------------

DATA_CODING_DEFAULT: Final = 0x00  # the SMSC default alphabet (GSM 03.38 for masd)
DATA_CODING_IA5: Final = 0x01
DATA_CODING_BINARY: Final = 0x02
DATA_CODING_LATIN1: Final = 0x03
DATA_CODING_OCTETS: Final = 0x04
DATA_CODING_UCS2: Final = 0x08

# ----- message_state (§5.2.28) ----------------------------------------------------------------------------

STATE_ENROUTE: Final = 1
STATE_DELIVERED: Final = 2
STATE_EXPIRED: Final = 3
STATE_DELETED: Final = 4
STATE_UNDELIVERABLE: Final = 5
STATE_ACCEPTED: Final = 6
STATE_UNKNOWN: Final = 7
STATE_REJECTED: Final = 8

# ----- optional parameter (TLV) tags (§5.3.2) -------------------------------------------------------------

RECEIPTED_MESSAGE_ID: Final = 0x001E
SAR_MSG_REF_NUM: Final = 0x020C
SAR_TOTAL_SEGMENTS: Final = 0x020E
SAR_SEGMENT_SEQNUM: Final = 0x020F
NETWORK_ERROR_CODE: Final = 0x0423
MESSAGE_PAYLOAD: Final = 0x0424
MESSAGE_STATE: Final = 0x0427

# network_error_code TLV: network type GSM, then a 2-octet error code (§5.3.2.31).
NETWORK_TYPE_GSM: Final = 3
