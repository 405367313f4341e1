"""The core's public API: accept messages, look them up, act on the queue, take receipts and replies.

Every interface (HTTP, CLI, socket, DB polling) and every module (meeting, OA) goes through a
:class:`Gateway`; none of them writes the core's tables. Validation happens here, once, before anything
is stored: a request with one bad field is refused whole with the field's name and the reason.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
import trio

from masd.config import ChannelConfig, Config
from masd.core import recipients as rcpt
from masd.core import replies as routing
from masd.core import reply_parts, split
from masd.core import signature as signature_rules
from masd.core.apps import App, Forbidden, QuotaExceeded, RateLimited, Refused, format_rate
from masd.core.failover import Failover
from masd.core.states import DeliveryState
from masd.metrics import Metrics
from masd.store import apps as app_store
from masd.store import events as event_store
from masd.store import messages as msg_store
from masd.store import queue as queue_store
from masd.store import receipts as receipt_store
from masd.store import replies as reply_store
from masd.store import reply_parts as reply_part_store
from masd.store import resends as resend_store
from masd.store.db import Database
from masd.store.limits import Charge, Over
from masd_adapters.base import (
    ChannelEvents,
    InboundReceipt,
    InboundReply,
    InboundReplyPart,
    Segmenter,
    driver_class,
    parse_options,
)
from masd_adapters.voice import call_outcome

__all__ = [
    "Accepted",
    "App",
    "Forbidden",
    "Gateway",
    "MessageAction",
    "QueueFull",
    "QuotaExceeded",
    "RateLimited",
    "Refused",
    "Rejected",
    "SubmitRequest",
]

log = structlog.get_logger("masd.core")

MAX_VALIDITY = 30 * 86400  # seconds a message may stay valid: a carrier keeps trying for days, not months
MAX_SCHEDULE_AHEAD = 10 * 366 * 86400  # how far ahead a send may be scheduled


class Rejected(ValueError):
    """A request that cannot be accepted; nothing of it was stored."""

    def __init__(
        self,
        field: str,
        reason: str,
        *,
        index: int | None = None,
        value: Any = None,
        message_index: int | None = None,
    ) -> None:
        self.field = field
        self.reason = reason
        self.index = index  # within the field: the position of the recipient refused
        self.value = value
        self.message_index = message_index  # in a batch: the position of the message refused
        super().__init__(f"{field}: {reason}")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "reason": self.reason}
        if self.message_index is not None:
            out["message_index"] = self.message_index
        if self.index is not None:
            out["index"] = self.index
        if self.value is not None:
            out["value"] = self.value
        return out


class QueueFull(RuntimeError):
    """The queue holds its configured maximum; new work is refused until it drains."""


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitRequest:
    text: str
    recipients: Sequence[str]
    priority: int | None = None
    send_at: float | None = None  # epoch seconds
    validity_seconds: int | None = None
    client_ref: str | None = None
    extension: str = ""  # after the app's own extension, if it has one
    channel: str | None = None
    kind: str = "sms"


@dataclasses.dataclass(frozen=True, slots=True)
class Accepted:
    message_id: int
    recipients: list[str]
    segments: int
    encoding: str
    created: bool


@dataclasses.dataclass(frozen=True, slots=True)
class MessageAction:
    """What an app's cancel or retry of its message did."""

    deliveries: int  # cancelled, or queued again
    counts: dict[str, int]  # the message's deliveries per state after it


class UnrecordedOutcomes:
    """Carrier ids of one channel whose submit outcome waits for the dispatcher's recorder.

    A carrier may send the receipt before that outcome's write is queued (the submit response and the
    receipt arrive within a millisecond of each other). Stored then, the receipt finds no segment and is
    held until the outcome applies it: two more reads and three more writes. Waiting until the recorder
    has queued its write, which it does at its next turn, lets the receipt be applied as it is stored."""

    __slots__ = ("_queued", "ids")

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self._queued = trio.Event()

    def queued(self) -> None:
        """The recorder has queued the write of every outcome these ids belong to."""
        self.ids.clear()
        done, self._queued = self._queued, trio.Event()
        done.set()

    async def wait_for(self, carrier_ids: Sequence[str]) -> None:
        ids = self.ids
        if ids and not ids.isdisjoint(carrier_ids):
            await self._queued.wait()


class Gateway(ChannelEvents):
    def __init__(self, cfg: Config, db: Database, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.db = db
        self.metrics = metrics or Metrics()
        self._ref = itertools.count(random.randrange(1 << 16))
        self._pending = 0  # deliveries not final, from the last count plus what was accepted since
        self._wake: dict[str, trio.Event] = {name: trio.Event() for name in cfg.channels}
        # SQLite belongs to this machine's masd alone, so it can remember which receipts it holds.
        # The hint is right only where this process stores every receipt: not with send workers, whose
        # binds receive receipts for the daemon's submits and the other way round.
        one_sender = db.dialect == "sqlite" and cfg.send.workers == 0
        self.held = receipt_store.HeldReceipts() if one_sender else None
        self.on_events: Callable[[], None] | None = None  # a send worker tells the daemon
        self.unrecorded: dict[str, UnrecordedOutcomes] = {}  # by channel; see UnrecordedOutcomes
        self._events = trio.Event()
        # Called with (messages, deliveries) after new messages are stored; an intake worker tells the
        # daemon through it that there is work to claim.
        self.on_accepted: Callable[[int, int], None] | None = None
        # Which channels hand their work to a backup now (their dispatchers' FailoverWatch says so).
        self.failover = Failover()
        # What a failed receipt on each channel leads to (masd.store.resends).
        self.resend_policies = {
            name: resend_store.ResendPolicy(
                frozenset(ch.resend_states), ch.resend_delay_seconds, ch.resend_via
            )
            for name, ch in cfg.channels.items()
        }
        self._segmenters: dict[str, Segmenter | None] = {}

    # ----- accepting ---------------------------------------------------------------------------------

    def segmenter(self, channel: str) -> Segmenter | None:
        """How ``channel`` cuts a text into segments: its driver's :class:`Segmenter` (CMPP counts octets
        as SMPP does not), or None for the core's SMS splitter (:mod:`masd.core.split`). Asked of the
        driver's class, so that counting at accept agrees with sending wherever the message is accepted
        (the daemon, an intake worker, ``masd send``); looked up once per channel."""
        if channel in self._segmenters:
            return self._segmenters[channel]
        ch = self.cfg.channels[channel]
        found: Segmenter | None = None
        if ch.kind == "sms":
            cls = driver_class(ch.driver)
            found = cls.segmenter(parse_options(cls.Options, cls.driver, channel, ch.options))
        self._segmenters[channel] = found
        return found

    def route(self, recipient: str, kind: str = "sms") -> str:
        """The channel for a recipient: the longest matching prefix, else the first channel without any.
        (While that channel is failed over, :meth:`prepare` sends to its backup: :class:`Failover`.)"""
        best: tuple[int, str] | None = None
        fallback: str | None = None
        for name, ch in self.cfg.channels.items():
            if ch.kind != kind:
                continue
            if not ch.prefixes and fallback is None:
                fallback = name
            for p in ch.prefixes:
                if recipient.startswith(p) and (best is None or len(p) > best[0]):
                    best = (len(p), name)
        if best:
            return best[1]
        if fallback:
            return fallback
        for name, ch in self.cfg.channels.items():
            if ch.kind == kind:
                return name
        raise Rejected("kind", f"no {kind} channel is configured", value=kind)

    @staticmethod
    def _check_length(text: str, channel: str, ch: ChannelConfig, signature: str = "") -> None:
        """Rejected("text") if ``text`` (signed as the channel sends it) is longer than the channel takes."""
        if ch.max_text_length is not None and len(text) > ch.max_text_length:
            with_signature = f" with the signature {signature}" if signature else ""
            raise Rejected(
                "text",
                f"is {len(text)} characters{with_signature}; channel {channel} takes at most "
                f"{ch.max_text_length}",
            )

    def _count_segments(self, text: str, channel: str, ch: ChannelConfig, signature: str = "") -> int:
        """The segments a delivery of ``text`` (as the channel sends it: signed) on ``channel`` has on the
        wire; Rejected("text") if none can carry it, or if it is longer than the channel takes.
        ``signature``: the one masd added to the text, named in those errors."""
        self._check_length(text, channel, ch, signature)
        with_signature = f" with the signature {signature}" if signature else ""
        max_segments = self.cfg.queue.max_segments
        segmenter = self.segmenter(channel)
        try:
            if segmenter is not None:
                return segmenter.count(text, concat=ch.concat, max_segments=max_segments)
            parts = len(split.plan(text, concat=ch.concat, max_segments=max_segments).parts)
        except split.TooManySegments as e:
            raise Rejected("text", f"{e}{with_signature}" if signature else str(e)) from None
        except ValueError as e:  # e.g. an unpaired surrogate, which no encoding can carry
            raise Rejected("text", f"cannot be encoded: {e}") from None
        # message_payload carries the whole text in one PDU, with one receipt: that is what the delivery
        # waits for, whatever the network splits it into later.
        return 1 if ch.concat == "payload" else parts

    def _signature_position(
        self, routes: Sequence[tuple[str, str, str | None, str]]
    ) -> signature_rules.Position:
        """Where an app's signature goes in a text stored once for all its deliveries: where their
        channels want it; at the front, the common rule, when they disagree."""
        wanted = {self.cfg.channels[channel].signature_position for _, channel, _, _ in routes}
        return wanted.pop() if len(wanted) == 1 else "front"

    def prepare(
        self, req: SubmitRequest, *, interface: str, app_id: int | None, app: App | None = None
    ) -> msg_store.NewMessage:
        """Validate one request and turn it into rows; raise :class:`Rejected` naming the field."""
        q = self.cfg.queue
        if req.kind not in ("sms", "voice"):
            raise Rejected("kind", "must be sms or voice", value=req.kind)
        if not isinstance(req.text, str) or req.text == "":
            raise Rejected("text", "must not be empty")
        if len(req.text) > q.max_text_length:
            raise Rejected("text", f"is {len(req.text)} characters; the maximum is {q.max_text_length}")
        try:
            numbers = rcpt.validate_all(list(req.recipients))
        except rcpt.InvalidRecipient as e:
            raise Rejected(
                "recipients", e.reason, index=e.index if e.index >= 0 else None, value=e.value or None
            ) from None
        priority = q.default_priority if req.priority is None else req.priority
        if not 0 <= priority <= 9:
            raise Rejected("priority", "must be from 0 (lowest) to 9 (highest)", value=priority)
        validity = q.validity_seconds if req.validity_seconds is None else req.validity_seconds
        if validity <= 0:
            raise Rejected("validity_seconds", "must be a positive number of seconds", value=validity)
        if validity > MAX_VALIDITY:
            raise Rejected(
                "validity_seconds",
                f"is more than {MAX_VALIDITY} seconds (30 days), the longest masd keeps trying",
            )
        if req.extension and not req.extension.isdigit():
            raise Rejected("extension", "must be digits only", value=req.extension)
        extension = ((app.extension or "") if app else "") + (req.extension or "")
        if len(extension) > 12:
            raise Rejected(
                "extension",
                f"with the app's own extension it is {len(extension)} digits; the maximum is 12",
                value=req.extension,
            )
        if req.client_ref is not None and not 0 < len(req.client_ref) <= 128:
            raise Rejected("client_ref", "must be 1 to 128 characters")
        if req.channel is not None and req.channel not in self.cfg.channels:
            raise Rejected(
                "channel", f"no such channel; configured: {', '.join(self.cfg.channels)}", value=req.channel
            )
        if req.channel is not None and self.cfg.channels[req.channel].kind != req.kind:
            raise Rejected("channel", f"is not a {req.kind} channel", value=req.channel)
        now = time.time()
        if req.send_at is not None and not req.send_at <= now + MAX_SCHEDULE_AHEAD:
            raise Rejected("send_at", "is more than ten years ahead; a scheduled send must fall within them")
        start = max(now, req.send_at) if req.send_at is not None else now
        encoding: str
        try:
            encoding = split.choose_encoding(req.text)
        except ValueError as e:
            raise Rejected("text", str(e)) from None
        routes: list[tuple[str, str, str | None, str]] = []  # number, channel, home channel, routed
        for number in numbers:
            routed = req.channel or self.route(number, req.kind)
            # A channel failed over sends its new work to its backup too; the delivery comes home with
            # the rest when the channel is up again.
            channel, home = self.failover.divert(routed)
            routes.append((number, channel, home, routed))
        text = req.text
        app_signature = app.signature if app is not None and req.kind == "sms" else None
        if app_signature:
            # The app's signature is part of the app's text: stored signed, so no channel adds its own.
            text = signature_rules.signed(text, app_signature, self._signature_position(routes))
        deliveries = []
        # The segment count depends only on the text and the channel (its signature, its concatenation).
        counts: dict[str, int] = {}
        first = True
        for number, channel, home, routed in routes:
            resends = self.cfg.channels[routed].resend_undelivered
            if app is not None and app.resend is not None:
                resends = app.resend
            ch: ChannelConfig = self.cfg.channels[channel]
            if channel not in counts:
                if ch.kind == "voice":
                    # A call carries the whole text, unsigned: a signature is a rule for SMS.
                    wire = text
                    self._check_length(wire, channel, ch)
                    counts[channel] = 1
                else:
                    wire = signature_rules.signed(text, ch.signature, ch.signature_position)
                    # The signature masd added, for an error to name: the app's, else the channel's.
                    added = (
                        (app_signature or "") if text != req.text else ch.signature if wire != text else ""
                    )
                    counts[channel] = self._count_segments(wire, channel, ch, added)
                if first:
                    # What the first recipient's channel sends: with a signature, which may need UCS-2,
                    # in its own alphabet where its protocol has one (CMPP: ASCII, GBK).
                    segmenter = self.segmenter(channel) if ch.kind != "voice" else None
                    own = segmenter.encoding(wire) if segmenter is not None else None
                    if own is not None:
                        encoding = own
                    elif wire != req.text:
                        encoding = split.choose_encoding(wire)
                first = False
            n = counts[channel]
            deliveries.append(
                msg_store.NewDelivery(
                    recipient=number,
                    channel=channel,
                    segments=n,
                    concat_ref=next(self._ref) & 0xFFFF,
                    extension=extension,
                    max_resends=resends,
                    home_channel=home,
                )
            )
        if req.kind == "voice":
            encoding = "tts"
        return msg_store.NewMessage(
            text=text,
            encoding=encoding,
            interface=interface,
            priority=priority,
            expires_at=start + validity,
            max_attempts=q.max_attempts,
            deliveries=deliveries,
            app_id=app_id,
            client_ref=req.client_ref,
            send_at=req.send_at,
        )

    async def accept(
        self,
        requests: Sequence[SubmitRequest],
        *,
        interface: str,
        app_id: int | None = None,
        app: App | None = None,
        on_behalf_of: App | None = None,
        notify: bool = False,
        count_refusals: bool = True,
    ) -> list[Accepted]:
        """Validate every request, then store them all in one transaction. Raises :class:`Rejected` (in
        a batch with ``message_index`` set to the request's position), :class:`Refused` (the app may not,
        now or at all: :class:`Forbidden`, :class:`RateLimited`, :class:`QuotaExceeded`) or
        :class:`QueueFull`; then nothing is stored.

        ``app``: the authenticated app, whose channel kinds, rate and quota are enforced here for every
        interface; its rate and quota are charged in the transaction that stores the deliveries, so
        parallel requests and other nodes never overshoot them. ``on_behalf_of``: a module sending for
        the app that asked it (a meeting's creator): that app's kinds, rate and quota are enforced and
        charged instead, while the messages belong to ``app``, whose events the module reads.
        ``notify``: the app wants an event when each delivery ends (socket, webhooks, DB polling read
        them)."""
        if app is not None:
            app_id = app.id
        payer = on_behalf_of or app
        rows: list[msg_store.NewMessage] = []
        for i, req in enumerate(requests):
            try:
                if payer is not None:
                    payer.check_kind(req.kind)
                rows.append(self.prepare(req, interface=interface, app_id=app_id, app=app))
            except (Rejected, Refused) as e:
                if count_refusals:
                    why = "invalid" if isinstance(e, Rejected) else "forbidden"
                    self.metrics.requests_refused.labels(interface, why).inc()
                if len(requests) > 1:
                    e.field = f"messages[{i}].{e.field}"
                    e.message_index = i
                raise
        n_deliveries = sum(len(r.deliveries) for r in rows)
        charge: Charge | None = None
        if payer is not None and (payer.rate is not None or payer.quota_per_day is not None):
            charge = Charge(payer.id, time.strftime("%Y-%m-%d"), payer.quota_per_day, payer.rate)
        if notify:
            rows = [dataclasses.replace(r, notify=True) for r in rows]
        if self._pending + n_deliveries > self.cfg.queue.max_pending:
            if count_refusals:
                self.metrics.requests_refused.labels(interface, "queue_full").inc()
            raise QueueFull(
                f"the queue holds {self._pending} unfinished deliveries and its limit is "
                f"{self.cfg.queue.max_pending}; try again later (queue.max_pending raises the limit)"
            )
        now = time.time()
        item = (rows, now, charge)
        try:
            stored = await self.db.write_item(msg_store.insert_message_items, item, bulk_rows=n_deliveries)
        except Exception as e:
            if "unique" not in str(e).lower() and "duplicate" not in str(e).lower():
                raise
            # Another node stored the same client_ref a moment ago: read it back instead.
            stored = await self.db.write_item(msg_store.insert_message_items, item, bulk_rows=n_deliveries)
        if isinstance(stored, Over):
            assert payer is not None
            refusal = _over_limit(payer, stored, n_deliveries, charge)
            if count_refusals:
                self.metrics.requests_refused.labels(interface, type(refusal).__name__.lower()).inc()
            raise refusal
        inserted: list[msg_store.Inserted] = stored
        out = []
        new_messages = new_deliveries = 0
        for ins, row in zip(inserted, rows, strict=True):
            out.append(
                Accepted(
                    message_id=ins.message_id,
                    recipients=[x.recipient for x in row.deliveries],
                    segments=max(x.segments for x in row.deliveries),
                    encoding=row.encoding,
                    created=ins.created,
                )
            )
            if ins.created:
                new_messages += 1
                new_deliveries += len(row.deliveries)
                if len(rows) == 1:
                    log.info(
                        "message accepted",
                        message_id=ins.message_id,
                        interface=interface,
                        recipients=len(row.deliveries),
                        segments=out[-1].segments,
                    )
        if new_messages:
            self._count_accepted(new_messages, new_deliveries, interface)
        if len(rows) > 1:
            # One line per batch: a 1,000-message batch should not write 1,000 log lines.
            log.info(
                "messages accepted",
                interface=interface,
                messages=len(out),
                first_id=min(a.message_id for a in out),
                last_id=max(a.message_id for a in out),
                deliveries=n_deliveries,
            )
        for name in {x.channel for r in rows for x in r.deliveries}:
            self.wake(name)
        if new_messages and self.on_accepted is not None:
            self.on_accepted(new_messages, new_deliveries)
        return out

    def accepted_elsewhere(self, messages: int, deliveries: int, interface: str) -> None:
        """Messages another process (an intake worker) stored in this store: count them, and wake every
        channel's dispatcher to claim them."""
        self._count_accepted(messages, deliveries, interface)
        for name in self.cfg.channels:
            self.wake(name)

    def _count_accepted(self, messages: int, deliveries: int, interface: str) -> None:
        """Newly stored work, wherever it was accepted: the pending count and the accepted metrics."""
        self._pending += deliveries
        m = self.metrics
        m.child(m.messages_accepted, interface).inc(messages)
        m.child(m.deliveries_accepted, interface).inc(deliveries)

    async def send(
        self,
        req: SubmitRequest,
        *,
        interface: str,
        app_id: int | None = None,
        app: App | None = None,
        on_behalf_of: App | None = None,
        notify: bool = False,
    ) -> Accepted:
        return (
            await self.accept(
                [req], interface=interface, app_id=app_id, app=app, on_behalf_of=on_behalf_of, notify=notify
            )
        )[0]

    async def usage_today(self, app: App) -> int:
        day = time.strftime("%Y-%m-%d")
        return await self.db.read(lambda c: msg_store.usage_on(c, app.id, day))

    def wake(self, channel: str) -> None:
        ev = self._wake.get(channel)
        if ev is not None:
            ev.set()
            self._wake[channel] = trio.Event()

    def wake_event(self, channel: str) -> trio.Event:
        return self._wake[channel]

    # ----- looking up and acting -----------------------------------------------------------------------

    async def get_message(self, message_id: int, *, app_id: int | None = None) -> dict[str, Any] | None:
        return await self.db.read(lambda c: msg_store.get_message(c, message_id, app_id=app_id))

    async def list_deliveries(self, **kw: Any) -> list[dict[str, Any]]:
        return await self.db.read(lambda c: msg_store.list_deliveries(c, **kw))

    async def state_counts(self) -> dict[str, int]:
        return await self.db.read(msg_store.state_counts)

    async def cancel(self, *, delivery_ids: Sequence[int] = (), message_id: int | None = None) -> int:
        now = time.time()
        n = await self.db.write(
            lambda c: msg_store.cancel(c, delivery_ids=delivery_ids, message_id=message_id, now=now)
        )
        self.metrics.deliveries_final.labels(DeliveryState.CANCELLED.value).inc(n)
        if n:
            self.signal_events()
        return n

    async def cancel_message(self, message_id: int, *, app_id: int) -> MessageAction | None:
        """An app cancels its own message: its deliveries still queued end ``cancelled`` (the app is
        told each). None when the message is not the app's (or does not exist)."""
        now = time.time()

        def do(conn: Any) -> MessageAction | None:
            if not msg_store.owns(conn, message_id, app_id):
                return None
            n = msg_store.cancel(conn, message_id=message_id, now=now, reason="cancelled by the app")
            return MessageAction(n, msg_store.counts_of(conn, message_id))

        done = await self.db.write(do)
        if done is not None and done.deliveries:
            self.metrics.deliveries_final.labels(DeliveryState.CANCELLED.value).inc(done.deliveries)
            self.signal_events()
            log.info(
                "message cancelled by its app",
                message_id=message_id,
                app_id=app_id,
                deliveries=done.deliveries,
            )
        return done

    async def retry_message(self, message_id: int, *, app_id: int) -> MessageAction | None:
        """An app sends its own message again where it failed: its deliveries that ended unsuccessfully
        (not delivered, not cancelled) are queued again with fresh attempts, resends and the message's
        own validity period. None when the message is not the app's."""
        now = time.time()

        def do(conn: Any) -> MessageAction | None:
            if not msg_store.owns(conn, message_id, app_id):
                return None
            n = msg_store.retry(
                conn, message_id=message_id, now=now, validity=None, reason="retried by the app"
            )
            return MessageAction(n, msg_store.counts_of(conn, message_id))

        done = await self.db.write(do)
        if done is not None and done.deliveries:
            for name in self.cfg.channels:
                self.wake(name)
            log.info(
                "message retried by its app", message_id=message_id, app_id=app_id, deliveries=done.deliveries
            )
        return done

    async def retry(self, *, delivery_ids: Sequence[int] = (), states: Sequence[str] = ()) -> int:
        now = time.time()
        validity = self.cfg.queue.validity_seconds
        n = await self.db.write(
            lambda c: msg_store.retry(c, delivery_ids=delivery_ids, states=states, now=now, validity=validity)
        )
        for name in self.cfg.channels:
            self.wake(name)
        return n

    async def authenticate(self, key: str) -> App | None:
        """The live app this API key belongs to, or None."""
        row = await self.db.read(lambda c: app_store.find_by_key(c, key))
        return App.from_row(row) if row else None

    async def app_named(self, name: str) -> App | None:
        row = await self.db.read(lambda c: app_store.get_app(c, name))
        return App.from_row(row) if row else None

    async def ensure_app(self, name: str, *, extension: str | None = None) -> App:
        """The app a module sends as: made on first use (its key is never shown: a module needs none),
        its extension set to ``extension``."""

        def get_or_make(conn: Any) -> None:
            row = app_store.get_app(conn, name)
            if row is None:
                app_store.create_app(conn, name, now=time.time(), extension=extension)
            elif row["extension"] != extension:
                app_store.update_app(conn, name, extension=extension)

        await self.db.write(get_or_make)
        app = await self.app_named(name)
        assert app is not None
        return app

    # ----- app events: receipts and replies the apps are told -------------------------------------------

    def events_changed(self) -> trio.Event:
        """Set the next time an app event may have been written; consumers wait on it, then read."""
        return self._events

    def signal_events(self) -> None:
        self._events.set()
        self._events = trio.Event()
        if self.on_events is not None:
            self.on_events()

    async def read_events(self, app_id: int, *, after: int, limit: int = 100) -> list[dict[str, Any]]:
        return await self.db.read(lambda c: event_store.read_events(c, app_id, after=after, limit=limit))

    async def get_cursor(self, app_id: int, consumer: str) -> int:
        return await self.db.read(lambda c: event_store.get_cursor(c, app_id, consumer))

    async def set_cursor(self, app_id: int, consumer: str, last_event_id: int) -> None:
        now = time.time()
        await self.db.write(lambda c: event_store.set_cursor(c, app_id, consumer, last_event_id, now=now))

    async def disown_reply(self, reply_id: int, app_id: int) -> bool:
        """An app hands a reply back: it is not for it. It joins the unmatched replies."""
        ok = await self.db.write(lambda c: reply_store.disown(c, reply_id, app_id=app_id))
        if ok:
            self.metrics.replies.labels("false").inc()
        return ok

    async def list_replies(self, **kw: Any) -> list[dict[str, Any]]:
        return await self.db.read(lambda c: reply_store.list_replies(c, **kw))

    async def refresh_pending(self) -> int:
        self._pending = await self.db.read(queue_store.pending_count)
        self.metrics.queue_depth.set(self._pending)
        return self._pending

    @property
    def pending(self) -> int:
        """Deliveries not yet final, as of the last count plus what was accepted since."""
        return self._pending

    def note_final(self, n: int = 1) -> None:
        self._pending = max(0, self._pending - n)

    # ----- ChannelEvents: what drivers report ------------------------------------------------------------

    async def receipt(self, channel: str, receipt: InboundReceipt) -> None:
        await self.receipt_batch(channel, (receipt,))

    async def receipt_batch(self, channel: str, receipts: Sequence[InboundReceipt]) -> None:
        """Store receipts of one channel in one write (a driver hands over what arrived together); each
        is counted and its delivery finished as if it had come alone. Returns once all are stored."""
        if not receipts:
            return
        unrecorded = self.unrecorded.get(channel)
        if unrecorded is not None:
            await unrecorded.wait_for([r.carrier_id for r in receipts])
        now = time.time()
        held = self.held
        resend = self.resend_policies.get(channel)
        items = [
            receipt_store.ReceiptItem(
                channel,
                receipt_store.IncomingReceipt(r.carrier_id, r.status.value, r.error_code, r.raw),
                now,
                held,
                resend,
            )
            for r in receipts
        ]
        outcomes: list[receipt_store.ReceiptOutcome] = await self.db.write_items(
            receipt_store.store_receipt_items, items
        )
        m = self.metrics
        ch = self.cfg.channels.get(channel)
        voice = ch is not None and ch.kind == "voice"
        finals = 0
        for receipt, o in zip(receipts, outcomes, strict=True):
            m.child(m.receipts, receipt.status.value).inc()
            if o.segment_id is None:
                m.receipts_held.inc()
            if o.resent_to is not None:
                m.child(m.resends, channel).inc()
                log.info(
                    "delivery resent after a failed receipt",
                    delivery_id=o.delivery_id,
                    status=receipt.status.value,
                    channel=channel,
                    via=o.resent_to,
                )
                self.wake(o.resent_to)
            if o.delivery_state:
                finals += 1
                m.child(m.deliveries_final, o.delivery_state).inc()
                if voice:
                    # Counted when the receipt ends the delivery, so a receipt sent again is not counted
                    # twice.
                    m.voice_calls.labels(call_outcome(receipt.status, receipt.error_code)).inc()
                log.info(
                    "delivery final",
                    delivery_id=o.delivery_id,
                    state=o.delivery_state,
                    carrier_id=o.carrier_id,
                    channel=channel,
                )
        if finals:
            self.note_final(finals)
            self.signal_events()

    async def reply(self, channel: str, reply: InboundReply) -> None:
        """Store a reply with its owner (see :mod:`masd.core.replies`) and tell that app."""
        now = time.time()
        reply_id, found = await self.db.write(
            lambda conn: self._route_and_store_reply(conn, channel, reply, now)
        )
        self.metrics.replies.labels("true" if found.app_id is not None else "false").inc()
        if found.app_id is not None:
            self.signal_events()
        log.info(
            "reply received",
            reply_id=reply_id,
            channel=channel,
            sender=routing.normalise_sender(reply.sender),
            destination=reply.destination,
            app_id=found.app_id,
            matched_by=found.matched_by,
        )

    def link_state(self, channel: str, up: bool) -> None:
        self.failover.link_changed(channel, up)
        self.metrics.channel_up.labels(channel).set(1 if up else 0)
        log.info("channel link", channel=channel, up=up)

    # ----- ChannelEvents: long replies, kept part by part -----------------------------------------------

    async def reply_part(self, channel: str, part: InboundReplyPart) -> InboundReply | None:
        """Store one part of a long reply (:mod:`masd.store.reply_parts`). When it is the last one
        missing, the parts are joined (:func:`masd.core.reply_parts.join`) and the reply is routed as
        :meth:`reply` routes it and stored, in the same transaction; that reply is returned, else None."""
        now = time.time()

        def store(conn: Any) -> list[tuple[reply_part_store.HandedOver, InboundReply, int, routing.Route]]:
            handed = reply_part_store.add_part(
                conn,
                channel=channel,
                sender=part.sender,
                destination=part.destination,
                reference=part.reference,
                total=part.total,
                seq=part.seq,
                codec=part.codec,
                body=part.body,
                received_at=part.received_at,
                now=now,
            )
            return [self._store_handed_over(conn, channel, h, now) for h in handed]

        stored = await self.db.write(store)
        self._long_replies_stored(channel, stored)
        whole = [reply for h, reply, _, _ in stored if h.complete]
        return whole[-1] if whole else None

    async def expire_reply_parts(self, channel: str, older_than: float) -> list[InboundReply]:
        """Store, with their gaps marked, the long replies of ``channel`` still incomplete whose first
        part arrived before ``older_than``; forget the digests kept of replies handed over before it."""
        due = await self.db.read(
            lambda c: reply_part_store.has_expired(c, channel=channel, older_than=older_than)
        )
        if not due:
            return []
        now = time.time()

        def store(conn: Any) -> list[tuple[reply_part_store.HandedOver, InboundReply, int, routing.Route]]:
            handed = reply_part_store.take_expired(conn, channel=channel, older_than=older_than, now=now)
            return [self._store_handed_over(conn, channel, h, now) for h in handed]

        stored = await self.db.write(store)
        self._long_replies_stored(channel, stored)
        return [reply for _, reply, _, _ in stored]

    def _store_handed_over(
        self, conn: Any, channel: str, handed: reply_part_store.HandedOver, now: float
    ) -> tuple[reply_part_store.HandedOver, InboundReply, int, routing.Route]:
        """Join a long reply the store handed over and store it as one reply, inside its transaction."""
        raw = "" if handed.complete else reply_parts.gaps(handed.total, handed.parts)
        reply = InboundReply(
            handed.sender, handed.destination, reply_parts.join(handed.total, handed.parts), raw=raw
        )
        reply_id, found = self._route_and_store_reply(conn, channel, reply, now)
        return handed, reply, reply_id, found

    def _route_and_store_reply(
        self, conn: Any, channel: str, reply: InboundReply, now: float
    ) -> tuple[int, routing.Route]:
        """Route a reply and store it, inside the caller's transaction: to the app owning the extension,
        else by a keyword rule, else to the app of the latest delivery to the sender (see
        :mod:`masd.core.replies`). One place for short replies and for long ones joined from parts."""
        rc = self.cfg.replies
        sender = routing.normalise_sender(reply.sender)
        ch = self.cfg.channels.get(channel)
        numbers = [ch.service_number] if ch else []
        numbers += [c.service_number for c in self.cfg.channels.values()]
        extension = routing.extension_of(reply.destination, numbers)
        since = now - rc.window_hours * 3600
        found: routing.Route | None = None
        delivery_id: int | None = None
        owners = app_store.owners_of_extensions(conn)
        by_ext = routing.by_extension(extension, owners)
        if by_ext is not None:
            found = by_ext
            hit = reply_store.latest_delivery(conn, sender, since=since, extension=extension)
            delivery_id = hit[0] if hit else None
        elif rc.keywords:
            names = app_store.ids_by_name(conn, list(rc.keywords.values()))
            rules = {kw: names[name] for kw, name in rc.keywords.items() if name in names}
            by_kw = routing.by_keyword(reply.text, rules, extension)
            if by_kw is not None:
                found = by_kw
                hit = reply_store.latest_delivery(conn, sender, since=since, app_id=by_kw.app_id)
                delivery_id = hit[0] if hit else None
        if found is None:
            hit = reply_store.latest_delivery(conn, sender, since=since)
            delivery_id = hit[0] if hit else None
            if hit is not None and hit[1] is not None:
                found = routing.Route(int(hit[1]), routing.RECENT, extension)
            else:
                found = routing.Route(None, routing.NONE, extension)
        reply_id = reply_store.insert_reply(
            conn,
            channel=channel,
            sender=sender,
            destination=reply.destination,
            text=_storable(reply.text),
            now=now,
            app_id=found.app_id,
            matched_by=found.matched_by,
            extension=found.extension,
            delivery_id=delivery_id,
        )
        return reply_id, found

    def _long_replies_stored(
        self,
        channel: str,
        stored: Sequence[tuple[reply_part_store.HandedOver, InboundReply, int, routing.Route]],
    ) -> None:
        """Count, log and announce long replies once their transaction has committed."""
        owned = False
        for handed, reply, reply_id, found in stored:
            owned = owned or found.app_id is not None
            self.metrics.replies.labels("true" if found.app_id is not None else "false").inc()
            log.info(
                "reply received" if handed.complete else "reply received incomplete",
                reply_id=reply_id,
                channel=channel,
                sender=routing.normalise_sender(reply.sender),
                destination=reply.destination,
                app_id=found.app_id,
                matched_by=found.matched_by,
                parts=handed.total,
                missing=reply.raw or None,
            )
        if owned:
            self.signal_events()


def _over_limit(app: App, over: Over, n: int, charge: Charge | None) -> Refused:
    """The refusal an app is answered with when its rate or quota had no room for ``n`` recipients."""
    if over.limit == "quota":
        day = charge.day if charge else "today"
        return QuotaExceeded(
            "quota",
            f"app {app.name!r} has used {int(over.used)} of its {app.quota_per_day} recipients for {day}; "
            f"this request needs {n}. The quota starts again at midnight "
            f"(or raise it: masd apps set {app.name} --quota N/day)",
        )
    rate = format_rate(app.rate)
    if over.wait is None:
        return RateLimited(
            "rate",
            f"app {app.name!r} may send to {rate} recipients, at most {int(over.used)} at once; this "
            f"request has {n}: split it, or raise the rate (masd apps set {app.name} --rate N/s)",
        )
    return RateLimited(
        "rate",
        f"app {app.name!r} may send to {rate} recipients; try again in {over.wait:.1f} s",
        retry_after=over.wait,
    )


def _storable(text: str) -> str:
    """A reply's text as every database can keep it: a lone surrogate (invalid UTF-16 from a handset)
    or NUL, which PostgreSQL refuses, becomes U+FFFD, so the text stays as it came otherwise and a
    reader sees that something was lost."""
    if text.isprintable() or not any(ch == "\x00" or "\ud800" <= ch <= "\udfff" for ch in text):
        return text
    return "".join("\ufffd" if ch == "\x00" or "\ud800" <= ch <= "\udfff" else ch for ch in text)
