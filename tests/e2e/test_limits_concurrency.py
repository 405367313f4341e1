"""An app's quota and rate hold exactly under concurrency: hundreds of parallel requests over HTTP, the
batch route, the socket and DB polling at once, and two masd nodes on one database.

The totals asserted are exact: the quota is charged in the transaction that stores the deliveries, so
no interleaving of requests can take more than the quota, and none that fit is refused.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import trio
from typer.testing import CliRunner

from masd.cli import app as cli_app
from masd.config import load_config
from masd.daemon import Daemon
from masd.store import apps as app_store
from masd.store import messages as msg_store
from masd.store.db import Database
from masd.store.tables import deliveries


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, daemon: Daemon, http: int, sock: int) -> None:
        self.daemon, self.http, self.sock = daemon, http, sock


@contextlib.asynccontextmanager
async def nodes(
    tmp_path: Path, n: int = 1, *, store_url: str = "", **extra: str
) -> AsyncIterator[list[Node]]:
    """``n`` daemons sharing one store (SQLite in tmp_path unless ``store_url``)."""
    out: list[Node] = []
    async with trio.open_nursery() as nursery:
        for i in range(n):
            http, sock = _free_port(), _free_port()
            env = {
                "MASD_NODE__DATA_DIR": str(tmp_path),
                "MASD_NODE__NAME": f"node{i}",
                "MASD_HTTP__LISTEN": f"127.0.0.1:{http}",
                "MASD_SOCKET__LISTEN": f"127.0.0.1:{sock}",
                "MASD_CHANNELS__SIM__OPTIONS": "{receipt_delay = 0.01}",
                **extra,
            }
            if store_url:
                env["MASD_STORE__URL"] = store_url
            daemon = Daemon(load_config(None, env=env))
            await nursery.start(daemon.run)
            out.append(Node(daemon, http, sock))
        try:
            yield out
        finally:
            for node in out:
                node.daemon.stop()


async def make_app(daemon: Daemon, name: str, **settings: Any) -> str:
    _, key = await daemon.db.write(lambda c: app_store.create_app(c, name, now=time.time(), **settings))
    return key


async def stored_deliveries(daemon: Daemon) -> int:
    def count(c: sa.Connection) -> int:
        return int(c.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one())

    return await daemon.db.read(count)


def numbers(start: int, n: int) -> list[str]:
    return [f"138{start + i:08d}" for i in range(n)]


async def parallel_posts(
    port: int, key: str, bodies: list[tuple[str, dict[str, Any]]], results: list[httpx.Response]
) -> None:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, limits=limits) as client:

        async def one(path: str, body: dict[str, Any]) -> None:
            results.append(await client.post(path, json=body, headers={"Authorization": f"Bearer {key}"}))

        async with trio.open_nursery() as nursery:
            for path, body in bodies:
                nursery.start_soon(one, path, body)


def accepted_recipients(results: list[httpx.Response]) -> int:
    total = 0
    for r in results:
        assert r.status_code in (200, 201, 429), r.text
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "quota_exceeded", r.text
            continue
        body = r.json()
        total += sum(len(m["recipients"]) for m in body.get("messages", [body]))
    return total


async def test_two_hundred_parallel_requests_take_exactly_the_quota(tmp_path: Path) -> None:
    async with nodes(tmp_path) as (node,):
        key = await make_app(node.daemon, "oa", quota_per_day=50)
        bodies = [("/v1/messages", {"to": numbers(i, 1), "text": "通知"}) for i in range(200)]
        results: list[httpx.Response] = []
        await parallel_posts(node.http, key, bodies, results)
        assert sum(r.status_code == 201 for r in results) == 50
        assert sum(r.status_code == 429 for r in results) == 150
        assert await stored_deliveries(node.daemon) == 50
        app = await node.daemon.gateway.app_named("oa")
        assert app is not None and await node.daemon.gateway.usage_today(app) == 50


async def test_multi_recipient_and_batch_requests_in_parallel_take_exactly_the_quota(tmp_path: Path) -> None:
    async with nodes(tmp_path) as (node,):
        key = await make_app(node.daemon, "oa", quota_per_day=105)
        bodies: list[tuple[str, dict[str, Any]]] = []
        for i in range(30):
            if i % 2:
                bodies.append(("/v1/messages", {"to": numbers(i * 10, 10), "text": "十人"}))
            else:
                two = [{"to": numbers(i * 10, 5), "text": "a"}, {"to": numbers(i * 10 + 5, 5), "text": "b"}]
                bodies.append(("/v1/messages/batch", {"messages": two}))
        results: list[httpx.Response] = []
        await parallel_posts(node.http, key, bodies, results)
        # Every request costs ten: ten of them fit in 105, and the eleventh would overshoot.
        assert accepted_recipients(results) == 100
        assert await stored_deliveries(node.daemon) == 100


async def test_pipelined_socket_submits_take_exactly_the_quota(tmp_path: Path) -> None:
    async with nodes(tmp_path) as (node,):
        key = await make_app(node.daemon, "oa", quota_per_day=20)
        stream = await trio.open_tcp_stream("127.0.0.1", node.sock)
        lines = [json.dumps({"type": "login", "key": key})]
        lines += [
            json.dumps({"type": "submit", "ref": f"r{i}", "to": numbers(i, 1), "text": "通知"})
            for i in range(60)
        ]
        await stream.send_all(("\n".join(lines) + "\n").encode())
        answers: list[dict[str, Any]] = []
        buf = b""
        with trio.fail_after(30):
            while len(answers) < 61:
                data = await stream.receive_some(65536)
                assert data
                buf += data
                *done, buf = buf.split(b"\n")
                answers += [f for f in map(json.loads, done) if f["type"] not in ("receipt", "reply")]
        await stream.aclose()
        kinds = [a["type"] for a in answers[1:]]
        assert kinds.count("submit_ack") == 20
        assert [a["code"] for a in answers[1:] if a["type"] == "error"] == ["quota_exceeded"] * 40
        assert await stored_deliveries(node.daemon) == 20


async def test_http_socket_and_db_polling_at_once_take_exactly_the_quota(tmp_path: Path) -> None:
    oa_url = f"sqlite:///{tmp_path / 'oa.db'}"
    done = CliRunner().invoke(
        cli_app,
        ["dbpoll", "init", "oa1", "--url", oa_url],
        env={"MASD_NODE__DATA_DIR": str(tmp_path / "cli")},
    )
    assert done.exit_code == 0, done.output
    with sqlite3.connect(tmp_path / "oa.db") as oa:
        oa.executemany(
            "INSERT INTO api_mt_oa1 (SM_ID, MOBILES, CONTENT) VALUES (?, ?, ?)",
            [(i + 1, numbers(5000 + i, 1)[0], "OA") for i in range(40)],
        )
    db = Database(f"sqlite:///{tmp_path / 'masd.db'}")
    db.upgrade()
    _, key = db.write_sync(lambda c: app_store.create_app(c, "oa", now=time.time(), quota_per_day=60))
    db.dispose()
    extra = {"MASD_DBPOLL__OA1__URL": oa_url, "MASD_DBPOLL__OA1__APP": "oa", "MASD_DBPOLL__OA1__BATCH": "5"}
    async with nodes(tmp_path, **extra) as (node,):
        results: list[httpx.Response] = []
        acks: list[str] = []

        async def socket_client() -> None:
            stream = await trio.open_tcp_stream("127.0.0.1", node.sock)
            frames = [{"type": "login", "key": key}]
            frames += [
                {"type": "submit", "ref": i, "to": numbers(9000 + i, 1), "text": "s"} for i in range(40)
            ]
            await stream.send_all(b"".join(json.dumps(f).encode() + b"\n" for f in frames))
            buf, answers = b"", 0
            with trio.fail_after(30):
                while answers < 41:
                    buf += await stream.receive_some(65536)
                    *lines, buf = buf.split(b"\n")
                    for f in map(json.loads, lines):
                        if f["type"] in ("receipt", "reply"):
                            continue
                        answers += 1
                        acks.append(f["type"])
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            bodies = [("/v1/messages", {"to": numbers(i, 1), "text": "h"}) for i in range(40)]
            nursery.start_soon(parallel_posts, node.http, key, bodies, results)
            nursery.start_soon(socket_client)

        def oa_left() -> int:
            with sqlite3.connect(tmp_path / "oa.db") as oa:
                return int(oa.execute("SELECT COUNT(*) FROM api_mt_oa1").fetchone()[0])

        # The poller takes what is left of the quota and leaves the rest of api_mt waiting.
        with trio.fail_after(30):
            while (await stored_deliveries(node.daemon)) < 60:
                await trio.sleep(0.1)
        await trio.sleep(1.0)
        http_ok = sum(r.status_code == 201 for r in results)
        socket_ok = acks.count("submit_ack")
        polled = 40 - oa_left()
        assert await stored_deliveries(node.daemon) == 60
        assert http_ok + socket_ok + polled == 60
        assert all(r.status_code in (201, 429) for r in results)


async def test_the_rate_admits_one_seconds_worth_at_once_and_refuses_the_rest(tmp_path: Path) -> None:
    async with nodes(tmp_path) as (node,):
        key = await make_app(node.daemon, "oa", rate=20.0)
        results: list[httpx.Response] = []
        started = time.monotonic()
        bodies = [("/v1/messages", {"to": numbers(i, 1), "text": "r"}) for i in range(200)]
        await parallel_posts(node.http, key, bodies, results)
        elapsed = time.monotonic() - started
        ok = sum(r.status_code == 201 for r in results)
        refused = [r for r in results if r.status_code == 429]
        assert ok + len(refused) == 200
        assert 20 <= ok <= 20 + 20 * elapsed + 1e-6
        assert all(
            r.json()["error"]["code"] == "rate_limited" and "Retry-After" in r.headers for r in refused
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.http}") as client:
            big = await client.post(
                "/v1/messages",
                json={"to": numbers(1000, 1000), "text": "all"},
                headers={"Authorization": f"Bearer {key}"},
            )
        assert big.status_code == 429, big.text
        err = big.json()["error"]
        assert (
            err["field"] == "rate"
            and "at most 20 at once" in err["reason"]
            and "Retry-After" not in big.headers
        )
        assert await stored_deliveries(node.daemon) == ok


@pytest.mark.db
async def test_two_nodes_on_one_database_take_exactly_the_quota(store_url: str, tmp_path: Path) -> None:
    db = Database(store_url)
    db.upgrade()
    _, key = db.write_sync(
        lambda c: app_store.create_app(c, "oa", now=time.time(), quota_per_day=70, rate=1000)
    )
    db.dispose()
    async with nodes(tmp_path, 2, store_url=store_url) as (a, b):
        results: list[httpx.Response] = []
        half = [("/v1/messages", {"to": numbers(i, 1), "text": "n"}) for i in range(100)]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(parallel_posts, a.http, key, half, results)
            nursery.start_soon(parallel_posts, b.http, key, half, results)
        assert sum(r.status_code in (200, 201) for r in results) == 70
        assert await stored_deliveries(a.daemon) == 70
        app = await a.daemon.gateway.app_named("oa")
        assert app is not None
        usage = await a.daemon.db.read(lambda c: msg_store.usage_on(c, app.id, time.strftime("%Y-%m-%d")))
        assert usage == 70
