"""Dispatch: one task per channel that claims queued deliveries and hands them to the channel's driver.

The dispatcher claims no more than the channel's window has room for, sends each claimed delivery in a
task of its own (at most ``window`` at once), paces segments with a token bucket at the channel's rate,
and writes each outcome through the group committer. A retriable error puts the delivery back with
backoff; a throttling answer also slows the whole channel for a while. On shutdown it stops claiming,
lets what is in flight finish until the drain deadline, and returns unsent claims to the queue.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import sqlalchemy as sa
import structlog
import trio

from masd.config import ChannelConfig, Config
from masd.core import retry as retry_rules
from masd.core import split
from masd.core.gateway import Gateway
from masd.core.states import DeliveryState
from masd.store import queue as queue_store
from masd.store.queue import Claim, SegmentRecord, SubmitResult
from masd_adapters.base import ChannelDriver, OutboundSegment, SubmitError, SubmitOutcome

__all__ = ["Dispatcher", "TokenBucket"]

log = structlog.get_logger("masd.dispatch")


class TokenBucket:
    """Paces sends at ``rate`` per second with a burst of one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp: float | None = None  # set on first use: the bucket may be built outside trio.run
        self.paused_until = 0.0
        self._lock = trio.Lock()

    async def take(self, n: int = 1) -> None:
        async with self._lock:  # first come, first served
            while True:
                now = trio.current_time()
                if self.stamp is None:
                    self.stamp = now
                if now < self.paused_until:
                    await trio.sleep_until(self.paused_until)
                    continue
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                # The tolerance keeps float rounding (0.9999… tokens) from spinning on sub-µs sleeps.
                if self.tokens >= n - 1e-6 or self.tokens >= self.capacity - 1e-6:
                    self.tokens -= n
                    return
                await trio.sleep(max(0.0005, (n - self.tokens) / self.rate))

    def pause(self, seconds: float) -> None:
        """The carrier asked us to slow down: send nothing for a while."""
        self.paused_until = max(self.paused_until, trio.current_time() + seconds)
        self.tokens = 0


class Dispatcher:
    def __init__(
        self, name: str, ch: ChannelConfig, driver: ChannelDriver, gateway: Gateway, cfg: Config, node: str
    ) -> None:
        self.name = name
        self.ch = ch
        self.driver = driver
        self.gw = gateway
        self.cfg = cfg
        self.node = node
        self.bucket = TokenBucket(ch.rate)
        self.window = trio.Semaphore(ch.window)
        self.inflight = 0
        self.unsent: set[int] = set()
        self.draining = False
        self.rng = random.Random()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        q = self.cfg.queue
        db = self.gw.db
        async with trio.open_nursery() as senders:
            task_status.started()
            while not self.draining:
                if not self.driver.up:
                    await trio.sleep(q.poll_interval)
                    continue
                room = self.ch.window - self.inflight
                # Claim about a second's worth at the channel's rate, so leases are never held long.
                want = min(room, q.claim_batch, max(1, math.ceil(self.ch.rate)))
                if want <= 0:
                    await trio.sleep(0.005)
                    continue
                wake = self.gw.wake_event(self.name)
                try:
                    claims = await db.write(self._claimer(want))
                except Exception as e:
                    log.warning("claim failed; will try again", channel=self.name, error=str(e))
                    await trio.sleep(1.0)
                    continue
                if not claims:
                    with trio.move_on_after(q.poll_interval):
                        await wake.wait()
                    continue
                if len(claims) < want and q.claim_linger_ms:
                    # Work arrives a request at a time; claiming each as it comes costs a transaction per
                    # delivery. A short wait lets the next claim take what arrived meanwhile.
                    linger = trio.current_time() + q.claim_linger_ms / 1000
                for cl in claims:
                    self.inflight += 1
                    self.unsent.add(cl.delivery_id)
                else:
                    linger = 0.0
                for cl in claims:
                    if self.draining:
                        break
                    await self.window.acquire()
                    senders.start_soon(self._send_one, cl)
                if linger:
                    await trio.sleep_until(linger)
            # Draining: nothing new is claimed; what is not yet sending goes back to the queue.
            await self._release_unsent()

    def _claimer(self, want: int) -> Callable[[sa.Connection], list[Claim]]:
        now = time.time()
        lease = self.cfg.queue.lease_seconds

        def claim(conn: sa.Connection) -> list[Claim]:
            return queue_store.claim(
                conn, channel=self.name, node=self.node, now=now, lease=lease, limit=want
            )

        return claim

    async def drain(self) -> None:
        self.draining = True

    async def _release_unsent(self) -> None:
        ids = list(self.unsent)
        if not ids:
            return
        now = time.time()
        with trio.CancelScope(shield=True):
            n = await self.gw.db.write(lambda c: queue_store.release(c, delivery_ids=ids, now=now))
        self.unsent.clear()
        log.info("returned unsent claims to the queue", channel=self.name, count=n)

    async def _send_one(self, cl: Claim) -> None:
        try:
            result, n_segments = await self._attempt(cl)
            await self._record(result)
            if result.state == DeliveryState.SUBMITTED:
                self.metrics_submitted(n_segments, "ok")
        finally:
            self.inflight -= 1
            self.window.release()

    def metrics_submitted(self, n: int, result: str) -> None:
        self.gw.metrics.segments_submitted.labels(self.name, result).inc(n)

    async def _attempt(self, cl: Claim) -> tuple[SubmitResult, int]:
        q = self.cfg.queue
        now = time.time()
        if now >= cl.expires_at:
            self.unsent.discard(cl.delivery_id)
            return SubmitResult(
                cl.delivery_id, DeliveryState.EXPIRED, "validity period ended in the queue"
            ), 0
        if self.ch.kind == "voice":
            # A call reads the whole text: one "segment", the text in UTF-8, for the driver to speak.
            wire = [OutboundSegment(1, 1, data_coding=8, short_message=cl.text.encode("utf-8"))]
        else:
            try:
                plan = split.plan(cl.text, concat=self.ch.concat, max_segments=q.max_segments)
            except split.TooManySegments as e:
                self.unsent.discard(cl.delivery_id)
                return SubmitResult(cl.delivery_id, DeliveryState.FAILED, str(e)), 0
            wire = split.encode(plan, concat=self.ch.concat, ref=cl.concat_ref)
        await self.bucket.take(len(wire))
        source = self.ch.service_number + cl.extension
        started = time.monotonic()
        self.unsent.discard(cl.delivery_id)
        outcomes: list[SubmitOutcome] = []
        error: SubmitError | None
        try:
            outcomes = await self.driver.submit(cl.recipient, source, wire)
        except Exception as e:  # a driver bug must not lose the delivery
            log.exception("driver raised on submit", channel=self.name, delivery_id=cl.delivery_id)
            error = SubmitError(0, f"driver error: {e}", retriable=True)
        else:
            error = next((o.error for o in outcomes if o.error is not None), None)
        self.gw.metrics.submit_latency.labels(self.name).observe(time.monotonic() - started)
        if error is None:
            segs = [
                SegmentRecord(seq=i + 1, total=len(outcomes), carrier_id=o.carrier_id or "")
                for i, o in enumerate(outcomes)
            ]
            return SubmitResult(cl.delivery_id, DeliveryState.SUBMITTED, segments=segs), len(wire)
        self.metrics_submitted(len(wire), "retry" if error.retriable else "rejected")
        if error.throttled:
            self.bucket.pause(1.0)
        reason = f"{error.name} (0x{error.code:02X})" if error.code else error.name
        d = retry_rules.decide(
            now=time.time(),
            attempts=cl.attempts,
            max_attempts=q.max_attempts,
            expires_at=cl.expires_at,
            retriable=error.retriable,
            reason=reason,
            base=q.retry_base_seconds,
            cap=q.retry_max_seconds,
            rng=self.rng,
        )
        if d.state == DeliveryState.QUEUED:
            self.gw.metrics.retries.labels(self.name).inc()
            log.info("submit will be retried", delivery_id=cl.delivery_id, reason=reason, attempt=cl.attempts)
        code = error.code or None
        return SubmitResult(cl.delivery_id, d.state, d.reason, d.not_before, error_code=code), len(wire)

    async def _record(self, result: SubmitResult) -> None:
        delay = 0.5
        while True:
            now = time.time()
            try:
                with trio.CancelScope(shield=True):
                    await self.gw.db.write_item(
                        queue_store.record_result_items,
                        queue_store.ResultItem(self.name, result, now, self.gw.held),
                    )
                break
            except Exception as e:
                # The send happened; its record must not be dropped. Keep trying: the lease keeps other
                # nodes off this delivery, and if we die the delivery is sent again (counted).
                log.warning(
                    "could not record a submit outcome; retrying",
                    error=str(e),
                    delivery_id=result.delivery_id,
                )
                await trio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if result.state not in (DeliveryState.SUBMITTED, DeliveryState.QUEUED):
            self.gw.metrics.deliveries_final.labels(result.state.value).inc()
            self.gw.note_final()
            self.gw.signal_events()
            log.info(
                "delivery final",
                delivery_id=result.delivery_id,
                state=result.state.value,
                reason=result.reason,
            )
