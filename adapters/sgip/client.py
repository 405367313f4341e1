"""The SGIP 1.2 SP driver (``sgip`` channel): sends SMS through a China Unicom SMG and takes its replies
and status reports on a listener of its own.

SGIP runs two links. :class:`SgipChannel` binds to the SMG (SGIP_BIND, Login_Type 1) on up to
``connections`` TCP connections to send Submits, and it listens on ``listen`` for the SMG, which
connects back and binds (Login_Type 2, checked against ``smg_login_name``/``smg_password``) to send
Deliver (replies, 上行短信) and Report (status reports). Each outbound connection has a reader (a
response goes to the request waiting on its Sequence Number), a writer (PDUs queued in one scheduler tick
leave in one ``send_all``) and a sweeper that re-sends a request left unanswered for ``response_timeout``
— the same octets, the same Sequence Number — up to ``resends`` times, then gives up on it. ``submit``
sends one delivery's segments in order on the connection with the fewest outstanding Submits, at most
``window`` outstanding per connection.

SGIP has no keep-alive PDU (no ACTIVE_TEST, no enquire_link): the specification has a node that has
nothing more to send end its session with SGIP_UNBIND, and SMGs close a connection that stays silent
(SMSGate, a widely used implementation, closes on an idle timer too). So a connection with nothing
outstanding for ``idle_timeout`` seconds is unbound and closed, and opened again when the next submit
comes; the channel stays up meanwhile (it is dormant, not down). A connection that cannot be opened
again takes the channel down and is retried with exponential backoff and jitter, as one the SMG drops.
Inbound connections silent for ``idle_timeout`` are unbound and closed the same way.

A segment's carrier id is the stored text of its Submit's Sequence Number (:func:`.sequence.to_text`,
30 digits): SGIP has no message id, and a Report names its Submit by that number
(SubmitSequenceNumber). Reports and replies are answered (Report_Resp, Deliver_Resp) only after the core
has stored them, so a crash loses nothing the SMG thinks was delivered; what the core could not store is
answered Result 11 (node busy), and the SMG sends it again. Texts are cut by the Chinese carriers' shared
text rules (:class:`masd_adapters.cn_text.CmppSegmenter`): see :meth:`SgipChannel.segmenter`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pydantic
import structlog
import trio

from .. import _link, cn_text
from .._options import (
    ALLOW_GBK,
    ASCII,
    CONNECTIONS,
    DIGITS,
    HOST,
    MAX_RATE,
    MO_TIMEOUT,
    RECONNECT_MAX,
    RECONNECT_MIN,
    RESENDS,
    RESPONSE_TIMEOUT,
    WINDOW,
    ascii_text,
    check_reconnect,
    require,
)
from ..base import (
    ChannelDriver,
    ChannelEvents,
    DriverOptions,
    InboundReceipt,
    InboundReply,
    InboundReplyPart,
    InvalidOption,
    OutboundSegment,
    ReceiptStatus,
    Segmenter,
    SubmitError,
    SubmitOutcome,
    option,
)
from . import pdu
from . import sequence as seq
from .constants import (
    AGENT_RECEIVABLE,
    BIND,
    CHARGE_NUMBER_SP,
    DELIVER,
    FEE_FREE,
    LOGIN_SMG_TO_SP,
    LOGIN_SP_TO_SMG,
    MT_NOT_FOR_MO,
    REPORT,
    REPORT_ALWAYS,
    REPORT_TYPE_SUBMIT,
    RESPONSE,
    RESULT_ILLEGAL_LOGIN,
    RESULT_ILLEGAL_SEQUENCE,
    RESULT_LOGIN_TYPE_WRONG,
    RESULT_NODE_BUSY,
    RESULT_OK,
    RESULT_PARAMETER_FORMAT,
    RESULT_REPEATED_LOGIN,
    RESULT_SMSC_QUEUE_FULL,
    RESULT_SYSTEM_FAILURE,
    RESULT_TOO_MANY_CONNECTIONS,
    STATE_DELIVERED,
    STATE_FAILED,
    STATE_WAITING,
    SUBMIT,
    UNBIND,
    UNBIND_RESP,
    command_name,
    result_name,
    state_name,
)

__all__ = ["BindRefused", "SgipChannel", "SgipOptions", "receipt_of", "reply_of", "submit_error"]

log = structlog.get_logger("masd.sgip")

_UNBIND_WAIT = 2.0  # seconds to wait for Unbind_Resp

_LINK_ERRORS = (*_link.SEND_ERRORS, pdu.PduError)

# Submit_Resp Results that say "slow down", not "this message is wrong": 11 the SMG's queue is full,
# 33 the SMSC's. The message is sent again later, the channel paced.
THROTTLE_RESULTS = frozenset({RESULT_NODE_BUSY, RESULT_SMSC_QUEUE_FULL})
# Results about the session, not the message (a Submit answered so means the login is not what the SMG
# thinks): the connection is bound again and the message retried.
REBIND_RESULTS = frozenset(
    {RESULT_ILLEGAL_LOGIN, RESULT_REPEATED_LOGIN, RESULT_TOO_MANY_CONNECTIONS, RESULT_LOGIN_TYPE_WRONG}
)
# Transient on the SMG's side: retried without slowing down. 9 can only be a Sequence Number the SMG saw
# twice (a resend crossing its answer); the retry carries a new one.
TRANSIENT_RESULTS = frozenset({RESULT_ILLEGAL_SEQUENCE, RESULT_SYSTEM_FAILURE})


class BindRefused(Exception):
    """The SMG answered SGIP_BIND with a non-zero Result; the message names it."""

    def __init__(self, result: int) -> None:
        self.result = result
        super().__init__(f"SGIP_BIND refused: result {result} ({result_name(result)})")


# ----- options -----------------------------------------------------------------------------------------


class SgipOptions(DriverOptions):
    """The ``sgip`` driver's options; see :class:`SgipChannel` and docs/cmpp.md."""

    secret = frozenset({"password", "smg_password"})

    host: str = HOST
    port: int = option(8801, "an integer from 1 to 65535", ge=1, le=65535)
    login_name: str = option("", ascii_text(16), max_length=16, pattern=ASCII)
    password: str = option("", ascii_text(16), max_length=16, pattern=ASCII)
    node_id: int | None = option(None, "the SP's node id, an integer from 1 to 4294967295", ge=1, le=seq.MAX)
    area_code: str = option("", "3 or 4 digits with the leading 0 (010, 0311)", pattern=r"^(0[0-9]{2,3})?$")
    corp_id: str = option("", "the SP's 5-digit corp id", pattern=r"^([0-9]{5})?$")
    service_type: str = option("", ascii_text(10), max_length=10, pattern=ASCII)
    fee_type: int = option(FEE_FREE, "an integer from 0 to 4", ge=0, le=4)
    fee_value: str = option("0", "at most 6 digits (fen)", min_length=1, max_length=6, pattern=DIGITS)
    given_value: str = option("0", "at most 6 digits (fen)", min_length=1, max_length=6, pattern=DIGITS)
    charge_number: str = option(
        CHARGE_NUMBER_SP,
        "21 zeros (the SP pays) or a number of at most 21 digits",
        max_length=21,
        pattern=DIGITS,
    )
    agent_flag: int = option(AGENT_RECEIVABLE, "0 or 1", ge=0, le=1)
    morelateto_mt_flag: int = option(MT_NOT_FOR_MO, "an integer from 0 to 3", ge=0, le=3)
    priority: int = option(0, "an integer from 0 to 9", ge=0, le=9)
    report_flag: int = option(REPORT_ALWAYS, "0 (failures only), 1 (always), 2 (none) or 3", ge=0, le=3)
    listen: str = option(
        "127.0.0.1:8802", "HOST:PORT the SMG connects back to, or empty for no listener", max_length=300
    )
    smg_login_name: str = option("", ascii_text(16) + " (empty: any)", max_length=16, pattern=ASCII)
    smg_password: str = option("", ascii_text(16), max_length=16, pattern=ASCII)
    connections: int = CONNECTIONS
    window: int = WINDOW
    response_timeout: float = RESPONSE_TIMEOUT
    resends: int = RESENDS
    idle_timeout: float = option(30.0, "seconds, or 0 to keep idle connections open", ge=0)
    reconnect_min: float = RECONNECT_MIN
    reconnect_max: float = RECONNECT_MAX
    allow_gbk: bool = ALLOW_GBK
    mo_timeout: float = MO_TIMEOUT
    max_rate: float | None = MAX_RATE

    @pydantic.model_validator(mode="after")
    def _together(self) -> SgipOptions:
        require(("host", self.host), ("login_name", self.login_name))
        if self.node_id is None and not (self.area_code and self.corp_id):
            raise InvalidOption(
                "node_id",
                None,
                "required: the SP's node id, or area_code and corp_id to make it (3AAAAQQQQQ)",
            )
        check_reconnect(self.reconnect_min, self.reconnect_max)
        if self.listen:
            _listen_address(self.listen)
        return self

    @property
    def sp_node_id(self) -> int:
        if self.node_id is not None:
            return self.node_id
        return seq.sp_node_id(self.area_code, self.corp_id)

    @property
    def listen_address(self) -> tuple[str, int] | None:
        return _listen_address(self.listen) if self.listen else None


def _listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidOption("listen", value, "expected HOST:PORT, e.g. 0.0.0.0:8802, or empty")
    return host.strip("[]"), int(port)


# ----- one request and one connection ---------------------------------------------------------------------


class _Link(_link.Link[seq.SequenceNumber]):
    """One outbound connection to the SMG, opened and closed again for the driver's whole life."""

    def __init__(self, label: str, window: int, sequencer: seq.Sequencer, logger: Any) -> None:
        super().__init__(label, window, logger.bind(connection=label))
        self.sequencer = sequencer
        self.dormant = False  # closed for idleness after a good session: opened again on demand
        self.wanted = trio.Event()  # a submit wants this dormant link open
        self.last_activity = 0.0
        self.unbinding = False

    @property
    def usable(self) -> bool:
        return self.connected and not self.unbinding

    def request(self, message: pdu.Pdu, timeout: float) -> tuple[seq.SequenceNumber, _link.Request]:
        number = self.sequencer.next(datetime.now())
        return number, self.track(number, pdu.encode(message, sequence_number=number), timeout)

    def resend_fields(self, key: seq.SequenceNumber, req: _link.Request) -> dict[str, Any]:
        return {"sequence": seq.to_text(key)}


def _frames(stream: trio.abc.Stream) -> _link.Frames:
    """Whole PDUs off a byte stream: a 20-octet header, then Message Length - 20 more."""
    return _link.Frames(
        stream, pdu.HEADER_LENGTH, lambda h: pdu.decode_header(h).message_length, pdu.PduError
    )


class _Inbound(_link.Outbox):
    """One connection the SMG opened to the listener: its output and the time it last spoke."""

    def __init__(self, stream: trio.abc.Stream, number: int, logger: Any) -> None:
        super().__init__()
        self.stream = stream
        self.log = logger.bind(inbound=number)
        self.last_rx = trio.current_time()
        self.bound = False


# ----- the driver ---------------------------------------------------------------------------------------


class SgipChannel(ChannelDriver):
    """SGIP 1.2 SP driver. See the module docstring; its options are :class:`SgipOptions`."""

    driver = "sgip"
    Options = SgipOptions
    settings: SgipOptions

    def __init__(self, name: str, options: Mapping[str, Any], events: ChannelEvents, data_dir: str) -> None:
        super().__init__(name, options, events, data_dir)
        s = self.settings
        self.node_id = s.sp_node_id
        self._log = log.bind(channel=name, login_name=s.login_name, node_id=self.node_id)
        self._rng = random.Random()
        # Connections share the node id, so they take disjoint counters (one step, different starts);
        # the random base keeps a restart within the same second from repeating a Sequence Number.
        base = self._rng.randrange(1, 1 << 31)
        self._links = [
            _Link(
                str(i + 1),
                s.window,
                seq.Sequencer(self.node_id, start=base + i, step=s.connections),
                self._log,
            )
            for i in range(s.connections)
        ]
        self._picker = _link.Picker()
        self._pacer = _link.Pacer(s.max_rate)
        self._running = False
        self._draining = False
        self._drain_started = trio.Event()
        self._in_flight = _link.InFlight()
        self._link_changed = trio.Event()
        self._inbound_numbers = 0
        self._inbound: set[_Inbound] = set()
        self.listen_port = 0  # the listener's port once it listens (useful with port 0)
        self.refused: BindRefused | None = None

    @classmethod
    def segmenter(cls, settings: DriverOptions) -> Segmenter | None:
        """The Chinese carriers' shared text rules, CMPP's planner: ASCII (MessageCoding 0, 140 octets),
        GBK (15, when ``allow_gbk``) or UCS-2 (8); a long text in parts of 134/133 octets, each starting
        with a UDH (``05 00 03`` or ``06 08 04``) and sent with TP_udhi 1. SGIP has no Pk_total/Pk_number:
        the UDH alone joins the parts, and an OutboundSegment's ``seq``/``total`` are not sent."""
        if not isinstance(settings, SgipOptions):
            raise TypeError(f"sgip settings expected, got {type(settings).__name__}")
        return cn_text.CmppSegmenter(allow_gbk=settings.allow_gbk)

    # -- the driver interface -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._running:
            raise RuntimeError(f"sgip channel {self.name!r} is already running")
        self._running = True
        s = self.settings
        self._log.info("sgip channel starting", host=s.host, port=s.port, listen=s.listen or None)
        try:
            async with trio.open_nursery() as nursery:
                address = s.listen_address
                if address is not None:
                    # Opened before started(): a port in use is an error at start, not a silent loss of
                    # every reply and report.
                    listeners = await trio.open_tcp_listeners(address[1], host=address[0])
                    self.listen_port = listeners[0].socket.getsockname()[1]
                    nursery.start_soon(trio.serve_listeners, self._serve_inbound, listeners)
                for link in self._links:
                    nursery.start_soon(self._maintain, link)
                nursery.start_soon(_link.expire_reply_parts, self.events, self.name, s.mo_timeout, self._log)
                task_status.started()
        finally:
            self._running = False
            for link in self._links:
                link.connected = link.dormant = False
            self._update_up()

    async def submit(
        self, destination: str, source: str, segments: Sequence[OutboundSegment]
    ) -> list[SubmitOutcome]:
        if self._draining:
            return [SubmitOutcome(error=self._link_down()) for _ in segments]
        if len(source) > 21:
            error = SubmitError(0, f"source {source!r} is longer than SPNumber's 21 octets", retriable=False)
            return [SubmitOutcome(error=error) for _ in segments]
        user = _user_number(destination)
        with self._in_flight:
            return await _link.send_in_order(
                segments, lambda segment: self._submit_segment(segment, source, user)
            )

    async def drain(self) -> None:
        """Refuse new submits, let those in flight get their responses (at most ``response_timeout``),
        then Unbind every connection. Reconnection stops for good; the listener runs until cancelled, so
        that reports still owed can come in."""
        self._draining = True
        self._drain_started.set()
        self._link_changed.set()
        for link in self._links:
            link.wanted.set()
        await self._in_flight.settle(self.settings.response_timeout)
        async with trio.open_nursery() as nursery:
            for link in self._links:
                nursery.start_soon(self._unbind, link)
        self._log.info("sgip channel drained")

    @property
    def problem(self) -> str | None:
        if self.up or self.refused is None:
            return None
        return str(self.refused)

    # -- submit path ----------------------------------------------------------------------------------

    def _link_down(self) -> SubmitError:
        if self.refused is not None:
            return SubmitError(self.refused.result, f"LINK_DOWN: {self.refused}", retriable=True)
        return _link.LINK_DOWN

    async def _open_link(self) -> _Link | None:
        """A bound connection: one that is, or a dormant one opened now (waiting at most
        ``response_timeout``); None when none can be had."""
        with trio.move_on_after(self.settings.response_timeout):
            while not self._draining:
                link = self._picker.pick(self._links)
                if link is not None:
                    return link
                waking = [lk for lk in self._links if lk.dormant]
                if not waking and not any(lk.connected for lk in self._links):
                    return None  # down: the maintainers retry on their own schedule
                for lk in waking:
                    lk.wanted.set()
                if self._link_changed.is_set():
                    self._link_changed = trio.Event()
                await self._link_changed.wait()
        return None

    def _submit_pdu(self, segment: OutboundSegment, source: str, user: str) -> pdu.Submit:
        s = self.settings
        return pdu.Submit(
            sp_number=source,
            charge_number=s.charge_number,
            user_numbers=(user,),
            corp_id=s.corp_id,
            service_type=s.service_type,
            fee_type=s.fee_type,
            fee_value=s.fee_value,
            given_value=s.given_value,
            agent_flag=s.agent_flag,
            morelateto_mt_flag=s.morelateto_mt_flag,
            priority=s.priority,
            report_flag=s.report_flag,
            tp_udhi=1 if segment.udh else 0,
            message_coding=segment.data_coding,
            message_content=segment.short_message,
        )

    async def _submit_segment(self, segment: OutboundSegment, source: str, user: str) -> SubmitOutcome:
        s = self.settings
        await self._pacer.wait()
        try:
            message = self._submit_pdu(segment, source, user)
            pdu.encode(message, sequence_number=seq.SequenceNumber(0, 0, 0))
        except ValueError as e:
            return SubmitOutcome(error=SubmitError(0, f"cannot encode SGIP_SUBMIT: {e}", retriable=False))
        link = await self._open_link()
        if link is None:
            return SubmitOutcome(error=self._link_down())
        async with link.window:
            if not link.connected or link.unbinding:
                return SubmitOutcome(error=self._link_down())
            number, req = link.request(message, s.response_timeout)
            link.last_activity = trio.current_time()
            try:
                await link.answered(number, req)
            finally:
                link.last_activity = trio.current_time()
        return self._segment_outcome(link, req, number)

    def _segment_outcome(self, link: _Link, req: _link.Request, number: seq.SequenceNumber) -> SubmitOutcome:
        if req.timed_out:
            link.log.warning(
                "no SGIP_SUBMIT_RESP after resends", sequence=seq.to_text(number), resends=req.resends
            )
            return SubmitOutcome(error=_link.SUBMIT_TIMEOUT)
        if req.lost or not isinstance(req.response, pdu.SubmitResp):
            return SubmitOutcome(error=self._link_down())
        result = req.response.result
        if result == RESULT_OK:
            return SubmitOutcome(carrier_id=seq.to_text(number))
        error = submit_error(result)
        if error.rebind:
            link.log.warning("the SMG refused a Submit for the session; binding again", result=result)
            link.drop()
        return SubmitOutcome(error=error)

    # -- outbound connections -------------------------------------------------------------------------

    def _update_up(self) -> None:
        up = any(link.connected or link.dormant for link in self._links)
        if up != self.up:
            self.up = up
            self._log.info("sgip channel is up" if up else "sgip channel is down")
            self.events.link_state(self.name, up)

    def _changed(self) -> None:
        self._update_up()
        self._link_changed.set()

    async def _maintain(self, link: _Link) -> None:
        """Open, bind and serve one connection; after a loss wait (backoff, jitter) and redo; after an idle
        close wait until a submit wants it."""
        s = self.settings
        backoff = _link.Backoff(s.reconnect_min, s.reconnect_max, self._rng)
        while not self._draining:
            if link.dormant:
                await link.wanted.wait()  # a submit wants it, or drain() woke it to end
                if self._draining:
                    break
            try:
                lasted, refused, idle = await self._session(link)
            except Exception:
                link.log.exception("sgip session failed unexpectedly; reconnecting")
                lasted, refused, idle = 0.0, None, False
            if idle and not self._draining:
                link.wanted = trio.Event()  # before it is seen dormant, so that no wish is lost
                link.dormant = True
            else:
                link.dormant = False
            self._changed()
            if self._draining:
                break
            if idle:
                backoff.reset()
                continue
            # A wrong password is not fixed by retrying fast.
            slow = refused is not None and refused.result == RESULT_ILLEGAL_LOGIN
            with trio.move_on_after(backoff.delay(lasted, slow=slow)):
                await self._drain_started.wait()

    async def _session(self, link: _Link) -> tuple[float, BindRefused | None, bool]:
        """One connection's life: (seconds it was bound, the refusal if Bind was refused, whether it was
        closed for idleness)."""
        s = self.settings
        try:
            with trio.fail_after(s.response_timeout):
                stream = await trio.open_tcp_stream(s.host, s.port)
        except (OSError, trio.TooSlowError) as e:
            link.log.warning("cannot connect to the SMG", host=s.host, port=s.port, error=str(e) or repr(e))
            return 0.0, None, False
        frames = _frames(stream)
        since: float | None = None
        link.closed = trio.Event()
        idle = False
        try:
            try:
                await self._bind(link, frames)
            except BindRefused as refused:
                self.refused = refused
                hint = "check the channel's login_name and password" if refused.result == 1 else ""
                link.log.error(str(refused), result=refused.result, hint=hint)
                return 0.0, refused, False
            except (*_LINK_ERRORS, trio.TooSlowError) as e:
                link.log.warning("SGIP_BIND failed", error=str(e) or repr(e))
                return 0.0, None, False
            self.refused = None
            since = trio.current_time()
            link.log.info("bound", host=s.host, port=s.port)
            idle = await self._serve(link, frames)
            return trio.current_time() - since, None, idle
        finally:
            link.end_session()
            link.unbinding = False
            if since is not None:
                link.log.info("connection closed", lasted=round(trio.current_time() - since, 3), idle=idle)
            await trio.aclose_forcefully(stream)
            link.closed.set()

    async def _bind(self, link: _Link, frames: _link.Frames) -> None:
        s = self.settings
        request = pdu.Bind(LOGIN_SP_TO_SMG, s.login_name, s.password)
        number = link.sequencer.next(datetime.now())
        with trio.fail_after(s.response_timeout):
            await frames.stream.send_all(pdu.encode(request, sequence_number=number))
            while True:
                raw = await frames.receive()
                if raw is None:
                    raise pdu.PduError("the SMG closed the connection without answering SGIP_BIND")
                packet = pdu.decode(raw)
                if isinstance(packet.pdu, pdu.BindResp):
                    if packet.pdu.result != RESULT_OK:
                        raise BindRefused(packet.pdu.result)
                    return
                if isinstance(packet.pdu, pdu.Unbind):
                    raise pdu.PduError("the SMG sent SGIP_UNBIND instead of SGIP_BIND_RESP")

    async def _serve(self, link: _Link, frames: _link.Frames) -> bool:
        """Run the connection until it ends; True when it was closed for idleness."""
        link.out.clear()
        link.out_ready = trio.Event()
        link.last_activity = trio.current_time()
        idle = [False]
        async with trio.open_nursery() as nursery:
            link.scope = nursery.cancel_scope
            link.connected = True
            link.dormant = False
            self._changed()
            if self._draining:
                nursery.start_soon(self._unbind, link)
            nursery.start_soon(link.writer, frames.stream)
            nursery.start_soon(link.sweep, self.settings.resends, self.settings.response_timeout)
            if self.settings.idle_timeout:
                nursery.start_soon(self._idle_closer, link, idle)
            await self._reader(link, frames)
            nursery.cancel_scope.cancel()
        return idle[0]

    async def _idle_closer(self, link: _Link, idle: list[bool]) -> None:
        """Unbind once nothing has been outstanding for ``idle_timeout`` seconds."""
        timeout = self.settings.idle_timeout
        while True:
            due = link.last_activity + timeout
            if link.outstanding or link.pending:
                await trio.sleep(min(timeout, 1.0))
                continue
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            link.log.info("idle; unbinding until the next submit", idle_for=timeout)
            idle[0] = True
            await self._unbind(link)
            return

    async def _unbind(self, link: _Link) -> None:
        if not link.connected or link.unbinding:
            return
        link.unbinding = True
        _, req = link.request(pdu.Unbind(), self.settings.response_timeout)
        with trio.move_on_after(min(_UNBIND_WAIT, self.settings.response_timeout)):
            await req.done.wait()
        if not isinstance(req.response, pdu.UnbindResp):
            link.log.info("no SGIP_UNBIND_RESP from the SMG; closing anyway")
        link.drop()
        with trio.move_on_after(_UNBIND_WAIT):
            await link.closed.wait()

    async def _reader(self, link: _Link, frames: _link.Frames) -> None:
        try:
            while True:
                raw = await frames.receive()
                if raw is None:
                    if not link.unbinding:
                        link.log.warning("the SMG closed the connection")
                    return
                link.last_activity = trio.current_time()
                packet = pdu.decode(raw)
                header = pdu.decode_header(raw)
                if header.command_id & RESPONSE:
                    req = link.pending.pop(packet.sequence_number, None)
                    if req is None:
                        link.log.info(
                            "response to no outstanding request", command=command_name(header.command_id)
                        )
                        continue
                    req.response = packet.pdu
                    req.done.set()
                elif isinstance(packet.pdu, pdu.Unbind):
                    link.log.info("the SMG unbound the session")
                    link.unbinding = True
                    self._changed()
                    with trio.move_on_after(self.settings.response_timeout):
                        await frames.stream.send_all(
                            pdu.encode(pdu.UnbindResp(), sequence_number=packet.sequence_number)
                        )
                    return
                else:
                    link.log.warning(
                        "request not handled on the submit link", command=command_name(header.command_id)
                    )
        except _LINK_ERRORS as e:
            link.log.warning("connection lost while reading", error=str(e) or repr(e))

    # -- the listener: the SMG's Deliver and Report ----------------------------------------------------

    async def _serve_inbound(self, stream: trio.SocketStream) -> None:
        self._inbound_numbers += 1
        conn = _Inbound(stream, self._inbound_numbers, self._log)
        self._inbound.add(conn)
        frames = _frames(stream)
        try:
            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(self._inbound_writer, conn, nursery.cancel_scope)
                if self.settings.idle_timeout:
                    nursery.start_soon(self._inbound_idle, conn, nursery.cancel_scope)
                await self._inbound_reader(conn, frames, nursery)
                # Give what is owed (answers, an Unbind_Resp) a moment to leave.
                with trio.move_on_after(_UNBIND_WAIT):
                    while conn.out:
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        finally:
            self._inbound.discard(conn)

    async def _inbound_writer(self, conn: _Inbound, scope: trio.CancelScope) -> None:
        try:
            await conn.write(conn.stream)
        except _link.SEND_ERRORS:
            scope.cancel()

    async def _inbound_idle(self, conn: _Inbound, scope: trio.CancelScope) -> None:
        timeout = self.settings.idle_timeout
        while True:
            due = conn.last_rx + timeout
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            conn.log.info("the SMG's connection is idle; unbinding it")
            number = seq.Sequencer(self.node_id, start=self._rng.randrange(1 << 31)).next(datetime.now())
            conn.send(pdu.encode(pdu.Unbind(), sequence_number=number))
            await trio.sleep(_UNBIND_WAIT)
            scope.cancel()
            return

    def _check_login(self, bind: pdu.Bind) -> int:
        s = self.settings
        if bind.login_type != LOGIN_SMG_TO_SP:
            return RESULT_LOGIN_TYPE_WRONG
        if s.smg_login_name and (bind.login_name, bind.login_password) != (s.smg_login_name, s.smg_password):
            return RESULT_ILLEGAL_LOGIN
        return RESULT_OK

    async def _inbound_reader(self, conn: _Inbound, frames: _link.Frames, nursery: trio.Nursery) -> None:
        reports_in, reports_out = trio.open_memory_channel[tuple[seq.SequenceNumber, pdu.Report]](
            _link.DELIVER_BACKLOG
        )
        replies_in, replies_out = trio.open_memory_channel[tuple[seq.SequenceNumber, pdu.Deliver]](
            _link.DELIVER_BACKLOG
        )
        nursery.start_soon(self._report_worker, conn, reports_out)
        for _ in range(_link.REPLY_WORKERS):
            nursery.start_soon(self._reply_worker, conn, replies_out.clone())
        try:
            while True:
                raw = await frames.receive()
                if raw is None:
                    return
                conn.last_rx = trio.current_time()
                header = pdu.decode_header(raw)
                number, command_id = header.sequence_number, header.command_id
                if command_id == BIND:
                    bind = pdu.decode(raw).pdu
                    assert isinstance(bind, pdu.Bind)
                    result = RESULT_REPEATED_LOGIN if conn.bound else self._check_login(bind)
                    conn.send(pdu.encode(pdu.BindResp(result), sequence_number=number))
                    if result != RESULT_OK:
                        conn.log.warning(
                            "refused the SMG's SGIP_BIND",
                            result=result_name(result),
                            login_type=bind.login_type,
                            login_name=bind.login_name,
                        )
                        if not conn.bound:
                            return
                        continue
                    conn.bound = True
                    conn.log.info("the SMG bound", login_name=bind.login_name)
                elif command_id == UNBIND:
                    conn.send(pdu.encode(pdu.UnbindResp(), sequence_number=number))
                    return
                elif command_id == UNBIND_RESP:
                    return
                elif command_id in (DELIVER, REPORT):
                    if not conn.bound:
                        conn.send(_answer(command_id, RESULT_ILLEGAL_LOGIN, number))
                        continue
                    try:
                        packet = pdu.decode(raw)
                    except pdu.PduError as e:
                        conn.log.warning("undecodable request; answered Result 5", error=str(e))
                        conn.send(_answer(command_id, RESULT_PARAMETER_FORMAT, number))
                        continue
                    if isinstance(packet.pdu, pdu.Report):
                        await reports_in.send((number, packet.pdu))
                    else:
                        assert isinstance(packet.pdu, pdu.Deliver)
                        await replies_in.send((number, packet.pdu))
                elif command_id == SUBMIT:
                    conn.send(pdu.encode(pdu.SubmitResp(RESULT_LOGIN_TYPE_WRONG), sequence_number=number))
                elif command_id & RESPONSE:
                    continue
                else:
                    conn.log.warning("request not handled on the listener", command=command_name(command_id))
        except _LINK_ERRORS as e:
            conn.log.info("the SMG's connection ended", error=str(e) or repr(e))

    async def _report_worker(
        self, conn: _Inbound, reports: trio.MemoryReceiveChannel[tuple[seq.SequenceNumber, pdu.Report]]
    ) -> None:
        async for first in reports:
            batch = _link.batch_of(first, reports)
            results = await self._store_reports(conn, [report for _, report in batch])
            for (number, _), result in zip(batch, results, strict=True):
                conn.send(pdu.encode(pdu.ReportResp(result), sequence_number=number))

    async def _store_reports(self, conn: _Inbound, batch: Sequence[pdu.Report]) -> list[int]:
        results = [RESULT_OK] * len(batch)
        parsed: list[tuple[int, InboundReceipt]] = []
        for i, report in enumerate(batch):
            if report.report_type != REPORT_TYPE_SUBMIT:
                conn.log.info("a Report on a Deliver (ReportType 1); answered and dropped")
                continue
            parsed.append((i, receipt_of(report)))
        await _link.store_receipts(
            self.events,
            self.name,
            conn.log,
            parsed,
            results,
            busy=RESULT_NODE_BUSY,
            refused="could not store a report; the SMG will send it again",
        )
        return results

    async def _reply_worker(
        self, conn: _Inbound, replies: trio.MemoryReceiveChannel[tuple[seq.SequenceNumber, pdu.Deliver]]
    ) -> None:
        async with replies:
            async for number, deliver in replies:
                message = reply_of(deliver, received_at=time.time())
                result = RESULT_OK
                try:
                    await _link.store_reply(self.events, self.name, message)
                except Exception as e:
                    conn.log.warning(
                        "could not store a reply; the SMG will send it again",
                        sender=deliver.user_number,
                        error=str(e) or repr(e),
                    )
                    result = RESULT_NODE_BUSY
                conn.send(pdu.encode(pdu.DeliverResp(result), sequence_number=number))


# ----- what a Result, a Report and a Deliver mean ------------------------------------------------------


def _answer(command_id: int, result: int, number: seq.SequenceNumber) -> bytes:
    """The Deliver_Resp or Report_Resp to a request of ``command_id``."""
    response = pdu.DeliverResp(result) if command_id == DELIVER else pdu.ReportResp(result)
    return pdu.encode(response, sequence_number=number)


def _user_number(destination: str) -> str:
    """A UserNumber: the destination with its country code 86 (the spec's "illegal phone number", 6,
    otherwise). A mainland mobile number of 11 digits gets 86 in front; a number already in
    international form loses only its ``+``."""
    number = destination.strip().removeprefix("+")
    if number.startswith("00"):
        number = number[2:]
    if len(number) == 11 and number.startswith("1") and number.isdigit():
        return "86" + number
    return number


def submit_error(result: int) -> SubmitError:
    """What a non-zero Submit_Resp Result means for the message: 11 (node busy) and 33 (SMSC queue full)
    are flow control (retried, the channel slowed); 1–4 are about the session (bound again, retried);
    9 and 32 are retried; every other is permanent, with its name."""
    name = f"SGIP_SUBMIT_RESP {result_name(result)}"
    if result in THROTTLE_RESULTS:
        return SubmitError(result, name, retriable=True, throttled=True)
    if result in REBIND_RESULTS:
        return SubmitError(result, name, retriable=True, rebind=True)
    if result in TRANSIENT_RESULTS:
        return SubmitError(result, name, retriable=True)
    return SubmitError(result, name, retriable=False)


def receipt_of(report: pdu.Report) -> InboundReceipt:
    """A Report as the core's receipt: the Submit's Sequence Number as the carrier id; State 0
    delivered, 2 undelivered with its ErrorCode kept, 1 waiting (en route: not final); ``raw`` names
    them."""
    carrier_id = seq.to_text(report.submit_sequence_number)
    if report.state == STATE_DELIVERED:
        return InboundReceipt(carrier_id, ReceiptStatus.DELIVERED, raw=state_name(report.state))
    if report.state == STATE_WAITING:
        return InboundReceipt(carrier_id, ReceiptStatus.ENROUTE, raw=state_name(report.state))
    raw = f"{state_name(report.state)}: {result_name(report.error_code)}"
    if report.state != STATE_FAILED:
        raw = f"{state_name(report.state)}, ErrorCode {report.error_code}"
    return InboundReceipt(carrier_id, ReceiptStatus.UNDELIVERED, error_code=report.error_code, raw=raw)


def reply_of(deliver: pdu.Deliver, *, received_at: float) -> InboundReply | InboundReplyPart:
    """A Deliver as a whole reply or a part of a long one; ``destination`` is SPNumber, the number the
    user wrote to (access number + extension), so the core finds the extension in it. A malformed UDH
    makes the Deliver a reply of its own."""
    return cn_text.read_reply(
        deliver.user_number,
        deliver.sp_number,
        deliver.message_content,
        udhi=deliver.tp_udhi,
        msg_fmt=deliver.message_coding,
        received_at=received_at,
    )
