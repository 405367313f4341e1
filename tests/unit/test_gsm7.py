"""Specification of masd.core.gsm7: the GSM 03.38 alphabet, its extension table, and septet packing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masd.core import gsm7

DEFAULT_ALPHABET = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
GSM_CHARS = [ch for index, ch in enumerate(DEFAULT_ALPHABET) if index != 0x1B] + list(EXTENSION)

gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=400)
septet_strings = st.binary(max_size=200).map(lambda raw: bytes(b & 0x7F for b in raw))


@pytest.mark.parametrize(
    "code", [code for code in range(0x80) if code != 0x1B], ids=lambda code: f"0x{code:02X}"
)
def test_each_default_alphabet_character_encodes_to_its_own_septet(code: int) -> None:
    assert gsm7.encode_unpacked(DEFAULT_ALPHABET[code]) == bytes([code])


@pytest.mark.parametrize(("char", "code"), EXTENSION.items())
def test_each_extension_character_encodes_to_escape_then_its_code(char: str, code: int) -> None:
    assert gsm7.encode_unpacked(char) == bytes([0x1B, code])


def test_section_sign_is_in_the_default_alphabet_at_0x5f() -> None:
    assert gsm7.is_gsm7("§")
    assert gsm7.encode_unpacked("§") == b"\x5f"


def test_backtick_is_not_in_the_gsm_alphabet() -> None:
    assert not gsm7.is_gsm7("`")
    assert not gsm7.is_gsm7("plain text with a ` in it")


def test_capital_c_cedilla_is_septet_0x09() -> None:
    assert gsm7.encode_unpacked("Ç") == b"\x09"
    assert not gsm7.is_gsm7("ç")


def test_the_escape_control_character_itself_is_not_text() -> None:
    assert not gsm7.is_gsm7("\x1b")


def test_empty_text_is_gsm7_and_costs_nothing() -> None:
    assert gsm7.is_gsm7("")
    assert gsm7.septet_length("") == 0
    assert gsm7.encode_unpacked("") == b""


def test_chinese_text_is_not_gsm7() -> None:
    assert not gsm7.is_gsm7("会议通知")


def test_extension_characters_cost_two_septets() -> None:
    assert gsm7.septet_length("€") == 2
    assert gsm7.septet_length("a{b}c") == 7


def test_encoding_text_outside_the_alphabet_names_the_first_bad_character() -> None:
    with pytest.raises(ValueError, match=r"'`' \(U\+0060\) at index 3"):
        gsm7.encode_unpacked("abc`d中")


def test_septet_length_of_text_outside_the_alphabet_is_an_error() -> None:
    with pytest.raises(ValueError, match="not in the GSM 7-bit alphabet"):
        gsm7.septet_length("中")


def test_escape_followed_by_an_unknown_code_decodes_as_the_default_character() -> None:
    # TS 23.038: a receiver that does not know an extension code shows the default-alphabet character.
    assert gsm7.decode_unpacked(b"\x1b\x41") == "A"


def test_escape_followed_by_escape_decodes_as_a_space() -> None:
    assert gsm7.decode_unpacked(b"a\x1b\x1bb") == "a b"


def test_escape_at_the_end_decodes_as_a_space() -> None:
    assert gsm7.decode_unpacked(b"ab\x1b") == "ab "


def test_decoding_an_octet_above_0x7f_is_an_error() -> None:
    with pytest.raises(ValueError, match="0x80 at offset 1"):
        gsm7.decode_unpacked(b"a\x80")


@settings(max_examples=300, deadline=None)
@given(gsm_text)
def test_unpacked_encoding_round_trips_and_its_length_is_the_septet_length(text: str) -> None:
    encoded = gsm7.encode_unpacked(text)
    assert len(encoded) == gsm7.septet_length(text)
    assert gsm7.decode_unpacked(encoded) == text


def test_packing_matches_the_classic_hellohello_vector() -> None:
    septets = gsm7.encode_unpacked("hellohello")
    assert gsm7.pack_septets(septets) == bytes.fromhex("E8329BFD4697D9EC37")


def test_eight_septets_pack_into_seven_octets() -> None:
    assert len(gsm7.pack_septets(b"\x7f" * 8)) == 7


def test_fill_bits_shift_the_first_septet_up() -> None:
    assert gsm7.pack_septets(b"\x41", fill_bits=1) == b"\x82"


def test_unpacking_matches_the_classic_hellohello_vector() -> None:
    packed = bytes.fromhex("E8329BFD4697D9EC37")
    assert gsm7.decode_unpacked(gsm7.unpack_septets(packed, 10)) == "hellohello"


def test_unpacking_uses_the_count_to_tell_a_trailing_at_sign_from_padding() -> None:
    packed = gsm7.pack_septets(b"\x01" * 7)  # seven septets leave seven zero bits in the last octet
    assert gsm7.unpack_septets(packed, 7) == b"\x01" * 7
    assert gsm7.unpack_septets(packed, 8) == b"\x01" * 7 + b"\x00"


@settings(max_examples=300, deadline=None)
@given(septet_strings, st.integers(min_value=0, max_value=6))
def test_packing_round_trips_for_every_fill(septets: bytes, fill_bits: int) -> None:
    packed = gsm7.pack_septets(septets, fill_bits)
    assert len(packed) == (fill_bits + 7 * len(septets) + 7) // 8
    assert gsm7.unpack_septets(packed, len(septets), fill_bits) == septets


def test_packing_an_octet_above_0x7f_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a 7-bit septet"):
        gsm7.pack_septets(b"\x80")


@pytest.mark.parametrize("fill_bits", [-1, 7])
def test_fill_bits_outside_0_to_6_are_an_error(fill_bits: int) -> None:
    with pytest.raises(ValueError, match="fill_bits"):
        gsm7.pack_septets(b"a", fill_bits)
    with pytest.raises(ValueError, match="fill_bits"):
        gsm7.unpack_septets(b"a", 1, fill_bits)


def test_unpacking_more_septets_than_the_data_holds_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot hold 2 septets"):
        gsm7.unpack_septets(b"\x41", 2)
