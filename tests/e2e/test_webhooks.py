"""Webhooks end to end: a real daemon with the sim channel POSTs each app's receipts and replies to a
real HTTP receiver on loopback, which records what arrives and answers as each test tells it to.

The receiver is the standard library's threaded HTTP server, so a request it holds open (a hung
endpoint) ties up one of its threads and nothing of the daemon's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import http.server
import json
import os
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from masd.config import load_config
from masd.daemon import Daemon
from masd.store import apps as app_store
from masd.store import events as event_store
from masd.store.webhooks import list_parked
from masd_adapters.base import InboundReply

SERVICE_NUMBER = "106570001"  # the sim channel's default
MAX_ATTEMPTS = 3


# ----- the receiving end ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: threading.Event

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class Receiver:
    """Records every POST; answers each path with the statuses queued for it, then its default."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.queued: dict[str, list[int]] = {}
        self.default: dict[str, int] = {}
        self.hang: set[str] = set()
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hit = Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, body, threading.Event())
                with receiver.lock:
                    receiver.hits.append(hit)
                    queued = receiver.queued.get(self.path)
                    status = queued.pop(0) if queued else receiver.default.get(self.path, 200)
                    hang = self.path in receiver.hang
                if hang:
                    receiver.release.wait(60)
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"no")
                hit.answered.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def for_path(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]

    async def wait_for(self, path: str, count: int, timeout: float = 15.0) -> list[Hit]:
        with trio.fail_after(timeout):
            while len(hits := self.for_path(path)) < count:
                await trio.sleep(0.02)
        return hits


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        r.release.set()
        r.server.shutdown()
        r.server.server_close()


# ----- the daemon -------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "MASD_NODE__DATA_DIR": str(tmp_path),
        "MASD_HTTP__LISTEN": f"127.0.0.1:{_free_port()}",
        "MASD_SOCKET__ENABLED": "false",
        "MASD_CHANNELS__SIM__OPTIONS": "{receipt_delay = 0.01}",
        "MASD_WEBHOOKS__MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "MASD_WEBHOOKS__BACKOFF_SECONDS": "0.05",
        "MASD_WEBHOOKS__BACKOFF_MAX_SECONDS": "0.2",
        "MASD_WEBHOOKS__TIMEOUT_SECONDS": "3",
        "MASD_WEBHOOKS__DISCOVER_SECONDS": "0.2",
        **extra,
    }


@dataclasses.dataclass
class Env:
    daemon: Daemon
    client: httpx.AsyncClient
    env: dict[str, str]
    keys: dict[str, str] = dataclasses.field(default_factory=dict)

    async def add_app(self, name: str, *, url: str | None, secret: str | None = None, **kw: Any) -> int:
        app_id, key = await self.daemon.db.write(
            lambda c: app_store.create_app(
                c, name, now=time.time(), webhook_url=url, webhook_secret=secret, **kw
            )
        )
        self.keys[name] = key
        return app_id

    async def send(self, app: str, body: dict[str, Any]) -> int:
        r = await self.client.post(
            "/v1/messages", json=body, headers={"Authorization": f"Bearer {self.keys[app]}"}
        )
        assert r.status_code == 201, r.text
        message_id: int = r.json()["id"]
        return message_id

    async def cli(self, *args: str) -> Any:
        """Run ``masd ARGS --json`` as a subprocess against this daemon's data directory."""
        proc = await trio.run_process(
            [sys.executable, "-m", "masd.cli", *args, "--json"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, **self.env},
        )
        assert proc.returncode == 0, proc.stderr.decode()
        return json.loads(proc.stdout)


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **extra: str) -> AsyncIterator[Env]:
    env = _env(tmp_path, **extra)
    daemon = Daemon(load_config(None, env=env))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        base = f"http://{daemon.cfg.http.listen}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield Env(daemon, client, env)
        daemon.stop()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with running(tmp_path) as e:
        yield e


def _verify(hit: Hit, secret: str) -> bool:
    # Written from docs/webhooks.md, independently of masd's own signing code.
    timestamp = hit.headers["x-masd-timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + hit.body, hashlib.sha256).hexdigest()
    given = hit.headers["x-masd-signature"]
    return given.startswith("sha256=") and hmac.compare_digest(given.removeprefix("sha256="), expected)


async def _parked(env: Env, app_id: int) -> list[dict[str, Any]]:
    return await env.daemon.db.read(lambda c: list_parked(c, app_id=app_id))


async def _wait_parked(env: Env, app_id: int, count: int = 1) -> list[dict[str, Any]]:
    with trio.fail_after(10):
        while len(rows := await _parked(env, app_id)) != count:
            await trio.sleep(0.02)
    return rows


# ----- what arrives ---------------------------------------------------------------------------------------


async def test_receipt_arrives_signed_with_the_app_secret(env: Env, receiver: Receiver) -> None:
    await env.add_app("oa", url=receiver.url + "/oa", secret="s3cret-oa")
    message_id = await env.send("oa", {"to": "13800138000", "text": "hello", "client_ref": "r-1"})

    (hit,) = await receiver.wait_for("/oa", 1)
    assert _verify(hit, "s3cret-oa")
    assert not _verify(hit, "another secret")
    assert abs(int(hit.headers["x-masd-timestamp"]) - time.time()) < 60
    assert hit.headers["content-type"] == "application/json"
    event = hit.event
    assert event["type"] == "receipt" == hit.headers["x-masd-event-type"]
    assert str(event["event"]) == hit.headers["x-masd-event-id"]
    assert (event["message_id"], event["client_ref"]) == (message_id, "r-1")
    assert (event["recipient"], event["state"]) == ("13800138000", "delivered")
    assert event["done_at"].endswith("Z")


async def test_reply_arrives_signed_with_the_message_it_answers(env: Env, receiver: Receiver) -> None:
    await env.add_app("oa", url=receiver.url + "/oa", secret="s3cret-oa", extension="17")
    message_id = await env.send(
        "oa", {"to": "13800138000", "text": "Reply 1 to confirm", "client_ref": "m-9"}
    )
    await receiver.wait_for("/oa", 1)  # its receipt

    await env.daemon.gateway.reply("sim", InboundReply("8613800138000", SERVICE_NUMBER + "17", "1 好的"))

    hits = await receiver.wait_for("/oa", 2)
    reply = hits[1]
    assert _verify(reply, "s3cret-oa")
    event = reply.event
    assert event["type"] == "reply"
    assert (event["sender"], event["text"], event["matched_by"]) == ("13800138000", "1 好的", "extension")
    assert (event["message_id"], event["client_ref"]) == (message_id, "m-9")
    assert event["received_at"].endswith("Z")
    assert event["event"] > hits[0].event["event"]


async def test_endpoint_failing_a_few_times_gets_the_event_after_retries(
    env: Env, receiver: Receiver
) -> None:
    receiver.queued["/flaky"] = [500, 503]
    app_id = await env.add_app("flaky", url=receiver.url + "/flaky", secret="k")
    await env.send("flaky", {"to": "13800138000", "text": "hi"})

    hits = await receiver.wait_for("/flaky", 3)
    assert len({h.body for h in hits}) == 1  # the same event each time
    assert [h.headers["x-masd-attempt"] for h in hits] == ["1", "2", "3"]
    event_id = hits[0].event["event"]
    with trio.fail_after(5):
        while await env.daemon.gateway.get_cursor(app_id, "webhook") != event_id:
            await trio.sleep(0.02)
    assert await _parked(env, app_id) == []


async def test_events_arrive_in_order_even_when_each_fails_once(env: Env, receiver: Receiver) -> None:
    receiver.queued["/o"] = [500, 200, 500, 200, 500, 200, 500, 200, 500, 200]
    await env.add_app("o", url=receiver.url + "/o", secret="k", extension="55")
    for i in range(3):
        await env.send("o", {"to": f"1380013800{i}", "text": f"n{i}", "extension": str(i)})
    await env.daemon.gateway.reply("sim", InboundReply("13800138001", SERVICE_NUMBER + "551", "ok"))
    await env.daemon.gateway.reply("sim", InboundReply("13800138002", SERVICE_NUMBER + "552", "ok"))

    hits = await receiver.wait_for("/o", 10)
    taken = [h.event["event"] for h in hits[1::2]]  # every second request is the one answered 200
    assert [h.event["event"] for h in hits[0::2]] == taken  # each was retried before the next was sent
    assert taken == sorted(taken)
    assert len(set(taken)) == 5


# ----- parking and retrying -------------------------------------------------------------------------------


async def test_event_failing_every_attempt_is_parked_listed_and_the_next_one_still_sent(
    env: Env, receiver: Receiver
) -> None:
    receiver.queued["/down"] = [500] * MAX_ATTEMPTS
    app_id = await env.add_app("down", url=receiver.url + "/down", secret="k")
    await env.send("down", {"to": "13800138000", "text": "first"})
    hits = await receiver.wait_for("/down", MAX_ATTEMPTS)
    first_event = hits[0].event["event"]
    await _wait_parked(env, app_id)

    await env.send("down", {"to": "13900139000", "text": "second"})
    hits = await receiver.wait_for("/down", MAX_ATTEMPTS + 1)
    assert hits[-1].event["recipient"] == "13900139000"  # not held up behind the parked one

    (parked,) = await env.cli("webhooks", "parked", "--app", "down")
    assert (parked["app"], parked["event_id"], parked["type"]) == ("down", first_event, "receipt")
    assert parked["attempts"] == MAX_ATTEMPTS
    assert parked["last_error"].startswith("HTTP 500")
    assert parked["retry_requested"] is False


async def test_retry_sends_a_parked_event_again(env: Env, receiver: Receiver) -> None:
    receiver.queued["/down"] = [500] * MAX_ATTEMPTS
    app_id = await env.add_app("down", url=receiver.url + "/down", secret="k")
    await env.send("down", {"to": "13800138000", "text": "first"})
    await _wait_parked(env, app_id)
    (parked,) = await env.cli("webhooks", "parked")

    answer = await env.cli("webhooks", "retry", str(parked["id"]))
    assert answer == {"retry_requested": 1, "not_parked": []}

    hits = await receiver.wait_for("/down", MAX_ATTEMPTS + 1)
    assert hits[-1].event["event"] == parked["event_id"]
    assert _verify(hits[-1], "k")
    await _wait_parked(env, app_id, 0)  # taken this time, so no longer parked
    assert await env.cli("webhooks", "parked") == []


async def test_status_shows_cursor_latest_event_and_parked_count(env: Env, receiver: Receiver) -> None:
    receiver.queued["/down"] = [500] * MAX_ATTEMPTS
    app_id = await env.add_app("down", url=receiver.url + "/down", secret="k")
    await env.send("down", {"to": "13800138000", "text": "first"})
    await _wait_parked(env, app_id)

    (row,) = await env.cli("webhooks", "status")
    latest = await env.daemon.db.read(lambda c: event_store.latest_event_id(c, app_id))
    assert row["app"] == "down"
    assert row["webhook_url"] == receiver.url + "/down"
    assert (row["cursor"], row["latest_event"], row["behind"], row["parked"]) == (latest, latest, 0, 1)


# ----- isolation and discovery ----------------------------------------------------------------------------


async def test_hung_endpoint_of_one_app_does_not_delay_another(env: Env, receiver: Receiver) -> None:
    receiver.hang.add("/hung")
    await env.add_app("a", url=receiver.url + "/hung", secret="ka")
    await env.add_app("b", url=receiver.url + "/b", secret="kb")
    await env.send("a", {"to": "13800138000", "text": "to a"})
    (stuck,) = await receiver.wait_for("/hung", 1)

    await env.send("b", {"to": "13900139000", "text": "to b"})
    (hit,) = await receiver.wait_for("/b", 1)
    assert _verify(hit, "kb")
    assert not stuck.answered.is_set()  # a's first attempt is still waiting for its answer


async def test_webhook_set_while_running_is_picked_up(env: Env, receiver: Receiver) -> None:
    await env.add_app("late", url=None)
    await env.daemon.db.write(
        lambda c: app_store.update_app(c, "late", webhook_url=receiver.url + "/late", webhook_secret="kl")
    )
    await env.send("late", {"to": "13800138000", "text": "now with a webhook"})

    (hit,) = await receiver.wait_for("/late", 1)
    assert _verify(hit, "kl")
    assert hit.event["type"] == "receipt"
