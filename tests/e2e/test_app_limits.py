"""App permissions, rate and daily quota, enforced on the HTTP API as on every interface."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from masd.config import load_config
from masd.daemon import Daemon
from masd.store import apps as app_store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    return {
        "MASD_NODE__DATA_DIR": str(tmp_path),
        "MASD_HTTP__LISTEN": f"127.0.0.1:{port}",
        "MASD_SOCKET__ENABLED": "false",
        "MASD_CHANNELS__SIM__OPTIONS": "{receipt_delay = 0.01}",
    }


@contextlib.asynccontextmanager
async def daemon_at(tmp_path: Path) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient]]:
    port = _free_port()
    daemon = Daemon(load_config(None, env=_env(tmp_path, port)))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield daemon, client
        daemon.stop()


async def make_app(daemon: Daemon, name: str, **settings: Any) -> str:
    _, key = await daemon.db.write(lambda c: app_store.create_app(c, name, now=time.time(), **settings))
    return key


async def post(
    client: httpx.AsyncClient, key: str, to: list[str], path: str = "/v1/messages"
) -> httpx.Response:
    body: dict[str, Any] = {"to": to, "text": "通知"}
    if path.endswith("batch"):
        body = {"messages": [body]}
    return await client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/batch"])
async def test_an_app_may_not_send_a_kind_it_was_not_given(tmp_path: Path, path: str) -> None:
    async with daemon_at(tmp_path) as (daemon, client):
        key = await make_app(daemon, "voice-only", channels="voice")
        r = await post(client, key, ["13800138000"], path)
        assert r.status_code == 403, r.text
        err = r.json()["error"]
        assert err["code"] == "forbidden" and "may not send sms" in err["reason"] and "voice" in err["reason"]
        assert await daemon.gateway.state_counts() == {}


async def test_the_rate_refuses_with_429_and_retry_after_then_lets_through(tmp_path: Path) -> None:
    async with daemon_at(tmp_path) as (daemon, client):
        key = await make_app(daemon, "slow", rate=2.0)
        assert (await post(client, key, ["13800000001", "13800000002"])).status_code == 201
        r = await post(client, key, ["13800000003"])
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "rate_limited" and r.json()["error"]["field"] == "rate"
        assert int(r.headers["Retry-After"]) >= 1
        await trio.sleep(float(r.json()["error"]["retry_after"]) + 0.05)
        assert (await post(client, key, ["13800000003"])).status_code == 201
        counts = await daemon.gateway.state_counts()
        assert sum(counts.values()) == 3


async def test_one_apps_rate_does_not_limit_another(tmp_path: Path) -> None:
    async with daemon_at(tmp_path) as (daemon, client):
        slow = await make_app(daemon, "slow", rate=1.0)
        free = await make_app(daemon, "free")
        assert (await post(client, slow, ["13800000001"])).status_code == 201
        assert (await post(client, slow, ["13800000002"])).status_code == 429
        for i in range(5):
            assert (await post(client, free, [f"1390000000{i}"])).status_code == 201


async def test_the_daily_quota_counts_recipients_and_survives_a_restart(tmp_path: Path) -> None:
    async with daemon_at(tmp_path) as (daemon, client):
        key = await make_app(daemon, "oa", quota_per_day=5)
        assert (await post(client, key, [f"1380000000{i}" for i in range(3)])).status_code == 201
        r = await post(client, key, [f"1390000000{i}" for i in range(3)])
        assert r.status_code == 429, r.text
        err = r.json()["error"]
        assert err["code"] == "quota_exceeded" and "used 3 of its 5" in err["reason"]
        assert (await post(client, key, ["13700000001", "13700000002"])).status_code == 201
    async with daemon_at(tmp_path) as (daemon, client):
        r = await post(client, key, ["13600000001"])
        assert r.status_code == 429 and "used 5 of its 5" in r.json()["error"]["reason"]
        assert sum((await daemon.gateway.state_counts()).values()) == 5


async def test_a_resubmitted_client_ref_does_not_count_against_the_quota(tmp_path: Path) -> None:
    async with daemon_at(tmp_path) as (daemon, client):
        key = await make_app(daemon, "oa", quota_per_day=2)
        body = {"to": ["13800000001"], "text": "x", "client_ref": "same"}
        headers = {"Authorization": f"Bearer {key}"}
        assert (await client.post("/v1/messages", json=body, headers=headers)).status_code == 201
        assert (await client.post("/v1/messages", json=body, headers=headers)).status_code == 200
        assert (await post(client, key, ["13800000002"])).status_code == 201


async def test_a_limit_set_from_the_cli_applies_to_the_running_daemon(tmp_path: Path) -> None:
    async with daemon_at(tmp_path) as (daemon, client):
        key = await make_app(daemon, "oa")
        assert (await post(client, key, ["13800000001"])).status_code == 201
        cli = [sys.executable, "-m", "masd.cli", "apps", "set", "oa", "--channels", "voice"]
        env = {**os.environ, "MASD_NODE__DATA_DIR": str(tmp_path)}
        env.pop("MASD_CONFIG", None)
        done = await trio.to_thread.run_sync(
            lambda: subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
        )
        assert done.returncode == 0, done.stderr
        assert "channels   voice" in done.stdout
        with trio.fail_after(15):  # keys are cached for a few seconds
            while (await post(client, key, ["13800000002"])).status_code != 403:
                await trio.sleep(0.5)


async def test_a_revoked_key_stops_working(tmp_path: Path) -> None:
    async with daemon_at(tmp_path) as (daemon, client):
        key = await make_app(daemon, "oa")
        assert (await post(client, key, ["13800000001"])).status_code == 201
        await daemon.db.write(lambda c: app_store.revoke_app(c, "oa", now=time.time()))
        with trio.fail_after(15):
            while (await post(client, key, ["13800000002"])).status_code != 401:
                await trio.sleep(0.5)


async def test_a_resubmitted_client_ref_passes_even_when_the_quota_is_used_up(tmp_path: Path) -> None:
    async with daemon_at(tmp_path) as (daemon, client):
        key = await make_app(daemon, "oa", quota_per_day=1)
        body = {"to": ["13800000001"], "text": "x", "client_ref": "once"}
        headers = {"Authorization": f"Bearer {key}"}
        first = await client.post("/v1/messages", json=body, headers=headers)
        assert first.status_code == 201
        again = await client.post("/v1/messages", json=body, headers=headers)  # e.g. after a lost answer
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        assert (await post(client, key, ["13800000002"])).status_code == 429
