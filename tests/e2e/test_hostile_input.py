"""Hostile input against a real daemon, over real HTTP and a real socket connection: lone surrogates,
NaN and Infinity, huge integers, deep nesting, invalid UTF-8, oversized bodies and heads.

Each case must be answered below 500 with a JSON error that names the field or the reason, nothing of
it may be stored, and the connection (the socket's) must stay usable. Then a socket fuzz run sends
10,000 random frames and a schemathesis run sends generated requests, with these cases among its
explicit examples, to every operation of /openapi.json: neither may find a server error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
import sqlalchemy as sa
import trio
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from masd.config import load_config
from masd.daemon import Daemon
from masd.interfaces.http import MAX_BODY, ErrorResponse
from masd.interfaces.http.http11 import MAX_HEAD
from masd.store import apps as app_store
from masd.store.tables import messages as messages_table

NUMBER = "13800138000"
HUGE = b"1" + b"0" * 400  # 10**400: valid JSON, wider than any column
DEEP = b"[" * 100_000 + b"]" * 100_000  # deeper than the parser's recursion limit
SURROGATE_BYTES = b"\xed\xa0\x80"  # U+D800 encoded as if it were a character (CESU-8), not UTF-8


@dataclasses.dataclass
class Env:
    daemon: Daemon
    http: httpx.AsyncClient
    http_port: int
    socket_port: int
    key: str

    async def post(self, path: str, body: bytes, **headers: str) -> httpx.Response:
        auth = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json", **headers}
        return await self.http.post(path, content=body, headers=auth)

    async def stored(self) -> int:
        return int(
            await self.daemon.db.read(
                lambda c: c.execute(sa.select(sa.func.count()).select_from(messages_table)).scalar_one()
            )
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Env]:
    port = _free_port()
    env = {
        "MASD_NODE__DATA_DIR": str(tmp_path),
        "MASD_HTTP__LISTEN": f"127.0.0.1:{port}",
        "MASD_SOCKET__LISTEN": "127.0.0.1:0",
        "MASD_WEBHOOKS__ENABLED": "false",
        "MASD_CHANNELS__SIM__OPTIONS": "{receipt_delay = 0.01}",
    }
    daemon = Daemon(load_config(None, env=env))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        _, key = await daemon.db.write(lambda c: app_store.create_app(c, "hostile", now=time.time()))
        assert daemon.socket_server.port
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            yield Env(daemon, client, port, daemon.socket_server.port, key)
        daemon.stop()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with running(tmp_path) as e:
        yield e


def _error(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/json"), r.text
    ErrorResponse.model_validate(r.json())
    error: dict[str, Any] = r.json()["error"]
    return error


def _one(fields: bytes) -> bytes:
    return b'{"to":"' + NUMBER.encode() + b'","text":"hi",' + fields + b"}"


def _batch(*messages: bytes) -> bytes:
    return b'{"messages":[' + b",".join(messages) + b"]}"


# ----- HTTP: values some JSON writers allow but masd cannot take: 422 naming the field ---------------

FIELD_CASES = [
    ("/v1/messages", b'{"to":"13800138000","text":"\\ud800"}', "text", None),
    ("/v1/messages", b'{"to":["13800138000","\\udc00"],"text":"hi"}', "to", 1),
    ("/v1/messages", _one(b'"client_ref":"a\\udbffb"'), "client_ref", None),
    (
        "/v1/messages/batch",
        _batch(_one(b'"priority":1'), b'{"to":"1","text":"\\udfff"}'),
        "messages[1].text",
        None,
    ),
    ("/v1/messages", _one(b'"validity_seconds":NaN'), "validity_seconds", None),
    ("/v1/messages", _one(b'"priority":Infinity'), "priority", None),
    ("/v1/messages", _one(b'"send_at":-Infinity'), "send_at", None),
    ("/v1/messages", _one(b'"validity_seconds":1e400'), "validity_seconds", None),
    ("/v1/messages/batch", _batch(_one(b'"validity_seconds":NaN')), "messages[0].validity_seconds", None),
    ("/v1/messages", _one(b'"priority":' + HUGE), "priority", None),
    ("/v1/messages", _one(b'"validity_seconds":' + HUGE), "validity_seconds", None),
    ("/v1/messages", _one(b'"send_at":' + HUGE), "send_at", None),
    ("/v1/messages", _one(b'"validity_seconds":-' + HUGE), "validity_seconds", None),
    ("/v1/messages/batch", _batch(_one(b'"priority":' + HUGE)), "messages[0].priority", None),
    ("/v1/meetings", b'{"title":"x","starts_at":NaN}', "starts_at", None),
    ("/v1/meetings", b'{"title":"\\ud800"}', "title", None),
]


@pytest.mark.parametrize(
    ("path", "body", "field", "index"), FIELD_CASES, ids=[f"{c[2]}-{i}" for i, c in enumerate(FIELD_CASES)]
)
async def test_a_value_masd_cannot_take_is_a_422_naming_its_field(
    env: Env, path: str, body: bytes, field: str, index: int | None
) -> None:
    r = await env.post(path, body)
    assert r.status_code == 422, r.text
    error = _error(r)
    assert (error["code"], error["field"], error.get("index")) == ("invalid", field, index)
    if field.startswith("messages["):  # in a batch, the message at fault is named as the core does
        assert error["message_index"] == int(field[len("messages[") :].split("]")[0])
    assert any(w in error["reason"] for w in ("surrogate", "finite", "out of range")), error
    assert await env.stored() == 0


FAR_CASES = [
    (_one(b'"validity_seconds":1000000000000'), "validity_seconds", "30 days"),
    (_one(b'"validity_seconds":9223372036854775807'), "validity_seconds", "30 days"),
    (_one(b'"send_at":"9999-12-31T23:59:59Z"'), "send_at", "ten years"),
    (_one(b'"send_at":"2040-01-01T00:00:00+08:00"'), "send_at", "ten years"),
]


@pytest.mark.parametrize(("body", "field", "words"), FAR_CASES, ids=[c[2] for c in FAR_CASES])
async def test_a_time_too_far_ahead_is_a_422_and_nothing_is_stored(
    env: Env, body: bytes, field: str, words: str
) -> None:
    # Stored, such a message could never be shown again: its expiry would lie past the year 9999.
    r = await env.post("/v1/messages", body)
    assert r.status_code == 422, r.text
    error = _error(r)
    assert error["field"] == field and words in error["reason"], error
    assert await env.stored() == 0


# ----- HTTP: bodies that are not JSON masd reads: 400 naming the reason ------------------------------

BODY_CASES = [
    ("/v1/messages", DEEP, "more than 32 deep"),
    ("/v1/messages", _one(b'"channel":' + b"[" * 1000 + b"]" * 1000), "more than 32 deep"),
    ("/v1/messages/batch", b'{"messages":' + DEEP + b"}", "more than 32 deep"),
    ("/v1/meetings", DEEP, "more than 32 deep"),
    ("/v1/messages", _one(b'"priority":' + b"9" * 5000), "too many digits"),
    ("/v1/messages", b'{"to":"13800138000","text":"caf\xe9"}', "not valid UTF-8 (byte 0xe9"),
    ("/v1/messages", b'{"to":"13800138000","text":"' + SURROGATE_BYTES + b'"}', "not valid UTF-8"),
    ("/v1/messages/batch", _batch(b'{"to":"13800138000","text":"\xff"}'), "not valid UTF-8"),
    ("/v1/contacts/people", b'{"name":"\xc3\x28"}', "not valid UTF-8"),
    ("/v1/messages", b"NaN", "not a finite number"),
    ("/v1/messages", b'{"to":"13800138000","text":"hi","\\ud800":1}', "field name"),
]


@pytest.mark.parametrize(("path", "body", "words"), BODY_CASES, ids=[c[2] for c in BODY_CASES])
async def test_a_body_masd_cannot_read_is_a_400_naming_the_reason(
    env: Env, path: str, body: bytes, words: str
) -> None:
    r = await env.post(path, body)
    assert r.status_code == 400, r.text
    error = _error(r)
    assert error["code"] == "bad_request"
    assert words in error["reason"]
    assert await env.stored() == 0


async def test_the_same_message_without_the_hostile_value_is_accepted(env: Env) -> None:
    # The refusals above are about the values, not the shape: the plain message goes through.
    r = await env.post("/v1/messages", _one(b'"priority":5'))
    assert r.status_code == 201, r.text
    assert await env.stored() == 1


# ----- HTTP: sizes -----------------------------------------------------------------------------------


async def _raw_exchange(port: int, data: bytes, then: bytes = b"") -> bytes:
    """Send ``data``, then keep sending ``then`` while reading the answer until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    out = b""
    async with stream:
        await stream.send_all(data)

        async def more() -> None:
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(then)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(more)
            with trio.fail_after(20):
                while chunk := await stream.receive_some(65536):
                    out += chunk
    return out


def _too_large(out: bytes) -> None:
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), out[:200]
    error = json.loads(body)["error"]
    assert error == {"code": "too_large", "reason": f"the body is larger than {MAX_BODY} bytes"}


async def test_an_oversized_body_is_refused_from_its_content_length_before_it_is_sent(env: Env) -> None:
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {env.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {5 * MAX_BODY}\r\n\r\n"
    ).encode()
    _too_large(await _raw_exchange(env.http_port, head))  # not a byte of the body was sent


@pytest.mark.parametrize("size", [MAX_BODY + 1, 2 * MAX_BODY, 5 * MAX_BODY])
async def test_a_client_sending_an_oversized_body_reads_a_413_instead_of_a_reset(env: Env, size: int) -> None:
    body = _one(b'"client_ref":"' + b"x" * size + b'"')
    r = await env.post("/v1/messages", body)
    assert r.status_code == 413
    assert _error(r)["code"] == "too_large"
    head = (
        f"POST /v1/messages/batch HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {env.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    _too_large(await _raw_exchange(env.http_port, head, body))
    assert await env.stored() == 0


async def test_a_chunked_body_is_refused_with_a_413_once_it_passes_the_limit(env: Env) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"to": "13800138000", "text": "'
        for _ in range(3 * MAX_BODY // 65536):
            yield b"x" * 65536
        yield b'"}'

    r = await env.http.post(
        "/v1/messages",
        content=chunks(),
        headers={"Authorization": f"Bearer {env.key}", "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert _error(r)["reason"] == f"the body is larger than {MAX_BODY} bytes"
    assert await env.stored() == 0


def _get_with_head_of(size: int) -> bytes:
    start = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Pad: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


async def test_the_header_limit_is_the_documented_64_kib(env: Env) -> None:
    assert MAX_HEAD == 64 * 1024
    ok = await _raw_exchange(env.http_port, _get_with_head_of(MAX_HEAD))
    assert ok.startswith(b"HTTP/1.1 200"), ok[:200]
    refused = await _raw_exchange(env.http_port, _get_with_head_of(MAX_HEAD + 1))
    head, _, body = refused.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431"), refused[:200]
    assert json.loads(body)["error"] == {
        "code": "too_large",
        "reason": f"the request line and headers are longer than {MAX_HEAD} bytes",
    }


# ----- the socket ------------------------------------------------------------------------------------


class Peer:
    """One socket connection: raw lines out, frames in (pushed receipts and replies set aside)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def line(self, timeout: float = 10) -> bytes:
        with trio.fail_after(timeout):
            while b"\n" not in self.buf:
                data = await self.stream.receive_some(65536)
                assert data, "masd closed the connection"
                self.buf += data
        end = self.buf.index(b"\n")
        out = bytes(self.buf[:end])
        del self.buf[: end + 1]
        return out

    async def answer(self, timeout: float = 10) -> dict[str, Any]:
        while True:
            frame = _strict(await self.line(timeout))
            if frame["type"] not in ("receipt", "reply"):
                return frame

    async def request(self, line: bytes) -> dict[str, Any]:
        await self.stream.send_all(line + b"\n")
        return await self.answer()


def _strict(line: bytes) -> dict[str, Any]:
    """A frame from masd, read as strictly as a careful client would: UTF-8 JSON, no NaN or Infinity."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    frame = json.loads(line.decode("utf-8"), parse_constant=refuse)
    assert isinstance(frame, dict) and isinstance(frame.get("type"), str), line[:200]
    return frame


async def _logged_in(env: Env) -> Peer:
    peer = Peer(await trio.open_tcp_stream("127.0.0.1", env.socket_port))
    ok = await peer.request(json.dumps({"type": "login", "key": env.key}).encode())
    assert ok["type"] == "login_ok", ok
    return peer


def _submit(fields: bytes) -> bytes:
    return b'{"type":"submit","ref":"r1","to":"13800138000","text":"hi",' + fields + b"}"


SOCKET_CASES = [
    (b'{"type":"ping","id":' + b"[" * 30_000 + b"]" * 30_000 + b"}", None, "more than 32 deep"),
    (b"[" * 65_000, None, "more than 32 deep"),
    (b'{"type":"submit","ref":"r1","to":"13800138000","text":"\\ud800"}', "text", "surrogate"),
    (b'{"type":"submit","ref":"\\udc00","to":"13800138000","text":"hi"}', "ref", "surrogate"),
    (b'{"type":"ping","id":"\\ud800"}', "id", "surrogate"),
    (_submit(b'"priority":NaN'), "priority", "finite"),
    (_submit(b'"validity_seconds":Infinity'), "validity_seconds", "finite"),
    (b'{"type":"ping","id":NaN}', "id", "finite"),
    (b'{"type":"ping","id":1e400}', "id", "finite"),
    (_submit(b'"priority":' + HUGE), "priority", "out of range"),
    (_submit(b'"validity_seconds":' + HUGE), "validity_seconds", "out of range"),
    (b'{"type":"submit","ref":' + HUGE + b',"to":"13800138000","text":"hi"}', "ref", "out of range"),
    (_submit(b'"priority":' + b"9" * 5000), None, "too many digits"),
    (b'{"type":"submit","ref":"r1","to":"13800138000","text":"caf\xe9"}', None, "not valid UTF-8"),
    (b"\xff\xfe\x00", None, "not valid UTF-8"),
]


async def test_every_hostile_frame_gets_an_error_frame_and_the_connection_stays_usable(env: Env) -> None:
    peer = await _logged_in(env)
    for line, field, words in SOCKET_CASES:
        answer = await peer.request(line)
        assert answer["type"] == "error" and answer["code"] == "invalid", (line[:80], answer)
        assert answer.get("field") == field, (line[:80], answer)
        assert words in answer["reason"], (line[:80], answer)
    assert await peer.request(b'{"type":"ping","id":"still here"}') == {"type": "pong", "id": "still here"}
    assert await env.stored() == 0


# ----- the socket, fuzzed ----------------------------------------------------------------------------

FUZZ_FRAMES = 10_000
_ANSWERS = {"error", "pong", "submit_ack"}
_KEYS = ["ref", "to", "text", "priority", "send_at", "validity_seconds", "extension", "channel", "id", "key"]


class FrameFuzzer:
    """Random lines for the socket, from a seed: JSON of random shapes written by hand (so that NaN,
    huge numbers, lone surrogate escapes and raw control characters can be in it), mutations of good
    frames, random bytes, deep nesting and, now and then, a frame that is fine."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)

    def line(self) -> bytes:
        while True:
            line = self._any()
            if _answered(line):
                return line

    def _any(self) -> bytes:
        r = self.rnd.random()
        if r < 0.45:
            return self._frame().encode("utf-8", "surrogatepass")
        if r < 0.60:
            return self._mutated(self._good())
        if r < 0.75:
            return bytes(
                self.rnd.choice(b'\x00\x7f\x80\xbf\xc0\xc3\xed\xf0\xff{}[]",:\\ae9')
                for _ in range(self.rnd.randint(1, 60))
            ).replace(b"\n", b"")
        if r < 0.82:
            n = self.rnd.choice([31, 32, 33, 100, 1000, 20_000, 30_000])
            inner = b"[" * n + b"]" * n if self.rnd.random() < 0.8 else b'{"a":' * n + b"1" + b"}" * n
            return b'{"type":"ping","id":' + inner + b"}" if self.rnd.random() < 0.7 else inner
        if r < 0.90:
            digits = self.rnd.choice([19, 20, 400, 4300, 4301, 6000])
            number = (b"-" if self.rnd.random() < 0.3 else b"") + b"9" * digits
            return _submit(b'"' + self.rnd.choice(_KEYS[3:7]).encode() + b'":' + number)
        if r < 0.9005:
            return b'{"type":"ping","id":"' + b"x" * 70_000 + b'"}'  # over socket.max_frame_bytes
        return self._good()

    def _good(self) -> bytes:
        if self.rnd.random() < 0.5:
            return json.dumps({"type": "ping", "id": self.rnd.randint(0, 10**6)}).encode()
        ref = f"fuzz-{self.rnd.randint(0, 10**9)}"
        return json.dumps({"type": "submit", "ref": ref, "to": NUMBER, "text": "fuzz"}).encode()

    def _mutated(self, line: bytes) -> bytes:
        data = bytearray(line)
        for _ in range(self.rnd.randint(1, 4)):
            pos = self.rnd.randrange(len(data) + 1)
            op = self.rnd.random()
            if op < 0.4 and data:
                data[min(pos, len(data) - 1)] = self.rnd.randrange(256)
            elif op < 0.7:
                data[pos:pos] = self.rnd.choice([b"\\ud800", b"NaN", b"\xff", b"[[[[", b'"', b",", b"1e999"])
            elif data:
                del data[pos : pos + self.rnd.randint(1, 5)]
        return bytes(data).replace(b"\n", b"")

    def _frame(self) -> str:
        kind = self.rnd.choice(["ping", "submit", "submit", "login", "ack", "bogus", None])
        parts = [] if kind is None else [f'"type":{self._string() if kind == "bogus" else json.dumps(kind)}']
        if kind is None and self.rnd.random() < 0.5:
            parts.append(f'"type":{self._value(0)}')
        for key in self.rnd.sample(_KEYS, self.rnd.randint(0, 5)):
            parts.append(f"{json.dumps(key)}:{self._value(0)}")
        if kind == "ack":  # never an event this connection was pushed: a good ack has no answer
            parts.append(f'"event":{self.rnd.choice(["-1", "1.5", "null", "true", "[1]", str(10**15)])}')
        self.rnd.shuffle(parts)
        return "{" + ",".join(parts) + "}"

    def _value(self, depth: int) -> str:
        r = self.rnd.random()
        if depth > 3 or r < 0.6:
            return self._scalar()
        items = [self._value(depth + 1) for _ in range(self.rnd.randint(0, 4))]
        if r < 0.8:
            return "[" + ",".join(items) + "]"
        return "{" + ",".join(f"{self._string()}:{v}" for v in items) + "}"

    def _scalar(self) -> str:
        return self.rnd.choice(
            [
                lambda: "null",
                lambda: self.rnd.choice(["true", "false"]),
                lambda: str(self.rnd.randint(-10, 10**6)),
                lambda: str(self.rnd.choice([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**400])),
                lambda: repr(self.rnd.uniform(-1e6, 1e6)),
                lambda: self.rnd.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "1E-999"]),
                lambda: json.dumps(NUMBER),
                self._string,
                self._string,
            ]
        )()

    def _string(self) -> str:
        out = []
        for _ in range(self.rnd.randint(0, 8)):
            r = self.rnd.random()
            if r < 0.4:
                out.append(self.rnd.choice(["a", "7", " ", "会议", "é", "😀", "\\n", '\\"', "\\\\"]))
            elif r < 0.7:  # an escape of any code unit, a lone surrogate as likely as not
                unit = self.rnd.choice([self.rnd.randrange(0xD800, 0xE000), self.rnd.randrange(0x10000)])
                out.append(f"\\u{unit:04x}")
            elif r < 0.85:
                code = self.rnd.randrange(0x110000)
                if code != 0x0A and not 0xD800 <= code < 0xE000:
                    out.append(chr(code))  # raw: control characters make the JSON invalid, which is fine
            else:
                out.append(self.rnd.choice(["login", "submit", "ping", "13800138000", "+8613900139000"]))
        return '"' + "".join(out) + '"'


def _answered(line: bytes) -> bool:
    """Whether masd owes this line an answer: every line does but an empty one and a good ack."""
    if not line.rstrip(b"\r").strip():
        return False
    try:
        frame = json.loads(line)
    except (ValueError, RecursionError):
        return True
    if not isinstance(frame, dict) or frame.get("type") != "ack":
        return True
    event = frame.get("event")
    return not (isinstance(event, int) and not isinstance(event, bool) and 0 <= event < 10**12)


async def test_ten_thousand_random_frames_each_get_one_json_answer_and_the_connection_survives(
    env: Env,
) -> None:
    seed = int(os.environ.get("MASD_FUZZ_SEED", time.time_ns() % 1_000_000))
    fuzz = FrameFuzzer(seed)
    lines = [fuzz.line() for _ in range(FUZZ_FRAMES)]
    peer = await _logged_in(env)
    answers: list[dict[str, Any]] = []
    bad: list[str] = []

    async def send() -> None:
        for start in range(0, len(lines), 200):
            await peer.stream.send_all(b"".join(line + b"\n" for line in lines[start : start + 200]))
        await peer.stream.send_all(b'{"type":"ping","id":"fuzz-end"}\n')

    async def read() -> None:
        while True:
            raw = await peer.line(timeout=30)
            try:
                frame = _strict(raw)
            except (ValueError, AssertionError) as e:
                bad.append(f"{e}: {raw[:120]!r}")
                continue
            if frame == {"type": "pong", "id": "fuzz-end"}:
                return
            if frame["type"] not in ("receipt", "reply"):
                answers.append(frame)

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            nursery.start_soon(read)
    where = f"(seed {seed}; MASD_FUZZ_SEED={seed} repeats this run)"
    assert bad == [], f"answers that are not JSON {where}: {bad[:5]}"
    assert len(answers) == FUZZ_FRAMES, f"{len(answers)} answers to {FUZZ_FRAMES} frames {where}"
    kinds = {a["type"] for a in answers}
    assert kinds <= _ANSWERS, f"unexpected answers {kinds - _ANSWERS} {where}"
    internal = [a for a in answers if a.get("code") == "internal"]
    assert internal == [], f"frames that failed inside masd {where}: {internal[:5]}"
    errors = [a for a in answers if a["type"] == "error"]
    assert all(isinstance(a["code"], str) and isinstance(a["reason"], str) for a in errors)
    assert len(errors) > FUZZ_FRAMES // 2  # the run was mostly hostile, as meant


# ----- schemathesis, with the cases above as explicit examples ---------------------------------------

EXAMPLES = 50  # generated per operation and generation mode, besides the explicit ones


def _hostile_bodies(path: str) -> list[bytes]:
    """Raw JSON bodies for an operation: the cases above where they fit, generic ones elsewhere."""
    generic = [
        DEEP,
        b"NaN",
        b'{"a":Infinity}',
        b'{"a":"\\ud800"}',
        b'{"a":' + HUGE + b"}",
        b'{"a":' + b"9" * 5000 + b"}",
        b'{"a":"\xff"}',
    ]
    cases = [c[1] for c in FIELD_CASES if c[0] == path] + [c[1] for c in BODY_CASES if c[0] == path]
    return generic + cases


def _schemathesis(base_url: str, key: str) -> dict[str, list[str]]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    auth = {"Authorization": f"Bearer {key}"}
    failures: dict[str, list[str]] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        name = f"{op.method.upper()} {op.path}"
        takes_json = "application/json" in op.get_request_payload_content_types()
        params = {name: "1" for name in re.findall(r"{(\w+)}", op.path)}
        for mode in GenerationMode:

            @hypothesis.settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(hypothesis.HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                report_multiple_bugs=False,
            )
            @hypothesis.given(case=op.as_strategy(generation_mode=mode))
            def check(case: Any) -> None:
                response = case.call(base_url=base_url, headers=auth)
                case.validate_response(response, checks=[not_a_server_error])

            if takes_json and mode is GenerationMode.NEGATIVE:
                for body in _hostile_bodies(op.path):
                    case = op.Case(body=body, media_type="application/json", path_parameters=params or None)
                    check = hypothesis.example(case=case)(check)
            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing to make invalid: the operation takes no parameters and no body
            except Exception as e:  # each operation's first failure is reported, then the next runs
                failures.setdefault(name, []).append(f"{mode.value}: {e}")
    return failures


async def test_schemathesis_with_the_hostile_cases_finds_no_server_error(env: Env) -> None:
    base_url = f"http://127.0.0.1:{env.http_port}"
    failures = await trio.to_thread.run_sync(_schemathesis, base_url, env.key)
    assert failures == {}, "\n\n".join(f"{op}:\n" + "\n".join(errs) for op, errs in failures.items())
