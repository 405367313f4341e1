"""Carrier signatures: what counts as one already in a text, where one is added, that a text never gets
two, and what an operator may configure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from masd.core.signature import carries_signature, check_signature, signed

SIG = "【市政府】"


@pytest.mark.parametrize(
    "text",
    [
        "【市政府】开会",
        "开会【市政府】",
        "开会 【市政府】 ",
        "  【市政府】 开会",
        "【市政府办公室】明天上午九点开会【会务组】",
        "【AB】x",
        "【市人民政府办公室综合科机要室】x",  # 15 characters inside
        "【ACME Corp】meeting at 9",
    ],
)
def test_a_bracketed_name_at_the_start_or_the_end_is_a_signature(text: str) -> None:
    assert carries_signature(text)


@pytest.mark.parametrize(
    "text",
    [
        "明天【会议室】开会",  # inside the text
        "[市政府]开会",  # ASCII brackets
        "开会[市政府]",
        "〖市政府〗开会",
        "开会【市政府】。",  # something follows it: a carrier does not read it as a signature
        "【市】开会",  # one character
        "【】开会",
        "【" + "长" * 17 + "】开会",  # longer than a name
        "【市政\n府】开会",
        "【 市政府】开会",
        "【市政府开会",
        "开会市政府】",
        "【【市政府】开会",  # what is inside the first brackets is not a name
        "",
    ],
)
def test_other_brackets_are_not_a_signature(text: str) -> None:
    assert not carries_signature(text)


def test_a_signature_is_added_at_the_front_or_the_back() -> None:
    assert signed("明天开会", SIG, "front") == "【市政府】明天开会"
    assert signed("明天开会", SIG, "back") == "明天开会【市政府】"


def test_no_signature_configured_leaves_the_text_alone() -> None:
    assert signed("明天开会", "", "front") == "明天开会"


def test_a_text_that_carries_the_same_signature_is_not_signed_twice() -> None:
    assert signed("【市政府】明天开会", SIG, "back") == "【市政府】明天开会"
    assert signed("明天开会【市政府】", SIG, "front") == "明天开会【市政府】"


def test_a_text_that_carries_another_signature_keeps_it_and_gets_no_second() -> None:
    assert signed("明天开会【会务组】", SIG, "front") == "明天开会【会务组】"


def test_a_bracket_inside_the_text_does_not_keep_the_signature_off() -> None:
    assert signed("明天在【三楼会议室】开会", SIG, "front") == "【市政府】明天在【三楼会议室】开会"


texts = st.text(alphabet=st.sampled_from("开会【】 \n[]a1。市政府"), max_size=30) | st.text(max_size=30)
signatures = st.text(
    alphabet=st.characters(blacklist_categories=("C", "Z"), blacklist_characters="【】"),
    min_size=2,
    max_size=16,
).map(lambda name: f"【{name}】")
positions = st.sampled_from(["front", "back"])


@given(texts, signatures, positions)
def test_signing_twice_is_signing_once_and_the_result_carries_a_signature(
    text: str, signature: str, position: str
) -> None:
    check_signature(signature)
    once = signed(text, signature, position)  # type: ignore[arg-type]
    assert carries_signature(once)
    assert signed(once, signature, position) == once  # type: ignore[arg-type]
    assert once in (text, signature + text, text + signature)


@given(texts, signatures, positions)
def test_a_text_is_signed_exactly_when_it_carries_none(text: str, signature: str, position: str) -> None:
    assert (signed(text, signature, position) == text) == carries_signature(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["【市政府办公室】", " 【市政府】 ", "【ACME Corp】"])
def test_an_operators_signature_in_full_width_brackets_is_accepted_stripped(value: str) -> None:
    assert check_signature(value) == value.strip()


@pytest.mark.parametrize(
    "value",
    [
        "市政府",
        "[市政府]",
        "【市】",
        "【市政\n府】",
        "【" + "长" * 17 + "】",
        "【市】【政府】",
        "【】",
        "】【",
    ],
)
def test_anything_else_is_refused_saying_what_is_expected(value: str) -> None:
    with pytest.raises(ValueError) as e:
        check_signature(value)
    assert "full-width brackets" in str(e.value) and "【市政府办公室】" in str(e.value)
