"""The simulated SMSC (``masd sim smsc``) over real TCP on 127.0.0.1, driven by a small raw SMPP client
written here on top of :mod:`masd_adapters.smpp.pdu` (smpplib encodes and decodes, so the server's lean
codecs are checked against an independent one): binds and their errors, submit_sm and its receipt,
receipts queued until a receiver binds and sent again when unanswered, throttling, dropped connections,
enquire_link both ways, MO injection (single, multipart, shuffled, via the control port and the
``masd sim mo`` command), the record file, and the ``masd sim smsc`` command stopping on SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from masd.core import split
from masd_adapters.base import OutboundSegment
from masd_adapters.smpp.pdu import HEADER, PduStream, SequenceGenerator, make
from masd_adapters.smpp.smsc import Smsc, SmscConfig

TIMEOUT = 5.0
SIM_CLI = "from masd.cli.sim import sim_app; sim_app()"
RECEIPT_RE = re.compile(
    r"^id:(?P<id>\S+) sub:001 dlvrd:(?P<dlvrd>\d{3}) submit date:\d{10} done date:\d{10} "
    r"stat:(?P<stat>[A-Z]+) err:(?P<err>\d{3}) text:(?P<text>.*)$"
)


class Esme:
    """A minimal ESME: send requests, read whatever comes, answer nothing unless told to."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.ps = PduStream(stream)
        self.seq = SequenceGenerator()

    async def send(self, name: str, **fields: Any) -> int:
        seq = self.seq.next_sequence()
        await self.ps.send(make(name, seq, **fields))
        return seq

    async def recv(self, timeout: float = TIMEOUT) -> Any:
        with trio.fail_after(timeout):
            return await self.ps.receive()

    async def expect(self, command: str, timeout: float = TIMEOUT) -> Any:
        """The next PDU named ``command``; enquire_link from the SMSC is answered on the way."""
        with trio.fail_after(timeout):
            while True:
                pdu = await self.ps.receive()
                assert pdu is not None, f"connection closed while waiting for {command}"
                if pdu.command == command:
                    return pdu
                if pdu.command == "enquire_link":
                    await self.ps.send(make("enquire_link_resp", pdu.sequence))
                    continue
                raise AssertionError(f"expected {command}, got {pdu.command} (status {pdu.status})")

    async def request(self, name: str, **fields: Any) -> Any:
        seq = await self.send(name, **fields)
        resp = await self.expect(name + "_resp")
        assert resp.sequence == seq
        return resp

    async def bind(self, kind: str = "transceiver", system_id: str = "masd", password: str = "masd") -> int:
        resp = await self.request(f"bind_{kind}", system_id=system_id, password=password)
        return int(resp.status)

    async def submit(self, text: str = "hello", *, dest: str = "13800138000", **fields: Any) -> Any:
        fields.setdefault("registered_delivery", 1)
        fields.setdefault("short_message", text.encode())
        return await self.request("submit_sm", source_addr="1065700012345", destination_addr=dest, **fields)

    async def deliver(self, *, ack: bool = True) -> Any:
        pdu = await self.expect("deliver_sm")
        if ack:
            await self.ps.send(make("deliver_sm_resp", pdu.sequence))
        return pdu

    async def closed(self) -> bool:
        """True when the SMSC closes the connection (anything it still sends first is skipped)."""
        with trio.fail_after(TIMEOUT):
            try:
                while await self.ps.receive_raw() is not None:
                    pass
            except trio.BrokenResourceError:
                pass
        return True

    async def aclose(self) -> None:
        await self.ps.aclose()


@pytest.fixture
async def smsc_factory(nursery: trio.Nursery) -> AsyncIterator[Callable[..., Any]]:
    async def start(**options: Any) -> Smsc:
        options.setdefault("port", 0)
        options.setdefault("receipt_delay", 0.01)
        options.setdefault("seed", 1)
        server = Smsc(SmscConfig(**options))
        await nursery.start(server.serve)
        return server

    yield start


async def connect(server: Smsc) -> Esme:
    return Esme(await trio.open_tcp_stream("127.0.0.1", server.port))


def tlv_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ----- binds ---------------------------------------------------------------------------------------------


async def test_bind_ok_and_errors(smsc_factory: Callable[..., Any]) -> None:
    server = await smsc_factory(accounts={"masd": "masd", "other": "pw"})
    for kind in ("transmitter", "receiver", "transceiver"):
        esme = await connect(server)
        assert await esme.bind(kind) == 0
        await esme.aclose()
    esme = await connect(server)
    assert await esme.bind(password="wrong") == 0x0E  # ESME_RINVPASWD
    assert await esme.bind(system_id="nobody") == 0x0F  # ESME_RINVSYSID
    # Before a bind: submit_sm gets 0x04, enquire_link is answered.
    resp = await esme.submit()
    assert resp.status == 0x04
    assert (await esme.request("enquire_link")).status == 0
    # The same connection may bind after failures; binding again is 0x05.
    assert await esme.bind(system_id="other", password="pw") == 0
    assert await esme.bind() == 0x05
    resp = await esme.request("unbind")
    assert resp.status == 0
    assert await esme.closed()


async def test_receiver_cannot_submit_and_max_binds(smsc_factory: Callable[..., Any]) -> None:
    server = await smsc_factory(max_binds=1)
    esme = await connect(server)
    assert await esme.bind("receiver") == 0
    assert (await esme.submit()).status == 0x04
    second = await connect(server)
    assert await second.bind("transmitter") == 0x0D  # ESME_RBINDFAIL
    await esme.aclose()


async def test_unknown_and_malformed(smsc_factory: Callable[..., Any]) -> None:
    server = await smsc_factory()
    esme = await connect(server)
    assert await esme.bind() == 0
    await esme.ps.send_raw(HEADER.pack(16, 0x00000777, 0, 42))
    nack = await esme.expect("generic_nack")
    assert (nack.sequence, nack.status) == (42, 0x03)
    # A submit_sm whose body ends in the middle of its fields: generic_nack, then the SMSC hangs up.
    await esme.ps.send_raw(HEADER.pack(20, 0x00000004, 0, 43) + b"ab\0\0")
    nack = await esme.expect("generic_nack")
    assert nack.sequence == 43
    assert await esme.closed()


# ----- submits and receipts --------------------------------------------------------------------------------


async def test_submit_gets_id_and_receipt(smsc_factory: Callable[..., Any]) -> None:
    server = await smsc_factory(id_format="decimal")
    esme = await connect(server)
    assert await esme.bind() == 0
    resp = await esme.submit("hello world, this is longer than twenty")
    assert resp.status == 0
    message_id = resp.message_id.decode()
    assert message_id.isdigit()
    receipt = await esme.deliver()
    assert receipt.esm_class == 0x04
    assert tlv_text(receipt.receipted_message_id) == message_id
    assert receipt.message_state == 2
    fields = RECEIPT_RE.match(receipt.short_message.decode())
    assert fields is not None, receipt.short_message
    assert fields["id"] == message_id
    assert (fields["dlvrd"], fields["stat"], fields["err"]) == ("001", "DELIVRD", "000")
    assert fields["text"] == "hello world, this is"
    # Receipt goes from the handset to the service number.
    assert receipt.source_addr == b"13800138000"
    assert receipt.destination_addr == b"1065700012345"
    with trio.fail_after(TIMEOUT):
        while server.stats.receipts_acked < 1:
            await trio.sleep(0.01)
    assert server.stats.receipts_pending == 0


async def test_receipt_variants(smsc_factory: Callable[..., Any]) -> None:
    server = await smsc_factory(
        outcomes={"undelivered": 1},
        receipt_text_case="upper",
        receipt_text_id="decimal",
        receipt_tlvs=False,
    )
    esme = await connect(server)
    assert await esme.bind() == 0
    message_id = (await esme.submit("ab")).message_id.decode()
    receipt = await esme.deliver()
    text = receipt.short_message.decode()
    assert text.startswith(f"ID:{int(message_id, 16)} SUB:001 DLVRD:000 ")
    assert " STAT:UNDELIV ERR:001 TEXT:ab" in text
    assert getattr(receipt, "receipted_message_id", None) is None
    # registered_delivery 0 wants no receipt; 2 wants one on failure only (this outcome is a failure).
    await esme.submit("none", registered_delivery=0)
    await esme.submit("fail", registered_delivery=2)
    receipt = await esme.deliver()
    assert receipt.short_message.endswith(b"TEXT:fail")
    with trio.move_on_after(0.2):
        extra = await esme.deliver()
        raise AssertionError(f"unexpected receipt {extra.short_message!r}")


async def test_multipart_submits_get_own_ids_and_receipts(smsc_factory: Callable[..., Any]) -> None:
    server = await smsc_factory()
    esme = await connect(server)
    assert await esme.bind() == 0
    segments = split.encode(split.plan("x" * 300, concat="udh8"), concat="udh8", ref=7)
    sar = split.encode(split.plan("y" * 200, concat="sar"), concat="sar", ref=9)
    ids = set()
    for seg in segments:
        resp = await esme.submit(esm_class=0x40, short_message=seg.short_message)
        ids.add(resp.message_id.decode())
    for seg in sar:
        assert seg.sar is not None
        resp = await esme.submit(
            short_message=seg.short_message,
            sar_msg_ref_num=seg.sar[0],
            sar_total_segments=seg.sar[1],
            sar_segment_seqnum=seg.sar[2],
        )
        ids.add(resp.message_id.decode())
    assert len(ids) == len(segments) + len(sar) == 4
    got = {tlv_text((await esme.deliver()).receipted_message_id) for _ in ids}
    assert got == ids


async def test_receipt_waits_for_a_receiver(smsc_factory: Callable[..., Any]) -> None:
    server = await smsc_factory()
    tx = await connect(server)
    assert await tx.bind("transmitter") == 0
    message_id = (await tx.submit()).message_id.decode()
    await trio.sleep(0.1)
    assert server.stats.receipts_pending == 1
    assert server.stats.receipts_sent == 0
    rx = await connect(server)
    assert await rx.bind("receiver") == 0
    receipt = await rx.deliver()
    assert tlv_text(receipt.receipted_message_id) == message_id


async def test_unanswered_receipt_is_sent_again(smsc_factory: Callable[..., Any]) -> None:
    server = await smsc_factory(receipt_resend_after=0.2)
    esme = await connect(server)
    assert await esme.bind() == 0
    message_id = (await esme.submit()).message_id.decode()
    first = await esme.deliver(ack=False)
    second = await esme.deliver(ack=True)
    assert tlv_text(first.receipted_message_id) == tlv_text(second.receipted_message_id) == message_id
    assert second.sequence != first.sequence
    assert server.stats.receipts_resent == 1
    # A receipt in flight on a bind that goes away is sent to the next bind.
    message_id = (await esme.submit()).message_id.decode()
    await esme.deliver(ack=False)
    await esme.aclose()
    again = await connect(server)
    assert await again.bind("receiver") == 0
    assert tlv_text((await again.deliver()).receipted_message_id) == message_id


async def test_throttle_every_third(smsc_factory: Callable[..., Any]) -> None:
    server = await smsc_factory(throttle_every=3, reject_prefixes=("999",))
    esme = await connect(server)
    assert await esme.bind("transmitter") == 0
    statuses = [(await esme.submit(registered_delivery=0)).status for _ in range(9)]
    assert statuses == [0, 0, 0x58] * 3
    assert server.stats.throttled == 3
    assert (await esme.submit(dest="99912345")).status == 0x0B
    # Changed at run time through the control interface.
    answer = await server.control(b'{"op": "set", "throttle_every": 0, "throttle_above_rate": 5}')
    assert answer["ok"], answer
    statuses = [(await esme.submit(registered_delivery=0)).status for _ in range(8)]
    assert statuses.count(0x58) >= 2 and statuses[:5] == [0] * 5


async def test_disconnect_every(smsc_factory: Callable[..., Any]) -> None:
    server = await smsc_factory(disconnect_every=4)
    esme = await connect(server)
    assert await esme.bind("transmitter") == 0  # PDU 1
    for _ in range(3):  # PDUs 2, 3 and 4
        await esme.send("submit_sm", source_addr="1", destination_addr="2", short_message=b"x")
    answers = []
    with trio.fail_after(TIMEOUT):
        while (pdu := await esme.ps.receive()) is not None:
            answers.append(pdu.status)
    assert answers == [0, 0]  # the fourth PDU is never answered
    assert server.stats.dropped_disconnect_every == 1


async def test_disconnect_every_answers_what_came_before_in_the_same_read(
    smsc_factory: Callable[..., Any],
) -> None:
    server = await smsc_factory(disconnect_every=4)
    esme = await connect(server)
    assert await esme.bind("transmitter") == 0  # PDU 1
    # PDUs 2, 3 and 4 in one write, so the SMSC reads them together.
    pdus = [
        make("submit_sm", seq, source_addr="1", destination_addr="2", short_message=b"x") for seq in (7, 8, 9)
    ]
    await esme.ps.stream.send_all(b"".join(p.generate() for p in pdus))
    answers = []
    with trio.fail_after(TIMEOUT):
        while (pdu := await esme.ps.receive()) is not None:
            answers.append((pdu.sequence, pdu.status))
    assert answers == [(7, 0), (8, 0)]


async def test_enquire_link_both_ways(smsc_factory: Callable[..., Any]) -> None:
    server = await smsc_factory(enquire_link_interval=0.05, enquire_link_timeout=0.2)
    good = await connect(server)
    bad = await connect(server)
    assert await good.bind() == 0
    assert await bad.bind() == 0
    assert (await good.request("enquire_link")).status == 0

    async def answer_pings() -> None:
        while (pdu := await good.ps.receive()) is not None:
            assert pdu.command == "enquire_link"
            await good.ps.send(make("enquire_link_resp", pdu.sequence))

    # The SMSC's own enquire_link: `good` answers, `bad` does not and is dropped.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer_pings)
        ping = await bad.recv()
        assert ping.command == "enquire_link"
        assert await bad.closed()
        await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    assert server.stats.dropped_unanswered_enquire_link == 1
    assert server.stats.binds == 1
    assert server.stats.enquire_links_sent >= 4


async def test_control_disconnect_and_stats(smsc_factory: Callable[..., Any]) -> None:
    server = await smsc_factory()
    esme = await connect(server)
    assert await esme.bind() == 0
    stream = await trio.open_tcp_stream("127.0.0.1", server.control_port)
    await stream.send_all(b'{"op":"stats"}\n{"op":"disconnect"}\n{"op":"nope"}\n')
    buf = b""
    with trio.fail_after(TIMEOUT):
        while buf.count(b"\n") < 3:
            buf += await stream.receive_some()
    stats, dropped, bad = (json.loads(line) for line in buf.splitlines())
    assert stats["ok"] and stats["stats"]["binds"] == 1
    assert dropped == {"ok": True, "dropped": 1}
    assert not bad["ok"] and "unknown op" in bad["error"]
    assert await esme.closed()
    await stream.aclose()


# ----- mobile-originated messages --------------------------------------------------------------------------


def _segment(pdu: Any) -> OutboundSegment:
    short = pdu.short_message or b""
    udh = bool(pdu.esm_class & 0x40)
    total = seq = 1
    if udh:
        total, seq = short[short[0] - 1], short[short[0]]  # the concat IE ends the header
    elif getattr(pdu, "sar_total_segments", None):
        total, seq = pdu.sar_total_segments, pdu.sar_segment_seqnum
    return OutboundSegment(seq=seq, total=total, data_coding=pdu.data_coding, short_message=short, udh=udh)


async def test_inject_mo_single_and_multipart(smsc_factory: Callable[..., Any]) -> None:
    server = await smsc_factory()
    esme = await connect(server)
    assert await esme.bind("receiver") == 0
    assert await server.inject_mo(sender="13800138000", destination="10657000123", text="1") == 1
    mo = await esme.deliver()
    assert (mo.esm_class, mo.data_coding, mo.short_message) == (0, 0, b"1")
    assert (mo.source_addr, mo.destination_addr) == (b"13800138000", b"10657000123")

    text = "会议通知：" + "请回复1确认参加，回复2请假。" * 12  # UCS-2, several parts
    n = await server.inject_mo(sender="13800138000", destination="10657000123", text=text, shuffle=True)
    assert n > 2
    parts = [await esme.deliver() for _ in range(n)]
    assert all(p.esm_class == 0x40 and p.data_coding == 8 for p in parts)
    segments = [_segment(p) for p in parts]
    assert [s.seq for s in segments] != sorted(s.seq for s in segments)  # really out of order
    assert split.reassemble(segments) == text

    gsm = "A" * 200
    assert await server.inject_mo(sender="1", destination="2", text=gsm, split="sar") == 2
    parts = [await esme.deliver() for _ in range(2)]
    assert all(p.esm_class == 0 and p.sar_total_segments == 2 for p in parts)
    assert split.reassemble([_segment(p) for p in parts]) == gsm
    with trio.fail_after(TIMEOUT):
        while server.stats.mo_pending:
            await trio.sleep(0.01)
    assert server.stats.mo_acked == 1 + n + 2


async def test_sim_mo_command_and_record(smsc_factory: Callable[..., Any], tmp_path: Path) -> None:
    record = tmp_path / "submits.jsonl"
    server = await smsc_factory(record=record)
    esme = await connect(server)
    assert await esme.bind() == 0
    resp = await esme.submit("hi there", registered_delivery=0)
    await esme.submit(short_message=b"\x05\x00\x03\x01\x02\x01abc", esm_class=0x40, registered_delivery=0)
    args = ["--from", "13800138000", "--to", "1065700012345", "--text", "回复" * 50, "--split", "udh16"]
    proc = await trio.run_process(
        [sys.executable, "-c", SIM_CLI, "mo", *args, "--control-port", str(server.control_port), "--json"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"ok": True, "parts": 2}
    parts = [await esme.deliver() for _ in range(2)]
    assert all(p.short_message[:3] == b"\x06\x08\x04" for p in parts)  # 16-bit reference IE
    assert split.reassemble([_segment(p) for p in parts]) == "回复" * 50

    bad = await trio.run_process(
        [
            sys.executable,
            "-c",
            SIM_CLI,
            "mo",
            "--from",
            "1",
            "--to",
            "2",
            "--text",
            "x",
            "--split",
            "zz",
            "--control-port",
            str(server.control_port),
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert bad.returncode == 1 and b"split must be one of" in bad.stderr

    await trio.sleep(0.25)  # flushed at least every 100 ms
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert lines[0]["message_id"] == resp.message_id.decode()
    assert lines[0]["body"] == b"hi there".hex() and lines[0]["system_id"] == "masd"
    assert (lines[0]["source"], lines[0]["destination"]) == ("1065700012345", "13800138000")
    assert lines[1]["esm_class"] == 0x40 and lines[1]["outcome"] == "delivered"


def test_smsc_command_runs_until_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SIM_CLI, "smsc", "--port", "0", "--json", "--receipt-delay", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or lines[-1].strip() != "}":
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            lines.append(line)
        info = json.loads("".join(lines))
        assert info["port"] > 0 and info["control_port"] > 0 and info["accounts"] == ["masd"]

        async def talk() -> None:
            esme = Esme(await trio.open_tcp_stream("127.0.0.1", info["port"]))
            assert await esme.bind() == 0
            assert (await esme.submit()).status == 0
            assert (await esme.deliver()).esm_class == 0x04

        trio.run(talk)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 0
        assert "1 submits" in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
