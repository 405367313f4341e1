"""The SGIP SP driver over real TCP on 127.0.0.1: against masd's simulated SMG, and against an SMG played
by hand here (a raw socket on the driver's listener) where a test needs one precise behaviour: a Report
answered only after it was stored, a Report the core could not store refused for a resend.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio

from masd.core.reply_parts import gaps, join
from masd_adapters.base import (
    ChannelEvents,
    InboundReceipt,
    InboundReply,
    InboundReplyPart,
    ReceiptStatus,
    parse_options,
)
from masd_adapters.cmpp.segments import CmppSegmenter
from masd_adapters.sgip import pdu
from masd_adapters.sgip import sequence as seq
from masd_adapters.sgip.client import SgipChannel, SgipOptions, receipt_of, submit_error
from masd_adapters.sgip.constants import LOGIN_SMG_TO_SP, RESULT_NODE_BUSY, STATE_DELIVERED, STATE_FAILED
from masd_adapters.sgip.smg import Smg, SmgConfig

LOGIN, PASSWORD = "sp901234", "s3cret"
SERVICE = "10655012345"
LONG_CHINESE = "各位同事：明天上午九点在三楼会议室召开年度工作总结会议，请准时参加并提前准备好发言材料。" * 2


class Events(ChannelEvents):
    """Records what the driver reports; ``gate`` holds store calls, ``fail`` fails them."""

    def __init__(self) -> None:
        self.receipts: list[InboundReceipt] = []
        self.replies: list[InboundReply] = []
        self.parts: list[InboundReplyPart] = []
        self.held: dict[tuple[str, str, str], dict[int, InboundReplyPart]] = {}
        self.states: list[bool] = []
        self.gate: trio.Event | None = None
        self.fail = False

    async def _store(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("database is down")

    async def receipt(self, channel: str, receipt: InboundReceipt) -> None:
        await self._store()
        self.receipts.append(receipt)

    async def reply(self, channel: str, reply: InboundReply) -> None:
        await self._store()
        self.replies.append(reply)

    async def reply_part(self, channel: str, part: InboundReplyPart) -> InboundReply | None:
        await self._store()
        self.parts.append(part)
        held = self.held.setdefault((part.sender, part.destination, part.reference), {})
        held.setdefault(part.seq, part)
        if len(held) < part.total:
            return None
        del self.held[(part.sender, part.destination, part.reference)]
        text = join(part.total, {s: (p.codec, p.body) for s, p in held.items()})
        reply = InboundReply(
            part.sender, part.destination, text, raw="" if len(held) == part.total else gaps(part.total, held)
        )
        self.replies.append(reply)
        return reply

    async def expire_reply_parts(self, channel: str, older_than: float) -> list[InboundReply]:
        return []

    def link_state(self, channel: str, up: bool) -> None:
        self.states.append(up)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def simulated_smg(nursery: trio.Nursery, listen_port: int, **config: Any) -> Smg:
    settings: dict[str, Any] = {
        "port": 0,
        "control": False,
        "accounts": {LOGIN: PASSWORD},
        "callback": f"127.0.0.1:{listen_port}",
        "callback_login_name": "unicom",
        "callback_password": "cb",
        "report_delay": 0.01,
        "callback_idle": 0.3,
    }
    settings.update(config)
    smg = Smg(SmgConfig(**settings))
    await nursery.start(smg.serve)
    return smg


async def start(
    nursery: trio.Nursery, port: int, listen_port: int, **options: Any
) -> tuple[SgipChannel, Events]:
    events = Events()
    opts: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "login_name": LOGIN,
        "password": PASSWORD,
        "area_code": "010",
        "corp_id": "12345",
        "service_type": "MASD",
        "listen": f"127.0.0.1:{listen_port}",
        "smg_login_name": "unicom",
        "smg_password": "cb",
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
        "response_timeout": 2.0,
    }
    opts.update(options)
    channel = SgipChannel("unicom", opts, events, "/nonexistent")
    await nursery.start(channel.run)
    return channel, events


async def rig(
    nursery: trio.Nursery, smg: dict[str, Any] | None = None, **options: Any
) -> tuple[Smg, SgipChannel, Events]:
    listen = _free_port()
    server = await simulated_smg(nursery, listen, **(smg or {}))
    channel, events = await start(nursery, server.port, listen, **options)
    await wait_up(channel)
    return server, channel, events


async def wait_up(channel: SgipChannel, up: bool = True, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while channel.up != up:
            await trio.sleep(0.01)


async def until(predicate: Any, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


def segments(value: str, ref: int = 0x42) -> list[Any]:
    return CmppSegmenter().encode(value, concat="udh8", ref=ref, max_segments=10)


# -- options and meanings --------------------------------------------------------------------------


def test_options_need_a_login_and_a_node_id_and_never_show_the_password() -> None:
    with pytest.raises(ValueError, match="option login_name='' is invalid: required"):
        parse_options(SgipOptions, "sgip", "u", {"host": "h", "node_id": 3010012345})
    with pytest.raises(ValueError, match="option node_id=None is invalid: required"):
        parse_options(SgipOptions, "sgip", "u", {"host": "h", "login_name": "x"})
    with pytest.raises(ValueError, match="listen") as caught:
        parse_options(
            SgipOptions, "sgip", "u", {"host": "h", "login_name": "x", "node_id": 1, "listen": "8802"}
        )
    assert "8802" in str(caught.value)
    with pytest.raises(ValueError) as bad:
        parse_options(
            SgipOptions, "sgip", "u", {"host": "h", "login_name": "x", "node_id": 1, "password": "é" * 3}
        )
    assert "é" not in str(bad.value) and "not shown" in str(bad.value)
    made = parse_options(
        SgipOptions, "sgip", "u", {"host": "h", "login_name": "x", "area_code": "010", "corp_id": "12345"}
    )
    assert made.sp_node_id == 3010012345 and made.port == 8801 and made.window == 16


def test_submit_results_flow_control_session_and_permanent() -> None:
    for code in (11, 33):
        error = submit_error(code)
        assert error.throttled and error.retriable
    assert submit_error(1).rebind and submit_error(1).retriable
    assert submit_error(32).retriable and not submit_error(32).throttled
    error = submit_error(6)
    assert not error.retriable and error.name == "SGIP_SUBMIT_RESP illegal phone number"
    assert submit_error(99).name == "SGIP_SUBMIT_RESP other error (99)" and not submit_error(99).retriable


def test_report_states_become_receipts() -> None:
    number = seq.SequenceNumber(3010012345, 1204183000, 7)
    ok = receipt_of(pdu.Report(number, "8613800138000", STATE_DELIVERED))
    assert ok == InboundReceipt("301001234512041830000000000007", ReceiptStatus.DELIVERED, raw="delivered")
    failed = receipt_of(pdu.Report(number, "8613800138000", STATE_FAILED, 29))
    assert failed.status == ReceiptStatus.UNDELIVERED and failed.error_code == 29
    assert failed.raw == "failed: unknown user"
    waiting = receipt_of(pdu.Report(number, "8613800138000", 1))
    assert waiting.status == ReceiptStatus.ENROUTE  # not final


# -- against the simulated SMG ---------------------------------------------------------------------


async def test_binds_submits_a_long_chinese_text_with_one_reference_and_matches_each_report(
    nursery: trio.Nursery, tmp_path: Any
) -> None:
    record = tmp_path / "smg.jsonl"
    smg, channel, events = await rig(nursery, {"record": record})
    outcomes = await channel.submit("13800138000", SERVICE + "7", segments(LONG_CHINESE))
    ids = [o.carrier_id for o in outcomes]
    assert all(ids) and len(set(ids)) == 2 and all(len(i or "") == 30 for i in ids)
    assert {i[:10] for i in ids if i} == {"3010012345"}  # the node id built from area code and corp id
    await until(lambda: len(events.receipts) == 2)
    assert sorted(r.carrier_id for r in events.receipts) == sorted(i for i in ids if i)
    assert {r.status for r in events.receipts} == {ReceiptStatus.DELIVERED}
    smg.flush_record()
    import json

    lines = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    binds = [line for line in lines if line["pdu"] == "SGIP_BIND"]
    assert binds[0]["login_type"] == 1 and binds[0]["login_name"] == LOGIN and binds[0]["result"] == 0
    subs = [line for line in lines if line["pdu"] == "SGIP_SUBMIT"]
    assert sorted(s["sequence_number"] for s in subs) == sorted(i for i in ids if i)
    assert {s["user_numbers"][0] for s in subs} == {"8613800138000"}
    assert {s["sp_number"] for s in subs} == {SERVICE + "7"}
    assert {s["tp_udhi"] for s in subs} == {1} and {s["message_coding"] for s in subs} == {8}
    assert {s["report_flag"] for s in subs} == {1} and {s["corp_id"] for s in subs} == {"12345"}
    assert {s["service_type"] for s in subs} == {"MASD"}
    udhs = {bytes.fromhex(s["message_content"])[:6].hex() for s in subs}
    assert udhs == {"0500034202" + "01", "0500034202" + "02"}  # one reference, two parts
    assert "".join(s["text"] for s in subs) == LONG_CHINESE
    assert smg.stats.reports_acked == 2


async def test_a_failed_report_keeps_its_error_code(nursery: trio.Nursery) -> None:
    _, channel, events = await rig(nursery, {"outcomes": {"29": 1.0}})
    (outcome,) = await channel.submit("13800138001", SERVICE, segments("测试"))
    await until(lambda: len(events.receipts) == 1)
    (receipt,) = events.receipts
    assert receipt.carrier_id == outcome.carrier_id
    assert receipt.status == ReceiptStatus.UNDELIVERED and receipt.error_code == 29


async def test_node_busy_is_a_retriable_throttle(nursery: trio.Nursery) -> None:
    _, channel, _ = await rig(nursery, {"throttle_every": 2})
    first = await channel.submit("13800138000", SERVICE, segments("one"))
    second = await channel.submit("13800138000", SERVICE, segments("two"))
    assert first[0].error is None
    error = second[0].error
    assert error is not None and error.throttled and error.retriable and error.code == RESULT_NODE_BUSY


async def test_a_long_reply_with_udh_goes_to_the_core_part_by_part(nursery: trio.Nursery) -> None:
    smg, _, events = await rig(nursery)
    parts = await smg.inject_mo(
        sender="8613800138000", sp_number=SERVICE + "42", text=LONG_CHINESE, shuffle=True
    )
    assert parts == 2
    await until(lambda: bool(events.replies))
    assert events.replies == [InboundReply("8613800138000", SERVICE + "42", LONG_CHINESE)]
    assert len(events.parts) == 2 and events.parts[0].reference.startswith("udh8:")
    await until(lambda: smg.stats.mo_acked == 2)
    sixteen = await smg.inject_mo(sender="8613800138000", sp_number=SERVICE, text="好" * 80, concat="udh16")
    assert sixteen == 2
    await until(lambda: len(events.replies) == 2)
    assert events.replies[1].text == "好" * 80 and events.parts[-1].reference.startswith("udh16:")


async def test_short_replies_in_each_coding(nursery: trio.Nursery) -> None:
    smg, _, events = await rig(nursery)
    await smg.inject_mo(sender="8613800138000", sp_number=SERVICE + "1", text="1")
    await smg.inject_mo(sender="8613800138000", sp_number=SERVICE + "1", text="收到", coding=15)
    await smg.inject_mo(sender="8613800138000", sp_number=SERVICE + "1", text="收到", coding=8)
    await until(lambda: len(events.replies) == 3)
    assert sorted(r.text for r in events.replies) == sorted(["1", "收到", "收到"])


async def test_an_idle_link_is_unbound_and_opened_again_on_demand(nursery: trio.Nursery) -> None:
    smg, channel, _ = await rig(nursery, idle_timeout=0.3)
    assert (await channel.submit("13800138000", SERVICE, segments("a")))[0].error is None
    await until(lambda: smg.stats.unbinds_received == 1)
    await until(lambda: smg.stats.sessions == 0)
    assert channel.up  # dormant, not down
    (outcome,) = await channel.submit("13800138000", SERVICE, segments("b"))
    assert outcome.error is None and smg.stats.logins == 2


async def test_reconnects_after_the_smg_drops_the_link(nursery: trio.Nursery) -> None:
    smg, channel, events = await rig(nursery, {"disconnect_every": 2})
    assert (await channel.submit("13800138000", SERVICE, segments("a")))[0].error is None
    (cut,) = await channel.submit("13800138000", SERVICE, segments("b"))
    assert cut.error is not None and cut.error.retriable and cut.error.name == "LINK_DOWN"
    await wait_up(channel)
    await until(lambda: smg.stats.logins == 2)
    assert (await channel.submit("13800138000", SERVICE, segments("c")))[0].error is None
    assert False in events.states


async def test_a_wrong_password_keeps_the_channel_down_and_names_the_result(nursery: trio.Nursery) -> None:
    listen = _free_port()
    smg = await simulated_smg(nursery, listen, accounts={LOGIN: "other"})
    channel, _ = await start(nursery, smg.port, listen)
    await until(lambda: smg.stats.login_failures >= 1)
    assert not channel.up
    assert channel.problem == "SGIP_BIND refused: result 1 (illegal login)"
    (outcome,) = await channel.submit("13800138000", SERVICE, segments("x"))
    assert outcome.error is not None and outcome.error.retriable and "illegal login" in outcome.error.name


async def test_drain_unbinds(nursery: trio.Nursery) -> None:
    smg, channel, _ = await rig(nursery)
    await channel.drain()
    await until(lambda: smg.stats.unbinds_received == 1)
    (outcome,) = await channel.submit("13800138000", SERVICE, segments("late"))
    assert outcome.error is not None and outcome.error.name == "LINK_DOWN"


# -- the listener, with an SMG played by hand ------------------------------------------------------


class Callback:
    """A raw SMG-side connection to the driver's listener."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.sequencer = seq.Sequencer(2010000001)

    async def send(self, message: pdu.Pdu) -> seq.SequenceNumber:
        number = self.sequencer.next(__import__("datetime").datetime.now())
        await self.stream.send_all(pdu.encode(message, sequence_number=number))
        return number

    async def receive(self, timeout: float = 3.0) -> pdu.Packet | None:
        with trio.move_on_after(timeout):
            while True:
                if len(self.buffer) >= pdu.HEADER_LENGTH:
                    length = pdu.decode_header(bytes(self.buffer[:20])).message_length
                    if len(self.buffer) >= length:
                        raw = bytes(self.buffer[:length])
                        del self.buffer[:length]
                        return pdu.decode(raw)
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    return None
                self.buffer += chunk
        return None


async def callback(
    channel: SgipChannel, login: str = "unicom", password: str = "cb", login_type: int = LOGIN_SMG_TO_SP
) -> tuple[Callback, int]:
    stream = await trio.open_tcp_stream("127.0.0.1", channel.listen_port)
    conn = Callback(stream)
    await conn.send(pdu.Bind(login_type, login, password))
    answer = await conn.receive()
    assert answer is not None and isinstance(answer.pdu, pdu.BindResp)
    return conn, answer.pdu.result


async def test_the_listener_checks_the_smgs_login(nursery: trio.Nursery) -> None:
    _, channel, _ = await rig(nursery)
    _, result = await callback(channel, password="wrong")
    assert result == 1
    _, result = await callback(channel, login_type=1)
    assert result == 4
    conn, result = await callback(channel)
    assert result == 0
    await conn.send(pdu.Unbind())
    answer = await conn.receive()
    assert answer is not None and isinstance(answer.pdu, pdu.UnbindResp)


async def test_report_resp_only_after_the_report_was_stored(nursery: trio.Nursery) -> None:
    _, channel, events = await rig(nursery)
    events.gate = trio.Event()
    conn, _ = await callback(channel)
    submitted = seq.SequenceNumber(3010012345, 1204120000, 99)
    sent = await conn.send(pdu.Report(submitted, "8613800138000", STATE_DELIVERED))
    assert await conn.receive(timeout=0.3) is None  # nothing until the core has it
    events.gate.set()
    answer = await conn.receive()
    assert answer is not None and isinstance(answer.pdu, pdu.ReportResp) and answer.pdu.result == 0
    assert answer.sequence_number == sent
    assert events.receipts[0].carrier_id == seq.to_text(submitted)


async def test_deliver_resp_only_after_the_reply_was_stored_and_node_busy_when_it_could_not_be(
    nursery: trio.Nursery,
) -> None:
    _, channel, events = await rig(nursery)
    events.gate = trio.Event()
    conn, _ = await callback(channel)
    await conn.send(
        pdu.Deliver(
            "8613800138000", SERVICE + "5", message_coding=8, message_content="好".encode("utf-16-be")
        )
    )
    assert await conn.receive(timeout=0.3) is None
    events.gate.set()
    answer = await conn.receive()
    assert answer is not None and isinstance(answer.pdu, pdu.DeliverResp) and answer.pdu.result == 0
    assert events.replies == [InboundReply("8613800138000", SERVICE + "5", "好")]
    events.fail = True
    await conn.send(pdu.Deliver("8613800138000", SERVICE + "5", message_content=b"2"))
    answer = await conn.receive()
    assert (
        answer is not None
        and isinstance(answer.pdu, pdu.DeliverResp)
        and answer.pdu.result == RESULT_NODE_BUSY
    )
