"""Retry decisions and pacing."""

from __future__ import annotations

import random

import trio
import trio.testing

from masd.core.dispatch import TokenBucket
from masd.core.retry import backoff, decide
from masd.core.states import DeliveryState

RULES = {"base": 5.0, "cap": 600.0}


def test_backoff_doubles_per_attempt_within_jitter_and_stops_at_the_cap() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(1, 5), (2, 10), (3, 20), (8, 600), (30, 600)]:
        for _ in range(50):
            b = backoff(attempt, rng=rng, **RULES)
            assert ceiling / 2 <= b <= ceiling


def test_jitter_spreads_a_burst_of_failures() -> None:
    rng = random.Random(2)
    assert len({round(backoff(3, rng=rng, **RULES), 3) for _ in range(20)}) > 10


def test_a_retriable_error_is_tried_again_later() -> None:
    d = decide(
        now=100, attempts=1, max_attempts=5, expires_at=10_000, retriable=True, reason="throttled", **RULES
    )
    assert d.state == DeliveryState.QUEUED and 102.5 <= d.not_before <= 105


def test_a_permanent_error_is_rejected_at_once() -> None:
    d = decide(
        now=100, attempts=1, max_attempts=5, expires_at=10_000, retriable=False, reason="0x0B", **RULES
    )
    assert d.state == DeliveryState.REJECTED and d.reason == "0x0B"


def test_the_last_attempt_ends_in_failed_with_the_count() -> None:
    d = decide(
        now=100, attempts=5, max_attempts=5, expires_at=10_000, retriable=True, reason="throttled", **RULES
    )
    assert d.state == DeliveryState.FAILED and "after 5 attempts" in d.reason


def test_a_retry_that_would_fall_after_the_validity_period_expires_now() -> None:
    d = decide(
        now=100, attempts=2, max_attempts=5, expires_at=104, retriable=True, reason="throttled", **RULES
    )
    assert d.state == DeliveryState.EXPIRED and "validity" in d.reason


async def test_the_token_bucket_paces_to_its_rate(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(10)
    t0 = trio.current_time()
    for _ in range(30):
        await bucket.take()
    # 10 at once (one second's burst), then 20 more at 10/s.
    assert 1.9 <= trio.current_time() - t0 <= 2.1


async def test_a_lower_rate_spaces_the_next_sends(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(1000)
    bucket.set_rate(2.0)  # the carrier throttled
    assert bucket.capacity == 2.0
    bucket.tokens = 0
    t0 = trio.current_time()
    await bucket.take()
    await bucket.take()
    assert trio.current_time() - t0 >= 1.0


async def test_tokens_given_back_can_be_taken_again(autojump_clock: trio.testing.MockClock) -> None:
    bucket = TokenBucket(10)
    for _ in range(10):
        assert bucket.take_nowait()
    assert not bucket.take_nowait()
    bucket.give_back(1)
    assert bucket.take_nowait()
    assert not bucket.take_nowait()
