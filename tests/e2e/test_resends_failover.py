"""Resends and failover end to end: ``masd run`` (in process) with two SMPP channels, each bound over
real TCP to its own ``masd sim smsc`` process.

- A delivery the first SMSC reports undelivered is resent through the fallback channel and delivered;
  the app is pushed one receipt, the final one, saying it was resent; its history shows the first
  attempt over HTTP and in ``masd status``.
- The primary's SMSC is killed: after ``failover_after_seconds`` its queued deliveries go out through
  the backup; a delivery accepted meanwhile for later goes to the backup, and comes back to the primary
  when its SMSC is started again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import trio

from masd.config import load_config
from masd.daemon import Daemon
from masd.interfaces.http import MessageOut
from masd.store import apps as app_store

SIM_CLI = "from masd.cli.sim import sim_app; sim_app()"
SMSC_ARGS = ("--account", "masd:secret", "--receipt-delay", "0.02", "--control-port", "-1", "--json")
FINAL = {"delivered", "undelivered", "expired", "rejected", "failed", "cancelled"}

CONFIG = """
[node]
name = "resend-test"
data_dir = "{data}"
[http]
listen = "127.0.0.1:{http}"
[socket]
listen = "127.0.0.1:0"
[webhooks]
enabled = false
[meeting]
enabled = false
[queue]
poll_interval = 0.05
retry_base_seconds = 0.1
retry_max_seconds = 0.5
{channels}
"""

CHANNEL = """
[channels.{name}]
driver = "smpp"
service_number = "1065700012345"
{extra}
[channels.{name}.options]
host = "127.0.0.1"
port = {port}
system_id = "masd"
password = "secret"
reconnect_min = 0.1
reconnect_max = 0.3
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def smsc(port: int, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``masd sim smsc`` on ``port`` until the block ends (or the test kills it)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SIM_CLI, "smsc", "--port", str(port), *SMSC_ARGS, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1].strip() != "}":
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "masd sim smsc ended"
            lines.append(line)
        assert json.loads("".join(lines))["port"] == port
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@dataclass
class Rig:
    daemon: Daemon
    http: httpx.AsyncClient
    config: Path

    async def add_app(self, name: str, **settings: Any) -> str:
        _, key = await self.daemon.db.write(
            lambda c: app_store.create_app(c, name, now=time.time(), **settings)
        )
        return str(key)

    async def message(self, key: str, message_id: int) -> dict[str, Any]:
        r = await self.http.get(f"/v1/messages/{message_id}", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        MessageOut.model_validate(r.json())
        out: dict[str, Any] = r.json()
        return out

    async def final(self, key: str, message_id: int, timeout: float = 20) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                msg = await self.message(key, message_id)
                if all(d["state"] in FINAL for d in msg["deliveries"]):
                    return msg
                await trio.sleep(0.05)

    async def send(self, key: str, body: dict[str, Any]) -> int:
        r = await self.http.post("/v1/messages", json=body, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    async def metric(self, line_start: str) -> float:
        text = (await self.http.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith(line_start + " "):
                return float(line.split()[-1])
        raise AssertionError(f"no metric {line_start}")


@contextlib.asynccontextmanager
async def running(tmp_path: Path, channels: str) -> AsyncIterator[Rig]:
    http_port = _free_port()
    config = tmp_path / "masd.toml"
    config.write_text(CONFIG.format(data=tmp_path.as_posix(), http=http_port, channels=channels))
    daemon = Daemon(load_config(config, env={}))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        with trio.fail_after(10):
            while not all(d.up for d in daemon.drivers.values()):
                await trio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as client:
            yield Rig(daemon, client, config)
        daemon.stop()


class SocketApp:
    """An app on the socket interface: frames in and out, as docs/socket.md describes them."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.stream.send_all(json.dumps(frame).encode() + b"\n")

    async def recv(self, timeout: float = 20) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while b"\n" not in self.buf:
                data = await self.stream.receive_some(65536)
                assert data, "masd closed the connection"
                self.buf += data
        end = self.buf.index(b"\n")
        frame: dict[str, Any] = json.loads(bytes(self.buf[:end]))
        del self.buf[: end + 1]
        return frame


def masd_status(config: Path, message_id: int) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASD_")}
    env.update(PYTHONIOENCODING="utf-8", COLUMNS="200")
    proc = subprocess.run(
        [sys.executable, "-m", "masd.cli", "status", str(message_id), "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


async def test_an_undelivered_delivery_is_resent_through_the_fallback_channel_and_delivered(
    tmp_path: Path,
) -> None:
    p1, p2 = _free_port(), _free_port()
    resend = 'resend_undelivered = 1\nresend_delay_seconds = 0.2\nresend_via = "fallback"'
    channels = CHANNEL.format(name="primary", port=p1, extra=resend) + CHANNEL.format(
        name="fallback", port=p2, extra=""
    )
    with smsc(p1, "--outcomes", "undelivered=1"), smsc(p2):
        async with running(tmp_path, channels) as rig:
            key = await rig.add_app("oa")
            app = SocketApp(await trio.open_tcp_stream("127.0.0.1", rig.daemon.socket_server.port))
            await app.send({"type": "login", "key": key})
            assert (await app.recv())["type"] == "login_ok"
            await app.send({"type": "submit", "ref": "n-1", "to": "13800138000", "text": "明天9点开会"})
            ack = await app.recv()
            assert ack["type"] == "submit_ack", ack
            # The app is pushed the final outcome only, and told it took a resend.
            receipt = await app.recv()
            assert (receipt["type"], receipt["id"], receipt["state"]) == ("receipt", ack["id"], "delivered")
            assert receipt["resends"] == 1

            msg = await rig.message(key, ack["id"])
            (dl,) = msg["deliveries"]
            assert (dl["state"], dl["channel"], dl["resends"]) == ("delivered", "fallback", 1)
            (h,) = dl["history"]
            assert (h["event"], h["channel"], h["state"], h["next_channel"]) == (
                "resend",
                "primary",
                "undelivered",
                "fallback",
            )
            assert "carrier receipt for segment 1/1: undelivered" in h["reason"]
            assert [(s["channel"], s["state"]) for s in dl["segments"]] == [
                ("primary", "superseded"),
                ("fallback", "delivered"),
            ]
            assert await rig.metric('masd_resends_total{channel="primary"}') == 1

            # An app whose own setting is no resend: the channel's count does not apply to it.
            strict = await rig.add_app("strict", resend=0)
            mid = await rig.send(strict, {"to": "13900139000", "text": "no second try"})
            (once,) = (await rig.final(strict, mid))["deliveries"]
            assert (once["state"], once["channel"], once["resends"], once["history"]) == (
                "undelivered",
                "primary",
                0,
                [],
            )

            shown = await trio.to_thread.run_sync(masd_status, rig.config, ack["id"])
            assert "history" in shown and "resend" in shown
            assert "primary → fallback" in shown and "undelivered" in shown


async def test_a_down_channels_queued_deliveries_go_through_its_backup_and_come_back_when_it_returns(
    tmp_path: Path,
) -> None:
    p1, p2 = _free_port(), _free_port()
    channels = CHANNEL.format(
        name="primary", port=p1, extra='backup = "backup"\nfailover_after_seconds = 1.0'
    ) + CHANNEL.format(name="backup", port=p2, extra="")
    with contextlib.ExitStack() as smscs, smsc(p2):
        first = smscs.enter_context(smsc(p1))
        async with running(tmp_path, channels) as rig:
            key = await rig.add_app("oa")
            first.send_signal(signal.SIGKILL)
            first.wait()
            with trio.fail_after(10):
                while rig.daemon.drivers["primary"].up:
                    await trio.sleep(0.02)
            down_at = trio.current_time()
            queued = [await rig.send(key, {"to": f"1380013800{i}", "text": f"通知 {i}"}) for i in range(5)]
            for mid in queued:
                (dl,) = (await rig.final(key, mid))["deliveries"]
                assert (dl["state"], dl["channel"]) == ("delivered", "backup")
                assert [(h["event"], h["channel"], h["next_channel"]) for h in dl["history"]] == [
                    ("failover", "primary", "backup")
                ]
                assert {s["channel"] for s in dl["segments"]} == {"backup"}
            assert trio.current_time() - down_at >= 1.0  # not before the threshold
            assert await rig.metric('masd_failovers_total{channel="primary"}') == 1
            assert await rig.metric('masd_channel_failover{channel="primary"}') == 1

            # Accepted while failed over, for later: it waits on the backup, at home on the primary.
            later = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
            mid = await rig.send(key, {"to": "13900139000", "text": "稍后发送", "send_at": later})
            (dl,) = (await rig.message(key, mid))["deliveries"]
            assert (dl["state"], dl["channel"]) == ("queued", "backup")

            # The primary's SMSC is back: the waiting delivery goes home, and out through it.
            smscs.enter_context(smsc(p1))
            with trio.fail_after(10):
                while (await rig.message(key, mid))["deliveries"][0]["channel"] != "primary":
                    await trio.sleep(0.05)
            assert await rig.metric('masd_channel_failover{channel="primary"}') == 0
            (dl,) = (await rig.final(key, mid))["deliveries"]
            assert (dl["state"], dl["channel"]) == ("delivered", "primary")
            assert [(h["event"], h["channel"], h["next_channel"]) for h in dl["history"]] == [
                ("failback", "backup", "primary")
            ]
            assert {s["channel"] for s in dl["segments"]} == {"primary"}
