"""Specification of masd.core.split: choosing the encoding, cutting text into segments, encoding them."""

from __future__ import annotations

import pickle
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masd.core import gsm7
from masd.core.split import (
    Concat,
    Plan,
    TooManySegments,
    choose_encoding,
    count_segments,
    encode,
    plan,
    reassemble,
    single_segment,
)
from masd_adapters.base import OutboundSegment

CONCATS: tuple[Concat, ...] = get_args(Concat)
SPLIT_CONCATS: tuple[Concat, ...] = ("udh8", "udh16", "sar")
PART_SEPTETS: dict[Concat, int] = {"udh8": 153, "udh16": 152, "sar": 153, "payload": 153}
PART_UNITS: dict[Concat, int] = {"udh8": 67, "udh16": 66, "sar": 67, "payload": 67}
UDH_LENGTH: dict[Concat, int] = {"udh8": 6, "udh16": 7}

ESCAPED = "^{}\\[~]|€\f"
GSM_BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡AZÄÖÑÜ§¿azäöñüà"
EMOJI = "😀🎉👍🏽🀄𠀀"  # astral: each is a UTF-16 surrogate pair (𠀀 is CJK Extension B)
CJK = "会议通知请准时参加中文短信测试"


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-be")) // 2


# Long runs of one-unit characters push the interesting characters onto segment boundaries.
def _padded(pad: str, limit: int, tail: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda n, rest: pad * n + rest, st.integers(min_value=0, max_value=limit), tail)


any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=400) | st.text(
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF) | st.characters(max_codepoint=0x7F),
    max_size=200,
)
gsm_biased_text = _padded(
    "a", 320, st.text(st.sampled_from(GSM_BASIC) | st.sampled_from(ESCAPED), max_size=200)
) | st.text(st.sampled_from(ESCAPED), max_size=400)
cjk_emoji_text = _padded(
    "中", 140, st.text(st.sampled_from(CJK) | st.sampled_from(EMOJI) | st.sampled_from(ESCAPED), max_size=120)
) | st.text(st.sampled_from(EMOJI), max_size=200)

PROPERTY = settings(max_examples=300, deadline=None)


def body_of(segment: OutboundSegment) -> bytes:
    message = segment.short_message
    return message[1 + message[0] :] if segment.udh else message


def check_segments(text: str, concat: Concat) -> None:
    """Every invariant the splitter promises, for one text and one concatenation method."""
    the_plan = plan(text, concat=concat, max_segments=255)
    assert "".join(the_plan.parts) == text
    assert len(the_plan.parts) == count_segments(text, concat)
    segments = encode(the_plan, concat=concat, ref=0x1234)
    assert reassemble(segments) == text

    if concat == "payload":
        assert len(segments) == 1
        return
    assert len(segments) == len(the_plan.parts)
    single = len(segments) == 1
    for segment in segments:
        body = body_of(segment)
        if the_plan.encoding == "gsm7":
            limit = 160 if single else PART_SEPTETS[concat]
            assert len(body) <= limit
            # On the air the UDH is padded to a septet boundary; header plus body must fit 160 septets.
            header_septets = (8 * (len(segment.short_message) - len(body)) + 6) // 7
            assert header_septets + len(body) <= 160
            assert not body.endswith(b"\x1b") or body.endswith(b"\x1b\x1b")
            assert gsm7.decode_unpacked(body) == the_plan.parts[segment.seq - 1]
        else:
            limit = 70 if single else PART_UNITS[concat]
            assert len(body) // 2 <= limit
            assert len(segment.short_message) <= 140
            first, last = int.from_bytes(body[:2]), int.from_bytes(body[-2:])
            assert not (body and 0xDC00 <= first <= 0xDFFF), "segment starts with a lone low surrogate"
            assert not (body and 0xD800 <= last <= 0xDBFF), "segment ends with a lone high surrogate"
            assert body.decode("utf-16-be") == the_plan.parts[segment.seq - 1]


def check_parts_are_full(text: str, concat: Concat) -> None:
    """Greedy cutting: no part could have taken the next character, so the count is the minimum."""
    the_plan = plan(text, concat=concat, max_segments=255)
    if len(the_plan.parts) == 1:
        return
    cost = gsm7.septet_length if the_plan.encoding == "gsm7" else utf16_units
    limit = (PART_SEPTETS if the_plan.encoding == "gsm7" else PART_UNITS)[concat]
    for part, following in zip(the_plan.parts, the_plan.parts[1:], strict=False):
        assert cost(part + following[0]) > limit


# --- properties ---------------------------------------------------------------------------------------


@PROPERTY
@given(any_text)
def test_any_text_survives_every_concat_method_within_segment_limits(text: str) -> None:
    for concat in CONCATS:
        check_segments(text, concat)


@PROPERTY
@given(gsm_biased_text)
def test_gsm_text_with_escapes_survives_every_concat_method_within_segment_limits(text: str) -> None:
    for concat in CONCATS:
        check_segments(text, concat)
        check_parts_are_full(text, concat)


@PROPERTY
@given(cjk_emoji_text)
def test_cjk_and_emoji_text_survives_every_concat_method_within_segment_limits(text: str) -> None:
    for concat in CONCATS:
        check_segments(text, concat)
        check_parts_are_full(text, concat)


# --- encoding choice ----------------------------------------------------------------------------------


def test_plain_ascii_is_sent_as_gsm7_with_data_coding_0() -> None:
    the_plan = plan("Meeting at 10:00, room 3.")
    assert (choose_encoding("x"), the_plan.encoding, the_plan.data_coding) == ("gsm7", "gsm7", 0)


def test_chinese_text_is_sent_as_ucs2_with_data_coding_8() -> None:
    the_plan = plan("会议通知")
    assert (the_plan.encoding, the_plan.data_coding) == ("ucs2", 8)


def test_section_sign_keeps_text_in_gsm7() -> None:
    assert choose_encoding("§ 4.2") == "gsm7"


def test_backtick_forces_ucs2() -> None:
    # smpplib maps '`' onto 0x5F ('§'), so the handset would show the wrong character.
    assert choose_encoding("run `masd`") == "ucs2"


def test_euro_sign_keeps_text_in_gsm7() -> None:
    assert choose_encoding("5 €") == "gsm7"


# --- GSM 7-bit boundaries -----------------------------------------------------------------------------


def test_160_gsm_characters_fit_one_segment() -> None:
    assert plan("a" * 160).parts == ["a" * 160]


def test_161_gsm_characters_take_two_segments() -> None:
    assert plan("a" * 161).parts == ["a" * 153, "a" * 8]


def test_two_full_parts_of_153_take_exactly_two_segments() -> None:
    assert count_segments("a" * 306) == 2
    assert count_segments("a" * 307) == 3


def test_euro_sign_costs_two_septets_in_the_single_segment_limit() -> None:
    assert count_segments("a" * 158 + "€") == 1
    assert count_segments("a" * 159 + "€") == 2


def test_udh16_parts_hold_152_septets() -> None:
    assert plan("a" * 304, concat="udh16").parts == ["a" * 152] * 2
    assert count_segments("a" * 305, "udh16") == 3
    assert count_segments("a" * 305, "udh8") == 2


def test_sar_parts_hold_153_septets_like_udh8() -> None:
    assert plan("a" * 306, concat="sar").parts == ["a" * 153] * 2


def test_escape_pair_at_a_part_boundary_moves_whole_to_the_next_part() -> None:
    # Regression for smpplib's make_parts, which cuts the encoded bytes and leaves 0x1B dangling.
    text = "a" * 152 + "€" + "b" * 10
    the_plan = plan(text)
    assert the_plan.parts == ["a" * 152, "€" + "b" * 10]
    first = encode(the_plan, concat="udh8", ref=1)[0]
    assert not first.short_message.endswith(b"\x1b")


def test_text_of_only_escaped_characters_splits_between_pairs() -> None:
    the_plan = plan("€" * 81)  # 162 septets
    assert the_plan.parts == ["€" * 76, "€" * 5]


# --- UCS-2 boundaries ---------------------------------------------------------------------------------


def test_70_chinese_characters_fit_one_segment() -> None:
    assert plan("中" * 70).parts == ["中" * 70]


def test_71_chinese_characters_take_two_segments() -> None:
    assert plan("中" * 71).parts == ["中" * 67, "中" * 4]


def test_udh16_ucs2_parts_hold_66_units() -> None:
    assert plan("中" * 132, concat="udh16").parts == ["中" * 66] * 2


def test_emoji_costs_two_utf16_units() -> None:
    assert count_segments("😀" * 35) == 1
    assert count_segments("😀" * 36) == 2


def test_surrogate_pair_at_unit_67_moves_whole_to_the_next_part() -> None:
    # Regression for smpplib's make_parts, which cuts UCS-2 every 134 octets, through the pair.
    text = "中" * 66 + "😀" + "中" * 10
    the_plan = plan(text)
    assert the_plan.parts == ["中" * 66, "😀" + "中" * 10]
    second = encode(the_plan, concat="udh8", ref=1)[1]
    assert body_of(second)[:4] == "😀".encode("utf-16-be")


def test_gsm_escape_characters_in_ucs2_text_cost_one_unit() -> None:
    assert count_segments("中" + "€" * 69) == 1


# --- limits -------------------------------------------------------------------------------------------


def test_text_needing_more_than_max_segments_is_refused_with_the_counts() -> None:
    with pytest.raises(TooManySegments) as caught:
        plan("a" * 1600, max_segments=10)
    assert (caught.value.needed, caught.value.maximum) == (11, 10)
    assert str(caught.value) == "text needs 11 segments; the maximum is 10 (1600 chars, encoding gsm7)"


def test_too_many_segments_is_a_value_error_that_pickles() -> None:
    with pytest.raises(ValueError) as caught:
        plan("中" * 71, max_segments=1)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(copy, TooManySegments)
    assert (copy.needed, copy.maximum, copy.encoding, str(copy)) == (2, 1, "ucs2", str(caught.value))


def test_max_segments_is_capped_at_the_255_an_octet_counter_allows() -> None:
    with pytest.raises(TooManySegments) as caught:
        plan("a" * (153 * 255 + 1), max_segments=1000)
    assert (caught.value.needed, caught.value.maximum) == (256, 255)


def test_max_segments_below_one_is_an_error() -> None:
    with pytest.raises(ValueError, match="max_segments"):
        plan("a", max_segments=0)


def test_count_segments_has_no_maximum() -> None:
    assert count_segments("a" * 1600) == 11


def test_payload_counts_segments_as_the_network_will_split_with_udh8() -> None:
    assert count_segments("a" * 161, "payload") == 2
    assert len(plan("a" * 161, concat="payload").parts) == 2


def test_payload_text_is_still_limited_by_max_segments() -> None:
    with pytest.raises(TooManySegments):
        plan("a" * 161, concat="payload", max_segments=1)


def test_unpaired_surrogate_is_refused() -> None:
    with pytest.raises(ValueError, match="unpaired surrogate U\\+D83D at index 2"):
        plan("ab\ud83d")
    with pytest.raises(ValueError, match="unpaired surrogate"):
        count_segments("\ude00")


def test_unknown_concat_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown concat method"):
        plan("a", concat="udh9")  # type: ignore[arg-type]


# --- wire encoding ------------------------------------------------------------------------------------


def test_empty_text_is_one_empty_segment() -> None:
    assert plan("").parts == [""]
    assert encode(plan(""), concat="udh8", ref=0) == [OutboundSegment(1, 1, 0, b"")]


def test_single_segment_carries_neither_udh_nor_sar() -> None:
    for concat in SPLIT_CONCATS:
        assert encode(plan("hi"), concat=concat, ref=7) == [OutboundSegment(1, 1, 0, b"hi")]


def test_gsm7_body_is_unpacked_septets() -> None:
    [segment] = encode(plan("@€"), concat="udh8", ref=0)
    assert segment.short_message == b"\x00\x1b\x65"


def test_ucs2_body_is_utf16_big_endian() -> None:
    [segment] = encode(plan("中😀"), concat="udh8", ref=0)
    assert (segment.data_coding, segment.short_message) == (8, "中😀".encode("utf-16-be"))


def test_udh8_header_has_masked_reference_total_and_sequence() -> None:
    segments = encode(plan("a" * 161), concat="udh8", ref=0x1234)
    assert [s.short_message[:6] for s in segments] == [
        bytes.fromhex("0500033402" + f"{n:02x}") for n in (1, 2)
    ]
    assert all(s.udh and s.sar is None for s in segments)
    assert [(s.seq, s.total) for s in segments] == [(1, 2), (2, 2)]


def test_udh16_header_has_masked_16_bit_reference() -> None:
    segments = encode(plan("a" * 161, concat="udh16"), concat="udh16", ref=0x12345)
    assert segments[1].short_message[:7] == bytes.fromhex("06080423450202")
    assert segments[1].short_message[7:] == b"a" * 9


def test_sar_segments_carry_the_reference_in_tlvs_and_no_udh() -> None:
    segments = encode(plan("a" * 161, concat="sar"), concat="sar", ref=0x12345)
    assert [(s.udh, s.sar) for s in segments] == [(False, (0x2345, 2, 1)), (False, (0x2345, 2, 2))]
    assert segments[0].short_message == b"a" * 153


def test_payload_is_one_segment_with_the_whole_text_and_empty_short_message() -> None:
    text = "中" * 100
    segments = encode(plan(text, concat="payload"), concat="payload", ref=5)
    assert segments == [OutboundSegment(1, 1, 8, short_message=b"", message_payload=text.encode("utf-16-be"))]


def test_payload_is_used_even_for_a_short_text() -> None:
    [segment] = encode(plan("hi", concat="payload"), concat="payload", ref=0)
    assert (segment.short_message, segment.message_payload) == (b"", b"hi")


def test_a_plan_cut_for_udh8_does_not_fit_udh16() -> None:
    with pytest.raises(ValueError, match="part 1 of 2 is 153 units; udh16 allows 152"):
        encode(plan("a" * 161, concat="udh8"), concat="udh16", ref=0)


def test_a_hand_made_plan_that_overflows_one_segment_is_refused() -> None:
    with pytest.raises(ValueError, match="allows 160"):
        encode(Plan("gsm7", 0, ["a" * 161]), concat="udh8", ref=0)


# --- reassembly ---------------------------------------------------------------------------------------


def test_reassembly_accepts_segments_in_any_order() -> None:
    text = "a" * 200 + "b" * 200
    segments = encode(plan(text), concat="udh8", ref=9)
    assert reassemble(segments[::-1]) == text


def test_reassembly_refuses_an_incomplete_set() -> None:
    segments = encode(plan("a" * 400), concat="udh8", ref=9)
    with pytest.raises(ValueError, match="not a complete set"):
        reassemble(segments[:2])


def test_reassembly_refuses_no_segments() -> None:
    with pytest.raises(ValueError, match="no segments"):
        reassemble([])


def test_reassembly_refuses_mixed_data_codings() -> None:
    with pytest.raises(ValueError, match="mix data codings"):
        reassemble([OutboundSegment(1, 2, 0, b"a"), OutboundSegment(2, 2, 8, b"\x00a")])


@given(
    st.one_of(
        st.text(GSM_BASIC + ESCAPED, max_size=170),
        st.text(GSM_BASIC + ESCAPED + CJK + EMOJI, max_size=80),
        st.text(max_size=80),
    ),
    st.sampled_from(SPLIT_CONCATS),
    st.integers(0, 0xFFFF),
)
def test_the_one_segment_shortcut_gives_what_planning_and_encoding_give(
    text: str, concat: Concat, ref: int
) -> None:
    try:
        the_plan = plan(text, concat=concat, max_segments=255)
    except ValueError:  # a lone surrogate: plan refuses it, the shortcut leaves it to plan
        assert single_segment(text) is None
        return
    expected = encode(the_plan, concat=concat, ref=ref)
    if len(the_plan.parts) == 1:
        assert single_segment(text) == expected
    else:
        assert single_segment(text) is None
