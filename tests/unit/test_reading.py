"""The core's reply normalisation: what every reply and every configured word is compared as."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from masd.core import reading
from masd.core import replies as routing

# Every code point, with lone surrogates, control and zero-width characters and emoji drawn often:
# what a handset may send.
ANY_TEXT = st.text(
    st.one_of(
        st.characters(exclude_categories=()),
        st.sampled_from(["\ud800", "\udfff", "\x00", "\x1b", "\u200b", "\ufe0f", "👍", "參", "１", "？"]),
    ),
    max_size=200,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＴＤ", "td"),  # full width
        ("１　参加 ", "1 参加"),  # full-width digit and ideographic space
        ("Yes", "yes"),
        ("參加", "参加"),  # Traditional
        ("請假，孩子發燒", "请假,孩子发烧"),
        ("退訂", "退订"),
        ("Straße", "strasse"),  # case folded, not only lowered
        ("can’t come", "can't come"),  # a phone keyboard's apostrophe
    ],
)
def test_width_script_and_case_are_normalised(text: str, expected: str) -> None:
    assert reading.normalise(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("參加👍", "参加"),
        ("👍 参加 🙏", "参加"),
        ("1️⃣", "1"),  # a keycap emoji is its digit
        ("参加✓谢谢", "参加 谢谢"),  # a symbol between words separates them
        ("\u200b參\u200d加", "参加"),  # zero-width characters
    ],
)
def test_emoji_and_symbols_are_dropped_or_separate(text: str, expected: str) -> None:
    assert reading.normalise(text) == expected


def test_spaces_collapse_and_the_ends_are_trimmed() -> None:
    assert reading.normalise("  1 \t\n 参加  ") == "1 参加"


@pytest.mark.parametrize("text", ["参\x00加", "参\ud800加", "参\x1b加", "\udfff参加\x7f"])
def test_control_characters_and_lone_surrogates_are_removed(text: str) -> None:
    assert reading.normalise(text) == "参加"


def test_clean_keeps_the_reply_as_it_came_but_storable() -> None:
    assert reading.clean("请假\n孩子\ud800发烧\x00") == "请假\n孩子发烧"


def test_the_written_form_keeps_case_and_script() -> None:
    n = reading.normalised("請假 Sick Leave")
    assert n.text == "请假 sick leave"
    assert n.as_written(3, len(n.text)) == "Sick Leave"
    assert n.as_written(0, 2) == "請假"


@given(ANY_TEXT)
def test_normalise_never_raises_and_is_idempotent(text: str) -> None:
    once = reading.normalise(text)
    assert reading.normalise(once) == once
    assert once == once.strip() and "  " not in once


@given(ANY_TEXT)
def test_the_written_form_lines_up_with_the_normalised_one(text: str) -> None:
    n = reading.normalised(text)
    assert len(n.index) == len(n.text)
    assert all(0 <= i < len(n.written) for i in n.index)


def test_a_word_two_meanings_share_once_normalised_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="參加"):
        reading.vocabulary({"attend": ["参加"], "decline": ["參加"]})
    with pytest.raises(ValueError, match="ＴＤ"):
        reading.vocabulary({"a": ["td"], "b": ["ＴＤ"]})


def test_a_word_that_is_nothing_once_normalised_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing"):
        reading.vocabulary({"attend": ["👍"]})


def test_the_keyword_rules_read_as_the_meeting_module_does() -> None:
    rules = {"TD": 7, "退订": 8}
    for text in ("TD", "td", "ＴＤ", "ｔｄ 谢谢"):
        assert routing.by_keyword(text, rules) == routing.Route(7, routing.KEYWORD, "")
    for text in ("退订", "退訂", "退訂。"):
        assert routing.by_keyword(text, rules) == routing.Route(8, routing.KEYWORD, "")


def test_a_reader_reads_any_vocabulary_with_the_same_rules() -> None:
    r = reading.Reader({"approve": ["同意", "1"], "reject": ["驳回", "2"]}, yes="approve", no="reject")
    assert r.read("同意，谢谢") == reading.Reading("approve", True, "", None)
    assert r.read("不能同意") == reading.Reading("reject", True, "", None)
    assert r.read("同意吗？").sure is False
    assert r.read("可能同意").sure is False
