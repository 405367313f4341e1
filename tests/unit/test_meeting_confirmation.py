"""The confirmation of an answer recorded: it says what was recorded, for which meeting, and how to
correct it."""

from __future__ import annotations

from masd.modules.meeting.grammar import Intent, Kind
from masd.modules.meeting.service import confirmation

MEETING = {"title": "周一例会", "organiser": "办公室"}


def test_an_attend_says_how_to_decline_or_take_leave_instead() -> None:
    assert (
        confirmation(MEETING, Intent(Kind.ATTEND))
        == "已记录：参加「周一例会」。如有误请回复2不参加、3请假+原因。"
    )


def test_a_decline_says_how_to_attend_or_take_leave_instead() -> None:
    assert (
        confirmation(MEETING, Intent(Kind.DECLINE))
        == "已记录：不参加「周一例会」。如有误请回复1参加、3请假+原因。"
    )


def test_a_leave_repeats_its_reason() -> None:
    assert (
        confirmation(MEETING, Intent(Kind.LEAVE, "孩子生病"))
        == "已记录：请假（孩子生病）「周一例会」。如有误请回复1参加、2不参加。"
    )


def test_a_note_after_an_answer_is_repeated() -> None:
    assert confirmation(MEETING, Intent(Kind.ATTEND, "but late")).startswith("已记录：参加（but late）「")


def test_a_long_reason_is_cut_in_the_sms() -> None:
    text = confirmation(MEETING, Intent(Kind.LEAVE, "出" * 200))
    assert "出" * 39 + "…）" in text and "出" * 40 not in text


def test_a_late_answer_says_so() -> None:
    assert "「周一例会」（已过回复截止时间）。" in confirmation(MEETING, Intent(Kind.DECLINE), late=True)


def test_a_check_in_says_whom_to_tell_if_it_is_wrong() -> None:
    assert confirmation(MEETING, Intent(Kind.CHECKIN)) == "已签到「周一例会」。如有误请联系办公室。"
    assert (
        confirmation({"title": "党组会"}, Intent(Kind.CHECKIN))
        == "已签到「党组会」。如有误请联系会议组织者。"
    )
