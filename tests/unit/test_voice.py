"""Specification of masd_adapters.voice: the one table from SIP final response codes to call outcomes, which
the voice metric and the meeting board both read."""

from __future__ import annotations

import pytest

from masd.core import gateway
from masd.modules.meeting import service
from masd_adapters import voice
from masd_adapters.base import ReceiptStatus
from masd_adapters.voice import CallOutcome, call_outcome


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (ReceiptStatus.DELIVERED, 0, CallOutcome.ANSWERED),
        (ReceiptStatus.UNDELIVERED, 408, CallOutcome.NO_ANSWER),
        (ReceiptStatus.UNDELIVERED, 480, CallOutcome.NO_ANSWER),
        (ReceiptStatus.UNDELIVERED, 486, CallOutcome.BUSY),
        (ReceiptStatus.UNDELIVERED, 600, CallOutcome.BUSY),
        (ReceiptStatus.UNDELIVERED, 404, CallOutcome.FAILED),
        (ReceiptStatus.UNDELIVERED, 503, CallOutcome.FAILED),
    ],
)
def test_a_receipt_maps_to_the_call_outcome_by_its_sip_code(
    status: ReceiptStatus, code: int | None, outcome: CallOutcome
) -> None:
    assert call_outcome(status, code) is outcome


def test_request_terminated_after_our_cancel_is_no_answer() -> None:
    # 487: the ring timeout ran out and the caller's CANCEL ended the ringing; nobody picked up.
    assert call_outcome(ReceiptStatus.UNDELIVERED, 487) is CallOutcome.NO_ANSWER


def test_decline_is_declined_not_failed() -> None:
    # 603: the callee saw the call and refused it, which an organiser wants told apart from a failure.
    assert call_outcome(ReceiptStatus.UNDELIVERED, 603) is CallOutcome.DECLINED


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        ("expired", CallOutcome.NO_ANSWER),
        ("undelivered", CallOutcome.NO_ANSWER),
        ("rejected", CallOutcome.FAILED),
        ("failed", CallOutcome.FAILED),
        ("unknown", CallOutcome.FAILED),
    ],
)
def test_without_a_sip_code_an_unanswered_call_is_no_answer_and_a_refused_one_failed(
    state: str, outcome: CallOutcome
) -> None:
    assert call_outcome(state, None) is outcome


def test_a_delivered_call_is_answered_whatever_code_it_carries() -> None:
    assert call_outcome("delivered", None) is CallOutcome.ANSWERED
    assert call_outcome(ReceiptStatus.DELIVERED, 200) is CallOutcome.ANSWERED


def test_every_code_of_the_table_has_readable_words() -> None:
    assert set(voice.SIP_OUTCOMES) <= set(voice.SIP_REASONS)


def test_the_voice_metric_and_the_meeting_board_read_the_same_table() -> None:
    assert gateway.call_outcome is call_outcome
    assert service.call_outcome is call_outcome
