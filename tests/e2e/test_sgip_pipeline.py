"""The daemon over real SGIP, as an app meets it: HTTP → Gateway → the sgip driver → TCP → masd's simulated
SMG, which connects back to the driver's listener with the Reports and the replies.

What the SMG received is read from its record, so the tests check the wire as well as what the app sees:
segments counted the Chinese carriers' way, one UDH reference per long message (SGIP has no Pk fields),
SPNumber = service number + extension, UserNumber with 86, each segment's Report matched by its Submit's
Sequence Number and rolled up into the delivery, Result 11 taken as flow control, a failed Report's
ErrorCode kept, and a long reply routed by its SPNumber.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import trio

from masd.config import load_config
from masd.daemon import Daemon
from masd.store import apps as app_store
from masd_adapters.sgip.smg import Smg, SmgConfig

FINAL = {"delivered", "undelivered", "expired", "rejected", "failed", "cancelled"}

CONFIG = """
[node]
name = "sgip-test"
data_dir = "{data}"
[http]
listen = "127.0.0.1:{http}"
[socket]
enabled = false
[queue]
poll_interval = 0.05
retry_base_seconds = 0.1
retry_max_seconds = 0.5
max_attempts = 20
[channels.sgip]
driver = "sgip"
rate = 2000
window = 16
service_number = "10655012345"
[channels.sgip.options]
host = "127.0.0.1"
port = {port}
login_name = "sp901234"
password = "secret"
node_id = 3010012345
corp_id = "12345"
service_type = "MASD"
listen = "127.0.0.1:{listen}"
smg_login_name = "unicom"
smg_password = "cb"
reconnect_min = 0.1
reconnect_max = 0.5
"""


@dataclasses.dataclass
class Rig:
    daemon: Daemon
    smg: Smg
    client: httpx.AsyncClient
    key: str
    record: Path

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def send(self, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.post("/v1/messages", json=body, headers=self.auth())
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    async def final(self, message_id: int, timeout: float = 15.0) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                r = await self.client.get(f"/v1/messages/{message_id}", headers=self.auth())
                msg: dict[str, Any] = r.json()
                if all(d["state"] in FINAL for d in msg["deliveries"]):
                    return msg
                await trio.sleep(0.05)

    def submits(self) -> list[dict[str, Any]]:
        self.smg.flush_record()
        lines = self.record.read_text(encoding="utf-8").splitlines() if self.record.exists() else []
        return [rec for rec in map(json.loads, lines) if rec["pdu"] == "SGIP_SUBMIT"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **smg: Any) -> AsyncIterator[Rig]:
    record = tmp_path / "smg.jsonl"
    listen = _free_port()
    settings: dict[str, Any] = {
        "port": 0,
        "accounts": {"sp901234": "secret"},
        "callback": f"127.0.0.1:{listen}",
        "callback_login_name": "unicom",
        "callback_password": "cb",
        "report_delay": (0.01, 0.05),
        "callback_idle": 0.5,
        "seed": 7,
        "control": False,
        "record": record,
    }
    settings.update(smg)
    sim = Smg(SmgConfig(**settings))
    http = _free_port()
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        cfg = tmp_path / "masd.toml"
        cfg.write_text(CONFIG.format(data=tmp_path.as_posix(), http=http, port=sim.port, listen=listen))
        daemon = Daemon(load_config(cfg, env={}))
        await nursery.start(daemon.run)
        with trio.fail_after(10):
            while not daemon.drivers["sgip"].up:
                await trio.sleep(0.02)
        _, key = await daemon.db.write(
            lambda c: app_store.create_app(c, "oa", now=time.time(), extension="01")
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http}", timeout=10) as client:
            yield Rig(daemon, sim, client, key, record)
        daemon.stop()
        with trio.move_on_after(10):
            while daemon.ready:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


NOTICE = (
    "【市政府办公室】请于明天上午九点到三楼会议室参加防汛工作会议，会议议程包括汛情通报、"
    "各部门准备情况汇报和值班安排，请各单位主要负责人准时参加。收到请回复1参加，2不参加。"
)


async def test_a_long_chinese_notice_goes_in_parts_and_every_parts_report_comes_back(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        sent = await rig.send({"to": ["13800138000"], "text": NOTICE})
        assert sent["segments"] == 2  # 84 characters of UCS-2: 67 + 17
        msg = await rig.final(sent["id"])
        (dl,) = msg["deliveries"]
        assert dl["state"] == "delivered"
        ids = sorted(s["carrier_id"] for s in dl["segments"])
        assert [s["state"] for s in dl["segments"]] == ["delivered", "delivered"]
        subs = rig.submits()
        assert sorted(s["sequence_number"] for s in subs) == ids  # matched by SubmitSequenceNumber
        assert {s["sequence_number"][:10] for s in subs} == {"3010012345"}
        assert {s["tp_udhi"] for s in subs} == {1} and {s["message_coding"] for s in subs} == {8}
        assert len({bytes.fromhex(s["message_content"])[3] for s in subs}) == 1  # one UDH reference
        assert {s["sp_number"] for s in subs} == {"1065501234501"}  # service number + the app's extension
        assert {tuple(s["user_numbers"]) for s in subs} == {("8613800138000",)}
        assert {s["report_flag"] for s in subs} == {1}
        assert "".join(s["text"] for s in subs) == NOTICE


async def test_node_busy_slows_the_channel_and_nothing_fails(tmp_path: Path) -> None:
    async with running(tmp_path, throttle_every=3) as rig:
        ids = [(await rig.send({"to": [f"1390000{i:04d}"], "text": f"通知{i}"}))["id"] for i in range(9)]
        for mid in ids:
            assert (await rig.final(mid))["deliveries"][0]["state"] == "delivered"
        assert rig.smg.stats.throttled > 0


async def test_a_failed_report_fails_the_delivery_with_its_error_code(tmp_path: Path) -> None:
    async with running(tmp_path, outcomes={"29": 1.0}) as rig:
        sent = await rig.send({"to": ["13800138002"], "text": "测试"})
        (dl,) = (await rig.final(sent["id"]))["deliveries"]
        assert dl["state"] == "undelivered"
        assert dl["segments"][0]["error_code"] == 29


async def test_a_long_reply_to_the_extension_reaches_the_app(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        sent = await rig.send({"to": ["13800138003"], "text": NOTICE})
        await rig.final(sent["id"])
        text = "请假：" + "家里有事" * 30
        parts = await rig.smg.inject_mo(sender="8613800138003", sp_number="1065501234501", text=text)
        assert parts > 1
        with trio.fail_after(10):
            while True:
                r = await rig.client.get("/v1/replies", headers=rig.auth())
                found = r.json()["replies"]
                if found:
                    break
                await trio.sleep(0.05)
        (reply,) = found
        assert reply["sender"].endswith("13800138003") and reply["destination"] == "1065501234501"
        assert reply["text"] == text
        assert reply["message_id"] == sent["id"]
        with trio.fail_after(5):
            while rig.smg.stats.mo_acked < parts:
                await trio.sleep(0.05)
