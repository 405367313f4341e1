"""The connection machinery the drivers for the Chinese carriers' gateways (``cmpp``, ``sgip``, ``smgp``)
share: their protocols differ in layout and words, not in how a link is kept.

- :class:`Request`, :class:`Link`: a request waits for the response that names it (by Sequence_Id,
  SequenceID or Sequence Number: the key); a link queues PDUs in an outbox that its writer sends in one
  ``send_all`` a scheduler tick, and its sweeper re-sends a request left unanswered, the same octets
  under the same key, then gives up on it. :class:`LoginLink` adds what CMPP and SMGP have and SGIP has
  not: a 32-bit sequence counter and a keepalive.
- :class:`Frames`: whole length-prefixed PDUs off a byte stream.
- :class:`Backoff`, :class:`Pacer`, :class:`Picker`, :class:`InFlight`, :func:`send_in_order`: reconnect
  delays with jitter, spacing submits at ``max_rate``, the link with the fewest outstanding submits, the
  submits a drain waits for, and a delivery's segments sent in order until one fails.
- :func:`batch_of`, :func:`store_receipts`, :func:`store_reply`, :func:`expire_reply_parts`: status
  reports stored many in one write (each alone when that fails), replies and their parts handed to the
  core, and the timer that gives up on missing parts.

The words a driver logs and answers with stay the driver's: they are passed in.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import trio

from ._codec import PduError
from .base import (
    ChannelEvents,
    InboundReceipt,
    InboundReply,
    InboundReplyPart,
    ReceiptStatus,
    SubmitError,
    SubmitOutcome,
)

__all__ = [
    "DELIVER_BACKLOG",
    "LINK_DOWN",
    "RECEIPT_BATCH",
    "REPLY_WORKERS",
    "REPORT_STATS",
    "SEND_ERRORS",
    "SUBMIT_TIMEOUT",
    "Backoff",
    "Frames",
    "InFlight",
    "Link",
    "LoginLink",
    "Pacer",
    "Picker",
    "Request",
    "batch_of",
    "expire_reply_parts",
    "send_in_order",
    "store_receipts",
    "store_reply",
]

STABLE_LINK = 10.0  # seconds a connection must last before a drop resets the reconnect backoff
RECEIPT_BATCH = 1_000  # reports stored in one write at most
REPLY_WORKERS = 16  # replies stored at once per connection
DELIVER_BACKLOG = 10_000  # inbound requests waiting for a worker before the reader stops reading

# What a lost connection raises from a write (a read adds the protocol's PduError).
SEND_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)

LINK_DOWN = SubmitError(0, "LINK_DOWN", retriable=True)
SUBMIT_TIMEOUT = SubmitError(0, "SUBMIT_TIMEOUT", retriable=True)

K = TypeVar("K")  # what a response names its request by
T = TypeVar("T")
L = TypeVar("L", bound="Link[Any]")


class Request:
    """A request awaiting its response: answered by the reader, re-sent and finally given up on by the
    link's sweeper, or marked lost when the link drops."""

    __slots__ = ("data", "deadline", "done", "lost", "resends", "response", "timed_out")

    def __init__(self, data: bytes, deadline: float) -> None:
        self.data = data  # the PDU as sent, re-sent as is
        self.deadline = deadline
        self.resends = 0
        self.done = trio.Event()
        self.lost = False
        self.timed_out = False
        self.response: Any = None  # the decoded response PDU, when the driver keeps it


class Outbox:
    """PDUs queued for one connection; :meth:`write` sends all that were queued in one scheduler tick."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.out_ready = trio.Event()

    def send(self, data: bytes) -> None:
        self.out += data
        self.out_ready.set()

    async def write(self, stream: trio.abc.Stream) -> None:
        """Send what is queued, for ever; a lost connection raises one of :data:`SEND_ERRORS`."""
        while True:
            if not self.out:
                self.out_ready = trio.Event()
                await self.out_ready.wait()
                continue
            # Let every task that is ready queue its PDU first: one send_all then carries them all.
            await trio.lowlevel.checkpoint()
            data, self.out = self.out, bytearray()
            await stream.send_all(bytes(data))


class Link(Outbox, Generic[K]):
    """One connection to the gateway, opened again and again for the driver's whole life. The window
    lives as long as the link; what a session fills (the outbox, the requests) is reset with it."""

    def __init__(self, label: str, window: int, logger: Any) -> None:
        super().__init__()
        self.label = label
        self.log = logger  # bound to this link
        self.window = trio.Semaphore(window)
        self.connected = False
        self.pending: dict[K, Request] = {}
        self.outstanding = 0  # submits sent and not answered (what the window limits)
        self.pending_changed = trio.Event()
        self.scope: trio.CancelScope | None = None
        self.closed = trio.Event()  # set whenever no connection is open
        self.closed.set()

    @property
    def usable(self) -> bool:
        """Whether a submit may go out on this link now."""
        return self.connected

    def track(self, key: K, data: bytes, timeout: float) -> Request:
        """Send a request's octets and wait for the response named ``key`` (re-sent after ``timeout``)."""
        req = Request(data, trio.current_time() + timeout)
        self.pending[key] = req
        self.pending_changed.set()
        self.send(data)
        return req

    async def answered(self, key: K, req: Request) -> None:
        """Wait for a submit's response, counted as outstanding meanwhile; a cancelled wait forgets it."""
        self.outstanding += 1
        try:
            await req.done.wait()
        finally:
            self.outstanding -= 1
            if not req.done.is_set():  # cancelled
                self.pending.pop(key, None)

    def drop(self) -> None:
        if self.scope is not None:
            self.scope.cancel()

    def end_session(self) -> bool:
        """The connection is gone: forget what its session filled (the outbox; the requests awaiting an
        answer, now lost). True if it was logged in."""
        was_connected = self.connected
        self.connected = False
        self.scope = None
        self.out.clear()
        self.fail_pending()
        return was_connected

    def fail_pending(self) -> None:
        pending, self.pending = self.pending, {}
        for req in pending.values():
            req.lost = True
            req.done.set()

    async def writer(self, stream: trio.abc.Stream) -> None:
        try:
            await self.write(stream)
        except SEND_ERRORS as e:
            self.log.warning("connection lost while sending", error=str(e) or repr(e))
            self.drop()

    def resend_fields(self, key: K, req: Request) -> dict[str, Any]:
        """What the re-send log line says of a request."""
        return {"seq": key, "resend": req.resends}

    async def sweep(self, resends: int, timeout: float) -> None:
        """Re-send each request unanswered for ``timeout``, the same octets under the same key, up to
        ``resends`` times; then give up on it. One task per link, not a timer per request."""
        while True:
            now = trio.current_time()
            due = math.inf
            expired: list[K] = []
            for key, req in self.pending.items():
                if req.deadline > now:
                    due = min(due, req.deadline)
                elif req.resends < resends:
                    req.resends += 1
                    req.deadline = now + timeout
                    due = min(due, req.deadline)
                    self.log.info("no response in time; re-sending", **self.resend_fields(key, req))
                    self.send(req.data)
                else:
                    expired.append(key)
            for key in expired:
                req = self.pending.pop(key)
                req.timed_out = True
                req.done.set()
            self.pending_changed = trio.Event()
            with trio.move_on_at(due):
                await self.pending_changed.wait()


class LoginLink(Link[int]):
    """A link whose requests are numbered by a 32-bit counter and that is kept alive by a test request
    (CMPP_ACTIVE_TEST, SMGP_Active_Test). The counter lives as long as the link."""

    def __init__(self, label: str, window: int, logger: Any) -> None:
        super().__init__(label, window, logger)
        self._seq = 0
        self.last_rx = 0.0  # when the last PDU came in

    def next_sequence(self) -> int:
        """1 … 2**32 - 1, then round again; 0 is skipped (gocmpp's ISMG uses it for its own TERMINATE)."""
        self._seq = self._seq % 0xFFFFFFFF + 1
        return self._seq

    async def keepalive(self, interval: float, probe: Callable[[], Request], missing: str) -> None:
        """``probe()`` (a test request) after ``interval`` seconds without inbound traffic; when it gets no
        answer after its resends, the link is dropped, the log naming the ``missing`` response."""
        while True:
            due = self.last_rx + interval
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            req = probe()
            await req.done.wait()
            if req.timed_out:
                self.log.warning(f"no {missing}; dropping the connection", resends=req.resends)
                self.drop()
                return
            self.last_rx = max(self.last_rx, trio.current_time())


class Frames:
    """Whole PDUs off a byte stream: a header of ``header_length`` octets, whose ``length_of`` is the
    PDU's whole length, then the rest."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        header_length: int,
        length_of: Callable[[bytes], int],
        error: type[PduError],
    ) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self._header_length = header_length
        self._length_of = length_of
        self._error = error

    async def receive(self) -> bytes | None:
        """The next PDU's octets; None when the peer closed the connection between two PDUs. The
        protocol's PduError for a length out of range or a connection closed inside a PDU."""
        while True:
            if len(self.buffer) >= self._header_length:
                length = self._length_of(bytes(self.buffer[: self._header_length]))
                if len(self.buffer) >= length:
                    frame = bytes(self.buffer[:length])
                    del self.buffer[:length]
                    return frame
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                if self.buffer:
                    raise self._error(f"connection closed inside a PDU ({len(self.buffer)} octets read)")
                return None
            self.buffer += chunk


# ----- the submit path -------------------------------------------------------------------------------------


class Backoff:
    """Reconnect delays: exponential from ``low`` to ``high``, back to ``low`` after a link that lasted;
    ``high`` for a refusal that retrying soon cannot mend; jittered, so that many connections (or many
    nodes) do not reconnect in lockstep after an outage."""

    def __init__(self, low: float, high: float, rng: random.Random) -> None:
        self.low = low
        self.high = high
        self._rng = rng
        self._next = low

    def reset(self) -> None:
        self._next = self.low

    def delay(self, lasted: float, *, slow: bool = False) -> float:
        """The wait after a session that was up for ``lasted`` seconds (``slow``: refused for good)."""
        if lasted >= STABLE_LINK:
            self._next = self.low
        if slow:
            delay = self.high
        else:
            delay = self._next
            self._next = min(self._next * 2, self.high)
        return delay * self._rng.uniform(0.5, 1.0)


class Pacer:
    """Submits spaced at ``max_rate`` a second (GCRA without burst); none without a rate. Going over a
    gateway's cap earns flow control answers; the core paces too, this is the last line."""

    def __init__(self, max_rate: float | None) -> None:
        self.interval = 1.0 / max_rate if max_rate else 0.0
        self._tat = -math.inf  # theoretical arrival time of the next submit

    async def wait(self) -> None:
        if not self.interval:
            return
        now = trio.current_time()
        start = max(self._tat, now)
        self._tat = start + self.interval
        if start > now:
            await trio.sleep_until(start)


class Picker:
    """The usable link with the fewest outstanding submits; ties go round robin."""

    def __init__(self) -> None:
        self._rr = 0

    def pick(self, links: Sequence[L]) -> L | None:
        best: L | None = None
        n = len(links)
        self._rr = (self._rr + 1) % n
        for i in range(n):
            link = links[(self._rr + i) % n]
            if link.usable and (best is None or link.outstanding < best.outstanding):
                best = link
        return best


class InFlight:
    """The submits in flight, which a drain lets finish."""

    def __init__(self) -> None:
        self.count = 0
        self._idle: trio.Event | None = None

    def __enter__(self) -> None:
        self.count += 1

    def __exit__(self, *_: object) -> None:
        self.count -= 1
        if self.count == 0 and self._idle is not None:
            self._idle.set()

    async def settle(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until no submit is in flight."""
        with trio.move_on_after(timeout):
            while self.count:
                self._idle = trio.Event()
                await self._idle.wait()
        self._idle = None


async def send_in_order(
    segments: Sequence[T], send: Callable[[T], Awaitable[SubmitOutcome]]
) -> list[SubmitOutcome]:
    """Each segment's outcome, sent one after another; after a failure the rest are not sent and share
    its outcome: the core retries the whole delivery, and sending the rest would only make orphan parts."""
    outcomes: list[SubmitOutcome] = []
    for segment in segments:
        outcome = await send(segment)
        outcomes.append(outcome)
        if outcome.error is not None:
            outcomes.extend(outcome for _ in range(len(segments) - len(outcomes)))
            break
    return outcomes


# ----- inbound: status reports and replies -----------------------------------------------------------------


# The stat words of a CMPP or SMGP status report (the same seven in both), as the core's receipt states;
# ACCEPTD is what SMPP's ACCEPTD is. A word not here (a gateway's own code) reads as undelivered.
REPORT_STATS: dict[str, ReceiptStatus] = {
    "DELIVRD": ReceiptStatus.DELIVERED,
    "EXPIRED": ReceiptStatus.EXPIRED,
    "DELETED": ReceiptStatus.DELETED,
    "UNDELIV": ReceiptStatus.UNDELIVERED,
    "REJECTD": ReceiptStatus.REJECTED,
    "UNKNOWN": ReceiptStatus.UNKNOWN,
    "ACCEPTD": ReceiptStatus.ACCEPTED,
}


def batch_of(first: T, more: trio.MemoryReceiveChannel[T]) -> list[T]:
    """``first`` and whatever else is waiting in ``more`` (at most :data:`RECEIPT_BATCH` in all)."""
    batch = [first]
    while len(batch) < RECEIPT_BATCH:
        try:
            batch.append(more.receive_nowait())
        except trio.WouldBlock:
            break
    return batch


class _Logger(Protocol):
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...


async def store_receipts(
    events: ChannelEvents,
    channel: str,
    log: _Logger,
    receipts: Sequence[tuple[int, InboundReceipt]],
    answers: list[int],
    *,
    busy: int,
    refused: str,
) -> None:
    """Store status reports through the core, all in one write or, when that fails, each alone; a report
    the store refuses gets ``busy`` at its index in ``answers`` (the gateway sends it again), logged with
    the words ``refused``."""
    if not receipts:
        return
    if len(receipts) > 1:
        try:
            await events.receipt_batch(channel, [receipt for _, receipt in receipts])
            return
        except Exception as e:
            log.info("could not store reports together; storing each alone", error=str(e) or repr(e))

    async def store_one(i: int, receipt: InboundReceipt) -> None:
        try:
            await events.receipt(channel, receipt)
        except Exception as e:
            log.warning(refused, carrier_id=receipt.carrier_id, error=str(e) or repr(e))
            answers[i] = busy

    async with trio.open_nursery() as nursery:
        for i, receipt in receipts:
            nursery.start_soon(store_one, i, receipt)


async def store_reply(events: ChannelEvents, channel: str, message: InboundReply | InboundReplyPart) -> None:
    """Hand a reply, or one part of a long one, to the core."""
    if isinstance(message, InboundReplyPart):
        await events.reply_part(channel, message)
    else:
        await events.reply(channel, message)


async def expire_reply_parts(events: ChannelEvents, channel: str, timeout: float, log: _Logger) -> None:
    """Give up on missing parts: every tick the core stores, with their gaps marked, the channel's long
    replies whose first part came more than ``timeout`` seconds ago. A failure is retried next tick."""
    tick = min(1.0, timeout / 4)
    while True:
        await trio.sleep(tick)
        try:
            await events.expire_reply_parts(channel, time.time() - timeout)
        except Exception as e:
            log.warning("could not hand over incomplete replies; will retry", error=str(e) or repr(e))
