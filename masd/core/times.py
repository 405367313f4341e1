"""How masd writes a time for people and programs: one function per form, used by every layer.

Times are epoch seconds everywhere inside masd (ADR 0003). They leave it in three forms: ISO 8601 in UTC
with milliseconds and a ``Z`` for the HTTP API, the socket and webhooks; ISO 8601 with the local offset
for the CLI's JSON; and ``yyyy-MM-dd HH:mm:ss`` local wall-clock text for the CLI's tables, the OA's
``mas`` tables and Excel exports, the form office staff and MAS integrations read.
"""

from __future__ import annotations

import datetime as dt

__all__ = ["local_datetime", "local_iso", "local_text", "utc_iso"]

_UTC = dt.UTC


def utc_iso(t: float | None) -> str | None:
    """``2026-12-04T09:30:00.125Z``: the API form (HTTP, socket, webhooks); None stays None."""
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, _UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local_iso(t: float | None) -> str | None:
    """``2026-12-04T17:30:00.125+08:00``: local time with its offset (the CLI's JSON); None stays None."""
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


def local_datetime(t: float) -> dt.datetime:
    """Local wall-clock time to the second, without a zone (what the OA's DATETIME columns hold)."""
    return dt.datetime.fromtimestamp(t).replace(microsecond=0)


def local_text(t: float | dt.datetime | None, missing: str = "-") -> str:
    """``2026-12-04 17:30:00``: local wall-clock text (CLI tables, MAS tables, exports).

    A ``datetime`` is written as it is (it is already wall-clock time); None becomes ``missing``.
    """
    if t is None:
        return missing
    when = t if isinstance(t, dt.datetime) else dt.datetime.fromtimestamp(t)
    return when.strftime("%Y-%m-%d %H:%M:%S")
