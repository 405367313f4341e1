"""The meeting reply grammar: every way staff answer a notice, in Chinese and English, any width."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from masd.modules.meeting.grammar import DEFAULT_WORDS, Grammar, Intent, Kind

G = Grammar()


@pytest.mark.parametrize(
    "text", ["1", "参加", "是", "确认", "Y", "yes", "YES", " y ", "１", "1 参加", "1参加", "Ｙｅｓ"]
)
def test_attend(text: str) -> None:
    assert G.parse(text).kind is Kind.ATTEND


@pytest.mark.parametrize("text", ["2", "不参加", "否", "N", "no", "２", "2 不参加", "No"])
def test_decline(text: str) -> None:
    assert G.parse(text).kind is Kind.DECLINE


def test_decline_is_never_read_as_attend_although_it_contains_it() -> None:
    assert G.parse("不参加").kind is Kind.DECLINE
    assert G.parse("不参加，出差").text == "出差"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("3 孩子发烧", "孩子发烧"),
        ("请假：孩子发烧", "孩子发烧"),
        ("３　出差在外", "出差在外"),
        ("请假 Sick leave", "Sick leave"),
        ("3", ""),
    ],
)
def test_leave_keeps_the_reason_as_written(text: str, reason: str) -> None:
    assert G.parse(text) == Intent(Kind.LEAVE, reason)


@pytest.mark.parametrize("text", ["签到", "qd", "ＱＤ"])
def test_check_in_words(text: str) -> None:
    assert G.parse(text).kind is Kind.CHECKIN


def test_the_meetings_check_in_code_checks_in() -> None:
    assert G.parse("5678", checkin_codes=["5678"]).kind is Kind.CHECKIN
    assert G.parse("５６７８", checkin_codes=["5678"]).kind is Kind.CHECKIN
    assert G.parse("5678").kind is Kind.COMMENT


@pytest.mark.parametrize(
    ("text", "kind"), [("1 #42", Kind.ATTEND), ("＃42 2", Kind.DECLINE), ("1#42", Kind.ATTEND)]
)
def test_a_meeting_code_is_read_anywhere(text: str, kind: Kind) -> None:
    intent = G.parse(text)
    assert (intent.kind, intent.meeting_code) == (kind, 42)


def test_a_leave_with_a_code_keeps_only_the_reason() -> None:
    assert G.parse("3 #7 生病") == Intent(Kind.LEAVE, "生病", 7)


@pytest.mark.parametrize("text", ["12", "123", "NOW", "yesterday", "好的收到", "？", "", "0", "4"])
def test_anything_else_is_a_comment(text: str) -> None:
    assert G.parse(text).kind is Kind.COMMENT


def test_a_comment_keeps_the_whole_text() -> None:
    assert G.parse("  会议室在哪里？ ").text == "会议室在哪里？"


def test_vocabularies_are_configurable() -> None:
    g = Grammar({Kind.ATTEND: ["到"], Kind.DECLINE: ["不到"]})
    assert g.parse("不到").kind is Kind.DECLINE
    assert g.parse("到").kind is Kind.ATTEND
    assert g.parse("1").kind is Kind.COMMENT


def test_a_word_given_for_two_meanings_is_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        Grammar({Kind.ATTEND: ["好"], Kind.DECLINE: ["好"]})


def _full_width(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " else c) for c in s)


@given(
    st.sampled_from([w for ws in DEFAULT_WORDS.values() for w in ws]),
    st.text(alphabet="病假出差 ", max_size=6),
)
def test_full_width_and_case_never_change_the_meaning(word: str, tail: str) -> None:
    text = f"{word} {tail}"
    assert G.parse(_full_width(text)).kind == G.parse(text).kind == G.parse(text.lower()).kind


@given(st.integers(min_value=4, max_value=10**6))
def test_numbers_other_than_the_three_are_comments(n: int) -> None:
    assert G.parse(str(n)).kind is Kind.COMMENT
