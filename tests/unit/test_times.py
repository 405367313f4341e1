"""The forms a time leaves masd in (masd.core.times)."""

from __future__ import annotations

import datetime as dt

from masd.core import times

T = dt.datetime(2026, 12, 4, 9, 30, 0, 125000, tzinfo=dt.UTC).timestamp()


def test_api_form_is_utc_with_milliseconds_and_z() -> None:
    assert times.utc_iso(T) == "2026-12-04T09:30:00.125Z"


def test_local_iso_carries_the_local_offset_and_names_the_same_instant() -> None:
    text = times.local_iso(T)
    assert text is not None
    assert dt.datetime.fromisoformat(text).timestamp() == T


def test_missing_times_stay_missing() -> None:
    assert times.utc_iso(None) is None
    assert times.local_iso(None) is None
    assert times.local_text(None) == "-"
    assert times.local_text(None, missing="") == ""


def test_wall_clock_text_is_what_mas_tables_expect() -> None:
    local = dt.datetime.fromtimestamp(T)
    assert times.local_text(T) == local.strftime("%Y-%m-%d %H:%M:%S")
    assert times.local_text(dt.datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05"
    assert times.local_datetime(T) == local.replace(microsecond=0)
