"""The SGIP 1.2 PDU codec and Sequence Number: exact layouts written from the spec's field tables, round
trips for every PDU, the stored text of a Sequence Number, and the errors malformed input must raise."""

from __future__ import annotations

import pickle
import struct
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from masd_adapters.sgip import constants as c
from masd_adapters.sgip import pdu
from masd_adapters.sgip import sequence as sq
from masd_adapters.sgip.pdu import PduError
from masd_adapters.sgip.sequence import SequenceNumber

# Node 3010092008 (area 010, corp 92008), 20 November 20:32:25, the 17th command.
NUMBER = SequenceNumber(3010092008, 1120203225, 17)
NUMBER_OCTETS = bytes.fromhex("b36a5be8 42c4f1d9 00000011")


def pad(text: str, width: int) -> bytes:
    return text.encode().ljust(width, b"\0")


def header(length: int, command_id: int) -> bytes:
    return struct.pack(">II", length, command_id) + NUMBER_OCTETS


# ----- the header and the Sequence Number ----------------------------------------------------------------


def test_the_header_is_length_command_and_the_three_parts_of_the_sequence_number():
    wire = pdu.encode(pdu.Unbind(), sequence_number=NUMBER)
    assert wire == bytes.fromhex("00000014 00000002 b36a5be8 42c4f1d9 00000011")
    assert pdu.decode_header(wire) == pdu.Header(20, c.UNBIND, NUMBER)


def test_unbind_and_its_response_have_no_body():
    assert pdu.encode(pdu.UnbindResp(), sequence_number=NUMBER) == header(20, 0x80000002)
    assert pdu.decode(header(20, c.UNBIND_RESP)) == pdu.Packet(NUMBER, pdu.UnbindResp())


def test_sequence_number_octets_are_three_big_endian_integers():
    assert sq.to_bytes(NUMBER) == NUMBER_OCTETS
    assert sq.from_bytes(NUMBER_OCTETS) == NUMBER
    with pytest.raises(ValueError, match="12 octets"):
        sq.from_bytes(bytes(11))


def test_sequence_number_text_is_30_digits_node_time_sequence():
    assert sq.to_text(NUMBER) == "3010092008" + "1120203225" + "0000000017"
    assert sq.to_text(SequenceNumber(0, 101000000, 0)) == "0000000000" + "0101000000" + "0000000000"
    assert sq.from_text("301009200811202032250000000017") == NUMBER


def test_sequence_number_text_is_unsigned_where_a_java_int_goes_negative():
    # Every SP node id (3AAAAQQQQQ) is above 2**31 - 1; the text must not turn it negative.
    top = SequenceNumber(sq.MAX, sq.MAX, sq.MAX)
    assert sq.to_text(top) == "4294967295" * 3
    assert sq.from_text(sq.to_text(top)) == top
    assert NUMBER.node_id > 2**31 - 1
    assert not sq.to_text(NUMBER).startswith("-")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "30100920081120203225000000001",  # 29 digits
        "3010092008112020322500000000170",  # 31
        "4294967296" + "0" * 20,  # the node id does not fit 4 octets
        "-010092008" + "0" * 20,
        "３０１００９２００８" + "0" * 20,
        "301009200811202032250000000x17",
    ],
)
def test_sequence_number_text_must_be_its_30_digits(text: str):
    with pytest.raises(ValueError):
        sq.from_text(text)


def test_sequence_number_parts_must_fit_four_octets():
    with pytest.raises(ValueError, match="node_id"):
        SequenceNumber(1 << 32, 0, 0)
    with pytest.raises(ValueError, match="sequence"):
        SequenceNumber(0, 0, -1)


def test_the_time_part_is_mmddhhmmss_as_an_integer():
    assert sq.timestamp_of(datetime(2024, 11, 20, 20, 32, 25)) == 1120203225
    assert sq.timestamp_of(datetime(2024, 2, 1, 0, 0, 5)) == 201000005


@pytest.mark.parametrize(
    ("area", "corp", "node"),
    # The vectors yedamao/go_sgip tests its NodeId against.
    [("010", "92008", 3010092008), ("021", "92008", 3021092008), ("0311", "92008", 3031192008)],
)
def test_sp_node_id_is_3_area_code_padded_to_four_and_corp_id(area: str, corp: str, node: int):
    assert sq.sp_node_id(area, corp) == node


@pytest.mark.parametrize(
    ("area", "corp"), [("10", "92008"), ("03111", "92008"), ("010", "9200"), ("0a0", "1")]
)
def test_sp_node_id_refuses_malformed_parts(area: str, corp: str):
    with pytest.raises(ValueError):
        sq.sp_node_id(area, corp)


def test_sequencer_counts_with_the_time_it_is_asked_at_and_wraps():
    moment = datetime(2024, 11, 20, 20, 32, 25)
    sequencer = sq.Sequencer(3010092008, start=sq.MAX)
    assert sequencer.next(moment) == SequenceNumber(3010092008, 1120203225, sq.MAX)
    assert sequencer.next(moment) == SequenceNumber(3010092008, 1120203225, 0)
    assert sequencer.next(moment).sequence == 1


def test_sequencers_sharing_a_node_id_with_one_step_never_meet():
    moment = datetime(2024, 1, 1)
    first, second = sq.Sequencer(1, start=0, step=2), sq.Sequencer(1, start=1, step=2)
    mine = {first.next(moment) for _ in range(50)}
    theirs = {second.next(moment) for _ in range(50)}
    assert len(mine) == len(theirs) == 50
    assert not mine & theirs


# ----- Bind and the responses ----------------------------------------------------------------------------


def test_bind_is_the_61_octets_of_the_spec_table():
    bind = pdu.Bind(c.LOGIN_SP_TO_SMG, "fakename", "1234")
    expected = header(61, 0x00000001) + b"\x01" + pad("fakename", 16) + pad("1234", 16) + bytes(8)
    assert pdu.encode(bind, sequence_number=NUMBER) == expected
    assert pdu.decode(expected) == pdu.Packet(NUMBER, bind)


def test_the_smg_binds_to_the_sp_with_login_type_2():
    wire = pdu.encode(pdu.Bind(c.LOGIN_SMG_TO_SP, "smg", "pw"), sequence_number=NUMBER)
    assert wire[20] == 2


@pytest.mark.parametrize(
    ("response", "command_id"),
    [
        (pdu.BindResp, 0x80000001),
        (pdu.SubmitResp, 0x80000003),
        (pdu.DeliverResp, 0x80000004),
        (pdu.ReportResp, 0x80000005),
    ],
)
def test_every_response_is_result_and_eight_reserved_octets(response: type, command_id: int):
    wire = pdu.encode(response(c.RESULT_NODE_BUSY), sequence_number=NUMBER)
    assert wire == header(29, command_id) + b"\x0b" + bytes(8)
    assert pdu.decode(wire) == pdu.Packet(NUMBER, response(c.RESULT_NODE_BUSY))


def test_responses_of_different_commands_are_not_equal():
    assert pdu.BindResp(0) != pdu.SubmitResp(0)
    packet = pdu.decode(header(29, c.SUBMIT_RESP) + bytes(9))
    assert type(packet.pdu) is pdu.SubmitResp


# ----- Submit --------------------------------------------------------------------------------------------


def _submit(**fields: object) -> pdu.Submit:
    base: dict[str, object] = dict(
        sp_number="1065501234",
        user_numbers=("8613012345678",),
        corp_id="92008",
        service_type="MAS",
        message_coding=c.CODING_UCS2,
        message_content="你好".encode("utf-16-be"),
    )
    base.update(fields)
    return pdu.Submit(**base)  # type: ignore[arg-type]


def _submit_body(users: list[str], content: bytes) -> bytes:
    return (
        pad("1065501234", 21)  # SPNumber
        + b"0" * 21  # ChargeNumber: the SP pays
        + bytes((len(users),))  # UserCount
        + b"".join(pad(u, 21) for u in users)
        + pad("92008", 5)  # CorpId
        + pad("MAS", 10)  # ServiceType
        + b"\x01"  # FeeType: free
        + pad("0", 6)  # FeeValue
        + pad("0", 6)  # GivenValue
        + b"\x00"  # AgentFlag
        + b"\x02"  # MorelatetoMTFlag: not caused by an MO
        + b"\x00"  # Priority
        + bytes(16)  # ExpireTime
        + bytes(16)  # ScheduleTime
        + b"\x01"  # ReportFlag: always
        + b"\x00\x00"  # TP_pid, TP_udhi
        + b"\x08"  # MessageCoding: UCS-2
        + b"\x00"  # MessageType: SMS
        + len(content).to_bytes(4, "big")  # MessageLength
        + content
        + bytes(8)  # Reserve
    )


def test_submit_layout_for_one_user():
    content = "你好".encode("utf-16-be")
    body = _submit_body(["8613012345678"], content)
    assert len(body) == 123 + 21 + 4
    assert pdu.encode(_submit(), sequence_number=NUMBER) == header(20 + len(body), 0x00000003) + body


def test_submit_layout_for_several_users():
    users = ["8613012345678", "8613112345678", "8618612345678"]
    content = "你好".encode("utf-16-be")
    body = _submit_body(users, content)
    wire = pdu.encode(_submit(user_numbers=tuple(users)), sequence_number=NUMBER)
    assert wire == header(20 + len(body), c.SUBMIT) + body


def test_submit_defaults_ask_for_a_report_whatever_the_outcome_and_bill_the_sp():
    submit = pdu.Submit()
    assert submit.report_flag == c.REPORT_ALWAYS == 1
    assert submit.charge_number == c.CHARGE_NUMBER_SP == "0" * 21
    assert submit.morelateto_mt_flag == c.MT_NOT_FOR_MO


def test_submit_with_a_udh_keeps_it_in_the_content():
    udh = bytes.fromhex("050003a70201")
    content = udh + "第一部分".encode("utf-16-be")
    packet = pdu.decode(pdu.encode(_submit(tp_udhi=1, message_content=content), sequence_number=NUMBER))
    assert isinstance(packet.pdu, pdu.Submit)
    assert packet.pdu.tp_udhi == 1
    assert packet.pdu.message_content == content


def test_submit_refuses_values_that_do_not_fit_naming_the_field():
    with pytest.raises(ValueError, match="CorpId"):
        pdu.encode(_submit(corp_id="920081"), sequence_number=NUMBER)
    with pytest.raises(ValueError, match=r"UserNumber\[1\]"):
        pdu.encode(_submit(user_numbers=("86130", "8" * 22)), sequence_number=NUMBER)
    with pytest.raises(ValueError, match="UserCount"):
        pdu.encode(_submit(user_numbers=()), sequence_number=NUMBER)
    with pytest.raises(ValueError, match="UserCount"):
        pdu.encode(_submit(user_numbers=("86130",) * 101), sequence_number=NUMBER)
    with pytest.raises(ValueError, match="SPNumber"):
        pdu.encode(_submit(sp_number="短信"), sequence_number=NUMBER)
    with pytest.raises(ValueError, match="ReportFlag"):
        pdu.encode(_submit(report_flag=256), sequence_number=NUMBER)


def test_a_submit_to_100_users_fits_but_not_one_beyond_any_legal_pdu():
    users = tuple(f"86130{i:08d}" for i in range(100))
    wire = pdu.encode(_submit(user_numbers=users, message_content=bytes(160)), sequence_number=NUMBER)
    assert len(wire) == 20 + 123 + 2100 + 160
    with pytest.raises(ValueError, match="at most 4096"):
        pdu.encode(_submit(user_numbers=users, message_content=bytes(2000)), sequence_number=NUMBER)


# ----- Deliver and Report --------------------------------------------------------------------------------


def test_deliver_layout():
    content = "收到".encode("utf-16-be")
    deliver = pdu.Deliver(
        "8613012345678", "106550123401", message_coding=c.CODING_UCS2, message_content=content
    )
    body = (
        pad("8613012345678", 21)
        + pad("106550123401", 21)
        + b"\x00\x00\x08"  # TP_pid, TP_udhi, MessageCoding
        + b"\x00\x00\x00\x04"
        + content
        + bytes(8)
    )
    assert len(body) == 57 + 4
    wire = pdu.encode(deliver, sequence_number=NUMBER)
    assert wire == header(20 + len(body), 0x00000004) + body
    assert pdu.decode(wire) == pdu.Packet(NUMBER, deliver)


def test_report_is_the_64_octets_of_the_spec_table():
    submitted = SequenceNumber(3010092008, 1120203225, 16)
    report = pdu.Report(submitted, "8613012345678", c.STATE_FAILED, c.RESULT_UNKNOWN_USER)
    body = (
        bytes.fromhex("b36a5be8 42c4f1d9 00000010")  # SubmitSequenceNumber
        + b"\x00"  # ReportType: a Submit
        + pad("8613012345678", 21)
        + b"\x02"  # State: failed
        + b"\x1d"  # ErrorCode 29
        + bytes(8)
    )
    wire = pdu.encode(report, sequence_number=NUMBER)
    assert wire == header(64, 0x00000005) + body
    assert pdu.decode(wire) == pdu.Packet(NUMBER, report)


def test_a_report_names_its_submit_by_the_submits_own_sequence_number():
    submit_wire = pdu.encode(_submit(), sequence_number=NUMBER)
    stored = sq.to_text(pdu.decode_header(submit_wire).sequence_number)
    # The SMG's Report arrives on its own link, under the SMG's Sequence Number.
    smg = SequenceNumber(1020001, 1120203230, 99)
    report_wire = pdu.encode(pdu.Report(NUMBER, "8613012345678", c.STATE_DELIVERED), sequence_number=smg)
    packet = pdu.decode(report_wire)
    assert isinstance(packet.pdu, pdu.Report)
    assert packet.sequence_number == smg
    assert sq.to_text(packet.pdu.submit_sequence_number) == stored


def test_submit_and_report_match_the_bytes_yedamao_go_sgip_writes():
    # go_sgip's NewSubmit / NewReport with the same fields and Sequence Number, serialised (hex).
    submit = (
        "000000bd00000003b36a5be842c4f1d900000011"
        "313036353530313233340000000000000000000000"  # SPNumber
        "303030303030303030303030303030303030303030"  # ChargeNumber
        "02"
        + "38363133303132333435363738"
        + "00" * 8
        + "38363133313132333435363738"
        + "00" * 8
        + "3932303038"
        + "4d4153"
        + "00" * 7  # CorpId, ServiceType
        + "01"
        + "300000000000"
        + "300000000000"
        + "000200"  # FeeType … Priority
        + "00" * 32  # ExpireTime, ScheduleTime
        + "0100000800"
        + "00000004"
        + "4f60597d"
        + "00" * 8
    )
    ours = _submit(
        user_numbers=("8613012345678", "8613112345678"),
        sp_number="1065501234",
        message_content=b"\x4f\x60\x59\x7d",
    )
    assert pdu.encode(ours, sequence_number=NUMBER).hex() == submit
    report = (
        "0000004000000005b36a5be842c4f1d900000011"
        "b36a5be842c4f1d900000010"
        "00"
        "38363133303132333435363738" + "00" * 8 + "02"
        "1d" + "00" * 8
    )
    ours_report = pdu.Report(SequenceNumber(3010092008, 1120203225, 16), "8613012345678", 2, 29)
    assert pdu.encode(ours_report, sequence_number=NUMBER).hex() == report


# ----- names ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (0, "ok"),
        (1, "illegal login"),
        (4, "login type wrong"),
        (9, "illegal sequence number"),
        (11, "node busy"),
        (21, "destination not reachable"),
        (24, "charge number invalid"),
        (29, "unknown user"),
        (33, "SMSC queue full"),
        (12, "other error (12)"),
        (34, "other error (34)"),
    ],
)
def test_result_names(code: int, name: str):
    assert c.result_name(code) == name


def test_the_named_results_are_1_to_11_and_21_to_33():
    assert set(c.RESULT_NAMES) == {0, *range(1, 12), *range(21, 34)}


def test_state_and_command_names():
    assert [c.state_name(s) for s in (0, 1, 2, 3)] == ["delivered", "waiting", "failed", "unknown state (3)"]
    assert c.command_name(c.REPORT_RESP) == "SGIP_REPORT_RESP"
    assert c.command_name(c.TRACE) == "SGIP_TRACE"
    assert c.command_name(0x99) == "0x00000099"


# ----- round trips ---------------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u32 = st.integers(0, sq.MAX)
numbers = st.builds(SequenceNumber, u32, u32, u32)


def octet_text(width: int) -> st.SearchStrategy[str]:
    # Latin-1 text without a trailing NUL (decoding strips those: the spec pads with them).
    return st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=width).filter(
        lambda s: not s.endswith("\0")
    )


content = st.binary(max_size=300)


@st.composite
def submits(draw: st.DrawFn) -> pdu.Submit:
    return pdu.Submit(
        sp_number=draw(octet_text(21)),
        charge_number=draw(octet_text(21)),
        user_numbers=tuple(draw(st.lists(octet_text(21), min_size=1, max_size=5))),
        corp_id=draw(octet_text(5)),
        service_type=draw(octet_text(10)),
        fee_type=draw(u8),
        fee_value=draw(octet_text(6)),
        given_value=draw(octet_text(6)),
        agent_flag=draw(u8),
        morelateto_mt_flag=draw(u8),
        priority=draw(u8),
        expire_time=draw(octet_text(16)),
        schedule_time=draw(octet_text(16)),
        report_flag=draw(u8),
        tp_pid=draw(u8),
        tp_udhi=draw(u8),
        message_coding=draw(u8),
        message_type=draw(u8),
        message_content=draw(content),
        reserve=draw(octet_text(8)),
    )


def responses(cls: type) -> st.SearchStrategy[pdu.Pdu]:
    return st.builds(cls, u8, octet_text(8))


any_pdu: st.SearchStrategy[pdu.Pdu] = st.one_of(
    st.builds(pdu.Bind, u8, octet_text(16), octet_text(16), octet_text(8)),
    responses(pdu.BindResp),
    st.just(pdu.Unbind()),
    st.just(pdu.UnbindResp()),
    submits(),
    responses(pdu.SubmitResp),
    st.builds(pdu.Deliver, octet_text(21), octet_text(21), u8, u8, u8, content, octet_text(8)),
    responses(pdu.DeliverResp),
    st.builds(pdu.Report, numbers, octet_text(21), u8, u8, u8, octet_text(8)),
    responses(pdu.ReportResp),
)


@given(any_pdu, numbers)
def test_every_pdu_round_trips(value: pdu.Pdu, number: SequenceNumber):
    wire = pdu.encode(value, sequence_number=number)
    assert pdu.decode_header(wire).message_length == len(wire)
    assert pdu.decode(wire) == pdu.Packet(number, value)


@given(numbers)
def test_every_sequence_number_round_trips_through_octets_and_text(number: SequenceNumber):
    assert sq.from_bytes(sq.to_bytes(number)) == number
    text = sq.to_text(number)
    assert len(text) == 30 and text.isdigit()
    assert sq.from_text(text) == number


@given(numbers, numbers)
def test_two_sequence_numbers_have_one_text_only_if_they_are_one(a: SequenceNumber, b: SequenceNumber):
    assert (sq.to_text(a) == sq.to_text(b)) == (a == b)


# ----- malformed input ---------------------------------------------------------------------------------


def _with_length(wire: bytes) -> bytes:
    return struct.pack(">I", len(wire)) + wire[4:]


@given(any_pdu, st.data())
def test_a_truncated_body_raises_naming_the_field(value: pdu.Pdu, data: st.DataObject):
    wire = pdu.encode(value, sequence_number=NUMBER)
    if len(wire) == pdu.HEADER_LENGTH:
        return
    cut = data.draw(st.integers(pdu.HEADER_LENGTH, len(wire) - 1))
    with pytest.raises(PduError) as caught:
        pdu.decode(_with_length(wire[:cut]))
    assert caught.value.field
    assert caught.value.field in str(caught.value)


def test_a_truncated_submit_names_the_field_it_was_reading():
    wire = pdu.encode(_submit(), sequence_number=NUMBER)
    # 20 header + 21 SPNumber + 21 ChargeNumber + 1 UserCount + 10 of the 21-octet UserNumber
    with pytest.raises(PduError, match=r"SGIP_SUBMIT: UserNumber\[0\]: truncated"):
        pdu.decode(_with_length(wire[: 20 + 21 + 21 + 1 + 10]))


def test_a_message_length_beyond_the_body_names_the_content():
    wire = bytearray(pdu.encode(pdu.Deliver("86130", "1065", message_content=b"hi"), sequence_number=NUMBER))
    wire[20 + 45 : 20 + 49] = (200).to_bytes(4, "big")  # MessageLength
    with pytest.raises(PduError, match="SGIP_DELIVER: MessageContent: truncated"):
        pdu.decode(bytes(wire))


def test_an_oversized_body_raises_naming_the_last_field():
    wire = pdu.encode(pdu.ReportResp(), sequence_number=NUMBER)
    with pytest.raises(PduError, match="oversized") as caught:
        pdu.decode(_with_length(wire + b"\0"))
    assert caught.value.field == "Reserve"
    with pytest.raises(PduError, match="SGIP_UNBIND: the header: oversized"):
        pdu.decode(_with_length(pdu.encode(pdu.Unbind(), sequence_number=NUMBER) + b"\0"))


def test_message_length_must_match_the_octets_given():
    wire = pdu.encode(pdu.Unbind(), sequence_number=NUMBER)
    with pytest.raises(PduError, match="Message Length"):
        pdu.decode(wire + b"\0")
    with pytest.raises(PduError, match="Message Length"):
        pdu.decode_header(header(19, c.UNBIND))
    with pytest.raises(PduError, match="Message Length"):
        pdu.decode_header(header(pdu.MAX_PDU + 1, c.SUBMIT))
    with pytest.raises(PduError, match="truncated"):
        pdu.decode_header(bytes(19))


def test_a_command_not_decoded_here_is_named():
    with pytest.raises(PduError, match="0x00000099"):
        pdu.decode(header(20, 0x99))
    with pytest.raises(PduError, match="SGIP_TRACE: Command ID"):
        pdu.decode(header(20, c.TRACE))


def test_pdu_error_survives_pickling():
    error = PduError("truncated", command="SGIP_REPORT", field="SubmitSequenceNumber")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.command, copy.field) == (str(error), "SGIP_REPORT", "SubmitSequenceNumber")
