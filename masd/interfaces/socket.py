"""The socket interface: newline-delimited JSON frames over TCP, for apps that keep a connection open.

    client → masd   login {key} · submit {ref, to, text, …} · cancel {id} · retry {id} · ack {event} ·
                    ping {id}
    masd → client   login_ok · submit_ack · cancel_ack · retry_ack · pong · error · receipt · reply
                    (pushed)

The protocol is described for app developers in docs/socket.md. Decisions a reader of this code should
know:

* **Responses keep the order of requests.** Submits of one connection are handled concurrently (up to
  ``socket.pipeline``), so a client that pipelines gets the store's group commit; each answer waits in
  its place in the connection's outbox until it is ready. Pushes join the same outbox.
* **Pushes come from the app event outbox** (:mod:`masd.store.events`) and the connection's cursor is the
  app's ``socket`` cursor, moved only by the client's ``ack``. Nothing is pushed from memory, so a push the
  client never acknowledged is pushed again after it logs in again, on any node.
* **One connection of an app receives the pushes: the one that logged in last.** An app that reconnects
  while masd still believes the old connection alive (a half-open TCP connection after a network change)
  gets its pushes on the new one at once. The others stay usable for submits and pings. When the pushing
  connection closes, the most recent remaining one takes over from the stored cursor.
* **A slow reader slows only itself.** The outbox holds at most ``socket.send_buffer`` frames. When it is
  full the connection stops taking events (they wait in the database) and stops reading the client's
  frames (TCP then pushes back on the client); other connections and the core never wait for it. At most
  ``socket.max_unacked`` pushes are in flight to one connection.
* A frame the server cannot use gets an ``error`` frame and the connection goes on; only a connection
  that does not log in within ``socket.login_timeout`` is closed. Frames are read with the HTTP API's
  :func:`~masd.interfaces.json_input.load_json`, so NaN, lone surrogates, numbers beyond 64 bits and
  deep nesting are refused as the frame's fault before anything echoes or stores them.
"""

from __future__ import annotations

import collections
import json
import math
import socket as stdlib_socket
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog
import trio
from prometheus_client import Gauge

import masd
from masd.config import SocketConfig
from masd.core.gateway import (
    App,
    Gateway,
    QueueFull,
    QuotaExceeded,
    RateLimited,
    Refused,
    Rejected,
    SubmitRequest,
)
from masd.core.times import utc_iso
from masd.interfaces.json_input import UnusableJson, load_json
from masd.metrics import Metrics
from masd.store.db import StoreUnavailable

__all__ = [
    "CONSUMER",
    "Connection",
    "FrameError",
    "Outbox",
    "SocketServer",
    "encode",
    "parse_frame",
    "parse_message_id",
    "parse_submit",
    "push_frame",
]

log = structlog.get_logger("masd.socket")

CONSUMER = "socket"  # the app's cursor in event_cursors
INTERFACE = "socket"  # messages.interface and the metrics label
POLL_SECONDS = 1.0  # events written by another node are seen within this
APP_CHECK_SECONDS = 30.0  # a revoked or rotated key, or changed limits, take effect within this
DRAIN_SECONDS = 5.0  # after the client stops sending, answers still owed get this long to go out
_RECV_BYTES = 65_536

_SUBMIT_FIELDS = {
    "type",
    "ref",
    "to",
    "text",
    "priority",
    "send_at",
    "validity_seconds",
    "extension",
    "channel",
}
_CORE_FIELD = {"recipients": "to", "client_ref": "ref"}
MAX_ID = 2**63 - 1  # the widest id column


# ----- frames: pure functions ----------------------------------------------------------------------------


class FrameError(ValueError):
    """A frame the server cannot use; becomes an ``error`` frame, and the connection goes on."""

    def __init__(self, reason: str, *, field: str | None = None, code: str = "invalid") -> None:
        self.code = code
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


def encode(frame: Mapping[str, Any]) -> bytes:
    """One frame on the wire: compact JSON, UTF-8 (not \\u-escaped), one line."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def error_frame(
    code: str,
    reason: str,
    *,
    field: str | None = None,
    ref: Any = None,
    retry_after: float | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "code": code, "reason": reason}
    if field is not None:
        out["field"] = field
    if ref is not None:
        out["ref"] = ref
    if retry_after is not None:
        out["retry_after"] = round(retry_after, 3)
    return out


def parse_frame(line: bytes) -> dict[str, Any]:
    """A line (without its newline) → a frame with a string ``type``, or :class:`FrameError`."""
    try:
        frame = load_json(line, "frame")
    except UnusableJson as e:
        raise FrameError(e.reason, field=e.field) from None
    if not isinstance(frame, dict):
        raise FrameError(f"a frame must be a JSON object, not {type(frame).__name__}")
    kind = frame.get("type")
    if kind is None:
        raise FrameError('missing; every frame names its type, e.g. {"type":"ping"}', field="type")
    if not isinstance(kind, str):
        raise FrameError("must be a string", field="type")
    return frame


def _ref_of(frame: Mapping[str, Any]) -> Any:
    ref = frame.get("ref")
    return ref if isinstance(ref, str | int) and not isinstance(ref, bool) else None


def _int_field(frame: Mapping[str, Any], name: str) -> int | None:
    v = frame.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise FrameError("must be a whole number", field=name)
    return v


def _time_field(frame: Mapping[str, Any], name: str) -> float | None:
    v = frame.get(name)
    if v is None:
        return None
    if not isinstance(v, str):
        raise FrameError("must be an ISO 8601 date and time, e.g. 2030-05-20T08:30:00+08:00", field=name)
    try:
        # A time without a UTC offset is read in the server's local time zone, as over HTTP.
        return datetime.fromisoformat(v).timestamp()
    except (ValueError, OverflowError, OSError):  # not a date, or one the platform cannot place
        raise FrameError(
            f"{v!r} is not an ISO 8601 date and time; write e.g. 2030-05-20T08:30:00+08:00", field=name
        ) from None


def parse_submit(frame: Mapping[str, Any]) -> SubmitRequest:
    """A ``submit`` frame → the core's request, or :class:`FrameError` naming the field.

    The core validates the values (numbers, text length, priority range …); this checks the shape."""
    unknown = sorted(set(frame) - _SUBMIT_FIELDS)
    if unknown:
        # A misspelt send_at would otherwise send at once, which cannot be taken back.
        raise FrameError(
            f"unknown field; a submit may have {', '.join(sorted(_SUBMIT_FIELDS - {'type'}))}",
            field=unknown[0],
        )
    ref = frame.get("ref")
    if ref is None:
        raise FrameError(
            "missing; give each submit your own reference (it makes resubmitting safe)", field="ref"
        )
    if isinstance(ref, bool) or not isinstance(ref, str | int):
        raise FrameError("must be a string (or a whole number) of 1 to 128 characters", field="ref")
    ref = str(ref)
    if not 0 < len(ref) <= 128:
        raise FrameError("must be 1 to 128 characters", field="ref")
    to = frame.get("to")
    if to is None:
        raise FrameError("missing; one number, a list of numbers or a comma-separated string", field="to")
    if isinstance(to, str):
        recipients = [x.strip() for x in to.split(",") if x.strip()]
    elif isinstance(to, list) and all(isinstance(x, str) for x in to):
        recipients = list(to)
    else:
        raise FrameError("must be a string or a list of strings", field="to")
    if not recipients:
        raise FrameError("names no recipient", field="to")
    text = frame.get("text")
    if text is None:
        raise FrameError("missing", field="text")
    if not isinstance(text, str):
        raise FrameError("must be a string", field="text")
    extension = frame.get("extension")
    if extension is not None and (isinstance(extension, bool) or not isinstance(extension, str | int)):
        raise FrameError("must be a string of digits", field="extension")
    channel = frame.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise FrameError("must be a channel name", field="channel")
    return SubmitRequest(
        text=text,
        recipients=recipients,
        priority=_int_field(frame, "priority"),
        send_at=_time_field(frame, "send_at"),
        validity_seconds=_int_field(frame, "validity_seconds"),
        client_ref=ref,
        extension="" if extension is None else str(extension),
        channel=channel,
    )


def parse_message_id(frame: Mapping[str, Any]) -> int:
    """The message a ``cancel`` or ``retry`` frame names (its ``id``), or :class:`FrameError`."""
    unknown = sorted(set(frame) - {"type", "id"})
    if unknown:
        raise FrameError(f"unknown field; a {frame['type']} has only id", field=unknown[0])
    v = frame.get("id")
    if v is None:
        raise FrameError("missing; the id of your message, as its submit_ack gave it", field="id")
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_ID:
        raise FrameError("must be a message id (a whole number from 1)", field="id")
    return v


def push_frame(event: Mapping[str, Any]) -> dict[str, Any]:
    """An app event (see :func:`masd.store.events.read_events`) → the frame pushed to the app.

    In every frame ``id`` is a message id and ``ref`` the app's own reference for it."""
    if event["type"] == "receipt":
        return {
            "type": "receipt",
            "event": event["event"],
            "id": event["message_id"],
            "ref": event["client_ref"],
            "delivery_id": event["delivery_id"],
            "recipient": event["recipient"],
            "state": event["state"],
            "reason": event["reason"],
            "error_code": event["error_code"],
            "done_at": utc_iso(event["done_at"]),
            "resends": event.get("resends", 0),
        }
    return {
        "type": "reply",
        "event": event["event"],
        "reply_id": event["reply_id"],
        "sender": event["sender"],
        "destination": event["destination"],
        "extension": event["extension"],
        "text": event["text"],
        "received_at": utc_iso(event["received_at"]),
        "matched_by": event["matched_by"],
        "channel": event["channel"],
        "id": event["message_id"],
        "ref": event["client_ref"],
        "delivery_id": event["delivery_id"],
    }


def refusal_frame(exc: Exception, ref: Any) -> dict[str, Any]:
    """What the core said no with → an error frame carrying the submit's ref."""
    if isinstance(exc, Rejected):
        field = exc.field.rpartition(".")[2]
        return error_frame("invalid", exc.reason, field=_CORE_FIELD.get(field, field), ref=ref)
    if isinstance(exc, Refused):
        code = "forbidden"
        if isinstance(exc, RateLimited):
            code = "rate_limited"
        elif isinstance(exc, QuotaExceeded):
            code = "quota_exceeded"
        return error_frame(code, exc.reason, field=exc.field, ref=ref, retry_after=exc.retry_after)
    if isinstance(exc, QueueFull):
        return error_frame("queue_full", str(exc), ref=ref, retry_after=5.0)
    if isinstance(exc, StoreUnavailable):
        return error_frame(
            "store_unavailable", "the message store is unavailable; nothing was stored, try again", ref=ref
        )
    return error_frame("internal", "the server failed to handle this frame; it has been logged", ref=ref)


# ----- the outbox: what one connection is owed, in order ------------------------------------------------


class _Slot:
    __slots__ = ("data",)

    def __init__(self, data: bytes | None) -> None:
        self.data = data


_WRITE_MAX = 256 * 1024


class Outbox:
    """Frames waiting to be written to one connection, in the order they were promised.

    A slot is taken when a request arrives and filled when its answer is ready, so answers keep the
    order of requests however long each took. Holds at most ``limit`` slots when callers wait for
    :meth:`wait_room` before :meth:`take`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: collections.deque[_Slot] = collections.deque()
        self._changed = trio.Event()

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def room(self) -> int:
        return self.limit - len(self._slots)

    def take(self, data: bytes | None = None) -> _Slot:
        slot = _Slot(data)
        self._slots.append(slot)
        self._poke()
        return slot

    def fill(self, slot: _Slot, data: bytes) -> None:
        slot.data = data
        self._poke()

    async def wait_room(self) -> None:
        while self.room <= 0:
            await self._changed.wait()

    async def wait_empty(self) -> None:
        while self._slots:
            await self._changed.wait()

    async def next(self) -> bytes:
        """The frames ready at the head, joined (at least one; at most about 256 KiB), once one is: under
        load one write then carries many frames instead of one system call each."""
        while not self._slots or self._slots[0].data is None:
            await self._changed.wait()
        out: list[bytes] = []
        size = 0
        slots = self._slots
        while slots and (data := slots[0].data) is not None and (not out or size + len(data) <= _WRITE_MAX):
            slots.popleft()
            out.append(data)
            size += len(data)
        self._poke()
        return out[0] if len(out) == 1 else b"".join(out)

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


# ----- one connection -------------------------------------------------------------------------------------


class Connection:
    """One client connection: a reader (frames in), a writer (outbox out), and once logged in a pusher
    (events in, pushes out) and a cursor writer (acks in, cursor stored)."""

    def __init__(self, server: SocketServer, stream: trio.SocketStream) -> None:
        self.server = server
        self.stream = stream
        self.cfg = server.cfg
        self.gateway = server.gateway
        self.outbox = Outbox(self.cfg.send_buffer)
        self.app: App | None = None
        try:
            host, port = stream.socket.getpeername()[:2]
            self.peer = f"{host}:{port}"
        except OSError:
            self.peer = "?"
        self.closing = False
        # Pushing state: the last event put in the outbox, the pushed ids not yet acknowledged, the
        # highest id ever pushed here (an ack beyond it is refused), the client's cumulative ack and
        # what of it is stored.
        self.pushed = 0
        self.unacked: collections.deque[int] = collections.deque()
        self.highest_pushed = 0
        self.acked = 0
        self.stored = 0
        self.resync = True
        self._wake = trio.Event()
        self._acks = trio.Event()
        self._flush_lock = trio.Lock()
        self._pipeline = trio.Semaphore(self.cfg.pipeline)
        self._nursery: trio.Nursery | None = None
        # The reader's scope: its deadline is the login timeout until the client logs in; cancelled
        # when the app's key stops being valid.
        self._reader = trio.CancelScope(deadline=trio.current_time() + self.cfg.login_timeout)
        self._key = ""
        self.log = log.bind(peer=self.peer)

    @property
    def pushing(self) -> bool:
        """Whether this connection is the one its app's pushes go to."""
        return self.app is not None and not self.closing and self.server.pusher_of(self.app.id) is self

    def wake(self) -> None:
        self._wake.set()
        self._wake = trio.Event()

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._write_loop)
                with self._reader:
                    await self._read_loop()
                if self._reader.cancelled_caught and self.app is None and self.outbox.room > 0:
                    why = f"no login within {self.cfg.login_timeout:g} seconds; closing"
                    self.outbox.take(encode(error_frame("unauthorized", why)))
                # The client sends no more (it closed, or half-closed after its last frame): stop
                # pushing, let the answers it is owed go out, then close.
                self.closing = True
                self.server.step_down(self)
                with trio.move_on_after(DRAIN_SECONDS):
                    await self.outbox.wait_empty()
                nursery.cancel_scope.cancel()
        finally:
            self.closing = True
            self.server.step_down(self)
            with trio.CancelScope(shield=True), trio.move_on_after(DRAIN_SECONDS):
                try:
                    await self._flush_cursor()
                except Exception as e:  # the acks are lost: those pushes come again, which is allowed
                    self.log.warning("socket: cannot store the app's cursor at close", error=str(e))
                await self.stream.aclose()

    # --- in ---

    async def _read_loop(self) -> None:
        buf = bytearray()
        skipping = False  # inside a frame too long to keep: drop bytes until its end
        limit = self.cfg.max_frame_bytes
        while True:
            try:
                data = await self.stream.receive_some(_RECV_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return
            if not data:
                return
            buf += data
            start = 0
            while True:
                end = buf.find(b"\n", start)
                if end < 0:
                    break
                line = bytes(buf[start:end])
                start = end + 1
                if skipping:
                    skipping = False
                    continue
                if len(line) > limit:
                    await self._too_large()
                    continue
                try:
                    await self._on_line(line.rstrip(b"\r"))
                except Exception:  # a bug: this frame gets an error, the connection goes on
                    self.log.exception("socket frame failed")
                    await self._answer(
                        error_frame("internal", "the server failed to handle this frame; it has been logged")
                    )
            del buf[:start]
            if len(buf) > limit:
                buf.clear()
                if not skipping:
                    skipping = True
                    await self._too_large()

    async def _too_large(self) -> None:
        await self._answer(
            error_frame("too_large", f"the frame is longer than {self.cfg.max_frame_bytes} bytes; skipped")
        )

    async def _answer(self, frame: Mapping[str, Any]) -> None:
        await self.outbox.wait_room()
        self.outbox.take(encode(frame))

    async def _on_line(self, line: bytes) -> None:
        if not line.strip():
            return  # an empty line (e.g. from a person typing into nc) is not a frame
        # Backpressure: while this connection's outbox is full, read nothing more from it.
        await self.outbox.wait_room()
        try:
            frame = parse_frame(line)
        except FrameError as e:
            self.outbox.take(encode(error_frame(e.code, e.reason, field=e.field)))
            return
        kind = frame["type"]
        if kind == "ping":
            await self._pipeline.acquire()
            await self.outbox.wait_room()  # again: the pusher may have filled it meanwhile
            slot = self.outbox.take()
            self._spawn(self._ping, frame, slot)
        elif kind == "login":
            await self._login(frame)
        elif self.app is None:
            why = 'log in first: {"type":"login","key":"YOUR_KEY"}'
            self.outbox.take(encode(error_frame("unauthorized", why, ref=_ref_of(frame))))
        elif kind == "submit":
            await self._pipeline.acquire()
            await self.outbox.wait_room()  # again: the pusher may have filled it meanwhile
            slot = self.outbox.take()
            self._spawn(self._submit, frame, slot)
        elif kind in ("cancel", "retry"):
            await self._pipeline.acquire()
            await self.outbox.wait_room()  # again: the pusher may have filled it meanwhile
            slot = self.outbox.take()
            self._spawn(self._act, frame, slot)
        elif kind == "ack":
            self._ack(frame)
        else:
            self.outbox.take(
                encode(
                    error_frame(
                        "invalid",
                        f"unknown frame type {kind!r}; a client sends login, submit, cancel, retry, ack "
                        "or ping",
                        field="type",
                    )
                )
            )

    def _spawn(self, fn: Any, frame: dict[str, Any], slot: _Slot) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn, frame, slot)

    async def _ping(self, frame: dict[str, Any], slot: _Slot) -> None:
        try:
            out: dict[str, Any] = {"type": "pong"}
            if "id" in frame:
                out["id"] = frame["id"]
            # A pong also says that every ack sent before the ping is stored.
            try:
                await self._flush_cursor()
            except Exception as e:
                out = refusal_frame(e, None)
            self.outbox.fill(slot, encode(out))
        finally:
            self._pipeline.release()

    async def _login(self, frame: dict[str, Any]) -> None:
        key = frame.get("key")
        if self.app is not None:
            why = f"already logged in as {self.app.name!r}; open another connection for another app"
            self.outbox.take(encode(error_frame("invalid", why, field="type")))
            return
        if not isinstance(key, str) or not key:
            self.outbox.take(encode(error_frame("invalid", "missing; the app's API key", field="key")))
            return
        slot = self.outbox.take()
        try:
            app = await self.gateway.authenticate(key)
        except Exception as e:
            if not isinstance(e, StoreUnavailable):
                self.log.exception("socket login failed")
            self.outbox.fill(slot, encode(refusal_frame(e, None)))
            return
        if app is None:
            why = (
                "unknown or revoked key; create one with 'masd apps create NAME' (or 'masd apps rotate NAME')"
            )
            self.outbox.fill(slot, encode(error_frame("unauthorized", why, field="key")))
            return
        self.app = app
        self._key = key
        self._reader.deadline = math.inf
        self.log = self.log.bind(app=app.name)
        self.outbox.fill(
            slot,
            encode(
                {
                    "type": "login_ok",
                    "app": app.name,
                    "server": f"masd {masd.__version__}",
                    "max_unacked": self.cfg.max_unacked,
                    "max_frame_bytes": self.cfg.max_frame_bytes,
                }
            ),
        )
        self.server.logged_in(self)
        assert self._nursery is not None
        self._nursery.start_soon(self._push_loop)
        self._nursery.start_soon(self._cursor_loop)
        self._nursery.start_soon(self._check_app)
        self.log.info("socket login")

    async def _submit(self, frame: dict[str, Any], slot: _Slot) -> None:
        ref = _ref_of(frame)
        try:
            try:
                req = parse_submit(frame)
            except FrameError as e:
                self.outbox.fill(slot, encode(error_frame(e.code, e.reason, field=e.field, ref=ref)))
                return
            try:
                acc = await self.gateway.send(req, interface=INTERFACE, app=self.app, notify=True)
            except (Rejected, Refused, QueueFull, StoreUnavailable) as e:
                self.outbox.fill(slot, encode(refusal_frame(e, ref)))
                return
            except Exception as e:
                self.log.exception("socket submit failed", ref=ref)
                self.outbox.fill(slot, encode(refusal_frame(e, ref)))
                return
            self.outbox.fill(
                slot,
                encode(
                    {
                        "type": "submit_ack",
                        "ref": ref,
                        "id": acc.message_id,
                        "recipients": acc.recipients,
                        "segments": acc.segments,
                        "encoding": acc.encoding,
                        "duplicate": not acc.created,
                    }
                ),
            )
        finally:
            self._pipeline.release()

    async def _act(self, frame: dict[str, Any], slot: _Slot) -> None:
        """``cancel`` or ``retry`` of one of the app's own messages."""
        assert self.app is not None
        kind = frame["type"]
        try:
            try:
                message_id = parse_message_id(frame)
            except FrameError as e:
                self.outbox.fill(slot, encode(error_frame(e.code, e.reason, field=e.field)))
                return
            act = self.gateway.cancel_message if kind == "cancel" else self.gateway.retry_message
            try:
                done = await act(message_id, app_id=self.app.id)
            except Exception as e:
                if not isinstance(e, StoreUnavailable):
                    self.log.exception(f"socket {kind} failed", id=message_id)
                self.outbox.fill(slot, encode(refusal_frame(e, None)))
                return
            if done is None:
                why = f"no message {message_id} for this app"
                self.outbox.fill(slot, encode(error_frame("not_found", why, field="id")))
                return
            count = "cancelled" if kind == "cancel" else "retried"
            answer = {"type": f"{kind}_ack", "id": message_id, count: done.deliveries, "counts": done.counts}
            self.outbox.fill(slot, encode(answer))
        finally:
            self._pipeline.release()

    def _ack(self, frame: dict[str, Any]) -> None:
        n = frame.get("event")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            self.outbox.take(
                encode(
                    error_frame("invalid", "must be the event id of a push (a whole number)", field="event")
                )
            )
            return
        if n > self.highest_pushed:
            why = f"event {n} was not pushed on this connection (the latest pushed is {self.highest_pushed})"
            self.outbox.take(encode(error_frame("invalid", why, field="event")))
            return
        if n > self.acked:
            self.acked = n
            self._acks.set()
        while self.unacked and self.unacked[0] <= n:
            self.unacked.popleft()
        self.wake()

    async def _check_app(self) -> None:
        # As over HTTP, a key is trusted for a while: re-read the app now and then, so that revoking
        # or rotating its key ends the connection and new limits apply.
        while True:
            await trio.sleep(APP_CHECK_SECONDS)
            try:
                app = await self.gateway.authenticate(self._key)
            except Exception as e:
                self.log.warning("socket: cannot check the app's key; will try again", error=str(e))
                continue
            if app is None:
                why = "the app's key was revoked or rotated; log in with the current key"
                if self.outbox.room > 0:
                    self.outbox.take(encode(error_frame("unauthorized", why, field="key")))
                self.log.info("socket: key no longer valid; closing")
                self._reader.cancel()
                return
            self.app = app

    # --- out ---

    async def _write_loop(self) -> None:
        while True:
            data = await self.outbox.next()
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                # The client is gone: nothing more can reach it; stop the whole connection.
                assert self._nursery is not None
                self._nursery.cancel_scope.cancel()
                return

    async def _push_loop(self) -> None:
        assert self.app is not None
        app_id = self.app.id
        while True:
            if not self.pushing:
                self.resync = True
                await self._wake.wait()
                continue
            try:
                if self.resync:
                    # Start from what the app acknowledged (on any connection, on any node).
                    self.pushed = await self.gateway.get_cursor(app_id, CONSUMER)
                    self.unacked.clear()
                    self.resync = False
                    continue
                if self.outbox.room <= 0:
                    await self.outbox.wait_room()
                    continue
                room = min(self.outbox.room, self.cfg.max_unacked - len(self.unacked))
                if room <= 0:
                    await self._wake.wait()
                    continue
                changed = self.gateway.events_changed()
                events = await self.gateway.read_events(app_id, after=self.pushed, limit=min(room, 200))
            except Exception as e:
                self.log.warning("socket push: cannot read events; will try again", error=str(e))
                await trio.sleep(POLL_SECONDS)
                continue
            if not self.pushing or self.resync:
                continue  # the role moved while reading: what was read is someone else's to push
            if not events:
                with trio.move_on_after(POLL_SECONDS):
                    await changed.wait()
                continue
            # The reader may have taken slots while the events were read: push only what fits now.
            for ev in events[: max(0, self.outbox.room)]:
                self.outbox.take(encode(push_frame(ev)))
                self.unacked.append(ev["event"])
                self.pushed = ev["event"]
            self.highest_pushed = max(self.highest_pushed, self.pushed)

    async def _cursor_loop(self) -> None:
        # Acks are coalesced: whatever arrived while one cursor write ran is stored by the next one.
        while True:
            await self._acks.wait()
            self._acks = trio.Event()
            try:
                await self._flush_cursor()
            except Exception as e:
                self.log.warning("socket: cannot store the app's cursor; will try again", error=str(e))
                self._acks.set()
                await trio.sleep(POLL_SECONDS)

    async def _flush_cursor(self) -> None:
        if self.app is None:
            return
        async with self._flush_lock:
            target = self.acked
            if target > self.stored:
                await self.gateway.set_cursor(self.app.id, CONSUMER, target)
                self.stored = target


# ----- the server -----------------------------------------------------------------------------------------


class SocketServer:
    """Listens on ``socket.listen`` and runs one :class:`Connection` per client, under its own nursery."""

    def __init__(self, gateway: Gateway, cfg: SocketConfig, metrics: Metrics | None = None) -> None:
        self.gateway = gateway
        self.cfg = cfg
        self.port: int | None = None
        self.connections: set[Connection] = set()
        # app id → its logged-in connections, oldest first; the last one receives the pushes.
        self._by_app: dict[int, list[Connection]] = {}
        self._gauge: Gauge | None = None
        if metrics is not None:
            self._gauge = getattr(metrics, "socket_connections", None) or Gauge(
                "masd_socket_connections",
                "Open connections to the socket interface",
                registry=metrics.registry,
            )

    def pusher_of(self, app_id: int) -> Connection | None:
        conns = self._by_app.get(app_id)
        return conns[-1] if conns else None

    def logged_in(self, conn: Connection) -> None:
        assert conn.app is not None
        conns = self._by_app.setdefault(conn.app.id, [])
        previous = conns[-1] if conns else None
        conns.append(conn)
        if previous is not None:
            previous.wake()  # it stops pushing

    def step_down(self, conn: Connection) -> None:
        """The connection is closing: hand the app's pushes to its most recent other connection."""
        if conn.app is None:
            return
        conns = self._by_app.get(conn.app.id, [])
        if conn not in conns:
            return
        was_pusher = conns[-1] is conn
        conns.remove(conn)
        if not conns:
            del self._by_app[conn.app.id]
        elif was_pusher:
            conns[-1].wake()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started`` gets the bound port (useful when the
        configured port is 0)."""
        host, _, port = self.cfg.listen.rpartition(":")
        host = host.strip("[]")
        listeners = await trio.open_tcp_listeners(int(port), host=host)
        self.port = int(listeners[0].socket.getsockname()[1])
        log.info("socket interface listening", listen=f"{host}:{self.port}")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            # Notice a peer that vanished without closing (a dead NAT entry, a pulled cable).
            stream.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_KEEPALIVE, 1)
        except OSError:
            pass
        conn = Connection(self, stream)
        self.connections.add(conn)
        if self._gauge is not None:
            self._gauge.inc()
        try:
            await conn.run()
        except Exception:
            conn.log.exception("socket connection failed")
        finally:
            self.connections.discard(conn)
            if self._gauge is not None:
                self._gauge.dec()
