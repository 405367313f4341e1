"""The daemon over real SMGP, as an app meets it: HTTP → Gateway → the smgp driver → TCP → masd's simulated
SMGW → status reports and replies back.

What the SMGW received is read from its record (every Submit's fields), so the tests check the wire as
well as what the app sees: segments counted as on CMPP (140 octets, no GSM 7-bit alphabet), the TP_udhi,
PkTotal and PkNumber TLVs and one UDH reference per long message, SrcTermID = service number +
extension, a report per segment matched by its MsgID and rolled up into the delivery, Status 74 and 75
as waits that end when the SMGW takes messages again (no attempt counted), and a reply routed by its
DestTermID.
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
from masd_adapters.smgp.smgw import Smgw, SmgwConfig

FINAL = {"delivered", "undelivered", "expired", "rejected", "failed", "cancelled"}

CONFIG = """
[node]
name = "smgp-test"
data_dir = "{data}"
[http]
listen = "127.0.0.1:{http}"
[socket]
enabled = false
[queue]
poll_interval = 0.05
retry_base_seconds = 0.1
retry_max_seconds = 0.5
max_attempts = 3
[channels.ctc]
driver = "smgp"
rate = 2000
window = 16
service_number = "1065901234"
[channels.ctc.options]
host = "127.0.0.1"
port = {port}
client_id = "10690001"
password = "secret"
login_mode = {login_mode}
service_code = "1065901234"
service_id = "MASD"
reconnect_min = 0.1
reconnect_max = 0.5
"""


@dataclasses.dataclass
class Rig:
    daemon: Daemon
    smgw: Smgw
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

    async def get(self, message_id: int) -> dict[str, Any]:
        r = await self.client.get(f"/v1/messages/{message_id}", headers=self.auth())
        out: dict[str, Any] = r.json()
        return out

    async def final(self, message_id: int, timeout: float = 15.0) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                msg = await self.get(message_id)
                if all(d["state"] in FINAL for d in msg["deliveries"]):
                    return msg
                await trio.sleep(0.05)

    def submits(self) -> list[dict[str, Any]]:
        self.smgw.flush_record()
        lines = self.record.read_text(encoding="utf-8").splitlines() if self.record.exists() else []
        return [rec for rec in map(json.loads, lines) if rec["pdu"] == "SMGP_Submit"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running(tmp_path: Path, login_mode: str = "2", **smgw: Any) -> AsyncIterator[Rig]:
    record = tmp_path / "smgw.jsonl"
    smgw.setdefault("accounts", {"10690001": "secret"})
    sim = Smgw(SmgwConfig(port=0, report_delay=(0.01, 0.05), seed=7, control=False, record=record, **smgw))
    http = _free_port()
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        cfg = tmp_path / "masd.toml"
        cfg.write_text(
            CONFIG.format(data=tmp_path.as_posix(), http=http, port=sim.port, login_mode=login_mode)
        )
        daemon = Daemon(load_config(cfg, env={}))
        await nursery.start(daemon.run)
        if sim.config.accounts.get("10690001") == "secret":
            with trio.fail_after(10):
                while not daemon.drivers["ctc"].up:
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
    "【区卫健委】请于明天上午九点到三楼会议室参加秋冬季传染病防控工作会议，会议议程包括疫情通报、"
    "各单位准备情况汇报和值班安排，请各单位主要负责人准时参加。收到请回复1参加，2不参加。"
)


@pytest.mark.parametrize("login_mode", ["2", '"0+1"'])
async def test_a_long_chinese_notice_goes_in_parts_and_every_parts_report_comes_back(
    tmp_path: Path, login_mode: str
) -> None:
    async with running(tmp_path, login_mode) as rig:
        sent = await rig.send({"to": ["13300133000"], "text": NOTICE})
        assert sent["segments"] == 2 and sent["encoding"] == "ucs2"
        msg = await rig.final(sent["id"])
        (dl,) = msg["deliveries"]
        assert dl["state"] == "delivered"
        ids = sorted(s["carrier_id"] for s in dl["segments"])
        assert [s["state"] for s in dl["segments"]] == ["delivered", "delivered"]
        subs = sorted(rig.submits(), key=lambda s: s["pk_number"])
        assert sorted(s["msg_id"] for s in subs) == ids  # each segment's report matched by its MsgID
        assert all(len(i) == 20 and i.startswith("010601") for i in ids)  # the BCD MsgID's text
        assert [(s["tp_udhi"], s["pk_total"], s["pk_number"]) for s in subs] == [(1, 2, 1), (1, 2, 2)]
        assert {s["msg_format"] for s in subs} == {8} and {s["need_report"] for s in subs} == {1}
        refs = {bytes.fromhex(s["msg_content"])[3] for s in subs}  # 05 00 03 ref total index
        assert len(refs) == 1
        assert {s["src_term_id"] for s in subs} == {"106590123401"}  # service number + the extension
        assert {s["service_id"] for s in subs} == {"MASD"} and {s["msg_type"] for s in subs} == {6}
        assert "".join(s["text"] for s in subs) == NOTICE


async def test_ascii_is_counted_in_octets_not_gsm_septets(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        text = "Typhoon warning: " + "x" * 133  # 150 characters: one SMPP segment, two on SMGP
        sent = await rig.send({"to": ["13300133001"], "text": text})
        assert (sent["segments"], sent["encoding"]) == (2, "ascii")
        msg = await rig.final(sent["id"])
        assert msg["deliveries"][0]["state"] == "delivered"
        assert {s["msg_format"] for s in rig.submits()} == {0}


async def test_quiet_hours_hold_the_message_without_counting_attempts_and_it_goes_after(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, quiet_hours=True) as rig:
        sent = await rig.send({"to": ["13300133002"], "text": "明早八点交班"})
        with trio.fail_after(10):
            while rig.smgw.stats.banned < 5:  # more refusals than max_attempts (3) allows failures
                await trio.sleep(0.05)
        (dl,) = (await rig.get(sent["id"]))["deliveries"]
        assert dl["state"] == "queued" and dl["attempts"] == 0
        assert "sending banned in this time window" in dl["reason"]
        rig.smgw.update(quiet_hours=False)
        (dl,) = (await rig.final(sent["id"]))["deliveries"]
        assert dl["state"] == "delivered"


async def test_the_daily_volume_holds_what_is_over_it_until_the_day_starts_again(tmp_path: Path) -> None:
    async with running(tmp_path, daily_limit=2) as rig:
        ids = [(await rig.send({"to": [f"1330000{i:04d}"], "text": f"通知{i}"}))["id"] for i in range(3)]
        with trio.fail_after(10):
            while rig.smgw.stats.over_daily_limit < 4:
                await trio.sleep(0.05)
        states = sorted([(await rig.get(i))["deliveries"][0]["state"] for i in ids])
        assert states.count("queued") == 1 and "failed" not in states
        rig.smgw.reset_day()
        for mid in ids:
            assert (await rig.final(mid))["deliveries"][0]["state"] == "delivered"


async def test_system_busy_slows_the_channel_and_nothing_fails(tmp_path: Path) -> None:
    async with running(tmp_path, busy_every=3) as rig:
        ids = [(await rig.send({"to": [f"1339000{i:04d}"], "text": f"通知{i}"}))["id"] for i in range(12)]
        for mid in ids:
            assert (await rig.final(mid))["deliveries"][0]["state"] == "delivered"
        assert rig.smgw.stats.busy > 0
        metrics = rig.daemon.metrics
        assert metrics.child(metrics.segments_submitted, "ctc", "throttled")._value.get() > 0


async def test_an_undelivered_report_fails_the_delivery_with_its_err(tmp_path: Path) -> None:
    async with running(tmp_path, outcomes={"undelivered": 1.0}) as rig:
        sent = await rig.send({"to": ["13300133003"], "text": "测试"})
        (dl,) = (await rig.final(sent["id"]))["deliveries"]
        assert dl["state"] == "undelivered"
        assert dl["segments"][0]["error_code"] == 3  # err 003


async def test_a_long_reply_to_the_extension_reaches_the_app(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        sent = await rig.send({"to": ["13300133004"], "text": NOTICE})
        await rig.final(sent["id"])
        parts = await rig.smgw.inject_mo(
            sender="13300133004", dest_term_id="106590123401", text="请假：" + "家里有事" * 30, shuffle=True
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
        assert reply["sender"].endswith("13300133004") and reply["destination"] == "106590123401"
        assert reply["text"] == "请假：" + "家里有事" * 30
        assert reply["message_id"] == sent["id"]
        with trio.fail_after(5):
            while rig.smgw.stats.mo_acked < parts:  # each part answered once the core stored it
                await trio.sleep(0.05)


async def test_a_wrong_password_keeps_the_channel_down_and_says_why(tmp_path: Path) -> None:
    async with running(tmp_path, accounts={"10690001": "other"}) as rig:
        with trio.fail_after(10):
            while rig.smgw.stats.login_failures == 0:
                await trio.sleep(0.05)
        ready = (await rig.client.get("/readyz")).json()
        problem = "SMGP_Login refused: status 21 (authentication failed)"
        assert ready["channels"]["ctc"]["up"] is False
        assert ready["channels"]["ctc"]["problem"] == problem
        assert ready["checks"]["channels"] == f"none up (down: ctc: {problem})"
