"""What an app may do, and the checks every interface runs before accepting its work.

An app has permissions (which kinds of channel it may use: ``sms``, ``voice``), a rate (recipients per
second, with a burst of one second's worth) and a daily quota (recipients per local calendar day). The
checks are here, in the core, so that HTTP, the socket, DB polling and the modules refuse alike.
Scopes name the parts of the API an app may use (``contacts:read``, ``contacts:write``, …); an app
without a grant is refused by :meth:`App.require`.
Rate and quota count recipients, not requests: a notice to 300 people costs 300, as the carrier bills.
An app may also say how many times a delivery whose receipt failed is sent again (``resend``), instead
of its channel's ``resend_undelivered``, and sign its texts with its own carrier signature
(``signature``, :mod:`masd.core.signature`), which wins over its channels'.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DEFAULT_SCOPES",
    "KINDS",
    "SCOPES",
    "App",
    "Forbidden",
    "QuotaExceeded",
    "RateLimited",
    "burst_of",
    "parse_channels",
    "parse_quota",
    "parse_rate",
    "parse_resend",
    "parse_scopes",
]

KINDS = ("sms", "voice")
# The parts of the API an app may be granted. Only the contacts scopes are enforced so far; the others
# are stored so that an operator's grants are in place when their routes check them.
SCOPES = ("messages", "replies", "contacts:read", "contacts:write", "meetings")
# What an app has unless told otherwise: everything but the address book, which holds other people's
# names and numbers.
DEFAULT_SCOPES = frozenset({"messages", "replies", "meetings"})
# A scope that brings others with it: whoever may change the address book may read it.
_IMPLIES = {"contacts:write": frozenset({"contacts:read"})}
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

    def __init__(
        self, field: str, reason: str, *, retry_after: float | None = None, message_index: int | None = None
    ) -> None:
        self.field = field
        self.reason = reason
        self.retry_after = retry_after
        self.message_index = message_index  # in a batch: the position of the message refused
        super().__init__(f"{field}: {reason}")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "reason": self.reason}
        if self.message_index is not None:
            out["message_index"] = self.message_index
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
    scopes: frozenset[str] = DEFAULT_SCOPES  # with the scopes they imply
    resend: int | None = None  # resends after a failed receipt; None: the channel's resend_undelivered
    signature: str | None = None  # 【单位名】 its SMS texts carry; None: the channel's

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> App:
        ch = row.get("channels")
        stored = row.get("scopes")  # NULL: a row from before scopes, which has the default
        granted = DEFAULT_SCOPES if stored is None else frozenset(s for s in stored.split(",") if s)
        return cls(
            id=int(row["id"]),
            name=str(row["name"]),
            channels=frozenset(ch.split(",")) if ch else None,
            rate=row.get("rate"),
            quota_per_day=row.get("quota_per_day"),
            extension=row.get("extension") or None,
            webhook_url=row.get("webhook_url") or None,
            webhook_secret=row.get("webhook_secret") or None,
            scopes=_with_implied(granted),
            resend=row.get("resend"),
            signature=row.get("signature") or None,
        )

    def check_kind(self, kind: str) -> None:
        if self.channels is not None and kind not in self.channels:
            raise Forbidden(
                "channel",
                f"app {self.name!r} may not send {kind}; it may use: {', '.join(sorted(self.channels))} "
                f"(change with 'masd apps set {self.name} --channels …')",
            )

    def require(self, scope: str) -> None:
        """Refuse (:class:`Forbidden`, field ``scope``) unless the app was granted ``scope``."""
        if scope not in SCOPES:
            raise ValueError(f"{scope!r} is not a scope; the scopes are {', '.join(SCOPES)}")
        if scope not in self.scopes:
            raise Forbidden(
                "scope",
                f"app {self.name!r} lacks the scope {scope!r}; grant it with: "
                f"masd apps set {shlex.quote(self.name)} --scope +{scope}",
            )


def _with_implied(scopes: frozenset[str]) -> frozenset[str]:
    return scopes.union(*(_IMPLIES.get(s, ()) for s in scopes))


def parse_scopes(text: str, current: str | None = None) -> str:
    """What an operator typed → the stored form (sorted, comma-separated, implied scopes included).

    ``"contacts:read,messages"`` is the whole set; ``"+contacts:write,-meetings"`` changes ``current``
    (a stored value; None is the default set); ``"none"`` is no scope at all and ``"default"`` the
    default set. Taking a scope away takes away the ones that imply it. Raise ValueError naming an
    unknown scope and listing the valid ones.
    """
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    if words in (["none"], ["default"]):
        return ",".join(sorted(DEFAULT_SCOPES)) if words == ["default"] else ""
    if not words:
        raise ValueError(f"name at least one scope of: {', '.join(SCOPES)} (or 'none')")
    edits = [w[0] for w in words if w[0] in "+-"]
    if edits and len(edits) != len(words):
        raise ValueError("either list the scopes or change them with +scope / -scope, not both")
    for w in words:
        name = w[1:].strip() if edits else w
        if name not in SCOPES:
            raise ValueError(f"{name!r} is not a scope; use {', '.join(SCOPES)}")
    if not edits:
        return ",".join(sorted(_with_implied(frozenset(words))))
    have = set(DEFAULT_SCOPES if current is None else (s for s in current.split(",") if s))
    for w in words:
        name = w[1:].strip()
        if w[0] == "+":
            have |= _with_implied(frozenset({name}))
        else:
            have -= {name, *(s for s, implied in _IMPLIES.items() if name in implied)}
    return ",".join(sorted(_with_implied(frozenset(have))))


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


MAX_RESEND = 10  # as a channel's resend_undelivered


def parse_resend(text: str) -> int:
    """``"2"`` → resends after a failed receipt, 0 to :data:`MAX_RESEND`."""
    t = text.strip()
    if not t.isdigit() or int(t) > MAX_RESEND:
        raise ValueError(f"{text!r} is not a number of resends; give 0 to {MAX_RESEND}")
    return int(t)


def format_rate(rate: float | None) -> str:
    if rate is None:
        return "unlimited"
    return f"{rate:g}/s" if rate >= 1 else f"{rate * 60:g}/min"


def burst_of(rate: float) -> float:
    """How many recipients an app with this rate may send at once: one second's worth, at least one."""
    return max(rate, 1.0)
