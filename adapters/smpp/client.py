"""The SMPP 3.4 ESME driver (``smpp`` channel): binds to a carrier's SMSC over TCP and sends and receives SMS.

:class:`SmppChannel` keeps ``binds`` sessions open for the daemon's life, each a transceiver bind or a
transmitter + receiver pair, and reconnects each on its own with exponential backoff and jitter. Every
connection has a reader task (responses go to the submitter waiting on that sequence number; deliver_sm
goes to a bounded pool of handlers so a slow store never stops the acks of the others), a writer task
(PDUs queued in one scheduler tick leave in one ``send_all``) and a keepalive task (enquire_link when
the link has been quiet). ``submit`` sends one delivery's segments in order on the least-loaded bound
transmitter, holding at most ``window`` submit_sm outstanding per session. Receipts and mobile-originated
messages are acknowledged only after the core has stored them, so a crash loses nothing the SMSC thinks
was delivered; each part of a long reply is stored as it arrives (``ChannelEvents.reply_part``) and a
timer of the channel gives up on missing parts after ``mo_timeout``, from the store, so the driver holds
no part in memory. The hot PDUs go through :mod:`.fast`; binds, unbinds and the rest through smpplib
(:mod:`.pdu`).
"""

from __future__ import annotations

import collections
import dataclasses
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pydantic
import structlog
import trio

from .._link import Pacer
from ..base import (
    ChannelDriver,
    ChannelEvents,
    DriverOptions,
    InboundReceipt,
    InboundReplyPart,
    InvalidOption,
    OutboundSegment,
    SubmitDone,
    SubmitError,
    SubmitOutcome,
    option,
)
from . import constants, fast, mo, receipts, status
from .constants import (
    ALERT_NOTIFICATION,
    BIND_RECEIVER_RESP,
    BIND_TRANSCEIVER_RESP,
    BIND_TRANSMITTER_RESP,
    ENQUIRE_LINK,
    ENQUIRE_LINK_RESP,
    ESM_UDHI,
    ESME_RBINDFAIL,
    ESME_RINVBNDSTS,
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_RINVPASWD,
    ESME_RINVSYSID,
    ESME_ROK,
    ESME_RSYSERR,
    ESME_RX_T_APPN,
    GENERIC_NACK,
    REGISTERED_DELIVERY_FINAL,
    RESPONSE,
    UNBIND,
)
from .pdu import HEADER, PduError, PduStream, SequenceGenerator, generic_nack, make

__all__ = ["SmppChannel", "SmppOptions"]

log = structlog.get_logger("masd.smpp")

_BIND_PDU = {
    "transceiver": "bind_transceiver",
    "transmitter": "bind_transmitter",
    "receiver": "bind_receiver",
}
_BIND_RESP = {
    "transceiver": BIND_TRANSCEIVER_RESP,
    "transmitter": BIND_TRANSMITTER_RESP,
    "receiver": BIND_RECEIVER_RESP,
}

# Mobile-originated deliver_sm handled at once per connection. More wait in a backlog, and receipts wait
# for their task, so that the reader keeps reading (the submit_sm_resps behind them must not wait for a
# slow store); the SMSC's own window bounds the backlog in practice, and past _DELIVER_BACKLOG the reader
# stops reading and TCP pushes back.
_DELIVER_CONCURRENCY = 64
_DELIVER_BACKLOG = 10_000
_RECEIPT_BATCH = 1_000  # receipts stored in one write at most

_Address = tuple[int, int, str]  # TON, NPI, the digits or text, as submit_sm carries them
_STABLE_BIND = 10.0  # seconds a bind must last before a drop resets the reconnect backoff to its minimum
_UNBIND_WAIT = 2.0  # seconds to wait for unbind_resp on shutdown

# What a lost or garbled connection raises from a read or a write.
_LINK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, PduError)


_SECONDS = "a number of seconds greater than 0"
_BYTE = "an integer from 0 to 255"
_IDS = "one of 'auto', 'hex', 'decimal', 'as-is'"


def _text(max_len: int) -> str:
    return f"ASCII text of at most {max_len} characters"


# The SMPP C-octet strings have fixed maxima; smpplib would silently cut a longer value, and a cut password
# fails the bind with a misleading error.
_ASCII = r"^[\x01-\x7f]*$"


class SmppOptions(DriverOptions):
    """The ``smpp`` driver's options; see :class:`SmppChannel` and docs/smpp.md."""

    secret = frozenset({"password"})

    host: str = option("", _text(255), max_length=255, pattern=_ASCII)
    port: int = option(2775, "an integer from 1 to 65535", ge=1, le=65535)
    system_id: str = option("", _text(15), max_length=15, pattern=_ASCII)
    password: str = option("", _text(8), max_length=8, pattern=_ASCII)
    system_type: str = option("", _text(12), max_length=12, pattern=_ASCII)
    bind: Literal["transceiver", "tx+rx"] = option("transceiver", "one of 'transceiver', 'tx+rx'")
    binds: int = option(1, "an integer from 1 to 64", ge=1, le=64)
    window: int = option(100, "an integer from 1 to 10000", ge=1, le=10_000)
    response_timeout: float = option(10.0, _SECONDS, gt=0)
    enquire_link_interval: float = option(30.0, _SECONDS, gt=0)
    reconnect_min: float = option(1.0, _SECONDS, gt=0)
    reconnect_max: float = option(60.0, _SECONDS, gt=0)
    source_ton: int | None = option(None, _BYTE, ge=0, le=255)  # None: guess per source address
    source_npi: int | None = option(None, _BYTE, ge=0, le=255)
    dest_ton: int | None = option(None, _BYTE, ge=0, le=255)
    dest_npi: int | None = option(None, _BYTE, ge=0, le=255)
    registered_delivery: int = option(REGISTERED_DELIVERY_FINAL, _BYTE, ge=0, le=255)
    id_format: receipts.IdFormat = option("auto", _IDS)
    receipt_ids: receipts.IdFormat = option("as-is", _IDS)
    mo_timeout: float = option(60.0, _SECONDS, gt=0)
    max_rate: float | None = option(None, "submits per second greater than 0, or unset", gt=0)
    address_range: str = option("", _text(40), max_length=40, pattern=_ASCII)
    interface_version: int = option(0x34, _BYTE, ge=0, le=255)

    @pydantic.model_validator(mode="after")
    def _together(self) -> SmppOptions:
        for key, value in (("host", self.host), ("system_id", self.system_id)):
            if not value:
                raise InvalidOption(key, value, "required; expected a non-empty string")
        if self.reconnect_max < self.reconnect_min:
            raise InvalidOption(
                "reconnect_max", self.reconnect_max, f"must be >= reconnect_min ({self.reconnect_min:g})"
            )
        return self


class _Waiter:
    """One request awaiting its response: resolved by the reader, timed out by the connection's sweeper
    (:meth:`SmppChannel._expire_requests`), or marked lost when the link drops.

    The waiting task is parked and rescheduled directly: an Event plus a cancel scope per request were a
    large share of the driver's CPU at a few thousand submits a second."""

    __slots__ = (
        "_task",
        "command_id",
        "deadline",
        "done",
        "lost",
        "message_id",
        "on_done",
        "status",
        "timed_out",
    )

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline  # trio time after which the sweeper gives up on the response
        self.on_done: Callable[[], None] | None = None  # called instead of waking a task (submit_nowait)
        self.done = False
        self.lost = False
        self.timed_out = False
        self.command_id = 0
        self.status = 0
        self.message_id = ""
        self._task: trio.lowlevel.Task | None = None

    def resolve(self) -> None:
        self.done = True
        if self.on_done is not None:
            self.on_done()
            return
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)

    async def wait(self) -> None:
        """Until resolved. A cancelled wait leaves the waiter unresolved."""
        if self.done:
            await trio.lowlevel.checkpoint()
            return
        self._task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED


class _Link:
    """One bind over one TCP connection, reconnected for the driver's whole life.

    Fields that describe a connection (``bound``, ``pending``, the output buffer, ``scope``) are reset on
    every reconnect; the window semaphore and sequence generator live as long as the link.
    """

    def __init__(self, label: str, mode: str, window: int, logger: Any) -> None:
        self.label = label
        self.mode = mode  # transceiver | transmitter | receiver
        self.transmits = mode != "receiver"
        self.log = logger.bind(session=label, bind=mode)
        self.window = trio.Semaphore(window)
        self.seq = SequenceGenerator()
        self.bound = False
        self.pending: dict[int, _Waiter] = {}
        self.outstanding = 0  # submit_sm sent and not answered (what the window limits)
        self.out = bytearray()
        self.out_ready = trio.Event()
        self.scope: trio.CancelScope | None = None
        self.last_rx = 0.0
        self.closed = trio.Event()  # set whenever no connection is open
        self.unbinding = False  # we sent unbind: the SMSC closing the connection is expected
        self.closed.set()

    def send(self, data: bytes) -> None:
        """Queue a PDU; the writer sends everything queued in one go."""
        self.out += data
        self.out_ready.set()

    def request(self, data: bytes, seq: int, timeout: float) -> _Waiter:
        """Queue a request; its waiter times out ``timeout`` seconds from now. Every request of a link uses
        the same timeout, so ``pending`` (insertion-ordered) is also ordered by deadline."""
        waiter = _Waiter(trio.current_time() + timeout)
        self.pending[seq] = waiter
        self.send(data)
        return waiter

    def drop(self) -> None:
        if self.scope is not None:
            self.scope.cancel()

    def fail_pending(self) -> None:
        pending, self.pending = self.pending, {}
        for waiter in pending.values():
            waiter.lost = True
            waiter.resolve()


class _Inbox:
    """A connection's deliver_sm handling. Receipts wait in ``receipts`` for the connection's receipt task,
    which stores everything that arrived meanwhile in one write; mobile-originated messages go to a pool
    of workers, and wait in ``backlog`` while every worker is busy."""

    __slots__ = ("active", "backlog", "receipts", "receipts_ready", "room")

    def __init__(self) -> None:
        self.active = 0
        self.backlog: collections.deque[fast.DeliverSm] = collections.deque()
        self.receipts: list[fast.DeliverSm] = []
        self.receipts_ready = trio.Event()  # set while ``receipts`` is not empty
        self.room = trio.Event()  # set when ``backlog`` or ``receipts`` shrinks

    def waiting(self) -> int:
        return len(self.backlog) + len(self.receipts)


class SmppChannel(ChannelDriver):
    """SMPP 3.4 client driver. See the module docstring; its options are :class:`SmppOptions`."""

    driver = "smpp"
    Options = SmppOptions
    settings: SmppOptions

    def __init__(self, name: str, options: Mapping[str, Any], events: ChannelEvents, data_dir: str) -> None:
        super().__init__(name, options, events, data_dir)
        s = self.settings
        # Never the password: log lines end up in shared log stores.
        self._log = log.bind(channel=name, system_id=s.system_id)
        links: list[_Link] = []
        for i in range(1, s.binds + 1):
            if s.bind == "transceiver":
                links.append(_Link(str(i), "transceiver", s.window, self._log))
            else:
                links.append(_Link(f"{i}-tx", "transmitter", s.window, self._log))
                links.append(_Link(f"{i}-rx", "receiver", s.window, self._log))
        self._links = links
        self._transmitters = [link for link in links if link.transmits]
        self._rr = 0
        self._rng = random.Random()
        self._pacer = Pacer(s.max_rate)
        self._running = False
        self._draining = False
        self._drain_started = trio.Event()
        self._in_flight = 0
        self._idle: trio.Event | None = None

    # -- the driver interface -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._running:
            raise RuntimeError(f"smpp channel {self.name!r} is already running")
        self._running = True
        self._log.info(
            "smpp channel starting",
            host=self.settings.host,
            port=self.settings.port,
            bind=self.settings.bind,
            binds=self.settings.binds,
        )
        try:
            async with trio.open_nursery() as nursery:
                for link in self._links:
                    nursery.start_soon(self._maintain, link)
                nursery.start_soon(self._expire_mo)
                # Started at once: the dispatcher waits for ``up`` itself, and a carrier that is down must
                # not hold up the daemon's start.
                task_status.started()
        finally:
            self._running = False
            for link in self._links:
                link.bound = False
            self._update_up()

    async def submit(
        self, destination: str, source: str, segments: Sequence[OutboundSegment]
    ) -> list[SubmitOutcome]:
        link = None if self._draining else self._pick()
        if link is None:
            return [SubmitOutcome(error=status.link_down_error()) for _ in segments]
        src = self._source_address(source)
        dst = self._destination_address(destination)
        self._in_flight += 1
        try:
            outcomes: list[SubmitOutcome] = []
            for seg in segments:
                outcome = await self._submit_segment(link, seg, src, dst)
                outcomes.append(outcome)
                if outcome.error is not None:
                    # The core retries the whole delivery; sending the rest would only make orphan parts.
                    outcomes.extend(outcome for _ in range(len(segments) - len(outcomes)))
                    break
            return outcomes
        finally:
            self._submit_ended()

    def submit_nowait(
        self,
        destination: str,
        source: str,
        segments: Sequence[OutboundSegment],
        done: SubmitDone,
    ) -> bool:
        """``submit`` for a one-segment delivery that can go without waiting for anything (a bound link
        with a free window slot, no ``max_rate``): queue its submit_sm and return True; ``done`` gets the
        outcomes ``submit`` would have returned, from the task that sees the response, the timeout or the
        lost link. False: nothing was sent, call ``submit``. The dispatcher uses this to spare a task per
        delivery, which at thousands a second is a noticeable share of the CPU."""
        if len(segments) != 1 or self._draining or self._pacer.interval:
            return False
        link = self._pick()
        if link is None:
            return False
        try:
            link.window.acquire_nowait()
        except trio.WouldBlock:
            return False
        seq = link.seq.next_sequence()
        try:
            data = self._encode_segment(
                seq, segments[0], self._source_address(source), self._destination_address(destination)
            )
        except ValueError:
            link.window.release()
            return False  # submit answers it with the reason
        waiter = link.request(data, seq, self.settings.response_timeout)
        link.outstanding += 1
        self._in_flight += 1

        def answered() -> None:
            link.outstanding -= 1
            link.window.release()
            self._submit_ended()
            try:
                done([self._segment_outcome(link, waiter, seq)])
            except Exception:
                # The caller's bug must not take the connection (this runs in its reader) down with it.
                link.log.exception("submit_nowait callback failed", seq=seq)

        waiter.on_done = answered
        return True

    def _submit_ended(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def drain(self) -> None:
        """Refuse new submits, let those in flight get their responses (at most ``response_timeout``),
        then unbind every session and close it. Reconnection stops for good."""
        self._draining = True
        self._drain_started.set()
        with trio.move_on_after(self.settings.response_timeout):
            while self._in_flight:
                self._idle = trio.Event()
                await self._idle.wait()
        self._idle = None
        async with trio.open_nursery() as nursery:
            for link in self._links:
                nursery.start_soon(self._unbind, link)
        self._log.info("smpp channel drained")

    # -- sessions -------------------------------------------------------------------------------------

    def _update_up(self) -> None:
        up = any(link.bound for link in self._transmitters)
        if up != self.up:
            self.up = up
            self._log.info("smpp channel is up" if up else "smpp channel is down")
            self.events.link_state(self.name, up)

    async def _maintain(self, link: _Link) -> None:
        """Connect, bind and serve one link; after each loss wait (exponential backoff, jitter) and redo."""
        s = self.settings
        backoff = s.reconnect_min
        while not self._draining:
            try:
                bound_for, refused = await self._session(link)
            except Exception:
                # A bug in this driver must cost one connection, not the channel (or the daemon).
                link.log.exception("smpp session failed unexpectedly; reconnecting")
                bound_for, refused = 0.0, None
            if self._draining:
                break
            if bound_for >= _STABLE_BIND:
                backoff = s.reconnect_min
            if refused in (ESME_RINVPASWD, ESME_RINVSYSID):
                # Retrying fast cannot help and may get the account locked; keep trying slowly so a fixed
                # password on the carrier's side is picked up without a restart.
                delay = s.reconnect_max
                link.log.error(
                    "bind refused: the SMSC rejected system_id/password; check the channel's credentials",
                    status=status.name(refused),
                    retry_in=round(delay, 1),
                )
            else:
                delay = backoff
                backoff = min(backoff * 2, s.reconnect_max)
            # Jitter keeps many sessions (or many nodes) from reconnecting in lockstep after an outage.
            delay *= self._rng.uniform(0.5, 1.0)
            with trio.move_on_after(delay):
                await self._drain_started.wait()

    async def _session(self, link: _Link) -> tuple[float, int | None]:
        """One connection's life. Returns (seconds it was bound, bind status if the bind was refused)."""
        s = self.settings
        try:
            with trio.fail_after(s.response_timeout):
                stream = await trio.open_tcp_stream(s.host, s.port)
        except (OSError, trio.TooSlowError) as e:
            link.log.warning("cannot connect to the SMSC", host=s.host, port=s.port, error=str(e) or repr(e))
            return 0.0, None
        pdus = PduStream(stream)
        bound_at: float | None = None
        link.closed = trio.Event()
        try:
            try:
                bind_status = await self._bind(link, pdus)
            except (*_LINK_ERRORS, trio.TooSlowError) as e:
                link.log.warning("bind failed", error=str(e) or repr(e))
                return 0.0, None
            if bind_status != ESME_ROK:
                if bind_status not in (ESME_RINVPASWD, ESME_RINVSYSID):
                    link.log.warning("bind refused", status=status.name(bind_status))
                return 0.0, bind_status
            bound_at = trio.current_time()
            link.log.info("bound", host=s.host, port=s.port)
            await self._serve(link, pdus)
            return trio.current_time() - bound_at, None
        finally:
            was_bound = link.bound
            link.bound = False
            link.scope = None
            link.out.clear()
            link.fail_pending()
            if was_bound:
                self._update_up()
            if bound_at is not None:
                link.log.info("connection closed", bound_for=round(trio.current_time() - bound_at, 3))
            await trio.aclose_forcefully(stream)
            link.closed.set()

    async def _bind(self, link: _Link, pdus: PduStream) -> int:
        """Send the bind and wait for its response; the bind status (0 = bound)."""
        s = self.settings
        seq = link.seq.next_sequence()
        pdu = make(
            _BIND_PDU[link.mode],
            seq,
            system_id=s.system_id,
            password=s.password,
            system_type=s.system_type,
            interface_version=s.interface_version,
            addr_ton=0,
            addr_npi=0,
            address_range=s.address_range,
        )
        expected = _BIND_RESP[link.mode]
        with trio.fail_after(s.response_timeout):
            await pdus.send_raw(pdu.generate())
            while True:
                raw = await pdus.receive_raw()
                if raw is None:
                    raise PduError("the SMSC closed the connection without answering the bind")
                _, command_id, command_status, rseq = HEADER.unpack_from(raw)
                if rseq == seq and command_id in (expected, GENERIC_NACK):
                    if command_id == GENERIC_NACK and not command_status:
                        return ESME_RBINDFAIL  # a nack must carry an error; treat a bare one as a refusal
                    return int(command_status)
                if command_id == ENQUIRE_LINK:
                    await pdus.send_raw(HEADER.pack(16, ENQUIRE_LINK_RESP, 0, rseq))
                elif not command_id & RESPONSE:
                    await pdus.send_raw(generic_nack(rseq, ESME_RINVBNDSTS))

    async def _serve(self, link: _Link, pdus: PduStream) -> None:
        """Run the connection's reader, writer and keepalive until one of them ends it."""
        link.out.clear()
        link.out_ready = trio.Event()
        link.last_rx = trio.current_time()
        link.unbinding = False
        async with trio.open_nursery() as nursery:
            link.scope = nursery.cancel_scope
            if self._draining:  # drain() began while this link was binding
                nursery.start_soon(self._unbind, link)
            link.bound = True
            self._update_up()
            nursery.start_soon(self._writer, link, pdus)
            nursery.start_soon(self._keepalive, link)
            nursery.start_soon(self._expire_requests, link)
            await self._reader(link, pdus, nursery)
            nursery.cancel_scope.cancel()

    async def _unbind(self, link: _Link) -> None:
        if not link.bound:
            return
        seq = link.seq.next_sequence()
        link.unbinding = True
        waiter = link.request(make("unbind", seq).generate(), seq, self.settings.response_timeout)
        with trio.move_on_after(min(_UNBIND_WAIT, self.settings.response_timeout)):
            await waiter.wait()
        if waiter.done and not waiter.lost and not waiter.timed_out:
            link.log.info("unbound")
        else:
            link.log.warning("no unbind_resp from the SMSC; closing anyway")
        link.drop()
        with trio.move_on_after(_UNBIND_WAIT):
            await link.closed.wait()

    # -- per-connection tasks -------------------------------------------------------------------------

    async def _writer(self, link: _Link, pdus: PduStream) -> None:
        try:
            while True:
                if not link.out:
                    link.out_ready = trio.Event()
                    await link.out_ready.wait()
                    continue
                # Let every task that is ready to run queue its PDU first: one send_all (one syscall)
                # then carries them all instead of one each.
                await trio.lowlevel.checkpoint()
                # Hand over the whole buffer: under load one send_all carries many PDUs.
                data, link.out = link.out, bytearray()
                await pdus.send_raw(bytes(data))
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            link.log.warning("connection lost while sending", error=str(e) or repr(e))
            link.drop()

    async def _keepalive(self, link: _Link) -> None:
        """enquire_link after ``enquire_link_interval`` without inbound traffic; no answer drops the link."""
        s = self.settings
        while True:
            due = link.last_rx + s.enquire_link_interval
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            seq = link.seq.next_sequence()
            waiter = link.request(HEADER.pack(16, ENQUIRE_LINK, 0, seq), seq, s.response_timeout)
            await waiter.wait()
            if waiter.timed_out:
                link.log.warning("no enquire_link_resp; dropping the connection", timeout=s.response_timeout)
                link.drop()
                return

    async def _expire_requests(self, link: _Link) -> None:
        """Time out requests that got no response within ``response_timeout``: one task per connection
        rather than a cancel scope per request. ``pending`` is ordered by deadline, so each pass looks
        only at the expired requests and the first live one, whose deadline is when to look again."""
        timeout = self.settings.response_timeout
        while True:
            now = trio.current_time()
            due = now + timeout  # nothing pending: whatever is sent next is due no earlier than this
            expired: list[int] = []
            for seq, waiter in link.pending.items():
                if waiter.deadline > now:
                    due = waiter.deadline
                    break
                expired.append(seq)
            for seq in expired:
                waiter = link.pending.pop(seq)
                waiter.timed_out = True
                waiter.resolve()
            await trio.sleep_until(due)

    async def _reader(self, link: _Link, pdus: PduStream, nursery: trio.Nursery) -> None:
        inbox = _Inbox()
        nursery.start_soon(self._receipt_worker, link, inbox)
        try:
            while True:
                raw = await pdus.receive_raw()
                if raw is None:
                    if not link.unbinding:
                        link.log.warning("the SMSC closed the connection")
                    return
                link.last_rx = trio.current_time()
                _, command_id, command_status, seq = HEADER.unpack_from(raw)
                if command_id & RESPONSE:
                    self._on_response(link, raw, command_id, command_status, seq)
                elif command_id == constants.DELIVER_SM:
                    try:
                        sm = fast.decode_sm(raw)
                    except PduError as e:
                        link.log.warning(
                            "undecodable deliver_sm; answered with generic_nack", error=str(e), seq=seq
                        )
                        link.send(generic_nack(seq, ESME_RINVCMDLEN))
                        continue
                    if receipts.is_receipt(sm.esm_class):
                        inbox.receipts.append(sm)
                        inbox.receipts_ready.set()
                    elif inbox.active < _DELIVER_CONCURRENCY:
                        inbox.active += 1
                        nursery.start_soon(self._deliver_worker, link, sm, inbox)
                    else:
                        inbox.backlog.append(sm)
                    while inbox.waiting() >= _DELIVER_BACKLOG:
                        inbox.room = trio.Event()
                        await inbox.room.wait()
                elif command_id == ENQUIRE_LINK:
                    link.send(HEADER.pack(16, ENQUIRE_LINK_RESP, 0, seq))
                elif command_id == UNBIND:
                    link.log.info("the SMSC unbound; reconnecting")
                    # Straight to the socket (the stream's lock orders it after any send in progress), so
                    # the answer is out before the connection closes.
                    with trio.move_on_after(self.settings.response_timeout):
                        await pdus.send_raw(make("unbind_resp", seq).generate())
                    return
                elif command_id == ALERT_NOTIFICATION:
                    pass  # no response is defined for it (§4.12.1)
                else:
                    link.send(generic_nack(seq, ESME_RINVCMDID))
        except _LINK_ERRORS as e:
            link.log.warning("connection lost while reading", error=str(e) or repr(e))

    def _on_response(self, link: _Link, raw: bytes, command_id: int, command_status: int, seq: int) -> None:
        waiter = link.pending.pop(seq, None)
        if waiter is None:
            # Usually the answer to a submit that already timed out; the core has retried it.
            link.log.info("response to no outstanding request", command_id=f"0x{command_id:08X}", seq=seq)
            return
        waiter.command_id = command_id
        waiter.status = command_status
        if command_id == constants.SUBMIT_SM_RESP and command_status == 0:
            try:
                waiter.message_id = fast.decode_resp(raw)[3]
            except PduError:
                waiter.message_id = ""
        waiter.resolve()

    # -- submit path ----------------------------------------------------------------------------------

    def _pick(self) -> _Link | None:
        """The bound transmitter with the fewest outstanding submits; ties go round robin."""
        best: _Link | None = None
        n = len(self._transmitters)
        self._rr = (self._rr + 1) % n
        for i in range(n):
            link = self._transmitters[(self._rr + i) % n]
            if link.bound and (best is None or link.outstanding < best.outstanding):
                best = link
        return best

    def _source_address(self, source: str) -> _Address:
        s = self.settings
        if source.startswith("+"):
            guess = (1, 1)  # international, E.164
            source = source[1:]
        elif source.isdigit():
            guess = (0, 0)  # unknown: a service number / short code as the carrier assigned it
        else:
            guess = (5, 0)  # alphanumeric sender id
        ton = guess[0] if s.source_ton is None else s.source_ton
        npi = guess[1] if s.source_npi is None else s.source_npi
        return ton, npi, source

    def _destination_address(self, destination: str) -> _Address:
        # masd stores mainland mobiles as 11 national digits and other numbers as +E.164: the first go
        # as TON unknown / NPI ISDN, the second as international; either can be fixed by configuration.
        s = self.settings
        guess = (1, 1) if destination.startswith("+") else (0, 1)
        ton = guess[0] if s.dest_ton is None else s.dest_ton
        npi = guess[1] if s.dest_npi is None else s.dest_npi
        return ton, npi, destination.removeprefix("+")

    async def _submit_segment(
        self, link: _Link, seg: OutboundSegment, src: _Address, dst: _Address
    ) -> SubmitOutcome:
        await self._pacer.wait()
        window = link.window
        try:
            window.acquire_nowait()  # the usual case: no checkpoint, the response wait below is one
        except trio.WouldBlock:
            await window.acquire()
        try:
            if not link.bound:  # the link dropped while this submit waited for a slot
                return SubmitOutcome(error=status.link_down_error())
            seq = link.seq.next_sequence()
            try:
                data = self._encode_segment(seq, seg, src, dst)
            except ValueError as e:
                # Nothing the carrier could accept: a retry would fail the same way.
                return SubmitOutcome(error=SubmitError(0, f"cannot encode submit_sm: {e}", retriable=False))
            waiter = link.request(data, seq, self.settings.response_timeout)
            link.outstanding += 1
            try:
                await waiter.wait()
            finally:
                link.outstanding -= 1
                if not waiter.done:  # cancelled
                    link.pending.pop(seq, None)
        finally:
            window.release()
        return self._segment_outcome(link, waiter, seq)

    def _encode_segment(self, seq: int, seg: OutboundSegment, src: _Address, dst: _Address) -> bytes:
        """The submit_sm for one segment; ValueError if a field cannot be encoded."""
        src_ton, src_npi, src_addr = src
        dst_ton, dst_npi, dst_addr = dst
        tlvs: dict[int, bytes] | None = None
        short_message = seg.short_message
        if seg.message_payload is not None:
            tlvs = {constants.MESSAGE_PAYLOAD: seg.message_payload}
            short_message = b""
        elif seg.sar is not None:
            ref, total, part = seg.sar
            tlvs = {
                constants.SAR_MSG_REF_NUM: (ref & 0xFFFF).to_bytes(2, "big"),
                constants.SAR_TOTAL_SEGMENTS: bytes((total,)),
                constants.SAR_SEGMENT_SEQNUM: bytes((part,)),
            }
        return fast.encode_submit_sm(
            seq,
            source_addr=src_addr,
            destination_addr=dst_addr,
            short_message=short_message,
            esm_class=ESM_UDHI if seg.udh else 0x00,
            data_coding=seg.data_coding,
            registered_delivery=self.settings.registered_delivery,
            source_addr_ton=src_ton,
            source_addr_npi=src_npi,
            dest_addr_ton=dst_ton,
            dest_addr_npi=dst_npi,
            tlvs=tlvs,
        )

    def _segment_outcome(self, link: _Link, waiter: _Waiter, seq: int) -> SubmitOutcome:
        """What a resolved submit_sm waiter means for its segment."""
        s = self.settings
        if waiter.timed_out:
            link.log.warning("no submit_sm_resp in time", seq=seq, timeout=s.response_timeout)
            return SubmitOutcome(error=status.timeout_error())
        if waiter.lost:
            return SubmitOutcome(error=status.link_down_error())
        if waiter.status == 0 and waiter.command_id == constants.SUBMIT_SM_RESP:
            return SubmitOutcome(carrier_id=receipts.canonical_id(waiter.message_id, s.id_format))
        if waiter.status == 0:
            # A generic_nack that carries no error: not a success, and no code to judge it by.
            return SubmitOutcome(error=SubmitError(0, "GENERIC_NACK", retriable=True))
        error = status.classify(waiter.status)
        if error.rebind:
            link.log.warning("the SMSC asked for a rebind; reconnecting", status=error.name)
            link.drop()
        return SubmitOutcome(error=error)

    # -- inbound: receipts and mobile-originated messages ---------------------------------------------

    async def _receipt_worker(self, link: _Link, inbox: _Inbox) -> None:
        """Store the connection's receipts, all that arrived since the last store in one write, and
        acknowledge each once stored. One write for many saves the core a task switch, a queue entry and
        a wake-up per receipt."""
        while True:
            await inbox.receipts_ready.wait()
            batch = inbox.receipts[:_RECEIPT_BATCH]
            del inbox.receipts[:_RECEIPT_BATCH]
            if not inbox.receipts:
                inbox.receipts_ready = trio.Event()
            inbox.room.set()
            answers = await self._store_receipts(link, batch)
            for sm, answer in zip(batch, answers, strict=True):
                link.send(fast.encode_resp(constants.DELIVER_SM_RESP, sm.sequence, answer))

    async def _store_receipts(self, link: _Link, batch: Sequence[fast.DeliverSm]) -> list[int]:
        """Store receipt-bearing deliver_sm through the core; the command_status to answer each with."""
        answers = [ESME_ROK] * len(batch)
        parsed: list[tuple[int, InboundReceipt]] = []
        for i, sm in enumerate(batch):
            try:
                receipt = self._parse_receipt(sm)
            except Exception:
                receipt = None
            if receipt is None:
                # Refusing it would make the SMSC re-send it forever; acknowledge and keep the evidence.
                link.log.warning(
                    "receipt not understood; acknowledged and dropped",
                    short_message=sm.short_message.decode("latin-1"),
                    tlvs={f"0x{k:04X}": v.hex() for k, v in sm.tlvs.items()},
                )
            else:
                parsed.append((i, receipt))
        if not parsed:
            return answers
        if len(parsed) > 1:
            try:
                await self.events.receipt_batch(self.name, [receipt for _, receipt in parsed])
                return answers
            except Exception as e:
                # Perhaps one receipt the store cannot take: store each on its own below, so that only
                # that one is refused (and re-sent by the SMSC).
                link.log.info(
                    "could not store receipts together; storing each alone", error=str(e) or repr(e)
                )

        async def store_one(i: int, receipt: InboundReceipt) -> None:
            try:
                await self.events.receipt(self.name, receipt)
            except Exception as e:
                link.log.warning(
                    "could not store a receipt; the SMSC will re-send it",
                    carrier_id=receipt.carrier_id,
                    error=str(e) or repr(e),
                )
                answers[i] = ESME_RX_T_APPN

        if len(parsed) == 1:
            await store_one(*parsed[0])
        else:
            async with trio.open_nursery() as nursery:
                for i, receipt in parsed:
                    nursery.start_soon(store_one, i, receipt)
        return answers

    async def _deliver_worker(self, link: _Link, sm: fast.DeliverSm, inbox: _Inbox) -> None:
        """Handle this mobile-originated deliver_sm, then whatever queued up behind the busy workers."""
        try:
            while True:
                try:
                    answer = await self._handle_reply(link, sm)
                except Exception:
                    link.log.exception("deliver_sm handling failed; refused so that the SMSC re-sends it")
                    answer = ESME_RSYSERR
                link.send(fast.encode_resp(constants.DELIVER_SM_RESP, sm.sequence, answer))
                if not inbox.backlog:
                    return
                sm = inbox.backlog.popleft()
                inbox.room.set()
        finally:
            inbox.active -= 1

    async def _handle_reply(self, link: _Link, sm: fast.DeliverSm) -> int:
        """Store one mobile-originated deliver_sm through the core; the command_status to answer it with.

        A part of a long reply is stored as a part, so its deliver_sm_resp, like a whole reply's, says
        that it is durably stored; the core joins the parts once the last one is in. Whatever the store
        refuses is answered ESME_RX_T_APPN, and the SMSC sends it again."""
        sender = _address(sm.source_addr, sm.source_addr_ton)
        try:
            mo_message = mo.read_mo(
                sender=sender,
                destination=sm.destination_addr.decode("latin-1"),
                data_coding=sm.data_coding,
                short_message=sm.short_message,
                esm_class=sm.esm_class,
                tlvs=sm.tlvs,
                received_at=time.time(),
            )
        except Exception:
            link.log.exception("could not decode a mobile-originated message", sender=sender)
            return ESME_RSYSERR
        try:
            if isinstance(mo_message, InboundReplyPart):
                await self.events.reply_part(self.name, mo_message)
            else:
                await self.events.reply(self.name, mo_message)
        except Exception as e:
            link.log.warning(
                "could not store a reply; the SMSC will re-send it", sender=sender, error=str(e) or repr(e)
            )
            return ESME_RX_T_APPN
        return ESME_ROK

    def _parse_receipt(self, sm: fast.SubmitSm) -> InboundReceipt | None:
        """The receipt, its id in the form the submit_sm_resp ids were stored under.

        ``receipt_ids`` names the base of the id in the receipt *text* when an SMSC writes it differently
        from its submit_sm_resp (the simulated SMSC's ``receipt_text_id="decimal"``); the
        receipted_message_id TLV is by definition the submit_sm_resp's id, so it is never converted."""
        s = self.settings
        tlv_id = sm.tlvs.get(constants.RECEIPTED_MESSAGE_ID, b"").split(b"\0", 1)[0].strip()
        if s.receipt_ids == "as-is" or tlv_id:
            return receipts.parse_receipt(sm, id_format=s.id_format)
        receipt = receipts.parse_receipt(sm, id_format="as-is")
        if receipt is None:
            return None
        base = 16 if s.receipt_ids == "hex" else 10
        try:
            value = int(receipt.carrier_id, base)
        except ValueError:
            return receipt  # not a number in the declared base: keep it, a wrong guess loses nothing more
        if s.id_format == "decimal" or (s.id_format in ("auto", "as-is") and base == 16):
            converted = str(value)
        else:
            converted = format(value, "x")
        return dataclasses.replace(receipt, carrier_id=receipts.canonical_id(converted, s.id_format))

    async def _expire_mo(self) -> None:
        """Give up on missing parts: every tick, the core stores, with their gaps marked, the long replies
        of this channel whose first part came more than ``mo_timeout`` ago, wherever their parts were
        received (before a restart, on another bind or node). A failure is retried at the next tick."""
        timeout = self.settings.mo_timeout
        tick = min(1.0, timeout / 4)
        while True:
            await trio.sleep(tick)
            try:
                await self.events.expire_reply_parts(self.name, time.time() - timeout)
            except Exception as e:
                self._log.warning(
                    "could not hand over incomplete replies; will retry", error=str(e) or repr(e)
                )


def _address(raw: bytes, ton: int) -> str:
    """A sender as the core expects it: E.164 with ``+`` when the SMSC says the number is international."""
    text = raw.decode("latin-1")
    if ton == 1 and text.isdigit():
        return "+" + text
    return text
