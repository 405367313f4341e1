"""The whole pipeline in one process: accept → store → dispatch → sim channel → receipt → final state."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from masd.config import load_config
from masd.core.gateway import QueueFull, Rejected, SubmitRequest
from masd.daemon import Daemon

from .helpers import wait_final


def make_daemon(tmp_path: Path, **env: str) -> Daemon:
    base = {
        "MASD_NODE__DATA_DIR": str(tmp_path),
        "MASD_NODE__NAME": "test-node",
        "MASD_HTTP__ENABLED": "false",
        "MASD_SOCKET__ENABLED": "false",
        "MASD_QUEUE__POLL_INTERVAL": "0.05",
        "MASD_QUEUE__RETRY_BASE_SECONDS": "0.05",
        "MASD_QUEUE__RETRY_MAX_SECONDS": "0.2",
        "MASD_CHANNELS__SIM__RATE": "2000",
        "MASD_CHANNELS__SIM__OPTIONS": "{receipt_delay = [0.01, 0.03], seed = 1}",
    }
    base.update(env)
    return Daemon(load_config(None, env=base))


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start a daemon with extra environment overrides; stopped at the end of the test."""
    daemons: list[Daemon] = []
    async with trio.open_nursery() as nursery:

        async def start(**env: str) -> Daemon:
            d = make_daemon(tmp_path, **env)
            await nursery.start(d.run)
            daemons.append(d)
            return d

        yield start
        for d in daemons:
            d.stop()


async def test_a_message_to_two_numbers_is_delivered_to_both(running: Callable[..., Any]) -> None:
    d = await running()
    acc = await d.gateway.send(
        SubmitRequest("会议通知：明天上午9点开会", ["+8613800138000", "13900139000"]), interface="test"
    )
    assert acc.recipients == ["13800138000", "13900139000"] and acc.encoding == "ucs2"
    msg = await wait_final(d, acc.message_id)
    assert [x["state"] for x in msg["deliveries"]] == ["delivered", "delivered"]
    assert all(len(x["segment_list"]) == 1 and x["segment_list"][0]["carrier_id"] for x in msg["deliveries"])


async def test_a_long_text_goes_out_in_segments_and_each_receipt_rolls_up(
    running: Callable[..., Any],
) -> None:
    d = await running()
    acc = await d.gateway.send(SubmitRequest("防汛通知" * 40, ["13800138000"]), interface="test")
    assert acc.segments == 3
    msg = await wait_final(d, acc.message_id)
    (dl,) = msg["deliveries"]
    assert dl["state"] == "delivered"
    assert [(s["seq"], s["total"], s["state"]) for s in dl["segment_list"]] == [
        (i, 3, "delivered") for i in (1, 2, 3)
    ]


async def test_a_permanent_carrier_error_rejects_the_delivery_with_its_code(
    running: Callable[..., Any],
) -> None:
    d = await running(MASD_CHANNELS__SIM__OPTIONS="{receipt_delay = 0.01, reject_prefixes = ['1390']}")
    acc = await d.gateway.send(SubmitRequest("hi", ["13900000000", "13800000000"]), interface="test")
    msg = await wait_final(d, acc.message_id)
    by = {x["recipient"]: x for x in msg["deliveries"]}
    assert by["13900000000"]["state"] == "rejected"
    assert "ESME_RINVDSTADR" in by["13900000000"]["reason"] and "0x0B" in by["13900000000"]["reason"]
    assert by["13800000000"]["state"] == "delivered"


async def test_throttled_submits_are_retried_until_they_pass(running: Callable[..., Any]) -> None:
    d = await running(
        MASD_CHANNELS__SIM__OPTIONS="{receipt_delay = 0.01, submit_error_rate = 0.5, seed = 3}",
        MASD_QUEUE__MAX_ATTEMPTS="30",
    )
    accs = await d.gateway.accept(
        [SubmitRequest(f"m{i}", [f"1380000{i:04d}"]) for i in range(20)], interface="test"
    )
    for a in accs:
        msg = await wait_final(d, a.message_id, timeout=30)
        assert msg["deliveries"][0]["state"] == "delivered"
    assert d.metrics.retries.labels("sim")._value.get() > 0


async def test_a_delivery_the_carrier_keeps_throttling_never_fails_and_ends_with_its_validity(
    running: Callable[..., Any],
) -> None:
    # Throttling is flow control: however often it comes, it never counts as an attempt.
    d = await running(
        MASD_CHANNELS__SIM__OPTIONS="{submit_error_rate = 1.0}",
        MASD_QUEUE__MAX_ATTEMPTS="2",
    )
    acc = await d.gateway.send(SubmitRequest("x", ["13800138000"], validity_seconds=4), interface="test")
    msg = await wait_final(d, acc.message_id)
    (dl,) = msg["deliveries"]
    assert dl["state"] == "expired" and dl["attempts"] == 0
    # Ended by the dispatcher (its reason names the throttle) or by the sweep of expired queued work.
    assert "throttled" in dl["reason"] or "validity period ended" in dl["reason"], dl["reason"]
    assert d.metrics.segments_submitted.labels("sim", "throttled")._value.get() >= 2
    assert d.metrics.channel_rate.labels("sim")._value.get() < d.cfg.channels["sim"].rate


async def test_a_delivery_that_cannot_be_sent_within_its_validity_expires(
    running: Callable[..., Any],
) -> None:
    d = await running(MASD_CHANNELS__SIM__OPTIONS="{submit_error_rate = 1.0}", MASD_QUEUE__MAX_ATTEMPTS="50")
    acc = await d.gateway.send(SubmitRequest("x", ["13800138000"], validity_seconds=1), interface="test")
    msg = await wait_final(d, acc.message_id)
    assert msg["deliveries"][0]["state"] == "expired"
    assert "validity" in msg["deliveries"][0]["reason"]


async def test_a_scheduled_message_waits_for_its_time(running: Callable[..., Any]) -> None:
    d = await running()
    acc = await d.gateway.send(
        SubmitRequest("later", ["13800138000"], send_at=time.time() + 3.0), interface="test"
    )
    # Well before its time, even when a loaded machine delays this task's read by a second or two.
    await trio.sleep(0.5)
    msg = await d.gateway.get_message(acc.message_id)
    assert msg is not None and msg["deliveries"][0]["state"] == "queued"
    msg = await wait_final(d, acc.message_id)
    assert msg["deliveries"][0]["state"] == "delivered"


async def test_a_bad_recipient_refuses_the_whole_request_and_stores_nothing(
    running: Callable[..., Any],
) -> None:
    d = await running()
    with pytest.raises(Rejected) as e:
        await d.gateway.send(SubmitRequest("x", ["13800138000", "12345", "13900139000"]), interface="test")
    assert e.value.field == "recipients" and e.value.index == 1 and e.value.value == "12345"
    with pytest.raises(Rejected) as e2:
        await d.gateway.accept(
            [SubmitRequest("ok", ["13800138000"]), SubmitRequest("", ["13800138000"])], interface="test"
        )
    assert e2.value.field == "messages[1].text"
    assert await d.gateway.state_counts() == {}


async def test_a_text_over_the_segment_limit_is_refused_with_the_counts(running: Callable[..., Any]) -> None:
    d = await running(MASD_QUEUE__MAX_SEGMENTS="2")
    with pytest.raises(Rejected) as e:
        await d.gateway.send(SubmitRequest("字" * 200, ["13800138000"]), interface="test")
    assert e.value.field == "text" and "3 segments" in e.value.reason and "maximum is 2" in e.value.reason


async def test_a_full_queue_refuses_new_work_with_a_clear_error(running: Callable[..., Any]) -> None:
    d = await running(MASD_QUEUE__MAX_PENDING="3", MASD_CHANNELS__SIM__OPTIONS="{outcomes = {none = 1}}")
    await d.gateway.send(SubmitRequest("x", ["13800000001", "13800000002"]), interface="test")
    with pytest.raises(QueueFull, match="limit is 3"):
        await d.gateway.send(SubmitRequest("x", ["13800000003", "13800000004"]), interface="test")
    assert sum((await d.gateway.state_counts()).values()) == 2


async def test_higher_priority_messages_are_sent_first(running: Callable[..., Any]) -> None:
    d = await running(MASD_CHANNELS__SIM__RATE="20", MASD_CHANNELS__SIM__WINDOW="1")
    low = await d.gateway.accept(
        [SubmitRequest(f"low{i}", [f"1380000{i:04d}"], priority=0) for i in range(10)], interface="t"
    )
    high = await d.gateway.send(SubmitRequest("urgent", ["13900000000"], priority=9), interface="t")
    msg = await wait_final(d, high.message_id)
    assert msg["deliveries"][0]["state"] == "delivered"
    high_sent = msg["deliveries"][0]["submitted_at"]
    sent_before = 0
    for a in low:
        await wait_final(d, a.message_id)
        m = await d.gateway.get_message(a.message_id)
        assert m is not None
        sent_before += m["deliveries"][0]["submitted_at"] < high_sent
    # With a window of one, at most the low message in flight when "urgent" arrived (and one claimed
    # with it) went before it; the other eight waited.
    assert sent_before <= 2


async def test_the_rate_limit_paces_segments(running: Callable[..., Any]) -> None:
    d = await running(MASD_CHANNELS__SIM__RATE="20")
    t0 = trio.current_time()
    accs = await d.gateway.accept(
        [SubmitRequest(f"r{i}", [f"1380000{i:04d}"]) for i in range(60)], interface="t"
    )
    for a in accs:
        await wait_final(d, a.message_id)
    elapsed = trio.current_time() - t0
    # 60 segments at 20/s with a one-second burst: at least two seconds.
    assert elapsed >= 1.9


async def test_receipts_are_stored_and_counted(running: Callable[..., Any]) -> None:
    d = await running()
    acc = await d.gateway.send(SubmitRequest("x", ["13800138000"]), interface="test")
    await wait_final(d, acc.message_id)
    assert d.metrics.receipts.labels("delivered")._value.get() >= 1
    text = d.metrics.render().decode()
    for name in (
        "masd_messages_accepted_total",
        "masd_segments_submitted_total",
        "masd_receipts_total",
        "masd_queue_depth",
    ):
        assert name in text


async def test_logs_carry_message_and_delivery_ids(
    running: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from masd.logging import configure_logging

    configure_logging("info", "json")
    d = await running()
    acc = await d.gateway.send(SubmitRequest("x", ["13800138000"]), interface="test")
    await wait_final(d, acc.message_id)
    await trio.sleep(0.1)
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    accepted = [x for x in lines if x.get("event") == "message accepted"]
    final = [x for x in lines if x.get("event") == "delivery final"]
    assert accepted and accepted[0]["message_id"] == acc.message_id
    assert final and "delivery_id" in final[0]


async def test_recipients_are_routed_to_the_channel_with_the_longest_matching_prefix(tmp_path: Path) -> None:
    cfg = tmp_path / "masd.toml"
    cfg.write_text(
        f"""
[node]
data_dir = "{tmp_path.as_posix()}"
[http]
enabled = false
[socket]
enabled = false
[queue]
poll_interval = 0.05
[channels.unicom]
driver = "sim"
prefixes = ["130", "131", "132"]
[channels.unicom.options]
receipt_delay = 0.01
[channels.unicom_iot]
driver = "sim"
prefixes = ["1320"]
[channels.unicom_iot.options]
receipt_delay = 0.01
[channels.other]
driver = "sim"
[channels.other.options]
receipt_delay = 0.01
"""
    )
    d = Daemon(load_config(cfg, env={}))
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        acc = await d.gateway.send(
            SubmitRequest("路由测试", ["13012345678", "13201234567", "13912345678", "+447700900123"]),
            interface="test",
        )
        msg = await wait_final(d, acc.message_id)
        d.stop()
    routed = {x["recipient"]: x["channel"] for x in msg["deliveries"]}
    assert routed == {
        "13012345678": "unicom",
        "13201234567": "unicom_iot",
        "13912345678": "other",
        "+447700900123": "other",
    }
    assert {x["state"] for x in msg["deliveries"]} == {"delivered"}
