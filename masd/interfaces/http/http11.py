"""A small HTTP/1.1 server for an ASGI app, on trio streams: what masd's API needs and nothing more.

Hypercorn served about a thousand requests a second on the benchmark machine, most of a core spent on
its per-request tasks and h11's state machine before the app saw the request; for the single-message
route that was the whole difference to Kannel. This server runs one task per connection and handles
its requests in turn: it reads a request head (at most ``MAX_HEAD`` bytes), the body by Content-Length
or chunked transfer coding (answering ``Expect: 100-continue``), calls the app once with the whole
body, and writes the response with Content-Length when the app gives one or it can count the body,
chunked otherwise. Keep-alive follows HTTP/1.1 and HTTP/1.0 rules; pipelined requests are answered in
order. No TLS, no HTTP/2, no WebSockets, no lifespan: masd's API uses none of them (put a reverse
proxy in front for TLS).

Limits: a head (request line and header lines with the empty line that ends them) of more than
``MAX_HEAD`` bytes is answered 431; a malformed request 400; a body over ``max_body`` 413, from its
Content-Length before any of it is read, or once a chunked body passes the limit. These answers are
JSON in the API's shape (``{"error": {"code", "reason"}}``) and end the connection in a way that lets
the client read them (see :meth:`_Connection._refuse`). An idle keep-alive connection is closed after
``idle_timeout`` seconds, a request whose head or body stalls for that long too.
"""

from __future__ import annotations

import http
import json
import socket
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import structlog
import trio

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message

__all__ = ["MAX_HEAD", "serve_asgi", "split_listen"]

log = structlog.get_logger("masd.http")

MAX_HEAD = 64 * 1024  # bytes of a request head, its closing empty line included
LINGER_SECONDS = 2.0  # after refusing a request: how long to read and discard what the client still sends
LINGER_BYTES = 16 * 1024 * 1024  # … and how much of it at most

_PHRASES = {s.value: s.phrase.encode() for s in http.HTTPStatus}
_CODES = {
    400: "bad_request",
    413: "too_large",
    431: "too_large",
    500: "internal",
    501: "not_implemented",
    505: "http_version_not_supported",
}


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _Closed(Exception):
    """The client closed the connection (or stalled) before a whole request arrived."""


def split_listen(listen: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:8080"``, ``":8080"`` for every address) → (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


async def serve_asgi(
    app: ASGIApp,
    listen: str,
    *,
    max_body: int = 16 * 1024 * 1024,
    idle_timeout: float = 75.0,
    sock: socket.socket | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``listen`` ("host:port"; port 0 picks one), or on the listening socket ``sock``
    when given, until cancelled. ``task_status`` gets the base URLs listened on, e.g.
    ``["http://127.0.0.1:8080"]``."""
    if sock is not None:
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock))]
    else:
        host, port = split_listen(listen)
        listeners = await trio.open_tcp_listeners(port, host=host)
    urls = []
    for lst in listeners:
        addr = lst.socket.getsockname()
        shown = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
        urls.append(f"http://{shown}:{addr[1]}")
    handler = partial(_Connection.handle, app, max_body, idle_timeout)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(urls)


class _Connection:
    def __init__(self, stream: trio.SocketStream, max_body: int, idle_timeout: float) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        sock = stream.socket
        self.server = _address(sock.getsockname())
        self.client = _address(sock.getpeername())

    @classmethod
    async def handle(
        cls, app: ASGIApp, max_body: int, idle_timeout: float, stream: trio.SocketStream
    ) -> None:
        conn = cls(stream, max_body, idle_timeout)
        try:
            while await conn.one_request(app):
                pass
        except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:  # a bug here must end this connection only, not the server and its others
            log.exception("HTTP connection failed", client=conn.client)
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _fill(self) -> None:
        with trio.move_on_after(self.idle_timeout):
            data = await self.stream.receive_some(65536)
            if not data:
                raise _Closed
            self.buf += data
            return
        raise _Closed

    async def _head(self) -> bytes:
        start = 0
        while True:
            end = self.buf.find(b"\r\n\r\n", start)
            if end >= 0 and end + 4 <= MAX_HEAD:
                head = bytes(self.buf[:end])
                del self.buf[: end + 4]
                return head
            if end >= 0 or len(self.buf) >= MAX_HEAD:
                raise _BadRequest(431, f"the request line and headers are longer than {MAX_HEAD} bytes")
            start = max(0, len(self.buf) - 3)
            await self._fill()

    async def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > MAX_HEAD:
                raise _BadRequest(400, "chunk size line too long")
            await self._fill()
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    async def _chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = (await self._line()).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _BadRequest(400, "malformed chunk size") from None
            if size < 0:
                raise _BadRequest(400, "malformed chunk size")
            if size == 0:
                trailers = 0
                while line := await self._line():  # trailers, up to the empty line
                    trailers += len(line) + 2
                    if trailers > MAX_HEAD:
                        raise _BadRequest(431, f"the trailer lines are longer than {MAX_HEAD} bytes")
                return b"".join(parts)
            total += size
            if total > self.max_body:
                raise _BadRequest(413, self._too_large)
            parts.append(await self._exactly(size))
            if await self._exactly(2) != b"\r\n":
                raise _BadRequest(400, "malformed chunk")

    async def one_request(self, app: ASGIApp) -> bool:
        """Read one request, run the app, write its response; whether the connection stays open."""
        try:
            head = await self._head()
        except _Closed:
            return False
        except _BadRequest as e:
            await self._refuse(e.status, str(e))
            return False
        try:
            method, target, version, headers = _parse_head(head)
        except _BadRequest as e:
            await self._refuse(e.status, str(e))
            return False
        length: int | None = None
        chunked = False
        keep_alive = version == b"HTTP/1.1"
        expect_continue = False
        for name, value in headers:
            if name == b"content-length":
                declared = _content_length(value)
                if declared is None or (length is not None and declared != length):
                    await self._refuse(400, "invalid Content-Length")
                    return False
                length = declared
            elif name == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
                if not chunked:
                    await self._refuse(501, "unsupported Transfer-Encoding")
                    return False
            elif name == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
            elif name == b"expect" and value.strip().lower() == b"100-continue":
                expect_continue = True
        if chunked and length is not None:
            await self._refuse(400, "both Content-Length and Transfer-Encoding")
            return False
        if (length or 0) > self.max_body:
            await self._refuse(413, self._too_large)  # before reading any of it, and no 100 Continue
            return False
        if expect_continue and version == b"HTTP/1.1" and (chunked or length):
            await self.stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = await self._chunked() if chunked else await self._exactly(length or 0)
        except _BadRequest as e:
            await self._refuse(e.status, str(e))
            return False
        path, _, query = target.partition(b"?")
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version[5:].decode("latin-1"),
            "method": method.decode("latin-1"),
            "scheme": "http",
            "path": unquote(path.decode("latin-1"), encoding="utf-8", errors="replace"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": self.client,
            "server": self.server,
        }
        response = _Response(self.stream, method == b"HEAD", version == b"HTTP/1.1", keep_alive)
        sent_body = False
        done = trio.Event()

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()  # nothing more comes; a streaming response is not cut short
            return {"type": "http.disconnect"}

        try:
            await app(scope, receive, response.send)
        except Exception:
            log.exception("the HTTP app failed", method=scope["method"], path=scope["path"])
            if not response.started:
                await self._refuse(500, "the server failed to handle this request; it has been logged")
            return False
        finally:
            done.set()
        if not response.finished:
            if not response.started:
                await self._refuse(500, "the app sent no response")
                return False
            await response.send({"type": "http.response.body", "body": b"", "more_body": False})
        return response.keep_alive

    @property
    def _too_large(self) -> str:
        return f"the body is larger than {self.max_body} bytes"

    async def _refuse(self, status: int, reason: str) -> None:
        """Answer ``{"error": {"code", "reason"}}`` with ``status`` and end the connection so that the
        client reads the answer.

        The client may still be sending (the rest of an oversized body or head). Closing a socket with
        unread bytes makes the kernel reset the connection, and a reset can destroy the answer before
        the client has read it. So the write side is shut down first (the client sees the end of the
        answer), then what still arrives is read and dropped until the client closes, for at most
        ``LINGER_SECONDS`` and ``LINGER_BYTES``."""
        error = {"code": _CODES.get(status, "bad_request"), "reason": reason}
        body = json.dumps({"error": error}, separators=(",", ":")).encode()
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, _PHRASES.get(status, b""), len(body))
        )
        try:
            await self.stream.send_all(head + body)
            await self.stream.send_eof()
            drained = 0
            with trio.move_on_after(LINGER_SECONDS):
                while drained < LINGER_BYTES and (data := await self.stream.receive_some(65536)):
                    drained += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


class _Response:
    """Turns the app's ``http.response.*`` messages into bytes on the stream."""

    def __init__(self, stream: trio.SocketStream, head_only: bool, http11: bool, keep_alive: bool) -> None:
        self.stream = stream
        self.head_only = head_only
        self.http11 = http11
        self.keep_alive = keep_alive
        self.started = False
        self.finished = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_sent = False
        self.chunked = False
        self.length: int | None = None

    def _head(self, length: int | None) -> bytes:
        lines = [b"HTTP/1.1 %d %s" % (self.status, _PHRASES.get(self.status, b""))]
        for name, value in self.headers:
            lines.append(name + b": " + value)
        if self.length is None and self.status >= 200 and self.status not in (204, 304):
            if length is not None:
                lines.append(b"content-length: %d" % length)
            elif self.http11:
                self.chunked = True
                lines.append(b"transfer-encoding: chunked")
            else:
                self.keep_alive = False  # HTTP/1.0 without a length: the end of the body is the close
        if not self.keep_alive:
            lines.append(b"connection: close")
        elif not self.http11:
            lines.append(b"connection: keep-alive")
        lines.append(b"\r\n")
        return b"\r\n".join(lines)

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = int(message["status"])
            headers = [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers", ())]
            for name, value in headers:
                if name == b"content-length":
                    self.length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    self.keep_alive = False
            self.headers = [(n, v) for n, v in headers if n != b"connection"]
            return
        if kind != "http.response.body":
            return
        if not self.started or self.finished:
            raise RuntimeError("http.response.body out of order")
        data = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        out = b""
        if not self.head_sent:
            self.head_sent = True
            out = self._head(None if more else len(data))
        if data and not self.head_only:
            out += b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data
        if not more:
            self.finished = True
            if self.chunked and not self.head_only:
                out += b"0\r\n\r\n"
        if out:
            await self.stream.send_all(out)


def _address(addr: Any) -> tuple[str, int] | None:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return str(addr[0]), int(addr[1])
    return None


def _content_length(value: bytes) -> int | None:
    """A Content-Length as a number, or None when it is not one. A length of more digits than any body
    has is taken as 2**63 (and refused as too large) rather than converted."""
    digits = value.strip()
    if not digits.isdigit():
        return None
    digits = digits.lstrip(b"0") or b"0"
    return int(digits) if len(digits) <= 18 else 2**63


def _parse_head(head: bytes) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[0].isalpha():
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise _BadRequest(505, "HTTP version not supported")
    if not target.startswith(b"/"):
        if target == b"*" or b"://" not in target:
            raise _BadRequest(400, "unsupported request target")
        target = b"/" + target.split(b"://", 1)[1].partition(b"/")[2]  # absolute form
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or b" " in name:
            raise _BadRequest(400, "malformed header line")
        headers.append((name.lower(), value.strip()))
    return method, target, version, headers
