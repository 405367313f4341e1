"""One TCP connection that a simulated China Mobile ISMG (``cmpp.ismg``) or China Telecom SMGW
(``smgp.smgw``) serves, beside its protocol: the output buffer and the writer sending it (the answers to
one read go out in one ``send_all``), reading paused while the peer does not take what it is sent,
whole PDUs cut from what it reads, the gateway's own keep-alive, the drop timer, the DELIVERs in flight,
and the ways a connection ends: dropped at once (what a crash or a cut cable looks like), closed once
what it owes is written, or after the gateway's own goodbye is answered. Login, submits and the PDUs
stay the simulator's; so do the words it logs, given by its subclass (``name``, ``log``, the keep-alive
answer's name)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, TypeVar

import trio

from ._outbox import INFLIGHT, Outbound
from ._simkit import TokenBucket, peer_of

__all__ = ["FINAL_FLUSH", "HIGH_WATER", "SimConn", "drop_all", "say_goodbye"]

HIGH_WATER = 1 << 20  # unsent octets after which a connection stops reading (the SP does not read)
FINAL_FLUSH = 2.0  # seconds a closing connection gets to send what it owes
_GOODBYE_WAIT = 5.0  # seconds the gateway's own goodbye (TERMINATE, Exit) waits for its answer


class SimConn:
    """The protocol-free part of a connection; a subclass says how PDUs are framed and answered."""

    name: ClassVar[str]  # the simulator's name in log lines: "ismg", "smgw"
    log: ClassVar[logging.Logger]  # the simulator's logger
    header_length: ClassVar[int]
    error: ClassVar[type[Exception]]  # the codec's PduError: the connection cannot be trusted after it
    active_test_resp: ClassVar[str]  # the keep-alive answer's name, for the log line of a drop

    def __init__(self, stream: trio.SocketStream, number: int) -> None:
        self.stream = stream
        self.number = number
        self.peer = peer_of(stream)
        self.scope = trio.CancelScope()
        self.nursery: trio.Nursery | None = None
        self.out = bytearray()
        self.wake = trio.Event()
        self.writer_done = trio.Event()
        self.drained: trio.Event | None = None
        self.closing = False
        self.dropped = False
        self._sequence = itertools.count(1)
        self.inflight: dict[int, Any] = {}  # DELIVER sequence number → what it carries, in send order
        self.submits = 0
        self.bucket = TokenBucket()  # for a rate above which submits are answered "slow down"
        self.active_test_seq = -1
        self.active_test_answered: trio.Event | None = None

    # --- what the subclass says -------------------------------------------------------------------------

    @property
    def logged_in(self) -> bool:
        raise NotImplementedError

    @property
    def server(self) -> Any:
        """The simulator: its ``config``, ``stats`` and ``forget(conn)``."""
        raise NotImplementedError

    def length_of(self, header: bytes) -> int:
        """The whole PDU's length, from its header."""
        raise NotImplementedError

    def handle(self, raw: bytes) -> None:
        raise NotImplementedError

    def active_test(self, sequence_id: int) -> None:
        """Send the gateway's own keep-alive request."""
        raise NotImplementedError

    def deliver_wire(self, item: Any, sequence_id: int) -> bytes:
        """The DELIVER carrying ``item``, encoded for this session."""
        raise NotImplementedError

    # --- output -----------------------------------------------------------------------------------------

    def next_sequence(self) -> int:
        return next(self._sequence) & 0xFFFFFFFF

    def send(self, data: bytes) -> None:
        if not self.dropped:
            self.out += data
            self.wake.set()

    async def writer(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake = trio.Event()
                await trio.lowlevel.checkpoint()  # let the answers to one read go in one send_all
                while self.out:
                    data, self.out = self.out, bytearray()
                    await self.stream.send_all(data)
                    if self.drained is not None and len(self.out) < HIGH_WATER:
                        self.drained.set()
                if self.closing:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.drop()
        finally:
            self.writer_done.set()

    def drop(self) -> None:
        """Cut the connection now, without a goodbye (what a crash or a cut cable looks like)."""
        self.dropped = True
        self.closing = True
        self.scope.cancel()
        self.server.forget(self)

    def close_after_flush(self) -> None:
        self.closing = True
        self.wake.set()

    def send_deliver(self, item: Outbound, now: float) -> None:
        seq = self.next_sequence()
        item.state = INFLIGHT
        item.conn = self
        item.sent_at = now
        item.attempts += 1
        self.inflight[seq] = item
        self.send(self.deliver_wire(item, seq))

    # --- input ------------------------------------------------------------------------------------------

    async def reader(self) -> None:
        buf = bytearray()
        try:
            while not self.closing:
                if len(self.out) > HIGH_WATER:
                    self.drained = trio.Event()
                    await self.drained.wait()
                    self.drained = None
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= self.header_length and not self.closing:
                    total = self.length_of(bytes(buf[: self.header_length]))
                    if len(buf) < total:
                        break
                    raw = bytes(buf[:total])
                    del buf[:total]
                    self.handle(raw)
        except self.error as e:
            # The peer and we disagree about the framing or a layout; nothing after this can be trusted.
            self.log.info("%s: connection %d (%s): %s; closing", self.name, self.number, self.peer, e)
            self.server.stats.malformed += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.drop()
        except Exception:
            # One client's PDU meeting a bug must not take the whole gateway down: drop only this connection.
            self.log.exception("%s: connection %d: internal error; dropping it", self.name, self.number)
            self.drop()

    async def run(self) -> None:
        """Serve the connection until it ends, then take it out of service."""
        try:
            async with self.stream:
                with self.scope:
                    async with trio.open_nursery() as nursery:
                        self.nursery = nursery
                        nursery.start_soon(self.writer)
                        await self.reader()
                        # The reader is done (closed, goodbye, malformed PDU): send what is owed, close.
                        self.server.forget(self)
                        self.close_after_flush()
                        with trio.move_on_after(FINAL_FLUSH):
                            await self.writer_done.wait()
                        nursery.cancel_scope.cancel()
        finally:
            self.server.forget(self)
            self.log.debug("%s: connection %d closed", self.name, self.number)

    # --- the gateway's own requests ---------------------------------------------------------------------

    async def active_tester(self) -> None:
        while True:
            cfg = self.server.config  # "set" may have replaced it
            if cfg.active_test_interval <= 0:
                return
            await trio.sleep(cfg.active_test_interval)
            cfg = self.server.config
            stats = self.server.stats
            self.active_test_seq = self.next_sequence()
            answered = self.active_test_answered = trio.Event()
            stats.active_tests_sent += 1
            self.active_test(self.active_test_seq)
            with trio.move_on_after(cfg.active_test_timeout):
                await answered.wait()
            if not answered.is_set():
                self.log.info(
                    "%s: connection %d: no %s; dropping it", self.name, self.number, self.active_test_resp
                )
                stats.dropped_unanswered_active_test += 1
                self.drop()
                return
            stats.active_tests_answered += 1

    async def disconnect_timer(self, seconds: float) -> None:
        await trio.sleep(seconds)
        self.log.info(
            "%s: connection %d: dropped %.3g s after its login (disconnect_after)",
            self.name,
            self.number,
            seconds,
        )
        self.server.stats.dropped_disconnect_after += 1
        self.drop()

    async def end_after(self, answered: trio.Event) -> None:
        """After the gateway's goodbye: close when ``answered`` is set (or after 5 s), once what is owed
        is written."""
        with trio.move_on_after(_GOODBYE_WAIT):
            await answered.wait()
        # The reader is waiting for the SP's next octets: write what is owed, then end the connection.
        self.close_after_flush()
        with trio.move_on_after(FINAL_FLUSH):
            await self.writer_done.wait()
        self.scope.cancel()


ConnT = TypeVar("ConnT", bound=SimConn)


def drop_all(conns: Iterable[SimConn]) -> int:
    """Cut every connection at once, without a goodbye (the control port's ``disconnect``); returns how
    many."""
    dropped = list(conns)
    for conn in dropped:
        conn.drop()
    return len(dropped)


def say_goodbye(conns: Iterable[ConnT], goodbye: Callable[[ConnT], Awaitable[None]]) -> int:
    """Start the gateway's own goodbye, ``goodbye(conn)``, on every logged-in connection still open (each
    closes when it is answered); returns how many."""
    leaving = [c for c in conns if c.logged_in and not c.closing and c.nursery is not None]
    for conn in leaving:
        assert conn.nursery is not None
        conn.nursery.start_soon(goodbye, conn)
    return len(leaving)
