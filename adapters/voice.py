"""What a voice channel's receipt means: SIP final response codes and the call outcome each stands for.

A voice driver reports how a call ended as a receipt: ``delivered`` when it was answered, else
``undelivered`` (or ``expired``) with the SIP final response code as its ``error_code``, so the simulator,
a SIP driver and a cloud voice API give apps the same numbers. :data:`SIP_OUTCOMES` is the one table
from those codes to a :class:`CallOutcome`; :func:`call_outcome` reads a receipt or a delivery's final
state with it. The core counts calls by it (``masd_voice_calls_total{outcome}``) and the meeting module
shows it on its board, so both name a call the same way. No simulator or driver is imported here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = [
    "BUSY",
    "BUSY_EVERYWHERE",
    "DECLINED",
    "NOT_FOUND",
    "REQUEST_TERMINATED",
    "REQUEST_TIMEOUT",
    "SERVICE_UNAVAILABLE",
    "SIP_OUTCOMES",
    "SIP_REASONS",
    "TEMPORARILY_UNAVAILABLE",
    "CallOutcome",
    "call_outcome",
]


class CallOutcome(enum.StrEnum):
    """How a call ended, as the ``masd_voice_calls_total{outcome}`` metric and the meeting board name it."""

    ANSWERED = "answered"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    DECLINED = "declined"
    FAILED = "failed"


# SIP final response codes a voice driver reports (RFC 3261 §21); an answered call is 0, as a delivered
# SMS is.
NOT_FOUND = 404  # the number is not in service
REQUEST_TIMEOUT = 408  # no final answer in time: some networks report a ring timeout so
TEMPORARILY_UNAVAILABLE = 480  # rang until the ring timeout, nobody picked up
BUSY = 486  # Busy Here
REQUEST_TERMINATED = 487  # our CANCEL ended the ringing (the ring timeout ran out)
SERVICE_UNAVAILABLE = 503  # the network could not reach the phone (switched off, no signal)
BUSY_EVERYWHERE = 600
DECLINED = 603  # the callee refused the call

SIP_OUTCOMES: Mapping[int, CallOutcome] = {
    REQUEST_TIMEOUT: CallOutcome.NO_ANSWER,
    TEMPORARILY_UNAVAILABLE: CallOutcome.NO_ANSWER,
    REQUEST_TERMINATED: CallOutcome.NO_ANSWER,
    BUSY: CallOutcome.BUSY,
    BUSY_EVERYWHERE: CallOutcome.BUSY,
    DECLINED: CallOutcome.DECLINED,
}
"""The call outcome of each SIP code that is not a failure; every other code means ``failed``."""

SIP_REASONS: Mapping[int, str] = {
    0: "answered",
    NOT_FOUND: "number not in service",
    REQUEST_TIMEOUT: "no answer in time",
    TEMPORARILY_UNAVAILABLE: "no answer",
    BUSY: "busy",
    REQUEST_TERMINATED: "no answer",
    SERVICE_UNAVAILABLE: "unreachable",
    BUSY_EVERYWHERE: "busy everywhere",
    DECLINED: "declined",
}
"""Readable words for the SIP codes voice receipts carry, for receipt texts and logs."""


def call_outcome(state: str, sip_code: int | None) -> CallOutcome:
    """The outcome a voice receipt or a voice delivery's final state stands for.

    ``state`` is the receipt status or delivery state (``delivered``, ``undelivered``, ``expired``,
    ``rejected``, ``failed`` …; a :class:`~masd_adapters.base.ReceiptStatus` is one), ``sip_code`` its
    ``error_code``. Without a code, a call that was never answered in time (``expired``) or that the
    network gave up on without saying why (``undelivered``) counts as not answered; any other code, and a
    delivery refused or failed before it rang, as failed.
    """
    if state == "delivered":
        return CallOutcome.ANSWERED
    if sip_code is not None:
        return SIP_OUTCOMES.get(sip_code, CallOutcome.FAILED)
    if state in ("expired", "undelivered"):
        return CallOutcome.NO_ANSWER
    return CallOutcome.FAILED
