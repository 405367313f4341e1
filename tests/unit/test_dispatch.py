"""Specification of masd.core.dispatch: what is sent, how many at once, and that every outcome is recorded.

The store is replaced by lists (``queue_store.claim`` hands out prepared claims, ``record_result_items``
writes into a list) and the channel by a driver that answers at once or when a test lets it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import pytest
import trio

from masd.config import Config, load_config
from masd.core import split
from masd.core.dispatch import Dispatcher
from masd.core.failover import Failover
from masd.core.states import DeliveryState
from masd.metrics import Metrics
from masd.store import queue as queue_store
from masd.store.queue import Claim, SubmitResult
from masd_adapters.base import ChannelDriver, OutboundSegment, SubmitError, SubmitOutcome

# -- a dispatcher over a fake store and a fake channel ------------------------------------------------


class Store:
    """What the dispatcher writes: claims handed out, outcomes written (one list per write)."""

    def __init__(self, n: int) -> None:
        self.waiting = [_claim(i) for i in range(1, n + 1)]
        self.writes: list[list[SubmitResult]] = []
        self.refuse: set[int] = set()  # delivery ids whose outcome the store refuses to write
        self.gate: trio.Event | None = None
        self.released: list[int] = []
        self.claim_gate: trio.Event | None = None  # holds claim transactions until set
        self.claiming = False
        self.transactions: list[str] = []  # the plain writes, by the name of their function

    @property
    def recorded(self) -> list[SubmitResult]:
        return [r for w in self.writes for r in w]

    def claim(self, conn: Any, *, limit: int, **_: Any) -> list[Claim]:
        out, self.waiting = self.waiting[:limit], self.waiting[limit:]
        return out

    def record(self, conn: Any, items: Sequence[queue_store.ResultItem]) -> list[int]:
        if any(it.result.delivery_id in self.refuse for it in items):
            raise RuntimeError("the store refused it")
        self.writes.append([it.result for it in items])
        return [0] * len(items)

    def release(self, conn: Any, *, delivery_ids: Sequence[int], now: float) -> int:
        self.released.extend(delivery_ids)
        return len(delivery_ids)


class Db:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def write(self, fn: Any) -> Any:
        self.store.transactions.append(fn.__name__)
        if fn.__name__ == "claim" and self.store.claim_gate is not None:
            self.store.claiming = True
            await self.store.claim_gate.wait()
        if fn.__name__ == "record_and_claim" and self.store.gate is not None:
            await self.store.gate.wait()  # outcomes written together with the next claims
        await trio.lowlevel.checkpoint()
        return fn(None)

    async def write_items(self, handler: Any, items: list[Any]) -> list[Any]:
        if self.store.gate is not None:
            await self.store.gate.wait()
        await trio.lowlevel.checkpoint()
        return list(handler(None, items))

    async def write_item(self, handler: Any, item: Any) -> Any:
        return (await self.write_items(handler, [item]))[0]


class Gateway:
    def __init__(self, store: Store) -> None:
        self.db = Db(store)
        self.metrics = Metrics()
        self.held = None
        self.unrecorded: dict[str, Any] = {}
        self.finals = 0
        self._wake = trio.Event()
        self.resend_policies: dict[str, Any] = {}
        self.failover = Failover()

    def wake_event(self, channel: str) -> trio.Event:
        return self._wake

    def wake(self, channel: str) -> None:
        self._wake.set()
        self._wake = trio.Event()

    def note_final(self, n: int = 1) -> None:
        self.finals += n

    def signal_events(self) -> None:
        pass


class Driver(ChannelDriver):
    """Answers every submit at once, or when ``gate`` is set; counts what is outstanding."""

    def __init__(self) -> None:
        super().__init__("sim", {}, None, "")  # type: ignore[arg-type]
        self.up = True
        self.gate: trio.Event | None = None
        self.outstanding = 0
        self.max_outstanding = 0
        self.submitted: list[tuple[str, Sequence[OutboundSegment]]] = []
        self.ids = itertools.count(1)
        self.error: SubmitError | None = None
        self.awaited = 0  # calls of submit()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def submit(
        self, destination: str, source: str, segments: Sequence[OutboundSegment]
    ) -> list[SubmitOutcome]:
        self.awaited += 1
        self.submitted.append((destination, segments))
        self.outstanding += 1
        self.max_outstanding = max(self.max_outstanding, self.outstanding)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await trio.lowlevel.checkpoint()
        finally:
            self.outstanding -= 1
        if self.error is not None:
            return [SubmitOutcome(error=self.error) for _ in segments]
        return [SubmitOutcome(carrier_id=f"c{next(self.ids)}") for _ in segments]


class NowaitDriver(Driver):
    """Also takes one-segment deliveries without a task (as the SMPP driver does) unless ``accept`` is
    off; ``answer`` answers what it took."""

    def __init__(self) -> None:
        super().__init__()
        self.accept = True
        self.taken: list[Any] = []

    def submit_nowait(
        self, destination: str, source: str, segments: Sequence[OutboundSegment], done: Any
    ) -> bool:
        if not self.accept or len(segments) != 1:
            return False
        self.submitted.append((destination, segments))
        self.taken.append(done)
        self.outstanding += 1
        self.max_outstanding = max(self.max_outstanding, self.outstanding)
        return True

    def answer(self) -> None:
        taken, self.taken = self.taken, []
        for done in taken:
            self.outstanding -= 1
            if self.error is not None:
                done([SubmitOutcome(error=self.error)])
            else:
                done([SubmitOutcome(carrier_id=f"c{next(self.ids)}")])

    async def keep_answering(self) -> None:
        while True:
            await trio.sleep(0.001)
            self.answer()


def _claim(i: int, text: str = "hello") -> Claim:
    return Claim(
        delivery_id=i,
        message_id=i,
        recipient=f"13800{i:06d}",
        extension="",
        attempts=1,
        max_attempts=5,
        expires_at=4e9,
        concat_ref=i,
        text=text,
        recovered=0,
    )


def _config(window: int, linger_ms: float = 0) -> Config:
    return load_config(
        None,
        env={
            "MASD_NODE__DATA_DIR": "/nonexistent",
            "MASD_CHANNELS__SIM__WINDOW": str(window),
            "MASD_CHANNELS__SIM__RATE": "100000",
            "MASD_QUEUE__CLAIM_LINGER_MS": str(linger_ms),
        },
    )


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    s = Store(0)
    monkeypatch.setattr(queue_store, "claim", lambda conn, **kw: s.claim(conn, **kw))
    monkeypatch.setattr(queue_store, "record_result_items", lambda conn, items: s.record(conn, items))
    monkeypatch.setattr(queue_store, "release", lambda conn, **kw: s.release(conn, **kw))
    return s


def _dispatcher(
    store: Store, n: int, window: int, driver: Driver | None = None, linger_ms: float = 0
) -> tuple[Dispatcher, Driver]:
    store.waiting = [_claim(i) for i in range(1, n + 1)]
    cfg = _config(window, linger_ms)
    driver = driver or Driver()
    gw = Gateway(store)
    return Dispatcher("sim", cfg.channels["sim"], driver, gw, cfg, "node"), driver  # type: ignore[arg-type]


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.001)


async def test_every_delivery_is_sent_once_and_its_outcome_recorded(store: Store) -> None:
    disp, driver = _dispatcher(store, 50, window=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(disp.run)
        await _until(lambda: len(store.recorded) == 50)
        await disp.drain()
    assert sorted(r.delivery_id for r in store.recorded) == list(range(1, 51))
    assert {r.state for r in store.recorded} == {DeliveryState.SUBMITTED}
    assert sorted(d for d, _ in driver.submitted) == sorted(f"13800{i:06d}" for i in range(1, 51))
    assert driver.max_outstanding <= 4
    assert len(store.writes) < 50  # outcomes that finish together are written together
    assert disp.inflight == 0


async def test_a_window_slot_is_free_again_only_once_its_outcome_is_recorded(store: Store) -> None:
    disp, driver = _dispatcher(store, 5, window=2)
    store.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(disp.run)
        await _until(lambda: len(driver.submitted) == 2)
        await trio.sleep(0.1)
        assert len(driver.submitted) == 2  # both answered, neither recorded: no third send
        store.gate.set()
        await _until(lambda: len(store.recorded) == 5)
        await disp.drain()


async def test_the_write_that_records_outcomes_claims_the_next_deliveries_in_their_slots(
    store: Store,
) -> None:
    disp, driver = _dispatcher(store, 40, window=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(disp.run)
        await _until(lambda: len(store.recorded) == 40)
        await disp.drain()
    assert driver.max_outstanding <= 4
    # After the first claim, each write of outcomes claimed the next ones: no claim transactions between.
    assert store.transactions.count("record_and_claim") >= 5
    assert store.transactions.count("claim") < 10
    assert sorted(r.delivery_id for r in store.recorded) == list(range(1, 41))
    assert disp.inflight == 0


async def _claim_times(store: Store, linger_ms: float) -> list[float]:
    """When the dispatcher's own claims ran, while a delivery arrives every millisecond for 40 ms."""
    disp, _ = _dispatcher(store, 1, window=100, linger_ms=linger_ms)
    times: list[float] = []
    write = disp.gw.db.write

    async def timed(fn: Any) -> Any:
        if fn.__name__ == "claim":  # the dispatcher's own claims, not those made with outcomes
            times.append(trio.current_time())
        return await write(fn)

    disp.gw.db.write = timed  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await nursery.start(disp.run)
        for i in range(2, 42):
            await trio.sleep(0.001)
            store.waiting.append(_claim(i))
            disp.gw.wake("sim")
        await _until(lambda: len(store.recorded) == 41)
        await disp.drain()
    return times


async def test_after_a_part_filled_claim_the_next_waits_claim_linger_ms(
    store: Store, autojump_clock: trio.testing.MockClock
) -> None:
    times = await _claim_times(store, linger_ms=20)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and min(gaps) >= 0.020 - 1e-9
    assert len(times) <= 4  # 40 ms of arrivals took a claim per 20 ms, not one per delivery


async def test_without_claim_linger_each_arrival_is_claimed_as_it_comes(
    store: Store, autojump_clock: trio.testing.MockClock
) -> None:
    times = await _claim_times(store, linger_ms=0)
    assert len(times) >= 20


async def test_an_outcome_the_store_refuses_does_not_hold_back_the_others(
    store: Store, autojump_clock: trio.testing.MockClock
) -> None:
    disp, _ = _dispatcher(store, 10, window=10)
    store.refuse = {3}
    async with trio.open_nursery() as nursery:
        await nursery.start(disp.run)
        await _until(lambda: len(store.recorded) == 9, timeout=60)
        assert 3 not in {r.delivery_id for r in store.recorded}
        assert disp.inflight == 1  # still held, still being retried
        store.refuse = set()
        await _until(lambda: len(store.recorded) == 10, timeout=60)
        await disp.drain()
    assert disp.inflight == 0


async def test_drain_ends_the_dispatcher_once_what_was_in_flight_is_recorded(store: Store) -> None:
    disp, driver = _dispatcher(store, 3, window=10)
    driver.gate = trio.Event()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(disp.run)
            await _until(lambda: len(driver.submitted) == 3)
            await disp.drain()
            driver.gate.set()
        # The nursery ended by itself: run() returned once the three outcomes were written.
    assert sorted(r.delivery_id for r in store.recorded) == [1, 2, 3]


async def test_a_final_outcome_is_counted_and_finishes_the_delivery(store: Store) -> None:
    disp, driver = _dispatcher(store, 2, window=10)
    driver.error = SubmitError(0x0B, "ESME_RINVDSTADR", retriable=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(disp.run)
        await _until(lambda: len(store.recorded) == 2)
        await disp.drain()
    assert {r.state for r in store.recorded} == {DeliveryState.REJECTED}
    m = disp.gw.metrics
    assert m.deliveries_final.labels("rejected")._value.get() == 2
    assert m.segments_submitted.labels("sim", "rejected")._value.get() == 2
    assert disp.gw.finals == 2  # type: ignore[attr-defined]


async def test_a_text_sent_to_many_recipients_is_split_as_the_splitter_splits_it(store: Store) -> None:
    text = "会议通知请准时参加" * 10  # UCS-2, two parts: the segments depend on each delivery's reference
    disp, driver = _dispatcher(store, 0, window=10)
    store.waiting = [_claim(i, text) for i in range(1, 4)]
    async with trio.open_nursery() as nursery:
        await nursery.start(disp.run)
        await _until(lambda: len(store.recorded) == 3)
        await disp.drain()
    plan = split.plan(text, concat="udh8")
    for destination, segments in driver.submitted:
        ref = int(destination[-6:])
        assert list(segments) == split.encode(plan, concat="udh8", ref=ref)


async def test_a_driver_that_takes_sends_without_waiting_gets_every_delivery_that_way(store: Store) -> None:
    driver = NowaitDriver()
    disp, _ = _dispatcher(store, 30, window=4, driver=driver)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.keep_answering)
        await nursery.start(disp.run)
        await _until(lambda: len(store.recorded) == 30)
        await disp.drain()
        nursery.cancel_scope.cancel()
    assert sorted(r.delivery_id for r in store.recorded) == list(range(1, 31))
    assert {r.state for r in store.recorded} == {DeliveryState.SUBMITTED}
    assert driver.awaited == 0 and len(driver.submitted) == 30
    assert driver.max_outstanding <= 4
    assert disp.inflight == 0


async def test_what_the_driver_will_not_take_at_once_goes_through_submit(store: Store) -> None:
    driver = NowaitDriver()
    driver.accept = False
    disp, _ = _dispatcher(store, 5, window=4, driver=driver)
    async with trio.open_nursery() as nursery:
        await nursery.start(disp.run)
        await _until(lambda: len(store.recorded) == 5)
        await disp.drain()
    assert driver.awaited == 5 and len(driver.submitted) == 5


async def test_a_throttle_answered_through_the_callback_waits_uncounted_and_slows_the_channel(
    store: Store,
) -> None:
    driver = NowaitDriver()
    driver.error = SubmitError(0x58, "ESME_RTHROTTLED", retriable=True, throttled=True)
    disp, _ = _dispatcher(store, 3, window=4, driver=driver)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.keep_answering)
        await nursery.start(disp.run)
        await _until(lambda: len(store.recorded) == 3)
        await disp.drain()
        nursery.cancel_scope.cancel()
    assert {r.state for r in store.recorded} == {DeliveryState.QUEUED}
    assert {r.error_code for r in store.recorded} == {0x58}
    assert all(r.uncounted for r in store.recorded)  # a throttle never counts towards max_attempts
    assert disp.pace.rate < disp.ch.rate and disp.bucket.rate == disp.pace.rate
    m = disp.gw.metrics
    assert m.retries.labels("sim")._value.get() == 3
    assert m.segments_submitted.labels("sim", "throttled")._value.get() == 3
    assert m.channel_rate.labels("sim")._value.get() == disp.pace.rate


async def test_a_throttle_on_the_last_attempt_still_waits_instead_of_failing(store: Store) -> None:
    driver = Driver()
    driver.error = SubmitError(0x58, "ESME_RTHROTTLED", retriable=True, throttled=True)
    disp, _ = _dispatcher(store, 1, window=4, driver=driver)
    store.waiting = [dataclasses.replace(_claim(1), attempts=5, max_attempts=5)]
    async with trio.open_nursery() as nursery:
        await nursery.start(disp.run)
        await _until(lambda: len(store.recorded) == 1)
        await disp.drain()
    (r,) = store.recorded
    assert r.state == DeliveryState.QUEUED and r.uncounted and r.not_before is not None


class PartlyDriver(Driver):
    """Acknowledges the first ``ok`` segments of each submit, then answers ``error`` for the rest."""

    def __init__(self, ok: int, error: SubmitError) -> None:
        super().__init__()
        self.ok = ok
        self.err = error

    async def submit(
        self, destination: str, source: str, segments: Sequence[OutboundSegment]
    ) -> list[SubmitOutcome]:
        self.submitted.append((destination, segments))
        await trio.lowlevel.checkpoint()
        return [
            SubmitOutcome(carrier_id=f"c{next(self.ids)}") if i < self.ok else SubmitOutcome(error=self.err)
            for i in range(len(segments))
        ]


LONG = "长" * 150  # three UCS-2 segments


async def test_acknowledged_segments_are_recorded_when_a_later_one_fails(store: Store) -> None:
    driver = PartlyDriver(1, SubmitError(0x08, "ESME_RSYSERR", retriable=True))
    disp, _ = _dispatcher(store, 0, window=4, driver=driver)
    store.waiting = [_claim(1, text=LONG)]
    async with trio.open_nursery() as nursery:
        await nursery.start(disp.run)
        await _until(lambda: len(store.recorded) == 1)
        await disp.drain()
    (r,) = store.recorded
    assert r.state == DeliveryState.QUEUED and not r.uncounted
    assert [(seg.seq, seg.total) for seg in r.segments] == [(1, 3)]


async def test_a_retry_sends_only_the_segments_not_yet_acknowledged_with_the_same_reference(
    store: Store,
) -> None:
    disp, driver = _dispatcher(store, 0, window=4)
    first = split.encode(split.plan(LONG, concat="udh8", max_segments=10), concat="udh8", ref=7)
    store.waiting = [dataclasses.replace(_claim(1, text=LONG), concat_ref=7, attempts=2, sent=frozenset({1}))]
    async with trio.open_nursery() as nursery:
        await nursery.start(disp.run)
        await _until(lambda: len(store.recorded) == 1)
        await disp.drain()
    ((_, sent),) = driver.submitted
    assert [seg.seq for seg in sent] == [2, 3]
    assert [seg.short_message for seg in sent] == [seg.short_message for seg in first[1:]]  # same UDH ref
    (r,) = store.recorded
    assert r.state == DeliveryState.SUBMITTED and r.resumed
    assert [seg.seq for seg in r.segments] == [2, 3]


async def test_a_delivery_whose_segments_were_all_acknowledged_is_not_sent_again(store: Store) -> None:
    disp, driver = _dispatcher(store, 0, window=4)
    store.waiting = [dataclasses.replace(_claim(1, text=LONG), attempts=2, sent=frozenset({1, 2, 3}))]
    async with trio.open_nursery() as nursery:
        await nursery.start(disp.run)
        await _until(lambda: len(store.recorded) == 1)
        await disp.drain()
    assert driver.submitted == []
    assert store.recorded[0].state == DeliveryState.SUBMITTED


async def test_claims_that_arrive_after_drain_began_go_back_to_the_queue_unsent(store: Store) -> None:
    disp, driver = _dispatcher(store, 3, window=10)
    store.claim_gate = trio.Event()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(disp.run)
            await _until(lambda: store.claiming)
            await disp.drain()
            store.claim_gate.set()
    assert sorted(store.released) == [1, 2, 3]
    assert driver.submitted == [] and store.recorded == []
    assert disp.inflight == 0  # the daemon's drain does not wait for them


async def test_a_delivery_waiting_for_tokens_at_drain_goes_back_to_the_queue_unsent(
    store: Store, autojump_clock: trio.testing.MockClock
) -> None:
    disp, driver = _dispatcher(store, 3, window=10, driver=NowaitDriver())
    disp.bucket.set_rate(0.2)  # the carrier throttled: the next send may go in five seconds
    disp.bucket.tokens = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(disp.run)
        await _until(lambda: disp.inflight == 3)
        await disp.drain()
    assert sorted(store.released) == [1, 2, 3]
    assert driver.submitted == [] and store.recorded == []
    assert disp.inflight == 0
