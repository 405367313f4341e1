"""CMPP message text: the Msg_Fmt chosen per text, the capacity of a part, the parts of a long message
with their UDH, and lenient decoding of Msg_Content."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from masd_adapters.cmpp import text as t
from masd_adapters.cmpp.constants import MSG_FMT_ASCII, MSG_FMT_BINARY, MSG_FMT_GBK, MSG_FMT_UCS2

HAN = "短"  # two octets in GBK and in UCS-2


def test_an_ascii_text_is_msg_fmt_0():
    assert t.choose_msg_fmt("Meeting at 9 @ room 3_b $") == MSG_FMT_ASCII
    assert t.encode_text("@$_", MSG_FMT_ASCII) == b"@$_"  # ASCII octets, not GSM 7-bit codes


def test_chinese_is_ucs2_unless_the_channel_allows_gbk():
    assert t.choose_msg_fmt("会议通知") == MSG_FMT_UCS2
    assert t.choose_msg_fmt("会议通知", allow_gbk=True) == MSG_FMT_GBK


def test_a_text_gbk_cannot_encode_is_ucs2_even_when_gbk_is_allowed():
    assert t.choose_msg_fmt("会议 😀", allow_gbk=True) == MSG_FMT_UCS2


@pytest.mark.parametrize(
    ("msg_fmt", "concat", "octets"),
    [
        (MSG_FMT_ASCII, None, 140),
        (MSG_FMT_ASCII, "udh8", 134),
        (MSG_FMT_ASCII, "udh16", 133),
        (MSG_FMT_UCS2, None, 140),
        (MSG_FMT_UCS2, "udh8", 134),
        (MSG_FMT_UCS2, "udh16", 132),
        (MSG_FMT_GBK, None, 140),
        (MSG_FMT_GBK, "udh8", 134),
        (MSG_FMT_GBK, "udh16", 133),
    ],
)
def test_capacity_per_part(msg_fmt: int, concat: t.Concat | None, octets: int):
    assert t.capacity(msg_fmt, concat) == octets


def test_140_ascii_characters_are_one_part_141_are_two():
    assert t.plan("a" * 140).parts == ("a" * 140,)
    assert [len(p) for p in t.plan("a" * 141).parts] == [134, 7]
    assert [len(p) for p in t.plan("a" * 141, concat="udh16").parts] == [133, 8]


def test_70_ucs2_characters_are_one_part_71_are_67_and_4():
    assert len(t.plan(HAN * 70).parts) == 1
    assert [len(p) for p in t.plan(HAN * 71).parts] == [67, 4]
    assert [len(p) for p in t.plan(HAN * 71, concat="udh16").parts] == [66, 5]


def test_gbk_fits_70_chinese_characters_or_140_ascii_in_one_part():
    assert t.plan(HAN * 70, allow_gbk=True) == t.Plan(MSG_FMT_GBK, (HAN * 70,))
    mixed = HAN * 60 + "a" * 20  # 140 octets in GBK, 160 in UCS-2
    assert len(t.plan(mixed, allow_gbk=True).parts) == 1
    assert len(t.plan(mixed).parts) == 2  # 80 characters in UCS-2: 67 + 13


def test_a_gbk_cut_never_divides_a_chinese_character():
    text = "a" + HAN * 80  # 1 + 160 octets: 133 octets (a + 66 characters) do not fit 134 + 1
    parts = t.plan(text, allow_gbk=True).parts
    assert [len(part.encode("gbk")) for part in parts] == [133, 28]
    assert "".join(parts) == text


def test_a_ucs2_cut_never_divides_a_surrogate_pair():
    text = HAN * 66 + "😀" + HAN * 10  # the emoji would start at unit 67 and need units 67 and 68
    parts = t.plan(text).parts
    assert parts[0] == HAN * 66
    assert parts[1].startswith("😀")


def test_a_single_part_carries_no_udh():
    (part,) = t.encode_parts(t.plan("hello"), concat="udh8", ref=7)
    assert part == t.Part(1, 1, 0, MSG_FMT_ASCII, b"hello")


def test_parts_carry_the_8_bit_udh_and_their_numbers():
    parts = t.encode_parts(t.plan("a" * 141), concat="udh8", ref=0x1AB)
    assert [(p.pk_total, p.pk_number, p.tp_udhi) for p in parts] == [(2, 1, 1), (2, 2, 1)]
    assert parts[0].msg_content[:6] == bytes.fromhex("050003AB0201")
    assert parts[1].msg_content == bytes.fromhex("050003AB0202") + b"a" * 7
    assert all(len(p.msg_content) <= 140 for p in parts)


def test_parts_carry_the_16_bit_udh():
    parts = t.encode_parts(t.plan(HAN * 71, concat="udh16"), concat="udh16", ref=0x12345)
    assert parts[0].msg_content[:7] == bytes.fromhex("06080423450201")
    assert len(parts[0].msg_content) == 7 + 132


def test_a_plan_for_udh8_does_not_fit_udh16():
    with pytest.raises(ValueError, match="udh16 allows 133"):
        t.encode_parts(t.plan("a" * 141), concat="udh16", ref=1)


def test_too_many_parts():
    with pytest.raises(t.TooManyParts, match="needs 3 parts"):
        t.plan("a" * 300, max_parts=2)
    error = pickle.loads(pickle.dumps(t.TooManyParts(3, 2, 0)))
    assert (error.needed, error.maximum, error.msg_fmt) == (3, 2, 0)


def test_an_unpaired_surrogate_is_refused():
    with pytest.raises(ValueError, match="index 1"):
        t.plan("a\ud83d")


def test_the_empty_text_is_one_empty_part():
    assert t.encode_parts(t.plan(""), concat="udh8", ref=0) == [t.Part(1, 1, 0, MSG_FMT_ASCII, b"")]


@given(
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=600),
    st.booleans(),
    st.sampled_from(["udh8", "udh16"]),
    st.integers(0, 0xFFFF),
)
def test_parts_reassemble_to_the_text(text: str, allow_gbk: bool, concat: t.Concat, ref: int):
    plan = t.plan(text, allow_gbk=allow_gbk, concat=concat, max_parts=255)
    parts = t.encode_parts(plan, concat=concat, ref=ref)
    assert all(len(part.msg_content) <= t.SINGLE_OCTETS for part in parts)
    assert t.reassemble(list(reversed(parts))) == text
    for part in parts if len(parts) > 1 else []:
        found = t.read_concatenation(part.msg_content)
        mask = 0xFF if concat == "udh8" else 0xFFFF
        assert found is not None
        assert (found.ref, found.total, found.number) == (ref & mask, part.pk_total, part.pk_number)


def test_read_concatenation_skips_other_elements():
    content = bytes.fromhex("080A010100030C0302") + b"body"  # IEI 0x0A, then the 8-bit reference
    assert t.read_concatenation(content) == t.Concatenation(0x0C, 3, 2, b"body")
    assert t.read_concatenation(bytes.fromhex("030A0101") + b"x") is None
    with pytest.raises(ValueError, match="truncated"):
        t.read_concatenation(bytes.fromhex("0500"))


def test_reassemble_refuses_an_incomplete_set():
    parts = t.encode_parts(t.plan("a" * 300), concat="udh8", ref=1)
    with pytest.raises(ValueError, match="complete"):
        t.reassemble(parts[:-1])


# ----- decoding ------------------------------------------------------------------------------------------


def test_decoding_the_three_text_formats():
    assert t.decode_content(b"Y", MSG_FMT_ASCII) == "Y"
    assert t.decode_content("好的😀".encode("utf-16-be"), MSG_FMT_UCS2) == "好的😀"
    assert t.decode_content("好的".encode("gbk"), MSG_FMT_GBK) == "好的"


def test_binary_formats_stay_octets():
    assert t.decode_content(b"\x00\xff", MSG_FMT_BINARY) == b"\x00\xff"
    assert t.decode_content(b"\x01", 3) == b"\x01"


def test_msg_fmt_0_with_chinese_octets_is_read_as_gbk_then_latin1():
    assert t.decode_content("收到".encode("gbk"), MSG_FMT_ASCII) == "收到"
    assert t.decode_content(b"caf\xe9", MSG_FMT_ASCII) == "café"


def test_broken_ucs2_and_gbk_are_replaced_not_raised():
    assert t.decode_content(b"\x00A\x00", MSG_FMT_UCS2) == "A\ufffd"
    assert t.decode_content("𠀀".encode("gb18030"), MSG_FMT_GBK) == "𠀀"  # beyond GBK, within GB18030


@pytest.mark.parametrize(
    ("msg_fmt", "as_fmt"), [(0x18, MSG_FMT_UCS2), (0x0C, MSG_FMT_GBK), (0x11, MSG_FMT_ASCII)]
)
def test_an_undefined_msg_fmt_is_read_by_its_alphabet_bits(msg_fmt: int, as_fmt: int):
    sample = {MSG_FMT_UCS2: "好".encode("utf-16-be"), MSG_FMT_GBK: "好".encode("gbk"), MSG_FMT_ASCII: b"ok"}
    assert t.decode_content(sample[as_fmt], msg_fmt) == t.decode_content(sample[as_fmt], as_fmt)
    assert t.decode_content(b"\x01\x02", 0x14) == b"\x01\x02"


def test_encode_text_names_the_character_a_format_lacks():
    with pytest.raises(ValueError, match="index 2"):
        t.encode_text("ab好", MSG_FMT_ASCII)
    with pytest.raises(ValueError, match="Msg_Fmt 4"):
        t.encode_text("x", MSG_FMT_BINARY)
