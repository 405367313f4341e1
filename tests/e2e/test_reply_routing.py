"""Reply routing end to end: replies come over SMPP from masd's simulated SMSC and go to the app that
owns the extension, else a keyword rule's app, else the app of the latest delivery to that number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from masd.config import load_config
from masd.core.apps import App
from masd.core.gateway import SubmitRequest
from masd.daemon import Daemon
from masd.store import apps as app_store
from masd_adapters.smpp.smsc import Smsc, SmscConfig

from .helpers import wait_final

SERVICE = "1065700012345"

CONFIG = """
[node]
name = "routing-test"
data_dir = "{data}"
[http]
enabled = false
[socket]
enabled = false
[meeting]
enabled = false
[queue]
poll_interval = 0.05
[replies]
window_hours = 1
[replies.keywords]
TD = "oa"
"会议" = "meeting"
[channels.smpp]
driver = "smpp"
rate = 2000
service_number = "{service}"
[channels.smpp.options]
host = "127.0.0.1"
port = {port}
system_id = "masd"
password = "secret"
reconnect_min = 0.1
reconnect_max = 0.5
"""


@dataclass
class Rig:
    daemon: Daemon
    smsc: Smsc
    config: Path
    apps: dict[str, App]

    async def reply(self, sender: str, to: str, text: str) -> dict[str, Any]:
        """Send a reply from a handset and wait until masd has stored it; return the stored row."""
        before = await self.daemon.gateway.list_replies(limit=100_000)
        await self.smsc.inject_mo(sender=sender, destination=to, text=text)
        with trio.fail_after(10):
            while True:
                rows = await self.daemon.gateway.list_replies(after=before[-1]["id"] if before else 0)
                if rows:
                    return rows[0]
                await trio.sleep(0.02)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    smsc = Smsc(SmscConfig(port=0, accounts={"masd": "secret"}, receipt_delay=0.01, control=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(smsc.serve)
        cfg_path = tmp_path / "masd.toml"
        cfg_path.write_text(CONFIG.format(data=tmp_path.as_posix(), port=smsc.port, service=SERVICE))
        daemon = Daemon(load_config(cfg_path, env={}))
        await nursery.start(daemon.run)
        apps: dict[str, App] = {}
        for name, ext in (("meeting", "42"), ("oa", None), ("notice", None), ("other", "7")):
            await daemon.db.write(lambda c: app_store.create_app(c, name, now=time.time(), extension=ext))
            found = await daemon.gateway.app_named(name)
            assert found is not None
            apps[name] = found
        with trio.fail_after(10):
            while not daemon.drivers["smpp"].up:
                await trio.sleep(0.02)
        yield Rig(daemon, smsc, cfg_path, apps)
        daemon.stop()
        nursery.cancel_scope.cancel()


async def test_a_reply_to_an_apps_extension_goes_to_that_app_with_the_rest_of_the_extension(rig: Rig) -> None:
    row = await rig.reply("13800138000", SERVICE + "42" + "137", "1 参加")
    assert row["app_id"] == rig.apps["meeting"].id and row["matched_by"] == "extension"
    assert row["extension"] == "137" and row["text"] == "1 参加"
    (event,) = await rig.daemon.gateway.read_events(rig.apps["meeting"].id, after=0)
    assert event["type"] == "reply" and event["reply_id"] == row["id"] and event["extension"] == "137"
    assert await rig.daemon.gateway.read_events(rig.apps["other"].id, after=0) == []


async def test_the_delivery_a_reply_answers_is_found_by_its_extension(rig: Rig) -> None:
    gw = rig.daemon.gateway
    acc = await gw.send(
        SubmitRequest("请回复1参加", ["13800138001"], extension="55"),
        interface="test",
        app=rig.apps["meeting"],
    )
    msg = await wait_final(rig.daemon, acc.message_id)
    assert msg["deliveries"][0]["state"] == "delivered"
    row = await rig.reply("13800138001", SERVICE + "4255", "１")
    assert row["app_id"] == rig.apps["meeting"].id and row["extension"] == "55"
    assert row["delivery_id"] == msg["deliveries"][0]["id"]


async def test_a_keyword_rule_routes_a_reply_to_the_bare_service_number(rig: Rig) -> None:
    row = await rig.reply("13900000001", SERVICE, "ｔｄ")
    assert row["app_id"] == rig.apps["oa"].id and row["matched_by"] == "keyword"
    row = await rig.reply("13900000001", SERVICE, "会议室在哪")
    assert row["app_id"] == rig.apps["meeting"].id and row["matched_by"] == "keyword"


async def test_an_extension_wins_over_a_keyword(rig: Rig) -> None:
    row = await rig.reply("13900000002", SERVICE + "7", "TD")
    assert row["app_id"] == rig.apps["other"].id and row["matched_by"] == "extension"


async def test_otherwise_the_app_of_the_latest_delivery_to_that_number_gets_it(rig: Rig) -> None:
    gw = rig.daemon.gateway
    first = await gw.send(SubmitRequest("a", ["13700000001"]), interface="test", app=rig.apps["oa"])
    second = await gw.send(SubmitRequest("b", ["+8613700000001"]), interface="test", app=rig.apps["notice"])
    await wait_final(rig.daemon, first.message_id)
    msg = await wait_final(rig.daemon, second.message_id)
    row = await rig.reply("+8613700000001", SERVICE, "收到")
    assert row["app_id"] == rig.apps["notice"].id and row["matched_by"] == "recent"
    assert row["delivery_id"] == msg["deliveries"][0]["id"] and row["sender"] == "13700000001"


async def test_a_reply_nobody_owns_is_kept_and_listed_as_unmatched(rig: Rig) -> None:
    row = await rig.reply("13600000009", SERVICE, "你们是谁")
    assert row["app_id"] is None and row["matched_by"] == "none"
    env = {**os.environ, "MASD_CONFIG": str(rig.config)}
    cmd = [sys.executable, "-m", "masd.cli", "replies", "--unmatched", "--json"]
    done = await trio.to_thread.run_sync(
        lambda: subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    )
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [(r["id"], r["text"], r["app"]) for r in listed] == [(row["id"], "你们是谁", None)]
    assert rig.daemon.metrics.replies.labels("false")._value.get() == 1


async def test_an_unmatched_reply_can_be_handed_to_an_app(rig: Rig) -> None:
    row = await rig.reply("13600000008", SERVICE, "?")
    env = {**os.environ, "MASD_CONFIG": str(rig.config)}
    cmd = [sys.executable, "-m", "masd.cli", "replies", "assign", str(row["id"]), "oa"]
    done = await trio.to_thread.run_sync(
        lambda: subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    )
    assert done.returncode == 0, done.stderr
    (event,) = await rig.daemon.gateway.read_events(rig.apps["oa"].id, after=0)
    assert event["reply_id"] == row["id"] and event["matched_by"] == "manual"
