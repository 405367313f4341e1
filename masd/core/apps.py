"""What an app may do, and the checks every interface runs before accepting its work.

An app has permissions (which kinds of channel it may use: ``sms``, ``voice``), a rate (recipients per
second, with a burst of one second's worth) and a daily quota (recipients per local calendar day). The
checks are here, in the core, so that HTTP, the socket, DB polling and the modules refuse alike.
Rate and quota count recipients, not requests: a notice to 300 people costs 300, as the carrier bills.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "KINDS",
    "App",
    "Forbidden",
    "QuotaExceeded",
    "RateLimited",
    "RateLimiter",
    "parse_channels",
    "parse_quota",
    "parse_rate",
]

KINDS = ("sms", "voice")
_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}


class Refused(Exception):
    """The app may not do this now; ``field`` names what was refused and ``reason`` says why."""

    status = 403

    def __init__(self, field: str, reason: str, *, retry_after: float | None = None) -> None:
        self.field = field
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(f"{field}: {reason}")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "reason": self.reason}
        if self.retry_after is not None:
            out["retry_after"] = round(self.retry_after, 3)
        return out


class Forbidden(Refused):
    status = 403


class RateLimited(Refused):
    status = 429


class QuotaExceeded(Refused):
    status = 429


@dataclasses.dataclass(frozen=True, slots=True)
class App:
    id: int
    name: str
    channels: frozenset[str] | None = None  # None: every kind
    rate: float | None = None  # recipients per second
    quota_per_day: int | None = None
    extension: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = dataclasses.field(default=None, repr=False)  # never in a log line

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> App:
        ch = row.get("channels")
        return cls(
            id=int(row["id"]),
            name=str(row["name"]),
            channels=frozenset(ch.split(",")) if ch else None,
            rate=row.get("rate"),
            quota_per_day=row.get("quota_per_day"),
            extension=row.get("extension") or None,
            webhook_url=row.get("webhook_url") or None,
            webhook_secret=row.get("webhook_secret") or None,
        )

    def check_kind(self, kind: str) -> None:
        if self.channels is not None and kind not in self.channels:
            raise Forbidden(
                "channel",
                f"app {self.name!r} may not send {kind}; it may use: {', '.join(sorted(self.channels))} "
                f"(change with 'masd apps set {self.name} --channels …')",
            )


def parse_channels(text: str) -> str:
    """``"sms,voice"`` → the stored form; raise ValueError naming an unknown kind."""
    kinds = [k.strip().lower() for k in text.split(",") if k.strip()]
    if not kinds:
        raise ValueError(f"name at least one of: {', '.join(KINDS)}")
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"{k!r} is not a channel kind; use {', '.join(KINDS)}")
    return ",".join(sorted(set(kinds)))


def parse_rate(text: str) -> float:
    """``"50/s"``, ``"600/min"``, ``"50"`` (per second) → recipients per second."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*([a-z]+))?\s*", text.lower())
    if not m or m.group(2) not in (None, *_UNITS):
        raise ValueError(f"{text!r} is not a rate; write e.g. 50/s, 600/min or 1000/h")
    value = float(m.group(1))
    if value <= 0:
        raise ValueError("a rate must be more than zero")
    return value / _UNITS[m.group(2) or "s"]


def parse_quota(text: str) -> int:
    """``"10000/day"`` or ``"10000"`` → recipients per day."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:/\s*(d|day))?\s*", text.lower())
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a daily quota; write e.g. 10000/day")
    return int(m.group(1))


def format_rate(rate: float | None) -> str:
    if rate is None:
        return "unlimited"
    return f"{rate:g}/s" if rate >= 1 else f"{rate * 60:g}/min"


class RateLimiter:
    """A token bucket per app. A request larger than the bucket is let through when the bucket is full
    and leaves it in debt, so a big batch is never refused forever — it just waits its turn."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # app id → (tokens, when)

    def take(self, app: App, n: int) -> None:
        if app.rate is None or n <= 0:
            return
        burst = max(app.rate, 1.0)
        now = self._clock()
        tokens, then = self._buckets.get(app.id, (burst, now))
        tokens = min(burst, tokens + (now - then) * app.rate)
        need = min(float(n), burst)
        if tokens < need:
            self._buckets[app.id] = (tokens, now)
            wait = (need - tokens) / app.rate
            raise RateLimited(
                "rate",
                f"app {app.name!r} may send to {format_rate(app.rate)} recipients; try again in {wait:.1f} s",
                retry_after=wait,
            )
        self._buckets[app.id] = (tokens - n, now)

    def give_back(self, app: App, n: int) -> None:
        """Undo a take whose request was then refused for another reason."""
        if app.rate is None or app.id not in self._buckets:
            return
        tokens, then = self._buckets[app.id]
        self._buckets[app.id] = (tokens + n, then)
