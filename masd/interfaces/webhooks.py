"""Webhooks: each app's receipt and reply events POSTed, signed, to the URL the app registered.

One :class:`WebhookSender` runs as the daemon's job ``webhooks``, on one node at a time when several
share the database (masd.jobs). Every ``webhooks.discover_seconds`` it reads which live apps have a
``webhook_url`` and keeps exactly one task per such app — started when a webhook is set, given the new
URL or secret when they change, cancelled when the webhook is removed or the app revoked — so
``masd apps set NAME --webhook URL`` takes effect without a restart. Each app's task has its own HTTP
client and its own deadlines: an endpoint that hangs or refuses holds up that app alone. Each move of
a cursor checks, in its transaction, that this node still holds the job's lease: a node that lost it
moves no cursor (the new holder sends from where the cursor is).

An app's task reads its events past its ``webhook`` cursor, oldest first, and sends them one at a time;
the cursor moves once the endpoint answers 2xx. A failure (another status, a timeout, no connection) is
retried after ``backoff_seconds``, doubling up to ``backoff_max_seconds``, with jitter, for
``max_attempts`` attempts in all; then the event is *parked* (table ``webhook_parked``, listed by
``masd webhooks parked``; cursors and parked events are kept by :mod:`masd.store.webhooks`) and the
next one goes. Delivery is at least once and in event order: a crash
after the endpoint answered but before the cursor moved sends that event again, with the same ``event``
id. ``masd webhooks retry`` marks parked events to be sent again; the app's task sends them before
its next new event.

The body is the event as JSON with times in ISO 8601 UTC. Headers ``X-Masd-Timestamp`` (Unix seconds)
and ``X-Masd-Signature: sha256=<hex>`` carry HMAC-SHA256 with the app's secret over
``<timestamp>.<body>`` (see docs/webhooks.md for verifying it). The secret is never logged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
import structlog
import trio

import masd
from masd.config import WebhooksConfig
from masd.core.apps import App
from masd.core.gateway import Gateway
from masd.core.times import utc_iso
from masd.store import webhooks as webhook_store
from masd.store.jobs import Fence, LeaseLost
from masd.store.webhooks import CONSUMER

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookSender",
    "backoff_delay",
    "event_json",
    "sign",
]

log = structlog.get_logger("masd.webhooks")

SIGNATURE_HEADER = "X-Masd-Signature"
TIMESTAMP_HEADER = "X-Masd-Timestamp"
EVENT_ID_HEADER = "X-Masd-Event-Id"
EVENT_TYPE_HEADER = "X-Masd-Event-Type"
ATTEMPT_HEADER = "X-Masd-Attempt"
READ_BATCH = 100  # events read at a time; they are sent one by one anyway
IDLE_POLL = 1.0  # seconds between reads when nothing wakes the task (events written by another node)
COALESCE = 0.05  # seconds to let events gather after a wake-up before reading them
ERROR_SNIPPET = 200  # characters of a failing answer's body kept as the parked event's error
_TIME_FIELDS = ("done_at", "received_at")


# ----- pure functions -----------------------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Masd-Signature`` value: HMAC-SHA256 with ``secret`` over ``timestamp + "." + body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def backoff_delay(
    failures: int, *, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after the ``failures``-th failed attempt: ``base`` doubling per failure up to
    ``cap``, then a random half to whole of it, so endpoints that failed together are not retried
    together."""
    full = min(cap, base * 2.0 ** max(0, failures - 1))
    return full * (0.5 + 0.5 * rand())


def event_json(event: dict[str, Any]) -> dict[str, Any]:
    """An event as the app receives it: the stored event with its times in ISO 8601 UTC."""
    return {k: utc_iso(v) if k in _TIME_FIELDS else v for k, v in event.items()}


def _redact(url: str) -> str:
    # URLs may carry credentials or a token in the query; logs get scheme, host and path only.
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(not a valid URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}"


# ----- sending ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _AppTask:
    app: App  # replaced when the app's URL or secret changes; each attempt reads the current one
    scope: trio.CancelScope = dataclasses.field(default_factory=trio.CancelScope)
    warned_unsigned: bool = False


class WebhookSender:
    """The owner of every app's webhook task (see the module docstring)."""

    def __init__(
        self,
        gateway: Gateway,
        cfg: WebhooksConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.gateway = gateway
        self.db = gateway.db
        self.cfg = cfg
        self._transport = transport
        self._fence = fence  # the job lease this sender runs under, if any
        self._tasks: dict[int, _AppTask] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    rows = await self.db.read(webhook_store.apps_with_webhooks)
                except Exception as e:
                    log.warning("could not read which apps have webhooks; will try again", error=str(e))
                else:
                    self._reconcile(nursery, [App.from_row(r) for r in rows])
                await trio.sleep(self.cfg.discover_seconds)

    def _reconcile(self, nursery: trio.Nursery, found: list[App]) -> None:
        current = {a.id: a for a in found}
        for app_id in list(self._tasks):
            if app_id not in current:
                task = self._tasks.pop(app_id)
                task.scope.cancel()
                log.info("webhook removed; no longer sending", app=task.app.name)
        for app_id, app in current.items():
            known = self._tasks.get(app_id)
            if known is None:
                task = self._tasks[app_id] = _AppTask(app)
                nursery.start_soon(self._serve_app, task)
                log.info("webhook found; sending events", app=app.name, url=_redact(app.webhook_url or ""))
            elif known.app != app:
                if known.app.webhook_url != app.webhook_url:
                    log.info("webhook changed", app=app.name, url=_redact(app.webhook_url or ""))
                known.app = app

    async def _serve_app(self, task: _AppTask) -> None:
        with task.scope:
            async with httpx.AsyncClient(
                timeout=self.cfg.timeout_seconds, follow_redirects=False, transport=self._transport
            ) as client:
                pause = 1.0
                while True:
                    # Taken before reading, so an event written while we read still wakes us.
                    changed = self.gateway.events_changed()
                    try:
                        await self._send_pending(task, client)
                        pause = 1.0
                    except LeaseLost:
                        raise
                    except Exception as e:
                        # The store failed (sending itself never raises): wait and read again.
                        log.warning(
                            "webhook sender could not read or record events; will try again",
                            app=task.app.name,
                            error=str(e),
                            delay=pause,
                        )
                        await trio.sleep(pause)
                        pause = min(pause * 2, 60.0)
                        continue
                    with trio.move_on_after(IDLE_POLL):
                        await changed.wait()
                        # Every app's task wakes on any app's event; under load, a short pause lets one
                        # read take many events instead of one read per event per app.
                        await trio.sleep(COALESCE)

    async def _send_pending(self, task: _AppTask, client: httpx.AsyncClient) -> None:
        app_id = task.app.id
        retries, cursor, batch = await self.db.read(
            lambda c: webhook_store.pending(c, app_id, limit=READ_BATCH)
        )
        for parked_id, event_id in retries:
            found = await self.gateway.read_events(app_id, after=event_id - 1, limit=1)
            if not found or found[0]["event"] != event_id:
                await self.db.write(lambda c: webhook_store.unpark(c, parked_id))
                log.warning(
                    "parked webhook event no longer exists (older than events.retention_days); dropped",
                    app=task.app.name,
                    event_id=event_id,
                )
                continue
            error, attempts = await self._deliver(task, client, found[0])
            now = time.time()
            if error is None:
                await self.db.write(lambda c: webhook_store.unpark(c, parked_id))
            else:
                failed = error
                await self.db.write(
                    lambda c: webhook_store.repark(c, parked_id, attempts=attempts, error=failed, now=now)
                )
        if retries:
            cursor = await self.gateway.get_cursor(app_id, CONSUMER)
            batch = await self.gateway.read_events(app_id, after=cursor, limit=READ_BATCH)
        while batch:
            for event in batch:
                event_id = int(event["event"])
                error, attempts = await self._deliver(task, client, event)
                now = time.time()
                if error is None:
                    await self.db.write(lambda c: self._move_cursor(c, app_id, event_id, now))
                else:

                    def park_and_move(conn: sa.Connection) -> None:
                        webhook_store.park(
                            conn, app_id=app_id, event_id=event_id, attempts=attempts, error=error, now=now
                        )
                        self._move_cursor(conn, app_id, event_id, now)

                    await self.db.write(park_and_move)
                    log.warning(
                        "webhook event parked after its last attempt; 'masd webhooks retry' sends it again",
                        app=task.app.name,
                        event_id=event_id,
                        attempts=attempts,
                        error=error,
                    )
                cursor = event_id
            batch = await self.gateway.read_events(app_id, after=cursor, limit=READ_BATCH)

    def _move_cursor(self, conn: sa.Connection, app_id: int, event_id: int, now: float) -> None:
        # Raises LeaseLost when another node holds the job now: the transaction moves nothing.
        webhook_store.move_cursor(conn, app_id, event_id, now=now, fence=self._fence)

    async def _deliver(
        self, task: _AppTask, client: httpx.AsyncClient, event: dict[str, Any]
    ) -> tuple[str | None, int]:
        """Send one event until it is taken or the attempts run out: (None or the last error, attempts)."""
        body = json.dumps(event_json(event), ensure_ascii=False, separators=(",", ":")).encode()
        attempt = 0
        while True:
            attempt += 1
            error, retry_after = await self._attempt(task, client, event, body, attempt)
            if error is None:
                return None, attempt
            if attempt >= self.cfg.max_attempts:
                return error, attempt
            delay = backoff_delay(attempt, base=self.cfg.backoff_seconds, cap=self.cfg.backoff_max_seconds)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.cfg.backoff_max_seconds))
            log.info(
                "webhook attempt failed; will retry",
                app=task.app.name,
                event_id=event["event"],
                attempt=attempt,
                error=error,
                delay=round(delay, 3),
            )
            await trio.sleep(delay)

    async def _attempt(
        self, task: _AppTask, client: httpx.AsyncClient, event: dict[str, Any], body: bytes, attempt: int
    ) -> tuple[str | None, float | None]:
        """One POST: (None, None) on 2xx, else (what went wrong, the Retry-After it asked for)."""
        app = task.app
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"masd/{masd.__version__}",
            TIMESTAMP_HEADER: timestamp,
            EVENT_ID_HEADER: str(event["event"]),
            EVENT_TYPE_HEADER: str(event["type"]),
            ATTEMPT_HEADER: str(attempt),
        }
        if app.webhook_secret:
            headers[SIGNATURE_HEADER] = sign(app.webhook_secret, timestamp, body)
        elif not task.warned_unsigned:
            task.warned_unsigned = True
            log.warning(
                "app has a webhook but no secret; its events are sent unsigned",
                app=app.name,
                fix=f"masd apps set {app.name} --webhook URL (generates a secret)",
            )
        try:
            # One deadline for the whole exchange: httpx's timeouts are per read, which an endpoint
            # dripping a byte at a time would never trip.
            with trio.fail_after(self.cfg.timeout_seconds):
                async with client.stream("POST", app.webhook_url or "", content=body, headers=headers) as r:
                    if 200 <= r.status_code < 300:
                        return None, None
                    snippet = b""
                    async for chunk in r.aiter_bytes():
                        snippet += chunk
                        if len(snippet) >= ERROR_SNIPPET:
                            break
        except trio.TooSlowError:
            return f"no answer within {self.cfg.timeout_seconds:g} s", None
        except Exception as e:
            return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__, None
        text = snippet[:ERROR_SNIPPET].decode("utf-8", "replace").strip()
        retry_after = r.headers.get("retry-after", "")
        return (
            f"HTTP {r.status_code}" + (f": {text}" if text else ""),
            float(retry_after) if retry_after.isdigit() else None,
        )
