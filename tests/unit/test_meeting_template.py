"""Notice templates: placeholders are filled; anything that could fail later is refused when the meeting
is made, naming the template."""

from __future__ import annotations

import pytest

from masd.core.gateway import Rejected
from masd.modules.meeting.service import DEFAULT_TEMPLATE, check_template, check_time, local_time, render

MEETING = {
    "id": 42,
    "title": "防汛工作部署会",
    "starts_at": 1_900_000_000.0,
    "ends_at": 1_900_003_600.0,
    "place": "三楼会议室",
    "reply_deadline": None,
}


def test_the_default_template_names_the_attendee_meeting_time_place_and_code() -> None:
    text = render(DEFAULT_TEMPLATE, MEETING, {"name": "张三"})
    assert text.startswith("张三您好：定于") and "三楼会议室" in text and "防汛工作部署会" in text
    assert "#42" in text and "1参加" in text


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("{nme}您好", "unknown placeholder {nme}"),
        ("会议{", "not a valid template"),
        ("{name:>99999999}", "takes no format"),
        ("{title!r}", "takes no format"),
        ("x" * 2001, "the maximum is 2000"),
    ],
)
def test_a_template_that_would_fail_or_explode_is_refused(template: str, why: str) -> None:
    with pytest.raises(Rejected) as e:
        check_template(template)
    assert e.value.field == "template" and why in e.value.reason


def test_literal_braces_are_allowed_doubled() -> None:
    check_template("{{内部}} {title}")
    assert render("{{内部}} {title}", MEETING) == "{内部} 防汛工作部署会"


def test_times_must_be_ahead_but_not_absurdly() -> None:
    now = 1_800_000_000.0
    check_time("starts_at", now + 60, now=now)
    with pytest.raises(Rejected, match="in the past"):
        check_time("starts_at", now - 1, now=now)
    with pytest.raises(Rejected, match="years ahead"):
        check_time("starts_at", 253_402_300_799.0, now=now)  # 9999-12-31


def test_a_time_that_cannot_be_shown_renders_as_a_question_mark() -> None:
    assert local_time(1e20) == "?"
