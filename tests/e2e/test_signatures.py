"""Carrier signatures end to end: apps send over HTTP, the daemon sends over real SMPP to masd's simulated
SMSC, and the SMSC's record shows the texts it received — with the channel's signature, or the app's
instead, never two — in as many segments as were counted and billed back by receipts."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from masd.config import load_config
from masd.daemon import Daemon
from masd.store import apps as app_store
from masd_adapters.smpp.smsc import Smsc, SmscConfig

from .helpers import wait_final

CHANNEL_SIGNATURE = "【市政府办公室】"

CONFIG = """
[node]
name = "signature-test"
data_dir = "{data}"
[http]
listen = "127.0.0.1:{http}"
[socket]
enabled = false
[meeting]
enabled = false
[queue]
poll_interval = 0.05
[channels.smpp]
driver = "smpp"
service_number = "1065700012345"
signature = "{signature}"
signature_position = "front"
max_text_length = 140
[channels.smpp.options]
host = "127.0.0.1"
port = {port}
system_id = "masd"
password = "secret"
"""


@dataclass
class Rig:
    daemon: Daemon
    smsc: Smsc
    http: httpx.AsyncClient
    record: Path
    keys: dict[str, str]

    async def send(self, app: str, text: str, to: str) -> httpx.Response:
        return await self.http.post(
            "/v1/messages",
            json={"to": to, "text": text},
            headers={"Authorization": f"Bearer {self.keys[app]}"},
        )

    def received(self) -> dict[str, str]:
        """Destination → the text the SMSC received, its segments joined (UCS-2, 8-bit UDH)."""
        self.smsc.flush_record()
        parts: dict[str, list[tuple[int, str]]] = {}
        for line in self.record.read_text(encoding="utf-8").splitlines():
            sm: dict[str, Any] = json.loads(line)
            body = bytes.fromhex(sm["body"])
            assert sm["data_coding"] == 8
            seq, payload = (body[5], body[6:]) if sm["esm_class"] & 0x40 else (1, body)
            parts.setdefault(sm["destination"], []).append((seq, payload.decode("utf-16-be")))
        return {dest: "".join(t for _, t in sorted(got)) for dest, got in parts.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Rig]:
    record = tmp_path / "smsc.jsonl"
    smsc = Smsc(
        SmscConfig(
            port=0, accounts={"masd": "secret"}, receipt_delay=0.01, seed=3, control=False, record=record
        )
    )
    http_port = _free_port()
    async with trio.open_nursery() as nursery:
        await nursery.start(smsc.serve)
        cfg_path = tmp_path / "masd.toml"
        cfg_path.write_text(
            CONFIG.format(
                data=tmp_path.as_posix(), http=http_port, port=smsc.port, signature=CHANNEL_SIGNATURE
            ),
            encoding="utf-8",
        )
        daemon = Daemon(load_config(cfg_path, env={}))
        await nursery.start(daemon.run)
        keys: dict[str, str] = {}
        for name, signature in (("oa", "【会务组】"), ("crm", None)):
            _, keys[name] = await daemon.db.write(
                lambda c, n=name, s=signature: app_store.create_app(c, n, now=time.time(), signature=s)
            )
        with trio.fail_after(10):
            while not daemon.drivers["smpp"].up:
                await trio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as client:
            yield Rig(daemon, smsc, client, record, keys)
        daemon.stop()
        with trio.move_on_after(10):
            while daemon.ready:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


async def test_apps_texts_reach_the_carrier_signed_once_and_as_counted(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        sent = {
            # The app's signature is stored in its text; the channel adds none beside it.
            "13800000001": ("oa", "明天上午九点开会"),
            # An app without one: the channel's, at the front.
            "13800000002": ("crm", "明天上午九点开会"),
            # A text that brings its own signature keeps it alone.
            "13800000003": ("crm", "明天上午九点开会【会务组】"),
            # 64 characters fit one segment; with the channel's signature the text needs two.
            "13800000004": ("crm", "开" * 64),
        }
        ids = {}
        for to, (app, text) in sent.items():
            r = await rig.send(app, text, to)
            assert r.status_code == 201, r.text
            ids[to] = r.json()["id"]
        assert (await rig.send("crm", "开" * 64, "13800000005")).json()["segments"] == 2

        too_long = await rig.send("crm", "开" * 133, "13800000006")
        assert too_long.status_code == 422, too_long.text
        assert "is 141 characters with the signature 【市政府办公室】; channel smpp takes at most 140" in (
            too_long.text
        )

        for message_id in ids.values():
            msg = await wait_final(rig.daemon, message_id)
            assert [d["state"] for d in msg["deliveries"]] == ["delivered"]
        stored = await wait_final(rig.daemon, ids["13800000004"])
        assert stored["deliveries"][0]["segments"] == 2
        assert (await wait_final(rig.daemon, ids["13800000001"]))["text"] == "【会务组】明天上午九点开会"

        got = rig.received()
        assert got["13800000001"] == "【会务组】明天上午九点开会"
        assert got["13800000002"] == "【市政府办公室】明天上午九点开会"
        assert got["13800000003"] == "明天上午九点开会【会务组】"
        assert got["13800000004"] == "【市政府办公室】" + "开" * 64
