"""Specification of masd.core.recipients: which phone numbers are accepted and the form they are kept in."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masd.core.recipients import InvalidRecipient, normalize, validate_all


def test_bare_mainland_mobile_is_kept_as_is() -> None:
    assert normalize("13812345678") == "13812345678"


@pytest.mark.parametrize("prefix", ["+86", "86", "0086", "+86 ", "0086-"])
def test_china_country_code_is_removed_from_mainland_mobiles(prefix: str) -> None:
    assert normalize(prefix + "13912345678") == "13912345678"


@pytest.mark.parametrize("second", "3456789")
def test_mainland_mobiles_start_13_to_19(second: str) -> None:
    assert normalize(f"1{second}012345678") == f"1{second}012345678"


def test_spaces_dashes_and_parentheses_are_removed() -> None:
    assert normalize(" +86 (138) 1234-5678 ") == "13812345678"


def test_full_width_digits_from_chinese_input_methods_are_accepted() -> None:
    assert normalize("１３８１２３４５６７８") == "13812345678"
    assert normalize("＋８６ １３８１２３４５６７８") == "13812345678"


def test_foreign_number_is_normalised_to_e164_with_plus() -> None:
    assert normalize("+44 20 7946 0958") == "+442079460958"


def test_foreign_number_with_00_prefix_is_normalised_to_plus() -> None:
    assert normalize("0044 20 7946 0958") == "+442079460958"


def test_china_landline_in_e164_form_stays_e164() -> None:
    assert normalize("+86 10 1234 5678") == "+861012345678"


@pytest.mark.parametrize(("number", "expected"), [("+1234567", False), ("+12345678", True)])
def test_e164_needs_at_least_8_digits(number: str, expected: bool) -> None:
    assert _accepted(number) is expected


@pytest.mark.parametrize(("number", "expected"), [("+" + "1" * 15, True), ("+" + "1" * 16, False)])
def test_e164_allows_at_most_15_digits(number: str, expected: bool) -> None:
    assert _accepted(number) is expected


def test_e164_length_error_says_how_many_digits_there_were() -> None:
    with pytest.raises(InvalidRecipient, match="this has 16"):
        normalize("+" + "1" * 16)


def test_e164_country_code_cannot_start_with_zero() -> None:
    with pytest.raises(InvalidRecipient, match="country codes do not start with 0"):
        normalize("+0123456789")


@pytest.mark.parametrize("number", ["12012345678", "1381234567", "138123456789", "02012345678", "95588"])
def test_number_without_plus_must_be_a_mainland_mobile(number: str) -> None:
    with pytest.raises(InvalidRecipient) as caught:
        normalize(number)
    assert caught.value.reason == (
        "not a mainland mobile number (11 digits starting 13–19) nor E.164 (+ and 8–15 digits)"
    )


@pytest.mark.parametrize("number", ["138abc45678", "+86 138.1234.5678", "1381234567８x", "+"])
def test_letters_and_other_punctuation_are_refused(number: str) -> None:
    with pytest.raises(InvalidRecipient, match="may contain only digits"):
        normalize(number)


def test_non_ascii_digits_other_than_full_width_are_refused() -> None:
    with pytest.raises(InvalidRecipient):
        normalize("١٣٨١٢٣٤٥٦٧٨")  # Arabic-Indic digits pass str.isdigit but are not a phone number


@pytest.mark.parametrize("number", ["", "   ", "()-"])
def test_empty_number_is_refused(number: str) -> None:
    with pytest.raises(InvalidRecipient, match="empty"):
        normalize(number)


def test_invalid_recipient_keeps_the_original_value_and_has_no_index_alone() -> None:
    with pytest.raises(ValueError) as caught:
        normalize(" 123 ")
    assert isinstance(caught.value, InvalidRecipient)
    assert (caught.value.index, caught.value.value) == (-1, " 123 ")


def test_invalid_recipient_pickles_with_its_attributes() -> None:
    error = InvalidRecipient(3, "x", "reason")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.index, copy.value, copy.reason, str(copy)) == (3, "x", "reason", str(error))


def test_validate_all_normalises_every_number_in_order() -> None:
    assert validate_all(["+8613812345678", "+44 20 7946 0958"]) == ["13812345678", "+442079460958"]


def test_validate_all_drops_duplicates_after_normalising_and_keeps_first_position() -> None:
    numbers = ["13812345678", "+44 20 7946 0958", "+86 138 1234 5678", "0044 2079460958", "13912345678"]
    assert validate_all(numbers) == ["13812345678", "+442079460958", "13912345678"]


def test_validate_all_names_the_first_bad_number_by_index() -> None:
    with pytest.raises(InvalidRecipient) as caught:
        validate_all(["13812345678", "12345", "abc"])
    assert (caught.value.index, caught.value.value) == (1, "12345")
    assert str(caught.value).startswith("recipient 1 ('12345'): not a mainland mobile number")


def test_validate_all_refuses_an_empty_list() -> None:
    with pytest.raises(InvalidRecipient) as caught:
        validate_all([])
    assert (caught.value.index, caught.value.reason, str(caught.value)) == (
        -1,
        "no recipients",
        "no recipients",
    )


def test_validate_all_refuses_a_single_string_instead_of_a_list() -> None:
    with pytest.raises(TypeError):
        validate_all("13812345678")


def _accepted(number: str) -> bool:
    try:
        normalize(number)
    except InvalidRecipient:
        return False
    return True


mobiles = st.builds(
    lambda second, rest: f"1{second}{rest}",
    st.sampled_from("3456789"),
    st.text(st.sampled_from("0123456789"), min_size=9, max_size=9),
)
noise = st.text(st.sampled_from(" -()"), max_size=2)


@settings(max_examples=300, deadline=None)
@given(mobiles, st.sampled_from(["", "+86", "86", "0086", "＋８６"]), noise, noise)
def test_any_written_form_of_a_mainland_mobile_normalises_to_its_11_digits(
    mobile: str, prefix: str, before: str, after: str
) -> None:
    written = before + prefix + mobile + after
    assert normalize(written) == mobile
    assert normalize(normalize(written)) == mobile


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_normalize_either_returns_a_canonical_number_or_raises_invalid_recipient(text: str) -> None:
    try:
        result = normalize(text)
    except InvalidRecipient as error:
        assert error.reason
        return
    assert normalize(result) == result
    assert result.isascii()
