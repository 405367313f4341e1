"""How fast a channel sends: its configured rate, cut when the carrier throttles, recovered step by step.

A carrier's throttling answer (a :class:`~masd_adapters.base.SubmitError` the driver marks
``throttled``: which wire statuses those are is the driver's knowledge, not the core's) is flow
control, not a failure: the delivery waits and is sent again, and the channel slows down. The rule
is additive-increase / multiplicative-decrease, as TCP does for the same problem: each throttle halves
the rate (at most once per ``cut_every`` seconds, since the answers to a whole window of submits in
flight arrive together and mean one thing), never below ``floor`` of the configured rate; after
``calm`` seconds without a throttle the rate grows by ``step`` of the configured rate, and again after
each further calm period, until it is back at the configured rate. Pure: the caller passes the time.
"""

from __future__ import annotations

__all__ = ["AdaptiveRate"]


class AdaptiveRate:
    """The current sending rate of one channel (per second)."""

    def __init__(
        self,
        configured: float,
        *,
        cut: float = 0.5,
        floor: float = 0.1,
        step: float = 0.1,
        calm: float = 5.0,
        cut_every: float = 1.0,
    ) -> None:
        if configured <= 0:
            raise ValueError("a rate must be more than zero")
        self.configured = configured
        self.rate = configured
        self.lowest = max(configured * floor, min(configured, 1.0))
        self._cut = cut
        self._step = configured * step
        self._calm = calm
        self._cut_every = cut_every
        self._last_cut: float | None = None
        self._last_change = float("-inf")
        self.throttles = 0  # throttling answers seen

    def throttled(self, now: float) -> float:
        """The carrier said "slower": the rate to send at from now on."""
        self.throttles += 1
        if self._last_cut is None or now - self._last_cut >= self._cut_every:
            self.rate = max(self.lowest, self.rate * self._cut)
            self._last_cut = self._last_change = now
        return self.rate

    def tick(self, now: float) -> float:
        """Time passed: the rate, one step higher if it has been calm long enough since the last change."""
        if self.rate < self.configured and now - self._last_change >= self._calm:
            self.rate = min(self.configured, self.rate + self._step)
            self._last_change = now
        return self.rate

    @property
    def slowed(self) -> bool:
        return self.rate < self.configured
