"""masd's simulated SMG with a raw SP written here on the SGIP codec: Bind checked, Submits answered (and
throttled, refused, cut) as configured, a Report per Submit naming it by its Sequence Number, MOs with a
UDH, all sent back over the SMG's own Bind (Login_Type 2) to the SP's listener, the record and the
control port."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from masd_adapters.sgip import pdu
from masd_adapters.sgip import sequence as seq
from masd_adapters.sgip.constants import LOGIN_SMG_TO_SP, RESULT_NODE_BUSY, STATE_DELIVERED, STATE_FAILED
from masd_adapters.sgip.smg import Smg, SmgConfig


class Peer:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.sequencer = seq.Sequencer(3010012345)

    async def send(self, message: pdu.Pdu, number: seq.SequenceNumber | None = None) -> seq.SequenceNumber:
        number = number or self.sequencer.next(datetime.now())
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


class Listener:
    """The SP's listener: records every Report and Deliver, answers them with ``result``."""

    def __init__(self) -> None:
        self.binds: list[pdu.Bind] = []
        self.received: list[pdu.Report | pdu.Deliver] = []
        self.unbinds = 0
        self.result = 0
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._serve, listeners)

    async def _serve(self, stream: trio.SocketStream) -> None:
        peer = Peer(stream)
        async with stream:
            while True:
                packet = await peer.receive(timeout=30)
                if packet is None:
                    return
                message = packet.pdu
                if isinstance(message, pdu.Bind):
                    self.binds.append(message)
                    await peer.send(pdu.BindResp(0), packet.sequence_number)
                elif isinstance(message, pdu.Report):
                    self.received.append(message)
                    await peer.send(pdu.ReportResp(self.result), packet.sequence_number)
                elif isinstance(message, pdu.Deliver):
                    self.received.append(message)
                    await peer.send(pdu.DeliverResp(self.result), packet.sequence_number)
                elif isinstance(message, pdu.Unbind):
                    self.unbinds += 1
                    await peer.send(pdu.UnbindResp(), packet.sequence_number)
                    return


async def setup(nursery: trio.Nursery, **config: Any) -> tuple[Smg, Listener]:
    listener = Listener()
    await nursery.start(listener.serve)
    settings: dict[str, Any] = {
        "port": 0,
        "accounts": {"sp": "pw"},
        "callback": f"127.0.0.1:{listener.port}",
        "callback_login_name": "unicom",
        "callback_password": "cb",
        "report_delay": 0.01,
        "callback_idle": 0.2,
    }
    settings.update(config)
    smg = Smg(SmgConfig(**settings))
    await nursery.start(smg.serve)
    return smg, listener


async def bound(smg: Smg, password: str = "pw") -> tuple[Peer, int]:
    peer = Peer(await trio.open_tcp_stream("127.0.0.1", smg.port))
    await peer.send(pdu.Bind(1, "sp", password))
    answer = await peer.receive()
    assert answer is not None and isinstance(answer.pdu, pdu.BindResp)
    return peer, answer.pdu.result


def submit(text: str = "hello", **fields: Any) -> pdu.Submit:
    values: dict[str, Any] = {
        "sp_number": "1065501234501",
        "user_numbers": ("8613800138000",),
        "corp_id": "12345",
    }
    values.update(fields)
    return pdu.Submit(message_content=text.encode("ascii"), **values)


async def until(predicate: Any, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_bind_is_checked_and_a_submit_before_it_refused(nursery: trio.Nursery) -> None:
    smg, _ = await setup(nursery)
    _, result = await bound(smg, password="nope")
    assert result == 1 and smg.stats.login_failures == 1
    peer = Peer(await trio.open_tcp_stream("127.0.0.1", smg.port))
    await peer.send(submit())
    answer = await peer.receive()
    assert answer is not None and isinstance(answer.pdu, pdu.SubmitResp) and answer.pdu.result == 1
    await peer.send(pdu.Bind(LOGIN_SMG_TO_SP, "sp", "pw"))
    answer = await peer.receive()
    assert answer is not None and isinstance(answer.pdu, pdu.BindResp) and answer.pdu.result == 4


async def test_a_submit_gets_a_report_naming_its_sequence_number_over_the_callback(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    record = tmp_path / "r.jsonl"
    smg, listener = await setup(nursery, record=record, outcomes={"delivered": 1, "29": 1}, seed=3)
    peer, result = await bound(smg)
    assert result == 0
    numbers = []
    for i in range(6):
        numbers.append(await peer.send(submit(f"m{i}")))
        answer = await peer.receive()
        assert answer is not None and isinstance(answer.pdu, pdu.SubmitResp) and answer.pdu.result == 0
        assert answer.sequence_number == numbers[-1]
    await until(lambda: len(listener.received) == 6)
    reports = [r for r in listener.received if isinstance(r, pdu.Report)]
    assert sorted(r.submit_sequence_number for r in reports) == sorted(numbers)
    assert {r.state for r in reports} == {STATE_DELIVERED, STATE_FAILED}
    assert {r.error_code for r in reports if r.state == STATE_FAILED} == {29}
    assert listener.binds[0].login_type == LOGIN_SMG_TO_SP and listener.binds[0].login_name == "unicom"
    await until(lambda: listener.unbinds == 1)  # nothing more to send: the SMG unbinds its link
    smg.flush_record()
    lines = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    subs = [line for line in lines if line["pdu"] == "SGIP_SUBMIT"]
    assert [s["sequence_number"] for s in subs] == [seq.to_text(n) for n in numbers]
    assert subs[0]["text"] == "m0" and subs[0]["user_numbers"] == ["8613800138000"]
    assert smg.stats.reports_acked == 6 and smg.stats.reports_pending == 0


async def test_throttle_every_nth_and_a_refused_report_is_sent_again(nursery: trio.Nursery) -> None:
    smg, listener = await setup(nursery, throttle_every=2)
    listener.result = RESULT_NODE_BUSY
    peer, _ = await bound(smg)
    results = []
    for i in range(4):
        await peer.send(submit(f"t{i}"))
        answer = await peer.receive()
        assert answer is not None and isinstance(answer.pdu, pdu.SubmitResp)
        results.append(answer.pdu.result)
    assert results == [0, RESULT_NODE_BUSY, 0, RESULT_NODE_BUSY]
    await until(lambda: smg.stats.nacks >= 2)
    listener.result = 0
    await until(lambda: smg.stats.reports_acked == 2)
    assert smg.stats.reports_resent >= 1


async def test_a_long_mo_goes_in_parts_with_one_udh_reference(nursery: trio.Nursery) -> None:
    smg, listener = await setup(nursery)
    answer = await smg.control(
        {"op": "mo", "from": "8613800138000", "to": "1065501234501", "text": "好" * 100}
    )
    assert answer == {"ok": True, "parts": 2}
    await until(lambda: len(listener.received) == 2)
    delivers = [d for d in listener.received if isinstance(d, pdu.Deliver)]
    assert {d.tp_udhi for d in delivers} == {1} and {d.message_coding for d in delivers} == {8}
    assert len({d.message_content[3] for d in delivers}) == 1
    assert {d.sp_number for d in delivers} == {"1065501234501"}
    assert (await smg.control({"op": "stats"}))["stats"]["mo_acked"] == 2
    assert (await smg.control({"op": "mo", "from": "x", "to": "y", "text": "a", "coding": 3}))["ok"] is False


async def test_disconnect_every_and_unbind(nursery: trio.Nursery) -> None:
    smg, _ = await setup(nursery, disconnect_every=2)
    peer, _ = await bound(smg)
    await peer.send(submit("a"))
    assert (await peer.receive()) is not None
    await peer.send(submit("b"))
    assert (await peer.receive()) is None  # cut, unanswered
    assert smg.stats.dropped_disconnect_every == 1
    peer, _ = await bound(smg)
    await peer.send(pdu.Unbind())
    answer = await peer.receive()
    assert answer is not None and isinstance(answer.pdu, pdu.UnbindResp)
    assert (await smg.control({"op": "set", "throttle_every": 3}))["config"]["throttle_every"] == 3
