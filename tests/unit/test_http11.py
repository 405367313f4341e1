"""masd's own HTTP/1.1 server (masd/interfaces/http/http11.py), spoken to over raw TCP."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from starlette.types import Receive, Scope, Send

from masd.interfaces.http.http11 import MAX_HEAD, serve_asgi

pytestmark = pytest.mark.trio


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with what it was asked: method, path, query, body; /stream answers in two chunks."""
    message = await receive()
    body = message["body"]
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-kind", b"stream")]})
        await send({"type": "http.response.body", "body": b"part1,", "more_body": True})
        await send({"type": "http.response.body", "body": b"part2", "more_body": False})
        return
    if scope["path"] == "/boom":
        raise RuntimeError("the app failed")
    text = f"{scope['method']} {scope['path']} {scope['query_string'].decode()} {body.decode()}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(text)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": text})


async def _server(nursery: trio.Nursery, **kwargs: Any) -> int:
    urls = await nursery.start(
        lambda task_status: serve_asgi(echo, "127.0.0.1:0", task_status=task_status, **kwargs)
    )
    return int(urls[0].rsplit(":", 1)[1])


async def _exchange(port: int, data: bytes, *, until: bytes | None = None) -> bytes:
    """Send ``data``, read until the server closes (or ``until`` has been seen)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        out = b""
        with trio.fail_after(5):
            while until is None or until not in out:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                out += chunk
    return out


async def _ask(request: bytes, **kwargs: Any) -> bytes:
    """Start a server, send ``request`` on a new connection, return everything it answered."""
    async with trio.open_nursery() as nursery:
        port = await _server(nursery, **kwargs)
        out = await _exchange(port, request)
        nursery.cancel_scope.cancel()
    return out


async def test_a_request_with_a_body_reaches_the_app_and_its_answer_comes_back() -> None:
    out = await _ask(
        b"POST /a%20b?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    )
    assert out.startswith(b"HTTP/1.1 201 Created\r\n")
    assert b"connection: close" in out.lower()
    assert out.endswith(b"\r\n\r\nPOST /a b x=1 hello")


async def test_keep_alive_answers_pipelined_requests_in_order() -> None:
    async with trio.open_nursery() as nursery:
        port = await _server(nursery)
        req = b"GET /one HTTP/1.1\r\nHost: t\r\n\r\nPOST /two HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
        out = await _exchange(port, req, until=b"POST /two  hi")
        nursery.cancel_scope.cancel()
    assert out.count(b"HTTP/1.1 201") == 2
    assert out.index(b"GET /one") < out.index(b"POST /two  hi")


async def test_a_chunked_request_body_is_reassembled() -> None:
    async with trio.open_nursery() as nursery:
        port = await _server(nursery)
        req = (
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n"
        )
        out = await _exchange(port, req)
        nursery.cancel_scope.cancel()
    assert out.endswith(b"POST /c  abcde")


async def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    async with trio.open_nursery() as nursery:
        port = await _server(nursery)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"POST /e HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            with trio.fail_after(5):
                first = await stream.receive_some(1000)
            assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
            await stream.send_all(b"body")
            out = b""
            with trio.fail_after(5):
                while b"POST /e  body" not in out:
                    out += await stream.receive_some(1000)
        nursery.cancel_scope.cancel()
    assert out.startswith(b"HTTP/1.1 201")


async def test_a_response_without_a_length_is_sent_chunked_on_http_11() -> None:
    out = await _ask(b"GET /stream HTTP/1.1\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert body == b"6\r\npart1,\r\n5\r\npart2\r\n0\r\n\r\n"


async def test_http_10_without_a_length_ends_the_body_by_closing() -> None:
    out = await _ask(b"GET /stream HTTP/1.0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"connection: close" in head and b"chunked" not in head
    assert body == b"part1,part2"


async def test_head_sends_the_headers_only() -> None:
    out = await _ask(b"HEAD /h HTTP/1.1\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"content-length: 9" in head.lower()  # "HEAD /h  " would have been the body
    assert body == b""


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"GET /x HTTP/2.0\r\n\r\n", b"400"),
        (b"GET /x HTTP/1.1\r\nbad header\r\n\r\n", b"400"),
        (b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"400"),
        (b"POST /x HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", b"400"),
        (b"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", b"501"),
        (b"POST /x HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", b"413"),
    ],
)
async def test_a_malformed_request_is_refused_with_a_status_and_the_connection_closed(
    request_bytes: bytes, status: bytes
) -> None:
    out = await _ask(request_bytes, max_body=1000)
    assert out.startswith(b"HTTP/1.1 " + status), out
    _json_error(out)


def _json_error(out: bytes) -> dict[str, Any]:
    """The ``error`` of a refusal: JSON in the API's shape, and the connection closed."""
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head
    assert b"connection: close" in head
    assert int(head.split(b"content-length: ")[1].split(b"\r\n")[0]) == len(body)
    error: dict[str, Any] = json.loads(body)["error"]
    assert set(error) == {"code", "reason"}
    return error


def _head_of(size: int) -> bytes:
    """A GET whose head, its closing empty line included, is exactly ``size`` bytes."""
    start = b"GET /x HTTP/1.1\r\nConnection: close\r\nX-Pad: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


async def test_a_head_of_exactly_max_head_bytes_is_served() -> None:
    assert len(_head_of(MAX_HEAD)) == MAX_HEAD
    out = await _ask(_head_of(MAX_HEAD))
    assert out.startswith(b"HTTP/1.1 201")


async def test_a_head_one_byte_over_max_head_is_refused_with_431() -> None:
    out = await _ask(_head_of(MAX_HEAD + 1))
    assert out.startswith(b"HTTP/1.1 431")
    assert _json_error(out)["code"] == "too_large"


async def test_a_head_that_never_ends_is_refused_with_431_at_the_limit() -> None:
    out = await _ask(b"GET /x HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD + 10))
    assert out.startswith(b"HTTP/1.1 431")
    assert str(MAX_HEAD) in _json_error(out)["reason"]


async def test_an_oversized_content_length_is_refused_before_the_body_is_sent() -> None:
    # The client sends the head only: the answer comes without a byte of the body, and no 100 Continue.
    async with trio.open_nursery() as nursery:
        port = await _server(nursery, max_body=1000)
        head = b"POST /x HTTP/1.1\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n"
        out = await _exchange(port, head)
        nursery.cancel_scope.cancel()
    assert out.startswith(b"HTTP/1.1 413")
    error = _json_error(out)
    assert error == {"code": "too_large", "reason": "the body is larger than 1000 bytes"}


async def test_a_client_still_sending_an_oversized_body_reads_the_413_without_a_reset() -> None:
    # Closing with the body unread would reset the connection and could destroy the answer: the
    # server shuts down its side and drops what still comes instead.
    body = b"x" * (8 * 1024 * 1024)
    async with trio.open_nursery() as nursery:
        port = await _server(nursery, max_body=1000)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        out = b""
        async with stream:

            async def sender() -> None:
                await stream.send_all(b"POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body))
                await stream.send_all(body)

            async with trio.open_nursery() as inner:
                inner.start_soon(sender)
                with trio.fail_after(10):
                    while chunk := await stream.receive_some(65536):
                        out += chunk
        nursery.cancel_scope.cancel()
    assert out.startswith(b"HTTP/1.1 413")
    assert _json_error(out)["code"] == "too_large"


async def test_a_chunked_body_is_refused_with_413_once_it_passes_the_limit() -> None:
    chunk = b"%x\r\n%s\r\n" % (600, b"y" * 600)
    out = await _ask(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2, max_body=1000)
    assert out.startswith(b"HTTP/1.1 413")
    assert _json_error(out)["reason"] == "the body is larger than 1000 bytes"


async def test_a_content_length_of_thousands_of_digits_is_too_large_and_the_server_keeps_serving() -> None:
    async with trio.open_nursery() as nursery:
        port = await _server(nursery)
        out = await _exchange(port, b"POST /x HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
        again = await _exchange(port, b"GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n")
        nursery.cancel_scope.cancel()
    assert out.startswith(b"HTTP/1.1 413")
    assert again.startswith(b"HTTP/1.1 201")


async def test_a_content_length_with_leading_zeros_is_its_number() -> None:
    out = await _ask(
        b"POST /z HTTP/1.1\r\nContent-Length: " + b"0" * 40 + b"2\r\nConnection: close\r\n\r\nhi"
    )
    assert out.endswith(b"POST /z  hi")


@pytest.mark.parametrize(
    ("chunks", "status"),
    [
        (b"-5\r\nhello\r\n0\r\n\r\n", b"400"),
        (b"0\r\n" + b"X-T: a\r\n" * (MAX_HEAD // 8 + 1) + b"\r\n", b"431"),
    ],
)
async def test_a_bad_chunked_body_is_refused(chunks: bytes, status: bytes) -> None:
    out = await _ask(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    assert out.startswith(b"HTTP/1.1 " + status), out[:100]
    _json_error(out)


async def test_an_app_that_fails_gets_a_500_and_the_server_keeps_serving() -> None:
    async with trio.open_nursery() as nursery:
        port = await _server(nursery)
        out = await _exchange(port, b"GET /boom HTTP/1.1\r\n\r\n")
        again = await _exchange(port, b"GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n")
        nursery.cancel_scope.cancel()
    assert out.startswith(b"HTTP/1.1 500")
    assert _json_error(out)["code"] == "internal"
    assert again.startswith(b"HTTP/1.1 201")


async def test_an_idle_connection_is_closed_after_the_timeout() -> None:
    async with trio.open_nursery() as nursery:
        port = await _server(nursery, idle_timeout=0.2)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            with trio.fail_after(5):
                assert await stream.receive_some(100) == b""
        nursery.cancel_scope.cancel()
