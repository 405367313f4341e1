"""masd's SMPP driver against an SMSC that is not ours: tests/interop/smsc.js, built on the npm ``smpp``
package's server. A real daemon (in-process) binds to it over TCP; the SMSC records every submit_sm as
it decoded it, so these tests check what went over the wire as a third-party implementation reads it:
binds of both kinds, UDH / SAR / message_payload concatenation of a long Chinese text in UCS-2, delivery
receipts, a multi-part reply to a service number with an extension, throttling and a dropped link.

The npm package is installed (``npm ci`` in tests/interop, from its package-lock.json) when
tests/interop/node_modules is missing; Node.js and npm must be installed (scripts/test installs them).
"""

from __future__ import annotations

import json
import subprocess
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

from .helpers import wait_final

INTEROP = Path(__file__).resolve().parent.parent / "interop"
SERVICE_NUMBER = "1065700012345"

CONFIG = """
[node]
name = "interop-test"
data_dir = "{data}"
[http]
enabled = false
[socket]
enabled = false
[queue]
poll_interval = 0.05
retry_base_seconds = 0.1
retry_max_seconds = 0.5
max_attempts = {max_attempts}
[channels.smpp]
driver = "smpp"
rate = 2000
window = 20
concat = "{concat}"
service_number = "{service_number}"
[channels.smpp.options]
host = "127.0.0.1"
port = {port}
system_id = "masd"
password = "secret"
bind = "{bind}"
reconnect_min = 0.1
reconnect_max = 0.5
"""


class NodeSmsc:
    """The running smsc.js, driven over its HTTP control port."""

    def __init__(self, proc: trio.Process, port: int, control_port: int) -> None:
        self.proc = proc
        self.port = port
        self.control_port = control_port

    async def call(self, op: str, body: dict[str, Any] | None = None) -> Any:
        url = f"http://127.0.0.1:{self.control_port}/{op}"
        data = None if body is None else json.dumps(body).encode()

        def do() -> Any:
            req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())

        return await trio.to_thread.run_sync(do)

    async def stats(self) -> dict[str, Any]:
        return dict(await self.call("stats"))

    async def records(self, event: str | None = None) -> list[dict[str, Any]]:
        recs = (await self.call("received"))["records"]
        return [r for r in recs if event is None or r["event"] == event]


@dataclass
class Rig:
    daemon: Daemon
    smsc: NodeSmsc


async def _start_smsc(cmd: list[str], *args: str) -> NodeSmsc:
    argv = [
        *cmd,
        "--port",
        "0",
        "--control-port",
        "0",
        "--system-id",
        "masd",
        "--password",
        "secret",
        *args,
    ]
    proc = await trio.lowlevel.open_process(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    buf = b""
    with trio.fail_after(20):
        while b"\n" not in buf:
            chunk = await proc.stdout.receive_some(4096)
            if not chunk:
                raise RuntimeError(f"smsc.js exited before it listened (code {proc.poll()})")
            buf += chunk
    info = json.loads(buf.split(b"\n", 1)[0])
    assert info["event"] == "listening"
    return NodeSmsc(proc, int(info["port"]), int(info["control_port"]))


StartRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def start(tmp_path: Path, node_smsc: list[str]) -> AsyncIterator[StartRig]:
    """start(bind=..., concat=..., smsc_args=[...]) → a daemon bound to a fresh smsc.js."""
    procs: list[trio.Process] = []
    daemons: list[Daemon] = []
    try:
        async with trio.open_nursery() as nursery:

            async def go(
                bind: str = "transceiver",
                concat: str = "udh8",
                smsc_args: tuple[str, ...] = ("--receipt-delay", "20"),
                max_attempts: int = 30,
            ) -> Rig:
                smsc = await _start_smsc(node_smsc, *smsc_args)
                procs.append(smsc.proc)
                cfg_path = tmp_path / "masd.toml"
                cfg_path.write_text(
                    CONFIG.format(
                        data=tmp_path.as_posix(),
                        port=smsc.port,
                        bind=bind,
                        concat=concat,
                        service_number=SERVICE_NUMBER,
                        max_attempts=max_attempts,
                    )
                )
                daemon = Daemon(load_config(cfg_path, env={}))
                await nursery.start(daemon.run)
                daemons.append(daemon)
                await wait_bound(daemon, smsc, 2 if bind == "tx+rx" else 1)
                return Rig(daemon, smsc)

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
        # Outside the nursery, and shielded: a cancellation must not leave an SMSC running.
        for p in procs:
            p.terminate()
            with trio.move_on_after(5, shield=True):
                await p.wait()
            if p.poll() is None:
                p.kill()


async def wait_bound(daemon: Daemon, smsc: NodeSmsc, binds: int, timeout: float = 15) -> None:
    with trio.fail_after(timeout):
        while not (daemon.drivers["smpp"].up and len((await smsc.stats())["bound"]) >= binds):
            await trio.sleep(0.05)


async def states_of(d: Daemon, ids: list[int]) -> list[str]:
    out = []
    for i in ids:
        msg = await wait_final(d, i)
        out.extend(x["state"] for x in msg["deliveries"])
    return out


# ----- bind, submit, receipts ------------------------------------------------------------------------------


@pytest.mark.parametrize("bind", ["transceiver", "tx+rx"])
async def test_it_binds_submits_and_the_receipt_ends_the_delivery_delivered(
    start: StartRig, bind: str
) -> None:
    rig = await start(bind=bind)
    binds = sorted(r["bind"] for r in await rig.smsc.records("bind"))
    assert binds == (["bind_transceiver"] if bind == "transceiver" else ["bind_receiver", "bind_transmitter"])

    acc = await rig.daemon.gateway.send(
        SubmitRequest("Server room temperature alarm", ["13800138000"]), interface="test"
    )
    msg = await wait_final(rig.daemon, acc.message_id)
    (dl,) = msg["deliveries"]
    assert dl["state"] == "delivered"

    (sub,) = await rig.smsc.records("submit_sm")
    assert sub["destination_addr"] == "13800138000"
    assert sub["source_addr"] == SERVICE_NUMBER
    assert sub["registered_delivery"] & 0x01
    assert sub["data_coding"] == 0 and sub["text"] == "Server room temperature alarm"
    assert dl["segment_list"][0]["carrier_id"] == sub["message_id"]
    stats = await rig.smsc.stats()
    assert stats["receipts_acked"] == 1 and stats["outbox"] == 0


async def test_many_messages_all_end_delivered_by_their_receipts(start: StartRig) -> None:
    rig = await start()
    accs = await rig.daemon.gateway.accept(
        [SubmitRequest(f"会议通知 {i}", [f"1390000{i:04d}"]) for i in range(40)], interface="test"
    )
    assert await states_of(rig.daemon, [a.message_id for a in accs]) == ["delivered"] * 40
    stats = await rig.smsc.stats()
    assert stats["submits_ok"] == 40 and stats["receipts_acked"] == 40
    # The receipts are stored, each against its segment's carrier id.
    subs = {r["message_id"] for r in await rig.smsc.records("submit_sm")}
    acked = {r["message_id"] for r in await rig.smsc.records("receipt_acked")}
    assert subs == acked and len(subs) == 40


# ----- long texts -----------------------------------------------------------------------------------------

LONG = "防汛紧急通知：请各单位立即检查辖区内的水库、河道和低洼地带，做好人员转移准备，保障群众安全。" * 3


@pytest.mark.parametrize("concat", ["udh8", "udh16", "sar", "payload"])
async def test_a_long_chinese_text_arrives_in_parts_that_reassemble(start: StartRig, concat: str) -> None:
    rig = await start(concat=concat)
    acc = await rig.daemon.gateway.send(SubmitRequest(LONG, ["13800138000"]), interface="test")
    msg = await wait_final(rig.daemon, acc.message_id, timeout=10)
    (dl,) = msg["deliveries"]
    assert dl["state"] == "delivered"
    subs = await rig.smsc.records("submit_sm")
    assert all(s["data_coding"] == 8 for s in subs)

    if concat == "payload":
        (sub,) = subs
        assert acc.segments == 1 and sub["body"] == "" and sub["text"] == LONG
        assert bytes.fromhex(sub["message_payload"]).decode("utf-16-be") == LONG
        return

    n = len(subs)
    assert acc.segments == n == len(dl["segment_list"]) and n == -(-len(LONG) // 67)
    if concat == "sar":
        info = [s["sar"] for s in subs]
        assert all(s["esm_class"] & 0x40 == 0 and s["udh"] is None for s in subs)
    else:
        info = [s["concat"] for s in subs]
        assert all(s["esm_class"] & 0x40 for s in subs)
        for s in subs:
            udh = bytes.fromhex(s["udh"])
            if concat == "udh8":
                assert udh[:3] == bytes([5, 0x00, 3]) and len(udh) == 6
            else:
                assert udh[:3] == bytes([6, 0x08, 4]) and len(udh) == 7
    assert len({i["ref"] for i in info}) == 1, "every part carries the same reference"
    assert sorted(i["seq"] for i in info) == list(range(1, n + 1))
    assert {i["total"] for i in info} == {n}
    # Each part's body is UCS-2 of at most 67 characters, never a broken pair; in order they give the text.
    bodies = [bytes.fromhex(s["body"]) for s in sorted(subs, key=lambda s: (s["concat"] or s["sar"])["seq"])]
    assert all(len(b) <= 134 and len(b) % 2 == 0 for b in bodies)
    assert "".join(b.decode("utf-16-be") for b in bodies) == LONG
    # The SMSC receipts every part; the delivery is delivered once all are.
    assert [s["state"] for s in dl["segment_list"]] == ["delivered"] * n


async def test_a_long_gsm_text_goes_in_7_bit_parts(start: StartRig) -> None:
    rig = await start()
    text = "Flood warning: move to higher ground now. {Shelter} at the school, bring ID & water. " * 3
    acc = await rig.daemon.gateway.send(SubmitRequest(text, ["13800138000"]), interface="test")
    assert (await wait_final(rig.daemon, acc.message_id))["deliveries"][0]["state"] == "delivered"
    subs = sorted(await rig.smsc.records("submit_sm"), key=lambda s: s["concat"]["seq"])
    assert len(subs) == acc.segments > 1 and all(s["data_coding"] == 0 for s in subs)
    assert "".join(s["text"] for s in subs) == text


# ----- replies ---------------------------------------------------------------------------------------------


async def _replies(rig: Rig, n: int) -> list[dict[str, Any]]:
    with trio.fail_after(15):
        while True:
            rows = await rig.daemon.db.read(
                lambda c: [dict(r) for r in c.execute(sa.select(replies).order_by(replies.c.id)).mappings()]
            )
            if len(rows) >= n:
                return rows
            await trio.sleep(0.05)


async def test_a_multipart_reply_reaches_masd_with_the_extension_it_was_sent_to(start: StartRig) -> None:
    rig = await start()
    text = "请假：孩子发烧，需要去医院，明天上午的项目评审会无法参加，材料已发邮箱，抱歉。" * 2
    answer = await rig.smsc.call("mo", {"from": "13900139000", "to": SERVICE_NUMBER + "42", "text": text})
    assert answer["parts"] > 1 and answer["data_coding"] == 8
    (row,) = await _replies(rig, 1)
    assert row["destination"] == SERVICE_NUMBER + "42"
    assert row["sender"].endswith("13900139000")
    assert row["text"] == text
    with trio.fail_after(5):
        while (await rig.smsc.stats())["mo_acked"] < answer["parts"]:
            await trio.sleep(0.05)


async def test_short_replies_in_gsm_and_with_a_16_bit_reference(start: StartRig) -> None:
    rig = await start()
    await rig.smsc.call("mo", {"from": "13800000001", "to": SERVICE_NUMBER + "7", "text": "1"})
    await rig.smsc.call(
        "mo", {"from": "13800000002", "to": SERVICE_NUMBER, "text": "收到" * 40, "parts": 2, "udh16": True}
    )
    rows = await _replies(rig, 2)
    by_sender = {r["sender"][-11:]: r for r in rows}
    assert by_sender["13800000001"]["text"] == "1"
    assert by_sender["13800000001"]["destination"] == SERVICE_NUMBER + "7"
    assert by_sender["13800000002"]["text"] == "收到" * 40


# ----- throttling and dropped links ------------------------------------------------------------------------


async def test_throttled_submits_are_retried_and_delivered(start: StartRig) -> None:
    rig = await start(smsc_args=("--receipt-delay", "10", "--throttle-every", "3"))
    accs = await rig.daemon.gateway.accept(
        [SubmitRequest(f"t{i}", [f"1370000{i:04d}"]) for i in range(30)], interface="test"
    )
    assert await states_of(rig.daemon, [a.message_id for a in accs]) == ["delivered"] * 30
    stats = await rig.smsc.stats()
    assert stats["throttled"] >= 10
    assert stats["submits_ok"] == 30, "each throttled submit was sent again, and only once accepted"
    throttled = [s for s in await rig.smsc.records("submit_sm") if s["status"] == 0x58]
    assert throttled and all("message_id" not in s for s in throttled)
    assert rig.daemon.metrics.retries.labels("smpp")._value.get() >= len(throttled)


async def test_a_throttle_storm_fails_no_long_message_and_sends_no_part_twice(start: StartRig) -> None:
    # Every 2nd submit throttled and only two attempts allowed: a throttle must not count as one, and a
    # retry must send only the parts the SMSC has not acknowledged.
    rig = await start(smsc_args=("--receipt-delay", "10", "--throttle-every", "2"), max_attempts=2)
    accs = await rig.daemon.gateway.accept(
        [SubmitRequest(f"{i}号" + LONG[:190], [f"1360000{i:04d}"]) for i in range(20)], interface="test"
    )
    assert {a.segments for a in accs} == {3}
    assert await states_of(rig.daemon, [a.message_id for a in accs]) == ["delivered"] * 20
    subs = await rig.smsc.records("submit_sm")
    accepted = [
        (r["destination_addr"], r["concat"]["ref"], r["concat"]["seq"]) for r in subs if r["status"] == 0
    ]
    assert len(accepted) == 60 and len(set(accepted)) == 60, "each part accepted once"
    assert sum(1 for r in subs if r["status"] == 0x58) >= 25
    m = rig.daemon.metrics
    assert m.segments_submitted.labels("smpp", "throttled")._value.get() >= 25
    assert m.deliveries_final.labels("failed")._value.get() == 0


async def test_a_dropped_link_is_rebound_and_the_rest_goes_through(start: StartRig) -> None:
    rig = await start()
    first = await rig.daemon.gateway.send(SubmitRequest("before", ["13600000001"]), interface="test")
    assert (await wait_final(rig.daemon, first.message_id))["deliveries"][0]["state"] == "delivered"

    # Drop every link and refuse binds for a moment: masd must back off, bind again and carry on.
    assert (await rig.smsc.call("drop", {"block_ms": 300}))["dropped"] >= 1
    accs = await rig.daemon.gateway.accept(
        [SubmitRequest(f"after {i}", [f"1360000{i:04d}"]) for i in range(20)], interface="test"
    )
    assert await states_of(rig.daemon, [a.message_id for a in accs]) == ["delivered"] * 20
    stats = await rig.smsc.stats()
    assert stats["binds"] >= 2 and stats["drops"] == 1


async def test_receipts_owed_while_the_link_is_down_arrive_after_the_rebind(start: StartRig) -> None:
    # Receipts come 1.5 s after each submit; the link is cut before that, so every receipt is owed to a
    # bind that no longer exists and must reach masd on the next one.
    rig = await start(smsc_args=("--receipt-delay", "1500"))
    accs = await rig.daemon.gateway.accept(
        [SubmitRequest(f"r{i}", [f"1350000{i:04d}"]) for i in range(10)], interface="test"
    )
    # Every submit_sm_resp has been read and stored (else masd would rightly send those again).
    with trio.fail_after(10):
        while True:
            msgs = [await rig.daemon.gateway.get_message(a.message_id) for a in accs]
            if all(m is not None and m["deliveries"][0]["state"] == "submitted" for m in msgs):
                break
            await trio.sleep(0.02)
    await rig.smsc.call("drop", {"block_ms": 2000})
    assert await states_of(rig.daemon, [a.message_id for a in accs]) == ["delivered"] * 10
    stats = await rig.smsc.stats()
    assert stats["binds"] >= 2 and stats["receipts_acked"] == 10
    assert stats["submits_ok"] == 10, "nothing was submitted twice"
