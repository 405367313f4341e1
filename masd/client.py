"""A small blocking client for masd's socket interface, using only the standard library.

It has no dependency on the rest of masd: copy this file into your app. The protocol is in
docs/socket.md.

    from masd.client import Client, ServerError

    with Client("127.0.0.1", 9700, key) as c:
        ack = c.submit("13800138000", "Your code is 482913.", ref="order-17")
        print(ack["id"], ack["segments"])
        for push in c.pushes(timeout=30):       # receipts and replies, in order
            print(push["type"], push["ref"], push.get("state") or push.get("text"))
            # the push is acknowledged when this loop body returns without an exception

One thread at a time: the client is not thread-safe. Pushes that arrive while it waits for an answer
(a ``submit_ack``, a ``pong``) are kept and handed out by :meth:`Client.pushes` later.
"""

from __future__ import annotations

import collections
import itertools
import json
import socket
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

__all__ = ["Client", "ConnectionClosed", "ServerError"]

PUSH_TYPES = ("receipt", "reply")


class ServerError(Exception):
    """masd answered with an ``error`` frame; ``frame`` is all of it."""

    def __init__(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        self.code: str = frame.get("code", "")
        self.field: str | None = frame.get("field")
        self.reason: str = frame.get("reason", "")
        self.ref: Any = frame.get("ref")
        self.retry_after: float | None = frame.get("retry_after")
        where = f"{self.field}: " if self.field else ""
        super().__init__(f"{self.code}: {where}{self.reason}")


class ConnectionClosed(ConnectionError):
    """masd closed the connection (or it broke)."""


class Client:
    """A connection to masd's socket interface, logged in as one app when ``key`` is given."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 9700, key: str | None = None, *, timeout: float = 30.0
    ) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buf = bytearray()
        self._pushes: collections.deque[dict[str, Any]] = collections.deque()
        self._ids = itertools.count(1)
        self.app: str | None = None
        if key is not None:
            self.login(key)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ---

    def login(self, key: str) -> dict[str, Any]:
        ok = self._request({"type": "login", "key": key}, "login_ok")
        self.app = ok.get("app")
        return ok

    def submit(
        self,
        to: str | Sequence[str],
        text: str,
        *,
        ref: str,
        priority: int | None = None,
        send_at: datetime | str | None = None,
        validity_seconds: int | None = None,
        extension: str | None = None,
        channel: str | None = None,
    ) -> dict[str, Any]:
        """Submit one message; returns the ``submit_ack`` or raises :class:`ServerError`.

        ``ref`` is your own reference for the message, unique for your app: submitting it again (say,
        after a reconnect, not knowing whether the first try arrived) returns the stored message with
        ``duplicate: true`` instead of sending twice. A ``send_at`` without a UTC offset is read in the
        server's time zone."""
        frame: dict[str, Any] = {"type": "submit", "ref": ref, "to": to if isinstance(to, str) else list(to)}
        frame["text"] = text
        if isinstance(send_at, datetime):
            send_at = send_at.isoformat()
        for name, value in (
            ("priority", priority),
            ("send_at", send_at),
            ("validity_seconds", validity_seconds),
            ("extension", extension),
            ("channel", channel),
        ):
            if value is not None:
                frame[name] = value
        return self._request(frame, "submit_ack")

    def ping(self) -> dict[str, Any]:
        """Round trip; the pong also confirms that every ack sent before it is stored."""
        return self._request({"type": "ping", "id": next(self._ids)}, "pong")

    def ack(self, event: int) -> None:
        """Acknowledge every push up to and including ``event`` (cumulative)."""
        self._send({"type": "ack", "event": event})

    # --- pushes ---

    def pushes(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Receipts and replies as they come, oldest first. Each is acknowledged when the caller asks
        for the next one, i.e. once the loop body handling it has returned; if the body raises or breaks
        out of the loop, that push is not acknowledged and masd pushes it again after a reconnect.
        Ends when nothing arrives for ``timeout`` seconds (None: wait forever)."""
        while True:
            if self._pushes:
                push = self._pushes.popleft()
            else:
                frame = self._read(timeout)
                if frame is None:
                    return
                if frame.get("type") not in PUSH_TYPES:
                    continue  # nothing else arrives unasked; ignore what a newer server may add
                push = frame
            yield push
            self.ack(push["event"])

    def next_push(self, timeout: float | None = None) -> dict[str, Any] | None:
        """One push, not acknowledged (call :meth:`ack` when it is handled); None after ``timeout``."""
        if self._pushes:
            return self._pushes.popleft()
        while True:
            frame = self._read(timeout)
            if frame is None or frame.get("type") in PUSH_TYPES:
                return frame

    def close(self) -> None:
        """Make sure the acks sent are stored (one ping), then close."""
        try:
            if self.app is not None:
                self.ping()
        except (OSError, ServerError):
            pass
        finally:
            self.sock.close()

    # --- the wire ---

    def _send(self, frame: dict[str, Any]) -> None:
        data = json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def _request(self, frame: dict[str, Any], answer: str) -> dict[str, Any]:
        # masd answers requests in order, so the first frame that is not a push is this one's answer.
        self._send(frame)
        while True:
            got = self._read(self.timeout)
            if got is None:
                raise TimeoutError(f"no {answer} from masd within {self.timeout} s")
            kind = got.get("type")
            if kind in PUSH_TYPES:
                self._pushes.append(got)
            elif kind == "error":
                raise ServerError(got)
            elif kind == answer:
                return got

    def _read(self, timeout: float | None) -> dict[str, Any] | None:
        """The next frame, or None if none arrived within ``timeout``."""
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                frame: dict[str, Any] = json.loads(line)
                return frame
            self.sock.settimeout(timeout)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not data:
                raise ConnectionClosed("masd closed the connection")
            self._buf += data
