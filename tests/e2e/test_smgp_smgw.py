"""The simulated SMGW (``masd sim smgw``) over real TCP on 127.0.0.1, driven by a raw SP client written
here on the SMGP codec (:mod:`masd_adapters.smgp.pdu`): logins in the three modes and their refusals,
Submit and its MsgID layout, the 122-octet report after its delay with that MsgID, Status 74/75/1 on
demand, disconnects, injected one-part and long MOs, Active_Test both ways, Exit, the record file, and the
``masd sim smgw`` / ``smgw-mo`` / ``smgw-stats`` commands."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from masd_adapters.cmpp import text
from masd_adapters.smgp import constants as c
from masd_adapters.smgp import msgid, pdu
from masd_adapters.smgp.smgw import Smgw, SmgwConfig

TIMEOUT = 5.0
CLIENT_ID, SECRET = "10690001", "secret"
SIM_CLI = "from masd.cli.sim import sim_app; sim_app()"


class Sp:
    """A minimal SP: send PDUs, read whatever comes, answer nothing unless told to."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.seq = 0
        self.buf = bytearray()
        self.backlog: list[pdu.Packet] = []

    async def send(self, message: pdu.Pdu, *, sequence_id: int | None = None) -> int:
        if sequence_id is None:
            self.seq += 1
            sequence_id = self.seq
        await self.stream.send_all(pdu.encode(message, sequence_id=sequence_id))
        return sequence_id

    async def raw(self) -> bytes | None:
        """The next whole PDU's octets, or None when the SMGW closed."""
        with trio.fail_after(TIMEOUT):
            while True:
                if len(self.buf) >= pdu.HEADER_LENGTH:
                    total = pdu.decode_header(bytes(self.buf[:12])).packet_length
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
        return None if data is None else pdu.decode(data)

    async def expect(self, kind: type) -> pdu.Packet:
        """The next PDU of ``kind``; the SMGW's Active_Test is answered on the way, and other PDUs are
        kept for a later ``expect``."""
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

    async def login(
        self, client_id: str = CLIENT_ID, secret: str = SECRET, *, mode: int = 2, version: int = 0x30
    ) -> pdu.LoginResp:
        stamp = pdu.timestamp_of(datetime.now())
        login = pdu.login_request(client_id, secret, timestamp=stamp, login_mode=mode, version=version)
        self.last_login = login
        await self.send(login)
        resp = (await self.expect(pdu.LoginResp)).pdu
        assert isinstance(resp, pdu.LoginResp)
        return resp

    async def submit(self, **fields: Any) -> tuple[int, pdu.SubmitResp]:
        fields.setdefault("dest_term_ids", ("13300133000",))
        fields.setdefault("src_term_id", "10659001")
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

        async def _start(**options: Any) -> Smgw:
            options.setdefault("report_delay", 0.05)
            options.setdefault("seed", 1)
            options.setdefault("accounts", {CLIENT_ID: SECRET})
            smgw = Smgw(SmgwConfig(port=0, **options))
            await nursery.start(smgw.serve)
            return smgw

        yield _start
        nursery.cancel_scope.cancel()


async def connect(smgw: Smgw) -> Sp:
    return Sp(await trio.open_tcp_stream("127.0.0.1", smgw.port))


async def logged_in(smgw: Smgw, mode: int = 2) -> Sp:
    sp = await connect(smgw)
    assert (await sp.login(mode=mode)).status == c.STATUS_OK
    return sp


async def wait_for(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(TIMEOUT):
        while not predicate():
            await trio.sleep(0.01)


# ----- login ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0, 1, 2])
async def test_a_good_login_is_answered_with_the_specs_authenticator(start, mode):
    smgw = await start()
    sp = await connect(smgw)
    resp = await sp.login(mode=mode)
    assert (resp.status, resp.server_version) == (0, 0x30)
    assert resp.authenticator_server == pdu.authenticator_server(
        0, sp.last_login.authenticator_client, SECRET
    )
    assert smgw.stats.logins == 1 and smgw.stats.sessions == 1


@pytest.mark.parametrize(
    ("client_id", "secret", "options", "status"),
    [
        (CLIENT_ID, "wrong", {}, c.STATUS_AUTH_FAILED),
        ("10699999", SECRET, {}, c.STATUS_AUTH_FAILED),
        (CLIENT_ID, SECRET, {"version": 0x31}, c.STATUS_VERSION_TOO_HIGH),
        (CLIENT_ID, SECRET, {"mode": 3}, c.STATUS_BAD_STRUCTURE),
    ],
)
async def test_a_refused_login_has_its_status_an_empty_authenticator_and_the_link_closes(
    start, client_id, secret, options, status
):
    smgw = await start()
    sp = await connect(smgw)
    resp = await sp.login(client_id, secret, **options)
    assert (resp.status, resp.authenticator_server) == (status, bytes(16))
    assert await sp.recv() is None
    assert smgw.stats.login_failures == 1


async def test_a_submit_before_login_or_on_a_receive_link_is_refused_without_a_msg_id(start):
    smgw = await start()
    sp = await connect(smgw)
    _, resp = await sp.submit(msg_content=b"x")
    assert (resp.status, resp.msg_id) == (c.STATUS_BAD_COMMAND, bytes(10))
    receiver = await logged_in(smgw, mode=c.LOGIN_MODE_RECEIVE)
    _, resp = await receiver.submit(msg_content=b"x")
    assert resp.status == c.STATUS_BAD_COMMAND
    assert smgw.stats.refused_not_logged_in == 2 and smgw.stats.accepted == 0


# ----- submit and reports ------------------------------------------------------------------------------


async def test_a_msg_id_has_the_specs_bcd_layout_with_the_smgw_code_and_a_running_sequence(start):
    smgw = await start(smgw_code=10601)
    sp = await logged_in(smgw)
    before = datetime.now()
    ids = [msgid.unpack((await sp.submit(msg_content=b"x"))[1].msg_id) for _ in range(2)]
    assert [i.smgw_code for i in ids] == [10601, 10601]
    assert (ids[0].month, ids[0].day) == (before.month, before.day)
    assert ids[1].sequence == (ids[0].sequence + 1) % 1_000_000
    assert msgid.to_text(msgid.pack(ids[0])).startswith("010601")


async def test_a_report_comes_after_the_delay_with_the_submits_msg_id(start):
    smgw = await start(report_delay=0.2)
    sp = await logged_in(smgw)
    sent_at = trio.current_time()
    _, resp = await sp.submit(
        msg_content="会议改期".encode("utf-16-be"), msg_format=8, src_term_id="1065900142"
    )
    deliver = await sp.deliver()
    assert trio.current_time() - sent_at >= 0.2
    assert deliver.is_report == 1 and deliver.dest_term_id == "1065900142"
    assert deliver.src_term_id == "13300133000" and len(deliver.msg_content) == pdu.REPORT_LENGTH
    report = pdu.decode_report(deliver.msg_content)
    assert (report.msg_id, report.stat, report.err) == (resp.msg_id, "DELIVRD", "000")
    assert report.text[:3] == b"008"
    assert deliver.msg_id != resp.msg_id  # the report's Deliver has a MsgID of its own
    await wait_for(lambda: smgw.stats.reports_acked == 1)


async def test_no_report_without_need_report(start):
    smgw = await start()
    sp = await logged_in(smgw)
    await sp.submit(msg_content=b"x", need_report=0)
    await trio.sleep(0.2)
    assert smgw.stats.reports_scheduled == 0


async def test_the_outcome_mix_gives_undeliv_expired_and_gateway_codes(start):
    smgw = await start(outcomes={"undelivered": 1, "expired": 1, "MI:0013": 1}, seed=3)
    sp = await logged_in(smgw)
    for _ in range(30):
        await sp.submit(msg_content=b"x")
    seen = set()
    for _ in range(30):
        report = pdu.decode_report((await sp.deliver()).msg_content)
        seen.add((report.stat, report.err))
    assert seen == {("UNDELIV", "003"), ("EXPIRED", "001"), ("MI:0013", "006")}


async def test_each_part_of_a_long_message_has_its_own_msg_id_and_report(start):
    smgw = await start()
    sp = await logged_in(smgw)
    plan = text.plan("各位同事请注意" * 20, concat="udh8")
    ids = []
    for part in text.encode_parts(plan, concat="udh8", ref=9):
        _, resp = await sp.submit(
            msg_content=part.msg_content,
            msg_format=part.msg_fmt,
            tp_udhi=part.tp_udhi,
            pk_total=part.pk_total,
            pk_number=part.pk_number,
        )
        ids.append(resp.msg_id)
    reports = [pdu.decode_report((await sp.deliver()).msg_content).msg_id for _ in ids]
    assert len(set(ids)) == len(ids) == 3 and sorted(reports) == sorted(ids)


async def test_a_report_waits_for_a_receiving_session_and_is_resent_when_unanswered(start):
    smgw = await start(report_resend_after=0.3)
    sender = await logged_in(smgw, mode=c.LOGIN_MODE_SEND)
    _, resp = await sender.submit(msg_content=b"x")
    await trio.sleep(0.2)
    assert smgw.stats.reports_sent == 0  # a send-only link gets no Delivers
    receiver = await logged_in(smgw, mode=c.LOGIN_MODE_RECEIVE)
    first = await receiver.deliver(ack=False)
    again = await receiver.deliver()
    assert pdu.decode_report(first.msg_content).msg_id == pdu.decode_report(again.msg_content).msg_id
    assert pdu.decode_report(again.msg_content).msg_id == resp.msg_id
    await wait_for(lambda: smgw.stats.reports_acked == 1 and smgw.stats.reports_resent == 1)


async def test_a_deliver_answered_with_an_error_is_sent_again(start):
    smgw = await start()
    sp = await logged_in(smgw)
    await sp.submit(msg_content=b"x")
    packet = await sp.expect(pdu.Deliver)
    assert isinstance(packet.pdu, pdu.Deliver)
    await sp.send(pdu.DeliverResp(packet.pdu.msg_id, c.STATUS_SYSTEM_BUSY), sequence_id=packet.sequence_id)
    await sp.deliver()
    await wait_for(lambda: smgw.stats.reports_acked == 1 and smgw.stats.reports_sent == 2)


# ----- waits and flow control ----------------------------------------------------------------------------


async def test_quiet_hours_answer_74_until_switched_off(start):
    smgw = await start(quiet_hours=True)
    sp = await logged_in(smgw)
    _, resp = await sp.submit(msg_content=b"x")
    assert (resp.status, resp.msg_id) == (c.STATUS_SENDING_BANNED_NOW, bytes(10))
    answer = await smgw.control({"op": "set", "quiet_hours": False})
    assert answer["ok"] and answer["config"]["quiet_hours"] is False
    assert (await sp.submit(msg_content=b"x"))[1].status == 0
    assert (await smgw.control({"op": "set", "quiet_hours": "yes"}))["ok"] is False


async def test_every_nth_submit_gets_74_when_asked(start):
    smgw = await start(banned_every=2)
    sp = await logged_in(smgw)
    statuses = [(await sp.submit(msg_content=b"x"))[1].status for _ in range(4)]
    assert statuses == [0, 74, 0, 74] and smgw.stats.banned == 2


async def test_the_daily_limit_answers_75_until_the_day_starts_again(start):
    smgw = await start(daily_limit=2)
    sp = await logged_in(smgw)
    statuses = [(await sp.submit(msg_content=b"x"))[1].status for _ in range(3)]
    assert statuses == [0, 0, c.STATUS_DAILY_VOLUME_EXCEEDED]
    assert (await smgw.control({"op": "reset_day"}))["ok"]
    assert (await sp.submit(msg_content=b"x"))[1].status == 0


async def test_every_nth_submit_or_above_the_rate_gets_system_busy(start):
    smgw = await start(busy_every=3)
    sp = await logged_in(smgw)
    statuses = [(await sp.submit(msg_content=b"x"))[1].status for _ in range(3)]
    assert statuses == [0, 0, c.STATUS_SYSTEM_BUSY]
    smgw.update(busy_every=0, busy_above_rate=2.0)
    statuses = [(await sp.submit(msg_content=b"x"))[1].status for _ in range(5)]
    assert c.STATUS_SYSTEM_BUSY in statuses and statuses[0] == 0


async def test_a_content_above_140_octets_is_status_36(start):
    smgw = await start()
    sp = await logged_in(smgw)
    raw = pdu.encode(pdu.Submit(dest_term_ids=("1",), msg_content=b"x"), sequence_id=7)
    # The codec refuses to encode 141 octets, so the body is patched: MsgLength 141 and the octets.
    head, _, tail = raw.rpartition(b"\x01x")
    body = head + bytes([141]) + b"y" * 141 + tail
    await sp.stream.send_all(len(body).to_bytes(4, "big") + body[4:])
    resp = (await sp.expect(pdu.SubmitResp)).pdu
    assert isinstance(resp, pdu.SubmitResp) and resp.status == c.STATUS_BAD_MSG_LENGTH


async def test_the_nth_submit_drops_the_link_unanswered(start):
    smgw = await start(disconnect_every=2)
    sp = await logged_in(smgw)
    await sp.submit(msg_content=b"x")
    await sp.send(pdu.Submit(dest_term_ids=("1",), msg_content=b"x"))
    assert await sp.recv() is None
    assert smgw.stats.dropped_disconnect_every == 1


async def test_disconnect_after_drops_a_session_that_many_seconds_after_login(start):
    smgw = await start(disconnect_after=0.2)
    sp = await logged_in(smgw)
    assert await sp.recv() is None
    assert smgw.stats.dropped_disconnect_after == 1


# ----- MO ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("msg_format", "codec"), [(8, "utf-16-be"), (15, "gb18030")])
async def test_an_injected_one_part_mo_reaches_the_sp_in_its_format(start, msg_format, codec):
    smgw = await start()
    sp = await logged_in(smgw)
    answer = await smgw.control(
        {"op": "mo", "from": "13300133000", "to": "106590142", "text": "收到", "msg_format": msg_format}
    )
    assert answer == {"ok": True, "parts": 1}
    deliver = await sp.deliver()
    assert (deliver.is_report, deliver.msg_format, deliver.tp_udhi) == (0, msg_format, 0)
    assert (deliver.src_term_id, deliver.dest_term_id) == ("13300133000", "106590142")
    assert deliver.msg_content.decode(codec) == "收到" and len(deliver.recv_time) == 14
    await wait_for(lambda: smgw.stats.mo_acked == 1)


@pytest.mark.parametrize("concat", ["udh8", "udh16"])
async def test_a_long_mo_comes_in_parts_with_a_udh_and_tp_udhi_that_reassemble(start, concat):
    smgw = await start()
    sp = await logged_in(smgw)
    body = "各位同事请注意，明天上午九点开会。" * 10
    parts = await smgw.inject_mo(sender="133", dest_term_id="1065901", text=body, concat=concat, shuffle=True)
    assert parts >= 2
    delivers = [await sp.deliver() for _ in range(parts)]
    assert all(d.tp_udhi == 1 for d in delivers)
    found = [text.read_reference(d.msg_content) for d in delivers]
    assert all(f is not None and f[0] == concat for f in found)
    numbered = sorted((f[1].number, f[1].body) for f in found if f is not None)
    assert [n for n, _ in numbered] != [f[1].number for f in found if f is not None]  # shuffled
    assert b"".join(b for _, b in numbered).decode("utf-16-be") == body


async def test_an_mo_waits_until_the_account_logs_in_to_receive(start):
    smgw = await start()
    await smgw.inject_mo(sender="133", dest_term_id="1065901", text="1")
    sp = await logged_in(smgw, mode=c.LOGIN_MODE_RECEIVE)
    assert (await sp.deliver()).msg_content == b"1"


async def test_an_mo_the_format_cannot_encode_is_refused(start):
    smgw = await start()
    answer = await smgw.control({"op": "mo", "from": "133", "to": "1065901", "text": "会", "msg_format": 0})
    assert answer["ok"] is False
    answer = await smgw.control({"op": "mo", "from": "133", "to": "1065901", "text": "x", "client_id": "no"})
    assert answer["ok"] is False and "client_id" in answer["error"]


# ----- the link ------------------------------------------------------------------------------------------


async def test_an_active_test_is_answered_even_before_login(start):
    smgw = await start()
    sp = await connect(smgw)
    seq = await sp.send(pdu.ActiveTest())
    packet = await sp.expect(pdu.ActiveTestResp)
    assert packet.sequence_id == seq


async def test_the_smgws_own_active_test_keeps_an_answering_session(start):
    smgw = await start(active_test_interval=0.1)
    sp = await logged_in(smgw)
    with trio.move_on_after(0.5):
        await sp.expect(pdu.Deliver)  # answers Active_Test while it waits
    assert smgw.stats.active_tests_answered >= 2 and smgw.stats.sessions == 1


async def test_an_unanswered_active_test_drops_the_session(start):
    smgw = await start(active_test_interval=0.1, active_test_timeout=0.1)
    sp = await logged_in(smgw)
    assert isinstance((await sp.recv()).pdu, pdu.ActiveTest)  # type: ignore[union-attr]
    assert await sp.recv() is None
    assert smgw.stats.dropped_unanswered_active_test == 1


async def test_exit_from_the_sp_is_answered_and_the_link_closes(start):
    smgw = await start()
    sp = await logged_in(smgw)
    seq = await sp.send(pdu.Exit())
    assert (await sp.expect(pdu.ExitResp)).sequence_id == seq
    assert await sp.recv() is None
    assert smgw.stats.exits_received == 1


async def test_the_smgws_exit_closes_once_answered(start):
    smgw = await start()
    sp = await logged_in(smgw)
    assert (await smgw.control({"op": "exit"})) == {"ok": True, "exited": 1}
    packet = await sp.expect(pdu.Exit)
    await sp.send(pdu.ExitResp(), sequence_id=packet.sequence_id)
    assert await sp.recv() is None


async def test_a_request_not_served_is_skipped_and_the_session_goes_on(start):
    smgw = await start()
    sp = await logged_in(smgw)
    await sp.stream.send_all((12).to_bytes(4, "big") + c.QUERY.to_bytes(4, "big") + (9).to_bytes(4, "big"))
    assert (await sp.submit(msg_content=b"x"))[1].status == 0
    assert smgw.stats.unsupported == 1


# ----- record, control, CLI --------------------------------------------------------------------------------


async def test_the_record_has_every_login_and_submit(start, tmp_path):
    record = tmp_path / "smgw.jsonl"
    smgw = await start(record=record, banned_every=2)
    sp = await logged_in(smgw)
    _, resp = await sp.submit(
        msg_content="你好".encode("utf-16-be"), msg_format=8, service_id="MASD", pk_total=1, pk_number=1
    )
    await sp.submit(msg_content=b"x")
    await wait_for(lambda: record.exists() and len(record.read_text().splitlines()) == 3)
    login_line, first, second = map(json.loads, record.read_text().splitlines())
    assert login_line["pdu"] == "SMGP_Login" and login_line["status"] == 0
    assert (login_line["client_id"], login_line["login_mode"], login_line["version"]) == (CLIENT_ID, 2, 0x30)
    assert first["pdu"] == "SMGP_Submit" and first["msg_id"] == msgid.to_text(resp.msg_id)
    assert first["text"] == "你好" and first["service_id"] == "MASD" and first["pk_total"] == 1
    assert first["dest_term_ids"] == ["13300133000"] and first["outcome"] == "delivered"
    assert second["status"] == 74 and second["msg_id"] is None


async def test_set_refuses_what_cannot_change_at_run_time(start):
    smgw = await start()
    assert (await smgw.control({"op": "set", "port": 1}))["ok"] is False
    assert (await smgw.control({"op": "nothing"}))["ok"] is False
    assert (await smgw.control({"op": "config"}))["config"]["accounts"] == [CLIENT_ID]


def test_masd_sim_smgw_prints_its_credentials_and_serves_mo_and_stats(tmp_path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-c", SIM_CLI, "smgw", "--port", "0", "--control-port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        started = json.loads("".join(iter(proc.stdout.readline, "}\n")) + "}")
        assert started["accounts"] == {"10690001": "secret"} and started["smgw_code"] == 10601
        ctl = ["--control-port", str(started["control_port"])]
        mo = subprocess.run(
            [
                sys.executable,
                "-c",
                SIM_CLI,
                "smgw-mo",
                "--from",
                "133",
                "--to",
                "10659",
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
            [sys.executable, "-c", SIM_CLI, "smgw-stats", "--json", *ctl],
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
