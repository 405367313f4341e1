"""App limits: parsing what operators type, the kinds and scopes an app may use, and the size of
the rate's burst (the bucket itself is charged with the store: tests/store/test_limits.py)."""

from __future__ import annotations

import pytest

from masd.core.apps import (
    DEFAULT_SCOPES,
    SCOPES,
    App,
    Forbidden,
    burst_of,
    parse_channels,
    parse_quota,
    parse_rate,
    parse_scopes,
)


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("50/s", 50.0), ("50", 50.0), ("600/min", 10.0), ("3600/h", 1.0), (" 2.5 / s ", 2.5), ("30/m", 0.5)],
)
def test_rates_are_read_in_recipients_per_second(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["fast", "50/day", "-1/s", "0/s", "/s", ""])
def test_a_rate_that_is_not_one_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=r"rate|more than zero"):
        parse_rate(text)


def test_quotas_are_per_day() -> None:
    assert parse_quota("10000/day") == 10000
    assert parse_quota("500") == 500
    with pytest.raises(ValueError, match="10000/day"):
        parse_quota("10000/month")


def test_channel_kinds_are_checked_and_normalised() -> None:
    assert parse_channels("voice, SMS") == "sms,voice"
    with pytest.raises(ValueError, match="'fax' is not a channel kind"):
        parse_channels("sms,fax")


def test_an_app_without_the_kind_is_forbidden_and_told_which_it_may_use() -> None:
    app = App.from_row({"id": 1, "name": "oa", "channels": "voice"})
    app.check_kind("voice")
    with pytest.raises(Forbidden) as e:
        app.check_kind("sms")
    assert e.value.status == 403 and e.value.field == "channel" and "voice" in e.value.reason


def test_an_app_without_channels_may_use_every_kind() -> None:
    app = App.from_row({"id": 1, "name": "oa", "channels": None})
    app.check_kind("sms")
    app.check_kind("voice")


def test_the_burst_is_one_seconds_worth_and_at_least_one_recipient() -> None:
    assert burst_of(10.0) == 10.0
    assert burst_of(0.5) == 1.0  # 30/min: one at a time


# ----- scopes -------------------------------------------------------------------------------------------


def test_scopes_are_stored_sorted_without_repeats() -> None:
    assert parse_scopes(" Messages, contacts:read,messages ") == "contacts:read,messages"


def test_contacts_write_brings_contacts_read_with_it() -> None:
    assert parse_scopes("contacts:write") == "contacts:read,contacts:write"


def test_an_unknown_scope_is_refused_naming_it_and_the_valid_ones() -> None:
    with pytest.raises(ValueError) as e:
        parse_scopes("messages,contacts")
    assert "'contacts' is not a scope" in str(e.value)
    assert all(s in str(e.value) for s in SCOPES)


def test_no_scope_named_is_refused_but_none_means_none_and_default_the_default() -> None:
    with pytest.raises(ValueError, match="at least one"):
        parse_scopes(" , ")
    assert parse_scopes("none") == ""
    assert parse_scopes("default") == "meetings,messages,replies"


def test_plus_and_minus_change_the_current_scopes() -> None:
    assert parse_scopes("+contacts:read,-meetings", "meetings,messages") == "contacts:read,messages"
    assert parse_scopes("+contacts:write", None) == "contacts:read,contacts:write,meetings,messages,replies"


def test_taking_a_scope_away_takes_away_the_scopes_that_imply_it() -> None:
    assert parse_scopes("-contacts:read", "contacts:read,contacts:write,messages") == "messages"


def test_a_list_and_changes_cannot_be_mixed() -> None:
    with pytest.raises(ValueError, match="not both"):
        parse_scopes("messages,+contacts:read")


def test_an_app_row_without_scopes_has_the_default_which_leaves_out_the_address_book() -> None:
    app = App.from_row({"id": 1, "name": "oa", "scopes": None})
    assert app.scopes == DEFAULT_SCOPES == {"messages", "replies", "meetings"}
    assert App(1, "oa").scopes == DEFAULT_SCOPES


def test_an_app_row_with_no_scopes_has_none() -> None:
    assert App.from_row({"id": 1, "name": "oa", "scopes": ""}).scopes == frozenset()


def test_an_app_without_the_scope_is_forbidden_and_told_how_to_grant_it() -> None:
    app = App.from_row({"id": 1, "name": "oa", "scopes": "messages"})
    with pytest.raises(Forbidden) as e:
        app.require("contacts:read")
    assert e.value.status == 403 and e.value.field == "scope"
    assert e.value.reason == (
        "app 'oa' lacks the scope 'contacts:read'; grant it with: masd apps set oa --scope +contacts:read"
    )


def test_an_app_with_contacts_write_may_read_the_address_book_too() -> None:
    app = App.from_row({"id": 1, "name": "oa", "scopes": "contacts:write"})
    app.require("contacts:read")
    app.require("contacts:write")


def test_an_app_with_contacts_read_may_not_change_the_address_book() -> None:
    app = App.from_row({"id": 1, "name": "oa", "scopes": "contacts:read"})
    app.require("contacts:read")
    with pytest.raises(Forbidden, match="'contacts:write'"):
        app.require("contacts:write")


def test_requiring_a_scope_that_does_not_exist_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="is not a scope"):
        App(1, "oa").require("contact:read")
