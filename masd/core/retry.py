"""Retry decisions: pure functions from an error and a delivery's history to what happens next."""

from __future__ import annotations

import dataclasses
import random

from masd.core.states import DeliveryState

__all__ = ["Decision", "backoff", "decide"]


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    state: DeliveryState  # QUEUED (try again), or a final state
    not_before: float  # when to try again (QUEUED only)
    reason: str


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, capped, with full jitter in its upper
    half so that a burst of failures does not come back as a burst."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    r = (rng or random).random()
    return ceiling / 2 + r * ceiling / 2


def decide(
    *,
    now: float,
    attempts: int,
    max_attempts: int,
    expires_at: float,
    retriable: bool,
    reason: str,
    base: float,
    cap: float,
    rng: random.Random | None = None,
) -> Decision:
    """``attempts`` counts the attempt that has just failed."""
    if not retriable:
        return Decision(DeliveryState.REJECTED, now, reason)
    if attempts >= max_attempts:
        return Decision(DeliveryState.FAILED, now, f"{reason}; gave up after {attempts} attempts")
    at = now + backoff(attempts, base=base, cap=cap, rng=rng)
    if at >= expires_at:
        return Decision(DeliveryState.EXPIRED, now, f"{reason}; validity period ends before the next attempt")
    return Decision(DeliveryState.QUEUED, at, reason)
