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
from collections.abc import Sequence
from typing import Any

import structlog
import trio

from masd.config import ChannelConfig, Config
from masd.core import recipients as rcpt
from masd.core import split
from masd.core.states import DeliveryState
from masd.metrics import Metrics
from masd.store import apps as app_store
from masd.store import messages as msg_store
from masd.store import queue as queue_store
from masd.store import receipts as receipt_store
from masd.store.db import Database
from masd.store.tables import replies as replies_table
from masd_adapters.base import InboundReceipt, InboundReply

__all__ = ["Accepted", "Gateway", "QueueFull", "Rejected", "SubmitRequest"]

log = structlog.get_logger("masd.core")


class Rejected(ValueError):
    """A request that cannot be accepted; nothing of it was stored."""

    def __init__(self, field: str, reason: str, *, index: int | None = None, value: Any = None) -> None:
        self.field = field
        self.reason = reason
        self.index = index
        self.value = value
        super().__init__(f"{field}: {reason}")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "reason": self.reason}
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
    extension: str = ""
    channel: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Accepted:
    message_id: int
    recipients: list[str]
    segments: int
    encoding: str
    created: bool


class Gateway:
    def __init__(self, cfg: Config, db: Database, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.db = db
        self.metrics = metrics or Metrics()
        self._ref = itertools.count(random.randrange(1 << 16))
        self._pending = 0  # deliveries not final, from the last count plus what was accepted since
        self._wake: dict[str, trio.Event] = {name: trio.Event() for name in cfg.channels}
        # SQLite belongs to this machine's masd alone, so it can remember which receipts it holds.
        self.held = receipt_store.HeldReceipts() if db.dialect == "sqlite" else None

    # ----- accepting ---------------------------------------------------------------------------------

    def route(self, recipient: str) -> str:
        """The channel for a recipient: the longest matching prefix, else the first channel without any."""
        best: tuple[int, str] | None = None
        fallback: str | None = None
        for name, ch in self.cfg.channels.items():
            if not ch.prefixes and fallback is None:
                fallback = name
            for p in ch.prefixes:
                if recipient.startswith(p) and (best is None or len(p) > best[0]):
                    best = (len(p), name)
        if best:
            return best[1]
        return fallback or next(iter(self.cfg.channels))

    def prepare(self, req: SubmitRequest, *, interface: str, app_id: int | None) -> msg_store.NewMessage:
        """Validate one request and turn it into rows; raise :class:`Rejected` naming the field."""
        q = self.cfg.queue
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
        if req.extension and (not req.extension.isdigit() or len(req.extension) > 12):
            raise Rejected("extension", "must be up to 12 digits", value=req.extension)
        if req.client_ref is not None and not 0 < len(req.client_ref) <= 128:
            raise Rejected("client_ref", "must be 1 to 128 characters")
        if req.channel is not None and req.channel not in self.cfg.channels:
            raise Rejected(
                "channel", f"no such channel; configured: {', '.join(self.cfg.channels)}", value=req.channel
            )
        now = time.time()
        start = max(now, req.send_at) if req.send_at is not None else now
        deliveries = []
        # The segment count depends only on the text and the channel's concatenation method.
        counts: dict[str, int] = {}
        try:
            encoding = split.choose_encoding(req.text)
        except ValueError as e:
            raise Rejected("text", str(e)) from None
        for number in numbers:
            channel = req.channel or self.route(number)
            ch: ChannelConfig = self.cfg.channels[channel]
            if ch.concat not in counts:
                try:
                    parts = len(split.plan(req.text, concat=ch.concat, max_segments=q.max_segments).parts)
                    # message_payload carries the whole text in one PDU, with one receipt: that is what
                    # the delivery waits for, whatever the network splits it into later.
                    counts[ch.concat] = 1 if ch.concat == "payload" else parts
                except split.TooManySegments as e:
                    raise Rejected("text", str(e)) from None
                except ValueError as e:  # e.g. an unpaired surrogate, which no encoding can carry
                    raise Rejected("text", f"cannot be encoded: {e}") from None
            n = counts[ch.concat]
            deliveries.append(
                msg_store.NewDelivery(
                    recipient=number,
                    channel=channel,
                    segments=n,
                    concat_ref=next(self._ref) & 0xFFFF,
                    extension=req.extension,
                )
            )
        return msg_store.NewMessage(
            text=req.text,
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
        count_refusals: bool = True,
    ) -> list[Accepted]:
        """Validate every request, then store them all in one transaction. Raises :class:`Rejected` (with
        ``index`` set to the request's position for a batch) or :class:`QueueFull`; then nothing is stored."""
        rows: list[msg_store.NewMessage] = []
        for i, req in enumerate(requests):
            try:
                rows.append(self.prepare(req, interface=interface, app_id=app_id))
            except Rejected as e:
                if count_refusals:
                    self.metrics.requests_refused.labels(interface, "invalid").inc()
                if len(requests) > 1:
                    e.field = f"messages[{i}].{e.field}"
                raise
        n_deliveries = sum(len(r.deliveries) for r in rows)
        if self._pending + n_deliveries > self.cfg.queue.max_pending:
            if count_refusals:
                self.metrics.requests_refused.labels(interface, "queue_full").inc()
            raise QueueFull(
                f"the queue holds {self._pending} unfinished deliveries and its limit is "
                f"{self.cfg.queue.max_pending}; try again later (queue.max_pending raises the limit)"
            )
        now = time.time()
        try:
            inserted = await self.db.write_item(msg_store.insert_message_items, (rows, now))
        except Exception as e:
            if "unique" not in str(e).lower() and "duplicate" not in str(e).lower():
                raise
            # Another node stored the same client_ref a moment ago: read it back instead.
            inserted = await self.db.write_item(msg_store.insert_message_items, (rows, now))
        out = []
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
                self._pending += len(row.deliveries)
                self.metrics.messages_accepted.labels(interface).inc()
                self.metrics.deliveries_accepted.labels(interface).inc(len(row.deliveries))
                if len(rows) == 1:
                    log.info(
                        "message accepted",
                        message_id=ins.message_id,
                        interface=interface,
                        recipients=len(row.deliveries),
                        segments=out[-1].segments,
                    )
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
        return out

    async def send(self, req: SubmitRequest, *, interface: str, app_id: int | None = None) -> Accepted:
        return (await self.accept([req], interface=interface, app_id=app_id))[0]

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
        return n

    async def retry(self, *, delivery_ids: Sequence[int] = (), states: Sequence[str] = ()) -> int:
        now = time.time()
        validity = self.cfg.queue.validity_seconds
        n = await self.db.write(
            lambda c: msg_store.retry(c, delivery_ids=delivery_ids, states=states, now=now, validity=validity)
        )
        for name in self.cfg.channels:
            self.wake(name)
        return n

    async def authenticate(self, key: str) -> dict[str, Any] | None:
        return await self.db.read(lambda c: app_store.find_by_key(c, key))

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
        now = time.time()
        item = receipt_store.IncomingReceipt(
            receipt.carrier_id, receipt.status.value, receipt.error_code, receipt.raw
        )
        o: receipt_store.ReceiptOutcome = await self.db.write_item(
            receipt_store.store_receipt_items, receipt_store.ReceiptItem(channel, item, now, self.held)
        )
        self.metrics.receipts.labels(receipt.status.value).inc()
        if o.segment_id is None:
            self.metrics.receipts_held.inc()
        if o.delivery_state:
            self.metrics.deliveries_final.labels(o.delivery_state).inc()
            self.note_final()
            log.info(
                "delivery final",
                delivery_id=o.delivery_id,
                state=o.delivery_state,
                carrier_id=o.carrier_id,
                channel=channel,
            )

    async def reply(self, channel: str, reply: InboundReply) -> None:
        now = time.time()
        await self.db.write(
            lambda c: c.execute(
                replies_table.insert().values(
                    channel=channel,
                    sender=reply.sender,
                    destination=reply.destination,
                    text=reply.text,
                    received_at=now,
                )
            )
        )
        # Reply routing (extension → keyword → recent delivery) comes with the interfaces work.
        self.metrics.replies.labels("false").inc()
        log.info("reply received", channel=channel, sender=reply.sender, destination=reply.destination)

    def link_state(self, channel: str, up: bool) -> None:
        self.metrics.channel_up.labels(channel).set(1 if up else 0)
        log.info("channel link", channel=channel, up=up)
