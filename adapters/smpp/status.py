"""SMPP 3.4 command_status codes: what each means for a message that got it.

This module owns the mapping from a submit_sm_resp's command_status (SMPP 3.4 §5.1.3; the codes and
their names are in :mod:`.constants`) to the driver interface's :class:`SubmitError`: whether the core
may retry the segment, whether the driver should rebind first, and whether the SMSC is asking us to
slow down (``throttled``, which the core's pacing reads without knowing SMPP). It also makes the two
errors that have no wire status: a submit that timed out and a link that went down with submits in
flight.
"""

from __future__ import annotations

from masd_adapters.base import SubmitError

from .constants import (
    ESME_RALYBND,
    ESME_RINVBNDSTS,
    ESME_RMSGQFUL,
    ESME_RSYSERR,
    ESME_RTHROTTLED,
    ESME_RUNKNOWNERR,
    ESME_RX_T_APPN,
    STATUS_NAMES,
)

__all__ = ["classify", "link_down_error", "name", "timeout_error"]

# Transient conditions at the SMSC: the same PDU may well succeed later.
# 0x14 message queue full and 0x58 throttled also mean "send slower".
# 0x64 is the spec's "temporary application error"; 0x08 is a system error at the SMSC.
_RETRIABLE = frozenset({ESME_RSYSERR, ESME_RMSGQFUL, ESME_RTHROTTLED, ESME_RX_T_APPN})
_THROTTLED = frozenset({ESME_RMSGQFUL, ESME_RTHROTTLED})
# 0x04 "incorrect bind status": the SMSC no longer thinks we are bound for transmit, so the session is
# out of step; rebinding fixes it and the segment can then be retried. 0x05 "already bound" sent in reply
# to a submit is the same disagreement about the session's state, seen from the other side.
_REBIND = frozenset({ESME_RINVBNDSTS, ESME_RALYBND})
# 0xFF "unknown error" says nothing about the cause, so it is handled like a code we do not know.
_UNKNOWN_MEANING = frozenset({ESME_RUNKNOWNERR})

# Everything else in STATUS_NAMES is permanent: the SMSC has judged this PDU (an invalid length, address, TON,
# NPI, esm_class, expiry, optional parameter, …) or this message (0x45 submit failed, 0x65 permanent
# application error, 0x66 rejected by the receiver, 0xFE delivery failure), and sending the same bytes
# again would get the same answer. The bind-only codes (0x0D-0x0F) and the codes for operations masd
# never sends (cancel, replace, query, distribution lists) are permanent too if an SMSC ever returns them
# to a submit_sm: no retry of that PDU can change them.


def name(code: int) -> str:
    """The "ESME_R…" name of a code SMPP 3.4 defines, else the hex code (reserved, vendor-specific)."""
    known = STATUS_NAMES.get(code)
    return known if known is not None else f"0x{code:08X}"


def _classify(code: int) -> SubmitError:
    if code in _REBIND:
        return SubmitError(code, name(code), retriable=True, rebind=True)
    if code in _RETRIABLE:
        return SubmitError(code, name(code), retriable=True, throttled=code in _THROTTLED)
    if code in STATUS_NAMES and code not in _UNKNOWN_MEANING:
        return SubmitError(code, name(code), retriable=False)
    # Reserved, vendor-specific (0x400-0x4FF) and meaningless codes: we cannot tell a transient failure
    # from a permanent one, and losing a message on a guess is worse than sending it again, so they are
    # retriable. They are not throttles, so every such attempt counts towards the delivery's maximum
    # attempts, which bounds the cost when the code was in fact permanent.
    return SubmitError(code, name(code), retriable=True)


# SubmitError is frozen, so one instance per known code serves every call (classify is on the hot path).
_CACHE: dict[int, SubmitError] = {code: _classify(code) for code in STATUS_NAMES if code}


def classify(code: int) -> SubmitError:
    """What a non-zero command_status means for the segment; ValueError for 0, which is not an error."""
    if code == 0:
        raise ValueError("command_status 0 (ESME_ROK) is success, not an error")
    cached = _CACHE.get(code)
    return cached if cached is not None else _classify(code)


_TIMEOUT = SubmitError(0, "SUBMIT_TIMEOUT", retriable=True)
# rebind stays False: the driver already reconnects a dropped link on its own; rebind asks it to tear
# down a link that still looks up.
_LINK_DOWN = SubmitError(0, "LINK_DOWN", retriable=True)


def timeout_error() -> SubmitError:
    """No submit_sm_resp came in time. Retriable: the SMSC may or may not have taken the message, and a
    possible duplicate is judged better than a certain loss."""
    return _TIMEOUT


def link_down_error() -> SubmitError:
    """The link was lost (or never up) before this segment got its submit_sm_resp; retriable."""
    return _LINK_DOWN
