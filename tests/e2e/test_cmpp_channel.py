"""The CMPP SP driver against an ISMG over real TCP on 127.0.0.1.

:class:`FakeIsmg` is a small scriptable ISMG written here on masd's CMPP codec, because the tests need it
to misbehave in one precise way each (refuse a password, stay silent, ask to slow down, drop the link).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import trio

from masd.core.reply_parts import gaps, join
from masd_adapters.base import ChannelEvents, InboundReceipt, InboundReply, InboundReplyPart, ReceiptStatus
from masd_adapters.cmpp import msgid, pdu
from masd_adapters.cmpp.client import CmppChannel, receipt_of
from masd_adapters.cmpp.constants import (
    ACTIVE_TEST_RESP,
    MSG_FMT_ASCII,
    MSG_FMT_UCS2,
    RESULT_BAD_SERVICE_ID,
    RESULT_FLOW_CONTROL,
    VERSION_20,
    VERSION_30,
)
from masd_adapters.cmpp.segments import CmppSegmenter

SP_ID, SECRET = "901234", "s3cret"
SERVICE = "1069012345"
LONG_CHINESE = "各位同事：明天上午九点在三楼会议室召开年度工作总结会议，请准时参加并提前准备好发言材料。" * 2


# -- the core's side, recorded ---------------------------------------------------------------------


class Events(ChannelEvents):
    """Records what the driver reports; ``gate`` holds store calls, ``fail`` fails them. Parts of long
    replies are held in memory, as the core holds them in its store, and joined when all are in."""

    def __init__(self) -> None:
        self.receipts: list[InboundReceipt] = []
        self.replies: list[InboundReply] = []
        self.parts: list[InboundReplyPart] = []
        self.held: dict[tuple[str, str, str], dict[int, InboundReplyPart]] = {}
        self.states: list[bool] = []
        self.gate: trio.Event | None = None
        self.fail = False
        self.returned_at: list[float] = []

    async def _store(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("database is down")

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

    def link_state(self, channel: str, up: bool) -> None:
        self.states.append(up)


# -- a scriptable ISMG ------------------------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    result: int = 0
    silent: bool = False  # never answer
    delay: float = 0.0


class Conn:
    """One accepted connection as the fake ISMG sees it."""

    def __init__(self, ismg: FakeIsmg, stream: trio.SocketStream) -> None:
        self.ismg = ismg
        self.stream = stream
        self.buffer = bytearray()
        self.seq = itertools.count(1)
        self.logged_in = False
        self.resps: dict[int, tuple[int, pdu.Pdu, float]] = {}  # our request's seq -> (command, pdu, time)
        self.resp_arrived = trio.Event()
        self.closed = trio.Event()
        self.scope = trio.CancelScope()
        self.sending = trio.Lock()

    async def receive(self) -> bytes | None:
        while True:
            if len(self.buffer) >= pdu.HEADER_LENGTH:
                length = pdu.decode_header(bytes(self.buffer[:12])).total_length
                if len(self.buffer) >= length:
                    raw = bytes(self.buffer[:length])
                    del self.buffer[:length]
                    return raw
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            self.buffer += chunk

    async def send(self, message: pdu.Pdu, seq: int) -> None:
        async with self.sending:
            await self.stream.send_all(pdu.encode(message, sequence_id=seq, version=self.ismg.version))

    async def request(self, message: pdu.Pdu) -> int:
        seq = next(self.seq)
        await self.send(message, seq)
        return seq

    async def deliver_report(self, msg_id: int, stat: str = "DELIVRD", *, length: int | None = None) -> int:
        version = {60: VERSION_20, 71: VERSION_30}.get(length or 0, self.ismg.version)
        content = pdu.encode_report(
            pdu.Report(msg_id, stat, "2605011200", "2605011201", "13800138000", 7), version=version
        )
        return await self.request(
            pdu.Deliver(
                msg_id=next(self.ismg.ids),
                dest_id=SERVICE,
                src_terminal_id="13800138000",
                registered_delivery=1,
                msg_content=content,
            )
        )

    async def deliver_mo(self, content: bytes, *, msg_fmt: int = MSG_FMT_UCS2, udhi: int = 0) -> int:
        return await self.request(
            pdu.Deliver(
                msg_id=next(self.ismg.ids),
                dest_id=SERVICE + "42",
                src_terminal_id="13800138000",
                tp_udhi=udhi,
                msg_fmt=msg_fmt,
                msg_content=content,
            )
        )

    async def wait_resp(self, seq: int, timeout: float = 5.0) -> tuple[int, pdu.Pdu, float]:
        with trio.fail_after(timeout):
            while seq not in self.resps:
                self.resp_arrived = trio.Event()
                await self.resp_arrived.wait()
        return self.resps[seq]

    def drop(self) -> None:
        self.scope.cancel()


class FakeIsmg:
    def __init__(
        self, *, version: int = VERSION_30, answer: Callable[[pdu.Submit], Answer] | None = None
    ) -> None:
        self.version = version
        self.answer = answer or (lambda submit: Answer())
        self.port = 0
        self.conns: list[Conn] = []
        self.connects: list[tuple[pdu.Connect, int]] = []  # every CONNECT and the Status it got
        self.submits: list[tuple[int, pdu.Submit]] = []  # (Sequence_Id, SUBMIT), resends included
        self.outstanding = 0
        self.max_outstanding = 0
        self.active_tests = 0
        self.terminates = 0
        self.ids = itertools.count(msgid.pack(msgid.MsgId(12, 31, 23, 59, 58, 1234, 1)))
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

    def live(self) -> list[Conn]:
        return [c for c in self.conns if c.logged_in and not c.closed.is_set()]

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
        raw = await conn.receive()
        if raw is None:
            return
        seq, connect = pdu.decode(raw, version=self.version)
        assert isinstance(connect, pdu.Connect)
        expected = pdu.authenticator_source(SP_ID, SECRET, connect.timestamp)
        status = 0 if (connect.source_addr, connect.authenticator_source) == (SP_ID, expected) else 3
        self.connects.append((connect, status))
        auth = pdu.authenticator_ismg(status, connect.authenticator_source, SECRET, version=self.version)
        await conn.send(pdu.ConnectResp(status, auth if status == 0 else bytes(16), self.version), seq)
        if status:
            await conn.send(pdu.Terminate(), 0)  # as gocmpp's ISMG does, before it closes
            self._notify()
            return
        conn.logged_in = True
        self.conns.append(conn)
        self._notify()
        while True:
            raw = await conn.receive()
            if raw is None:
                return
            header = pdu.decode_header(raw)
            if header.command_id & 0x80000000:
                seq, message = pdu.decode(raw, version=self.version)
                conn.resps[seq] = (header.command_id, message, trio.current_time())
                conn.resp_arrived.set()
                continue
            seq, message = pdu.decode(raw, version=self.version)
            if isinstance(message, pdu.Submit):
                self.submits.append((seq, message))
                self._notify()
                nursery.start_soon(self._answer_submit, conn, seq, message)
            elif isinstance(message, pdu.ActiveTest):
                self.active_tests += 1
                self._notify()
                await conn.send(pdu.ActiveTestResp(), seq)
            elif isinstance(message, pdu.Terminate):
                self.terminates += 1
                self._notify()
                await conn.send(pdu.TerminateResp(), seq)
                return

    async def _answer_submit(self, conn: Conn, seq: int, submit: pdu.Submit) -> None:
        answer = self.answer(submit)
        self.outstanding += 1
        self.max_outstanding = max(self.max_outstanding, self.outstanding)
        try:
            if answer.silent:
                await trio.sleep_forever()
            if answer.delay:
                await trio.sleep(answer.delay)
        finally:
            self.outstanding -= 1
        await conn.send(pdu.SubmitResp(next(self.ids) if answer.result == 0 else 0, answer.result), seq)


# -- helpers ----------------------------------------------------------------------------------------


async def start(
    nursery: trio.Nursery, ismg: Any, events: Events | None = None, **options: Any
) -> tuple[CmppChannel, Events]:
    """A running channel logged in to ``ismg``, a :class:`FakeIsmg` or masd's simulated ISMG."""
    events = events or Events()
    opts: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": ismg.port,
        "sp_id": SP_ID,
        "password": SECRET,
        "service_code": SERVICE,
        "service_id": "MASD",
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
        "response_timeout": 2.0,
    }
    if isinstance(ismg, FakeIsmg) and ismg.version == VERSION_20:
        opts["version"] = "2.0"
    opts.update(options)
    channel = CmppChannel("cmcc", opts, events, "/nonexistent")
    await nursery.start(channel.run)
    return channel, events


async def wait_up(channel: CmppChannel, up: bool = True, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while channel.up != up:
            await trio.sleep(0.01)


def segments(value: str, ref: int = 0x42) -> list[Any]:
    return CmppSegmenter().encode(value, concat="udh8", ref=ref, max_segments=10)


@pytest.fixture
async def ismg(nursery: trio.Nursery) -> FakeIsmg:
    server = FakeIsmg()
    await nursery.start(server.serve)
    return server


async def serve(nursery: trio.Nursery, server: FakeIsmg) -> FakeIsmg:
    await nursery.start(server.serve)
    return server


# -- options ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("version", "3"),
        ("sp_id", "9012345"),
        ("connections", 17),
        ("window", 0),
        ("resends", -1),
        ("registered_delivery", 2),
        ("fee_type", "1"),
        ("service_code", "10690a"),
        ("port", "7890"),
    ],
)
def test_bad_option_value_is_refused_by_name(option: str, value: object) -> None:
    opts = {"host": "h", "sp_id": SP_ID, option: value}
    with pytest.raises(ValueError, match=option) as info:
        CmppChannel("c", opts, Events(), "/tmp")
    assert repr(value) in str(info.value)


def test_missing_host_link_id_on_2_0_and_a_bad_password_are_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="host"):
        CmppChannel("c", {"sp_id": SP_ID}, Events(), "/tmp")
    with pytest.raises(ValueError, match="LinkID"):
        CmppChannel("c", {"host": "h", "sp_id": SP_ID, "version": "2.0", "link_id": "x"}, Events(), "/tmp")
    with pytest.raises(ValueError, match="password") as info:
        CmppChannel("c", {"host": "h", "sp_id": SP_ID, "password": "ä-secret"}, Events(), "/tmp")
    assert "ä-secret" not in str(info.value)


# -- logging in -------------------------------------------------------------------------------------


async def test_connect_carries_the_authenticator_and_version_and_the_channel_comes_up(
    nursery: trio.Nursery, ismg: FakeIsmg
) -> None:
    channel, events = await start(nursery, ismg)
    await wait_up(channel)
    assert events.states == [True]
    ((connect, status),) = ismg.connects
    assert (connect.source_addr, connect.version, status) == (SP_ID, VERSION_30, 0)
    assert connect.authenticator_source == pdu.authenticator_source(SP_ID, SECRET, connect.timestamp)


async def test_a_refused_login_keeps_the_channel_down_and_names_the_status(
    nursery: trio.Nursery, ismg: FakeIsmg
) -> None:
    channel, events = await start(nursery, ismg, password="wrong")
    await ismg.wait_for(lambda: len(ismg.connects) >= 1)
    await trio.sleep(0.05)
    assert not channel.up and events.states == []
    assert channel.refused is not None and channel.refused.status == 3
    assert "authentication failed" in str(channel.refused)
    (outcome,) = await channel.submit("13800138000", SERVICE, segments("hi"))
    assert outcome.error is not None and outcome.error.retriable
    assert "authentication failed" in outcome.error.name
    # It keeps trying, slowly (reconnect_max), so that a fixed password is picked up without a restart.
    await ismg.wait_for(lambda: len(ismg.connects) >= 2, timeout=2.0)


async def test_several_connections_log_in_each_on_its_own(nursery: trio.Nursery, ismg: FakeIsmg) -> None:
    channel, _ = await start(nursery, ismg, connections=3)
    await ismg.wait_for(lambda: len(ismg.live()) == 3)
    assert channel.up


# -- submitting -------------------------------------------------------------------------------------


async def test_submit_fills_the_fields_and_returns_the_msg_id_text(
    nursery: trio.Nursery, ismg: FakeIsmg
) -> None:
    channel, _ = await start(nursery, ismg, fee_terminal_id="13900139000")
    await wait_up(channel)
    (outcome,) = await channel.submit("13800138000", SERVICE + "42", segments("Meeting at 9"))
    ((_, sm),) = ismg.submits
    first = msgid.pack(msgid.MsgId(12, 31, 23, 59, 58, 1234, 1))
    assert outcome.error is None and outcome.carrier_id == str(first)
    assert (sm.src_id, sm.dest_terminal_ids, sm.msg_src) == (SERVICE + "42", ("13800138000",), SP_ID)
    assert (sm.pk_total, sm.pk_number, sm.tp_udhi, sm.msg_fmt) == (1, 1, 0, MSG_FMT_ASCII)
    assert (sm.registered_delivery, sm.service_id, sm.link_id) == (1, "MASD", "")
    assert (sm.fee_user_type, sm.fee_type, sm.fee_code, sm.fee_terminal_id) == (
        2,
        "01",
        "000000",
        "13900139000",
    )
    assert sm.msg_content == b"Meeting at 9"


async def test_a_long_chinese_message_is_two_submits_with_one_reference(
    nursery: trio.Nursery, ismg: FakeIsmg
) -> None:
    channel, _ = await start(nursery, ismg)
    await wait_up(channel)
    outcomes = await channel.submit("13800138000", SERVICE, segments(LONG_CHINESE, ref=0x42))
    assert [o.error for o in outcomes] == [None, None]
    assert len({o.carrier_id for o in outcomes}) == 2
    subs = [sm for _, sm in ismg.submits]
    assert [(sm.pk_total, sm.pk_number, sm.tp_udhi, sm.msg_fmt) for sm in subs] == [
        (2, 1, 1, MSG_FMT_UCS2),
        (2, 2, 1, MSG_FMT_UCS2),
    ]
    assert [sm.msg_content[:6] for sm in subs] == [bytes([5, 0, 3, 0x42, 2, n]) for n in (1, 2)]
    assert b"".join(sm.msg_content[6:] for sm in subs).decode("utf-16-be") == LONG_CHINESE


async def test_version_2_0_submits_in_its_layout(nursery: trio.Nursery) -> None:
    ismg = await serve(nursery, FakeIsmg(version=VERSION_20))
    channel, _ = await start(nursery, ismg)
    await wait_up(channel)
    (outcome,) = await channel.submit("13800138000", SERVICE, segments("hi"))
    assert outcome.error is None
    assert ismg.connects[0][0].version == VERSION_20


async def test_flow_control_is_a_retriable_throttle(nursery: trio.Nursery) -> None:
    ismg = await serve(nursery, FakeIsmg(answer=lambda sm: Answer(result=RESULT_FLOW_CONTROL)))
    channel, _ = await start(nursery, ismg)
    await wait_up(channel)
    (outcome,) = await channel.submit("13800138000", SERVICE, segments("hi"))
    error = outcome.error
    assert error is not None and (error.code, error.throttled, error.retriable) == (8, True, True)
    assert "flow control" in error.name


async def test_other_results_are_permanent_with_their_names(nursery: trio.Nursery) -> None:
    ismg = await serve(nursery, FakeIsmg(answer=lambda sm: Answer(result=RESULT_BAD_SERVICE_ID)))
    channel, _ = await start(nursery, ismg)
    await wait_up(channel)
    outcomes = await channel.submit("13800138000", SERVICE, segments(LONG_CHINESE))
    assert len(ismg.submits) == 1  # the first failing part stops the delivery
    for outcome in outcomes:
        error = outcome.error
        assert error is not None and (error.code, error.retriable, error.throttled) == (7, False, False)
        assert "service code error" in error.name


async def test_an_unanswered_submit_is_resent_with_the_same_sequence_id_then_fails_retriably(
    nursery: trio.Nursery,
) -> None:
    ismg = await serve(nursery, FakeIsmg(answer=lambda sm: Answer(silent=True)))
    channel, _ = await start(nursery, ismg, response_timeout=0.2, resends=2, active_test_interval=60)
    await wait_up(channel)
    (outcome,) = await channel.submit("13800138000", SERVICE, segments("hi"))
    assert outcome.error is not None and outcome.error.retriable and outcome.error.name == "SUBMIT_TIMEOUT"
    seqs = [seq for seq, _ in ismg.submits]
    assert len(seqs) == 3 and len(set(seqs)) == 1


async def test_a_resent_submit_answered_at_last_succeeds(nursery: trio.Nursery) -> None:
    first = True

    def answer(sm: pdu.Submit) -> Answer:
        nonlocal first
        silent, first = first, False
        return Answer(silent=silent)

    ismg = await serve(nursery, FakeIsmg(answer=answer))
    channel, _ = await start(nursery, ismg, response_timeout=0.2, resends=3)
    await wait_up(channel)
    (outcome,) = await channel.submit("13800138000", SERVICE, segments("hi"))
    assert outcome.error is None and outcome.carrier_id
    assert len(ismg.submits) == 2 and ismg.submits[0][0] == ismg.submits[1][0]


async def test_a_source_outside_the_service_code_is_refused_before_sending(
    nursery: trio.Nursery, ismg: FakeIsmg
) -> None:
    channel, _ = await start(nursery, ismg)
    await wait_up(channel)
    (outcome,) = await channel.submit("13800138000", "106570001", segments("hi"))
    assert outcome.error is not None and not outcome.error.retriable and "service_code" in outcome.error.name
    assert ismg.submits == []


async def test_never_more_than_window_submits_outstanding(nursery: trio.Nursery) -> None:
    ismg = await serve(nursery, FakeIsmg(answer=lambda sm: Answer(delay=0.05)))
    channel, _ = await start(nursery, ismg, window=3)
    await wait_up(channel)
    async with trio.open_nursery() as senders:
        for _ in range(10):
            senders.start_soon(channel.submit, "13800138000", SERVICE, segments("hi"))
    assert len(ismg.submits) == 10 and ismg.max_outstanding == 3


async def test_no_connection_fails_every_segment_at_once_as_link_down() -> None:
    channel = CmppChannel("c", {"host": "127.0.0.1", "sp_id": SP_ID}, Events(), "/tmp")
    outcomes = await channel.submit("13800138000", SERVICE, segments(LONG_CHINESE))
    assert [o.error.name if o.error else None for o in outcomes] == ["LINK_DOWN", "LINK_DOWN"]


# -- status reports ---------------------------------------------------------------------------------


async def test_a_report_becomes_a_receipt_answered_only_after_it_was_stored(
    nursery: trio.Nursery, ismg: FakeIsmg
) -> None:
    events = Events()
    events.gate = trio.Event()
    channel, _ = await start(nursery, ismg, events)
    await wait_up(channel)
    (outcome,) = await channel.submit("13800138000", SERVICE, segments("hi"))
    assert outcome.carrier_id is not None
    conn = ismg.live()[0]
    seq = await conn.deliver_report(msgid.from_text(outcome.carrier_id))
    await trio.sleep(0.1)
    assert seq not in conn.resps  # not stored yet: not answered
    events.gate.set()
    _, resp, answered_at = await conn.wait_resp(seq)
    assert isinstance(resp, pdu.DeliverResp) and resp.result == 0
    assert events.receipts == [InboundReceipt(outcome.carrier_id, ReceiptStatus.DELIVERED, raw="DELIVRD")]
    assert answered_at >= events.returned_at[0]


@pytest.mark.parametrize("length", [60, 71])
async def test_a_report_is_read_by_its_length_in_either_version(nursery: trio.Nursery, length: int) -> None:
    ismg = await serve(nursery, FakeIsmg(version=VERSION_30))
    channel, events = await start(nursery, ismg)
    await wait_up(channel)
    seq = await ismg.live()[0].deliver_report(12345, "UNDELIV", length=length)
    await ismg.live()[0].wait_resp(seq)
    assert events.receipts == [InboundReceipt("12345", ReceiptStatus.UNDELIVERED, raw="UNDELIV")]


async def test_a_report_the_core_could_not_store_is_refused_for_a_resend(
    nursery: trio.Nursery, ismg: FakeIsmg
) -> None:
    events = Events()
    events.fail = True
    channel, _ = await start(nursery, ismg, events)
    await wait_up(channel)
    conn = ismg.live()[0]
    _, resp, _ = await conn.wait_resp(await conn.deliver_report(99))
    assert isinstance(resp, pdu.DeliverResp) and resp.result == RESULT_FLOW_CONTROL


async def test_a_garbled_report_is_answered_and_dropped(nursery: trio.Nursery, ismg: FakeIsmg) -> None:
    channel, events = await start(nursery, ismg)
    await wait_up(channel)
    conn = ismg.live()[0]
    seq = await conn.request(
        pdu.Deliver(msg_id=5, dest_id=SERVICE, registered_delivery=1, msg_content=b"short")
    )
    _, resp, _ = await conn.wait_resp(seq)
    assert isinstance(resp, pdu.DeliverResp) and (resp.msg_id, resp.result) == (5, 0)
    assert events.receipts == [] and channel.up


@pytest.mark.parametrize(
    ("stat", "status", "code"),
    [
        ("DELIVRD", ReceiptStatus.DELIVERED, None),
        ("EXPIRED", ReceiptStatus.EXPIRED, None),
        ("UNDELIV", ReceiptStatus.UNDELIVERED, None),
        ("REJECTD", ReceiptStatus.REJECTED, None),
        ("DELETED", ReceiptStatus.DELETED, None),
        ("UNKNOWN", ReceiptStatus.UNKNOWN, None),
        ("MK:0005", ReceiptStatus.UNDELIVERED, 5),
        ("0012", ReceiptStatus.UNDELIVERED, 12),
        ("DB:X", ReceiptStatus.UNDELIVERED, None),
    ],
)
def test_stat_words_and_carrier_codes_become_receipt_states(
    stat: str, status: ReceiptStatus, code: int | None
) -> None:
    receipt = receipt_of(pdu.Report(msgid.MAX, stat, "", "", "13800138000", 0))
    assert receipt == InboundReceipt(str(msgid.MAX), status, error_code=code, raw=stat)


# -- replies ----------------------------------------------------------------------------------------


async def test_a_one_part_reply_keeps_dest_id_and_is_answered_after_it_was_stored(
    nursery: trio.Nursery, ismg: FakeIsmg
) -> None:
    events = Events()
    events.gate = trio.Event()
    channel, _ = await start(nursery, ismg, events)
    await wait_up(channel)
    conn = ismg.live()[0]
    seq = await conn.deliver_mo("收到，准时参加".encode("utf-16-be"))
    await trio.sleep(0.1)
    assert seq not in conn.resps
    events.gate.set()
    _, resp, answered_at = await conn.wait_resp(seq)
    assert isinstance(resp, pdu.DeliverResp) and resp.result == 0
    assert events.replies == [InboundReply("13800138000", SERVICE + "42", "收到，准时参加")]
    assert answered_at >= events.returned_at[0]


async def test_a_gbk_labelled_ascii_reply_is_read(nursery: trio.Nursery, ismg: FakeIsmg) -> None:
    channel, events = await start(nursery, ismg)
    await wait_up(channel)
    conn = ismg.live()[0]
    await conn.wait_resp(await conn.deliver_mo("1 参加".encode("gbk"), msg_fmt=MSG_FMT_ASCII))
    assert [r.text for r in events.replies] == ["1 参加"]


async def test_a_two_part_reply_goes_to_the_core_part_by_part(nursery: trio.Nursery, ismg: FakeIsmg) -> None:
    channel, events = await start(nursery, ismg)
    await wait_up(channel)
    conn = ismg.live()[0]
    body = LONG_CHINESE.encode("utf-16-be")
    halves = [body[:134], body[134:]]
    seqs = [await conn.deliver_mo(bytes([5, 0, 3, 0x99, 2, n]) + halves[n - 1], udhi=1) for n in (2, 1)]
    for seq in seqs:
        _, resp, _ = await conn.wait_resp(seq)
        assert isinstance(resp, pdu.DeliverResp) and resp.result == 0
    assert [(p.reference, p.total, p.seq, p.codec) for p in events.parts] == [
        ("udh8:153", 2, 2, "ucs2"),
        ("udh8:153", 2, 1, "ucs2"),
    ]
    assert all(isinstance(p, InboundReplyPart) and p.destination == SERVICE + "42" for p in events.parts)
    assert [r.text for r in events.replies] == [LONG_CHINESE]


async def test_a_16_bit_reference_is_kept_apart_from_an_8_bit_one(
    nursery: trio.Nursery, ismg: FakeIsmg
) -> None:
    channel, events = await start(nursery, ismg)
    await wait_up(channel)
    conn = ismg.live()[0]
    seq = await conn.deliver_mo(bytes([6, 8, 4, 0x01, 0x02, 2, 1]) + "上".encode("utf-16-be"), udhi=1)
    await conn.wait_resp(seq)
    assert [p.reference for p in events.parts] == ["udh16:258"]


async def test_a_reply_the_core_could_not_store_is_refused_for_a_resend(
    nursery: trio.Nursery, ismg: FakeIsmg
) -> None:
    events = Events()
    events.fail = True
    channel, _ = await start(nursery, ismg, events)
    await wait_up(channel)
    conn = ismg.live()[0]
    _, resp, _ = await conn.wait_resp(await conn.deliver_mo("好".encode("utf-16-be")))
    assert isinstance(resp, pdu.DeliverResp) and resp.result == RESULT_FLOW_CONTROL


async def test_the_channel_gives_up_on_missing_parts_through_the_core(
    nursery: trio.Nursery, ismg: FakeIsmg
) -> None:
    channel, events = await start(nursery, ismg, mo_timeout=0.2)
    await wait_up(channel)
    conn = ismg.live()[0]
    await conn.wait_resp(await conn.deliver_mo(bytes([5, 0, 3, 7, 2, 1]) + "半".encode("utf-16-be"), udhi=1))
    with trio.fail_after(3):
        while not events.replies:
            await trio.sleep(0.05)
    assert events.replies[0].text.startswith("半")


# -- the link ---------------------------------------------------------------------------------------


async def test_answers_active_test_from_the_ismg(nursery: trio.Nursery, ismg: FakeIsmg) -> None:
    channel, _ = await start(nursery, ismg)
    await wait_up(channel)
    conn = ismg.live()[0]
    command, resp, _ = await conn.wait_resp(await conn.request(pdu.ActiveTest()))
    assert command == ACTIVE_TEST_RESP and isinstance(resp, pdu.ActiveTestResp)


async def test_sends_active_test_when_idle(nursery: trio.Nursery, ismg: FakeIsmg) -> None:
    await start(nursery, ismg, active_test_interval=0.1)
    await ismg.wait_for(lambda: ismg.active_tests >= 2)


async def test_drain_terminates_every_connection_and_stops_taking_submits(
    nursery: trio.Nursery, ismg: FakeIsmg
) -> None:
    channel, events = await start(nursery, ismg, connections=2)
    await ismg.wait_for(lambda: len(ismg.live()) == 2)
    await channel.drain()
    assert ismg.terminates == 2
    await ismg.wait_for(lambda: not ismg.live())
    (outcome,) = await channel.submit("13800138000", SERVICE, segments("hi"))
    assert outcome.error is not None and outcome.error.name == "LINK_DOWN"
    await trio.sleep(0.3)
    assert len(ismg.connects) == 2  # no reconnect after a drain
    assert events.states == [True, False]


async def test_drain_waits_for_submits_in_flight(nursery: trio.Nursery) -> None:
    ismg = await serve(nursery, FakeIsmg(answer=lambda sm: Answer(delay=0.3)))
    channel, _ = await start(nursery, ismg)
    await wait_up(channel)
    results: list[Any] = []

    async def send() -> None:
        results.append(await channel.submit("13800138000", SERVICE, segments("hi")))

    nursery.start_soon(send)
    await ismg.wait_for(lambda: len(ismg.submits) == 1)
    await channel.drain()
    assert results and results[0][0].error is None and ismg.terminates == 1


async def test_reconnects_after_the_ismg_drops_the_link(nursery: trio.Nursery, ismg: FakeIsmg) -> None:
    channel, events = await start(nursery, ismg)
    await wait_up(channel)
    ismg.live()[0].drop()
    await ismg.wait_for(lambda: len(ismg.connects) == 2 and len(ismg.live()) == 1)
    await wait_up(channel)
    (outcome,) = await channel.submit("13800138000", SERVICE, segments("again"))
    assert outcome.error is None
    assert events.states[:2] == [True, False] and events.states[-1] is True


async def test_an_ismg_terminate_is_answered_and_the_channel_logs_in_again(
    nursery: trio.Nursery, ismg: FakeIsmg
) -> None:
    channel, _ = await start(nursery, ismg)
    await wait_up(channel)
    conn = ismg.live()[0]
    command, _, _ = await conn.wait_resp(await conn.request(pdu.Terminate()))
    assert command == 0x80000002
    await ismg.wait_for(lambda: len(ismg.connects) == 2 and len(ismg.live()) == 1)


async def test_submits_in_flight_when_the_link_drops_are_link_down(nursery: trio.Nursery) -> None:
    ismg = await serve(nursery, FakeIsmg(answer=lambda sm: Answer(silent=True)))
    channel, _ = await start(nursery, ismg)
    await wait_up(channel)
    results: list[Any] = []

    async def send() -> None:
        results.append(await channel.submit("13800138000", SERVICE, segments("hi")))

    nursery.start_soon(send)
    await ismg.wait_for(lambda: len(ismg.submits) == 1)
    ismg.live()[0].drop()
    with trio.fail_after(3):
        while not results:
            await trio.sleep(0.01)
    assert results[0][0].error is not None and results[0][0].error.name == "LINK_DOWN"


# -- against masd's simulated ISMG -------------------------------------------------------------------


async def simulated_ismg(nursery: trio.Nursery, **config: Any) -> Any:
    from masd_adapters.cmpp.ismg import Ismg, IsmgConfig

    settings: dict[str, Any] = {
        "port": 0,
        "control": False,
        "accounts": {SP_ID: SECRET},
        "report_delay": 0.01,
    }
    settings.update(config)
    ismg = Ismg(IsmgConfig(**settings))
    await nursery.start(ismg.serve)
    return ismg


@pytest.mark.parametrize(("version", "short_reports"), [("3.0", False), ("3.0", True), ("2.0", False)])
async def test_reports_meet_their_segments_simulated_ismg(
    nursery: trio.Nursery, version: str, short_reports: bool
) -> None:
    ismg = await simulated_ismg(nursery, short_reports=short_reports, outcomes={"delivered": 1.0})
    channel, events = await start(nursery, ismg, version=version)
    await wait_up(channel)
    outcomes = await channel.submit("13800138000", SERVICE + "7", segments(LONG_CHINESE))
    ids = [o.carrier_id for o in outcomes]
    assert all(ids) and len(set(ids)) == 2
    with trio.fail_after(5):
        while len(events.receipts) < 2:
            await trio.sleep(0.01)
    assert sorted(r.carrier_id for r in events.receipts) == sorted(ids)
    assert {r.status for r in events.receipts} == {ReceiptStatus.DELIVERED}


async def test_flow_control_simulated_ismg(nursery: trio.Nursery) -> None:
    ismg = await simulated_ismg(nursery, throttle_every=2)
    channel, _ = await start(nursery, ismg)
    await wait_up(channel)
    first = await channel.submit("13800138000", SERVICE, segments("one"))
    second = await channel.submit("13800138000", SERVICE, segments("two"))
    assert first[0].error is None
    assert second[0].error is not None and second[0].error.throttled


async def test_a_long_reply_out_of_order_simulated_ismg(nursery: trio.Nursery) -> None:
    ismg = await simulated_ismg(nursery)
    channel, events = await start(nursery, ismg)
    await wait_up(channel)
    await ismg.inject_mo(sender="13800138000", dest_id=SERVICE + "42", text=LONG_CHINESE, shuffle=True)
    with trio.fail_after(5):
        while not events.replies:
            await trio.sleep(0.01)
    assert events.replies == [InboundReply("13800138000", SERVICE + "42", LONG_CHINESE)]
    assert len(events.parts) == 2


def test_a_channel_without_an_sp_id_is_refused_naming_the_option() -> None:
    from masd_adapters.base import parse_options
    from masd_adapters.cmpp.client import CmppOptions

    with pytest.raises(ValueError, match="option sp_id='' is invalid: required"):
        parse_options(CmppOptions, "cmpp", "cmpp", {"host": "127.0.0.1"})
