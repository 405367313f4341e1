"""The CMPP 2.0 / 3.0 SP driver (``cmpp`` channel): logs in to a China Mobile ISMG over TCP and sends and
receives SMS.

:class:`CmppChannel` keeps ``connections`` TCP connections open for the daemon's life, each logged in
with its own CMPP_CONNECT (AuthenticatorSource = MD5(sp_id + 9 zero octets + password + MMDDHHMMSS)),
and reconnects each on its own with exponential backoff and jitter. Every connection has a reader (a
response goes to the request waiting on its Sequence_Id; a DELIVER to the receipt worker or to the
reply workers), a writer (PDUs queued in one scheduler tick leave in one ``send_all``), a keepalive
(ACTIVE_TEST after ``active_test_interval`` without traffic) and a sweeper that re-sends a request left
unanswered for ``response_timeout`` — the same octets, the same Sequence_Id, as the spec asks — up to
``resends`` times, then gives up on it. ``submit`` sends one delivery's segments in order on the
connection with the fewest outstanding SUBMITs, at most ``window`` outstanding per connection.

Status reports and replies are answered (CMPP_DELIVER_RESP) only after the core has stored them, so a
crash loses nothing the ISMG thinks was delivered; each part of a long reply goes to the core as it
arrives, and a timer asks the core to give up on missing parts after ``mo_timeout``. The wire layout is
:mod:`.pdu`'s, the numbers and their names :mod:`.constants`', the text rules (the Chinese carriers' shared
ones) :mod:`masd_adapters.cn_text`'s; how a text is cut into SUBMITs is its :class:`.CmppSegmenter`, which the
core uses for this channel.
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
    InvalidOption,
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
    CONNECT_AUTH_FAILED,
    CONNECT_BAD_SOURCE_ADDR,
    CONNECT_OK,
    CONNECT_RESP,
    CONNECT_VERSION_TOO_HIGH,
    DELIVER,
    RESPONSE,
    RESULT_BAD_STRUCTURE,
    RESULT_FLOW_CONTROL,
    RESULT_OK,
    SUBMIT_RESP,
    TERMINATE,
    TERMINATE_RESP,
    VERSION_20,
    VERSION_30,
    command_name,
    connect_status_name,
    result_name,
)

__all__ = ["CmppChannel", "CmppOptions", "ConnectRefused"]

log = structlog.get_logger("masd.cmpp")

_VERSIONS = {"3.0": VERSION_30, "2.0": VERSION_20}
_TERMINATE_WAIT = 2.0  # seconds to wait for TERMINATE_RESP on shutdown

# What a lost or garbled connection raises from a read or a write.
_LINK_ERRORS = (*_link.SEND_ERRORS, pdu.PduError)


class ConnectRefused(Exception):
    """The ISMG answered CMPP_CONNECT with a non-zero Status; the message names it."""

    def __init__(self, status: int, ismg_version: int) -> None:
        self.status = status
        self.ismg_version = ismg_version
        super().__init__(f"CMPP_CONNECT refused: status {status} ({connect_status_name(status)})")


# ----- options -----------------------------------------------------------------------------------------


class CmppOptions(DriverOptions):
    """The ``cmpp`` driver's options; see :class:`CmppChannel` and docs/cmpp.md."""

    secret = frozenset({"password"})

    host: str = HOST
    port: int = option(7890, "an integer from 1 to 65535", ge=1, le=65535)
    sp_id: str = option(
        "", "the SP's 6-character id (Source_Addr)", min_length=1, max_length=6, pattern=ASCII
    )
    password: str = option("", ascii_text(64), max_length=64, pattern=ASCII)
    version: Literal["3.0", "2.0"] = option("3.0", "one of '3.0', '2.0'")
    service_code: str = option("", "the SP's access number, at most 21 digits", max_length=21, pattern=DIGITS)
    service_id: str = option("", ascii_text(10), max_length=10, pattern=ASCII)
    fee_usertype: int = option(2, "an integer from 0 to 3", ge=0, le=3)
    fee_type: str = option("01", "two digits, e.g. '01' (free)", pattern=r"^[0-9]{2}$")
    fee_code: str = option("000000", "at most 6 digits (fen)", max_length=6, pattern=DIGITS)
    fee_terminal_id: str = option("", "at most 21 digits", max_length=21, pattern=DIGITS)
    msg_src: str = option("", ascii_text(6) + " (empty: sp_id)", max_length=6, pattern=ASCII)
    link_id: str = option("", ascii_text(20) + " (CMPP 3.0 only)", max_length=20, pattern=ASCII)
    connections: int = CONNECTIONS
    window: int = WINDOW
    response_timeout: float = RESPONSE_TIMEOUT
    resends: int = RESENDS
    active_test_interval: float = ACTIVE_TEST_INTERVAL
    reconnect_min: float = RECONNECT_MIN
    reconnect_max: float = RECONNECT_MAX
    registered_delivery: int = option(1, "0 (no reports) or 1", ge=0, le=1)
    allow_gbk: bool = ALLOW_GBK
    mo_timeout: float = MO_TIMEOUT
    max_rate: float | None = MAX_RATE

    @pydantic.model_validator(mode="after")
    def _together(self) -> CmppOptions:
        require(("host", self.host), ("sp_id", self.sp_id))
        check_reconnect(self.reconnect_min, self.reconnect_max)
        if self.link_id and self.version != "3.0":
            raise InvalidOption("link_id", self.link_id, "CMPP 2.0 has no LinkID; leave it empty or use 3.0")
        return self

    @property
    def version_octet(self) -> int:
        return _VERSIONS[self.version]


# ----- one request and one connection ---------------------------------------------------------------------


class _Link(_link.LoginLink):
    """One logged-in TCP connection to the ISMG, reconnected for the driver's whole life. The window and
    the Sequence_Id counter live as long as the link; the rest is reset on every reconnect."""

    def __init__(self, label: str, window: int, logger: Any) -> None:
        super().__init__(label, window, logger.bind(connection=label))
        self.terminating = False  # we sent TERMINATE: the ISMG closing the connection is expected

    def request(self, message: pdu.Pdu, version: int, timeout: float) -> tuple[int, _link.Request]:
        seq = self.next_sequence()
        return seq, self.track(seq, pdu.encode(message, sequence_id=seq, version=version), timeout)


def _frames(stream: trio.abc.Stream) -> _link.Frames:
    """Whole PDUs off a byte stream: a 12-octet header, then Total_Length - 12 more."""
    return _link.Frames(stream, pdu.HEADER_LENGTH, lambda h: pdu.decode_header(h).total_length, pdu.PduError)


# ----- the driver ---------------------------------------------------------------------------------------


class CmppChannel(ChannelDriver):
    """CMPP 2.0 / 3.0 SP driver. See the module docstring; its options are :class:`CmppOptions`."""

    driver = "cmpp"
    Options = CmppOptions
    settings: CmppOptions

    def __init__(self, name: str, options: Mapping[str, Any], events: ChannelEvents, data_dir: str) -> None:
        super().__init__(name, options, events, data_dir)
        s = self.settings
        self._version = s.version_octet
        # Never the password: log lines end up in shared log stores.
        self._log = log.bind(channel=name, sp_id=s.sp_id, version=s.version)
        self._links = [_Link(str(i), s.window, self._log) for i in range(1, s.connections + 1)]
        self._picker = _link.Picker()
        self._rng = random.Random()
        self._pacer = _link.Pacer(s.max_rate)
        self._running = False
        self._draining = False
        self._drain_started = trio.Event()
        self._in_flight = _link.InFlight()
        self.refused: ConnectRefused | None = None  # the last CONNECT refusal, until a login succeeds

    @classmethod
    def segmenter(cls, settings: DriverOptions) -> Segmenter | None:
        if not isinstance(settings, CmppOptions):
            raise TypeError(f"cmpp settings expected, got {type(settings).__name__}")
        return cn_text.CmppSegmenter(allow_gbk=settings.allow_gbk)

    # -- the driver interface -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._running:
            raise RuntimeError(f"cmpp channel {self.name!r} is already running")
        self._running = True
        s = self.settings
        self._log.info("cmpp channel starting", host=s.host, port=s.port, connections=s.connections)
        try:
            async with trio.open_nursery() as nursery:
                for link in self._links:
                    nursery.start_soon(self._maintain, link)
                nursery.start_soon(_link.expire_reply_parts, self.events, self.name, s.mo_timeout, self._log)
                # Started at once: the dispatcher waits for ``up`` itself, and an ISMG that is down must
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
        src_id = self._src_id(source)
        if isinstance(src_id, SubmitError):
            return [SubmitOutcome(error=src_id) for _ in segments]
        dest = destination.removeprefix("+")
        with self._in_flight:
            return await _link.send_in_order(
                segments, lambda seg: self._submit_segment(link, seg, src_id, dest)
            )

    async def drain(self) -> None:
        """Refuse new submits, let those in flight get their responses (at most ``response_timeout``),
        then TERMINATE every connection and close it. Reconnection stops for good."""
        self._draining = True
        self._drain_started.set()
        await self._in_flight.settle(self.settings.response_timeout)
        async with trio.open_nursery() as nursery:
            for link in self._links:
                nursery.start_soon(self._terminate, link)
        self._log.info("cmpp channel drained")

    # -- submit path ----------------------------------------------------------------------------------

    @property
    def problem(self) -> str | None:
        """The last CMPP_CONNECT refusal while no connection is logged in (e.g. authentication failed)."""
        if self.up or self.refused is None:
            return None
        return str(self.refused)

    def _link_down(self) -> SubmitError:
        if self.refused is not None:
            # The reason the link is down, where the operator reads the delivery's reason.
            return SubmitError(self.refused.status, f"LINK_DOWN: {self.refused}", retriable=True)
        return _link.LINK_DOWN

    def _src_id(self, source: str) -> str | SubmitError:
        """Src_Id: the source the core gives (the channel's service number and the delivery's
        extension). With ``service_code`` set it must start with it: an ISMG charges and routes replies
        by that number, and a Src_Id outside the SP's range is refused (or worse, billed to another SP)."""
        code = self.settings.service_code
        if code and not source.startswith(code):
            return SubmitError(
                0,
                f"source {source!r} does not start with the channel's service_code {code!r}; "
                "make the channel's service_number the CMPP access number",
                retriable=False,
            )
        if len(source) > 21:
            return SubmitError(0, f"source {source!r} is longer than Src_Id's 21 octets", retriable=False)
        return source

    def _submit_pdu(self, seg: OutboundSegment, src_id: str, dest: str) -> pdu.Submit:
        s = self.settings
        return pdu.Submit(
            pk_total=seg.total,
            pk_number=seg.seq,
            registered_delivery=s.registered_delivery,
            service_id=s.service_id,
            fee_user_type=s.fee_usertype,
            fee_terminal_id=s.fee_terminal_id,
            tp_udhi=1 if seg.udh else 0,
            msg_fmt=seg.data_coding,
            msg_src=s.msg_src or s.sp_id,
            fee_type=s.fee_type,
            fee_code=s.fee_code,
            src_id=src_id,
            dest_terminal_ids=(dest,),
            msg_content=seg.short_message,
            link_id=s.link_id,
        )

    async def _submit_segment(
        self, link: _Link, seg: OutboundSegment, src_id: str, dest: str
    ) -> SubmitOutcome:
        s = self.settings
        await self._pacer.wait()
        async with link.window:
            if not link.connected:  # the link dropped while this submit waited for a slot
                return SubmitOutcome(error=self._link_down())
            try:
                seq, req = link.request(
                    self._submit_pdu(seg, src_id, dest), self._version, s.response_timeout
                )
            except ValueError as e:
                # Nothing the ISMG could accept: a retry would fail the same way.
                return SubmitOutcome(error=SubmitError(0, f"cannot encode CMPP_SUBMIT: {e}", retriable=False))
            await link.answered(seq, req)
        return self._segment_outcome(link, req, seq)

    def _segment_outcome(self, link: _Link, req: _link.Request, seq: int) -> SubmitOutcome:
        if req.timed_out:
            link.log.warning(
                "no CMPP_SUBMIT_RESP after resends",
                seq=seq,
                resends=req.resends,
                timeout=self.settings.response_timeout,
            )
            return SubmitOutcome(error=_link.SUBMIT_TIMEOUT)
        if req.lost or not isinstance(req.response, pdu.SubmitResp):
            return SubmitOutcome(error=self._link_down())
        resp = req.response
        if resp.result == RESULT_OK:
            return SubmitOutcome(carrier_id=msgid.to_text(resp.msg_id))
        name = f"CMPP_SUBMIT_RESP {result_name(resp.result)}"
        if resp.result == RESULT_FLOW_CONTROL:
            return SubmitOutcome(error=SubmitError(resp.result, name, retriable=True, throttled=True))
        return SubmitOutcome(error=SubmitError(resp.result, name, retriable=False))

    # -- connections ----------------------------------------------------------------------------------

    def _update_up(self) -> None:
        up = any(link.connected for link in self._links)
        if up != self.up:
            self.up = up
            self._log.info("cmpp channel is up" if up else "cmpp channel is down")
            self.events.link_state(self.name, up)

    async def _maintain(self, link: _Link) -> None:
        """Connect, log in and serve one link; after each loss wait (exponential backoff, jitter) and redo."""
        s = self.settings
        backoff = _link.Backoff(s.reconnect_min, s.reconnect_max, self._rng)
        while not self._draining:
            try:
                lasted, refused = await self._session(link)
            except Exception:
                # A bug in this driver must cost one connection, not the channel (or the daemon).
                link.log.exception("cmpp session failed unexpectedly; reconnecting")
                lasted, refused = 0.0, None
            if self._draining:
                break
            # A refused login: retrying fast cannot help and may get the account locked; keep trying
            # slowly so that a fixed password at the ISMG is picked up without a restart.
            slow = refused is not None and refused.status in (CONNECT_AUTH_FAILED, CONNECT_BAD_SOURCE_ADDR)
            with trio.move_on_after(backoff.delay(lasted, slow=slow)):
                await self._drain_started.wait()

    async def _session(self, link: _Link) -> tuple[float, ConnectRefused | None]:
        """One connection's life: (seconds it was logged in, the refusal if CONNECT was refused)."""
        s = self.settings
        try:
            with trio.fail_after(s.response_timeout):
                stream = await trio.open_tcp_stream(s.host, s.port)
        except (OSError, trio.TooSlowError) as e:
            link.log.warning("cannot connect to the ISMG", host=s.host, port=s.port, error=str(e) or repr(e))
            return 0.0, None
        frames = _frames(stream)
        since: float | None = None
        link.closed = trio.Event()
        try:
            try:
                await self._connect(link, frames)
            except ConnectRefused as refused:
                self.refused = refused
                hint = {
                    CONNECT_AUTH_FAILED: "check the channel's sp_id and password",
                    CONNECT_BAD_SOURCE_ADDR: "check the channel's sp_id",
                    CONNECT_VERSION_TOO_HIGH: f"the ISMG speaks 0x{refused.ismg_version:02X}; set version",
                }.get(refused.status, "")
                link.log.error(str(refused), status=refused.status, hint=hint)
                return 0.0, refused
            except (*_LINK_ERRORS, trio.TooSlowError) as e:
                link.log.warning("CMPP_CONNECT failed", error=str(e) or repr(e))
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

    async def _connect(self, link: _Link, frames: _link.Frames) -> None:
        """Send CMPP_CONNECT and wait for its response; ConnectRefused for a non-zero Status."""
        s = self.settings
        timestamp = pdu.timestamp_of(datetime.now())
        request = pdu.connect_request(s.sp_id, s.password, timestamp=timestamp, version=self._version)
        seq = link.next_sequence()
        with trio.fail_after(s.response_timeout):
            await frames.stream.send_all(pdu.encode(request, sequence_id=seq, version=self._version))
            while True:
                raw = await frames.receive()
                if raw is None:
                    raise pdu.PduError("the ISMG closed the connection without answering CMPP_CONNECT")
                header = pdu.decode_header(raw)
                if header.command_id == CONNECT_RESP:
                    resp = pdu.decode(raw, version=self._version).pdu
                    assert isinstance(resp, pdu.ConnectResp)
                    if resp.status != CONNECT_OK:
                        raise ConnectRefused(resp.status, resp.version)
                    expected = pdu.authenticator_ismg(
                        resp.status, request.authenticator_source, s.password, version=self._version
                    )
                    if resp.authenticator_ismg != expected:
                        # Not fatal: some ISMGs compute it otherwise (gocmpp's stock server).
                        link.log.info("AuthenticatorISMG differs from the spec's; ignored")
                    return
                if header.command_id == ACTIVE_TEST:
                    await frames.stream.send_all(
                        pdu.encode(
                            pdu.ActiveTestResp(), sequence_id=header.sequence_id, version=self._version
                        )
                    )
                elif header.command_id == TERMINATE:
                    raise pdu.PduError("the ISMG sent CMPP_TERMINATE instead of CMPP_CONNECT_RESP")

    async def _serve(self, link: _Link, frames: _link.Frames) -> None:
        """Run the connection's reader, writer, keepalive and sweeper until one of them ends it."""
        link.out.clear()
        link.out_ready = trio.Event()
        link.last_rx = trio.current_time()
        link.terminating = False
        async with trio.open_nursery() as nursery:
            link.scope = nursery.cancel_scope
            if self._draining:  # drain() began while this link was logging in
                nursery.start_soon(self._terminate, link)
            link.connected = True
            self._update_up()
            nursery.start_soon(link.writer, frames.stream)
            nursery.start_soon(self._keepalive, link)
            nursery.start_soon(link.sweep, self.settings.resends, self.settings.response_timeout)
            await self._reader(link, frames, nursery)
            nursery.cancel_scope.cancel()

    async def _terminate(self, link: _Link) -> None:
        if not link.connected:
            return
        link.terminating = True
        _, req = link.request(pdu.Terminate(), self._version, self.settings.response_timeout)
        with trio.move_on_after(min(_TERMINATE_WAIT, self.settings.response_timeout)):
            await req.done.wait()
        if isinstance(req.response, pdu.TerminateResp):
            link.log.info("terminated")
        else:
            link.log.warning("no CMPP_TERMINATE_RESP from the ISMG; closing anyway")
        link.drop()
        with trio.move_on_after(_TERMINATE_WAIT):
            await link.closed.wait()

    # -- per-connection tasks -------------------------------------------------------------------------

    async def _keepalive(self, link: _Link) -> None:
        """CMPP_ACTIVE_TEST after ``active_test_interval`` without inbound traffic; when it gets no answer
        after its resends, the link is dropped."""
        s = self.settings

        def probe() -> _link.Request:
            return link.request(pdu.ActiveTest(), self._version, s.response_timeout)[1]

        await link.keepalive(s.active_test_interval, probe, "CMPP_ACTIVE_TEST_RESP")

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
                    if not link.terminating:
                        link.log.warning("the ISMG closed the connection")
                    return
                link.last_rx = trio.current_time()
                header = pdu.decode_header(raw)
                command_id, seq = header.command_id, header.sequence_id
                if command_id == DELIVER:
                    try:
                        deliver = pdu.decode(raw, version=self._version).pdu
                    except pdu.PduError as e:
                        msg_id = int.from_bytes(raw[12:20], "big") if len(raw) >= 20 else 0
                        link.log.warning("undecodable CMPP_DELIVER; answered Result 1", error=str(e), seq=seq)
                        link.send(self._deliver_resp(seq, msg_id, RESULT_BAD_STRUCTURE))
                        continue
                    assert isinstance(deliver, pdu.Deliver)
                    await (reports_in if deliver.is_report else replies_in).send((seq, deliver))
                elif command_id & RESPONSE:
                    self._on_response(link, raw, command_id, seq)
                elif command_id == ACTIVE_TEST:
                    link.send(pdu.encode(pdu.ActiveTestResp(), sequence_id=seq, version=self._version))
                elif command_id == TERMINATE:
                    link.log.info("the ISMG terminated the session; reconnecting")
                    # Straight to the socket, so the answer is out before the connection closes.
                    with trio.move_on_after(self.settings.response_timeout):
                        await frames.stream.send_all(
                            pdu.encode(pdu.TerminateResp(), sequence_id=seq, version=self._version)
                        )
                    return
                else:
                    # CMPP has no generic_nack; a request we do not serve (QUERY, CANCEL from an ISMG?) is
                    # logged and left unanswered.
                    link.log.warning("request not handled", command=command_name(command_id), seq=seq)
        except _LINK_ERRORS as e:
            link.log.warning("connection lost while reading", error=str(e) or repr(e))

    def _on_response(self, link: _Link, raw: bytes, command_id: int, seq: int) -> None:
        req = link.pending.pop(seq, None)
        if req is None:
            # Usually the answer to a resent request that was answered already, or one given up on.
            link.log.info("response to no outstanding request", command=command_name(command_id), seq=seq)
            return
        if command_id in (SUBMIT_RESP, ACTIVE_TEST_RESP, TERMINATE_RESP):
            req.response = pdu.decode(raw, version=self._version).pdu  # PduError drops the link
        req.done.set()

    def _deliver_resp(self, seq: int, msg_id: int, result: int) -> bytes:
        return pdu.encode(pdu.DeliverResp(msg_id, result), sequence_id=seq, version=self._version)

    # -- inbound: status reports and replies ------------------------------------------------------------

    async def _report_worker(
        self, link: _Link, reports: trio.MemoryReceiveChannel[tuple[int, pdu.Deliver]]
    ) -> None:
        """Store the connection's reports, all that arrived since the last store in one write, and answer
        each once stored."""
        async for first in reports:
            batch = _link.batch_of(first, reports)
            results = await self._store_reports(link, batch)
            for (seq, deliver), result in zip(batch, results, strict=True):
                link.send(self._deliver_resp(seq, deliver.msg_id, result))

    async def _store_reports(self, link: _Link, batch: Sequence[tuple[int, pdu.Deliver]]) -> list[int]:
        """Store status reports through the core; the Result to answer each DELIVER with."""
        results = [RESULT_OK] * len(batch)
        parsed: list[tuple[int, InboundReceipt]] = []
        for i, (_, deliver) in enumerate(batch):
            try:
                receipt = receipt_of(pdu.decode_report(deliver.msg_content))
            except (pdu.PduError, ValueError) as e:
                # Refusing it would make the ISMG re-send it forever; answer it and keep the evidence.
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
            results,
            busy=RESULT_FLOW_CONTROL,
            refused="could not store a status report; the ISMG will re-send it",
        )
        return results

    async def _reply_worker(
        self, link: _Link, replies: trio.MemoryReceiveChannel[tuple[int, pdu.Deliver]]
    ) -> None:
        async with replies:
            async for seq, deliver in replies:
                try:
                    result = await self._store_reply(link, deliver)
                except Exception:
                    link.log.exception("reply handling failed; refused so that the ISMG re-sends it")
                    result = RESULT_FLOW_CONTROL
                link.send(self._deliver_resp(seq, deliver.msg_id, result))

    async def _store_reply(self, link: _Link, deliver: pdu.Deliver) -> int:
        """Store one mobile-originated DELIVER (or one part of a long one) through the core; the Result
        to answer it with. What the store refuses is answered 8 (flow control): the ISMG sends it again."""
        message = reply_of(deliver, received_at=time.time())
        try:
            await _link.store_reply(self.events, self.name, message)
        except Exception as e:
            link.log.warning(
                "could not store a reply; the ISMG will re-send it",
                sender=deliver.src_terminal_id,
                error=str(e) or repr(e),
            )
            return RESULT_FLOW_CONTROL
        return RESULT_OK


# ----- reading a DELIVER ---------------------------------------------------------------------------------


def receipt_of(report: pdu.Report) -> InboundReceipt:
    """A status report as the core's receipt: the Msg_Id's stored text, the Stat as a state, the Stat
    itself kept as ``raw`` and, for a carrier code such as ``MK:0005`` or ``0005``, its number."""
    stat = report.stat.strip()
    status = _link.REPORT_STATS.get(stat.upper(), ReceiptStatus.UNDELIVERED)
    code = stat.rpartition(":")[2]
    error_code = (
        int(code) if code.isascii() and code.isdigit() and status != ReceiptStatus.DELIVERED else None
    )
    return InboundReceipt(msgid.to_text(report.msg_id), status, error_code=error_code, raw=stat)


def reply_of(deliver: pdu.Deliver, *, received_at: float) -> InboundReply | InboundReplyPart:
    """An MO DELIVER as a whole reply or a part of a long one; ``destination`` is Dest_Id, the number the
    user wrote to, so the core finds the extension in it. Never raises for what an ISMG can send: a
    malformed UDH or inconsistent counters make the DELIVER a reply of its own."""
    return cn_text.read_reply(
        deliver.src_terminal_id,
        deliver.dest_id,
        deliver.msg_content,
        udhi=deliver.tp_udhi,
        msg_fmt=deliver.msg_fmt,
        received_at=received_at,
    )
