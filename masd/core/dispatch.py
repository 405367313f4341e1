"""Dispatch: one task per channel that claims queued deliveries and hands them to the channel's driver.

The dispatcher claims no more than the channel's window has room for, paces segments with a token
bucket at the channel's rate and hands each delivery to the driver: through ``submit_nowait`` with a
callback when the driver takes it so and nothing needs waiting for (no task per delivery: at thousands a
second their scheduling is a large share of the CPU), else in a task of its own through ``submit``. One
recorder task writes the outcomes through the group committer, all that finished while its previous
write ran in one write. A claim holds its window slot until its outcome is written, so what a crash can
make the carrier see twice (the claims outstanding, counted on restart) never exceeds the window. A
retriable error puts the delivery back with backoff. A throttling answer is flow control: the attempt
does not count, the delivery waits, and the channel's rate is cut and recovered step by step
(:mod:`masd.core.pacing`). The segments a carrier acknowledged are recorded whatever happens to the
rest, so a later attempt sends only the others, with the same concatenation reference. A channel with
a backup also runs its :class:`~masd.core.failover.FailoverWatch` here, which hands its queued work to
the backup while the link stays down. On shutdown it stops claiming, lets what is in flight finish
until the drain deadline, and returns unsent claims to the queue.
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
from masd.core import signature as signature_rules
from masd.core import split
from masd.core.failover import FailoverWatch
from masd.core.gateway import Gateway, UnrecordedOutcomes
from masd.core.pacing import AdaptiveRate
from masd.core.states import DeliveryState
from masd.store import queue as queue_store
from masd.store.queue import Claim, SegmentRecord, SubmitResult
from masd_adapters.base import ChannelDriver, OutboundSegment, SubmitError, SubmitOutcome

__all__ = ["Dispatcher", "TokenBucket"]

log = structlog.get_logger("masd.dispatch")

_TEXTS_REMEMBERED = 256


class TokenBucket:
    """Paces sends at ``rate`` per second with a burst of one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp: float | None = None  # set on first use: the bucket may be built outside trio.run
        self._lock = trio.Lock()

    async def take(self, n: int = 1) -> None:
        if self.take_nowait(n):
            return
        async with self._lock:  # first come, first served
            while not self._take_now(n):
                await trio.sleep(max(0.0005, (n - self.tokens) / self.rate))

    def take_nowait(self, n: int = 1) -> bool:
        """Take ``n`` tokens if nobody waits for tokens and they are there; no lock and no checkpoint,
        which at thousands of sends a second are a noticeable share of the dispatcher's CPU."""
        return not self._lock.locked() and self._take_now(n)

    def give_back(self, n: int) -> None:
        """Return tokens taken for a send that did not happen."""
        self.tokens = min(self.capacity, self.tokens + n)

    def _take_now(self, n: int) -> bool:
        now = trio.current_time()
        if self.stamp is None:
            self.stamp = now
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        # The tolerance keeps float rounding (0.9999… tokens) from spinning on sub-µs sleeps.
        if self.tokens >= n - 1e-6 or self.tokens >= self.capacity - 1e-6:
            self.tokens -= n
            return True
        return False

    def set_rate(self, rate: float) -> None:
        """Send at ``rate`` from now on (the carrier throttled, or the channel recovers)."""
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = min(self.tokens, self.capacity)


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
        self.pace = AdaptiveRate(ch.rate)  # the rate the carrier lets us send at; see masd.core.pacing
        self.window = trio.Semaphore(ch.window)
        self.inflight = 0
        self.unsent: set[int] = set()
        self.draining = False
        self.rng = random.Random()
        # Outcomes waiting for the recorder, which writes all that gathered meanwhile in one write.
        self._outcomes: list[tuple[SubmitResult, int]] = []
        self._outcomes_ready = trio.Event()
        self._sending = 0  # sender tasks not yet finished
        self._room = trio.Event()  # set when recorded outcomes free window slots
        self._texts: dict[str, split.Plan | list[OutboundSegment]] = {}  # see _wire
        # A driver whose protocol cuts texts its own way (CMPP) encodes them as the Gateway counted them.
        self._segmenter = type(driver).segmenter(driver.settings)
        self._unrecorded = gateway.unrecorded[name] = UnrecordedOutcomes()
        m = gateway.metrics
        self._rate_gauge = m.channel_rate.labels(name)
        self._rate_gauge.set(ch.rate)
        self._throttles = m.child(m.segments_submitted, name, "throttled")
        self._latency = m.child(m.submit_latency, name)
        self._submitted_ok = m.child(m.segments_submitted, name, "ok")
        self._resend = gateway.resend_policies.get(name)
        self.failover: FailoverWatch | None = None
        if ch.backup is not None:
            self.failover = FailoverWatch(
                name,
                ch.backup,
                ch.failover_after_seconds,
                up=lambda: driver.up,
                state=gateway.failover,
                db=gateway.db,
                metrics=m,
                wake=gateway.wake,
            )
        self._watching = trio.CancelScope()  # the failover watch's; ended by drain

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        q = self.cfg.queue
        db = self.gw.db
        async with trio.open_nursery() as senders:
            senders.start_soon(self._recorder, senders)
            senders.start_soon(self._keep_pace)
            if self.failover is not None:
                senders.start_soon(self._watch_failover)
            task_status.started()
            while not self.draining:
                if not self.driver.up:
                    await trio.sleep(q.poll_interval)
                    continue
                # Claims count against the window from the start: whatever is claimed when the process
                # dies is counted as possibly sent twice, and that count must stay within the window.
                room = self.ch.window - self.inflight
                # Claim about a second's worth at the channel's rate, so leases are never held long.
                want = min(room, q.claim_batch, max(1, math.ceil(self.pace.rate)))
                if want <= 0:
                    self._room = trio.Event()
                    await self._room.wait()
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
                linger = 0.0
                if len(claims) < want and q.claim_linger_ms:
                    # Work arriving a request at a time is claimed a few at a time; a short wait lets the
                    # next claim take what arrived meanwhile (fewer claim statements, more latency).
                    linger = trio.current_time() + q.claim_linger_ms / 1000
                for cl in claims:
                    self.inflight += 1
                    self.unsent.add(cl.delivery_id)
                for i, cl in enumerate(claims):
                    if not self.draining:
                        try:
                            self.window.acquire_nowait()
                        except trio.WouldBlock:
                            await self.window.acquire()
                            if self.draining:
                                self.window.release()
                    if self.draining:
                        # Never to be sent (drain began while they were claimed): _release_unsent gives
                        # them back to the queue, and the daemon's drain must not wait for them.
                        self.inflight -= len(claims) - i
                        break
                    self._start(cl, senders)
                if linger:
                    await trio.sleep_until(linger)
            # Draining: nothing new is claimed; what is not yet sending goes back to the queue.
            await self._release_unsent()

    async def _keep_pace(self) -> None:
        """Raise a throttled channel's rate step by step while the carrier stays calm; ends with the
        recorder (once draining)."""
        while not (self.draining and not self._sending):
            await trio.sleep(1.0)
            if self.pace.slowed:
                self._set_rate(self.pace.tick(time.monotonic()))

    async def _watch_failover(self) -> None:
        assert self.failover is not None
        with self._watching:
            await self.failover.run()

    def _set_rate(self, rate: float) -> None:
        if rate != self.bucket.rate:
            self.bucket.set_rate(rate)
            self._rate_gauge.set(rate)
            log.info("channel rate", channel=self.name, rate=round(rate, 2), configured=self.ch.rate)

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
        self._watching.cancel()
        self._outcomes_ready.set()  # the recorder ends once nothing is in flight
        self._room.set()

    async def _release_unsent(self) -> None:
        ids = list(self.unsent)
        if not ids:
            return
        self.unsent.clear()  # before the write: a sender still waiting for tokens must see it is not its own
        now = time.time()
        with trio.CancelScope(shield=True):
            n = await self.gw.db.write(lambda c: queue_store.release(c, delivery_ids=ids, now=now))
        log.info("returned unsent claims to the queue", channel=self.name, count=n)

    async def _send_one(self, cl: Claim, wire: list[OutboundSegment]) -> None:
        outcome = None
        try:
            outcome = await self._attempt(cl, wire)
        finally:
            if outcome is None:  # cancelled, or given back to the queue while it waited for tokens
                self._abandon()
        if outcome is not None:
            self._outcome(outcome)

    async def _recorder(self, nursery: trio.Nursery) -> None:
        """Record submit outcomes: everything that gathered while the previous write ran goes in one write,
        then their window slots are freed. Should the store refuse such a write, each of its outcomes is
        recorded by a task of its own, so that one the store keeps refusing holds only its own slot. Ends
        when draining and no sender is left."""
        try:
            while True:
                if not self._outcomes:
                    if self.draining and not self._sending:
                        return
                    self._outcomes_ready = trio.Event()
                    await self._outcomes_ready.wait()
                    continue
                batch, self._outcomes = self._outcomes, []
                # Receipts waiting for these outcomes go once this write is queued (in _record_batch,
                # before its first checkpoint, so theirs queue after it).
                self._unrecorded.queued()
                # The same transaction claims as many new deliveries as this batch frees slots: the slot
                # passes from the recorded claim to the new one without a transaction of its own between.
                relay = (
                    0 if self.draining or not self.driver.up else min(len(batch), self.cfg.queue.claim_batch)
                )
                try:
                    with trio.CancelScope(shield=True):
                        claims = await self._record_batch([result for result, _ in batch], relay)
                except Exception as e:
                    log.warning(
                        "could not record submit outcomes together; recording each alone",
                        channel=self.name,
                        error=str(e) or repr(e),
                    )
                    for outcome in batch:
                        nursery.start_soon(self._record_alone, outcome)
                    continue
                self._count_submitted(batch)
                await self._relay(len(batch), claims, nursery)
        finally:
            self._unrecorded.queued()  # nothing is left to wait for: receipts go as they are
            if self._outcomes:
                # Cancelled (the drain deadline passed) with outcomes not yet written: the sends happened,
                # so try once to record them; if that fails their leases run out and they go again.
                batch, self._outcomes = self._outcomes, []
                with trio.CancelScope(shield=True):
                    try:
                        await self._record_batch([result for result, _ in batch])
                    except Exception as e:
                        log.warning("could not record submit outcomes on shutdown", error=str(e) or repr(e))
                self._free(len(batch))

    async def _relay(self, freed: int, claims: list[Claim], nursery: trio.Nursery) -> None:
        """Start the claims a recorder transaction made in the ``freed`` slots it emptied; free the rest."""
        for cl in claims:
            self.unsent.add(cl.delivery_id)
        if self.draining:
            # Drain began during the write: these go back to the queue unsent, and their slots are free.
            self._free(freed)
            await self._release_unsent()
            return
        self._free(freed - len(claims))
        for cl in claims:
            self._start(cl, nursery)

    def _start(self, cl: Claim, nursery: trio.Nursery) -> None:
        """Send a claim that holds a window slot: without a task when the driver allows, else in one."""
        self._sending += 1
        prepared = self._prepare(cl)
        if isinstance(prepared, tuple):  # final without a send
            self._outcome(prepared)
        elif not self._send_nowait(cl, prepared):
            nursery.start_soon(self._send_one, cl, prepared)

    async def _record_alone(self, outcome: tuple[SubmitResult, int]) -> None:
        try:
            await self._record(outcome[0])
        finally:
            self._free(1)
        self._count_submitted([outcome])

    def _free(self, n: int) -> None:
        self.inflight -= n
        for _ in range(n):
            self.window.release()
        self._room.set()

    def _count_submitted(self, outcomes: list[tuple[SubmitResult, int]]) -> None:
        n = sum(len(result.segments) for result, _ in outcomes)
        if n:
            self._submitted_ok.inc(n)

    def metrics_submitted(self, n: int, result: str) -> None:
        m = self.gw.metrics
        m.child(m.segments_submitted, self.name, result).inc(n)

    def _send_nowait(self, cl: Claim, wire: list[OutboundSegment]) -> bool:
        """Send ``cl`` without a task of its own when nothing needs waiting for: the bucket has the tokens
        and the driver can queue it at once (``submit_nowait``, which the SMPP driver offers); its outcome
        then arrives through a callback. False: nothing happened, send it in a task."""
        if not self.bucket.take_nowait(len(wire)):
            return False
        started = time.monotonic()

        def done(outcomes: list[SubmitOutcome]) -> None:
            try:
                outcome = self._conclude(cl, wire, started, outcomes)
            except BaseException:
                self._abandon()
                raise
            self._outcome(outcome)

        if not self.driver.submit_nowait(cl.recipient, self.ch.service_number + cl.extension, wire, done):
            self.bucket.give_back(len(wire))
            return False
        self.unsent.discard(cl.delivery_id)
        return True

    def _abandon(self) -> None:
        """A send ended without an outcome to record: its slot is free again at once."""
        self._free(1)
        self._sending -= 1
        self._outcomes_ready.set()

    def _outcome(self, outcome: tuple[SubmitResult, int]) -> None:
        """A send ended: its outcome goes to the recorder. Its window slot stays taken until the recorder
        has written it, so that what was sent and not yet recorded (sent again after a crash) stays within
        the window."""
        self._outcomes.append(outcome)
        result = outcome[0]
        if result.segments:
            ids = self._unrecorded.ids
            for seg in result.segments:
                if seg.carrier_id:
                    ids.add(seg.carrier_id)
        self._sending -= 1
        self._outcomes_ready.set()

    def _prepare(self, cl: Claim) -> list[OutboundSegment] | tuple[SubmitResult, int]:
        """The segments to send for ``cl``, or its outcome when it cannot be sent at all."""
        if time.time() >= cl.expires_at:
            self.unsent.discard(cl.delivery_id)
            return SubmitResult(
                cl.delivery_id, DeliveryState.EXPIRED, "validity period ended in the queue"
            ), 0
        if self.ch.kind == "voice":
            # A call reads the whole text: one "segment", the text in UTF-8, for the driver to speak.
            return [OutboundSegment(1, 1, data_coding=8, short_message=cl.text.encode("utf-8"))]
        try:
            wire = self._wire(cl.text, cl.concat_ref)
        except split.TooManySegments as e:
            self.unsent.discard(cl.delivery_id)
            return SubmitResult(cl.delivery_id, DeliveryState.FAILED, str(e)), 0
        if cl.sent:
            # An earlier attempt had these acknowledged: send the rest, with the same reference.
            wire = [seg for seg in wire if seg.seq not in cl.sent]
            if not wire:
                self.unsent.discard(cl.delivery_id)
                return SubmitResult(cl.delivery_id, DeliveryState.SUBMITTED, resumed=True), 0
        return wire

    async def _attempt(self, cl: Claim, wire: list[OutboundSegment]) -> tuple[SubmitResult, int] | None:
        """Send ``cl`` as ``wire``; its outcome, or None if it was given back to the queue (draining)
        meanwhile."""
        await self.bucket.take(len(wire))
        if cl.delivery_id not in self.unsent:
            return None  # _release_unsent gave it back while we waited: it must not go out as well
        source = self.ch.service_number + cl.extension
        started = time.monotonic()
        self.unsent.discard(cl.delivery_id)
        try:
            outcomes = await self.driver.submit(cl.recipient, source, wire)
        except Exception as e:  # a driver bug must not lose the delivery
            log.exception("driver raised on submit", channel=self.name, delivery_id=cl.delivery_id)
            return self._conclude(cl, wire, started, [], SubmitError(0, f"driver error: {e}", retriable=True))
        return self._conclude(cl, wire, started, outcomes)

    def _conclude(
        self,
        cl: Claim,
        wire: list[OutboundSegment],
        started: float,
        outcomes: list[SubmitOutcome],
        error: SubmitError | None = None,
    ) -> tuple[SubmitResult, int]:
        """What the driver's answer means for the delivery: submitted, back to the queue, or final. The
        segments it acknowledged are recorded in every case, so a later attempt sends only the others."""
        q = self.cfg.queue
        acked: list[SegmentRecord] = []
        for seg, o in zip(wire, outcomes, strict=False):
            if o.error is not None:
                break
            acked.append(SegmentRecord(seq=seg.seq, total=seg.total, carrier_id=o.carrier_id or ""))
        if error is None:
            error = next((o.error for o in outcomes if o.error is not None), None)
            if error is None and len(acked) < len(wire):
                error = SubmitError(0, "the driver answered fewer segments than it was given", retriable=True)
        self._latency.observe(time.monotonic() - started)
        resumed = bool(cl.sent)
        if error is None:
            return SubmitResult(
                cl.delivery_id, DeliveryState.SUBMITTED, segments=acked, resumed=resumed
            ), len(wire)
        unsent = len(wire) - len(acked)
        reason = f"{error.name} (0x{error.code:02X})" if error.code else error.name
        now = time.time()
        if error.throttled:
            # Flow control, not a failure: the attempt does not count, the channel slows down, and the
            # delivery waits its turn at the lower rate; only its validity period can end it.
            self._throttles.inc(unsent)
            self._set_rate(self.pace.throttled(time.monotonic()))
            wait = min(30.0, max(0.5, 1.0 / self.pace.rate) * (1 + self.rng.random()))
            if now + wait >= cl.expires_at:
                return SubmitResult(
                    cl.delivery_id,
                    DeliveryState.EXPIRED,
                    f"{reason}: the carrier throttled until the validity period ended",
                    segments=acked,
                    error_code=error.code or None,
                    uncounted=True,
                ), len(wire)
            m = self.gw.metrics
            m.child(m.retries, self.name).inc()
            return SubmitResult(
                cl.delivery_id,
                DeliveryState.QUEUED,
                f"{reason}: the carrier throttled; waiting",
                now + wait,
                segments=acked,
                error_code=error.code or None,
                uncounted=True,
            ), len(wire)
        self.metrics_submitted(unsent, "retry" if error.retriable else "rejected")
        d = retry_rules.decide(
            now=now,
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
            m = self.gw.metrics
            m.child(m.retries, self.name).inc()
            log.info("submit will be retried", delivery_id=cl.delivery_id, reason=reason, attempt=cl.attempts)
        code = error.code or None
        return SubmitResult(
            cl.delivery_id, d.state, d.reason, d.not_before, segments=acked, error_code=code
        ), len(wire)

    def _wire(self, text: str, ref: int) -> list[OutboundSegment]:
        """The segments for ``text``, with the channel's signature unless it carries one (the Gateway
        counted them so): planning and encoding cost more than the rest of a send. A text that fits one
        segment takes a shortcut; longer ones are remembered, since a message to many recipients is as
        many deliveries of one text: with their segments when those do not depend on the concatenation
        reference (message_payload), else with their plan. Signed first, so what is remembered is what
        goes out."""
        if self.ch.signature:
            text = signature_rules.signed(text, self.ch.signature, self.ch.signature_position)
        concat = self.ch.concat
        if self._segmenter is not None:
            return self._segmenter.encode(
                text, concat=concat, ref=ref, max_segments=self.cfg.queue.max_segments
            )
        if concat != "payload":
            one = split.single_segment(text)
            if one is not None:
                return one
        known = self._texts.get(text)
        if known is None:
            plan = split.plan(text, concat=concat, max_segments=self.cfg.queue.max_segments)
            if len(self._texts) >= _TEXTS_REMEMBERED:
                self._texts.clear()
            if concat == "payload" or len(plan.parts) == 1:
                known = self._texts[text] = split.encode(plan, concat=concat, ref=0)
            else:
                known = self._texts[text] = plan
        if isinstance(known, split.Plan):
            return split.encode(known, concat=concat, ref=ref)
        return list(known)

    async def _record_batch(self, results: list[SubmitResult], relay: int = 0) -> list[Claim]:
        """Write these outcomes; with ``relay``, claim up to that many deliveries in the same transaction
        (returned, already counted in the window)."""
        now = time.time()
        held = self.gw.held
        items = [queue_store.ResultItem(self.name, result, now, held, self._resend) for result in results]
        claims: list[Claim] = []
        if relay:
            claim = self._claimer(relay)

            def record_and_claim(conn: sa.Connection) -> list[Claim]:
                queue_store.record_result_items(conn, items)
                return claim(conn)

            claims = await self.gw.db.write(record_and_claim)
        else:
            await self.gw.db.write_items(queue_store.record_result_items, items)
        for result in results:
            self._finished(result)
        return claims

    async def _record(self, result: SubmitResult) -> None:
        delay = 0.5
        while True:
            now = time.time()
            try:
                with trio.CancelScope(shield=True):
                    await self.gw.db.write_item(
                        queue_store.record_result_items,
                        queue_store.ResultItem(self.name, result, now, self.gw.held, self._resend),
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
        self._finished(result)

    def _finished(self, result: SubmitResult) -> None:
        if result.state not in (DeliveryState.SUBMITTED, DeliveryState.QUEUED):
            m = self.gw.metrics
            m.child(m.deliveries_final, result.state.value).inc()
            self.gw.note_final()
            self.gw.signal_events()
            log.info(
                "delivery final",
                delivery_id=result.delivery_id,
                state=result.state.value,
                reason=result.reason,
            )
