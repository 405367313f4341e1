"""Meetings and reminders made over HTTP act for the app that asked: its channel kinds, rate and daily
quota govern what the meeting module sends for them, with the errors a direct send would get.

A real daemon with the sim channel (and a simulated voice channel), real HTTP over loopback; each test
starts its own daemon in a temporary data directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from openpyxl import load_workbook

from masd.config import load_config
from masd.daemon import Daemon
from masd.interfaces.http import ErrorResponse
from masd.modules.meeting import store
from masd.modules.meeting.http import BoardOut, ScheduleItemOut
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
        "MASD_CHANNELS__PHONE__DRIVER": '"voice_sim"',
        "MASD_CHANNELS__PHONE__KIND": '"voice"',
        "MASD_CHANNELS__PHONE__OPTIONS": "{time_scale = 0.01}",
        "MASD_MEETING__CONFIRM_REPLIES": "false",
    }


@dataclasses.dataclass
class Env:
    daemon: Daemon
    client: httpx.AsyncClient
    env: dict[str, str]

    async def app(self, name: str, **settings: Any) -> str:
        _, key = await self.daemon.db.write(
            lambda c: app_store.create_app(c, name, now=time.time(), **settings)
        )
        return key

    async def post(self, key: str, path: str, body: Any) -> httpx.Response:
        return await self.client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})

    async def get(self, key: str, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers={"Authorization": f"Bearer {key}"})

    async def meeting(self, key: str, n: int, first: int = 0, **fields: Any) -> httpx.Response:
        body = {"title": "防汛工作会", "starts_at": _at(hours=2), "numbers": numbers(n, first), **fields}
        return await self.post(key, "/v1/meetings", body)

    async def board(self, key: str, meeting_id: int) -> dict[str, Any]:
        r = await self.get(key, f"/v1/meetings/{meeting_id}/board")
        assert r.status_code == 200, r.text
        out: dict[str, Any] = BoardOut.model_validate(r.json()).model_dump(mode="json")
        return out

    async def board_until(
        self, key: str, meeting_id: int, done: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                board = await self.board(key, meeting_id)
                if done(board):
                    return board
                await trio.sleep(0.1)

    async def deliveries(self) -> list[dict[str, Any]]:
        return await self.daemon.gateway.list_deliveries(limit=10_000)

    async def usage(self, name: str) -> int:
        app = await self.daemon.gateway.app_named(name)
        assert app is not None
        return await self.daemon.gateway.usage_today(app)


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Env]:
    port = _free_port()
    env = _env(tmp_path, port)
    daemon = Daemon(load_config(None, env=env))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield Env(daemon, client, env)
        daemon.stop()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with running(tmp_path) as e:
        yield e


def _at(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def numbers(n: int, first: int = 0) -> list[str]:
    return [f"1380000{i:04d}" for i in range(first, first + n)]


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    ErrorResponse.model_validate(r.json())
    err: dict[str, Any] = r.json()["error"]
    return err


async def _nothing_kept(env: Env, key: str) -> None:
    assert (await env.get(key, "/v1/meetings")).json() == {"meetings": []}
    assert await env.deliveries() == []


# ----- refused up front, as a direct send ----------------------------------------------------------------


async def test_a_voice_only_app_creating_an_sms_meeting_is_forbidden_naming_the_channel(env: Env) -> None:
    key = await env.app("voice-only", channels="voice")
    r = await env.meeting(key, 3)
    err = _error(r, 403)
    direct = _error(await env.post(key, "/v1/messages", {"to": numbers(1), "text": "通知"}), 403)
    assert (err["code"], err["field"]) == (direct["code"], direct["field"]) == ("forbidden", "channel")
    assert err["reason"] == direct["reason"]
    await _nothing_kept(env, key)


async def test_an_sms_only_app_may_not_make_a_meeting_that_calls(env: Env) -> None:
    key = await env.app("sms-only", channels="sms")
    err = _error(await env.meeting(key, 2, mode="sms+voice", send_at=_at(minutes=30)), 403)
    assert err["field"] == "channel" and "may not send voice" in err["reason"]
    await _nothing_kept(env, key)


async def test_a_voice_only_app_may_make_a_voice_meeting(env: Env) -> None:
    key = await env.app("voice-only", channels="voice")
    r = await env.meeting(key, 2, mode="voice")
    assert r.status_code == 201, r.text
    board = await env.board_until(key, r.json()["id"], lambda b: b["counts"]["notified"] == 2)
    assert all(row["called_at"] for row in board["attendees"])


async def test_a_meeting_larger_than_the_quota_is_refused_naming_it_and_nothing_is_sent(env: Env) -> None:
    key = await env.app("small", quota_per_day=20)
    err = _error(await env.meeting(key, 30), 429)
    assert (err["code"], err["field"]) == ("quota_exceeded", "quota")
    assert "needs 30" in err["reason"]
    await _nothing_kept(env, key)
    assert await env.usage("small") == 0
    await trio.sleep(1.5)  # a scheduler pass later, still nothing
    assert await env.deliveries() == []


async def test_a_rate_limited_app_is_answered_429_with_retry_after_and_nothing_kept(env: Env) -> None:
    key = await env.app("slow", rate=5.0)
    assert (await env.meeting(key, 5)).status_code == 201
    r = await env.meeting(key, 5, first=100)  # the bucket is empty, and needs a second to fill again
    err = _error(r, 429)
    assert (err["code"], err["field"]) == ("rate_limited", "rate")
    assert int(r.headers["Retry-After"]) >= 1
    meetings = (await env.get(key, "/v1/meetings")).json()["meetings"]
    assert len(meetings) == 1
    await trio.sleep(1.5)
    assert len(await env.deliveries()) == 5


async def test_a_reminder_due_now_is_refused_as_a_direct_send_and_not_kept(env: Env) -> None:
    key = await env.app("small", quota_per_day=1)
    body = {"mobile": "13800000009", "title": "交报表", "remind_at": _at(seconds=-1)}
    first = await env.post(key, "/v1/schedule", body)
    assert first.status_code == 201, first.text
    assert ScheduleItemOut.model_validate(first.json()).message_id is not None  # sent by the request
    err = _error(await env.post(key, "/v1/schedule", body), 429)
    assert err["field"] == "quota"
    assert [i["id"] for i in (await env.get(key, "/v1/schedule")).json()["items"]] == [first.json()["id"]]


async def test_a_voice_only_app_may_not_set_a_reminder_but_may_keep_a_memo(env: Env) -> None:
    key = await env.app("voice-only", channels="voice")
    body = {"mobile": "13800000009", "title": "交报表", "remind_at": _at(hours=1)}
    assert _error(await env.post(key, "/v1/schedule", body), 403)["field"] == "channel"
    memo = {"kind": "memo", "mobile": "13800000009", "title": "带工作证"}
    assert (await env.post(key, "/v1/schedule", memo)).status_code == 201


# ----- sends due later ---------------------------------------------------------------------------------


async def test_an_app_with_a_quota_never_gets_more_deliveries_than_it(env: Env) -> None:
    key = await env.app("small", quota_per_day=20)
    now = await env.meeting(key, 12, second_sms_after_minutes=0.05)  # a second SMS after 3 s
    assert now.status_code == 201, now.text
    assert now.json()["counts"]["notified"] == 12  # sent by the request itself
    assert _error(await env.meeting(key, 12, first=100), 429)["field"] == "quota"
    fits = await env.meeting(key, 8, first=200, send_at=_at(seconds=1))
    over = await env.meeting(key, 5, first=300, send_at=_at(seconds=2))
    assert fits.status_code == over.status_code == 201

    await env.board_until(key, fits.json()["id"], lambda b: b["counts"]["notified"] == 8)
    board = await env.board_until(key, over.json()["id"], lambda b: b["counts"]["refused"] == 5)
    assert board["counts"]["notified"] == 0
    for row in board["attendees"]:
        assert row["notice_state"] == "refused" and row["notified_at"] is None
        (refusal,) = row["refusals"]
        assert (refusal["send"], refusal["limit"]) == ("notice", "quota")
        assert "'small' has used 20 of its 20" in refusal["reason"]
    first = await env.board_until(key, now.json()["id"], lambda b: b["counts"]["refused"] == 12)
    assert first["counts"]["second_sms"] == 0  # refused, so not counted as sent
    assert {r["refusals"][0]["send"] for r in first["attendees"]} == {"second_sms"}

    assert len(await env.deliveries()) == 20
    assert await env.usage("small") == 20


async def test_a_rate_limited_apps_scheduled_notices_all_go_never_over_its_rate(env: Env) -> None:
    rate = 5.0
    key = await env.app("slow", rate=rate)
    ids = []
    for k in range(3):
        r = await env.meeting(key, 8, first=100 * k, send_at=_at(seconds=1))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    for mid in ids:
        board = await env.board_until(key, mid, lambda b: b["counts"]["notified"] == 8, timeout=20)
        assert board["counts"]["refused"] == 0
    times = sorted(d["created_at"] for d in await env.deliveries())
    assert len(times) == 24
    # Over any stretch of time the app got at most its burst (one second's worth) plus its rate's share.
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert j - i + 1 <= rate + rate * (times[j] - times[i]) + 1e-6, (i, j, times)


async def test_a_meeting_larger_than_the_burst_sends_what_the_rate_admits_then_the_rest(env: Env) -> None:
    key = await env.app("slow", rate=4.0)
    r = await env.meeting(key, 10)
    assert r.status_code == 201, r.text
    assert r.json()["counts"]["notified"] == 4  # the request sent one burst, the scheduler the rest
    board = await env.board_until(key, r.json()["id"], lambda b: b["counts"]["notified"] == 10)
    assert board["counts"]["refused"] == 0
    assert len(await env.deliveries()) == 10


async def test_a_revoked_apps_meeting_is_not_sent_and_the_board_says_why(env: Env) -> None:
    key = await env.app("leaving")
    r = await env.meeting(key, 2, send_at=_at(seconds=1))
    assert r.status_code == 201, r.text
    await env.daemon.db.write(lambda c: app_store.revoke_app(c, "leaving", now=time.time()))
    mid = r.json()["id"]
    with trio.fail_after(15):
        while True:
            board = await env.daemon.db.read(lambda c: store.board(c, mid))
            assert board is not None
            rows = board["attendees"]
            if all(x["refusals"] for x in rows):
                break
            await trio.sleep(0.1)
    assert [x["refusals"][0]["limit"] for x in rows] == ["app", "app"]
    assert all(x["notice_state"] == "refused" for x in rows)
    assert await env.deliveries() == []


async def test_a_scheduled_reminder_the_quota_refuses_says_why(env: Env) -> None:
    key = await env.app("small", quota_per_day=1)
    assert (await env.post(key, "/v1/messages", {"to": numbers(1), "text": "通知"})).status_code == 201
    body = {"mobile": "13800000009", "title": "交报表", "remind_at": _at(seconds=1)}
    item = await env.post(key, "/v1/schedule", body)
    assert item.status_code == 201, item.text
    with trio.fail_after(10):
        while not (done := (await env.get(key, "/v1/schedule", pending="false")).json()["items"]):
            await trio.sleep(0.1)
    (got,) = done
    assert got["message_id"] is None and got["sent_at"] is not None
    assert (got["refusal"]["send"], got["refusal"]["limit"]) == ("reminder", "quota")
    assert len(await env.deliveries()) == 1


# ----- the board, the log and the export name the app ------------------------------------------------------


async def test_the_board_the_log_and_the_export_name_the_app_that_made_the_meeting(env: Env) -> None:
    key = await env.app("oa-office")
    r = await env.meeting(key, 1)
    assert r.status_code == 201, r.text
    assert r.json()["app"] == "oa-office"
    mid = r.json()["id"]
    assert (await env.board(key, mid))["meeting"]["app"] == "oa-office"
    listed = (await env.get(key, "/v1/meetings")).json()["meetings"]
    assert [m["app"] for m in listed] == ["oa-office"]
    xlsx = await env.get(key, f"/v1/meetings/{mid}/board.xlsx", lang="en")
    assert xlsx.status_code == 200
    summary = dict(load_workbook(io.BytesIO(xlsx.content)).worksheets[1].iter_rows(values_only=True))
    assert summary["App"] == "oa-office"

    cli = (
        "from masd.cli import app\n"
        "from masd.modules.meeting.cli import meeting_app\n"
        "if 'meeting' not in {g.name for g in app.registered_groups}:\n"
        "    app.add_typer(meeting_app, name='meeting')\n"
        "app(prog_name='masd')\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MASD_")} | env.env
    shown = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-c", cli, "meeting", "show", str(mid), "--json"],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["meeting"]["app"] == "oa-office"
    assert doc["log"][0]["kind"] == "created" and "by app oa-office" in doc["log"][0]["detail"]
