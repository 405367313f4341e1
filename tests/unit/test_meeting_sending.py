"""The meeting module's decisions about sending for the app that made a meeting: which kinds a mode
needs, how a send is cut into batches the app's rate admits, which refusals wait for a later pass."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from masd.core.apps import Forbidden, QuotaExceeded, RateLimited
from masd.core.gateway import QueueFull, Rejected, SubmitRequest
from masd.modules.meeting.service import MODES, Outcome, batches, kinds_of, waits


def _reqs(*sizes: int) -> list[SubmitRequest]:
    return [SubmitRequest("通知", [f"1380000{i:04d}" for i in range(n)]) for n in sizes]


@pytest.mark.parametrize(
    ("mode", "kinds"), [("sms", ("sms",)), ("sms+voice", ("sms", "voice")), ("voice", ("voice",))]
)
def test_each_mode_needs_the_kinds_it_sends(mode: str, kinds: tuple[str, ...]) -> None:
    assert kinds_of(mode) == kinds


def test_every_mode_has_its_kinds() -> None:
    assert all(kinds_of(m) for m in MODES)


def test_without_a_rate_everything_is_one_batch() -> None:
    assert batches(_reqs(1, 1, 1), None) == [[0, 1, 2]]
    assert batches([], None) == []


def test_with_a_rate_each_batch_holds_one_seconds_worth_of_recipients() -> None:
    assert batches(_reqs(*[1] * 7), 3.0) == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_rate_below_one_a_second_still_sends_one_at_a_time() -> None:
    assert batches(_reqs(1, 1), 0.2) == [[0], [1]]


def test_a_request_larger_than_the_burst_is_a_batch_of_its_own() -> None:
    assert batches(_reqs(1, 5, 1), 2.0) == [[0], [1], [2]]


@given(st.lists(st.integers(1, 4), max_size=30), st.floats(0.1, 20))
def test_batches_keep_the_order_and_fit_the_burst(sizes: list[int], rate: float) -> None:
    reqs = _reqs(*sizes)
    got = batches(reqs, rate)
    assert [i for b in got for i in b] == list(range(len(reqs)))
    room = max(rate, 1.0)
    assert all(len(b) == 1 or sum(sizes[i] for i in b) <= room for b in got)


def test_a_rate_with_room_later_and_a_full_queue_wait_for_a_later_pass() -> None:
    assert waits(RateLimited("rate", "try again in 0.4 s", retry_after=0.4))
    assert waits(QueueFull("the queue is full"))


def test_the_quota_a_forbidden_kind_and_a_batch_the_rate_never_admits_are_refused_for_good() -> None:
    assert not waits(QuotaExceeded("quota", "used up"))
    assert not waits(Forbidden("channel", "may not send sms"))
    assert not waits(RateLimited("rate", "at most 5 at once"))  # no retry_after: it never fits
    assert not waits(Rejected("text", "too long"))


def test_an_outcome_names_the_limit_without_the_batch_position() -> None:
    refused = Outcome(refused=Forbidden("messages[3].channel", "may not send voice"))
    assert (refused.limit(), refused.reason(), refused.settled) == ("channel", "may not send voice", True)
    invalid = Outcome(refused=Rejected("messages[0].text", "is too long"))
    assert (invalid.limit(), invalid.reason()) == ("invalid", "text: is too long")
    later = Outcome(later=QueueFull("full"))
    assert (later.limit(), later.settled) == ("queue", False)
    assert Outcome(message_id=7).settled
