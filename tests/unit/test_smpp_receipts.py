"""Specification of masd_adapters.smpp.receipts: reading delivery receipts and matching their ids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from masd_adapters.base import InboundReceipt, ReceiptStatus
from masd_adapters.smpp import constants, fast, receipts
from masd_adapters.smpp.receipts import canonical_id, id_candidates, is_receipt, parse_receipt


def _deliver(
    short_message: bytes = b"", tlvs: dict[int, bytes] | None = None, data_coding: int = 0
) -> fast.SubmitSm:
    """A receipt deliver_sm as it comes off the wire, through the real codec."""
    raw = fast.encode_deliver_sm(
        1,
        source_addr="8613800138000",
        destination_addr="1069000123",
        esm_class=0x04,
        data_coding=data_coding,
        short_message=short_message,
        tlvs=tlvs,
    )
    return fast.decode_sm(raw)


STANDARD = (
    b"id:0A1B2C3D sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 stat:DELIVRD err:000 "
    b"text:Meeting at 3"
)


# --- esm_class ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("esm_class", "expected"),
    [
        (0x00, False),  # mobile-originated
        (0x40, False),  # MO with UDH
        (0x04, True),  # SMSC delivery receipt
        (0x44, True),  # … with the UDHI bit set
        (0x84, True),  # … with a reply path bit set
        (0x08, True),  # SME delivery acknowledgement
        (0x20, True),  # intermediate delivery notification
        (0x10, False),  # user acknowledgement
        (0x18, False),  # conversation abort
        (0x03, False),  # message mode bits only
    ],
)
def test_is_receipt(esm_class: int, expected: bool) -> None:
    assert is_receipt(esm_class) is expected


# --- TLV receipts ------------------------------------------------------------------------------------


def test_tlv_receipt() -> None:
    sm = _deliver(
        tlvs={
            constants.RECEIPTED_MESSAGE_ID: b"0A1B2C3D\0",
            constants.MESSAGE_STATE: b"\x05",
            constants.NETWORK_ERROR_CODE: b"\x03\x01\x0b",
        }
    )
    receipt = parse_receipt(sm)
    assert receipt is not None
    assert receipt.carrier_id == "a1b2c3d"
    assert receipt.status is ReceiptStatus.UNDELIVERED
    assert receipt.error_code == 0x010B
    assert "a1b2c3d" in receipt.raw.lower()


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (1, ReceiptStatus.ENROUTE),
        (2, ReceiptStatus.DELIVERED),
        (3, ReceiptStatus.EXPIRED),
        (4, ReceiptStatus.DELETED),
        (5, ReceiptStatus.UNDELIVERED),
        (6, ReceiptStatus.ACCEPTED),
        (7, ReceiptStatus.UNKNOWN),
        (8, ReceiptStatus.REJECTED),
    ],
)
def test_message_state_values(state: int, status: ReceiptStatus) -> None:
    receipt = parse_receipt(
        _deliver(tlvs={constants.RECEIPTED_MESSAGE_ID: b"77\0", constants.MESSAGE_STATE: bytes([state])})
    )
    assert receipt == InboundReceipt("77", status, None, receipt.raw if receipt else "")


def test_tlvs_win_over_text() -> None:
    sm = _deliver(
        short_message=b"id:999 stat:UNDELIV err:042",
        tlvs={constants.RECEIPTED_MESSAGE_ID: b"123\0", constants.MESSAGE_STATE: b"\x02"},
    )
    receipt = parse_receipt(sm)
    assert receipt is not None
    assert (receipt.carrier_id, receipt.status, receipt.error_code) == ("123", ReceiptStatus.DELIVERED, 42)
    assert receipt.raw == "id:999 stat:UNDELIV err:042"


def test_tlv_id_with_text_state() -> None:
    # Some SMSCs send receipted_message_id but no message_state: the text settles the state.
    sm = _deliver(short_message=b"id:5 stat:EXPIRED err:000", tlvs={constants.RECEIPTED_MESSAGE_ID: b"ABC"})
    receipt = parse_receipt(sm)
    assert receipt is not None
    assert (receipt.carrier_id, receipt.status, receipt.error_code) == ("abc", ReceiptStatus.EXPIRED, 0)


def test_tlv_state_with_text_id() -> None:
    receipt = parse_receipt(
        _deliver(short_message=b"id:00042 stat:", tlvs={constants.MESSAGE_STATE: b"\x02"})
    )
    assert receipt is not None
    assert (receipt.carrier_id, receipt.status) == ("42", ReceiptStatus.DELIVERED)


def test_unknown_message_state_falls_back_to_text() -> None:
    sm = _deliver(
        short_message=b"id:1 stat:ACCEPTD",
        tlvs={constants.RECEIPTED_MESSAGE_ID: b"1\0", constants.MESSAGE_STATE: b"\x00"},
    )
    receipt = parse_receipt(sm)
    assert receipt is not None and receipt.status is ReceiptStatus.ACCEPTED
    bare = parse_receipt(
        _deliver(tlvs={constants.RECEIPTED_MESSAGE_ID: b"1\0", constants.MESSAGE_STATE: b"\x09"})
    )
    assert bare is not None and bare.status is ReceiptStatus.UNKNOWN


# --- text receipts -----------------------------------------------------------------------------------


def test_standard_text_receipt() -> None:
    receipt = parse_receipt(_deliver(short_message=STANDARD))
    assert receipt == InboundReceipt("a1b2c3d", ReceiptStatus.DELIVERED, 0, STANDARD.decode())


@pytest.mark.parametrize(
    "text",
    [
        STANDARD,
        STANDARD.lower(),
        STANDARD.upper(),
        b"ID:0a1b2c3d Sub:001 Dlvrd:001 Submit Date:2501011200 Done Date:2501011201 Stat:DelivRD Err:000",
        b"id : 0A1B2C3D   sub:001  dlvrd:001   submit date:2501011200  stat :  DELIVRD  err: 000  text:",
        b"Id:0A1B2C3D stat:DELIVRD err:000",
    ],
)
def test_text_receipt_any_case_and_spacing(text: bytes) -> None:
    receipt = parse_receipt(_deliver(short_message=text))
    assert receipt is not None
    assert (receipt.carrier_id, receipt.status, receipt.error_code) == ("a1b2c3d", ReceiptStatus.DELIVERED, 0)


@pytest.mark.parametrize(
    ("stat", "status"),
    [
        ("DELIVRD", ReceiptStatus.DELIVERED),
        ("EXPIRED", ReceiptStatus.EXPIRED),
        ("DELETED", ReceiptStatus.DELETED),
        ("UNDELIV", ReceiptStatus.UNDELIVERED),
        ("ACCEPTD", ReceiptStatus.ACCEPTED),
        ("UNKNOWN", ReceiptStatus.UNKNOWN),
        ("REJECTD", ReceiptStatus.REJECTED),
        ("ENROUTE", ReceiptStatus.ENROUTE),
        ("undeliv", ReceiptStatus.UNDELIVERED),
        ("GIBBERISH", ReceiptStatus.UNKNOWN),
    ],
)
def test_stat_values(stat: str, status: ReceiptStatus) -> None:
    receipt = parse_receipt(_deliver(short_message=f"id:12 sub:001 dlvrd:000 stat:{stat} err:000".encode()))
    assert receipt is not None and receipt.status is status


def test_intermediate_enroute_notification() -> None:
    raw = fast.encode_deliver_sm(
        2,
        source_addr="8613800138000",
        destination_addr="1069",
        esm_class=0x20,
        short_message=b"id:4711 sub:001 dlvrd:000 submit date:2501011200 done date:2501011200 stat:ENROUTE",
    )
    sm = fast.decode_sm(raw)
    assert is_receipt(sm.esm_class)
    receipt = parse_receipt(sm)
    assert receipt is not None
    assert (receipt.carrier_id, receipt.status) == ("4711", ReceiptStatus.ENROUTE)


def test_missing_err_and_other_fields() -> None:
    receipt = parse_receipt(_deliver(short_message=b"id:42 stat:DELIVRD"))
    assert receipt == InboundReceipt("42", ReceiptStatus.DELIVERED, None, "id:42 stat:DELIVRD")


@pytest.mark.parametrize(("err", "code"), [("000", 0), ("005", 5), ("099", 99), ("00A", 10), ("1ff", 0x1FF)])
def test_err_decimal_or_hex(err: str, code: int) -> None:
    receipt = parse_receipt(_deliver(short_message=f"id:1 stat:UNDELIV err:{err}".encode()))
    assert receipt is not None and receipt.error_code == code


def test_err_garbage_is_none() -> None:
    receipt = parse_receipt(_deliver(short_message=b"id:1 stat:UNDELIV err:xyz"))
    assert receipt is not None and receipt.error_code is None


def test_leading_zeros_in_text_id() -> None:
    receipt = parse_receipt(_deliver(short_message=b"id:0000012345 stat:DELIVRD err:000"))
    assert receipt is not None and receipt.carrier_id == "12345"
    assert canonical_id("12345") == receipt.carrier_id


def test_original_text_cannot_spoof_fields() -> None:
    text = b"id:77 sub:001 dlvrd:001 stat:UNDELIV err:001 text:id:99 stat:DELIVRD"
    receipt = parse_receipt(_deliver(short_message=text))
    assert receipt is not None
    assert (receipt.carrier_id, receipt.status, receipt.error_code) == ("77", ReceiptStatus.UNDELIVERED, 1)


def test_message_payload_receipt() -> None:
    sm = _deliver(tlvs={constants.MESSAGE_PAYLOAD: b"id:ABCDEF sub:001 dlvrd:001 stat:DELIVRD err:000"})
    receipt = parse_receipt(sm)
    assert receipt is not None
    assert (receipt.carrier_id, receipt.status) == ("abcdef", ReceiptStatus.DELIVERED)


def test_ucs2_receipt_text() -> None:
    sm = _deliver(short_message="id:ab12 stat:REJECTD err:000".encode("utf-16-be"), data_coding=8)
    receipt = parse_receipt(sm)
    assert receipt is not None and (receipt.carrier_id, receipt.status) == ("ab12", ReceiptStatus.REJECTED)


@pytest.mark.parametrize(
    "text",
    [b"", b"hello, see you at 3", b"stat:DELIVRD err:000", b"id:", b"\xff\xfe\x00garbage", b"id:12 sub:001"],
)
def test_garbage_is_none(text: bytes) -> None:
    assert parse_receipt(_deliver(short_message=text)) is None


@given(st.binary(max_size=200), st.sampled_from([0, 3, 8]))
def test_parse_receipt_never_raises(body: bytes, dcs: int) -> None:
    result = parse_receipt(_deliver(short_message=body, data_coding=dcs))
    assert result is None or isinstance(result, InboundReceipt)


_ALNUM = "0123456789abcdefABCDEFstatexidrTEXSIDR_\u212a\u017f\u0131"  # the last three fold to k, s and i


def _cased(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(word, upper, strict=True))
    )


@st.composite
def _standard_texts(draw: st.DrawFn) -> str:
    def value(alphabet: str, min_size: int) -> str:
        return draw(st.text(alphabet, min_size=min_size, max_size=12))

    alnum = _ALNUM.replace("_", "")
    fields = [
        ("id", value(alnum, 1)),
        ("sub", value(alnum, 0)),
        ("dlvrd", value(alnum, 0)),
        ("submit date", value("0123456789", 0)),
        ("done date", value("0123456789", 0)),
        ("stat", value("statexidrTEXSIDR_", 1)),
        ("err", value(alnum, 1)),
    ]
    line = " ".join(f"{draw(_cased(key))}:{val}" for key, val in fields)
    return f"{line} {draw(_cased('text'))}:{draw(st.text(max_size=30))}"


@given(st.one_of(_standard_texts(), st.text(alphabet=_ALNUM + " :", max_size=120)))
def test_reading_the_standard_text_in_one_pass_finds_what_the_searches_find(text: str) -> None:
    assert receipts._text_fields(text, True, True, True) == receipts._search_fields(text, True, True, True)


# --- ids ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_id", "fmt", "canonical"),
    [
        ("0A1B2C3D", "auto", "a1b2c3d"),
        ("a1b2c3d", "auto", "a1b2c3d"),
        ("000123", "auto", "123"),
        ("0000", "auto", "0"),
        (" 42 ", "auto", "42"),
        ("550E8400-E29B-41D4", "auto", "550E8400-E29B-41D4"),  # not a number: untouched
        ("msg_XYZ", "auto", "msg_XYZ"),
        ("0A1B", "hex", "a1b"),
        ("00123", "hex", "123"),
        ("00123", "decimal", "123"),
        ("1E240", "decimal", "123456"),  # hex rendering of a decimal id
        ("0A1B2C3D", "as-is", "0A1B2C3D"),
        ("", "auto", ""),
    ],
)
def test_canonical_id(given_id: str, fmt: receipts.IdFormat, canonical: str) -> None:
    assert canonical_id(given_id, fmt) == canonical


def test_hex_resp_decimal_receipt_auto() -> None:
    # submit_sm_resp said "0A1B2C3D" (hex); the receipt text wrote the same number in decimal.
    stored = canonical_id("0A1B2C3D", "auto")
    receipt = parse_receipt(_deliver(short_message=f"id:{0x0A1B2C3D} stat:DELIVRD err:000".encode()))
    assert receipt is not None
    assert receipt.carrier_id == str(0x0A1B2C3D)
    assert stored in id_candidates(receipt.carrier_id, "auto")


def test_hex_resp_without_letters_decimal_receipt() -> None:
    stored = canonical_id("12345678", "hex")
    assert stored in id_candidates(str(0x12345678), "hex")
    assert stored in id_candidates(str(0x12345678), "auto")


def test_decimal_resp_hex_receipt() -> None:
    stored = canonical_id("0000123456", "decimal")
    assert canonical_id("1E240", "decimal") == stored  # direct hit in "decimal"
    assert stored in id_candidates("1e240", "auto")  # a candidate in "auto"
    assert stored in id_candidates("0001E240", "auto")


def test_same_id_matches_first() -> None:
    for fmt in ("auto", "hex", "decimal", "as-is"):
        assert id_candidates("0a1b", fmt)[0] == canonical_id("0a1b", fmt)
    assert id_candidates("0A1B2C3D", "auto")[0] == canonical_id("0a1b2c3d", "auto")
    assert id_candidates("000042", "auto")[0] == canonical_id("42", "auto")


def test_candidates_have_no_repeats_and_as_is_has_one() -> None:
    assert id_candidates("0", "auto") == ["0"]
    assert id_candidates("ABC", "as-is") == ["ABC"]
    assert id_candidates("uuid-like-id", "auto") == ["uuid-like-id"]


@given(st.integers(0, 2**64 - 1), st.integers(0, 6), st.booleans())
def test_any_numeric_id_meets_its_other_rendering(value: int, zeros: int, upper: bool) -> None:
    hex_resp = "0" * zeros + (format(value, "X") if upper else format(value, "x"))
    dec_resp = "0" * zeros + str(value)
    # Hex in the resp, decimal in the receipt, and the other way round; with and without padding.
    assert canonical_id(hex_resp, "auto") in id_candidates(dec_resp, "auto")
    assert canonical_id(dec_resp, "auto") in id_candidates(hex_resp, "auto")
    assert canonical_id(hex_resp, "hex") in id_candidates(dec_resp, "hex")
    assert canonical_id(dec_resp, "decimal") in id_candidates(hex_resp, "decimal")
    # And the same rendering in both places is always the first candidate.
    assert id_candidates(hex_resp.lower(), "auto")[0] == canonical_id(hex_resp.upper(), "auto")


def test_very_long_digit_id_is_not_converted() -> None:
    long_id = "9" * 5000
    assert canonical_id(long_id) == long_id
    assert id_candidates(long_id) == [long_id]
