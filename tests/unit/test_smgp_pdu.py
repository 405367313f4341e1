"""The SMGP 3.0 PDU codec, its TLVs, the status report and the BCD MsgID: exact layouts written from the
spec's field tables (SMGP V3.0.3, 5.2 and 6), vectors produced by yedamao/go_smgp, round trips for every
PDU, and the errors malformed input must raise."""

from __future__ import annotations

import hashlib
import pickle
import struct
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from masd_adapters.smgp import constants as c
from masd_adapters.smgp import msgid, pdu
from masd_adapters.smgp.pdu import PduError, Tlv

SPEC_MSG_ID = bytes.fromhex("01006101161700012345")  # 6.2.26's example


def pad(text: str, width: int) -> bytes:
    return text.encode().ljust(width, b"\0")


def header(length: int, request_id: int, sequence: int) -> bytes:
    return struct.pack(">III", length, request_id, sequence)


def with_length(wire: bytes) -> bytes:
    return struct.pack(">I", len(wire)) + wire[4:]


# ----- Login ---------------------------------------------------------------------------------------------


def test_authenticator_client_pads_the_client_id_with_seven_zero_octets_not_nine():
    # 6.2.2: MD5(ClientID + 7 octets 0x00 + secret + "MMDDHHMMSS"); go_smgp gives the same digest.
    expected = hashlib.md5(b"SP0001" + bytes(7) + b"secret" + b"0301000000").digest()
    assert pdu.authenticator_client("SP0001", "secret", 301000000) == expected
    assert expected.hex() == "481b5c3eb6e8c516628db6259a2ebef7"
    assert expected != hashlib.md5(b"SP0001" + bytes(9) + b"secret" + b"0301000000").digest()


def test_timestamp_is_the_specs_example():
    # 6.2.4: 1 March 00:00:00 is 0301000000 in the digest and 0x11F0E540 on the wire.
    assert pdu.timestamp_of(datetime(2024, 3, 1, 0, 0, 0)) == 0x11F0E540
    assert pdu.timestamp_text(0x11F0E540) == "0301000000"
    with pytest.raises(ValueError, match="TimeStamp"):
        pdu.timestamp_text(10_000_000_000)


def test_login_is_the_42_octets_go_smgp_writes():
    login = pdu.login_request("SP0001", "secret", timestamp=301000000, login_mode=c.LOGIN_MODE_TRANSMIT)
    wire = pdu.encode(login, sequence_id=1)
    expected = (
        header(42, c.LOGIN, 1)
        + pad("SP0001", 8)
        + bytes.fromhex("481b5c3eb6e8c516628db6259a2ebef7")
        + b"\x02"  # LoginMode
        + bytes.fromhex("11f0e540")  # TimeStamp
        + b"\x30"  # ClientVersion 3.0
    )
    assert wire == expected
    assert wire.hex() == (
        "0000002a00000001000000015350303030310000481b5c3eb6e8c516628db6259a2ebef70211f0e54030"
    )


def test_login_resp_has_a_four_octet_status_and_the_server_authenticator():
    client = bytes(range(16))
    server = pdu.authenticator_server(0, client, "secret")
    assert server == hashlib.md5(bytes(4) + client + b"secret").digest()
    wire = pdu.encode(pdu.LoginResp(c.STATUS_AUTH_FAILED, bytes(16)), sequence_id=1)
    assert wire == header(33, c.LOGIN_RESP, 1) + b"\x00\x00\x00\x15" + bytes(16) + b"\x30"
    assert pdu.decode(wire).pdu == pdu.LoginResp(21, bytes(16), 0x30)


# ----- Submit --------------------------------------------------------------------------------------------


def _submit(**fields: object) -> pdu.Submit:
    base: dict[str, object] = dict(
        priority=c.PRIORITY_NORMAL,
        service_id="MAS",
        fee_type=c.FEE_TYPE_PER_MESSAGE,
        fee_code="000010",
        fixed_fee="000000",
        msg_format=c.MSG_FORMAT_GB18030,
        src_term_id="1180001",
        dest_term_ids=("13300000000",),
        msg_content=b"hi",
    )
    base.update(fields)
    return pdu.Submit(**base)  # type: ignore[arg-type]


def _submit_fixed_body(content: bytes) -> bytes:
    return (
        b"\x06\x01\x01"  # MsgType MT, NeedReport, Priority
        + pad("MAS", 10)
        + b"01"
        + b"000010"
        + b"000000"
        + b"\x0f"  # MsgFormat GB18030
        + bytes(17)  # ValidTime
        + bytes(17)  # AtTime
        + pad("1180001", 21)
        + bytes(21)  # ChargeTermID
        + b"\x01"  # DestTermIDCount
        + pad("13300000000", 21)
        + bytes((len(content),))
        + content
        + bytes(8)  # Reserve
    )


def test_submit_layout_without_optional_parameters():
    body = _submit_fixed_body(b"hi")
    assert len(body) == 105 + 21 + 1 + 2 + 8
    assert pdu.encode(_submit(), sequence_id=7) == header(12 + len(body), c.SUBMIT, 7) + body


def test_submit_with_tlvs_is_what_go_smgp_writes():
    # go_smgp's NewSubmit with TP_udhi 1 and PkTotal 2 (it writes its options map in random order; this
    # is the run in tag order, which is the order masd writes).
    expected = bytes.fromhex(
        "0000009f00000002000000070601014d41530000000000000030313030303031303030303030300f00000000000000"
        "0000000000000000000000000000000000000000000000000000003131383030303100000000000000000000000000"
        "0000000000000000000000000000000000000000000001313333303030303030303000000000000000000000026869"
        "000000000000000000020001010009000102"
    )
    wire = pdu.encode(_submit(tp_udhi=1, pk_total=2), sequence_id=7)
    assert wire == expected
    assert wire == header(159, c.SUBMIT, 7) + _submit_fixed_body(b"hi") + bytes.fromhex(
        "00020001010009000102"
    )


def test_submit_tlvs_are_written_in_tag_order_with_the_specs_widths():
    wire = pdu.encode(
        _submit(link_id="L1", pk_number=1, pk_total=3, tp_udhi=1, msg_src="SP0001", m_service_id="P9"),
        sequence_id=1,
    )
    tlvs = wire[12 + len(_submit_fixed_body(b"hi")) :]
    assert tlvs == (
        bytes.fromhex("0002 0001 01")
        + bytes.fromhex("0003 0014")
        + pad("L1", 20)
        + bytes.fromhex("0009 0001 03")
        + bytes.fromhex("000a 0001 01")
        + bytes.fromhex("0010 0008")
        + pad("SP0001", 8)
        + bytes.fromhex("0012 0015")
        + pad("P9", 21)
    )


def test_a_pseudo_code_tlv_is_as_long_as_its_value():
    wire = pdu.encode(_submit(charge_term_pseudo="abc"), sequence_id=1)
    assert wire.endswith(bytes.fromhex("0006 0003") + b"abc")


def test_submit_refuses_values_that_do_not_fit_naming_the_field():
    with pytest.raises(ValueError, match="ServiceID"):
        pdu.encode(_submit(service_id="12345678901"), sequence_id=1)
    with pytest.raises(ValueError, match=r"DestTermID\[1\]"):
        pdu.encode(_submit(dest_term_ids=("1", "x" * 22)), sequence_id=1)
    with pytest.raises(ValueError, match="DestTermIDCount"):
        pdu.encode(_submit(dest_term_ids=()), sequence_id=1)
    with pytest.raises(ValueError, match="DestTermIDCount"):
        pdu.encode(_submit(dest_term_ids=("1",) * 101), sequence_id=1)
    with pytest.raises(ValueError, match="SrcTermID"):
        pdu.encode(_submit(src_term_id="短信"), sequence_id=1)
    with pytest.raises(ValueError, match="LinkID"):
        pdu.encode(_submit(link_id="x" * 21), sequence_id=1)
    with pytest.raises(ValueError, match="PkTotal"):
        pdu.encode(_submit(pk_total=256), sequence_id=1)


def test_an_mt_message_is_at_most_140_octets():
    assert pdu.decode(pdu.encode(_submit(msg_content=bytes(140)), sequence_id=1)).pdu == _submit(
        msg_content=bytes(140)
    )
    with pytest.raises(ValueError, match="MsgContent is 141 octets"):
        pdu.encode(_submit(msg_content=bytes(141)), sequence_id=1)


def test_a_named_tag_belongs_in_its_field_not_in_other_tlvs():
    with pytest.raises(ValueError, match="TP_udhi is a field of this PDU: set tp_udhi"):
        pdu.encode(_submit(other_tlvs=(Tlv(c.TAG_TP_UDHI, b"\x01"),)), sequence_id=1)


def test_submit_resp_layout():
    wire = pdu.encode(pdu.SubmitResp(SPEC_MSG_ID, c.STATUS_DAILY_VOLUME_EXCEEDED), sequence_id=3)
    assert wire == header(26, c.SUBMIT_RESP, 3) + SPEC_MSG_ID + b"\x00\x00\x00\x4b"
    with pytest.raises(ValueError, match="MsgID"):
        pdu.encode(pdu.SubmitResp(bytes(8), 0), sequence_id=3)


# ----- optional parameters on decoding -------------------------------------------------------------


def _submit_wire(tlvs: bytes) -> bytes:
    return with_length(pdu.encode(_submit(), sequence_id=1) + tlvs)


def test_unknown_tlvs_are_kept_in_order_and_ignored():
    extra = bytes.fromhex("7001 0002 abcd") + bytes.fromhex("000f 0001 01")  # vendor tag, NodesCount
    submit = pdu.decode(_submit_wire(bytes.fromhex("0002 0001 01") + extra)).pdu
    assert isinstance(submit, pdu.Submit)
    assert submit.tp_udhi == 1
    assert submit.other_tlvs == (Tlv(0x7001, b"\xab\xcd"), Tlv(c.TAG_NODES_COUNT, b"\x01"))
    assert pdu.encode(submit, sequence_id=1) == _submit_wire(bytes.fromhex("0002 0001 01") + extra)


def test_a_repeated_tag_keeps_its_first_value_and_the_rest_as_they_came():
    submit = pdu.decode(_submit_wire(bytes.fromhex("0009 0001 02 0009 0001 05"))).pdu
    assert isinstance(submit, pdu.Submit)
    assert submit.pk_total == 2
    assert submit.other_tlvs == (Tlv(c.TAG_PK_TOTAL, b"\x05"),)


def test_an_integer_tlv_of_two_octets_is_read_as_one_number():
    # go_smgp's own tests put TP_udhi and PkTotal in two octets; the spec says one.
    submit = pdu.decode(_submit_wire(bytes.fromhex("0002 0002 0001 0009 0002 000a"))).pdu
    assert isinstance(submit, pdu.Submit)
    assert (submit.tp_udhi, submit.pk_total) == (1, 10)


def test_an_octet_string_tlv_of_any_length_loses_its_trailing_nuls():
    submit = pdu.decode(_submit_wire(bytes.fromhex("0003 0004") + b"L7\0\0")).pdu
    assert isinstance(submit, pdu.Submit)
    assert submit.link_id == "L7"


def test_an_empty_integer_tlv_names_the_parameter():
    with pytest.raises(PduError, match="SMGP_Submit: PkNumber: Length 0") as caught:
        pdu.decode(_submit_wire(bytes.fromhex("000a 0000")))
    assert caught.value.field == "PkNumber"


def test_a_truncated_tlv_names_what_was_cut():
    with pytest.raises(PduError, match="SMGP_Submit: TLV: truncated: 3 octet"):
        pdu.decode(_submit_wire(bytes.fromhex("0002 00")))
    with pytest.raises(PduError, match="SMGP_Submit: LinkID: truncated") as caught:
        pdu.decode(_submit_wire(bytes.fromhex("0003 0014") + b"short"))
    assert caught.value.field == "LinkID"
    with pytest.raises(PduError, match="TLV 0x7001: truncated"):
        pdu.decode(_submit_wire(bytes.fromhex("7001 0009 00")))


# ----- Deliver and the status report -----------------------------------------------------------------


def test_deliver_is_what_go_smgp_writes():
    expected = bytes.fromhex(
        "0000005b00000003000000090100610116170001234500083230323430333135313230303030313333303030303030"
        "303000000000000000000000313138303030310000000000000000000000000000024f600000000000000000"
    )
    deliver = pdu.Deliver(
        SPEC_MSG_ID,
        msg_format=c.MSG_FORMAT_UCS2,
        recv_time="20240315120000",
        src_term_id="13300000000",
        dest_term_id="1180001",
        msg_content="你".encode("utf-16-be"),
    )
    wire = pdu.encode(deliver, sequence_id=9)
    assert wire == expected
    body = (
        SPEC_MSG_ID
        + b"\x00\x08"
        + b"20240315120000"
        + pad("13300000000", 21)
        + pad("1180001", 21)
        + b"\x02\x4f\x60"
        + bytes(8)
    )
    assert wire == header(12 + 77 + 2, c.DELIVER, 9) + body
    assert pdu.decode(wire) == pdu.Packet(9, deliver)


def test_deliver_keeps_its_link_id_and_udhi():
    deliver = pdu.Deliver(SPEC_MSG_ID, tp_udhi=1, link_id="LINK", src_term_type=0, msg_content=b"\x05")
    wire = pdu.encode(deliver, sequence_id=1)
    assert wire.endswith(
        bytes.fromhex("0002 0001 01")
        + bytes.fromhex("0003 0014")
        + pad("LINK", 20)
        + bytes.fromhex("000d 0001 00")
    )
    assert pdu.decode(wire).pdu == deliver


def _report_octets(text: bytes = b"002hi") -> bytes:
    return (
        b"id:"
        + SPEC_MSG_ID
        + b" sub:001 dlvrd:001 Submit date:2403151200 done date:2403151201 stat:DELIVRD err:000 Text:"
        + text.ljust(20, b"\0")
    )


def test_report_is_the_122_octets_go_smgp_writes():
    expected = bytes.fromhex(
        "69643a01006101161700012345207375623a30303120646c7672643a303031205375626d697420646174653a32343033"
        "31353132303020646f6e6520646174653a3234303331353132303120737461743a44454c49565244206572723a303030"
        "20546578743a3030326869000000000000000000000000000000"
    )
    report = pdu.Report(SPEC_MSG_ID, c.STAT_DELIVERED, "2403151200", "2403151201", text=b"002hi")
    assert len(expected) == pdu.REPORT_LENGTH == 122
    assert pdu.encode_report(report) == expected == _report_octets()
    assert pdu.decode_report(expected) == report


def test_report_is_read_by_position_whatever_the_labels_say():
    # Two spellings go_smgp's tests accept from real gateways: lower-case labels, and "s" as separator.
    lower = (
        b"id:" + SPEC_MSG_ID + b" sub:001 dlvrd:001 submit date:2403151200 done date:2403151201 stat:UNDELIV"
        b" err:004 Text:fillfillfillfillfill"
    )
    odd = (
        b"id:" + SPEC_MSG_ID + b"sSub:001sDlvrd:000sSubmit_Date:2403151200sDone_Date:2403151201sStat:EXPIRED"
        b"sErr:001sText:fillfillfillfillfill"
    )
    assert len(lower) == len(odd) == 122
    first = pdu.decode_report(lower)
    assert (first.msg_id, first.stat, first.err, first.done_date) == (
        SPEC_MSG_ID,
        "UNDELIV",
        "004",
        "2403151201",
    )
    second = pdu.decode_report(odd)
    assert (second.stat, second.dlvrd, second.err, second.text) == (
        "EXPIRED",
        "000",
        "001",
        b"fillfillfillfillfill",
    )


def test_report_with_a_short_text_is_read():
    report = pdu.decode_report(_report_octets()[:-15])
    assert (report.stat, report.text) == ("DELIVRD", b"002hi")
    assert pdu.decode_report(_report_octets()[: 122 - 20]).text == b""


def test_report_shorter_than_its_fixed_fields_names_the_field():
    with pytest.raises(PduError, match="status report: MsgContent: 101 octets") as caught:
        pdu.decode_report(_report_octets()[:101])
    assert caught.value.field == "MsgContent"


def test_report_inside_a_deliver_round_trips():
    report = pdu.Report(SPEC_MSG_ID, "UNDELIV", "2403151200", "2403151230", err="005")
    deliver = pdu.Deliver(
        bytes(10),
        is_report=c.IS_REPORT,
        src_term_id="13300000000",
        dest_term_id="1180001",
        msg_content=pdu.encode_report(report),
    )
    packet = pdu.decode(pdu.encode(deliver, sequence_id=1))
    assert isinstance(packet.pdu, pdu.Deliver)
    assert packet.pdu.carries_report
    assert pdu.decode_report(packet.pdu.msg_content) == report
    assert c.ERR_STATS[report.err] == c.STAT_UNDELIVERABLE


def test_report_refuses_a_text_over_20_octets():
    with pytest.raises(ValueError, match="Text"):
        pdu.encode_report(pdu.Report(SPEC_MSG_ID, "DELIVRD", "", "", text=bytes(21)))


def test_deliver_resp_layout():
    wire = pdu.encode(pdu.DeliverResp(SPEC_MSG_ID, 0), sequence_id=2)
    assert wire == header(26, c.DELIVER_RESP, 2) + SPEC_MSG_ID + bytes(4)


def test_link_pdus_have_no_body():
    for value, request_id in (
        (pdu.ActiveTest(), c.ACTIVE_TEST),
        (pdu.ActiveTestResp(), c.ACTIVE_TEST_RESP),
        (pdu.Exit(), c.EXIT),
        (pdu.ExitResp(), c.EXIT_RESP),
    ):
        wire = pdu.encode(value, sequence_id=4)
        assert wire == header(12, request_id, 4)
        assert pdu.decode(wire) == pdu.Packet(4, value)


def test_octet_strings_lose_their_trailing_nuls_only():
    deliver = pdu.Deliver(bytes(10), dest_term_id="1180\x007")
    packet = pdu.decode(pdu.encode(deliver, sequence_id=1))
    assert isinstance(packet.pdu, pdu.Deliver)
    assert packet.pdu.dest_term_id == "1180\x007"


# ----- round trips ---------------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFFFFFF)
msg_ids = st.binary(min_size=10, max_size=10)


def octet_text(width: int, min_size: int = 0) -> st.SearchStrategy[str]:
    # Latin-1 text without a trailing NUL (decoding strips those: the spec pads with them).
    return st.text(
        st.characters(min_codepoint=0, max_codepoint=255), min_size=min_size, max_size=width
    ).filter(lambda s: not s.endswith("\0"))


def optional(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.none() | strategy


def other_tlvs(named: set[int]) -> st.SearchStrategy[tuple[Tlv, ...]]:
    tags = st.integers(0, 0xFFFF).filter(lambda tag: tag not in named)
    return st.lists(st.builds(Tlv, tags, st.binary(max_size=30)), max_size=3).map(tuple)


SUBMIT_TAGS = {c.TAG_TP_PID, c.TAG_TP_UDHI, c.TAG_LINK_ID, c.TAG_CHARGE_USER_TYPE, c.TAG_CHARGE_TERM_TYPE}
SUBMIT_TAGS |= {c.TAG_CHARGE_TERM_PSEUDO, c.TAG_DEST_TERM_TYPE, c.TAG_DEST_TERM_PSEUDO, c.TAG_PK_TOTAL}
SUBMIT_TAGS |= {
    c.TAG_PK_NUMBER,
    c.TAG_SUBMIT_MSG_TYPE,
    c.TAG_SP_DEAL_RESULT,
    c.TAG_MSG_SRC,
    c.TAG_M_SERVICE_ID,
}
DELIVER_TAGS = {c.TAG_TP_PID, c.TAG_TP_UDHI, c.TAG_LINK_ID, c.TAG_SUBMIT_MSG_TYPE, c.TAG_SP_DEAL_RESULT}
DELIVER_TAGS |= {c.TAG_SRC_TERM_TYPE, c.TAG_SRC_TERM_PSEUDO}


@st.composite
def submits(draw: st.DrawFn, *, tlvs: bool = True) -> pdu.Submit:
    def opt(strategy: st.SearchStrategy[object]) -> object:
        return draw(optional(strategy)) if tlvs else None

    return pdu.Submit(
        msg_type=draw(u8),
        need_report=draw(u8),
        priority=draw(u8),
        service_id=draw(octet_text(10)),
        fee_type=draw(octet_text(2)),
        fee_code=draw(octet_text(6)),
        fixed_fee=draw(octet_text(6)),
        msg_format=draw(u8),
        valid_time=draw(octet_text(17)),
        at_time=draw(octet_text(17)),
        src_term_id=draw(octet_text(21)),
        charge_term_id=draw(octet_text(21)),
        dest_term_ids=tuple(draw(st.lists(octet_text(21), min_size=1, max_size=5))),
        msg_content=draw(st.binary(max_size=140)),
        reserve=draw(octet_text(8)),
        tp_pid=opt(u8),  # type: ignore[arg-type]
        tp_udhi=opt(u8),  # type: ignore[arg-type]
        link_id=opt(octet_text(20)),  # type: ignore[arg-type]
        msg_src=opt(octet_text(8)),  # type: ignore[arg-type]
        charge_user_type=opt(u8),  # type: ignore[arg-type]
        charge_term_type=opt(u8),  # type: ignore[arg-type]
        charge_term_pseudo=opt(octet_text(32)),  # type: ignore[arg-type]
        dest_term_type=opt(u8),  # type: ignore[arg-type]
        dest_term_pseudo=opt(octet_text(32)),  # type: ignore[arg-type]
        pk_total=opt(u8),  # type: ignore[arg-type]
        pk_number=opt(u8),  # type: ignore[arg-type]
        submit_msg_type=opt(u8),  # type: ignore[arg-type]
        sp_deal_result=opt(u8),  # type: ignore[arg-type]
        m_service_id=opt(octet_text(21)),  # type: ignore[arg-type]
        other_tlvs=draw(other_tlvs(SUBMIT_TAGS)) if tlvs else (),
    )


@st.composite
def delivers(draw: st.DrawFn, *, tlvs: bool = True) -> pdu.Deliver:
    def opt(strategy: st.SearchStrategy[object]) -> object:
        return draw(optional(strategy)) if tlvs else None

    return pdu.Deliver(
        msg_id=draw(msg_ids),
        is_report=draw(u8),
        msg_format=draw(u8),
        recv_time=draw(octet_text(14)),
        src_term_id=draw(octet_text(21)),
        dest_term_id=draw(octet_text(21)),
        msg_content=draw(st.binary(max_size=255)),
        reserve=draw(octet_text(8)),
        tp_pid=opt(u8),  # type: ignore[arg-type]
        tp_udhi=opt(u8),  # type: ignore[arg-type]
        link_id=opt(octet_text(20)),  # type: ignore[arg-type]
        src_term_type=opt(u8),  # type: ignore[arg-type]
        src_term_pseudo=opt(octet_text(32)),  # type: ignore[arg-type]
        submit_msg_type=opt(u8),  # type: ignore[arg-type]
        sp_deal_result=opt(u8),  # type: ignore[arg-type]
        other_tlvs=draw(other_tlvs(DELIVER_TAGS)) if tlvs else (),
    )


def any_pdu(*, tlvs: bool = True) -> st.SearchStrategy[pdu.Pdu]:
    return st.one_of(
        st.builds(pdu.Login, octet_text(8), st.binary(min_size=16, max_size=16), u8, u32, u8),
        st.builds(pdu.LoginResp, u32, st.binary(min_size=16, max_size=16), u8),
        submits(tlvs=tlvs),
        st.builds(pdu.SubmitResp, msg_ids, u32),
        delivers(tlvs=tlvs),
        st.builds(pdu.DeliverResp, msg_ids, u32),
        st.just(pdu.ActiveTest()),
        st.just(pdu.ActiveTestResp()),
        st.just(pdu.Exit()),
        st.just(pdu.ExitResp()),
    )


@given(any_pdu(), u32)
def test_every_pdu_round_trips(value: pdu.Pdu, sequence: int):
    wire = pdu.encode(value, sequence_id=sequence)
    assert pdu.decode_header(wire).packet_length == len(wire)
    assert pdu.decode(wire) == pdu.Packet(sequence, value)


@given(msg_ids, octet_text(7), octet_text(10), octet_text(10), octet_text(3), octet_text(3), octet_text(3))
def test_every_report_round_trips(msg_id, stat, submitted, done, err, sub, dlvrd):
    text = b"003abc"
    report = pdu.Report(msg_id, stat, submitted, done, err=err, sub=sub, dlvrd=dlvrd, text=text)
    octets = pdu.encode_report(report)
    assert len(octets) == pdu.REPORT_LENGTH
    assert pdu.decode_report(octets) == report


# ----- malformed input ---------------------------------------------------------------------------------


@given(any_pdu(tlvs=False), st.data())
def test_a_truncated_body_raises_naming_the_field(value: pdu.Pdu, data: st.DataObject):
    # Without optional parameters: a Submit or Deliver cut between two TLVs is a well-formed shorter one.
    wire = pdu.encode(value, sequence_id=1)
    if len(wire) == 12:
        return
    cut = data.draw(st.integers(12, len(wire) - 1))
    with pytest.raises(PduError) as caught:
        pdu.decode(with_length(wire[:cut]))
    assert caught.value.field
    assert caught.value.field in str(caught.value)


def test_a_truncated_submit_names_the_field_it_was_reading():
    wire = pdu.encode(_submit(), sequence_id=1)
    # 12 header + 3 + 10 ServiceID + 2 + 6 + 6 + 1 + 17 + 17 + 5 of the 21-octet SrcTermID
    with pytest.raises(PduError, match="SMGP_Submit: SrcTermID: truncated"):
        pdu.decode(with_length(wire[: 12 + 3 + 10 + 2 + 6 + 6 + 1 + 17 + 17 + 5]))


def test_an_oversized_body_raises_naming_the_last_field():
    wire = pdu.encode(pdu.Login("SP", bytes(16), 0, 0), sequence_id=1)
    with pytest.raises(PduError, match="oversized") as caught:
        pdu.decode(with_length(wire + b"\0"))
    assert caught.value.field == "ClientVersion"
    with pytest.raises(PduError, match="SMGP_Active_Test_Resp: the header: oversized"):
        pdu.decode(with_length(pdu.encode(pdu.ActiveTestResp(), sequence_id=1) + b"\0"))


def test_packet_length_must_match_the_octets_given():
    wire = pdu.encode(pdu.ActiveTest(), sequence_id=1)
    with pytest.raises(PduError, match="PacketLength"):
        pdu.decode(wire + b"\0")
    with pytest.raises(PduError, match="PacketLength"):
        pdu.decode_header(header(11, c.ACTIVE_TEST, 1))
    with pytest.raises(PduError, match="PacketLength"):
        pdu.decode_header(header(pdu.MAX_PDU + 1, c.SUBMIT, 1))
    with pytest.raises(PduError, match="truncated"):
        pdu.decode_header(b"\0\0\0")


def test_a_request_id_not_decoded_here_is_named():
    with pytest.raises(PduError, match="SMGP_Forward: RequestID: RequestID 0x00000005"):
        pdu.decode(header(12, c.FORWARD, 1))
    with pytest.raises(PduError, match="0x00000099"):
        pdu.decode(header(12, 0x99, 1))


def test_pdu_error_survives_pickling():
    error = PduError("truncated", command="SMGP_Submit", field="LinkID")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.command, copy.field) == (str(error), "SMGP_Submit", "LinkID")


def test_the_largest_submit_fits_the_bound():
    biggest = _submit(
        dest_term_ids=("1" * 21,) * 100,
        msg_content=bytes(140),
        link_id="x" * 20,
        msg_src="x" * 8,
        m_service_id="x" * 21,
        tp_pid=0,
        tp_udhi=1,
        pk_total=9,
        pk_number=9,
    )
    wire = pdu.encode(biggest, sequence_id=1)
    assert len(wire) < pdu.MAX_PDU
    assert pdu.decode(wire).pdu == biggest


# ----- MsgID -----------------------------------------------------------------------------------------


def test_msg_id_is_the_specs_example():
    # 6.2.26: SMGW 010061, received 16 January 17:00, sequence 012345.
    fields = msgid.unpack(SPEC_MSG_ID)
    assert fields == msgid.MsgId(smgw_code=10061, month=1, day=16, hour=17, minute=0, sequence=12345)
    assert msgid.pack(fields) == SPEC_MSG_ID
    assert fields.digits() == "01006101161700012345"


def test_msg_id_text_is_its_20_digits_with_the_leading_zero():
    assert msgid.to_text(SPEC_MSG_ID) == "01006101161700012345"
    assert msgid.from_text("01006101161700012345") == SPEC_MSG_ID


def test_a_msg_id_that_is_not_bcd_still_has_one_text():
    odd = bytes.fromhex("0100610116170001234f")
    assert msgid.to_text(odd) == "0100610116170001234f"
    assert msgid.from_text(msgid.to_text(odd)) == odd
    with pytest.raises(ValueError, match="not BCD"):
        msgid.unpack(odd)


@given(msg_ids)
def test_msg_id_text_round_trips(octets: bytes):
    assert msgid.from_text(msgid.to_text(octets)) == octets


@given(
    st.integers(0, 999_999),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 999_999),
)
def test_msg_id_fields_round_trip(smgw, month, day, hour, minute, sequence):
    value = msgid.MsgId(smgw, month, day, hour, minute, sequence)
    assert msgid.unpack(msgid.pack(value)) == value
    assert msgid.to_text(msgid.pack(value)) == value.digits()


def test_msg_id_fields_must_fit_their_digits():
    with pytest.raises(ValueError, match="smgw_code 1000000"):
        msgid.MsgId(1_000_000, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="month 100"):
        msgid.MsgId(1, 100, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="sequence"):
        msgid.MsgId(1, 1, 1, 1, 1, -1)


@pytest.mark.parametrize(
    "text", ["", "0100610116170001234", "010061011617000123456", "0100610116170001234F", "０" * 20, "-" * 20]
)
def test_msg_id_text_must_be_20_lower_case_hex_digits(text: str):
    with pytest.raises(ValueError):
        msgid.from_text(text)


def test_msg_id_octets_must_be_ten():
    with pytest.raises(ValueError, match="10 octets"):
        msgid.to_text(bytes(8))
    with pytest.raises(ValueError, match="10 octets"):
        msgid.unpack(bytes(11))


# ----- constants ---------------------------------------------------------------------------------------


def test_request_ids_and_their_names():
    assert (c.LOGIN, c.SUBMIT, c.DELIVER, c.ACTIVE_TEST, c.EXIT) == (1, 2, 3, 4, 6)
    assert c.SUBMIT_RESP == 0x80000002
    assert c.command_name(c.EXIT_RESP) == "SMGP_Exit_Resp"
    assert c.command_name(0x12) == "SMGP_Push_Update_SP_Route"
    assert c.command_name(0x13) == "0x00000013"


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (0, "ok"),
        (1, "system busy"),
        (2, "too many connections"),
        (10, "message structure error"),
        (11, "command word error"),
        (12, "duplicate sequence number"),
        (20, "IP address error"),
        (21, "authentication failed"),
        (22, "version too high"),
        (30, "illegal MsgType"),
        (36, "illegal MsgLength"),
        (37, "validity period expired"),
        (43, "illegal ServiceId"),
        # 6.2.6 and go_smgp agree: 44 ValidTime, 45 AtTime, 46 SrcTermId, 47 DestTermId, 48 ChargeTermId.
        (44, "illegal ValidTime"),
        (45, "illegal AtTime"),
        (46, "illegal SrcTermID"),
        (47, "illegal DestTermID"),
        (48, "illegal ChargeTermID"),
        (74, "sending banned in this time window"),
        (75, "daily volume exceeded"),
        (76, "SP account expired"),
        (3, "other error (3)"),
        (200, "vendor-defined error (200)"),
    ],
)
def test_status_names(status: int, name: str):
    assert c.status_name(status) == name


def test_only_the_time_window_and_the_daily_volume_are_waits():
    assert sorted(c.STATUS_WAITS) == [74, 75]
    assert c.status_is_wait(c.STATUS_SENDING_BANNED_NOW)
    assert c.status_is_wait(c.STATUS_DAILY_VOLUME_EXCEEDED)
    assert not c.status_is_wait(c.STATUS_ACCOUNT_EXPIRED)
    assert not c.status_is_wait(c.STATUS_OK)


def test_every_tag_has_a_name_and_a_width():
    assert set(c.TAG_NAMES) == set(c.TAG_WIDTHS) == set(range(0x0001, 0x0013))
    assert c.tag_name(c.TAG_M_SERVICE_ID) == "MServiceID"
    assert c.tag_name(0x7001) == "TLV 0x7001"


def test_every_err_code_is_paired_with_a_stat_word():
    assert set(c.ERR_NAMES) == set(c.ERR_STATS)
    assert set(c.ERR_STATS.values()) <= set(c.STAT_NAMES)
