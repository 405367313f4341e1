"""The daemon over real SMPP: masd → SmppChannel → TCP → masd's simulated SMSC → receipts back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio

from masd.config import load_config
from masd.core.gateway import SubmitRequest
from masd.core.split import plan
from masd.daemon import Daemon
from masd.store.tables import replies
from masd_adapters.smpp.smsc import Smsc, SmscConfig

from .helpers import wait_final


@dataclass
class Rig:
    daemon: Daemon
    smsc: Smsc


CONFIG = """
[node]
name = "smpp-test"
data_dir = "{data}"
[http]
enabled = false
[socket]
enabled = false
[queue]
poll_interval = 0.05
retry_base_seconds = 0.1
retry_max_seconds = 0.5
max_attempts = 20
[channels.smpp]
driver = "smpp"
rate = 2000
window = 50
service_number = "1065700012345"
[channels.smpp.options]
host = "127.0.0.1"
port = {port}
system_id = "masd"
password = "secret"
reconnect_min = 0.1
reconnect_max = 0.5
"""


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running(tmp_path) as r:
        yield r


@contextlib.asynccontextmanager
async def running(tmp_path: Path, extra: str = "") -> AsyncIterator[Rig]:
    smsc = Smsc(
        SmscConfig(port=0, accounts={"masd": "secret"}, receipt_delay=(0.01, 0.05), seed=5, control=False)
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(smsc.serve)
        cfg_path = tmp_path / "masd.toml"
        cfg_path.write_text(CONFIG.format(data=tmp_path.as_posix(), port=smsc.port) + extra)
        daemon = Daemon(load_config(cfg_path, env={}))
        await nursery.start(daemon.run)
        with trio.fail_after(10):
            while not daemon.drivers["smpp"].up:
                await trio.sleep(0.02)
        yield Rig(daemon, smsc)
        daemon.stop()
        await daemon_stopped(daemon)
        nursery.cancel_scope.cancel()


async def daemon_stopped(d: Daemon) -> None:
    with trio.move_on_after(10):
        while d.ready:
            await trio.sleep(0.05)


async def test_messages_go_over_smpp_and_their_receipts_come_back(rig: Rig) -> None:
    accs = await rig.daemon.gateway.accept(
        [SubmitRequest(f"通知 {i}", [f"1380000{i:04d}"]) for i in range(30)], interface="test"
    )
    for a in accs:
        msg = await wait_final(rig.daemon, a.message_id)
        assert msg["deliveries"][0]["state"] == "delivered"
        assert msg["deliveries"][0]["segment_list"][0]["carrier_id"]
    assert rig.smsc.stats.submits >= 30


async def test_with_intake_spread_over_transactions_batches_taken_together_are_all_delivered(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, "[store]\nintake_rows_per_commit = 20\n") as r:
        gw = r.daemon.gateway
        accepted: list[int] = []

        async def batch(b: int) -> None:
            reqs = [SubmitRequest(f"批量 {b}-{i}", [f"139{b:02d}00{i:04d}"]) for i in range(30)]
            accs = await gw.accept(reqs, interface="test")
            accepted.extend(a.message_id for a in accs)

        async with trio.open_nursery() as n:
            for b in range(5):
                n.start_soon(batch, b)
        assert len(accepted) == 150
        for mid in accepted:
            msg = await wait_final(r.daemon, mid)
            assert msg["deliveries"][0]["state"] == "delivered"
        assert r.smsc.stats.submits >= 150


async def test_a_long_chinese_text_goes_as_concatenated_parts(rig: Rig) -> None:
    text = "防汛紧急通知：请各单位立即检查辖区内的水库、河道和低洼地带，做好人员转移准备。" * 3
    acc = await rig.daemon.gateway.send(SubmitRequest(text, ["13800138000"]), interface="test")
    n = len(plan(text).parts)
    assert acc.segments == n > 1
    msg = await wait_final(rig.daemon, acc.message_id)
    (dl,) = msg["deliveries"]
    assert dl["state"] == "delivered" and len(dl["segment_list"]) == n


async def test_throttling_is_retried_until_everything_is_delivered(rig: Rig) -> None:
    rig.smsc.update(throttle_every=3)
    accs = await rig.daemon.gateway.accept(
        [SubmitRequest(f"t{i}", [f"1390000{i:04d}"]) for i in range(20)], interface="test"
    )
    for a in accs:
        assert (await wait_final(rig.daemon, a.message_id))["deliveries"][0]["state"] == "delivered"
    assert rig.smsc.stats.throttled > 0
    assert rig.daemon.metrics.retries.labels("smpp")._value.get() > 0


async def test_a_dropped_link_is_rebound_and_nothing_is_lost(rig: Rig) -> None:
    first = await rig.daemon.gateway.send(SubmitRequest("before", ["13700000001"]), interface="test")
    await wait_final(rig.daemon, first.message_id)
    assert rig.smsc.disconnect_all() >= 1
    accs = await rig.daemon.gateway.accept(
        [SubmitRequest(f"after {i}", [f"1370000{i:04d}"]) for i in range(10)], interface="test"
    )
    for a in accs:
        assert (await wait_final(rig.daemon, a.message_id))["deliveries"][0]["state"] == "delivered"


async def test_a_reply_reaches_the_store_with_the_extension_it_was_sent_to(rig: Rig) -> None:
    parts = await rig.smsc.inject_mo(
        sender="13800138000",
        destination="106570001234542",
        text="请假：孩子发烧，需要去医院，明天的会议无法参加，抱歉。" * 3,
    )
    assert parts > 1
    with trio.fail_after(10):
        while True:
            rows = await rig.daemon.db.read(lambda c: c.execute(sa.select(replies)).mappings().all())
            if rows:
                break
            await trio.sleep(0.05)
    (row,) = rows
    assert row["destination"] == "106570001234542" and row["sender"].endswith("13800138000")
    assert row["text"].startswith("请假：孩子发烧") and row["text"].count("抱歉") == 3
