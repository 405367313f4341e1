"""The daemon over real CMPP, as an app meets it: HTTP → Gateway → the cmpp driver → TCP → masd's simulated
ISMG → status reports and replies back, on CMPP 3.0 and 2.0.

What the ISMG received is read from its record (every SUBMIT's fields), so the tests check the wire as
well as what the app sees: segments counted the CMPP way (no GSM 7-bit alphabet), Pk_total/Pk_number and
one UDH reference per long message, Src_Id = service number + extension, a report per segment rolled up
into the delivery, Result 8 taken as flow control, and a reply routed by its Dest_Id.
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
import pytest
import trio

from masd.config import load_config
from masd.daemon import Daemon
from masd.store import apps as app_store
from masd_adapters.cmpp.constants import VERSION_20, VERSION_30
from masd_adapters.cmpp.ismg import Ismg, IsmgConfig

FINAL = {"delivered", "undelivered", "expired", "rejected", "failed", "cancelled"}

CONFIG = """
[node]
name = "cmpp-test"
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
[channels.cmpp]
driver = "cmpp"
rate = 2000
window = 16
service_number = "1065712345"
[channels.cmpp.options]
host = "127.0.0.1"
port = {port}
sp_id = "901234"
password = "secret"
version = "{version}"
service_code = "1065712345"
reconnect_min = 0.1
reconnect_max = 0.5
"""


@dataclasses.dataclass
class Rig:
    daemon: Daemon
    ismg: Ismg
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
        self.ismg.flush_record()
        lines = self.record.read_text(encoding="utf-8").splitlines() if self.record.exists() else []
        return [rec for rec in map(json.loads, lines) if rec["pdu"] == "CMPP_SUBMIT"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running(tmp_path: Path, version: str = "3.0", **ismg: Any) -> AsyncIterator[Rig]:
    record = tmp_path / "ismg.jsonl"
    sim = Ismg(
        IsmgConfig(
            port=0,
            version=VERSION_30,
            accounts={"901234": "secret"},
            report_delay=(0.01, 0.05),
            seed=7,
            control=False,
            record=record,
            **ismg,
        )
    )
    http = _free_port()
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        cfg = tmp_path / "masd.toml"
        cfg.write_text(CONFIG.format(data=tmp_path.as_posix(), http=http, port=sim.port, version=version))
        daemon = Daemon(load_config(cfg, env={}))
        await nursery.start(daemon.run)
        with trio.fail_after(10):
            while not daemon.drivers["cmpp"].up:
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


@pytest.mark.parametrize("version", ["3.0", "2.0"])
async def test_a_long_chinese_notice_goes_in_parts_and_every_parts_report_comes_back(
    tmp_path: Path, version: str
) -> None:
    async with running(tmp_path, version) as rig:
        sent = await rig.send({"to": ["13800138000"], "text": NOTICE})
        assert sent["segments"] == 2 and sent["encoding"] == "ucs2"  # 84 characters: 67 + 17
        msg = await rig.final(sent["id"])
        (dl,) = msg["deliveries"]
        assert dl["state"] == "delivered"
        ids = sorted(s["carrier_id"] for s in dl["segments"])
        assert [s["state"] for s in dl["segments"]] == ["delivered", "delivered"]
        subs = rig.submits()
        assert sorted(s["msg_id"] for s in subs) == ids  # each segment's report matched by its Msg_Id
        assert {s["version"] for s in subs} == {version}
        assert [(s["pk_total"], s["pk_number"]) for s in sorted(subs, key=lambda s: s["pk_number"])] == [
            (2, 1),
            (2, 2),
        ]
        assert {s["tp_udhi"] for s in subs} == {1} and {s["msg_fmt"] for s in subs} == {8}
        refs = {bytes.fromhex(s["msg_content"])[3] for s in subs}  # 05 00 03 ref total index
        assert len(refs) == 1
        assert {s["src_id"] for s in subs} == {"106571234501"}  # service number + the app's extension
        assert {s["registered_delivery"] for s in subs} == {1}
        assert "".join(s["text"] for s in sorted(subs, key=lambda s: s["pk_number"])) == NOTICE


async def test_ascii_is_counted_in_octets_not_gsm_septets(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        text = "Flood warning: " + "x" * 135  # 150 characters: one SMPP segment (GSM 7-bit), two on CMPP
        sent = await rig.send({"to": ["13800138001"], "text": text})
        assert (sent["segments"], sent["encoding"]) == (2, "ascii")  # the API names CMPP's alphabet
        msg = await rig.final(sent["id"])
        assert msg["deliveries"][0]["state"] == "delivered"
        assert {s["msg_fmt"] for s in rig.submits()} == {0}


async def test_flow_control_slows_the_channel_and_nothing_fails(tmp_path: Path) -> None:
    async with running(tmp_path, throttle_every=3) as rig:
        ids = [(await rig.send({"to": [f"1390000{i:04d}"], "text": f"通知{i}"}))["id"] for i in range(12)]
        for mid in ids:
            assert (await rig.final(mid))["deliveries"][0]["state"] == "delivered"
        assert rig.ismg.stats.throttled > 0
        assert (
            rig.daemon.metrics.child(rig.daemon.metrics.segments_submitted, "cmpp", "throttled")._value.get()
            > 0
        )


async def test_an_undelivered_report_fails_the_delivery_with_the_carriers_stat(tmp_path: Path) -> None:
    async with running(tmp_path, outcomes={"MK:0005": 1.0}) as rig:
        sent = await rig.send({"to": ["13800138002"], "text": "测试"})
        (dl,) = (await rig.final(sent["id"]))["deliveries"]
        assert dl["state"] == "undelivered"
        assert dl["segments"][0]["error_code"] == 5


async def test_a_reply_to_the_extension_reaches_the_app(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        sent = await rig.send({"to": ["13800138003"], "text": NOTICE})
        await rig.final(sent["id"])
        parts = await rig.ismg.inject_mo(
            sender="13800138003", dest_id="106571234501", text="请假：" + "家里有事" * 30
        )
        assert parts > 1  # a long reply, reassembled by the core
        with trio.fail_after(10):
            while True:
                r = await rig.client.get("/v1/replies", headers=rig.auth())
                found = r.json()["replies"]
                if found:
                    break
                await trio.sleep(0.05)
        (reply,) = found
        assert reply["sender"].endswith("13800138003") and reply["destination"] == "106571234501"
        assert reply["text"] == "请假：" + "家里有事" * 30
        assert reply["message_id"] == sent["id"]


async def test_a_wrong_password_keeps_the_channel_down_and_says_why(tmp_path: Path) -> None:
    sim = Ismg(IsmgConfig(port=0, version=VERSION_20, accounts={"901234": "other"}, control=False))
    http = _free_port()
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        cfg = tmp_path / "masd.toml"
        cfg.write_text(CONFIG.format(data=tmp_path.as_posix(), http=http, port=sim.port, version="2.0"))
        daemon = Daemon(load_config(cfg, env={}))
        await nursery.start(daemon.run)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http}", timeout=10) as client:
            with trio.fail_after(10):
                while sim.stats.login_failures == 0:
                    await trio.sleep(0.05)
            ready = (await client.get("/readyz")).json()
        assert ready["channels"]["cmpp"]["up"] is False
        assert (
            ready["checks"]["channels"]
            == "none up (down: cmpp: CMPP_CONNECT refused: status 3 (authentication failed))"
        )
        assert (
            ready["channels"]["cmpp"]["problem"] == "CMPP_CONNECT refused: status 3 (authentication failed)"
        )
        assert "authentication failed" in str(daemon.drivers["cmpp"].refused)  # type: ignore[attr-defined]
        daemon.stop()
        with trio.move_on_after(10):
            while daemon.ready:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
