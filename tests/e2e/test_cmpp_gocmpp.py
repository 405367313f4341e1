"""masd's ``cmpp`` driver against a CMPP server that is not ours: an ISMG written on bigwhite/gocmpp's
library ("ismg-plus", built in a session from the fetched sources; none of its code is in this
repository). A real daemon (in-process, HTTP on a free port) logs in to it over TCP in CMPP 3.0 and
2.0; the ISMG logs every SUBMIT as gocmpp decoded it, so these tests check what went over the wire as an
independent implementation reads it: the fields of a short and of a long Chinese SUBMIT, a status report
per segment rolled up into the delivery, its MO reaching masd as a reply with its Dest_Id, the
DELIVER_RESPs it received, a wrong password keeping the channel down with the refusal named, and the
ISMG killed and started again: the driver reconnects and what was queued meanwhile goes, once.

They run only when ``MASD_GOCMPP_ISMG`` names an ismg-plus binary (its flags: ``-addr HOST:PORT -v
3.0|2.0 -user SP_ID -secret SECRET -at DURATION``); docs/interop/cmpp-peers.md says how to build one.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio

from masd.config import load_config
from masd.core.gateway import SubmitRequest
from masd.daemon import Daemon
from masd.store.tables import replies
from masd_adapters.cmpp.client import CmppChannel

from .helpers import wait_final

ISMG_BINARY = os.environ.get("MASD_GOCMPP_ISMG", "")

pytestmark = pytest.mark.skipif(
    not (ISMG_BINARY and os.access(ISMG_BINARY, os.X_OK)),
    reason="set MASD_GOCMPP_ISMG to an ismg-plus binary built on bigwhite/gocmpp's library "
    '(how: docs/interop/cmpp-peers.md, "masd\'s driver against gocmpp")',
)

SP_ID, SECRET = "900001", "888888"
SERVICE_NUMBER = "1069000112"
EXTENSION = "3"
# What ismg-plus's one MO per run is sent from and to (its Dest_Id is the service number + "3").
MO_SENDER, MO_DEST, MO_TEXT = "13500002696", "10690001123", "回复：收到，谢谢"
LONG = "防汛紧急通知：请各单位立即检查辖区内的水库、河道和低洼地带，做好人员转移准备，保障群众安全。" * 3

CONFIG = """
[node]
name = "gocmpp-test"
data_dir = "{data}"
[http]
listen = "127.0.0.1:{http_port}"
[socket]
enabled = false
[queue]
poll_interval = 0.05
retry_base_seconds = 0.1
retry_max_seconds = 0.5
[channels.cmpp]
driver = "cmpp"
rate = 200
window = 16
service_number = "{service_number}"
[channels.cmpp.options]
host = "127.0.0.1"
port = {port}
sp_id = "{sp_id}"
password = "{password}"
version = "{version}"
service_id = "test"
reconnect_min = 0.1
reconnect_max = 0.5
"""

# ismg-plus's log lines (gocmpp's log package: "cmppserver: DATE TIME TEXT").
_SUBMIT = re.compile(
    r"SUBMIT[23] seq=(?P<seq>\d+) pk=(?P<number>\d+)/(?P<total>\d+) rd=(?P<rd>\d+) svc=\"(?P<svc>[^\"]*)\""
    r".* udhi=(?P<udhi>\d+) fmt=(?P<fmt>\d+) src=\"(?P<msg_src>[^\"]*)\""
    r".* srcId=\"(?P<src_id>[^\"]*)\" dest=\[\"(?P<dest>[^\"]*)\"\].* content=(?P<content>[0-9a-f]*)$"
)
_SUBMIT_RESP = re.compile(r"SUBMIT_RESP msgid=(?P<msgid>\d+) ")
_DELIVER_RESP = re.compile(r"DELIVER_RESP[23] seq=(?P<seq>\d+) msgid=(?P<msgid>\d+) result=(?P<result>\d+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GoIsmg:
    proc: trio.Process
    port: int
    log_path: Path

    def lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def submits(self) -> list[dict[str, Any]]:
        """Each SUBMIT as ismg-plus decoded it, with the Msg_Id it answered (the next SUBMIT_RESP line)."""
        out: list[dict[str, Any]] = []
        for line in self.lines():
            if m := _SUBMIT.search(line):
                out.append(m.groupdict())
            elif (m := _SUBMIT_RESP.search(line)) and out and "msgid" not in out[-1]:
                out[-1]["msgid"] = m["msgid"]
        return out

    def deliver_resps(self) -> list[dict[str, str]]:
        return [m.groupdict() for line in self.lines() if (m := _DELIVER_RESP.search(line))]

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines())


@dataclass
class Rig:
    daemon: Daemon
    ismg: GoIsmg
    http_port: int
    version: str
    procs: list[trio.Process]  # every ismg-plus started, ended by the fixture

    async def restart_ismg(self, log_path: Path) -> None:
        """Kill ismg-plus (SIGKILL: no TERMINATE, reports it owed are lost) and start a new one on the
        same port."""
        self.ismg.proc.kill()
        await self.ismg.proc.wait()
        self.ismg = await _start_ismg(self.version, log_path, port=self.ismg.port)
        self.procs.append(self.ismg.proc)

    def readyz(self) -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


async def _start_ismg(version: str, log_path: Path, port: int = 0) -> GoIsmg:
    port = port or _free_port()
    argv = [ISMG_BINARY, "-addr", f"127.0.0.1:{port}", "-v", version, "-user", SP_ID, "-secret", SECRET]
    with log_path.open("wb") as log:
        proc = await trio.lowlevel.open_process(
            [*argv, "-at", "30s"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    with trio.fail_after(10):
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ismg-plus exited (code {proc.returncode}): {log_path.read_text()}")
            try:
                await trio.to_thread.run_sync(
                    lambda: socket.create_connection(("127.0.0.1", port), 0.2).close()
                )
                break
            except OSError:
                await trio.sleep(0.05)
    return GoIsmg(proc, port, log_path)


StartRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[StartRig]:
    """start(version=..., password=...) → a daemon with one cmpp channel to a fresh ismg-plus."""
    procs: list[trio.Process] = []
    daemons: list[Daemon] = []
    try:
        async with trio.open_nursery() as nursery:

            async def go(version: str = "3.0", password: str = SECRET, wait_up: bool = True) -> Rig:
                ismg = await _start_ismg(version, tmp_path / f"ismg-{version}.log")
                procs.append(ismg.proc)
                http_port = _free_port()
                cfg_path = tmp_path / "masd.toml"
                cfg_path.write_text(
                    CONFIG.format(
                        data=tmp_path.as_posix(),
                        http_port=http_port,
                        port=ismg.port,
                        sp_id=SP_ID,
                        password=password,
                        version=version,
                        service_number=SERVICE_NUMBER,
                    )
                )
                daemon = Daemon(load_config(cfg_path, env={}))
                await nursery.start(daemon.run)
                daemons.append(daemon)
                if wait_up:
                    with trio.fail_after(15):
                        while not daemon.drivers["cmpp"].up:
                            await trio.sleep(0.05)
                return Rig(daemon, ismg, http_port, version, procs)

            try:
                yield go
            finally:
                for d in daemons:
                    d.stop()
                with trio.move_on_after(10):
                    while any(d.ready for d in daemons):
                        await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
    finally:
        # Outside the nursery, and shielded: a cancellation must not leave an ISMG running.
        for p in procs:
            p.terminate()
            with trio.move_on_after(5, shield=True):
                await p.wait()
            if p.poll() is None:
                p.kill()


async def _replies(rig: Rig, n: int, timeout: float = 15) -> list[dict[str, Any]]:
    with trio.fail_after(timeout):
        while True:
            rows = await rig.daemon.db.read(
                lambda c: [dict(r) for r in c.execute(sa.select(replies).order_by(replies.c.id)).mappings()]
            )
            if len(rows) >= n:
                return rows
            await trio.sleep(0.05)


# ----- 1 and 2: submits, reports and an MO in 3.0 and 2.0 -------------------------------------------------


@pytest.mark.parametrize("version", ["3.0", "2.0"])
async def test_a_short_and_a_long_chinese_text_are_delivered_by_their_reports_and_the_mo_arrives(
    start: StartRig, version: str
) -> None:
    rig = await start(version=version)
    d = rig.daemon
    short = await d.gateway.send(
        SubmitRequest("Server room temperature alarm", [MO_SENDER], extension=EXTENSION), interface="test"
    )
    long = await d.gateway.send(SubmitRequest(LONG, [MO_SENDER], extension=EXTENSION), interface="test")
    assert (short.segments, long.segments) == (1, 3)

    # Every segment's report arrives and the deliveries roll up to delivered.
    msgs = [await wait_final(d, a.message_id) for a in (short, long)]
    (s_dl,), (l_dl,) = (m["deliveries"] for m in msgs)
    assert s_dl["state"] == l_dl["state"] == "delivered"
    assert [x["state"] for x in l_dl["segment_list"]] == ["delivered"] * 3

    # The SUBMITs as gocmpp decoded them.
    subs = rig.ismg.submits()
    assert len(subs) == 4
    assert all(s["rd"] == "1" and s["msg_src"] == SP_ID and s["svc"] == "test" for s in subs)
    assert all(s["src_id"] == SERVICE_NUMBER + EXTENSION and s["dest"] == MO_SENDER for s in subs)
    # The two deliveries may go out interleaved: tell them apart by Pk_total, order the parts by Pk_number.
    (first,) = [s for s in subs if s["total"] == "1"]
    parts = sorted((s for s in subs if s["total"] != "1"), key=lambda s: int(s["number"]))
    assert (first["number"], first["total"], first["udhi"], first["fmt"]) == ("1", "1", "0", "0")
    assert bytes.fromhex(first["content"]) == b"Server room temperature alarm"
    assert [(p["number"], p["total"], p["udhi"], p["fmt"]) for p in parts] == [
        (str(n), "3", "1", "8") for n in (1, 2, 3)
    ]
    udhs = [bytes.fromhex(p["content"])[:6] for p in parts]
    assert {u[:3] for u in udhs} == {bytes([5, 0, 3])}
    assert len({u[3] for u in udhs}) == 1, "one reference for the three parts"
    assert [(u[4], u[5]) for u in udhs] == [(3, 1), (3, 2), (3, 3)]
    assert "".join(bytes.fromhex(p["content"])[6:].decode("utf-16-be") for p in parts) == LONG
    # Each segment is stored under the Msg_Id its SUBMIT_RESP carried.
    assert [x["carrier_id"] for x in s_dl["segment_list"]] == [first["msgid"]]
    assert [x["carrier_id"] for x in sorted(l_dl["segment_list"], key=lambda x: x["seq"])] == [
        p["msgid"] for p in parts
    ]

    # ismg-plus's MO (UCS-2, with a LinkID in 3.0) is a reply with its Dest_Id.
    (row,) = await _replies(rig, 1)
    assert (row["sender"], row["destination"], row["text"]) == (MO_SENDER, MO_DEST, MO_TEXT)

    # Every DELIVER (four reports, one MO) was answered, Result 0, after it was stored.
    with trio.fail_after(10):
        while len(rig.ismg.deliver_resps()) < 5:
            await trio.sleep(0.05)
    resps = rig.ismg.deliver_resps()
    assert len(resps) == 5 and {r["result"] for r in resps} == {"0"}


# ----- 3: a wrong password ---------------------------------------------------------------------------------


async def test_a_wrong_password_keeps_the_channel_down_with_authentication_failed_named(
    start: StartRig,
) -> None:
    rig = await start(version="3.0", password="wrong1", wait_up=False)
    d = rig.daemon
    with trio.fail_after(15):
        while rig.ismg.count("CONNECT refused status=3") < 2:  # refused, and tried again
            await trio.sleep(0.05)
    driver = d.drivers["cmpp"]
    assert isinstance(driver, CmppChannel) and not driver.up
    assert driver.refused is not None and driver.refused.status == 3
    assert "authentication failed" in str(driver.refused)

    code, body = await trio.to_thread.run_sync(rig.readyz)
    assert code == 503 and body["failed"] == ["channels"]
    assert body["channels"]["cmpp"]["up"] is False
    assert "authentication failed" in json.dumps(body, ensure_ascii=False)

    # A message waits for the channel; nothing crashed and nothing went out.
    acc = await d.gateway.send(SubmitRequest("waits", ["13800138000"]), interface="test")
    await trio.sleep(1)
    msg = await d.gateway.get_message(acc.message_id)
    assert msg is not None and msg["deliveries"][0]["state"] not in ("failed", "submitted", "delivered")
    assert d.ready and rig.ismg.submits() == []


# ----- a lost ISMG ---------------------------------------------------------------------------------------


async def test_the_driver_reconnects_after_the_ismg_is_killed_and_what_was_queued_goes_after_it(
    start: StartRig, tmp_path: Path
) -> None:
    rig = await start(version="3.0")
    d = rig.daemon
    first = await d.gateway.send(SubmitRequest("before", ["13600000000"]), interface="test")
    assert (await wait_final(d, first.message_id))["deliveries"][0]["state"] == "delivered"

    rig.ismg.proc.kill()
    await rig.ismg.proc.wait()
    with trio.fail_after(10):
        while d.drivers["cmpp"].up:
            await trio.sleep(0.05)
    texts = [f"停机期间的消息 {i}" if i % 3 else f"长消息{i}：" + LONG[:100] for i in range(20)]
    accs = await d.gateway.accept(
        [SubmitRequest(t, [f"1360000{i + 1:04d}"]) for i, t in enumerate(texts)], interface="test"
    )
    await trio.sleep(1)  # a few reconnects refused
    await rig.restart_ismg(tmp_path / "ismg-again.log")

    msgs = [await wait_final(d, a.message_id) for a in accs]
    assert [m["deliveries"][0]["state"] for m in msgs] == ["delivered"] * 20
    subs = rig.ismg.submits()
    assert len(subs) == sum(a.segments for a in accs)
    # Each long text's parts went once each, the short ones once.
    assert len({(s["dest"], s["number"]) for s in subs}) == len(subs)
