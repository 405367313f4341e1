"""The adaptive channel rate: cut on a throttle, recovered step by step, never above the configured rate
nor below its floor."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from masd.core.pacing import AdaptiveRate


def test_a_throttle_halves_the_rate_once_per_second() -> None:
    pace = AdaptiveRate(100.0)
    assert pace.throttled(0.0) == 50.0
    assert pace.throttled(0.3) == 50.0  # the rest of a window answered at once: one signal
    assert pace.throttled(1.0) == 25.0
    assert pace.throttles == 3


def test_the_rate_recovers_a_step_after_each_calm_period_up_to_the_configured_rate() -> None:
    pace = AdaptiveRate(100.0, calm=5.0, step=0.1)
    pace.throttled(0.0)
    assert pace.tick(4.9) == 50.0
    assert pace.tick(5.0) == 60.0
    assert pace.tick(6.0) == 60.0
    assert pace.tick(10.0) == 70.0
    for t in range(15, 100, 5):
        pace.tick(float(t))
    assert pace.rate == 100.0 and not pace.slowed


def test_the_rate_never_falls_below_its_floor() -> None:
    pace = AdaptiveRate(200.0, floor=0.02)
    for t in range(100):
        pace.throttled(float(t))
    assert pace.rate == 4.0


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 10)), max_size=200), st.floats(0.5, 5000))
def test_the_rate_stays_between_its_floor_and_the_configured_rate(
    events: list[tuple[bool, float]], rate: float
) -> None:
    pace = AdaptiveRate(rate)
    now = 0.0
    for throttled, gap in events:
        now += gap
        r = pace.throttled(now) if throttled else pace.tick(now)
        assert pace.lowest <= r <= rate
