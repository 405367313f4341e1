"""Specification of masd_adapters.smpp.status: SMPP 3.4 command_status names and retry classification."""

from __future__ import annotations

import pytest
import smpplib.consts
from hypothesis import given
from hypothesis import strategies as st

from masd_adapters.base import SubmitError
from masd_adapters.smpp import constants, status

PERMANENT = [0x01, 0x0A, 0x0B, 0x33, 0x43, 0x45, 0x50, 0x62, 0x65, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4]
OTHER_INVALID = [0x02, 0x03, 0x06, 0x07, 0x15, 0x34, 0x40, 0x42, 0x44, 0x48, 0x49, 0x51, 0x53, 0x54, 0x55]
OTHER_INVALID += [0x61, 0x63]


def test_names_of_defined_codes() -> None:
    assert status.name(0x00) == "ESME_ROK"
    assert status.name(0x58) == "ESME_RTHROTTLED"
    assert status.name(0xC4) == "ESME_RINVOPTPARAMVAL"
    assert status.name(0xFF) == "ESME_RUNKNOWNERR"
    assert len(constants.STATUS_NAMES) == 48


def test_names_agree_with_smpplib() -> None:
    # smpplib.consts defines SMPP_ESME_R… = code for the 3.4 set; every one we name must match.
    for code, label in constants.STATUS_NAMES.items():
        assert getattr(smpplib.consts, "SMPP_" + label) == code, label


@pytest.mark.parametrize("code", [0x09, 0x10, 0x400, 0x4FF, 0xDEADBEEF])
def test_unknown_codes_are_named_in_hex(code: int) -> None:
    assert status.name(code) == f"0x{code:08X}"


@pytest.mark.parametrize("code", [0x08, 0x64])
def test_transient_errors_are_retriable(code: int) -> None:
    error = status.classify(code)
    assert (error.retriable, error.throttled, error.rebind) == (True, False, False)
    assert error.code == code
    assert error.name == status.name(code)


@pytest.mark.parametrize("code", [0x14, 0x58])
def test_throttling_errors(code: int) -> None:
    error = status.classify(code)
    assert (error.retriable, error.throttled, error.rebind) == (True, True, False)


def test_bind_status_error_asks_for_rebind() -> None:
    assert status.classify(0x04) == SubmitError(0x04, "ESME_RINVBNDSTS", retriable=True, rebind=True)


@pytest.mark.parametrize("code", PERMANENT + OTHER_INVALID)
def test_permanent_errors(code: int) -> None:
    error = status.classify(code)
    assert not error.retriable
    assert not error.throttled
    assert not error.rebind
    assert error.name.startswith("ESME_R")


@given(st.integers(1, 0xFFFFFFFF).filter(lambda c: c not in constants.STATUS_NAMES or c == 0xFF))
def test_unknown_and_vendor_codes_are_retriable_without_throttle(code: int) -> None:
    error = status.classify(code)
    assert error == SubmitError(code, status.name(code), retriable=True)


def test_every_defined_code_is_classified() -> None:
    for code in constants.STATUS_NAMES:
        if code:
            assert isinstance(status.classify(code), SubmitError)


def test_zero_is_not_an_error() -> None:
    with pytest.raises(ValueError):
        status.classify(0)


def test_local_errors() -> None:
    assert status.timeout_error() == SubmitError(0, "SUBMIT_TIMEOUT", retriable=True)
    down = status.link_down_error()
    assert down.retriable and down.code == 0 and down.name == "LINK_DOWN"
