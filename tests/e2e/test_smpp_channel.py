"""The SMPP client driver against an SMSC over real TCP on 127.0.0.1.

Most tests use :class:`FakeSmsc`, a small scriptable server defined here, because they need to make the
SMSC misbehave in one precise way (answer late, drop the link, refuse a password, count what is
outstanding). The tests named ``..._simulated_smsc`` run against masd's own simulated SMSC.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio

from masd.core.reply_parts import MISSING, gaps, join
from masd_adapters.base import (
    ChannelEvents,
    InboundReceipt,
    InboundReply,
    InboundReplyPart,
    OutboundSegment,
    ReceiptStatus,
)
from masd_adapters.smpp import constants, fast, receipts
from masd_adapters.smpp.client import SmppChannel
from masd_adapters.smpp.pdu import HEADER, PduStream, make, parse
from masd_adapters.smpp.smsc import Smsc, SmscConfig

GENERIC_NACK = 0x80000000
BIND_NAMES = {0x01: "receiver", 0x02: "transmitter", 0x09: "transceiver"}
UNBIND, UNBIND_RESP = 0x06, 0x80000006
ENQUIRE_LINK, ENQUIRE_LINK_RESP = 0x15, 0x80000015


# -- a scriptable SMSC ------------------------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    status: int = 0
    delay: float = 0.0
    message_id: str | None = None  # None: the next id from the counter
    silent: bool = False  # never answer


class Conn:
    """One accepted connection as the fake SMSC sees it."""

    def __init__(self, smsc: FakeSmsc, stream: trio.SocketStream) -> None:
        self.smsc = smsc
        self.pdus = PduStream(stream)
        self.mode = ""
        self.seq = itertools.count(1)
        self.resps: dict[int, tuple[int, float]] = {}  # seq -> (status, time) of answers to our requests
        self.resp_arrived = trio.Event()
        self.closed = trio.Event()
        self.scope = trio.CancelScope()
        self.mute = False  # read and ignore everything, like a hung SMSC

    async def send(self, data: bytes) -> None:
        await self.pdus.send_raw(data)

    async def deliver(self, **fields: Any) -> int:
        seq = next(self.seq)
        await self.send(fast.encode_deliver_sm(seq, **fields))
        return seq

    async def wait_resp(self, seq: int, timeout: float = 5.0) -> tuple[int, float]:
        with trio.fail_after(timeout):
            while seq not in self.resps:
                self.resp_arrived = trio.Event()
                await self.resp_arrived.wait()
        return self.resps[seq]

    def drop(self) -> None:
        self.scope.cancel()


class FakeSmsc:
    def __init__(
        self, password: str = "secret", answer: Callable[[fast.SubmitSm], Answer] | None = None
    ) -> None:
        self.password = password
        self.answer = answer or (lambda sm: Answer())
        self.port = 0
        self.conns: list[Conn] = []
        self.bind_attempts: list[tuple[str, str, str]] = []  # (mode, system_id, password)
        self.submits: list[fast.SubmitSm] = []
        self.outstanding = 0
        self.max_outstanding = 0
        self.enquire_links = 0
        self.unbinds = 0
        self.ids = itertools.count(0x1A2B0000)
        self.changed = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        with trio.fail_after(timeout):
            while not predicate():
                await self.changed.wait()

    def bound(self, mode: str | None = None) -> list[Conn]:
        return [c for c in self.conns if c.mode and not c.closed.is_set() and mode in (None, c.mode)]

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = Conn(self, stream)
        try:
            with conn.scope:
                async with trio.open_nursery() as nursery:
                    await self._session(conn, nursery)
                    nursery.cancel_scope.cancel()
        finally:
            conn.closed.set()
            self._notify()
            await trio.aclose_forcefully(stream)

    async def _session(self, conn: Conn, nursery: trio.Nursery) -> None:
        raw = await conn.pdus.receive_raw()
        if raw is None:
            return
        bind = parse(raw)
        command_id = HEADER.unpack_from(raw)[1]
        mode = BIND_NAMES[command_id]
        password = bind.password.decode()
        self.bind_attempts.append((mode, bind.system_id.decode(), password))
        resp = make(f"bind_{mode}_resp", bind.sequence, system_id="fake")
        if password != self.password:
            resp.status = 0x0E
            await conn.send(resp.generate())
            self._notify()
            return
        await conn.send(resp.generate())
        conn.mode = mode
        self.conns.append(conn)
        self._notify()
        while True:
            raw = await conn.pdus.receive_raw()
            if raw is None:
                return
            _, command_id, status, seq = HEADER.unpack_from(raw)
            if conn.mute:
                continue
            if command_id & 0x80000000:
                conn.resps[seq] = (status, trio.current_time())
                conn.resp_arrived.set()
            elif command_id == constants.SUBMIT_SM:
                sm = fast.decode_sm(raw)
                self.submits.append(sm)
                self.outstanding += 1
                self.max_outstanding = max(self.max_outstanding, self.outstanding)
                self._notify()
                nursery.start_soon(self._answer_submit, conn, sm)
            elif command_id == ENQUIRE_LINK:
                self.enquire_links += 1
                self._notify()
                await conn.send(HEADER.pack(16, ENQUIRE_LINK_RESP, 0, seq))
            elif command_id == UNBIND:
                self.unbinds += 1
                await conn.send(HEADER.pack(16, UNBIND_RESP, 0, seq))
                return
            else:
                await conn.send(HEADER.pack(16, GENERIC_NACK, 0x03, seq))

    async def _answer_submit(self, conn: Conn, sm: fast.SubmitSm) -> None:
        answer = self.answer(sm)
        try:
            if answer.silent:
                await trio.sleep_forever()
            if answer.delay:
                await trio.sleep(answer.delay)
        finally:
            self.outstanding -= 1
        message_id = answer.message_id if answer.message_id is not None else f"{next(self.ids):x}"
        await conn.send(fast.encode_resp(constants.SUBMIT_SM_RESP, sm.sequence, answer.status, message_id))


class Events(ChannelEvents):
    """ChannelEvents that records what the driver reports; ``gate`` holds store calls, ``fail`` fails them.
    Parts of long replies are kept in memory, as the core keeps them in its store."""

    def __init__(self) -> None:
        self.receipts: list[InboundReceipt] = []
        self.replies: list[InboundReply] = []
        self.parts: list[InboundReplyPart] = []  # every part stored, repeats included
        self.held: dict[tuple[str, str, str], dict[int, InboundReplyPart]] = {}
        self.expiries: list[float] = []  # older_than of each expire_reply_parts call
        self.states: list[bool] = []
        self.gate: trio.Event | None = None
        self.fail = False
        self.returned_at: list[float] = []

    async def receipt(self, channel: str, receipt: InboundReceipt) -> None:
        await self._store()
        self.receipts.append(receipt)
        self.returned_at.append(trio.current_time())

    async def reply(self, channel: str, reply: InboundReply) -> None:
        await self._store()
        self.replies.append(reply)
        self.returned_at.append(trio.current_time())

    async def reply_part(self, channel: str, part: InboundReplyPart) -> InboundReply | None:
        await self._store()
        self.parts.append(part)
        self.returned_at.append(trio.current_time())
        held = self.held.setdefault((part.sender, part.destination, part.reference), {})
        held.setdefault(part.seq, part)
        if len(held) < part.total:
            return None
        del self.held[(part.sender, part.destination, part.reference)]
        reply = self._joined(part.total, held)
        self.replies.append(reply)
        return reply

    async def expire_reply_parts(self, channel: str, older_than: float) -> list[InboundReply]:
        await self._store()
        self.expiries.append(older_than)
        out = []
        for key, held in list(self.held.items()):
            if min(p.received_at for p in held.values()) < older_than:
                del self.held[key]
                out.append(self._joined(next(iter(held.values())).total, held))
        self.replies.extend(out)
        return out

    @staticmethod
    def _joined(total: int, held: dict[int, InboundReplyPart]) -> InboundReply:
        some = next(iter(held.values()))
        text = join(total, {seq: (p.codec, p.body) for seq, p in held.items()})
        raw = "" if len(held) == total else gaps(total, held)
        return InboundReply(some.sender, some.destination, text, raw=raw)

    async def _store(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("database is down")

    def link_state(self, channel: str, up: bool) -> None:
        self.states.append(up)


def text_segment(text: str = "hello") -> list[OutboundSegment]:
    return [OutboundSegment(seq=1, total=1, data_coding=0, short_message=text.encode())]


async def start(
    nursery: trio.Nursery, smsc: FakeSmsc | Smsc, events: Events | None = None, **options: Any
) -> tuple[SmppChannel, Events]:
    events = events or Events()
    opts: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": smsc.port,
        "system_id": "masd",
        "password": "secret",
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
        "response_timeout": 2.0,
    }
    opts.update(options)
    channel = SmppChannel("carrier", opts, events, "/nonexistent")
    await nursery.start(channel.run)
    return channel, events


async def wait_up(channel: SmppChannel, up: bool = True, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while channel.up != up:
            await trio.sleep(0.01)


@pytest.fixture
async def smsc(nursery: trio.Nursery) -> FakeSmsc:
    server = FakeSmsc()
    await nursery.start(server.serve)
    return server


# -- options ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("bind", "receiver"),
        ("binds", 0),
        ("window", True),
        ("response_timeout", -1),
        ("id_format", "octal"),
        ("source_ton", 300),
        ("max_rate", 0),
        ("port", "2775"),
    ],
)
def test_bad_option_value_is_refused_by_name(option: str, value: object) -> None:
    opts = {"host": "h", "system_id": "s", option: value}
    with pytest.raises(ValueError, match=option) as info:
        SmppChannel("c", opts, Events(), "/tmp")
    assert repr(value) in str(info.value)


def test_missing_host_unknown_option_and_long_password_are_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="host"):
        SmppChannel("c", {"system_id": "s"}, Events(), "/tmp")
    with pytest.raises(ValueError, match="unknown option wndow"):
        SmppChannel("c", {"host": "h", "system_id": "s", "wndow": 3}, Events(), "/tmp")
    with pytest.raises(ValueError, match="password") as info:
        SmppChannel("c", {"host": "h", "system_id": "s", "password": "much-too-long"}, Events(), "/tmp")
    assert "much-too-long" not in str(info.value)


# -- binding and submitting -------------------------------------------------------------------------


async def test_transceiver_bind_and_submit_returns_carrier_ids(nursery: trio.Nursery, smsc: FakeSmsc) -> None:
    channel, events = await start(nursery, smsc)
    await wait_up(channel)
    assert events.states == [True]
    assert smsc.bind_attempts == [("transceiver", "masd", "secret")]
    outcomes = await channel.submit("+8613800138000", "10657001", text_segment())
    assert outcomes[0].error is None
    assert outcomes[0].carrier_id == receipts.canonical_id("1a2b0000", "auto")
    sm = smsc.submits[0]
    assert (sm.destination_addr, sm.dest_addr_ton, sm.dest_addr_npi) == (b"8613800138000", 1, 1)
    assert (sm.source_addr, sm.source_addr_ton, sm.source_addr_npi) == (b"10657001", 0, 0)
    assert (sm.short_message, sm.registered_delivery, sm.esm_class) == (b"hello", 1, 0)


async def test_tx_rx_bind_opens_a_transmitter_and_a_receiver_per_session(
    nursery: trio.Nursery, smsc: FakeSmsc
) -> None:
    channel, events = await start(nursery, smsc, bind="tx+rx", binds=2)
    await smsc.wait_for(lambda: len(smsc.bound()) == 4)
    assert sorted(m for m, _, _ in smsc.bind_attempts) == ["receiver"] * 2 + ["transmitter"] * 2
    await wait_up(channel)
    outcomes = await channel.submit("13800138000", "MASD", text_segment())
    assert outcomes[0].carrier_id
    sm = smsc.submits[0]
    assert (sm.source_addr, sm.source_addr_ton, sm.source_addr_npi) == (b"MASD", 5, 0)
    # Receipts come in on a receiver bind and are answered there.
    rx = smsc.bound("receiver")[0]
    seq = await rx.deliver(
        source_addr="13800138000",
        destination_addr="MASD",
        esm_class=0x04,
        short_message=f"id:{smsc.submits[0].sequence} stat:DELIVRD err:000".encode(),
        tlvs={constants.RECEIPTED_MESSAGE_ID: b"1a2b0000\0", constants.MESSAGE_STATE: b"\x02"},
    )
    assert (await rx.wait_resp(seq))[0] == 0
    assert events.receipts[0].carrier_id == outcomes[0].carrier_id
    assert events.receipts[0].status is ReceiptStatus.DELIVERED


async def test_segments_carry_udh_sar_and_payload_as_the_splitter_made_them(
    nursery: trio.Nursery, smsc: FakeSmsc
) -> None:
    channel, _ = await start(nursery, smsc)
    await wait_up(channel)
    udh = [
        OutboundSegment(
            seq=i, total=2, data_coding=8, short_message=bytes([5, 0, 3, 7, 2, i]) + b"\x00A", udh=True
        )
        for i in (1, 2)
    ]
    sar = [OutboundSegment(seq=1, total=1, data_coding=0, short_message=b"x", sar=(0x1234, 1, 1))]
    payload = [OutboundSegment(seq=1, total=1, data_coding=0, short_message=b"", message_payload=b"y" * 400)]
    for segs in (udh, sar, payload):
        outcomes = await channel.submit("+441234567890", "+441234", segs)
        assert all(o.error is None for o in outcomes)
    one, two, three, four = smsc.submits
    assert (one.esm_class, one.data_coding, one.short_message[5]) == (0x40, 8, 1)
    assert two.short_message[5] == 2
    assert (three.source_addr, three.source_addr_ton, three.source_addr_npi) == (b"441234", 1, 1)
    assert three.tlvs == {
        constants.SAR_MSG_REF_NUM: b"\x12\x34",
        constants.SAR_TOTAL_SEGMENTS: b"\x01",
        constants.SAR_SEGMENT_SEQNUM: b"\x01",
    }
    assert (four.short_message, four.tlvs) == (b"", {constants.MESSAGE_PAYLOAD: b"y" * 400})


async def test_no_bound_session_fails_every_segment_at_once_as_link_down() -> None:
    channel = SmppChannel("c", {"host": "127.0.0.1", "port": 9, "system_id": "s"}, Events(), "/tmp")
    outcomes = await channel.submit("1", "2", text_segment() * 2)
    assert [o.error.name if o.error else None for o in outcomes] == ["LINK_DOWN", "LINK_DOWN"]
    assert all(o.error and o.error.retriable for o in outcomes)


# -- submit errors ----------------------------------------------------------------------------------


async def test_throttled_answer_is_a_retriable_throttle(nursery: trio.Nursery) -> None:
    smsc = FakeSmsc(answer=lambda sm: Answer(status=0x58))
    await nursery.start(smsc.serve)
    channel, _ = await start(nursery, smsc)
    await wait_up(channel)
    [outcome] = await channel.submit("1380000", "1065", text_segment())
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.throttled, outcome.error.retriable) == (0x58, True, True)


async def test_invalid_destination_is_permanent_with_its_name(nursery: trio.Nursery) -> None:
    smsc = FakeSmsc(answer=lambda sm: Answer(status=0x0B))
    await nursery.start(smsc.serve)
    channel, _ = await start(nursery, smsc)
    await wait_up(channel)
    [outcome] = await channel.submit("1380000", "1065", text_segment())
    assert outcome.error is not None
    assert (outcome.error.name, outcome.error.retriable) == ("ESME_RINVDSTADR", False)


async def test_first_failing_segment_stops_the_delivery(nursery: trio.Nursery) -> None:
    smsc = FakeSmsc(answer=lambda sm: Answer(status=0x0B if sm.short_message == b"2" else 0))
    await nursery.start(smsc.serve)
    channel, _ = await start(nursery, smsc)
    await wait_up(channel)
    segs = [OutboundSegment(seq=i, total=3, data_coding=0, short_message=str(i).encode()) for i in (1, 2, 3)]
    outcomes = await channel.submit("1380000", "1065", segs)
    assert outcomes[0].carrier_id and outcomes[0].error is None
    assert [o.error.code if o.error else 0 for o in outcomes[1:]] == [0x0B, 0x0B]
    assert [s.short_message for s in smsc.submits] == [b"1", b"2"]


async def test_no_response_in_time_is_a_retriable_timeout(nursery: trio.Nursery) -> None:
    smsc = FakeSmsc(answer=lambda sm: Answer(silent=True))
    await nursery.start(smsc.serve)
    channel, _ = await start(nursery, smsc, response_timeout=0.3)
    await wait_up(channel)
    [outcome] = await channel.submit("1380000", "1065", text_segment())
    assert outcome.error is not None
    assert (outcome.error.name, outcome.error.retriable) == ("SUBMIT_TIMEOUT", True)


async def test_rebind_status_drops_the_session_and_binds_again(nursery: trio.Nursery) -> None:
    smsc = FakeSmsc(answer=lambda sm: Answer(status=0x04 if sm.short_message == b"first" else 0))
    await nursery.start(smsc.serve)
    channel, _ = await start(nursery, smsc)
    await wait_up(channel)
    [outcome] = await channel.submit("1380000", "1065", text_segment("first"))
    assert outcome.error is not None and outcome.error.rebind and outcome.error.retriable
    await smsc.wait_for(lambda: len(smsc.bind_attempts) == 2 and len(smsc.bound()) == 1)
    await wait_up(channel)
    [outcome] = await channel.submit("1380000", "1065", text_segment("second"))
    assert outcome.error is None


# -- submitting without waiting ---------------------------------------------------------------------


class Outcomes:
    """A submit_nowait callback: what it was given, and an event per call."""

    def __init__(self) -> None:
        self.got: list[list[Any]] = []
        self.changed = trio.Event()

    def __call__(self, outcomes: list[Any]) -> None:
        self.got.append(outcomes)
        self.changed.set()
        self.changed = trio.Event()

    async def wait(self, n: int, timeout: float = 5.0) -> None:
        with trio.fail_after(timeout):
            while len(self.got) < n:
                await self.changed.wait()


async def test_submit_nowait_hands_the_outcome_to_its_callback(nursery: trio.Nursery, smsc: FakeSmsc) -> None:
    channel, _ = await start(nursery, smsc)
    await wait_up(channel)
    done = Outcomes()
    assert channel.submit_nowait("+8613800138000", "10657001", text_segment(), done)
    await done.wait(1)
    [[outcome]] = done.got
    assert outcome.error is None and outcome.carrier_id == receipts.canonical_id("1a2b0000", "auto")
    sm = smsc.submits[0]
    assert (sm.destination_addr, sm.dest_addr_ton, sm.source_addr, sm.short_message) == (
        b"8613800138000",
        1,
        b"10657001",
        b"hello",
    )


async def test_submit_nowait_declines_what_would_have_to_wait(nursery: trio.Nursery) -> None:
    smsc = FakeSmsc(answer=lambda sm: Answer(silent=True))
    await nursery.start(smsc.serve)
    down = SmppChannel("c", {"host": "127.0.0.1", "port": 9, "system_id": "s"}, Events(), "/tmp")
    assert not down.submit_nowait("1", "2", text_segment(), Outcomes())  # no bound link
    paced, _ = await start(nursery, smsc, max_rate=50)
    await wait_up(paced)
    assert not paced.submit_nowait("1", "2", text_segment(), Outcomes())  # max_rate spaces submits
    channel, _ = await start(nursery, smsc, window=1)
    await wait_up(channel)
    assert not channel.submit_nowait("1", "2", text_segment() * 2, Outcomes())  # several segments
    assert channel.submit_nowait("1", "2", text_segment(), Outcomes())
    assert not channel.submit_nowait("1", "2", text_segment(), Outcomes())  # the window is full
    with trio.move_on_after(0.1):
        await channel.drain()
    assert not channel.submit_nowait("1", "2", text_segment(), Outcomes())  # draining
    assert len(smsc.submits) == 1


async def test_submit_nowait_reports_a_timeout_and_frees_the_window(nursery: trio.Nursery) -> None:
    smsc = FakeSmsc(answer=lambda sm: Answer(silent=sm.short_message == b"hello"))
    await nursery.start(smsc.serve)
    channel, _ = await start(nursery, smsc, response_timeout=0.3, window=1)
    await wait_up(channel)
    done = Outcomes()
    t0 = trio.current_time()
    assert channel.submit_nowait("1380000", "1065", text_segment(), done)
    await done.wait(1)
    assert 0.3 <= trio.current_time() - t0 < 1.0
    [[outcome]] = done.got
    assert outcome.error is not None and outcome.error.name == "SUBMIT_TIMEOUT"
    [after] = await channel.submit("1380000", "1065", text_segment("next"))  # the slot is free again
    assert after.error is None


async def test_submit_nowait_reports_a_lost_link(nursery: trio.Nursery) -> None:
    smsc = FakeSmsc(answer=lambda sm: Answer(silent=True))
    await nursery.start(smsc.serve)
    channel, _ = await start(nursery, smsc)
    await wait_up(channel)
    done = Outcomes()
    assert channel.submit_nowait("1380000", "1065", text_segment(), done)
    await smsc.wait_for(lambda: len(smsc.submits) == 1)
    smsc.bound()[0].drop()
    await done.wait(1)
    [[outcome]] = done.got
    assert outcome.error is not None and outcome.error.name == "LINK_DOWN" and outcome.error.retriable


# -- link life --------------------------------------------------------------------------------------


async def test_reconnects_after_the_smsc_drops_the_connection(nursery: trio.Nursery) -> None:
    smsc = FakeSmsc(answer=lambda sm: Answer(delay=0.5 if sm.short_message == b"slow" else 0))
    await nursery.start(smsc.serve)
    channel, events = await start(nursery, smsc)
    await wait_up(channel)
    async with trio.open_nursery() as inner:
        lost: list[Any] = []

        async def slow() -> None:
            lost.extend(await channel.submit("1380000", "1065", text_segment("slow")))

        inner.start_soon(slow)
        await smsc.wait_for(lambda: len(smsc.submits) == 1)
        smsc.bound()[0].drop()
    assert lost[0].error is not None and lost[0].error.name == "LINK_DOWN"
    await smsc.wait_for(lambda: len(smsc.bound()) == 1)
    await wait_up(channel)
    [outcome] = await channel.submit("1380000", "1065", text_segment())
    assert outcome.error is None
    assert events.states == [True, False, True]


async def test_answers_enquire_link_from_the_smsc(nursery: trio.Nursery, smsc: FakeSmsc) -> None:
    channel, _ = await start(nursery, smsc)
    await wait_up(channel)
    conn = smsc.bound()[0]
    await conn.send(HEADER.pack(16, ENQUIRE_LINK, 0, 77))
    assert (await conn.wait_resp(77))[0] == 0


async def test_sends_enquire_link_when_idle(nursery: trio.Nursery, smsc: FakeSmsc) -> None:
    channel, _ = await start(nursery, smsc, enquire_link_interval=0.1)
    await smsc.wait_for(lambda: smsc.enquire_links >= 2)
    assert channel.up


async def test_unanswered_enquire_link_drops_the_link(nursery: trio.Nursery) -> None:
    smsc = FakeSmsc()
    await nursery.start(smsc.serve)

    channel, events = await start(nursery, smsc, enquire_link_interval=0.1, response_timeout=0.2)
    await wait_up(channel)
    smsc.bound()[0].mute = True
    await smsc.wait_for(lambda: len(smsc.bind_attempts) >= 2, timeout=3)
    assert False in events.states


async def test_smsc_unbind_is_answered_and_the_session_binds_again(
    nursery: trio.Nursery, smsc: FakeSmsc
) -> None:
    channel, _ = await start(nursery, smsc)
    await wait_up(channel)
    conn = smsc.bound()[0]
    await conn.send(HEADER.pack(16, UNBIND, 0, 9))
    assert (await conn.wait_resp(9))[0] == 0
    await smsc.wait_for(lambda: len(smsc.bind_attempts) == 2 and len(smsc.bound()) == 1)


async def test_drain_waits_for_answers_then_unbinds(nursery: trio.Nursery) -> None:
    smsc = FakeSmsc(answer=lambda sm: Answer(delay=0.2))
    await nursery.start(smsc.serve)
    channel, _ = await start(nursery, smsc, binds=2)
    await smsc.wait_for(lambda: len(smsc.bound()) == 2)
    results: list[Any] = []

    async def send() -> None:
        results.extend(await channel.submit("1380000", "1065", text_segment()))

    nursery.start_soon(send)
    await smsc.wait_for(lambda: len(smsc.submits) == 1)
    await channel.drain()
    assert results[0].error is None
    assert smsc.unbinds == 2
    await smsc.wait_for(lambda: not smsc.bound())
    assert not channel.up
    [late] = await channel.submit("1380000", "1065", text_segment())
    assert late.error is not None and late.error.name == "LINK_DOWN"
    await trio.sleep(0.3)  # no reconnection after a drain
    assert len(smsc.bind_attempts) == 2


async def test_bad_password_keeps_the_channel_down_and_retries(nursery: trio.Nursery, smsc: FakeSmsc) -> None:
    channel, events = await start(nursery, smsc, password="wrong")
    await smsc.wait_for(lambda: len(smsc.bind_attempts) >= 3, timeout=3)
    assert not channel.up and events.states == []
    smsc.password = "wrong"  # the carrier fixes the account: the next attempt binds
    await wait_up(channel)


async def test_never_more_than_window_submits_outstanding(nursery: trio.Nursery) -> None:
    smsc = FakeSmsc(answer=lambda sm: Answer(delay=0.02))
    await nursery.start(smsc.serve)
    channel, _ = await start(nursery, smsc, window=5)
    await wait_up(channel)
    outcomes: list[Any] = []

    async def send(i: int) -> None:
        outcomes.extend(await channel.submit("1380000", "1065", text_segment(str(i))))

    async with trio.open_nursery() as senders:
        for i in range(40):
            senders.start_soon(send, i)
    assert len(outcomes) == 40 and all(o.error is None for o in outcomes)
    assert smsc.max_outstanding == 5


async def test_max_rate_spaces_submits(nursery: trio.Nursery, smsc: FakeSmsc) -> None:
    channel, _ = await start(nursery, smsc, max_rate=50)
    await wait_up(channel)
    began = trio.current_time()
    async with trio.open_nursery() as senders:
        for _ in range(11):
            senders.start_soon(channel.submit, "1380000", "1065", text_segment())
    assert trio.current_time() - began >= 0.19  # ten intervals of 20 ms after the first


# -- receipts and replies ---------------------------------------------------------------------------


async def test_receipt_is_acknowledged_only_after_the_core_stored_it(
    nursery: trio.Nursery, smsc: FakeSmsc
) -> None:
    channel, events = await start(nursery, smsc)
    await wait_up(channel)
    [outcome] = await channel.submit("1380000", "1065", text_segment())
    events.gate = trio.Event()
    conn = smsc.bound()[0]
    seq = await conn.deliver(
        source_addr="1380000",
        destination_addr="1065",
        esm_class=0x04,
        short_message=b"id:1A2B0000 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 "
        b"stat:DELIVRD err:000 text:hello",
    )
    await trio.sleep(0.2)
    assert seq not in conn.resps  # held while the store call has not returned
    events.gate.set()
    status, answered_at = await conn.wait_resp(seq)
    assert status == 0
    assert answered_at >= events.returned_at[0]
    assert events.receipts[0].carrier_id == outcome.carrier_id
    assert events.receipts[0].status is ReceiptStatus.DELIVERED


async def test_receipt_the_core_could_not_store_is_refused_for_a_resend(
    nursery: trio.Nursery, smsc: FakeSmsc
) -> None:
    channel, events = await start(nursery, smsc)
    await wait_up(channel)
    events.fail = True
    conn = smsc.bound()[0]
    seq = await conn.deliver(
        source_addr="1380000",
        destination_addr="1065",
        esm_class=0x04,
        tlvs={constants.RECEIPTED_MESSAGE_ID: b"1a2b0000\0", constants.MESSAGE_STATE: b"\x02"},
    )
    assert (await conn.wait_resp(seq))[0] == 0x64
    events.fail = False
    seq = await conn.deliver(
        source_addr="1380000",
        destination_addr="1065",
        esm_class=0x04,
        tlvs={constants.RECEIPTED_MESSAGE_ID: b"1a2b0000\0", constants.MESSAGE_STATE: b"\x02"},
    )
    assert (await conn.wait_resp(seq))[0] == 0
    assert len(events.receipts) == 1


class BatchEvents(Events):
    """Events that also take receipts in batches, as masd's Gateway does; receipts with an id in ``bad``
    make the store fail."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.bad: set[str] = set()

    async def receipt_batch(self, channel: str, receipts: list[InboundReceipt]) -> None:
        await self._store()
        if any(r.carrier_id in self.bad for r in receipts):
            raise RuntimeError("constraint failed")
        self.batches.append(len(receipts))
        self.receipts.extend(receipts)
        self.returned_at.append(trio.current_time())

    async def receipt(self, channel: str, receipt: InboundReceipt) -> None:
        if receipt.carrier_id in self.bad:
            raise RuntimeError("constraint failed")
        await super().receipt(channel, receipt)


async def deliver_receipts_at_once(conn: Conn, carrier_ids: list[str]) -> list[int]:
    """Receipts for these ids in one write, so that the driver reads them together."""
    seqs = [next(conn.seq) for _ in carrier_ids]
    await conn.send(
        b"".join(
            fast.encode_deliver_sm(
                seq,
                source_addr="1380000",
                destination_addr="1065",
                esm_class=0x04,
                tlvs={constants.RECEIPTED_MESSAGE_ID: cid.encode() + b"\0", constants.MESSAGE_STATE: b"\x02"},
            )
            for seq, cid in zip(seqs, carrier_ids, strict=True)
        )
    )
    return seqs


async def test_receipts_that_arrive_together_are_stored_together_and_each_acknowledged_after(
    nursery: trio.Nursery, smsc: FakeSmsc
) -> None:
    events = BatchEvents()
    channel, _ = await start(nursery, smsc, events)
    await wait_up(channel)
    events.gate = trio.Event()
    conn = smsc.bound()[0]
    ids = [f"{0x1A2B0000 + i:x}" for i in range(20)]
    seqs = await deliver_receipts_at_once(conn, ids)
    await trio.sleep(0.2)
    assert not set(seqs) & set(conn.resps)  # held while the store call has not returned
    events.gate.set()
    for seq in seqs:
        status, answered_at = await conn.wait_resp(seq)
        assert status == 0
        assert answered_at >= events.returned_at[0]
    assert sorted(r.carrier_id for r in events.receipts) == sorted(ids)
    assert sum(events.batches) == 20 and events.batches[0] > 1


async def test_a_receipt_the_core_refuses_among_others_is_the_only_one_refused(
    nursery: trio.Nursery, smsc: FakeSmsc
) -> None:
    events = BatchEvents()
    channel, _ = await start(nursery, smsc, events)
    await wait_up(channel)
    ids = [f"{0x1A2B0000 + i:x}" for i in range(5)]
    events.bad = {ids[2]}
    conn = smsc.bound()[0]
    seqs = await deliver_receipts_at_once(conn, ids)
    answers = [(await conn.wait_resp(seq))[0] for seq in seqs]
    assert answers == [0, 0, 0x64, 0, 0]
    assert sorted(r.carrier_id for r in events.receipts) == sorted(ids[:2] + ids[3:])


async def test_slow_store_does_not_hold_up_submit_responses(nursery: trio.Nursery, smsc: FakeSmsc) -> None:
    channel, events = await start(nursery, smsc)
    await wait_up(channel)
    conn = smsc.bound()[0]
    events.gate = trio.Event()
    # More than the driver handles at once: the rest wait in its backlog while it keeps reading.
    held = [
        await conn.deliver(source_addr="1380000", destination_addr="1065", short_message=f"{i}".encode())
        for i in range(100)
    ]
    await conn.send(HEADER.pack(16, ENQUIRE_LINK, 0, 1000))
    await conn.wait_resp(1000, timeout=1)
    [outcome] = await channel.submit("1380000", "1065", text_segment())
    assert outcome.error is None
    assert not set(held) & set(conn.resps)
    events.gate.set()
    for seq in held:
        assert (await conn.wait_resp(seq))[0] == 0
    assert len(events.replies) == 100


async def test_single_part_reply_keeps_the_extension(nursery: trio.Nursery, smsc: FakeSmsc) -> None:
    channel, events = await start(nursery, smsc)
    await wait_up(channel)
    conn = smsc.bound()[0]
    seq = await conn.deliver(
        source_addr="13800138000", destination_addr="10657001042", short_message=b"1 yes"
    )
    assert (await conn.wait_resp(seq))[0] == 0
    [reply] = events.replies
    assert (reply.sender, reply.destination, reply.text) == ("13800138000", "10657001042", "1 yes")


async def test_multipart_reply_out_of_order_is_reassembled(nursery: trio.Nursery, smsc: FakeSmsc) -> None:
    channel, events = await start(nursery, smsc)
    await wait_up(channel)
    conn = smsc.bound()[0]
    text = "请假，下午要去医院复查"
    body = text.encode("utf-16-be")
    parts = [body[:12], body[12:]]
    seqs = []
    for i in (2, 1):
        udh = bytes([5, 0, 3, 0x42, 2, i])
        seqs.append(
            await conn.deliver(
                source_addr="8613800138000",
                source_addr_ton=1,
                destination_addr="106570017",
                esm_class=0x40,
                data_coding=8,
                short_message=udh + parts[i - 1],
            )
        )
    for seq in seqs:
        assert (await conn.wait_resp(seq))[0] == 0
    [reply] = events.replies
    assert (reply.sender, reply.destination, reply.text) == ("+8613800138000", "106570017", text)


async def test_reply_the_core_could_not_store_is_stored_when_the_smsc_sends_it_again(
    nursery: trio.Nursery, smsc: FakeSmsc
) -> None:
    channel, events = await start(nursery, smsc)
    await wait_up(channel)
    conn = smsc.bound()[0]
    first = await conn.deliver(
        source_addr="1380000",
        destination_addr="1065",
        esm_class=0x40,
        short_message=bytes([5, 0, 3, 9, 2, 1]) + b"ab",
    )
    assert (await conn.wait_resp(first))[0] == 0
    last = {
        "source_addr": "1380000",
        "destination_addr": "1065",
        "esm_class": 0x40,
        "short_message": bytes([5, 0, 3, 9, 2, 2]) + b"cd",
    }
    events.fail = True
    assert (await conn.wait_resp(await conn.deliver(**last)))[0] == 0x64
    events.fail = False
    assert (await conn.wait_resp(await conn.deliver(**last)))[0] == 0
    assert [r.text for r in events.replies] == ["abcd"]


async def test_each_part_of_a_long_reply_is_acknowledged_only_after_the_core_stored_it(
    nursery: trio.Nursery, smsc: FakeSmsc
) -> None:
    channel, events = await start(nursery, smsc)
    await wait_up(channel)
    events.gate = trio.Event()
    conn = smsc.bound()[0]
    seq = await conn.deliver(
        source_addr="8613800138000",
        source_addr_ton=1,
        destination_addr="106570017",
        esm_class=0x40,
        short_message=bytes([5, 0, 3, 9, 3, 2]) + b"two",
    )
    await trio.sleep(0.2)
    assert seq not in conn.resps  # held while the store call has not returned
    began = time.time()
    events.gate.set()
    status, answered_at = await conn.wait_resp(seq)
    assert status == 0 and answered_at >= events.returned_at[0]
    [part] = events.parts
    assert part == InboundReplyPart(
        "+8613800138000", "106570017", "udh8:9", 3, 2, "gsm7", b"two", part.received_at
    )
    assert began - 1 < part.received_at <= began  # wall-clock time: the timeout outlives a restart
    assert events.replies == []


async def test_the_channel_gives_up_on_missing_parts_through_the_core_after_mo_timeout(
    nursery: trio.Nursery, smsc: FakeSmsc
) -> None:
    channel, events = await start(nursery, smsc, mo_timeout=0.4)
    await wait_up(channel)
    conn = smsc.bound()[0]
    for seq_no, chunk in ((1, b"one-"), (3, b"three")):
        sm_seq = await conn.deliver(
            source_addr="1380000",
            destination_addr="1065",
            esm_class=0x40,
            short_message=bytes([5, 0, 3, 4, 3, seq_no]) + chunk,
        )
        assert (await conn.wait_resp(sm_seq))[0] == 0
    sent = time.time()
    with trio.fail_after(3):
        while not events.replies:
            await trio.sleep(0.02)
    [reply] = events.replies
    assert reply.text == f"one-{MISSING}three" and reply.raw == "incomplete: parts 1,3 of 3 (missing 2)"
    assert time.time() - sent >= 0.4 - 0.05
    # The timer asks with "now less mo_timeout", in wall-clock time, about every tenth of a second here.
    assert all(older_than <= time.time() - 0.4 for older_than in events.expiries)
    assert len(events.expiries) >= 3


async def test_a_failed_give_up_is_tried_again_at_the_next_tick(
    nursery: trio.Nursery, smsc: FakeSmsc
) -> None:
    channel, events = await start(nursery, smsc, mo_timeout=0.2)
    await wait_up(channel)
    conn = smsc.bound()[0]
    sm_seq = await conn.deliver(
        source_addr="1380000",
        destination_addr="1065",
        esm_class=0x40,
        short_message=bytes([5, 0, 3, 5, 2, 1]) + b"half",
    )
    assert (await conn.wait_resp(sm_seq))[0] == 0
    events.fail = True
    await trio.sleep(0.5)
    assert events.replies == []
    events.fail = False
    with trio.fail_after(3):
        while not events.replies:
            await trio.sleep(0.02)
    assert [r.text for r in events.replies] == [f"half{MISSING}"]


async def test_undecodable_deliver_sm_is_nacked_and_the_session_survives(
    nursery: trio.Nursery, smsc: FakeSmsc
) -> None:
    channel, _ = await start(nursery, smsc)
    await wait_up(channel)
    conn = smsc.bound()[0]
    await conn.send(HEADER.pack(20, constants.DELIVER_SM, 0, 55) + b"abcd")  # no NUL anywhere: not a body
    status, _ = await conn.wait_resp(55)
    assert status != 0
    [outcome] = await channel.submit("1380000", "1065", text_segment())
    assert outcome.error is None


# -- against masd's simulated SMSC ------------------------------------------------------------------


async def start_simulated(nursery: trio.Nursery, **config: Any) -> Smsc:
    smsc = Smsc(SmscConfig(port=0, control=False, receipt_delay=0.05, **config))
    await nursery.start(smsc.serve)
    return smsc


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


@pytest.mark.parametrize(
    ("smsc_config", "options"),
    [
        ({}, {}),
        ({"id_format": "decimal", "receipt_text_case": "upper"}, {"bind": "tx+rx"}),
        # Only the text form, with the hex id written in decimal: the channel is told so.
        (
            {"receipt_tlvs": False, "receipt_text_id": "decimal"},
            {"id_format": "hex", "receipt_ids": "decimal"},
        ),
    ],
)
async def test_receipts_meet_their_submits_simulated_smsc(
    nursery: trio.Nursery, smsc_config: dict[str, Any], options: dict[str, Any]
) -> None:
    smsc = await start_simulated(nursery, **smsc_config)
    channel, events = await start(nursery, smsc, system_id="masd", password="masd", **options)
    await wait_up(channel)
    ids = []
    for i in range(5):
        [outcome] = await channel.submit(f"+86138001380{i:02d}", "10657001", text_segment(f"hi {i}"))
        assert outcome.carrier_id
        ids.append(outcome.carrier_id)
    await wait_until(lambda: len(events.receipts) == 5)
    assert sorted(r.carrier_id for r in events.receipts) == sorted(ids)
    assert {r.status for r in events.receipts} == {ReceiptStatus.DELIVERED}
    await wait_until(lambda: smsc.stats.receipts_acked == 5)


async def test_long_reply_out_of_order_simulated_smsc(nursery: trio.Nursery) -> None:
    smsc = await start_simulated(nursery)
    channel, events = await start(nursery, smsc, system_id="masd", password="masd")
    await wait_up(channel)
    text = "收到，我参加明天上午九点的会议，但需要晚到十分钟，因为上午八点半还有一个会要开，请见谅。" * 2
    parts = await smsc.inject_mo(sender="+8613800138000", destination="1065700123", text=text, shuffle=True)
    assert parts > 1
    await wait_until(lambda: len(events.replies) == 1)
    [reply] = events.replies
    assert (reply.sender, reply.destination, reply.text) == ("+8613800138000", "1065700123", text)
    await wait_until(lambda: smsc.stats.mo_acked == parts)
