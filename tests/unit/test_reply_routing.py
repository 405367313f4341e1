"""Reply routing's pure parts: reading the extension, the owner of an extension, keyword rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from masd.core import replies as routing


def test_the_extension_is_what_follows_the_longest_service_number() -> None:
    numbers = ["106570001", "1065700012345"]
    assert routing.extension_of("106570001234542", numbers) == "42"
    assert routing.extension_of("1065700019", numbers) == "9"
    assert routing.extension_of("1065700012345", numbers) == ""
    assert routing.extension_of("10690000", numbers) == ""


def test_the_longest_owned_extension_wins_and_the_rest_is_kept() -> None:
    owners = {"4": 1, "42": 2}
    r = routing.by_extension("42137", owners)
    assert r == routing.Route(2, routing.EXTENSION, "137")
    assert routing.by_extension("4", owners) == routing.Route(1, routing.EXTENSION, "")
    assert routing.by_extension("5", owners) is None
    assert routing.by_extension("", owners) is None


def test_keywords_match_the_first_word_in_any_width_and_case() -> None:
    rules = {"TD": 7, "CX": 8}
    assert routing.by_keyword("ｔｄ", rules) == routing.Route(7, routing.KEYWORD, "")
    assert routing.by_keyword("  cx 2026 ", rules) == routing.Route(8, routing.KEYWORD, "")
    assert routing.by_keyword("TDX", rules) is None  # a longer word is another word
    assert routing.by_keyword("1 参加", rules) is None


def test_a_chinese_keyword_may_begin_a_reply_without_a_space() -> None:
    rules = {"会议": 3, "会议室": 4}
    assert routing.by_keyword("会议1", rules) == routing.Route(3, routing.KEYWORD, "")
    assert routing.by_keyword("会议室预订", rules) == routing.Route(4, routing.KEYWORD, "")


def test_full_width_digits_spaces_and_case_are_normalised() -> None:
    assert routing.normalise_text("１　参加 ") == "1 参加"
    assert routing.normalise_text("Yes") == "YES"


def test_senders_are_compared_as_deliveries_store_recipients() -> None:
    assert routing.normalise_sender("+8613800138000") == "13800138000"
    assert routing.normalise_sender("8613800138000") == routing.normalise_sender("13800138000")


@given(
    st.text(alphabet="0123456789", max_size=12),
    st.dictionaries(st.text("0123456789", min_size=1, max_size=4), st.integers(1, 9)),
)
def test_an_extension_match_always_names_an_owner_whose_extension_begins_it(
    ext: str, owners: dict[str, int]
) -> None:
    r = routing.by_extension(ext, owners)
    if r is None:
        assert not any(ext.startswith(o) for o in owners)
    else:
        owned = ext[: len(ext) - len(r.extension)]
        assert owners[owned] == r.app_id and owned + r.extension == ext
