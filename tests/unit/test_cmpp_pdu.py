"""The CMPP PDU codec and Msg_Id: exact layouts written from the spec's field tables, round trips for every
PDU in both versions, and the errors malformed input must raise."""

from __future__ import annotations

import hashlib
import pickle
import struct
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from masd_adapters.cmpp import constants as c
from masd_adapters.cmpp import msgid, pdu
from masd_adapters.cmpp.pdu import PduError

V20, V30 = c.VERSION_20, c.VERSION_30


def pad(text: str, width: int) -> bytes:
    return text.encode().ljust(width, b"\0")


def header(length: int, command_id: int, sequence: int) -> bytes:
    return struct.pack(">III", length, command_id, sequence)


# ----- CONNECT -------------------------------------------------------------------------------------------


def test_connect_30_is_the_39_octets_of_the_spec_table():
    source = hashlib.md5(b"901234" + b"\0" * 9 + b"secret" + b"1204093000").digest()
    expected = (
        bytes.fromhex("00000027 00000001 00000001")
        + b"901234"
        + source
        + b"\x30"
        + (1204093000).to_bytes(4, "big")
    )
    connect = pdu.connect_request("901234", "secret", timestamp=1204093000, version=V30)
    wire = pdu.encode(connect, sequence_id=1, version=V30)
    assert len(wire) == 39
    assert wire == expected
    assert source.hex() == "b514497401d9e66ab18e033d7ad04ccc"


def test_connect_matches_the_vector_gocmpp_publishes():
    # bigwhite/gocmpp connect_test.go: Source_Addr 900001, secret 888888, Timestamp 1021080510, 0x21.
    expected = bytes.fromhex(
        "00000027 00000001 00000017 39303030303190d00c1d517abd0b4f65f6bcf8535d16 21 3cdc73be"
    )
    connect = pdu.connect_request("900001", "888888", timestamp=1021080510, version=0x21)
    assert pdu.encode(connect, sequence_id=0x17, version=V20) == expected


def test_timestamp_text_keeps_the_leading_zero_of_january_to_september():
    assert pdu.timestamp_text(201000000) == "0201000000"
    assert pdu.timestamp_of(datetime(2024, 2, 1, 0, 0, 0)) == 201000000
    source = pdu.authenticator_source("901234", "s", 201000000)
    assert source == hashlib.md5(b"901234" + bytes(9) + b"s" + b"0201000000").digest()


def test_connect_resp_20_has_a_one_octet_status_and_30_a_four_octet_one():
    source = bytes(range(16))
    ismg20 = pdu.authenticator_ismg(0, source, "secret", version=V20)
    ismg30 = pdu.authenticator_ismg(0, source, "secret", version=V30)
    assert ismg20 == hashlib.md5(b"\x00" + source + b"secret").digest()
    assert ismg30 == hashlib.md5(b"\x00\x00\x00\x00" + source + b"secret").digest()
    wire20 = pdu.encode(pdu.ConnectResp(0, ismg20, V20), sequence_id=9, version=V20)
    wire30 = pdu.encode(pdu.ConnectResp(0, ismg30, V30), sequence_id=9, version=V30)
    assert wire20 == header(30, c.CONNECT_RESP, 9) + b"\x00" + ismg20 + b"\x20"
    assert wire30 == header(33, c.CONNECT_RESP, 9) + b"\x00\x00\x00\x00" + ismg30 + b"\x30"


def test_connect_resp_is_read_in_the_layout_of_its_length_whatever_version_was_asked():
    refusal = header(30, c.CONNECT_RESP, 1) + bytes((c.CONNECT_VERSION_TOO_HIGH,)) + bytes(16) + b"\x20"
    packet = pdu.decode(refusal, version=V30)
    assert packet.pdu == pdu.ConnectResp(c.CONNECT_VERSION_TOO_HIGH, bytes(16), V20)
    assert c.connect_status_name(packet.pdu.status) == "version too high"


def test_a_short_connect_resp_that_says_ok_to_a_3_0_login_is_a_cut_3_0_answer():
    # 18 body octets read in 2.0's layout would say "ok": on a 3.0 login only a refusal comes so short.
    cut = header(30, c.CONNECT_RESP, 1) + bytes(18)
    with pytest.raises(pdu.PduError, match="Status"):
        pdu.decode(cut, version=V30)
    assert pdu.decode(cut, version=V20).pdu == pdu.ConnectResp(0, bytes(16), 0)


def test_connect_status_names():
    assert c.connect_status_name(0) == "ok"
    assert c.connect_status_name(3) == "authentication failed"
    assert c.connect_status_name(5) == "other error (5)"
    assert c.connect_status_name(200) == "other error (200)"


# ----- SUBMIT --------------------------------------------------------------------------------------------


def _submit(**fields: object) -> pdu.Submit:
    base: dict[str, object] = dict(
        pk_total=1,
        pk_number=1,
        registered_delivery=1,
        msg_level=2,
        service_id="MAS",
        fee_user_type=2,
        fee_terminal_id="",
        tp_pid=0,
        tp_udhi=0,
        msg_fmt=8,
        msg_src="901234",
        fee_type="01",
        fee_code="000000",
        src_id="10657001",
        dest_terminal_ids=("13800138000",),
        msg_content="你好".encode("utf-16-be"),
    )
    base.update(fields)
    return pdu.Submit(**base)  # type: ignore[arg-type]


def _submit_fields_before_dest(tid: int, v30: bool) -> bytes:
    return (
        bytes(8)  # Msg_Id
        + b"\x01\x01\x01\x02"  # Pk_total, Pk_number, Registered_Delivery, Msg_level
        + pad("MAS", 10)
        + b"\x02"  # Fee_UserType
        + bytes(tid)  # Fee_terminal_Id
        + (b"\x00" if v30 else b"")  # Fee_terminal_type
        + b"\x00\x00\x08"  # TP_pId, TP_udhi, Msg_Fmt
        + b"901234"
        + b"01"
        + b"000000"
        + bytes(17)
        + bytes(17)
        + pad("10657001", 21)
        + b"\x01"  # DestUsr_tl
    )


def test_submit_20_layout():
    content = "你好".encode("utf-16-be")
    expected_body = (
        _submit_fields_before_dest(21, False)
        + pad("13800138000", 21)
        + bytes((len(content),))
        + content
        + bytes(8)  # Reserve
    )
    assert len(expected_body) == 117 + 21 + 1 + 4 + 8
    wire = pdu.encode(_submit(), sequence_id=7, version=V20)
    assert wire == header(12 + len(expected_body), c.SUBMIT, 7) + expected_body


def test_submit_30_layout_has_terminal_types_32_octet_ids_and_link_id():
    content = "你好".encode("utf-16-be")
    expected_body = (
        _submit_fields_before_dest(32, True)
        + pad("13800138000", 32)
        + b"\x00"  # Dest_terminal_type
        + bytes((len(content),))
        + content
        + pad("LINK1", 20)
    )
    assert len(expected_body) == 129 + 32 + 1 + 1 + 4 + 20
    wire = pdu.encode(_submit(link_id="LINK1"), sequence_id=7, version=V30)
    assert wire == header(12 + len(expected_body), c.SUBMIT, 7) + expected_body


def test_submit_refuses_fields_of_the_other_version():
    with pytest.raises(ValueError, match="link_id"):
        pdu.encode(_submit(link_id="x"), sequence_id=1, version=V20)
    with pytest.raises(ValueError, match="dest_terminal_type"):
        pdu.encode(_submit(dest_terminal_type=1), sequence_id=1, version=V20)
    with pytest.raises(ValueError, match="reserve"):
        pdu.encode(_submit(reserve="x"), sequence_id=1, version=V30)


def test_submit_refuses_values_that_do_not_fit_naming_the_field():
    with pytest.raises(ValueError, match="Service_Id"):
        pdu.encode(_submit(service_id="12345678901"), sequence_id=1, version=V30)
    with pytest.raises(ValueError, match=r"Dest_terminal_Id\[1\]"):
        pdu.encode(_submit(dest_terminal_ids=("1", "x" * 22)), sequence_id=1, version=V20)
    with pytest.raises(ValueError, match="Msg_Content"):
        pdu.encode(_submit(msg_content=bytes(256)), sequence_id=1, version=V30)
    with pytest.raises(ValueError, match="DestUsr_tl"):
        pdu.encode(_submit(dest_terminal_ids=()), sequence_id=1, version=V30)
    with pytest.raises(ValueError, match="Msg_src"):
        pdu.encode(_submit(msg_src="短信"), sequence_id=1, version=V30)


def test_submit_resp_result_is_one_octet_in_20_and_four_in_30():
    resp = pdu.SubmitResp(msg_id=0x0123456789ABCDEF, result=c.RESULT_FLOW_CONTROL)
    wire20 = pdu.encode(resp, sequence_id=3, version=V20)
    wire30 = pdu.encode(resp, sequence_id=3, version=V30)
    assert wire20 == header(21, c.SUBMIT_RESP, 3) + bytes.fromhex("0123456789ABCDEF") + b"\x08"
    assert wire30 == header(24, c.SUBMIT_RESP, 3) + bytes.fromhex("0123456789ABCDEF") + b"\x00\x00\x00\x08"


def test_result_names():
    assert c.result_name(0) == "ok"
    assert c.result_name(8) == "flow control"
    assert c.result_name(9) == "other error (9)"


# ----- DELIVER and the status report -----------------------------------------------------------------


def test_deliver_20_and_30_layouts():
    content = b"hi"
    common = bytes.fromhex("0000000000000042") + pad("106570011", 21) + pad("MAS", 10) + b"\x00\x00\x00"
    wire20 = pdu.encode(
        pdu.Deliver(0x42, "106570011", "MAS", src_terminal_id="13800138000", msg_content=content),
        sequence_id=5,
        version=V20,
    )
    body20 = common + pad("13800138000", 21) + b"\x00" + b"\x02hi" + bytes(8)
    assert len(body20) == 65 + 2 + 8
    assert wire20 == header(12 + len(body20), c.DELIVER, 5) + body20
    wire30 = pdu.encode(
        pdu.Deliver(
            0x42, "106570011", "MAS", src_terminal_id="13800138000", msg_content=content, link_id="L"
        ),
        sequence_id=5,
        version=V30,
    )
    body30 = common + pad("13800138000", 32) + b"\x00" + b"\x00" + b"\x02hi" + pad("L", 20)
    assert len(body30) == 77 + 2 + 20
    assert wire30 == header(12 + len(body30), c.DELIVER, 5) + body30


def test_report_is_60_octets_in_20():
    report = pdu.Report(0x1122334455667788, "DELIVRD", "2403151200", "2403151201", "13800138000", 99)
    expected = (
        bytes.fromhex("1122334455667788")
        + b"DELIVRD"
        + b"2403151200"
        + b"2403151201"
        + pad("13800138000", 21)
        + (99).to_bytes(4, "big")
    )
    assert len(expected) == 60
    assert pdu.encode_report(report, version=V20) == expected
    assert pdu.decode_report(expected) == report


def test_report_is_71_octets_in_30():
    report = pdu.Report(1, "UNDELIV", "2403151200", "2403151230", "8613800138000", 0xFFFFFFFF)
    expected = (
        bytes.fromhex("0000000000000001")
        + b"UNDELIV"
        + b"2403151200"
        + b"2403151230"
        + pad("8613800138000", 32)
        + b"\xff\xff\xff\xff"
    )
    assert len(expected) == 71
    assert pdu.encode_report(report, version=V30) == expected
    assert pdu.decode_report(expected) == report


def test_report_inside_a_deliver_round_trips():
    report = pdu.Report(7, "MA:0001", "2403151200", "2403151230", "13800138000", 1)
    content = pdu.encode_report(report, version=V30)
    deliver = pdu.Deliver(
        123, "10657001", src_terminal_id="13800138000", registered_delivery=1, msg_content=content
    )
    packet = pdu.decode(pdu.encode(deliver, sequence_id=1, version=V30), version=V30)
    assert isinstance(packet.pdu, pdu.Deliver)
    assert packet.pdu.is_report
    assert pdu.decode_report(packet.pdu.msg_content) == report


def test_report_of_another_length_names_the_field():
    with pytest.raises(PduError, match="Msg_Content") as caught:
        pdu.decode_report(bytes(59))
    assert caught.value.field == "Msg_Content"


def test_deliver_resp_layouts():
    resp = pdu.DeliverResp(5, 0)
    assert (
        pdu.encode(resp, sequence_id=2, version=V20) == header(21, c.DELIVER_RESP, 2) + bytes(7) + b"\x05\x00"
    )
    assert pdu.encode(resp, sequence_id=2, version=V30) == header(24, c.DELIVER_RESP, 2) + bytes(
        7
    ) + b"\x05" + bytes(4)


def test_link_pdus_layouts():
    for version in (V20, V30):
        assert pdu.encode(pdu.ActiveTest(), sequence_id=4, version=version) == header(12, c.ACTIVE_TEST, 4)
        assert pdu.encode(pdu.ActiveTestResp(), sequence_id=4, version=version) == header(
            13, c.ACTIVE_TEST_RESP, 4
        ) + bytes(1)
        assert pdu.encode(pdu.Terminate(), sequence_id=4, version=version) == header(12, c.TERMINATE, 4)
        assert pdu.encode(pdu.TerminateResp(), sequence_id=4, version=version) == header(
            12, c.TERMINATE_RESP, 4
        )


def test_octet_strings_lose_their_trailing_nuls_only():
    deliver = pdu.Deliver(1, "1065\x007", src_terminal_id="138")
    packet = pdu.decode(pdu.encode(deliver, sequence_id=1, version=V20), version=V20)
    assert isinstance(packet.pdu, pdu.Deliver)
    assert packet.pdu.dest_id == "1065\x007"


# ----- round trips ---------------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, msgid.MAX)
versions = st.sampled_from([V20, V30])


def octet_text(width: int) -> st.SearchStrategy[str]:
    # Latin-1 text without a trailing NUL (decoding strips those: the spec pads with them).
    return st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=width).filter(
        lambda s: not s.endswith("\0")
    )


content = st.binary(max_size=255)


@st.composite
def submits(draw: st.DrawFn, version: int) -> pdu.Submit:
    tid = 32 if version == V30 else 21
    v30 = version == V30
    return pdu.Submit(
        msg_id=draw(u64),
        pk_total=draw(u8),
        pk_number=draw(u8),
        registered_delivery=draw(u8),
        msg_level=draw(u8),
        service_id=draw(octet_text(10)),
        fee_user_type=draw(u8),
        fee_terminal_id=draw(octet_text(tid)),
        fee_terminal_type=draw(u8) if v30 else 0,
        tp_pid=draw(u8),
        tp_udhi=draw(u8),
        msg_fmt=draw(u8),
        msg_src=draw(octet_text(6)),
        fee_type=draw(octet_text(2)),
        fee_code=draw(octet_text(6)),
        valid_time=draw(octet_text(17)),
        at_time=draw(octet_text(17)),
        src_id=draw(octet_text(21)),
        dest_terminal_ids=tuple(draw(st.lists(octet_text(tid), min_size=1, max_size=5))),
        dest_terminal_type=draw(u8) if v30 else 0,
        msg_content=draw(content),
        link_id=draw(octet_text(20)) if v30 else "",
        reserve="" if v30 else draw(octet_text(8)),
    )


@st.composite
def delivers(draw: st.DrawFn, version: int) -> pdu.Deliver:
    v30 = version == V30
    return pdu.Deliver(
        msg_id=draw(u64),
        dest_id=draw(octet_text(21)),
        service_id=draw(octet_text(10)),
        tp_pid=draw(u8),
        tp_udhi=draw(u8),
        msg_fmt=draw(u8),
        src_terminal_id=draw(octet_text(32 if v30 else 21)),
        src_terminal_type=draw(u8) if v30 else 0,
        registered_delivery=draw(u8),
        msg_content=draw(content),
        link_id=draw(octet_text(20)) if v30 else "",
        reserve="" if v30 else draw(octet_text(8)),
    )


@st.composite
def any_pdu(draw: st.DrawFn) -> tuple[int, pdu.Pdu]:
    version = draw(versions)
    result = u32 if version == V30 else u8
    choice = draw(
        st.one_of(
            st.builds(pdu.Connect, octet_text(6), st.binary(min_size=16, max_size=16), u8, u32),
            st.builds(pdu.ConnectResp, result, st.binary(min_size=16, max_size=16), u8),
            submits(version),
            st.builds(pdu.SubmitResp, u64, result),
            delivers(version),
            st.builds(pdu.DeliverResp, u64, result),
            st.just(pdu.ActiveTest()),
            st.builds(pdu.ActiveTestResp, u8),
            st.just(pdu.Terminate()),
            st.just(pdu.TerminateResp()),
        )
    )
    return version, choice


@given(any_pdu(), u32)
def test_every_pdu_round_trips_in_both_versions(case: tuple[int, pdu.Pdu], sequence: int):
    version, value = case
    wire = pdu.encode(value, sequence_id=sequence, version=version)
    assert pdu.decode_header(wire).total_length == len(wire)
    assert pdu.decode(wire, version=version) == pdu.Packet(sequence, value)


@given(versions, u64, octet_text(7), octet_text(10), octet_text(10), octet_text(21), u32)
def test_every_report_round_trips(version, msg_id, stat, submitted, done, dest, sequence):
    report = pdu.Report(msg_id, stat, submitted, done, dest, sequence)
    octets = pdu.encode_report(report, version=version)
    assert len(octets) == pdu.REPORT_LENGTH[version]
    assert pdu.decode_report(octets) == report


# ----- malformed input ---------------------------------------------------------------------------------


def _with_length(wire: bytes) -> bytes:
    return struct.pack(">I", len(wire)) + wire[4:]


@given(any_pdu(), st.data())
def test_a_truncated_body_raises_naming_the_field(case: tuple[int, pdu.Pdu], data: st.DataObject):
    version, value = case
    wire = pdu.encode(value, sequence_id=1, version=version)
    if len(wire) == 12:
        return
    cut = data.draw(st.integers(12, len(wire) - 1))
    with pytest.raises(PduError) as caught:
        pdu.decode(_with_length(wire[:cut]), version=version)
    assert caught.value.field
    assert caught.value.field in str(caught.value)


def test_a_truncated_submit_names_the_field_it_was_reading():
    wire = pdu.encode(_submit(), sequence_id=1, version=V30)
    # 12 header + 8 Msg_Id + 4 + 10 Service_Id + 1 + 10 of the 32-octet Fee_terminal_Id
    with pytest.raises(PduError, match="CMPP_SUBMIT: Fee_terminal_Id: truncated"):
        pdu.decode(_with_length(wire[: 12 + 8 + 4 + 10 + 1 + 10]), version=V30)


def test_an_oversized_body_raises_naming_the_last_field():
    wire = pdu.encode(_submit(), sequence_id=1, version=V20)
    with pytest.raises(PduError, match="oversized") as caught:
        pdu.decode(_with_length(wire + b"\0"), version=V20)
    assert caught.value.field == "Reserve"
    wire = pdu.encode(pdu.ActiveTestResp(), sequence_id=1, version=V30)
    with pytest.raises(PduError, match="Reserved"):
        pdu.decode(_with_length(wire + b"\0"), version=V30)


def test_total_length_must_match_the_octets_given():
    wire = pdu.encode(pdu.ActiveTest(), sequence_id=1, version=V30)
    with pytest.raises(PduError, match="Total_Length"):
        pdu.decode(wire + b"\0", version=V30)
    with pytest.raises(PduError, match="Total_Length"):
        pdu.decode_header(header(11, c.ACTIVE_TEST, 1))
    with pytest.raises(PduError, match="Total_Length"):
        pdu.decode_header(header(pdu.MAX_PDU + 1, c.SUBMIT, 1))
    with pytest.raises(PduError, match="truncated"):
        pdu.decode_header(b"\0\0\0")


def test_an_unknown_command_id_is_named():
    with pytest.raises(PduError, match="0x00000099"):
        pdu.decode(header(12, 0x99, 1), version=V30)


def test_a_connect_resp_of_another_size_is_refused():
    with pytest.raises(PduError, match="CMPP_CONNECT_RESP"):
        pdu.decode(header(31, c.CONNECT_RESP, 1) + bytes(19), version=V30)


def test_an_unknown_version_has_no_layout():
    with pytest.raises(ValueError, match="0x21"):
        pdu.encode(pdu.ActiveTest(), sequence_id=1, version=0x21)


def test_pdu_error_survives_pickling():
    error = PduError("truncated", command="CMPP_SUBMIT", field="LinkID")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.command, copy.field) == (str(error), "CMPP_SUBMIT", "LinkID")


# ----- Msg_Id ------------------------------------------------------------------------------------------


def test_msg_id_packs_fields_most_significant_first():
    value = msgid.pack(msgid.MsgId(12, 31, 23, 59, 59, 0x3FFFFF, 0xFFFF))
    expected = (12 << 60) | (31 << 55) | (23 << 50) | (59 << 44) | (59 << 38) | (0x3FFFFF << 16) | 0xFFFF
    assert value == expected
    assert msgid.unpack(value) == msgid.MsgId(12, 31, 23, 59, 59, 0x3FFFFF, 0xFFFF)


@pytest.mark.parametrize("value", [0, 1, 0xFFFF, 1 << 16, 1 << 63, msgid.MAX])
def test_msg_id_edge_values_round_trip(value: int):
    assert msgid.pack(msgid.unpack(value)) == value
    assert msgid.from_text(msgid.to_text(value)) == value
    assert msgid.from_bytes(msgid.to_bytes(value)) == value


def test_all_ones_is_every_field_at_its_maximum():
    assert msgid.unpack(msgid.MAX) == msgid.MsgId(15, 31, 31, 63, 63, (1 << 22) - 1, 0xFFFF)


def test_a_december_msg_id_stays_positive_in_its_text():
    value = msgid.pack(msgid.MsgId(12, 1, 0, 0, 0, 1, 1))
    assert value >= 1 << 63
    assert msgid.to_text(value) == str(value)
    assert not msgid.to_text(value).startswith("-")


def test_msg_id_readable_form():
    assert msgid.MsgId(3, 5, 9, 7, 1, 1234, 42).readable() == "0305090701000123400042"


@given(u64)
def test_msg_id_round_trips(value: int):
    assert msgid.pack(msgid.unpack(value)) == value
    assert msgid.from_text(msgid.to_text(value)) == value


def test_msg_id_fields_must_fit_their_widths():
    with pytest.raises(ValueError, match="month 16"):
        msgid.MsgId(16, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="ismg_code"):
        msgid.MsgId(1, 1, 1, 1, 1, 1 << 22, 1)
    with pytest.raises(ValueError, match="sequence"):
        msgid.MsgId(1, 1, 1, 1, 1, 1, -1)


@pytest.mark.parametrize("text", ["", "-1", "007", "18446744073709551616", "12a", "１２"])
def test_msg_id_text_must_be_the_canonical_unsigned_decimal(text: str):
    with pytest.raises(ValueError):
        msgid.from_text(text)


def test_msg_id_octets_must_be_eight():
    with pytest.raises(ValueError, match="8 octets"):
        msgid.from_bytes(bytes(7))
    with pytest.raises(ValueError):
        msgid.to_bytes(msgid.MAX + 1)
