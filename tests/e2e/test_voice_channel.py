"""Voice notices end to end: a daemon with an SMS channel and a ``voice_sim`` channel, on each supported
database. A voice send reaches the voice channel only; each call ends delivered or undelivered as the
simulated callees were scripted; a keypress comes back as a reply to the service number + extension the
call came from, so it is stored and routed to the app that owns the extension, exactly like an SMS reply;
and an app allowed only SMS is refused a voice send."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from masd.config import load_config
from masd.core.apps import App, Forbidden
from masd.core.gateway import SubmitRequest
from masd.daemon import Daemon
from masd.store import apps as app_store
from masd_adapters.sim import SimChannel
from masd_adapters.voice import CallOutcome
from masd_adapters.voice_sim import VoiceSimChannel, read_call_journal

from .helpers import wait_final

VOICE_NUMBER = "10657009"
SMS_NUMBER = "10657001"
ATTENDS, DECLINES, SILENT, AWAY, BUSY = (
    "13800000001",
    "13800000002",
    "13800000003",
    "13800000004",
    "13800000005",
)
NOTICE = "张三您好：明天上午九点在三楼会议室召开年度总结会。参加请按1，不参加请按2。"

CONFIG = """
[node]
name = "voice-test"
data_dir = "{data}"
[store]
url = "{store}"
[http]
enabled = false
[socket]
enabled = false
[webhooks]
enabled = false
[queue]
poll_interval = 0.05
[channels.sms]
driver = "sim"
service_number = "{sms}"
[channels.sms.options]
receipt_delay = 0.01
[channels.voice]
driver = "voice_sim"
kind = "voice"
service_number = "{voice}"
[channels.voice.options]
time_scale = 0.01
ring_timeout = 20
[channels.voice.options.script]
"{attends}" = "answer:1"
"{declines}" = "answer:2"
"{silent}" = "answer"
"{away}" = "no-answer"
"{busy}" = "busy"
"""


@dataclass
class Rig:
    daemon: Daemon
    notices: App  # may use sms and voice; owns extension 42
    oa: App  # may use sms only

    @property
    def voice(self) -> VoiceSimChannel:
        drv = self.daemon.drivers["voice"]
        assert isinstance(drv, VoiceSimChannel)
        return drv

    async def call(self, numbers: list[str], extension: str = "07") -> dict[str, Any]:
        acc = await self.daemon.gateway.send(
            SubmitRequest(NOTICE, numbers, kind="voice", extension=extension),
            interface="test",
            app=self.notices,
            notify=True,
        )
        return await wait_final(self.daemon, acc.message_id)

    async def replies(self, count: int) -> list[dict[str, Any]]:
        """The replies stored so far, once there are ``count`` of them (keypresses may trail receipts)."""
        with trio.fail_after(10):
            while True:
                rows = await self.daemon.gateway.list_replies(limit=1000)
                if len(rows) >= count:
                    return rows
                await trio.sleep(0.02)


@pytest.fixture
async def rig(tmp_path: Path, store_url: str) -> AsyncIterator[Rig]:
    cfg_path = tmp_path / "masd.toml"
    cfg_path.write_text(
        CONFIG.format(
            data=tmp_path.as_posix(),
            store=store_url,
            sms=SMS_NUMBER,
            voice=VOICE_NUMBER,
            attends=ATTENDS,
            declines=DECLINES,
            silent=SILENT,
            away=AWAY,
            busy=BUSY,
        ),
        encoding="utf-8",
    )
    daemon = Daemon(load_config(cfg_path, env={}))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        now = time.time()
        await daemon.db.write(
            lambda c: app_store.create_app(c, "notices", now=now, extension="42", channels="sms,voice")
        )
        await daemon.db.write(lambda c: app_store.create_app(c, "oa", now=now, channels="sms"))
        notices, oa = await daemon.gateway.app_named("notices"), await daemon.gateway.app_named("oa")
        assert notices is not None and oa is not None
        with trio.fail_after(10):
            while not all(d.up for d in daemon.drivers.values()):
                await trio.sleep(0.02)
        yield Rig(daemon, notices, oa)
        daemon.stop()
        nursery.cancel_scope.cancel()


async def test_each_call_ends_delivered_or_undelivered_as_the_callee_was_scripted(rig: Rig) -> None:
    msg = await rig.call([ATTENDS, SILENT, AWAY, BUSY])
    by_number = {d["recipient"]: d for d in msg["deliveries"]}
    assert {n: d["state"] for n, d in by_number.items()} == {
        ATTENDS: "delivered",
        SILENT: "delivered",
        AWAY: "undelivered",
        BUSY: "undelivered",
    }
    assert by_number[AWAY]["error_code"] == 480 and by_number[BUSY]["error_code"] == 486
    assert {d["channel"] for d in msg["deliveries"]} == {"voice"}


async def test_each_calls_outcome_is_counted_once_in_the_voice_calls_metric(rig: Rig) -> None:
    await rig.call([ATTENDS, DECLINES, AWAY, BUSY])
    registry = rig.daemon.metrics.registry

    def count(outcome: str) -> float | None:
        return registry.get_sample_value("masd_voice_calls_total", {"outcome": outcome})

    def counts() -> tuple[float | None, ...]:
        return (count("answered"), count("no-answer"), count("busy"), count("failed"))

    # The metric is counted once the receipt's transaction has committed, a moment after a reader can
    # already see the delivery final.
    with trio.move_on_after(5):
        while counts() != (2, 1, 1, None):
            await trio.sleep(0.02)
    assert counts() == (2, 1, 1, None)


async def test_the_callee_hears_the_whole_notice_from_the_service_number_and_extension(rig: Rig) -> None:
    await rig.call([ATTENDS, AWAY])
    assert rig.voice.journal_path is not None
    journal = read_call_journal(rig.voice.journal_path)
    [heard] = journal.calls_to(ATTENDS)
    [missed] = journal.calls_to(AWAY)
    assert heard.heard == NOTICE and heard.source == VOICE_NUMBER + "42" + "07"
    assert missed.heard is None and missed.outcome is CallOutcome.NO_ANSWER


async def test_a_keypress_is_stored_as_a_reply_and_routed_to_the_app_owning_the_extension(rig: Rig) -> None:
    msg = await rig.call([ATTENDS, DECLINES, SILENT])
    rows = await rig.replies(2)
    by_sender = {r["sender"]: r for r in rows}
    assert set(by_sender) == {ATTENDS, DECLINES}
    assert by_sender[ATTENDS]["text"] == "1" and by_sender[DECLINES]["text"] == "2"
    for row in rows:
        assert row["app_id"] == rig.notices.id and row["matched_by"] == "extension"
        assert row["extension"] == "07" and row["channel"] == "voice"
        assert row["destination"] == VOICE_NUMBER + "4207"
    deliveries = {d["recipient"]: d["id"] for d in msg["deliveries"]}
    assert by_sender[ATTENDS]["delivery_id"] == deliveries[ATTENDS]


async def test_the_app_is_told_of_each_keypress_and_each_calls_end(rig: Rig) -> None:
    msg = await rig.call([ATTENDS, AWAY])
    await rig.replies(1)
    events = await rig.daemon.gateway.read_events(rig.notices.id, after=0)
    replies = [e for e in events if e["type"] == "reply"]
    receipts = {e["recipient"]: e for e in events if e["type"] == "receipt"}
    assert [(e["sender"], e["text"], e["extension"]) for e in replies] == [(ATTENDS, "1", "07")]
    assert replies[0]["message_id"] == msg["id"]
    assert receipts[ATTENDS]["state"] == "delivered"
    assert receipts[AWAY]["state"] == "undelivered" and receipts[AWAY]["error_code"] == 480
    assert await rig.daemon.gateway.read_events(rig.oa.id, after=0) == []


async def test_a_voice_send_uses_only_the_voice_channel_and_an_sms_send_only_the_sms_channel(
    rig: Rig,
) -> None:
    gw = rig.daemon.gateway
    sms = await gw.send(SubmitRequest("会议通知", [SILENT]), interface="test", app=rig.notices)
    sms_msg = await wait_final(rig.daemon, sms.message_id)
    voice_msg = await rig.call([SILENT])
    assert [d["channel"] for d in sms_msg["deliveries"]] == ["sms"]
    assert [d["channel"] for d in voice_msg["deliveries"]] == ["voice"]
    assert len(rig.voice.calls) == 1
    sms_drv = rig.daemon.drivers["sms"]
    assert isinstance(sms_drv, SimChannel) and len(sms_drv.received) == 1


async def test_a_script_changed_at_runtime_decides_the_next_call(rig: Rig) -> None:
    rig.voice.set_script(AWAY, "answer:1")
    msg = await rig.call([AWAY])
    assert msg["deliveries"][0]["state"] == "delivered"
    [row] = await rig.replies(1)
    assert row["sender"] == AWAY and row["text"] == "1"


async def test_an_app_allowed_only_sms_is_refused_a_voice_send(rig: Rig) -> None:
    with pytest.raises(Forbidden) as info:
        await rig.daemon.gateway.send(
            SubmitRequest(NOTICE, [ATTENDS], kind="voice"), interface="test", app=rig.oa, notify=True
        )
    assert info.value.status == 403 and info.value.field == "channel" and "voice" in info.value.reason
    assert rig.voice.calls == []
