"""The meeting reply grammar: every way staff answer a notice, in Chinese and English, any width or
script — and every way a reply that answers nothing must not be recorded as an answer.

tests/unit/test_reply_corpus.py reads a corpus of several hundred replies; these are the rules one by
one."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from masd.config import ConfigError, load_config
from masd.modules.meeting.grammar import DEFAULT_WORDS, Grammar, Intent, Kind

G = Grammar()


@pytest.mark.parametrize(
    "text", ["1", "参加", "是", "确认", "Y", "yes", "YES", " y ", "１", "1 参加", "1参加", "Ｙｅｓ"]
)
def test_attend(text: str) -> None:
    assert G.parse(text).kind is Kind.ATTEND
    assert G.read(text).sure


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


# ----- issue 16: replies as people write them ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wrong"),
    [
        ("参加不了", Kind.ATTEND),
        ("确认不参加", Kind.ATTEND),
        ("是否需要带材料？", Kind.ATTEND),
        ("1点开始吗？", Kind.ATTEND),
        ("2楼会议室吗？", Kind.DECLINE),
        ("3楼哪个会议室？", Kind.LEAVE),
        ("No problem", Kind.DECLINE),
        ("签到失败", Kind.CHECKIN),
    ],
)
def test_the_answers_recorded_that_were_not_given_are_no_longer_recorded(text: str, wrong: Kind) -> None:
    intent = G.read(text)
    assert not (intent.sure and intent.kind is wrong)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("我参加", Kind.ATTEND),
        ("好的，参加", Kind.ATTEND),
        ("收到，准时参加", Kind.ATTEND),
        ("本人参加", Kind.ATTEND),
        ("张三参加", Kind.ATTEND),
        ("不能参加", Kind.DECLINE),
        ("无法参加", Kind.DECLINE),
        ("去不了", Kind.DECLINE),
        ("来不了", Kind.DECLINE),
        ("参加不了", Kind.DECLINE),
        ("确认不参加", Kind.DECLINE),
        ("我请假，孩子生病", Kind.LEAVE),
        ("有事请假", Kind.LEAVE),
        ("已签到", Kind.CHECKIN),
    ],
)
def test_the_clear_answers_that_were_missed_are_read(text: str, kind: Kind) -> None:
    assert G.read(text) == Intent(kind, G.read(text).text, None, True)


@pytest.mark.parametrize(
    ("text", "kind", "reason"),
    [
        ("參加", Kind.ATTEND, ""),
        ("不參加", Kind.DECLINE, ""),
        ("請假 出差", Kind.LEAVE, "出差"),
        ("簽到", Kind.CHECKIN, ""),
        ("請假：孩子發燒", Kind.LEAVE, "孩子發燒"),  # the reason as the sender wrote it
    ],
)
def test_traditional_script_reads_as_simplified(text: str, kind: Kind, reason: str) -> None:
    assert G.read(text) == Intent(kind, reason, None, True)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("我请假，孩子生病", "孩子生病"),
        ("有事请假", "有事"),
        ("请假，谢谢", ""),
        ("请假，上午参加不了", "上午"),
    ],
)
def test_a_leave_keeps_its_reason_without_the_politeness(text: str, reason: str) -> None:
    assert G.read(text) == Intent(Kind.LEAVE, reason, None, True)


@pytest.mark.parametrize(
    "text",
    ["参加吗？", "参加?", "是不是要参加", "几点开始", "去不去", "会议在哪", "能不能请假", "签到码是多少"],
)
def test_a_question_is_never_an_answer(text: str) -> None:
    assert not G.read(text).sure


@pytest.mark.parametrize(
    "text",
    ["不参加", "不能参加", "无法出席", "没法参加", "去不了", "来不了", "不参加了", "确认不参加", "不去了"],
)
def test_a_negation_is_never_read_as_attending(text: str) -> None:
    assert G.read(text).kind is Kind.DECLINE


@pytest.mark.parametrize(
    "text", ["没参加", "不是不参加", "还没签到", "不用请假", "不1", "not yes", "不 参加"]
)
def test_a_negation_that_makes_no_refusal_is_unsure(text: str) -> None:
    assert not G.read(text).sure


@pytest.mark.parametrize("text", ["1点", "2楼", "3个人参加", "1号会议室", "12", "3点半", "下午3点", "3 pm"])
def test_digits_that_count_something_are_not_answers(text: str) -> None:
    assert not G.read(text).sure


@pytest.mark.parametrize("text", ["1 2", "参加 不参加", "1不参加", "参加，请假", "yes no"])
def test_two_answers_that_disagree_are_unsure(text: str) -> None:
    assert not G.read(text).sure


def test_a_leave_absorbs_the_refusal_it_implies() -> None:
    assert G.read("请假，孩子生病去不了") == Intent(Kind.LEAVE, "孩子生病", None, True)


@pytest.mark.parametrize("text", ["可能参加", "尽量参加", "如果有空就参加", "能参加就参加", "参加吧"])
def test_a_hedge_or_a_condition_is_unsure(text: str) -> None:
    assert not G.read(text).sure


@pytest.mark.parametrize(
    "text", ["派张三参加", "我和张三参加", "帮张三签到", "他请假了", "领导参加", "3人请假"]
)
def test_an_answer_for_someone_else_is_unsure(text: str) -> None:
    assert not G.read(text).sure


@pytest.mark.parametrize(
    ("text", "kind", "note"),
    [
        ("yes but late", Kind.ATTEND, "but late"),
        ("can't come", Kind.DECLINE, ""),
        ("I will attend", Kind.ATTEND, ""),
        ("not attending", Kind.DECLINE, ""),
        ("参加，但会晚到十分钟", Kind.ATTEND, "但会晚到十分钟"),
    ],
)
def test_english_and_notes_are_read_in_context(text: str, kind: Kind, note: str) -> None:
    assert G.read(text) == Intent(kind, note, None, True)


@pytest.mark.parametrize("text", ["No problem", "no idea", "maybe", "Sure", "ok"])
def test_english_that_answers_nothing_is_unsure(text: str) -> None:
    assert not G.read(text).sure


@pytest.mark.parametrize("text", ["签到失败", "签到不了", "未签到", "签到表", "签到 1234"])
def test_a_failed_or_foreign_check_in_is_unsure(text: str) -> None:
    assert not G.read(text, checkin_codes=["5678"]).sure


def test_an_unsure_reading_keeps_the_guess_and_the_whole_reply() -> None:
    assert G.read(" 参加吗？ #42") == Intent(Kind.ATTEND, "参加吗？ #42", 42, False)


def test_parse_gives_an_unsure_reading_as_a_comment_so_that_nothing_unsure_is_recorded() -> None:
    assert G.parse("参加吗？") == Intent(Kind.COMMENT, "参加吗？", None, False)
    assert G.parse("参加") == G.read("参加")


def test_an_intent_made_without_sure_is_sure() -> None:
    assert Intent(Kind.ATTEND).sure


# ----- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "参" * 1000,
        "1" + " 参加" * 400,
        "\x00",
        "1\x00",
        "参加\x1b",
        "\ud800",
        "参加\ud800",
        "参加\ufffd",
    ],
)
def test_bad_input_is_an_unsure_comment_never_an_error(text: str) -> None:
    intent = G.read(text)
    assert (intent.kind, intent.sure) == (Kind.COMMENT, False)


def test_bad_input_is_kept_as_it_came_less_what_cannot_be_stored() -> None:
    assert G.read("参加\ud800吗").text == "参加吗"


@given(st.text(st.characters(exclude_categories=()), max_size=400), st.lists(st.text(max_size=6), max_size=3))
def test_reading_never_raises(text: str, codes: list[str]) -> None:
    intent = G.read(text, checkin_codes=codes)
    assert isinstance(intent.sure, bool)
    assert not (intent.sure and intent.kind is Kind.COMMENT)


# ----- the vocabulary ----------------------------------------------------------------------------------


def test_configured_words_are_normalised_like_replies() -> None:
    g = Grammar({Kind.ATTEND: ["參會"], Kind.DECLINE: ["ＮＯＰＥ"]})
    assert g.read("参会").kind is Kind.ATTEND
    assert g.read("nope").kind is Kind.DECLINE


def test_a_configured_kind_replaces_only_its_own_defaults() -> None:
    g = Grammar({Kind.ATTEND: ["到"]})
    assert g.read("1").sure is False
    assert g.read("2").kind is Kind.DECLINE


def test_a_word_two_kinds_share_once_normalised_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="參加"):
        Grammar({Kind.DECLINE: ["參加"]})  # 参加 attends by default
    with pytest.raises(ValueError, match="ＯＫ"):
        Grammar({Kind.ATTEND: ["ok"], Kind.DECLINE: ["ＯＫ"]})


def test_a_configuration_giving_two_kinds_one_word_stops_at_start_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "masd.toml"
    path.write_text('[meeting.words]\ndecline = ["2", "參加"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="參加"):
        load_config(path, env={})


def test_a_configuration_of_reply_words_in_any_script_and_width_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "masd.toml"
    path.write_text('[meeting.words]\nattend = ["１", "參會"]\n', encoding="utf-8")
    assert load_config(path, env={}).meeting.words["attend"] == ["１", "參會"]
