"""The simulated ISMG (``masd sim ismg``) over real TCP on 127.0.0.1, driven by a raw SP client written
here on the CMPP codec (:mod:`masd_adapters.cmpp.pdu`): logins and their refusals in both versions,
SUBMIT and its Msg_Id layout, the report after its delay with that Msg_Id, flow control, disconnects,
injected one-part and long MOs, ACTIVE_TEST both ways, TERMINATE, the record file, and the ``masd sim
ismg`` / ``ismg-mo`` / ``ismg-stats`` commands."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from masd_adapters.cmpp import constants as c
from masd_adapters.cmpp import msgid, pdu, text
from masd_adapters.cmpp.ismg import Ismg, IsmgConfig

TIMEOUT = 5.0
SP_ID, SECRET = "901234", "secret"
SIM_CLI = "from masd.cli.sim import sim_app; sim_app()"


class Sp:
    """A minimal SP: send PDUs, read whatever comes, answer nothing unless told to."""

    def __init__(self, stream: trio.SocketStream, version: int) -> None:
        self.stream = stream
        self.version = version
        self.seq = 0
        self.buf = bytearray()
        self.backlog: list[pdu.Packet] = []

    async def send(self, message: pdu.Pdu, *, sequence_id: int | None = None) -> int:
        if sequence_id is None:
            self.seq += 1
            sequence_id = self.seq
        await self.stream.send_all(pdu.encode(message, sequence_id=sequence_id, version=self.version))
        return sequence_id

    async def raw(self) -> bytes | None:
        """The next whole PDU's octets, or None when the ISMG closed."""
        with trio.fail_after(TIMEOUT):
            while True:
                if len(self.buf) >= pdu.HEADER_LENGTH:
                    total = pdu.decode_header(bytes(self.buf[:12])).total_length
                    if len(self.buf) >= total:
                        data = bytes(self.buf[:total])
                        del self.buf[:total]
                        return data
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    return None
                self.buf += chunk

    async def recv(self) -> pdu.Packet | None:
        data = await self.raw()
        return None if data is None else pdu.decode(data, version=self.version)

    async def expect(self, kind: type) -> pdu.Packet:
        """The next PDU of ``kind``; the ISMG's ACTIVE_TEST is answered on the way, and other PDUs are
        kept for a later ``expect`` (a report may come before the SUBMIT_RESP of a later SUBMIT)."""
        for index, packet in enumerate(self.backlog):
            if isinstance(packet.pdu, kind):
                return self.backlog.pop(index)
        while True:
            received = await self.recv()
            assert received is not None, f"connection closed while waiting for {kind.__name__}"
            if isinstance(received.pdu, kind):
                return received
            if isinstance(received.pdu, pdu.ActiveTest):
                await self.send(pdu.ActiveTestResp(), sequence_id=received.sequence_id)
            else:
                self.backlog.append(received)

    async def login(self, sp_id: str = SP_ID, secret: str = SECRET, *, version: int | None = None) -> int:
        """CONNECT; the CONNECT_RESP's Status."""
        stamp = pdu.timestamp_of(datetime.now())
        connect = pdu.connect_request(sp_id, secret, timestamp=stamp, version=version or self.version)
        await self.send(connect)
        resp = (await self.expect(pdu.ConnectResp)).pdu
        assert isinstance(resp, pdu.ConnectResp)
        self.last_connect = (connect, resp)
        return resp.status

    async def submit(self, **fields: Any) -> tuple[int, pdu.SubmitResp]:
        fields.setdefault("dest_terminal_ids", ("13800138000",))
        fields.setdefault("msg_src", SP_ID)
        fields.setdefault("src_id", "10657123")
        seq = await self.send(pdu.Submit(**fields))
        packet = await self.expect(pdu.SubmitResp)
        assert packet.sequence_id == seq
        assert isinstance(packet.pdu, pdu.SubmitResp)
        return seq, packet.pdu

    async def deliver(self, *, ack: bool = True) -> pdu.Deliver:
        packet = await self.expect(pdu.Deliver)
        assert isinstance(packet.pdu, pdu.Deliver)
        if ack:
            await self.send(pdu.DeliverResp(packet.pdu.msg_id, 0), sequence_id=packet.sequence_id)
        return packet.pdu


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Any]]:
    async with trio.open_nursery() as nursery:
        servers: list[Ismg] = []

        async def _start(**options: Any) -> Ismg:
            options.setdefault("report_delay", 0.05)
            options.setdefault("seed", 1)
            ismg = Ismg(IsmgConfig(port=0, **options))
            await nursery.start(ismg.serve)
            servers.append(ismg)
            return ismg

        yield _start
        nursery.cancel_scope.cancel()


async def connect(ismg: Ismg, version: int = c.VERSION_30) -> Sp:
    return Sp(await trio.open_tcp_stream("127.0.0.1", ismg.port), version)


async def logged_in(ismg: Ismg, version: int = c.VERSION_30) -> Sp:
    sp = await connect(ismg, version)
    assert await sp.login() == c.CONNECT_OK
    return sp


async def wait_for(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(TIMEOUT):
        while not predicate():
            await trio.sleep(0.01)


# ----- login ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [c.VERSION_30, c.VERSION_20])
async def test_a_good_login_is_answered_in_the_clients_version_with_the_specs_authenticator(start, version):
    ismg = await start()
    sp = await connect(ismg, version)
    assert await sp.login() == c.CONNECT_OK
    connect_pdu, resp = sp.last_connect
    assert resp.version == version
    expected = pdu.authenticator_ismg(0, connect_pdu.authenticator_source, SECRET, version=version)
    assert resp.authenticator_ismg == expected
    assert ismg.stats.logins == 1 and ismg.stats.sessions == 1


async def test_version_0x21_is_taken_in_the_20_layout(start):
    ismg = await start()
    sp = await connect(ismg, c.VERSION_20)  # the layout pycmpp reads
    assert await sp.login(version=0x21) == c.CONNECT_OK
    assert sp.last_connect[1].version == 0x21
    _, resp = await sp.submit(msg_content=b"hi")
    assert resp.result == c.RESULT_OK and resp.msg_id


async def test_a_wrong_secret_is_status_3_with_an_empty_authenticator_and_the_link_closes(start):
    ismg = await start()
    sp = await connect(ismg)
    assert await sp.login(secret="wrong") == c.CONNECT_AUTH_FAILED
    assert sp.last_connect[1].authenticator_ismg == bytes(16)
    assert await sp.recv() is None
    assert ismg.stats.login_failures == 1 and ismg.stats.sessions == 0


async def test_an_unknown_source_addr_is_status_2(start):
    ismg = await start()
    sp = await connect(ismg)
    assert await sp.login(sp_id="999999") == c.CONNECT_BAD_SOURCE_ADDR


async def test_a_30_login_to_a_20_ismg_is_version_too_high_in_the_20_layout(start):
    ismg = await start(version="2.0")
    sp = await connect(ismg)
    assert await sp.login() == c.CONNECT_VERSION_TOO_HIGH
    assert sp.last_connect[1].version == c.VERSION_20


async def test_a_submit_before_connect_is_refused_and_gets_no_msg_id(start):
    ismg = await start()
    sp = await connect(ismg)
    _, resp = await sp.submit(msg_content=b"early")
    assert resp == pdu.SubmitResp(0, c.RESULT_BAD_COMMAND)
    assert ismg.stats.refused_before_connect == 1 and ismg.stats.submits == 0
    assert await sp.login() == c.CONNECT_OK  # the connection is still usable


async def test_sequence_id_0_is_accepted(start):
    ismg = await start()
    sp = await connect(ismg)
    stamp = pdu.timestamp_of(datetime.now())
    await sp.send(pdu.connect_request(SP_ID, SECRET, timestamp=stamp, version=c.VERSION_30), sequence_id=0)
    packet = await sp.expect(pdu.ConnectResp)
    assert packet.sequence_id == 0 and isinstance(packet.pdu, pdu.ConnectResp) and packet.pdu.status == 0


# ----- submits and reports -------------------------------------------------------------------------------


async def test_a_msg_id_has_the_specs_layout_with_the_ismg_code_and_a_running_sequence(start):
    ismg = await start(ismg_code=0x2ABCD)
    sp = await logged_in(ismg)
    before = datetime.now()
    _, first = await sp.submit(msg_content=b"one")
    _, second = await sp.submit(msg_content=b"two")
    a, b = msgid.unpack(first.msg_id), msgid.unpack(second.msg_id)
    assert a.ismg_code == b.ismg_code == 0x2ABCD
    assert (a.month, a.day) == (before.month, before.day)
    assert b.sequence == (a.sequence + 1) & 0xFFFF


@pytest.mark.parametrize(("version", "length"), [(c.VERSION_30, 71), (c.VERSION_20, 60)])
async def test_a_report_comes_after_the_delay_with_the_submits_msg_id(start, version, length):
    ismg = await start(report_delay=0.2)
    sp = await logged_in(ismg, version)
    sent = trio.current_time()
    _, resp = await sp.submit(msg_content=b"hello", src_id="1065712345", service_id="MASD")
    deliver = await sp.deliver()
    assert trio.current_time() - sent >= 0.19
    assert deliver.is_report and deliver.dest_id == "1065712345" and deliver.service_id == "MASD"
    assert deliver.src_terminal_id == "13800138000"
    assert len(deliver.msg_content) == length
    report = pdu.decode_report(deliver.msg_content)
    assert report.msg_id == resp.msg_id and report.stat == c.STAT_DELIVERED
    assert report.dest_terminal_id == "13800138000"
    assert re.fullmatch(r"\d{10}", report.submit_time) and re.fullmatch(r"\d{10}", report.done_time)
    await wait_for(lambda: ismg.stats.reports_acked == 1)
    assert ismg.stats.reports_pending == 0


async def test_short_reports_are_60_octets_on_30_too(start):
    ismg = await start(short_reports=True)
    sp = await logged_in(ismg)
    await sp.submit(msg_content=b"x")
    assert len((await sp.deliver()).msg_content) == 60


async def test_no_report_without_registered_delivery(start):
    ismg = await start(report_delay=0)
    sp = await logged_in(ismg)
    await sp.submit(msg_content=b"x", registered_delivery=0)
    await sp.submit(msg_content=b"y")
    report = pdu.decode_report((await sp.deliver()).msg_content)
    assert ismg.stats.reports_scheduled == 1 and report.stat == "DELIVRD"


async def test_the_outcome_mix_gives_undeliv_expired_and_carrier_codes(start):
    ismg = await start(outcomes={"undelivered": 1, "expired": 1, "MK:0005": 1}, report_delay=0)
    sp = await logged_in(ismg)
    for _ in range(30):
        await sp.submit(msg_content=b"x")
    stats = set()
    for _ in range(30):
        stats.add(pdu.decode_report((await sp.deliver()).msg_content).stat)
    assert stats == {"UNDELIV", "EXPIRED", "MK:0005"}


async def test_each_part_of_a_long_message_has_its_own_msg_id_and_report(start):
    ismg = await start(report_delay=0)
    sp = await logged_in(ismg)
    plan = text.plan("会议通知：" * 30)
    parts = text.encode_parts(plan, concat="udh8", ref=7)
    ids = set()
    for part in parts:
        _, resp = await sp.submit(
            pk_total=part.pk_total,
            pk_number=part.pk_number,
            tp_udhi=part.tp_udhi,
            msg_fmt=part.msg_fmt,
            msg_content=part.msg_content,
        )
        ids.add(resp.msg_id)
    reported = {pdu.decode_report((await sp.deliver()).msg_content).msg_id for _ in parts}
    assert len(ids) == len(parts) > 1 and reported == ids


async def test_a_report_waits_for_a_session_and_is_resent_when_unanswered(start):
    ismg = await start(report_delay=0, report_resend_after=0.3)
    sp = await logged_in(ismg)
    await sp.submit(msg_content=b"x")
    first = await sp.deliver(ack=False)
    again = await sp.deliver()  # the same report, sent again after 0.3 s
    assert again.msg_content == first.msg_content
    await wait_for(lambda: ismg.stats.reports_acked == 1)
    assert ismg.stats.reports_resent == 1


async def test_reports_go_to_a_later_session_of_the_same_account(start):
    ismg = await start(report_delay=0.2)
    sp = await logged_in(ismg)
    await sp.submit(msg_content=b"x")
    await sp.stream.aclose()
    await trio.sleep(0.3)
    later = await logged_in(ismg, c.VERSION_20)
    assert len((await later.deliver()).msg_content) == 60  # encoded for the session it goes to


# ----- flow control and disconnects -----------------------------------------------------------------------


async def test_every_nth_submit_gets_result_8_without_a_msg_id(start):
    ismg = await start(throttle_every=3)
    sp = await logged_in(ismg)
    results = [(await sp.submit(msg_content=b"x"))[1] for _ in range(6)]
    assert [r.result for r in results] == [0, 0, 8, 0, 0, 8]
    assert results[2].msg_id == 0 and ismg.stats.throttled == 2


async def test_submits_above_the_rate_get_result_8(start):
    ismg = await start(throttle_above_rate=2)  # a burst of 2, then one every 0.5 s
    sp = await logged_in(ismg)
    results = [(await sp.submit(msg_content=b"x"))[1].result for _ in range(6)]
    assert results[:2] == [0, 0] and results[2:].count(c.RESULT_FLOW_CONTROL) >= 3


async def test_a_content_above_140_octets_is_result_6(start):
    ismg = await start()
    sp = await logged_in(ismg)
    assert (await sp.submit(msg_content=bytes(141)))[1].result == c.RESULT_TOO_LONG


async def test_the_nth_submit_drops_the_link_unanswered(start):
    ismg = await start(disconnect_every=3)
    sp = await logged_in(ismg)
    await sp.submit(msg_content=b"1")
    await sp.submit(msg_content=b"2")
    await sp.send(pdu.Submit(msg_content=b"3", dest_terminal_ids=("13800138000",)))
    assert await sp.recv() is None
    assert ismg.stats.dropped_disconnect_every == 1 and ismg.stats.sessions == 0


async def test_disconnect_after_drops_a_session_that_many_seconds_after_login(start):
    ismg = await start(disconnect_after=0.2)
    sp = await logged_in(ismg)
    assert await sp.recv() is None
    assert ismg.stats.dropped_disconnect_after == 1


# ----- MO --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("msg_fmt", [c.MSG_FMT_UCS2, c.MSG_FMT_GBK])
async def test_an_injected_one_part_mo_reaches_the_sp_in_its_msg_fmt(start, msg_fmt):
    ismg = await start()
    sp = await logged_in(ismg)
    answer = await ismg.control(
        {"op": "mo", "from": "13900001111", "to": "1065712345001", "text": "收到 1", "msg_fmt": msg_fmt}
    )
    assert answer == {"ok": True, "parts": 1}
    mo = await sp.deliver()
    assert not mo.is_report and mo.tp_udhi == 0 and mo.msg_fmt == msg_fmt
    assert mo.dest_id == "1065712345001" and mo.src_terminal_id == "13900001111"
    assert text.decode_content(mo.msg_content, mo.msg_fmt) == "收到 1"
    await wait_for(lambda: ismg.stats.mo_acked == 1)


async def test_an_ascii_mo_is_msg_fmt_0_by_default_and_a_link_id_reaches_30(start):
    ismg = await start()
    sp = await logged_in(ismg)
    await ismg.inject_mo(sender="13900001111", dest_id="106571234", text="Y", link_id="L123")
    mo = await sp.deliver()
    assert (mo.msg_fmt, mo.msg_content, mo.link_id) == (0, b"Y", "L123")


@pytest.mark.parametrize("concat", ["udh8", "udh16"])
async def test_a_long_mo_comes_in_parts_with_a_udh_that_reassemble(start, concat):
    ismg = await start()
    sp = await logged_in(ismg, c.VERSION_20)
    body = "我参加明天的会议，" * 12
    parts = await ismg.inject_mo(
        sender="13900001111", dest_id="1065712345", text=body, concat=concat, shuffle=True
    )
    assert parts > 1
    received = [await sp.deliver() for _ in range(parts)]
    found = [text.read_concatenation(mo.msg_content) for mo in received]
    assert all(mo.tp_udhi == 1 and mo.msg_fmt == c.MSG_FMT_UCS2 for mo in received)
    assert all(f is not None and f.total == parts for f in found)
    assert [f.number for f in found if f] != list(range(1, parts + 1))  # shuffled
    rebuilt = [
        text.Part(parts, f.number, 1, c.MSG_FMT_UCS2, mo.msg_content)
        for f, mo in zip(found, received, strict=True)
        if f
    ]
    assert text.reassemble(rebuilt) == body
    assert len({f.ref for f in found if f}) == 1


async def test_an_mo_waits_until_the_account_logs_in(start):
    ismg = await start()
    assert await ismg.inject_mo(sender="139", dest_id="10657", text="later") == 1
    sp = await logged_in(ismg)
    assert (await sp.deliver()).msg_content == b"later"


async def test_an_mo_the_format_cannot_encode_is_refused(start):
    ismg = await start()
    answer = await ismg.control({"op": "mo", "from": "139", "to": "10657", "text": "中", "msg_fmt": 0})
    assert answer["ok"] is False and "cannot encode" in answer["error"]


# ----- ACTIVE_TEST and TERMINATE -------------------------------------------------------------------------


async def test_an_active_test_is_answered_with_13_octets_even_before_login(start):
    ismg = await start()
    sp = await connect(ismg)
    seq = await sp.send(pdu.ActiveTest())
    data = await sp.raw()
    assert data is not None and len(data) == 13
    assert pdu.decode(data, version=c.VERSION_30) == pdu.Packet(seq, pdu.ActiveTestResp(0))


async def test_the_ismgs_own_active_test_keeps_an_answering_session(start):
    ismg = await start(active_test_interval=0.1, active_test_timeout=0.5)
    sp = await logged_in(ismg)
    with trio.move_on_after(0.5):
        await sp.expect(pdu.Deliver)  # answers ACTIVE_TEST meanwhile
    assert ismg.stats.active_tests_answered >= 2 and ismg.stats.sessions == 1


async def test_an_unanswered_active_test_drops_the_session(start):
    ismg = await start(active_test_interval=0.1, active_test_timeout=0.2)
    sp = await logged_in(ismg)
    assert isinstance((await sp.recv()).pdu, pdu.ActiveTest)  # type: ignore[union-attr]
    assert await sp.recv() is None
    assert ismg.stats.dropped_unanswered_active_test == 1


async def test_a_12_octet_active_test_resp_closes_the_link(start):
    ismg = await start(active_test_interval=0.1)
    sp = await logged_in(ismg)
    packet = await sp.recv()
    assert packet is not None and isinstance(packet.pdu, pdu.ActiveTest)
    await sp.stream.send_all(pdu.encode_header(pdu.Header(12, c.ACTIVE_TEST_RESP, packet.sequence_id)))
    assert await sp.recv() is None
    assert ismg.stats.malformed == 1


async def test_a_command_not_served_is_skipped_and_the_session_goes_on(start):
    ismg = await start()
    sp = await logged_in(ismg)
    query = bytes(27)  # CMPP_QUERY: Time 8, Query_Type 1, Query_Code 10, Reserve 8
    await sp.stream.send_all(pdu.encode_header(pdu.Header(12 + len(query), c.QUERY, 9)) + query)
    seq = await sp.send(pdu.ActiveTest())
    assert await sp.recv() == pdu.Packet(seq, pdu.ActiveTestResp(0))
    assert ismg.stats.unsupported == 1


async def test_terminate_from_the_sp_is_answered_and_the_link_closes(start):
    ismg = await start()
    sp = await logged_in(ismg)
    seq = await sp.send(pdu.Terminate())
    assert await sp.recv() == pdu.Packet(seq, pdu.TerminateResp())
    assert await sp.recv() is None
    assert ismg.stats.terminates_received == 1 and ismg.stats.sessions == 0


async def test_the_ismgs_terminate_closes_once_answered(start):
    ismg = await start()
    sp = await logged_in(ismg)
    assert await ismg.control({"op": "terminate"}) == {"ok": True, "terminated": 1}
    packet = await sp.expect(pdu.Terminate)
    await sp.send(pdu.TerminateResp(), sequence_id=packet.sequence_id)
    assert await sp.recv() is None


# ----- record, control, CLI --------------------------------------------------------------------------------


async def test_the_record_has_every_connect_and_submit(start, tmp_path):
    record = tmp_path / "ismg.jsonl"
    ismg = await start(record=record, throttle_every=2)
    sp = await logged_in(ismg)
    _, resp = await sp.submit(msg_content="你好".encode("utf-16-be"), msg_fmt=8, service_id="MASD")
    await sp.submit(msg_content=b"x")
    await wait_for(lambda: len(record.read_text().splitlines()) == 3)
    connect_line, first, second = map(json.loads, record.read_text().splitlines())
    assert connect_line["pdu"] == "CMPP_CONNECT" and connect_line["status"] == 0
    assert connect_line["source_addr"] == SP_ID and connect_line["version"] == 0x30
    assert first["pdu"] == "CMPP_SUBMIT" and first["msg_id"] == msgid.to_text(resp.msg_id)
    assert first["text"] == "你好" and first["service_id"] == "MASD" and first["version"] == "3.0"
    assert first["dest_terminal_ids"] == ["13800138000"] and first["outcome"] == "delivered"
    assert second["result"] == 8 and second["msg_id"] is None


async def test_set_changes_the_flow_control_while_running(start):
    ismg = await start()
    sp = await logged_in(ismg)
    answer = await ismg.control({"op": "set", "throttle_every": 1})
    assert answer["ok"] and answer["config"]["throttle_every"] == 1
    assert (await sp.submit(msg_content=b"x"))[1].result == 8
    assert (await ismg.control({"op": "set", "port": 1}))["ok"] is False


def test_masd_sim_ismg_prints_its_credentials_and_serves_mo_and_stats(tmp_path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-c", SIM_CLI, "ismg", "--port", "0", "--control-port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        started = json.loads("".join(iter(proc.stdout.readline, "}\n")) + "}")
        assert started["accounts"] == {"901234": "secret"} and started["version"] == "3.0"
        ctl = ["--control-port", str(started["control_port"])]
        mo = subprocess.run(
            [
                sys.executable,
                "-c",
                SIM_CLI,
                "ismg-mo",
                "--from",
                "139",
                "--to",
                "10657",
                "--text",
                "hi",
                *ctl,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert mo.returncode == 0, mo.stderr
        assert "1 part" in mo.stdout
        stats = subprocess.run(
            [sys.executable, "-c", SIM_CLI, "ismg-stats", "--json", *ctl],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["mo_pending"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped:" in err
