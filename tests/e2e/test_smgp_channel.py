"""The SMGP SP driver against an SMGW over real TCP on 127.0.0.1.

:class:`FakeSmgw` is a small scriptable SMGW written here on masd's SMGP codec, because the tests need it
to misbehave in one precise way each (refuse a password, stay silent, say "not now", drop the link); the
last tests run the driver against masd's simulated SMGW (:mod:`masd_adapters.smgp.smgw`).
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
from masd_adapters.smgp import msgid, pdu
from masd_adapters.smgp.client import SmgpChannel, SmgpSegmenter, receipt_of
from masd_adapters.smgp.constants import (
    ACTIVE_TEST_RESP,
    EXIT_RESP,
    LOGIN_MODE_RECEIVE,
    LOGIN_MODE_SEND,
    LOGIN_MODE_TRANSMIT,
    MSG_FORMAT_ASCII,
    MSG_FORMAT_GB18030,
    MSG_FORMAT_UCS2,
    STATUS_AUTH_FAILED,
    STATUS_BAD_SRC_TERM_ID,
    STATUS_DAILY_VOLUME_EXCEEDED,
    STATUS_SENDING_BANNED_NOW,
    STATUS_SYSTEM_BUSY,
    VERSION_30,
)

CLIENT_ID, SECRET = "10690001", "s3cret"
SERVICE = "1065901234"
USER = "13300133000"
LONG_CHINESE = "各位同事：明天上午九点在三楼会议室召开年度工作总结会议，请准时参加并提前准备好发言材料。" * 2
FIRST_ID = msgid.pack(msgid.MsgId(10601, 12, 31, 23, 59, 1))


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


# -- a scriptable SMGW ------------------------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    status: int = 0
    silent: bool = False  # never answer
    delay: float = 0.0


class Conn:
    """One accepted connection as the fake SMGW sees it."""

    def __init__(self, smgw: FakeSmgw, stream: trio.SocketStream) -> None:
        self.smgw = smgw
        self.stream = stream
        self.buffer = bytearray()
        self.seq = itertools.count(1)
        self.mode: int | None = None
        self.resps: dict[int, tuple[int, pdu.Pdu, float]] = {}  # our request's seq -> (id, pdu, time)
        self.resp_arrived = trio.Event()
        self.closed = trio.Event()
        self.scope = trio.CancelScope()
        self.sending = trio.Lock()

    async def receive(self) -> bytes | None:
        while True:
            if len(self.buffer) >= pdu.HEADER_LENGTH:
                length = pdu.decode_header(bytes(self.buffer[:12])).packet_length
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
            await self.stream.send_all(pdu.encode(message, sequence_id=seq))

    async def request(self, message: pdu.Pdu) -> int:
        seq = next(self.seq)
        await self.send(message, seq)
        return seq

    async def deliver_report(self, msg_id: bytes, stat: str = "DELIVRD", err: str = "000") -> int:
        content = pdu.encode_report(pdu.Report(msg_id, stat, "2612041200", "2612041201", err=err))
        return await self.request(
            pdu.Deliver(
                msg_id=next(self.smgw.ids),
                is_report=1,
                src_term_id=USER,
                dest_term_id=SERVICE,
                msg_content=content,
            )
        )

    async def deliver_mo(
        self, content: bytes, *, msg_format: int = MSG_FORMAT_UCS2, udhi: int | None = None
    ) -> int:
        return await self.request(
            pdu.Deliver(
                msg_id=next(self.smgw.ids),
                msg_format=msg_format,
                recv_time="20261204120000",
                src_term_id=USER,
                dest_term_id=SERVICE + "42",
                msg_content=content,
                tp_udhi=udhi,
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


def _ids() -> itertools.count[int]:
    return itertools.count(int.from_bytes(FIRST_ID, "big"))


class FakeSmgw:
    def __init__(self, *, answer: Callable[[pdu.Submit], Answer] | None = None) -> None:
        self.answer = answer or (lambda submit: Answer())
        self.port = 0
        self.conns: list[Conn] = []
        self.logins: list[tuple[pdu.Login, int]] = []  # every Login and the Status it got
        self.submits: list[tuple[int, pdu.Submit, Conn]] = []  # (SequenceID, Submit, link), resends too
        self.outstanding = 0
        self.max_outstanding = 0
        self.active_tests = 0
        self.exits = 0
        self._numbers = _ids()
        self.ids = (n.to_bytes(10, "big") for n in self._numbers)
        self.changed = trio.Event()

    def next_msg_id(self) -> bytes:
        # BCD: the last digits run 000001, 000002 … within the 10 octets' hex text.
        return bytes.fromhex(f"{next(self._numbers):020x}")

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

    def live(self, mode: int | None = None) -> list[Conn]:
        return [
            c
            for c in self.conns
            if c.mode is not None and not c.closed.is_set() and (mode is None or c.mode == mode)
        ]

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
        seq, login = pdu.decode(raw)
        assert isinstance(login, pdu.Login)
        expected = pdu.authenticator_client(CLIENT_ID, SECRET, login.timestamp)
        ok = (login.client_id, login.authenticator_client) == (CLIENT_ID, expected)
        status = 0 if ok else STATUS_AUTH_FAILED
        self.logins.append((login, status))
        auth = pdu.authenticator_server(status, login.authenticator_client, SECRET)
        await conn.send(pdu.LoginResp(status, auth if status == 0 else bytes(16)), seq)
        if status:
            self._notify()
            return
        conn.mode = login.login_mode
        self.conns.append(conn)
        self._notify()
        while True:
            raw = await conn.receive()
            if raw is None:
                return
            header = pdu.decode_header(raw)
            seq, message = pdu.decode(raw)
            if header.request_id & 0x80000000:
                conn.resps[seq] = (header.request_id, message, trio.current_time())
                conn.resp_arrived.set()
                continue
            if isinstance(message, pdu.Submit):
                self.submits.append((seq, message, conn))
                self._notify()
                nursery.start_soon(self._answer_submit, conn, seq, message)
            elif isinstance(message, pdu.ActiveTest):
                self.active_tests += 1
                self._notify()
                await conn.send(pdu.ActiveTestResp(), seq)
            elif isinstance(message, pdu.Exit):
                self.exits += 1
                self._notify()
                await conn.send(pdu.ExitResp(), seq)
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
        msg_id = self.next_msg_id() if answer.status == 0 else bytes(10)
        await conn.send(pdu.SubmitResp(msg_id, answer.status), seq)


# -- helpers ----------------------------------------------------------------------------------------


async def start(
    nursery: trio.Nursery, smgw: Any, events: Events | None = None, **options: Any
) -> tuple[SmgpChannel, Events]:
    """A running channel logged in to ``smgw``, a :class:`FakeSmgw` or masd's simulated SMGW."""
    events = events or Events()
    opts: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": smgw.port,
        "client_id": CLIENT_ID,
        "password": SECRET,
        "service_code": SERVICE,
        "service_id": "MASD",
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
        "response_timeout": 2.0,
    }
    opts.update(options)
    channel = SmgpChannel("ctc", opts, events, "/nonexistent")
    await nursery.start(channel.run)
    return channel, events


async def wait_up(channel: SmgpChannel, up: bool = True, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while channel.up != up:
            await trio.sleep(0.01)


def segments(value: str, ref: int = 0x42, *, allow_gbk: bool = False) -> list[Any]:
    return SmgpSegmenter(allow_gbk=allow_gbk).encode(value, concat="udh8", ref=ref, max_segments=10)


@pytest.fixture
async def smgw(nursery: trio.Nursery) -> FakeSmgw:
    server = FakeSmgw()
    await nursery.start(server.serve)
    return server


async def serve(nursery: trio.Nursery, server: FakeSmgw) -> FakeSmgw:
    await nursery.start(server.serve)
    return server


# -- options ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("client_id", "106900012"),
        ("login_mode", 0),
        ("login_mode", "2"),
        ("connections", 17),
        ("window", 0),
        ("resends", -1),
        ("need_report", 2),
        ("fee_type", "1"),
        ("priority", 4),
        ("service_code", "10690a"),
        ("port", "8890"),
    ],
)
def test_bad_option_value_is_refused_by_name(option: str, value: object) -> None:
    opts = {"host": "h", "client_id": CLIENT_ID, option: value}
    with pytest.raises(ValueError, match=option) as info:
        SmgpChannel("c", opts, Events(), "/tmp")
    assert repr(value) in str(info.value)


def test_missing_host_or_client_id_and_a_bad_password_are_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="host"):
        SmgpChannel("c", {"client_id": CLIENT_ID}, Events(), "/tmp")
    with pytest.raises(ValueError, match="option client_id='' is invalid: required"):
        SmgpChannel("c", {"host": "h"}, Events(), "/tmp")
    with pytest.raises(ValueError, match="password") as info:
        SmgpChannel("c", {"host": "h", "client_id": CLIENT_ID, "password": "ä-secret"}, Events(), "/tmp")
    assert "ä-secret" not in str(info.value)


def test_the_defaults_are_the_specs() -> None:
    s = SmgpChannel("c", {"host": "h", "client_id": CLIENT_ID}, Events(), "/tmp").settings
    assert (s.port, s.login_mode, s.window, s.response_timeout, s.resends, s.active_test_interval) == (
        8890,
        2,
        16,
        60.0,
        3,
        180.0,
    )
    assert s.need_report == 1


def test_texts_are_cut_as_on_cmpp() -> None:
    from masd_adapters.cmpp.segments import CmppSegmenter

    settings = SmgpChannel("c", {"host": "h", "client_id": CLIENT_ID, "allow_gbk": True}, Events(), "/tmp")
    segmenter = SmgpChannel.segmenter(settings.settings)
    assert isinstance(segmenter, SmgpSegmenter)
    for value in ("Meeting at 9", LONG_CHINESE, "x" * 141):
        assert segmenter.encode(value, concat="udh8", ref=1, max_segments=10) == CmppSegmenter(
            allow_gbk=True
        ).encode(value, concat="udh8", ref=1, max_segments=10)
    assert segmenter.count("x" * 140, concat="udh8", max_segments=10) == 1  # 140 octets, not 160 septets


# -- logging in -------------------------------------------------------------------------------------


async def test_login_carries_the_7_zero_authenticator_and_mode_2_and_the_channel_comes_up(
    nursery: trio.Nursery, smgw: FakeSmgw
) -> None:
    channel, events = await start(nursery, smgw)
    await wait_up(channel)
    assert events.states == [True] and channel.problem is None
    ((login, status),) = smgw.logins
    assert (login.client_id, login.login_mode, login.client_version, status) == (
        CLIENT_ID,
        LOGIN_MODE_TRANSMIT,
        VERSION_30,
        0,
    )
    assert login.authenticator_client == pdu.authenticator_client(CLIENT_ID, SECRET, login.timestamp)


async def test_a_refused_login_keeps_the_channel_down_and_names_the_status(
    nursery: trio.Nursery, smgw: FakeSmgw
) -> None:
    channel, events = await start(nursery, smgw, password="wrong")
    await smgw.wait_for(lambda: len(smgw.logins) >= 1)
    await trio.sleep(0.05)
    assert not channel.up and events.states == []
    assert channel.refused is not None and channel.refused.status == STATUS_AUTH_FAILED
    assert channel.problem == "SMGP_Login refused: status 21 (authentication failed)"
    (outcome,) = await channel.submit(USER, SERVICE, segments("hi"))
    assert outcome.error is not None and outcome.error.retriable
    assert "authentication failed" in outcome.error.name
    # It keeps trying, slowly (reconnect_max), so that a fixed password is picked up without a restart.
    await smgw.wait_for(lambda: len(smgw.logins) >= 2, timeout=2.0)


async def test_login_mode_0_plus_1_opens_a_send_link_and_a_receive_link(
    nursery: trio.Nursery, smgw: FakeSmgw
) -> None:
    channel, events = await start(nursery, smgw, login_mode="0+1", connections=2)
    await smgw.wait_for(lambda: len(smgw.live()) == 4)
    assert sorted(login.login_mode for login, _ in smgw.logins) == [0, 0, 1, 1]
    await wait_up(channel)
    for _ in range(4):
        (outcome,) = await channel.submit(USER, SERVICE, segments("hi"))
        assert outcome.error is None
    assert {conn.mode for _, _, conn in smgw.submits} == {LOGIN_MODE_SEND}
    receiver = smgw.live(LOGIN_MODE_RECEIVE)[0]
    _, resp, _ = await receiver.wait_resp(await receiver.deliver_report(FIRST_ID))
    assert isinstance(resp, pdu.DeliverResp) and resp.status == 0
    assert [r.carrier_id for r in events.receipts] == [FIRST_ID.hex()]


async def test_a_receive_link_alone_does_not_make_the_channel_up(
    nursery: trio.Nursery, smgw: FakeSmgw
) -> None:
    channel, _ = await start(nursery, smgw, login_mode="0+1")
    await smgw.wait_for(lambda: len(smgw.live()) == 2)
    await wait_up(channel)
    smgw.live(LOGIN_MODE_SEND)[0].drop()
    await wait_up(channel, False)


# -- submitting -------------------------------------------------------------------------------------


async def test_submit_fills_the_fields_and_returns_the_msg_id_text(
    nursery: trio.Nursery, smgw: FakeSmgw
) -> None:
    channel, _ = await start(nursery, smgw, charge_term_id="13300000000", fee_type="01", fee_code="10")
    await wait_up(channel)
    (outcome,) = await channel.submit("+" + USER, SERVICE + "42", segments("Meeting at 9"))
    ((_, sm, _),) = smgw.submits
    assert outcome.error is None and outcome.carrier_id == "01060112312359000001"
    assert (sm.msg_type, sm.need_report, sm.priority, sm.service_id) == (6, 1, 1, "MASD")
    assert (sm.fee_type, sm.fee_code, sm.fixed_fee, sm.charge_term_id) == (
        "01",
        "10",
        "000000",
        "13300000000",
    )
    assert (sm.src_term_id, sm.dest_term_ids, sm.msg_format) == (SERVICE + "42", (USER,), MSG_FORMAT_ASCII)
    assert (sm.tp_udhi, sm.pk_total, sm.pk_number) == (0, 1, 1)
    assert sm.msg_content == b"Meeting at 9"


async def test_a_long_chinese_message_is_two_submits_with_tlvs_and_one_reference(
    nursery: trio.Nursery, smgw: FakeSmgw
) -> None:
    channel, _ = await start(nursery, smgw)
    await wait_up(channel)
    outcomes = await channel.submit(USER, SERVICE, segments(LONG_CHINESE, ref=0x42))
    assert [o.error for o in outcomes] == [None, None]
    assert len({o.carrier_id for o in outcomes}) == 2
    subs = [sm for _, sm, _ in smgw.submits]
    assert [(sm.tp_udhi, sm.pk_total, sm.pk_number, sm.msg_format) for sm in subs] == [
        (1, 2, 1, MSG_FORMAT_UCS2),
        (1, 2, 2, MSG_FORMAT_UCS2),
    ]
    assert [sm.msg_content[:6] for sm in subs] == [bytes([5, 0, 3, 0x42, 2, n]) for n in (1, 2)]
    assert b"".join(sm.msg_content[6:] for sm in subs).decode("utf-16-be") == LONG_CHINESE
    assert all(sm.other_tlvs == () for sm in subs)


async def test_gbk_goes_as_msg_format_15_when_the_channel_allows_it(
    nursery: trio.Nursery, smgw: FakeSmgw
) -> None:
    channel, _ = await start(nursery, smgw, allow_gbk=True)
    await wait_up(channel)
    await channel.submit(USER, SERVICE, segments("明天开会", allow_gbk=True))
    ((_, sm, _),) = smgw.submits
    assert (sm.msg_format, sm.msg_content.decode("gb18030")) == (MSG_FORMAT_GB18030, "明天开会")


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (STATUS_SENDING_BANNED_NOW, "sending banned in this time window"),
        (STATUS_DAILY_VOLUME_EXCEEDED, "daily volume exceeded"),
        (STATUS_SYSTEM_BUSY, "system busy"),
    ],
)
async def test_status_74_75_and_1_are_waits_not_failures(
    nursery: trio.Nursery, status: int, name: str
) -> None:
    smgw = await serve(nursery, FakeSmgw(answer=lambda sm: Answer(status=status)))
    channel, _ = await start(nursery, smgw)
    await wait_up(channel)
    (outcome,) = await channel.submit(USER, SERVICE, segments("hi"))
    error = outcome.error
    assert error is not None and (error.code, error.throttled, error.retriable) == (status, True, True)
    assert error.name == f"SMGP_Submit_Resp {name}"


async def test_a_wait_ends_when_the_smgw_takes_submits_again(nursery: trio.Nursery) -> None:
    banned = True
    smgw = await serve(
        nursery, FakeSmgw(answer=lambda sm: Answer(status=STATUS_SENDING_BANNED_NOW if banned else 0))
    )
    channel, _ = await start(nursery, smgw)
    await wait_up(channel)
    (first,) = await channel.submit(USER, SERVICE, segments("hi"))
    assert first.error is not None and first.error.throttled
    banned = False
    (second,) = await channel.submit(USER, SERVICE, segments("hi"))
    assert second.error is None and second.carrier_id


async def test_other_statuses_are_permanent_with_their_names(nursery: trio.Nursery) -> None:
    smgw = await serve(nursery, FakeSmgw(answer=lambda sm: Answer(status=STATUS_BAD_SRC_TERM_ID)))
    channel, _ = await start(nursery, smgw)
    await wait_up(channel)
    outcomes = await channel.submit(USER, SERVICE, segments(LONG_CHINESE))
    assert len(smgw.submits) == 1  # the first failing part stops the delivery
    for outcome in outcomes:
        error = outcome.error
        assert error is not None and (error.code, error.retriable, error.throttled) == (46, False, False)
        assert error.name == "SMGP_Submit_Resp illegal SrcTermID"


async def test_an_unanswered_submit_is_resent_with_the_same_sequence_id_then_fails_retriably(
    nursery: trio.Nursery,
) -> None:
    smgw = await serve(nursery, FakeSmgw(answer=lambda sm: Answer(silent=True)))
    channel, _ = await start(nursery, smgw, response_timeout=0.2, resends=2, active_test_interval=60)
    await wait_up(channel)
    (outcome,) = await channel.submit(USER, SERVICE, segments("hi"))
    assert outcome.error is not None and outcome.error.retriable and outcome.error.name == "SUBMIT_TIMEOUT"
    seqs = [seq for seq, _, _ in smgw.submits]
    assert len(seqs) == 3 and len(set(seqs)) == 1


async def test_a_source_outside_the_service_code_is_refused_before_sending(
    nursery: trio.Nursery, smgw: FakeSmgw
) -> None:
    channel, _ = await start(nursery, smgw)
    await wait_up(channel)
    (outcome,) = await channel.submit(USER, "106590001", segments("hi"))
    assert outcome.error is not None and not outcome.error.retriable and "service_code" in outcome.error.name
    assert smgw.submits == []


async def test_never_more_than_window_submits_outstanding(nursery: trio.Nursery) -> None:
    smgw = await serve(nursery, FakeSmgw(answer=lambda sm: Answer(delay=0.05)))
    channel, _ = await start(nursery, smgw, window=3)
    await wait_up(channel)
    async with trio.open_nursery() as senders:
        for _ in range(10):
            senders.start_soon(channel.submit, USER, SERVICE, segments("hi"))
    assert len(smgw.submits) == 10 and smgw.max_outstanding == 3


async def test_no_connection_fails_every_segment_at_once_as_link_down() -> None:
    channel = SmgpChannel("c", {"host": "127.0.0.1", "client_id": CLIENT_ID}, Events(), "/tmp")
    outcomes = await channel.submit(USER, SERVICE, segments(LONG_CHINESE))
    assert [o.error.name if o.error else None for o in outcomes] == ["LINK_DOWN", "LINK_DOWN"]


# -- status reports ---------------------------------------------------------------------------------


async def test_a_report_becomes_a_receipt_answered_only_after_it_was_stored(
    nursery: trio.Nursery, smgw: FakeSmgw
) -> None:
    events = Events()
    events.gate = trio.Event()
    channel, _ = await start(nursery, smgw, events)
    await wait_up(channel)
    (outcome,) = await channel.submit(USER, SERVICE, segments("hi"))
    assert outcome.carrier_id is not None
    conn = smgw.live()[0]
    seq = await conn.deliver_report(msgid.from_text(outcome.carrier_id))
    await trio.sleep(0.1)
    assert seq not in conn.resps  # not stored yet: not answered
    events.gate.set()
    _, resp, answered_at = await conn.wait_resp(seq)
    assert isinstance(resp, pdu.DeliverResp) and resp.status == 0
    assert events.receipts == [
        InboundReceipt(outcome.carrier_id, ReceiptStatus.DELIVERED, raw="DELIVRD err:000")
    ]
    assert answered_at >= events.returned_at[0]


async def test_a_report_the_core_could_not_store_is_refused_for_a_resend(
    nursery: trio.Nursery, smgw: FakeSmgw
) -> None:
    events = Events()
    events.fail = True
    channel, _ = await start(nursery, smgw, events)
    await wait_up(channel)
    conn = smgw.live()[0]
    _, resp, _ = await conn.wait_resp(await conn.deliver_report(FIRST_ID))
    assert isinstance(resp, pdu.DeliverResp) and resp.status == STATUS_SYSTEM_BUSY


async def test_a_garbled_report_is_answered_and_dropped(nursery: trio.Nursery, smgw: FakeSmgw) -> None:
    channel, events = await start(nursery, smgw)
    await wait_up(channel)
    conn = smgw.live()[0]
    seq = await conn.request(pdu.Deliver(msg_id=FIRST_ID, is_report=1, msg_content=b"short"))
    _, resp, _ = await conn.wait_resp(seq)
    assert isinstance(resp, pdu.DeliverResp) and (resp.msg_id, resp.status) == (FIRST_ID, 0)
    assert events.receipts == [] and channel.up


@pytest.mark.parametrize(
    ("stat", "err", "status", "code"),
    [
        ("DELIVRD", "000", ReceiptStatus.DELIVERED, None),
        ("EXPIRED", "001", ReceiptStatus.EXPIRED, 1),
        ("UNDELIV", "004", ReceiptStatus.UNDELIVERED, 4),
        ("REJECTD", "005", ReceiptStatus.REJECTED, 5),
        ("DELETED", "000", ReceiptStatus.DELETED, None),
        ("UNKNOWN", "999", ReceiptStatus.UNKNOWN, 999),
        ("MI:0013", "000", ReceiptStatus.UNDELIVERED, 13),
        ("ERR_X", "006", ReceiptStatus.UNDELIVERED, 6),
    ],
)
def test_stat_and_err_become_receipt_states_and_codes(
    stat: str, err: str, status: ReceiptStatus, code: int | None
) -> None:
    receipt = receipt_of(pdu.Report(FIRST_ID, stat, "", "", err=err))
    assert receipt == InboundReceipt(FIRST_ID.hex(), status, error_code=code, raw=f"{stat} err:{err}")


# -- replies ----------------------------------------------------------------------------------------


async def test_a_one_part_reply_keeps_dest_term_id_and_is_answered_after_it_was_stored(
    nursery: trio.Nursery, smgw: FakeSmgw
) -> None:
    events = Events()
    events.gate = trio.Event()
    channel, _ = await start(nursery, smgw, events)
    await wait_up(channel)
    conn = smgw.live()[0]
    seq = await conn.deliver_mo("收到，准时参加".encode("utf-16-be"))
    await trio.sleep(0.1)
    assert seq not in conn.resps
    events.gate.set()
    _, resp, answered_at = await conn.wait_resp(seq)
    assert isinstance(resp, pdu.DeliverResp) and resp.status == 0
    assert events.replies == [InboundReply(USER, SERVICE + "42", "收到，准时参加")]
    assert answered_at >= events.returned_at[0]


async def test_a_gb18030_reply_is_read(nursery: trio.Nursery, smgw: FakeSmgw) -> None:
    channel, events = await start(nursery, smgw)
    await wait_up(channel)
    conn = smgw.live()[0]
    await conn.wait_resp(await conn.deliver_mo("1 参加".encode("gb18030"), msg_format=MSG_FORMAT_GB18030))
    await conn.wait_resp(await conn.deliver_mo("2 请假".encode("gbk"), msg_format=MSG_FORMAT_ASCII))
    assert [r.text for r in events.replies] == ["1 参加", "2 请假"]


async def test_a_two_part_reply_goes_to_the_core_part_by_part(nursery: trio.Nursery, smgw: FakeSmgw) -> None:
    channel, events = await start(nursery, smgw)
    await wait_up(channel)
    conn = smgw.live()[0]
    body = LONG_CHINESE.encode("utf-16-be")
    halves = [body[:134], body[134:]]
    seqs = [await conn.deliver_mo(bytes([5, 0, 3, 0x99, 2, n]) + halves[n - 1], udhi=1) for n in (2, 1)]
    for seq in seqs:
        _, resp, _ = await conn.wait_resp(seq)
        assert isinstance(resp, pdu.DeliverResp) and resp.status == 0
    assert [(p.reference, p.total, p.seq, p.codec) for p in events.parts] == [
        ("udh8:153", 2, 2, "ucs2"),
        ("udh8:153", 2, 1, "ucs2"),
    ]
    assert all(p.destination == SERVICE + "42" for p in events.parts)
    assert [r.text for r in events.replies] == [LONG_CHINESE]


async def test_a_reply_the_core_could_not_store_is_refused_for_a_resend(
    nursery: trio.Nursery, smgw: FakeSmgw
) -> None:
    events = Events()
    events.fail = True
    channel, _ = await start(nursery, smgw, events)
    await wait_up(channel)
    conn = smgw.live()[0]
    _, resp, _ = await conn.wait_resp(await conn.deliver_mo("好".encode("utf-16-be")))
    assert isinstance(resp, pdu.DeliverResp) and resp.status == STATUS_SYSTEM_BUSY


async def test_the_channel_gives_up_on_missing_parts_through_the_core(
    nursery: trio.Nursery, smgw: FakeSmgw
) -> None:
    channel, events = await start(nursery, smgw, mo_timeout=0.2)
    await wait_up(channel)
    conn = smgw.live()[0]
    await conn.wait_resp(await conn.deliver_mo(bytes([5, 0, 3, 7, 2, 1]) + "半".encode("utf-16-be"), udhi=1))
    with trio.fail_after(3):
        while not events.replies:
            await trio.sleep(0.05)
    assert events.replies[0].text.startswith("半")


# -- the link ---------------------------------------------------------------------------------------


async def test_answers_active_test_from_the_smgw(nursery: trio.Nursery, smgw: FakeSmgw) -> None:
    channel, _ = await start(nursery, smgw)
    await wait_up(channel)
    conn = smgw.live()[0]
    request_id, resp, _ = await conn.wait_resp(await conn.request(pdu.ActiveTest()))
    assert request_id == ACTIVE_TEST_RESP and isinstance(resp, pdu.ActiveTestResp)


async def test_sends_active_test_when_idle(nursery: trio.Nursery, smgw: FakeSmgw) -> None:
    await start(nursery, smgw, active_test_interval=0.1)
    await smgw.wait_for(lambda: smgw.active_tests >= 2)


async def test_drain_exits_every_link_and_stops_taking_submits(nursery: trio.Nursery, smgw: FakeSmgw) -> None:
    channel, events = await start(nursery, smgw, connections=2)
    await smgw.wait_for(lambda: len(smgw.live()) == 2)
    await channel.drain()
    assert smgw.exits == 2
    await smgw.wait_for(lambda: not smgw.live())
    (outcome,) = await channel.submit(USER, SERVICE, segments("hi"))
    assert outcome.error is not None and outcome.error.name == "LINK_DOWN"
    await trio.sleep(0.3)
    assert len(smgw.logins) == 2  # no reconnect after a drain
    assert events.states == [True, False]


async def test_drain_waits_for_submits_in_flight(nursery: trio.Nursery) -> None:
    smgw = await serve(nursery, FakeSmgw(answer=lambda sm: Answer(delay=0.3)))
    channel, _ = await start(nursery, smgw)
    await wait_up(channel)
    results: list[Any] = []

    async def send() -> None:
        results.append(await channel.submit(USER, SERVICE, segments("hi")))

    nursery.start_soon(send)
    await smgw.wait_for(lambda: len(smgw.submits) == 1)
    await channel.drain()
    assert results and results[0][0].error is None and smgw.exits == 1


async def test_reconnects_after_the_smgw_drops_the_link(nursery: trio.Nursery, smgw: FakeSmgw) -> None:
    channel, events = await start(nursery, smgw)
    await wait_up(channel)
    smgw.live()[0].drop()
    await smgw.wait_for(lambda: len(smgw.logins) == 2 and len(smgw.live()) == 1)
    await wait_up(channel)
    (outcome,) = await channel.submit(USER, SERVICE, segments("again"))
    assert outcome.error is None
    assert events.states[:2] == [True, False] and events.states[-1] is True


async def test_an_smgw_exit_is_answered_and_the_channel_logs_in_again(
    nursery: trio.Nursery, smgw: FakeSmgw
) -> None:
    channel, _ = await start(nursery, smgw)
    await wait_up(channel)
    conn = smgw.live()[0]
    request_id, _, _ = await conn.wait_resp(await conn.request(pdu.Exit()))
    assert request_id == EXIT_RESP
    await smgw.wait_for(lambda: len(smgw.logins) == 2 and len(smgw.live()) == 1)


async def test_submits_in_flight_when_the_link_drops_are_link_down(nursery: trio.Nursery) -> None:
    smgw = await serve(nursery, FakeSmgw(answer=lambda sm: Answer(silent=True)))
    channel, _ = await start(nursery, smgw)
    await wait_up(channel)
    results: list[Any] = []

    async def send() -> None:
        results.append(await channel.submit(USER, SERVICE, segments("hi")))

    nursery.start_soon(send)
    await smgw.wait_for(lambda: len(smgw.submits) == 1)
    smgw.live()[0].drop()
    with trio.fail_after(3):
        while not results:
            await trio.sleep(0.01)
    assert results[0][0].error is not None and results[0][0].error.name == "LINK_DOWN"


# -- against masd's simulated SMGW -------------------------------------------------------------------


async def simulated_smgw(nursery: trio.Nursery, **config: Any) -> Any:
    from masd_adapters.smgp.smgw import Smgw, SmgwConfig

    settings: dict[str, Any] = {
        "port": 0,
        "control": False,
        "accounts": {CLIENT_ID: SECRET},
        "report_delay": 0.01,
    }
    settings.update(config)
    smgw = Smgw(SmgwConfig(**settings))
    await nursery.start(smgw.serve)
    return smgw


@pytest.mark.parametrize("login_mode", [2, "0+1"])
async def test_reports_meet_their_segments_simulated_smgw(nursery: trio.Nursery, login_mode: Any) -> None:
    smgw = await simulated_smgw(nursery, outcomes={"delivered": 1.0})
    channel, events = await start(nursery, smgw, login_mode=login_mode)
    await wait_up(channel)
    outcomes = await channel.submit(USER, SERVICE + "7", segments(LONG_CHINESE))
    ids = [o.carrier_id for o in outcomes]
    assert all(ids) and len(set(ids)) == 2
    assert all(msgid.unpack(msgid.from_text(i or "")).smgw_code == 10601 for i in ids)
    with trio.fail_after(5):
        while len(events.receipts) < 2:
            await trio.sleep(0.01)
    assert sorted(r.carrier_id for r in events.receipts) == sorted(ids)
    assert {r.status for r in events.receipts} == {ReceiptStatus.DELIVERED}


async def test_quiet_hours_and_the_daily_limit_wait_then_go_simulated_smgw(nursery: trio.Nursery) -> None:
    smgw = await simulated_smgw(nursery, quiet_hours=True, daily_limit=1)
    channel, _ = await start(nursery, smgw)
    await wait_up(channel)
    (banned,) = await channel.submit(USER, SERVICE, segments("one"))
    assert banned.error is not None and (banned.error.code, banned.error.throttled) == (74, True)
    smgw.update(quiet_hours=False)
    (sent,) = await channel.submit(USER, SERVICE, segments("one"))
    assert sent.error is None
    (over,) = await channel.submit(USER, SERVICE, segments("two"))
    assert over.error is not None and (over.error.code, over.error.throttled) == (75, True)
    smgw.reset_day()
    (next_day,) = await channel.submit(USER, SERVICE, segments("two"))
    assert next_day.error is None


async def test_system_busy_simulated_smgw(nursery: trio.Nursery) -> None:
    smgw = await simulated_smgw(nursery, busy_every=2)
    channel, _ = await start(nursery, smgw)
    await wait_up(channel)
    first = await channel.submit(USER, SERVICE, segments("one"))
    second = await channel.submit(USER, SERVICE, segments("two"))
    assert first[0].error is None
    assert second[0].error is not None and second[0].error.throttled and second[0].error.code == 1


async def test_a_long_reply_out_of_order_simulated_smgw(nursery: trio.Nursery) -> None:
    smgw = await simulated_smgw(nursery)
    channel, events = await start(nursery, smgw)
    await wait_up(channel)
    await smgw.inject_mo(sender=USER, dest_term_id=SERVICE + "42", text=LONG_CHINESE, shuffle=True)
    with trio.fail_after(5):
        while not events.replies:
            await trio.sleep(0.01)
    assert events.replies == [InboundReply(USER, SERVICE + "42", LONG_CHINESE)]
    assert len(events.parts) == 2


async def test_a_refused_login_simulated_smgw(nursery: trio.Nursery) -> None:
    smgw = await simulated_smgw(nursery)
    channel, _ = await start(nursery, smgw, password="wrong")
    with trio.fail_after(5):
        while channel.problem is None:
            await trio.sleep(0.01)
    assert channel.problem == "SMGP_Login refused: status 21 (authentication failed)"
    assert smgw.stats.login_failures >= 1


async def test_reconnects_after_the_simulated_smgw_disconnects(nursery: trio.Nursery) -> None:
    smgw = await simulated_smgw(nursery)
    channel, _ = await start(nursery, smgw)
    await wait_up(channel)
    smgw.disconnect_all()
    with trio.fail_after(5):
        while smgw.stats.logins < 2 or not channel.up:
            await trio.sleep(0.01)
    (outcome,) = await channel.submit(USER, SERVICE, segments("again"))
    assert outcome.error is None
