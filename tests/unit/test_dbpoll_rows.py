"""Reading one row of an OA's api_mt table: numbers, text, time and what makes a row bad (pure rules)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from masd.interfaces import mas_rows as mas

GBK_TEXT = "你好，会议改到三点"


def row(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "auto_sn": 1,
        "sm_id": 5,
        "src_id": 0,
        "mobiles": "13800138000",
        "content": "hello",
        "send_time": None,
        "is_wap": 0,
        "url": None,
    }
    return base | fields


def read(**fields: Any) -> mas.MtRow | mas.BadRow:
    return mas.read_mt_row(row(**fields), code="oa1")


def test_mobiles_split_on_commas_full_width_commas_semicolons_and_spaces() -> None:
    _, valid, invalid = mas.parse_mobiles("13800138000，13900139000; 13700137000 、13600136000\n13500135000")
    assert valid == ["13800138000", "13900139000", "13700137000", "13600136000", "13500135000"]
    assert invalid == []


def test_mobiles_repeated_or_written_with_country_code_are_sent_once() -> None:
    _, valid, _ = mas.parse_mobiles("13800138000,+8613800138000,8613800138000")
    assert valid == ["13800138000"]


def test_invalid_numbers_are_left_out_and_listed() -> None:
    r = read(mobiles="13800138000,12345,abc")
    assert isinstance(r, mas.MtRow)
    assert r.recipients == ["13800138000"]
    assert [entry for entry, _ in r.invalid] == ["12345", "abc"]


def test_row_without_any_valid_number_is_bad() -> None:
    r = read(mobiles="12345, abc")
    assert isinstance(r, mas.BadRow)
    assert r.code == mas.CODES["bad_mobile"]
    assert "no valid number" in r.reason
    assert r.mobiles == ["12345", "abc"]


def test_send_time_is_local_time() -> None:
    expected = dt.datetime(2031, 5, 1, 9, 30).timestamp()
    assert mas.parse_send_time("2031-05-01 09:30:00") == expected
    assert mas.parse_send_time(b"2031-05-01 09:30:00") == expected
    assert mas.parse_send_time("2031-05-01 09:30:00.000") == expected
    assert mas.parse_send_time(dt.datetime(2031, 5, 1, 9, 30)) == expected


def test_empty_send_time_means_now() -> None:
    assert mas.parse_send_time(None) is None
    assert mas.parse_send_time("  ") is None


def test_unreadable_send_time_makes_a_bad_row() -> None:
    r = read(send_time="tomorrow 9am")
    assert isinstance(r, mas.BadRow)
    assert r.code == mas.CODES["bad_send_time"]
    assert "tomorrow 9am" in r.reason


def test_gbk_bytes_are_decoded_in_auto_mode() -> None:
    assert mas.decode_content(GBK_TEXT.encode("gbk")) == GBK_TEXT


def test_utf8_bytes_are_decoded_in_auto_mode() -> None:
    assert mas.decode_content(GBK_TEXT.encode("utf-8")) == GBK_TEXT


def test_gbk_shown_as_latin1_letters_is_repaired_in_gbk_mode() -> None:
    garbled = GBK_TEXT.encode("gbk").decode("latin-1")
    assert mas.decode_content(garbled, "gbk") == GBK_TEXT


def test_bytes_that_are_neither_utf8_nor_gbk_make_a_bad_row() -> None:
    r = read(content=b"\xff\xff\xff")
    assert isinstance(r, mas.BadRow)
    assert r.code == mas.CODES["unreadable_content"]


def test_empty_content_makes_a_bad_row() -> None:
    r = read(content="  ")
    assert isinstance(r, mas.BadRow)
    assert r.code == mas.CODES["empty_content"]


def test_content_over_2000_characters_makes_a_bad_row() -> None:
    r = read(content="x" * 2001)
    assert isinstance(r, mas.BadRow)
    assert r.code == mas.CODES["content_too_long"]
    assert "2001" in r.reason


@pytest.mark.parametrize("value", [-1, 100_000_000, "12a", 1.5])
def test_sm_id_outside_0_to_99999999_makes_a_bad_row(value: Any) -> None:
    r = read(sm_id=value)
    assert isinstance(r, mas.BadRow)
    assert r.code == mas.CODES["bad_sm_id"]


def test_bad_sm_id_is_echoed_when_it_is_a_whole_number() -> None:
    r = read(sm_id=100_000_000)
    assert isinstance(r, mas.BadRow)
    assert r.sm_id == 100_000_000


@pytest.mark.parametrize("value", [-1, 100_000_000])
def test_src_id_outside_0_to_99999999_makes_a_bad_row(value: int) -> None:
    r = read(src_id=value)
    assert isinstance(r, mas.BadRow)
    assert r.code == mas.CODES["bad_src_id"]


def test_src_id_zero_means_no_extension() -> None:
    r = read(src_id=0)
    assert isinstance(r, mas.MtRow)
    assert r.src_id == ""


def test_src_id_becomes_the_extension_digits() -> None:
    r = read(src_id=123)
    assert isinstance(r, mas.MtRow)
    assert r.src_id == "123"


def test_wap_push_row_sends_its_url_in_the_text() -> None:
    r = read(is_wap=1, content="通知", url="http://oa.example/n/1")
    assert isinstance(r, mas.MtRow)
    assert r.text == "通知 http://oa.example/n/1"


def test_client_ref_is_the_same_for_the_same_row_read_twice() -> None:
    first, second = read(), read()
    assert isinstance(first, mas.MtRow) and isinstance(second, mas.MtRow)
    assert first.ref == second.ref
    assert first.ref.startswith("mas:oa1:1:5:")


def test_client_ref_differs_when_a_reused_auto_sn_carries_another_row() -> None:
    first, second = read(content="one"), read(content="two")
    assert isinstance(first, mas.MtRow) and isinstance(second, mas.MtRow)
    assert first.ref != second.ref


def test_sm_id_can_be_read_back_from_the_client_ref() -> None:
    r = read(sm_id=42)
    assert isinstance(r, mas.MtRow)
    assert mas.sm_id_from_ref(r.ref, "oa1") == 42
    assert mas.sm_id_from_ref(r.ref, "oa2") is None
    assert mas.sm_id_from_ref("order-17", "oa1") is None


def test_receipt_code_is_zero_when_delivered() -> None:
    assert mas.receipt_code("delivered", 0) == 0


def test_receipt_code_is_the_carriers_error_code_on_failure() -> None:
    assert mas.receipt_code("undelivered", 13) == 13


def test_receipt_code_is_masds_code_for_the_state_without_a_carrier_code() -> None:
    assert mas.receipt_code("expired", None) == mas.CODES["expired"]
    assert mas.receipt_code("failed", 0) == mas.CODES["failed"]


def test_reply_format_is_gbk_unless_gbk_cannot_carry_the_text() -> None:
    assert mas.mo_msg_fmt("收到，准时参加") == 15
    assert mas.mo_msg_fmt("ok 👍") == 8


def test_gateway_refusal_codes_follow_the_field() -> None:
    assert mas.rejected_code("messages[3].text") == mas.CODES["content_too_long"]
    assert mas.rejected_code("extension") == mas.CODES["bad_src_id"]
    assert mas.rejected_code("priority") == mas.CODES["rejected"]
