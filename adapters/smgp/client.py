"""The SMGP 3.0 SP driver (``smgp`` channel): logs in to a China Telecom SMGW over TCP and sends and
receives SMS.

:class:`SmgpChannel` keeps ``connections`` logins open for the daemon's life and reconnects each on its
own with exponential backoff and jitter. A login is SMGP_Login with AuthenticatorClient = MD5(client_id
+ 7 zero octets + password + MMDDHHMMSS) and a LoginMode: 2 (``login_mode = 2``, the default) sends and
receives on one TCP connection; ``login_mode = "0+1"`` opens, for each connection, a send link (mode 0,
Submits only) and a receive link (mode 1, on which the SMGW delivers replies and reports). Every link has
a reader (a response goes to the request waiting on its SequenceID; a Deliver to the receipt worker or to
the reply workers), a writer (PDUs queued in one scheduler tick leave in one ``send_all``), a keepalive
(Active_Test after ``active_test_interval`` without traffic) and a sweeper that re-sends a request left
unanswered for ``response_timeout`` — the same octets, the same SequenceID — up to ``resends`` times,
then gives up on it. ``submit`` sends one delivery's segments in order on the send link with the fewest
outstanding Submits, at most ``window`` outstanding per link. On shutdown, ``drain`` lets the Submits in
flight finish and sends SMGP_Exit on every link.

Submit_Resp Status 0 gives the segment's carrier id (its MsgID's stored text, :func:`.msgid.to_text`);
74 (sending banned in this time window), 75 (daily volume exceeded) and 1 (system busy) are waits, not
failures; any other Status fails the delivery with its name. Status reports (Deliver, IsReport 1) and
replies (IsReport 0) are answered (SMGP_Deliver_Resp) only after the core has stored them; each part of
a long reply goes to the core as it arrives, and a timer asks the core to give up on missing parts after
``mo_timeout``. The wire layout is :mod:`.pdu`'s, the numbers and their names :mod:`.constants`'. Texts
are cut as on CMPP (:class:`SmgpSegmenter`): the Chinese carriers share those rules.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import pydantic
import structlog
import trio

from .. import _link, cn_text
from .._options import (
    ACTIVE_TEST_INTERVAL,
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
    OutboundSegment,
    ReceiptStatus,
    Segmenter,
    SubmitError,
    SubmitOutcome,
    option,
)
from . import msgid, pdu
from .constants import (
    ACTIVE_TEST,
    ACTIVE_TEST_RESP,
    DELIVER,
    EXIT,
    EXIT_RESP,
    LOGIN_MODE_NAMES,
    LOGIN_MODE_RECEIVE,
    LOGIN_MODE_SEND,
    LOGIN_MODE_TRANSMIT,
    LOGIN_RESP,
    MSG_TYPE_MT,
    RESPONSE,
    STATUS_ACCOUNT_EXPIRED,
    STATUS_AUTH_FAILED,
    STATUS_BAD_IP_ADDRESS,
    STATUS_BAD_STRUCTURE,
    STATUS_OK,
    STATUS_SYSTEM_BUSY,
    STATUS_VERSION_TOO_HIGH,
    STATUS_WAITS,
    SUBMIT_RESP,
    VERSION_30,
    command_name,
    status_name,
)

__all__ = ["LoginRefused", "SmgpChannel", "SmgpOptions", "SmgpSegmenter", "receipt_of", "reply_of"]

log = structlog.get_logger("masd.smgp")

_EXIT_WAIT = 2.0  # seconds to wait for Exit_Resp on shutdown

# What a lost or garbled connection raises from a read or a write.
_LINK_ERRORS = (*_link.SEND_ERRORS, pdu.PduError)

# Login_Resp Statuses that retrying soon cannot mend (and that may get the account locked): the
# channel keeps trying, at reconnect_max, so that a fix at the SMGW is picked up without a restart.
_SLOW_RETRY = frozenset({STATUS_AUTH_FAILED, STATUS_BAD_IP_ADDRESS, STATUS_ACCOUNT_EXPIRED})

# Submit_Resp Statuses that are flow control: the SMGW would take the same message later. 74 (outside
# the SP's permitted hours) may last hours and 75 (the day's quota) until midnight: the delivery waits,
# never counting an attempt, and only its validity period ends it. 1 (system busy) is the SMGW's
# overload: slowing down is the answer there too, not failing a message it has not even looked at.
_WAIT_STATUSES = frozenset({STATUS_SYSTEM_BUSY, *STATUS_WAITS})


class LoginRefused(Exception):
    """The SMGW answered SMGP_Login with a non-zero Status; the message names it."""

    def __init__(self, status: int, server_version: int) -> None:
        self.status = status
        self.server_version = server_version
        super().__init__(f"SMGP_Login refused: status {status} ({status_name(status)})")


class SmgpSegmenter(cn_text.CmppSegmenter):
    """How an ``smgp`` channel cuts a text: exactly as a ``cmpp`` channel does (140 octets of MsgContent;
    ASCII, UCS-2 or, with ``allow_gbk``, GBK; a UDH with TP_udhi for a long text), because these are the
    Chinese carriers' shared text rules. ``data_coding`` is the MsgFormat: 0, 8 and 15 mean the same in
    SMGP as in CMPP (SMGP names 15 GB18030, of which GBK is a subset)."""


# ----- options -----------------------------------------------------------------------------------------


class SmgpOptions(DriverOptions):
    """The ``smgp`` driver's options; see :class:`SmgpChannel` and docs/cmpp.md."""

    secret = frozenset({"password"})

    host: str = HOST
    port: int = option(8890, "an integer from 1 to 65535", ge=1, le=65535)
    client_id: str = option(
        "", "the SP's account (ClientID), at most 8 characters", min_length=1, max_length=8, pattern=ASCII
    )
    password: str = option("", ascii_text(64), max_length=64, pattern=ASCII)
    login_mode: Literal[2, "0+1"] = option(
        2, "2 (send and receive on one link) or '0+1' (a send link and a receive link)"
    )
    service_code: str = option("", "the SP's access number, at most 21 digits", max_length=21, pattern=DIGITS)
    service_id: str = option("", ascii_text(10), max_length=10, pattern=ASCII)
    fee_type: str = option("00", "two digits, e.g. '00' (free)", pattern=r"^[0-9]{2}$")
    fee_code: str = option("000000", "at most 6 digits (fen)", max_length=6, pattern=DIGITS)
    fixed_fee: str = option("000000", "at most 6 digits (fen)", max_length=6, pattern=DIGITS)
    charge_term_id: str = option("", "at most 21 digits", max_length=21, pattern=DIGITS)
    priority: int = option(1, "an integer from 0 to 3", ge=0, le=3)
    connections: int = CONNECTIONS
    window: int = WINDOW
    response_timeout: float = RESPONSE_TIMEOUT
    resends: int = RESENDS
    active_test_interval: float = ACTIVE_TEST_INTERVAL
    reconnect_min: float = RECONNECT_MIN
    reconnect_max: float = RECONNECT_MAX
    need_report: int = option(1, "0 (no reports) or 1", ge=0, le=1)
    allow_gbk: bool = ALLOW_GBK
    mo_timeout: float = MO_TIMEOUT
    max_rate: float | None = MAX_RATE

    @pydantic.model_validator(mode="after")
    def _together(self) -> SmgpOptions:
        require(("host", self.host), ("client_id", self.client_id))
        check_reconnect(self.reconnect_min, self.reconnect_max)
        return self

    @property
    def login_modes(self) -> tuple[int, ...]:
        """The LoginMode of each link a connection is made of."""
        if self.login_mode == "0+1":
            return (LOGIN_MODE_SEND, LOGIN_MODE_RECEIVE)
        return (LOGIN_MODE_TRANSMIT,)


# ----- one request and one link ---------------------------------------------------------------------------


class _Link(_link.LoginLink):
    """One logged-in TCP connection to the SMGW in one LoginMode, reconnected for the driver's whole
    life. The window and the SequenceID counter live as long as the link; the rest is reset on every
    reconnect."""

    def __init__(self, label: str, mode: int, window: int, logger: Any) -> None:
        super().__init__(label, window, logger.bind(connection=label, login_mode=LOGIN_MODE_NAMES[mode]))
        self.mode = mode
        self.exiting = False  # we sent Exit: the SMGW closing the connection is expected

    @property
    def sends(self) -> bool:
        return self.mode != LOGIN_MODE_RECEIVE

    @property
    def usable(self) -> bool:
        return self.sends and self.connected

    def request(self, message: pdu.Pdu, timeout: float) -> tuple[int, _link.Request]:
        seq = self.next_sequence()
        return seq, self.track(seq, pdu.encode(message, sequence_id=seq), timeout)


def _frames(stream: trio.abc.Stream) -> _link.Frames:
    """Whole PDUs off a byte stream: a 12-octet header, then PacketLength - 12 more."""
    return _link.Frames(stream, pdu.HEADER_LENGTH, lambda h: pdu.decode_header(h).packet_length, pdu.PduError)


# ----- the driver ---------------------------------------------------------------------------------------


class SmgpChannel(ChannelDriver):
    """SMGP 3.0 SP driver. See the module docstring; its options are :class:`SmgpOptions`."""

    driver = "smgp"
    Options = SmgpOptions
    settings: SmgpOptions

    def __init__(self, name: str, options: Mapping[str, Any], events: ChannelEvents, data_dir: str) -> None:
        super().__init__(name, options, events, data_dir)
        s = self.settings
        # Never the password: log lines end up in shared log stores.
        self._log = log.bind(channel=name, client_id=s.client_id)
        modes = s.login_modes
        self._links = [
            _Link(f"{i}" if len(modes) == 1 else f"{i}{LOGIN_MODE_NAMES[mode][0]}", mode, s.window, self._log)
            for i in range(1, s.connections + 1)
            for mode in modes
        ]
        self._picker = _link.Picker()
        self._rng = random.Random()
        self._pacer = _link.Pacer(s.max_rate)
        self._running = False
        self._draining = False
        self._drain_started = trio.Event()
        self._in_flight = _link.InFlight()
        self.refused: LoginRefused | None = None  # the last Login refusal, until a login succeeds

    @classmethod
    def segmenter(cls, settings: DriverOptions) -> Segmenter | None:
        if not isinstance(settings, SmgpOptions):
            raise TypeError(f"smgp settings expected, got {type(settings).__name__}")
        return SmgpSegmenter(allow_gbk=settings.allow_gbk)

    # -- the driver interface -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._running:
            raise RuntimeError(f"smgp channel {self.name!r} is already running")
        self._running = True
        s = self.settings
        self._log.info(
            "smgp channel starting", host=s.host, port=s.port, connections=s.connections, mode=s.login_mode
        )
        try:
            async with trio.open_nursery() as nursery:
                for link in self._links:
                    nursery.start_soon(self._maintain, link)
                nursery.start_soon(_link.expire_reply_parts, self.events, self.name, s.mo_timeout, self._log)
                # Started at once: the dispatcher waits for ``up`` itself, and an SMGW that is down must
                # not hold up the daemon's start.
                task_status.started()
        finally:
            self._running = False
            for link in self._links:
                link.connected = False
            self._update_up()

    async def submit(
        self, destination: str, source: str, segments: Sequence[OutboundSegment]
    ) -> list[SubmitOutcome]:
        link = None if self._draining else self._picker.pick(self._links)
        if link is None:
            return [SubmitOutcome(error=self._link_down()) for _ in segments]
        src = self._src_term_id(source)
        if isinstance(src, SubmitError):
            return [SubmitOutcome(error=src) for _ in segments]
        dest = destination.removeprefix("+")
        with self._in_flight:
            return await _link.send_in_order(segments, lambda seg: self._submit_segment(link, seg, src, dest))

    async def drain(self) -> None:
        """Refuse new submits, let those in flight get their responses (at most ``response_timeout``),
        then send SMGP_Exit on every link and close it. Reconnection stops for good."""
        self._draining = True
        self._drain_started.set()
        await self._in_flight.settle(self.settings.response_timeout)
        async with trio.open_nursery() as nursery:
            for link in self._links:
                nursery.start_soon(self._exit, link)
        self._log.info("smgp channel drained")

    @property
    def problem(self) -> str | None:
        """The last SMGP_Login refusal while no link can send (e.g. authentication failed)."""
        if self.up or self.refused is None:
            return None
        return str(self.refused)

    # -- submit path ----------------------------------------------------------------------------------

    def _link_down(self) -> SubmitError:
        if self.refused is not None:
            # The reason the link is down, where the operator reads the delivery's reason.
            return SubmitError(self.refused.status, f"LINK_DOWN: {self.refused}", retriable=True)
        return _link.LINK_DOWN

    def _src_term_id(self, source: str) -> str | SubmitError:
        """SrcTermID: the source the core gives (the channel's service number and the delivery's
        extension). With ``service_code`` set it must start with it: the SMGW charges and routes replies
        by that number, and a SrcTermID outside the SP's range is refused (Status 46) or billed wrongly."""
        code = self.settings.service_code
        if code and not source.startswith(code):
            return SubmitError(
                0,
                f"source {source!r} does not start with the channel's service_code {code!r}; "
                "make the channel's service_number the SMGP access number",
                retriable=False,
            )
        if len(source) > 21:
            return SubmitError(0, f"source {source!r} is longer than SrcTermID's 21 octets", retriable=False)
        return source

    def _submit_pdu(self, seg: OutboundSegment, src: str, dest: str) -> pdu.Submit:
        s = self.settings
        return pdu.Submit(
            msg_type=MSG_TYPE_MT,
            need_report=s.need_report,
            priority=s.priority,
            service_id=s.service_id,
            fee_type=s.fee_type,
            fee_code=s.fee_code,
            fixed_fee=s.fixed_fee,
            msg_format=seg.data_coding,
            src_term_id=src,
            charge_term_id=s.charge_term_id,
            dest_term_ids=(dest,),
            msg_content=seg.short_message,
            # The UDH alone joins the parts on a handset; the TLVs tell the SMGW (and its billing).
            tp_udhi=1 if seg.udh else 0,
            pk_total=seg.total,
            pk_number=seg.seq,
        )

    async def _submit_segment(self, link: _Link, seg: OutboundSegment, src: str, dest: str) -> SubmitOutcome:
        s = self.settings
        await self._pacer.wait()
        async with link.window:
            if not link.connected:  # the link dropped while this submit waited for a slot
                return SubmitOutcome(error=self._link_down())
            try:
                seq, req = link.request(self._submit_pdu(seg, src, dest), s.response_timeout)
            except ValueError as e:
                # Nothing the SMGW could accept: a retry would fail the same way.
                return SubmitOutcome(error=SubmitError(0, f"cannot encode SMGP_Submit: {e}", retriable=False))
            await link.answered(seq, req)
        return self._segment_outcome(link, req, seq)

    def _segment_outcome(self, link: _Link, req: _link.Request, seq: int) -> SubmitOutcome:
        if req.timed_out:
            link.log.warning(
                "no SMGP_Submit_Resp after resends",
                seq=seq,
                resends=req.resends,
                timeout=self.settings.response_timeout,
            )
            return SubmitOutcome(error=_link.SUBMIT_TIMEOUT)
        if req.lost or not isinstance(req.response, pdu.SubmitResp):
            return SubmitOutcome(error=self._link_down())
        return submit_outcome(req.response)

    # -- links ----------------------------------------------------------------------------------------

    def _update_up(self) -> None:
        up = any(link.connected and link.sends for link in self._links)
        if up != self.up:
            self.up = up
            self._log.info("smgp channel is up" if up else "smgp channel is down")
            self.events.link_state(self.name, up)

    async def _maintain(self, link: _Link) -> None:
        """Connect, log in and serve one link; after each loss wait (exponential backoff, jitter) and redo."""
        s = self.settings
        backoff = _link.Backoff(s.reconnect_min, s.reconnect_max, self._rng)
        while not self._draining:
            try:
                lasted, refused = await self._session(link)
            except Exception:
                # A bug in this driver must cost one link, not the channel (or the daemon).
                link.log.exception("smgp session failed unexpectedly; reconnecting")
                lasted, refused = 0.0, None
            if self._draining:
                break
            slow = refused is not None and refused.status in _SLOW_RETRY
            with trio.move_on_after(backoff.delay(lasted, slow=slow)):
                await self._drain_started.wait()

    async def _session(self, link: _Link) -> tuple[float, LoginRefused | None]:
        """One connection's life: (seconds it was logged in, the refusal if Login was refused)."""
        s = self.settings
        try:
            with trio.fail_after(s.response_timeout):
                stream = await trio.open_tcp_stream(s.host, s.port)
        except (OSError, trio.TooSlowError) as e:
            link.log.warning("cannot connect to the SMGW", host=s.host, port=s.port, error=str(e) or repr(e))
            return 0.0, None
        frames = _frames(stream)
        since: float | None = None
        link.closed = trio.Event()
        try:
            try:
                await self._login(link, frames)
            except LoginRefused as refused:
                self.refused = refused
                hint = {
                    STATUS_AUTH_FAILED: "check the channel's client_id and password",
                    STATUS_BAD_IP_ADDRESS: "the SMGW does not accept this host's address; ask the carrier",
                    STATUS_VERSION_TOO_HIGH: f"the SMGW speaks 0x{refused.server_version:02X}",
                }.get(refused.status, "")
                link.log.error(str(refused), status=refused.status, hint=hint)
                return 0.0, refused
            except (*_LINK_ERRORS, trio.TooSlowError) as e:
                link.log.warning("SMGP_Login failed", error=str(e) or repr(e))
                return 0.0, None
            self.refused = None
            since = trio.current_time()
            link.log.info("logged in", host=s.host, port=s.port)
            await self._serve(link, frames)
            return trio.current_time() - since, None
        finally:
            if link.end_session():
                self._update_up()
            if since is not None:
                link.log.info("connection closed", lasted=round(trio.current_time() - since, 3))
            await trio.aclose_forcefully(stream)
            link.closed.set()

    async def _login(self, link: _Link, frames: _link.Frames) -> None:
        """Send SMGP_Login and wait for its response; LoginRefused for a non-zero Status."""
        s = self.settings
        timestamp = pdu.timestamp_of(datetime.now())
        request = pdu.login_request(
            s.client_id, s.password, timestamp=timestamp, login_mode=link.mode, version=VERSION_30
        )
        seq = link.next_sequence()
        with trio.fail_after(s.response_timeout):
            await frames.stream.send_all(pdu.encode(request, sequence_id=seq))
            while True:
                raw = await frames.receive()
                if raw is None:
                    raise pdu.PduError("the SMGW closed the connection without answering SMGP_Login")
                header = pdu.decode_header(raw)
                if header.request_id == LOGIN_RESP:
                    resp = pdu.decode(raw).pdu
                    assert isinstance(resp, pdu.LoginResp)
                    if resp.status != STATUS_OK:
                        raise LoginRefused(resp.status, resp.server_version)
                    expected = pdu.authenticator_server(resp.status, request.authenticator_client, s.password)
                    if resp.authenticator_server != expected:
                        # Not fatal: an SP rarely checks it, and gateways compute it differently.
                        link.log.info("AuthenticatorServer differs from the spec's; ignored")
                    return
                if header.request_id == ACTIVE_TEST:
                    await frames.stream.send_all(
                        pdu.encode(pdu.ActiveTestResp(), sequence_id=header.sequence_id)
                    )
                elif header.request_id == EXIT:
                    raise pdu.PduError("the SMGW sent SMGP_Exit instead of SMGP_Login_Resp")

    async def _serve(self, link: _Link, frames: _link.Frames) -> None:
        """Run the link's reader, writer, keepalive and sweeper until one of them ends it."""
        link.out.clear()
        link.out_ready = trio.Event()
        link.last_rx = trio.current_time()
        link.exiting = False
        async with trio.open_nursery() as nursery:
            link.scope = nursery.cancel_scope
            if self._draining:  # drain() began while this link was logging in
                nursery.start_soon(self._exit, link)
            link.connected = True
            self._update_up()
            nursery.start_soon(link.writer, frames.stream)
            nursery.start_soon(self._keepalive, link)
            nursery.start_soon(link.sweep, self.settings.resends, self.settings.response_timeout)
            await self._reader(link, frames, nursery)
            nursery.cancel_scope.cancel()

    async def _exit(self, link: _Link) -> None:
        if not link.connected:
            return
        link.exiting = True
        _, req = link.request(pdu.Exit(), self.settings.response_timeout)
        with trio.move_on_after(min(_EXIT_WAIT, self.settings.response_timeout)):
            await req.done.wait()
        if isinstance(req.response, pdu.ExitResp):
            link.log.info("exited")
        else:
            link.log.warning("no SMGP_Exit_Resp from the SMGW; closing anyway")
        link.drop()
        with trio.move_on_after(_EXIT_WAIT):
            await link.closed.wait()

    # -- per-link tasks -------------------------------------------------------------------------------

    async def _keepalive(self, link: _Link) -> None:
        """SMGP_Active_Test after ``active_test_interval`` without inbound traffic; when it gets no answer
        after its resends, the link is dropped."""
        s = self.settings

        def probe() -> _link.Request:
            return link.request(pdu.ActiveTest(), s.response_timeout)[1]

        await link.keepalive(s.active_test_interval, probe, "SMGP_Active_Test_Resp")

    async def _reader(self, link: _Link, frames: _link.Frames, nursery: trio.Nursery) -> None:
        reports_in, reports_out = trio.open_memory_channel[tuple[int, pdu.Deliver]](_link.DELIVER_BACKLOG)
        replies_in, replies_out = trio.open_memory_channel[tuple[int, pdu.Deliver]](_link.DELIVER_BACKLOG)
        nursery.start_soon(self._report_worker, link, reports_out)
        for _ in range(_link.REPLY_WORKERS):
            nursery.start_soon(self._reply_worker, link, replies_out.clone())
        try:
            while True:
                raw = await frames.receive()
                if raw is None:
                    if not link.exiting:
                        link.log.warning("the SMGW closed the connection")
                    return
                link.last_rx = trio.current_time()
                header = pdu.decode_header(raw)
                request_id, seq = header.request_id, header.sequence_id
                if request_id == DELIVER:
                    try:
                        deliver = pdu.decode(raw).pdu
                    except pdu.PduError as e:
                        msg_id = raw[12:22] if len(raw) >= 22 else bytes(msgid.LENGTH)
                        link.log.warning(
                            "undecodable SMGP_Deliver; answered Status 10", error=str(e), seq=seq
                        )
                        link.send(_deliver_resp(seq, msg_id, STATUS_BAD_STRUCTURE))
                        continue
                    assert isinstance(deliver, pdu.Deliver)
                    await (reports_in if deliver.carries_report else replies_in).send((seq, deliver))
                elif request_id & RESPONSE:
                    self._on_response(link, raw, request_id, seq)
                elif request_id == ACTIVE_TEST:
                    link.send(pdu.encode(pdu.ActiveTestResp(), sequence_id=seq))
                elif request_id == EXIT:
                    link.log.info("the SMGW ended the session (SMGP_Exit); reconnecting")
                    # Straight to the socket, so the answer is out before the connection closes.
                    with trio.move_on_after(self.settings.response_timeout):
                        await frames.stream.send_all(pdu.encode(pdu.ExitResp(), sequence_id=seq))
                    return
                else:
                    # SMGP has no generic nack; a request an SP does not serve is logged and left alone.
                    link.log.warning("request not handled", command=command_name(request_id), seq=seq)
        except _LINK_ERRORS as e:
            link.log.warning("connection lost while reading", error=str(e) or repr(e))

    def _on_response(self, link: _Link, raw: bytes, request_id: int, seq: int) -> None:
        req = link.pending.pop(seq, None)
        if req is None:
            # Usually the answer to a resent request that was answered already, or one given up on.
            link.log.info("response to no outstanding request", command=command_name(request_id), seq=seq)
            return
        if request_id in (SUBMIT_RESP, ACTIVE_TEST_RESP, EXIT_RESP):
            req.response = pdu.decode(raw).pdu  # PduError drops the link
        req.done.set()

    # -- inbound: status reports and replies ------------------------------------------------------------

    async def _report_worker(
        self, link: _Link, reports: trio.MemoryReceiveChannel[tuple[int, pdu.Deliver]]
    ) -> None:
        """Store the link's reports, all that arrived since the last store in one write, and answer each
        once stored."""
        async for first in reports:
            batch = _link.batch_of(first, reports)
            statuses = await self._store_reports(link, batch)
            for (seq, deliver), status in zip(batch, statuses, strict=True):
                link.send(_deliver_resp(seq, deliver.msg_id, status))

    async def _store_reports(self, link: _Link, batch: Sequence[tuple[int, pdu.Deliver]]) -> list[int]:
        """Store status reports through the core; the Status to answer each Deliver with."""
        statuses = [STATUS_OK] * len(batch)
        parsed: list[tuple[int, InboundReceipt]] = []
        for i, (_, deliver) in enumerate(batch):
            try:
                receipt = receipt_of(pdu.decode_report(deliver.msg_content))
            except (pdu.PduError, ValueError) as e:
                # Refusing it would make the SMGW re-send it forever; answer it and keep the evidence.
                link.log.warning(
                    "status report not understood; answered and dropped",
                    error=str(e),
                    msg_content=deliver.msg_content.hex(),
                )
                continue
            parsed.append((i, receipt))
        await _link.store_receipts(
            self.events,
            self.name,
            link.log,
            parsed,
            statuses,
            busy=STATUS_SYSTEM_BUSY,
            refused="could not store a status report; the SMGW will re-send it",
        )
        return statuses

    async def _reply_worker(
        self, link: _Link, replies: trio.MemoryReceiveChannel[tuple[int, pdu.Deliver]]
    ) -> None:
        async with replies:
            async for seq, deliver in replies:
                try:
                    status = await self._store_reply(link, deliver)
                except Exception:
                    link.log.exception("reply handling failed; refused so that the SMGW re-sends it")
                    status = STATUS_SYSTEM_BUSY
                link.send(_deliver_resp(seq, deliver.msg_id, status))

    async def _store_reply(self, link: _Link, deliver: pdu.Deliver) -> int:
        """Store one mobile-originated Deliver (or one part of a long one) through the core; the Status to
        answer it with. What the store refuses is answered 1 (system busy): the SMGW sends it again."""
        message = reply_of(deliver, received_at=time.time())
        try:
            await _link.store_reply(self.events, self.name, message)
        except Exception as e:
            link.log.warning(
                "could not store a reply; the SMGW will re-send it",
                sender=deliver.src_term_id,
                error=str(e) or repr(e),
            )
            return STATUS_SYSTEM_BUSY
        return STATUS_OK


def _deliver_resp(seq: int, msg_id: bytes, status: int) -> bytes:
    return pdu.encode(pdu.DeliverResp(msg_id, status), sequence_id=seq)


# ----- reading the SMGW's answers --------------------------------------------------------------------------


def submit_outcome(resp: pdu.SubmitResp) -> SubmitOutcome:
    """A Submit_Resp as the segment's outcome: Status 0 → the MsgID's stored text; 74, 75 and 1 → a wait
    (throttled: the core holds the delivery and slows the channel, counting no attempt); any other
    Status → a permanent failure with its name."""
    if resp.status == STATUS_OK:
        return SubmitOutcome(carrier_id=msgid.to_text(resp.msg_id))
    name = f"SMGP_Submit_Resp {status_name(resp.status)}"
    if resp.status in _WAIT_STATUSES:
        return SubmitOutcome(error=SubmitError(resp.status, name, retriable=True, throttled=True))
    return SubmitOutcome(error=SubmitError(resp.status, name, retriable=False))


def receipt_of(report: pdu.Report) -> InboundReceipt:
    """A status report as the core's receipt: the MsgID's stored text, the stat as a state and the err
    code (when not delivered) as the error code; ``raw`` keeps both words as the SMGW wrote them."""
    stat = report.stat.strip()
    status = _link.REPORT_STATS.get(stat.upper(), ReceiptStatus.UNDELIVERED)
    err = report.err.strip()
    error_code: int | None = None
    if status != ReceiptStatus.DELIVERED:
        code = err if err.isascii() and err.isdigit() and int(err) else stat.rpartition(":")[2]
        if code.isascii() and code.isdigit():
            error_code = int(code)
    return InboundReceipt(
        msgid.to_text(report.msg_id), status, error_code=error_code, raw=f"{stat} err:{err}"
    )


def reply_of(deliver: pdu.Deliver, *, received_at: float) -> InboundReply | InboundReplyPart:
    """An MO Deliver as a whole reply or a part of a long one; ``destination`` is DestTermID, the number
    the user wrote to, so the core finds the extension in it. Never raises for what an SMGW can send: a
    malformed UDH or inconsistent counters make the Deliver a reply of its own."""
    return cn_text.read_reply(
        deliver.src_term_id,
        deliver.dest_term_id,
        deliver.msg_content,
        udhi=deliver.tp_udhi,
        msg_fmt=deliver.msg_format,
        received_at=received_at,
    )
