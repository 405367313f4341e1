"""The DELIVERs a simulated China Mobile ISMG (``cmpp.ismg``) or China Telecom SMGW (``smgp.smgw``) owes
its SP's accounts, status reports and MO parts alike: due times on a heap, a queue per account, sends
round robin over the account's receiving sessions each within its window, a resend of what the SP
refused (after 1 s) or did not answer in time, and what a closed session had in flight put back at the
front of its queue. The two simulators differ only in the PDUs, which their sessions encode."""

from __future__ import annotations

import collections
import heapq
import itertools
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import trio

__all__ = ["DONE", "INFLIGHT", "READY", "SCHEDULED", "DeliverCounters", "Outbound", "Outbox", "Session"]

SCHEDULED, READY, INFLIGHT, DONE = range(4)
_NACK_RETRY = 1.0  # seconds before a DELIVER the SP refused is sent again


class Outbound:
    """One DELIVER owed to ``account`` until the SP answers that it took it."""

    __slots__ = ("account", "attempts", "conn", "sent_at", "state")

    def __init__(self, account: str) -> None:
        self.account = account
        self.state = SCHEDULED
        self.attempts = 0
        self.conn: object | None = None  # the session it is in flight on
        self.sent_at = 0.0

    @property
    def is_report(self) -> bool:
        raise NotImplementedError


ItemT = TypeVar("ItemT", bound=Outbound)


class Session(Protocol[ItemT]):
    """What the outbox uses of a receiving session."""

    inflight: dict[int, ItemT]  # by the DELIVER's sequence number, in send order
    closing: bool

    def send_deliver(self, item: ItemT, now: float) -> None: ...


class DeliverCounters(Protocol):
    """The simulator's counters the outbox keeps."""

    reports_sent: int
    reports_resent: int
    reports_acked: int
    reports_pending: int
    mo_sent: int
    mo_acked: int
    mo_pending: int


class Outbox(Generic[ItemT]):
    """The DELIVERs owed, by account. ``window`` and ``resend_after`` are read at each use (the control
    port's ``set`` may change them); ``prepare`` sees each item as it falls due, before it queues."""

    def __init__(
        self,
        stats: DeliverCounters,
        window: Callable[[], int],
        resend_after: Callable[[], float],
        prepare: Callable[[ItemT], None],
    ) -> None:
        self.stats = stats
        self._window = window
        self._resend_after = resend_after
        self._prepare = prepare
        self.sessions: dict[str, list[Session[ItemT]]] = collections.defaultdict(list)  # receiving ones
        self._rr: dict[str, int] = collections.defaultdict(int)
        self._pending: dict[str, collections.deque[ItemT]] = collections.defaultdict(collections.deque)
        self._heap: list[tuple[float, int, ItemT]] = []
        self._tiebreak = itertools.count()
        self._wake_scheduler = trio.Event()

    def push(self, when: float, item: ItemT) -> None:
        """Owe ``item`` from ``when`` (trio time) on."""
        item.state = SCHEDULED
        earliest = not self._heap or when < self._heap[0][0]
        heapq.heappush(self._heap, (when, next(self._tiebreak), item))
        if earliest:
            self._wake_scheduler.set()

    def make_ready(self, item: ItemT) -> None:
        """Queue ``item`` for its account now, and send what the windows allow."""
        item.state = READY
        self._prepare(item)
        self._pending[item.account].append(item)
        self.dispatch(item.account)

    def dispatch(self, account: str) -> None:
        """Send what waits for ``account`` to its sessions, round robin, each within its window."""
        queue = self._pending.get(account)
        sessions = self.sessions.get(account)
        if not queue or not sessions:
            return
        window = self._window()
        now = trio.current_time()
        n = len(sessions)
        rr = self._rr[account]
        while queue:
            for _ in range(n):
                rr = (rr + 1) % n
                conn = sessions[rr]
                if len(conn.inflight) < window and not conn.closing:
                    break
            else:
                break  # every window is full; an answer calls this again
            item = queue.popleft()
            if item.is_report:
                self.stats.reports_sent += 1
                if item.attempts:
                    self.stats.reports_resent += 1
            else:
                self.stats.mo_sent += 1
            conn.send_deliver(item, now)
        self._rr[account] = rr

    def answered(self, account: str, item: ItemT, taken: bool) -> None:
        """The SP answered ``item`` (taken, or refused: then it goes again later)."""
        item.conn = None
        if taken:
            item.state = DONE
            if item.is_report:
                self.stats.reports_acked += 1
                self.stats.reports_pending -= 1
            else:
                self.stats.mo_acked += 1
                self.stats.mo_pending -= 1
        else:
            # The SP could not take it (slow down, or an error): a real gateway tries again later.
            self.push(trio.current_time() + _NACK_RETRY, item)
        self.dispatch(account)

    def add_session(self, account: str, conn: Session[ItemT]) -> None:
        self.sessions[account].append(conn)
        self.dispatch(account)

    def remove_session(self, account: str, conn: Session[ItemT]) -> None:
        """Take ``conn`` out of service; its DELIVERs in flight go back to the front of the queue."""
        sessions = self.sessions.get(account)
        if sessions and conn in sessions:
            sessions.remove(conn)
        if conn.inflight:
            queue = self._pending[account]
            for item in reversed(conn.inflight.values()):
                item.state = READY
                item.conn = None
                queue.appendleft(item)
            conn.inflight.clear()
            self.dispatch(account)

    async def scheduler(self) -> None:
        """Move reports (and retries) from the heap to their account's queue when they fall due."""
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                item = heapq.heappop(heap)[2]
                if item.state == SCHEDULED:
                    self.make_ready(item)
            self._wake_scheduler = trio.Event()
            if heap:
                with trio.move_on_at(heap[0][0]):
                    await self._wake_scheduler.wait()
            else:
                await self._wake_scheduler.wait()

    async def sweeper(self) -> None:
        """Send again what was not answered in time (the answer lost or never sent)."""
        while True:
            await trio.sleep(min(1.0, self._resend_after() / 4))
            limit = trio.current_time() - self._resend_after()
            for sessions in list(self.sessions.values()):
                expired: list[ItemT] = []
                for conn in sessions:
                    for seq, item in list(conn.inflight.items()):  # in send order: stop at the first in time
                        if item.sent_at > limit:
                            break
                        del conn.inflight[seq]
                        item.conn = None
                        expired.append(item)
                for item in expired:
                    self.make_ready(item)
