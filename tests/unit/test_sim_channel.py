"""Specification of the simulated carrier (``masd_adapters.sim``): submit outcomes, timed and weighted
receipts, the journal that makes it a persistent SMSC (replay of unacknowledged receipts after a restart,
torn last line, compaction) and option validation. Delays run on trio's autojump MockClock so the tests
take no real time."""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from masd_adapters.base import InboundReceipt, InboundReply, OutboundSegment, ReceiptStatus
from masd_adapters.sim import SimChannel, read_journal


class FakeEvents:
    """The core's side, recording every call; ``receipt`` can be made to fail or to block."""

    def __init__(self) -> None:
        self.receipts: list[tuple[str, InboundReceipt, float]] = []
        self.replies: list[tuple[str, InboundReply]] = []
        self.links: list[tuple[str, bool]] = []
        self.fail_times = 0  # raise on this many receipt calls first
        self.gate: trio.Event | None = None  # when set, receipt calls wait for it before storing
        self.in_flight = 0
        self.max_in_flight = 0

    async def receipt(self, channel: str, receipt: InboundReceipt) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail_times:
                self.fail_times -= 1
                raise RuntimeError("store unavailable")
            self.receipts.append((channel, receipt, trio.current_time()))
        finally:
            self.in_flight -= 1

    async def reply(self, channel: str, reply: InboundReply) -> None:
        self.replies.append((channel, reply))

    def link_state(self, channel: str, up: bool) -> None:
        self.links.append((channel, up))

    def ids(self) -> list[str]:
        return [r.carrier_id for _, r, _ in self.receipts]


def seg(text: str = "hello", seq: int = 1, total: int = 1) -> OutboundSegment:
    return OutboundSegment(seq=seq, total=total, data_coding=0, short_message=text.encode())


def make(tmp_path: Path, events: FakeEvents, name: str = "sim", **options: Any) -> SimChannel:
    return SimChannel(name, options, events, str(tmp_path))


@asynccontextmanager
async def running(sim: SimChannel) -> AsyncIterator[SimChannel]:
    """Run the channel for the body of the block, then cancel it like a shutdown (or a kill)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        yield sim
        nursery.cancel_scope.cancel()


async def test_receipts_arrive_after_the_delay_with_weighted_outcomes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(
        tmp_path,
        events,
        receipt_delay=[1, 2],
        outcomes={"delivered": 3, "undelivered": 1},
        seed=7,
        journal=False,
    )
    async with running(sim):
        t0 = trio.current_time()
        ids: list[str] = []
        for i in range(400):
            [outcome] = await sim.submit(f"1380000{i:04d}", "106570001", [seg(f"m{i}")])
            assert outcome.error is None and outcome.carrier_id is not None
            ids.append(outcome.carrier_id)
        await trio.sleep(0.999)
        assert events.receipts == []
        await trio.sleep(1.1)

    assert len(set(ids)) == 400
    assert sorted(events.ids()) == sorted(ids)
    assert all(channel == "sim" for channel, _, _ in events.receipts)
    assert all(t0 + 1 <= at <= t0 + 2 for _, _, at in events.receipts)
    by_id = {r.carrier_id: r.status for r in sim.received}
    assert all(receipt.status == by_id[receipt.carrier_id] for _, receipt, _ in events.receipts)
    delivered = sum(r.status is ReceiptStatus.DELIVERED for _, r, _ in events.receipts)
    assert 0.68 < delivered / 400 < 0.82
    assert {r.status for _, r, _ in events.receipts} == {ReceiptStatus.DELIVERED, ReceiptStatus.UNDELIVERED}
    receipt = events.receipts[0][1]
    assert receipt.error_code == (0 if receipt.status is ReceiptStatus.DELIVERED else 1)
    assert f"id:{receipt.carrier_id} " in receipt.raw
    assert events.links == [("sim", True), ("sim", False)]


async def test_the_same_seed_gives_the_same_outcomes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def statuses() -> list[ReceiptStatus | None]:
        sim = make(
            tmp_path, FakeEvents(), outcomes={"delivered": 1, "expired": 1, "none": 1}, seed=42, journal=False
        )
        async with running(sim):
            for i in range(50):
                await sim.submit("13800000000", "1065", [seg(f"m{i}")])
        return [r.status for r in sim.received]

    first = await statuses()
    assert first == await statuses()
    assert None in first and ReceiptStatus.EXPIRED in first


async def test_a_fixed_delay_is_exact(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, receipt_delay=0.25, journal=False)
    async with running(sim):
        t0 = trio.current_time()
        await sim.submit("13800000000", "1065", [seg()])
        await trio.sleep(1)
    [(_, receipt, at)] = events.receipts
    assert at == pytest.approx(t0 + 0.25)
    assert receipt.status is ReceiptStatus.DELIVERED


async def test_reject_prefixes_give_a_permanent_error_for_every_segment(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, reject_prefixes=["+86139", "999"])
    async with running(sim):
        outcomes = await sim.submit("+8613912345678", "1065", [seg("a", 1, 2), seg("b", 2, 2)])
        [ok] = await sim.submit("+8613812345678", "1065", [seg()])
        await trio.sleep(5)
    assert len(outcomes) == 2
    for outcome in outcomes:
        assert outcome.carrier_id is None and outcome.error is not None
        assert (outcome.error.code, outcome.error.name, outcome.error.retriable) == (
            0x0B,
            "ESME_RINVDSTADR",
            False,
        )
    assert ok.carrier_id is not None
    assert events.ids() == [ok.carrier_id]
    assert [r.destination for r in sim.received] == ["+8613812345678"]
    assert sim.journal_path is not None
    assert [e.destination for e in read_journal(sim.journal_path).submitted] == ["+8613812345678"]


async def test_submit_error_rate_one_throttles_every_segment(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, submit_error_rate=1)
    async with running(sim):
        outcomes = await sim.submit("13800000000", "1065", [seg("a", 1, 3), seg("b", 2, 3), seg("c", 3, 3)])
        await trio.sleep(5)
    assert [o.error for o in outcomes] == [outcomes[0].error] * 3
    error = outcomes[0].error
    assert error is not None
    assert (error.code, error.name, error.retriable, error.throttled) == (0x58, "ESME_RTHROTTLED", True, True)
    assert events.receipts == [] and sim.received == []
    assert sim.journal_path is not None
    assert read_journal(sim.journal_path).submitted == []


async def test_reject_rate_one_rejects_permanently(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    sim = make(tmp_path, FakeEvents(), reject_rate=1, journal=False)
    async with running(sim):
        [outcome] = await sim.submit("13800000000", "1065", [seg()])
    assert outcome.error is not None and outcome.error.code == 0x0B and not outcome.error.retriable


async def test_submit_when_not_running_is_a_retriable_link_down(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events)
    [before] = await sim.submit("13800000000", "1065", [seg()])
    async with running(sim):
        assert sim.up
    [after] = await sim.submit("13800000000", "1065", [seg()])
    for outcome in (before, after):
        assert outcome.error is not None
        assert (outcome.error.code, outcome.error.name, outcome.error.retriable) == (0, "LINK_DOWN", True)
    assert not sim.up
    assert events.links == [("sim", True), ("sim", False)]


async def test_journal_replay_redelivers_only_unacknowledged_receipts(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, receipt_delay=10)
    async with running(sim):
        [a] = await sim.submit("13800000001", "1065", [seg("first")])
        await trio.sleep(11)  # a's receipt is delivered and acknowledged
        b, c = await sim.submit("13800000002", "1065", [seg("second", 1, 2), seg("part two", 2, 2)])
        await trio.sleep(1)  # "crash" before b and c are due
    assert events.ids() == [a.carrier_id]

    assert sim.journal_path is not None
    journal = read_journal(sim.journal_path)
    assert [e.carrier_id for e in journal.submitted] == [a.carrier_id, b.carrier_id, c.carrier_id]
    assert journal.acked == {a.carrier_id}
    entry = journal.submitted[2]
    assert (entry.destination, entry.source, entry.segment) == ("13800000002", "1065", seg("part two", 2, 2))

    restarted_events = FakeEvents()
    restarted = make(tmp_path, restarted_events, receipt_delay=10)
    async with running(restarted):
        await trio.sleep(12)
        [d] = await restarted.submit("13800000003", "1065", [seg("third")])
    assert sorted(restarted_events.ids()) == sorted([b.carrier_id, c.carrier_id])
    assert d.carrier_id not in {a.carrier_id, b.carrier_id, c.carrier_id}  # ids stay unique across restarts

    again_events = FakeEvents()
    async with running(make(tmp_path, again_events, receipt_delay=10)):
        await trio.sleep(12)
    assert again_events.ids() == [d.carrier_id]  # d was never acked; b and c were


async def test_a_receipt_is_acknowledged_only_once_the_core_returns(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    events.gate = trio.Event()  # a store that never finishes
    sim = make(tmp_path, events, receipt_delay=1)
    async with running(sim):
        [a] = await sim.submit("13800000000", "1065", [seg()])
        await trio.sleep(5)
        assert events.in_flight == 1
    assert sim.journal_path is not None
    assert read_journal(sim.journal_path).acked == set()

    restarted_events = FakeEvents()
    async with running(make(tmp_path, restarted_events, receipt_delay=1)):
        # Due times are journalled on the wall clock, which MockClock does not move: allow the full delay.
        await trio.sleep(1.5)
    assert restarted_events.ids() == [a.carrier_id]
    assert read_journal(sim.journal_path).acked == {a.carrier_id}


async def test_a_receipt_the_core_failed_to_store_is_sent_again(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    events.fail_times = 2
    sim = make(tmp_path, events, receipt_delay=1)
    async with running(sim):
        [a] = await sim.submit("13800000000", "1065", [seg()])
        await trio.sleep(10)
    assert events.ids() == [a.carrier_id]
    assert sim.journal_path is not None
    assert read_journal(sim.journal_path).acked == {a.carrier_id}


async def test_a_slow_store_gets_bounded_concurrent_receipts(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    events.gate = trio.Event()
    sim = make(tmp_path, events, receipt_delay=1, receipt_concurrency=8, journal=False)
    async with running(sim):
        for i in range(100):
            await sim.submit("13800000000", "1065", [seg(f"m{i}")])
        await trio.sleep(2)
        assert events.in_flight == 8
        events.gate.set()
        await trio.sleep(1)
    assert events.max_in_flight == 8
    assert len(set(events.ids())) == 100


async def test_a_torn_last_journal_line_is_tolerated(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    sim = make(tmp_path, FakeEvents(), receipt_delay=10)
    async with running(sim):
        [a] = await sim.submit("13800000000", "1065", [seg()])
    assert sim.journal_path is not None and a.carrier_id is not None
    with open(sim.journal_path, "ab") as f:  # the ack for a, cut off by a crash mid-write
        f.write(b'{"t":"ack","id":"' + a.carrier_id[:5].encode())

    journal = read_journal(sim.journal_path)
    assert journal.torn
    assert [e.carrier_id for e in journal.submitted] == [a.carrier_id] and journal.acked == set()

    events = FakeEvents()
    async with running(make(tmp_path, events, receipt_delay=10)):
        await trio.sleep(11)
    assert events.ids() == [a.carrier_id]
    journal = read_journal(sim.journal_path)
    assert not journal.torn
    assert journal.acked == {a.carrier_id}
    assert journal.valid_bytes == os.path.getsize(sim.journal_path)


def test_a_corrupt_line_inside_the_journal_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "sim-x.journal"
    path.write_bytes(b'{"t":"ack","id":"1"}\nnot json\n{"t":"ack","id":"2"}\n')
    with pytest.raises(ValueError, match=r"sim-x.journal:2"):
        read_journal(path)


async def test_outcome_none_never_sends_a_receipt(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, outcomes={"none": 1}, receipt_delay=1)
    async with running(sim):
        [a] = await sim.submit("13800000000", "1065", [seg()])
        await trio.sleep(100)
    assert a.carrier_id is not None and events.receipts == []
    assert [r.status for r in sim.received] == [None]
    assert sim.journal_path is not None
    [entry] = read_journal(sim.journal_path).submitted
    assert entry.status is None

    restarted_events = FakeEvents()
    async with running(make(tmp_path, restarted_events, outcomes={"none": 1})):
        await trio.sleep(100)
    assert restarted_events.receipts == []


async def test_one_journal_line_per_segment_with_every_field(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    udh = bytes([5, 0, 3, 0x2A, 2, 1])
    segments = [
        OutboundSegment(
            seq=1, total=2, data_coding=8, short_message=udh + "你好".encode("utf-16-be"), udh=True
        ),
        OutboundSegment(seq=2, total=2, data_coding=0, short_message=b"tail", sar=(7, 2, 2)),
    ]
    payload = OutboundSegment(seq=1, total=1, data_coding=0, short_message=b"", message_payload=b"x" * 300)
    sim = make(tmp_path, FakeEvents(), outcomes={"rejected": 1}, journal=True)
    async with running(sim):
        await sim.submit("13800000000", "1065123", segments)
        await sim.submit("13800000000", "1065123", [payload])
    assert sim.journal_path is not None
    lines = [json.loads(line) for line in Path(sim.journal_path).read_text().splitlines()]
    subs = [line for line in lines if line["t"] == "sub"]
    assert len(subs) == 3
    assert subs[0]["udh"] is True and subs[0]["dc"] == 8 and subs[0]["sm"] == segments[0].short_message.hex()
    assert subs[1]["sar"] == [7, 2, 2] and subs[1]["seq"] == 2 and subs[1]["total"] == 2
    assert subs[2]["mp"] == payload.message_payload.hex()  # type: ignore[union-attr]
    assert {s["st"] for s in subs} == {"rejected"}
    assert all(s["dst"] == "13800000000" and s["src"] == "1065123" and s["due"] >= s["ts"] for s in subs)
    journal = read_journal(sim.journal_path)
    assert [e.segment for e in journal.submitted] == [*segments, payload]
    assert journal.submitted[0].body == "你好".encode("utf-16-be")  # the UDH is not part of the body


async def test_duplicates_count_resends_even_with_a_new_concat_reference(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    def parts(ref: int) -> list[OutboundSegment]:
        return [
            OutboundSegment(1, 2, 0, bytes([5, 0, 3, ref, 2, 1]) + b"one", udh=True),
            OutboundSegment(2, 2, 0, bytes([5, 0, 3, ref, 2, 2]) + b"two", udh=True),
        ]

    sim = make(tmp_path, FakeEvents())
    async with running(sim):
        await sim.submit("13800000000", "1065", parts(1))
        await sim.submit("13800000000", "1065", parts(2))  # resent after a crash, new reference
        await sim.submit("13800000001", "1065", parts(1))  # another recipient: not a duplicate
    assert sim.journal_path is not None
    assert read_journal(sim.journal_path).duplicates() == 2


async def test_a_large_journal_is_compacted_on_start(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    sim = make(tmp_path, FakeEvents(), receipt_delay=[1, 50], outcomes={"delivered": 2, "none": 1}, seed=3)
    async with running(sim):
        for i in range(60):
            await sim.submit("13800000000", "1065", [seg(f"m{i}")])
        await trio.sleep(25)
    assert sim.journal_path is not None
    before = read_journal(sim.journal_path)
    owed = {e.carrier_id for e in before.unacked()}
    assert 0 < len(owed) < 60 and before.acked

    events = FakeEvents()
    restarted = make(tmp_path, events, receipt_delay=1)
    restarted.compact_threshold = 0
    async with running(restarted):
        pass
    after = read_journal(sim.journal_path)
    assert {e.carrier_id for e in after.submitted} == owed and after.acked == set()
    assert after.compacted_submitted + len(after.submitted) == 60
    assert after.compacted_acked == len(before.acked)
    assert not os.path.exists(sim.journal_path + ".compact")

    async with running(make(tmp_path, events, receipt_delay=1)):
        await trio.sleep(60)
    assert set(events.ids()) == owed


async def test_a_journal_loaded_on_a_worker_thread_replays_too(tmp_path: Path) -> None:
    # Real clock on purpose: under MockClock's autojump a pending thread lets virtual time leap ahead.
    sim = make(tmp_path, FakeEvents(), receipt_delay=60)
    async with running(sim):
        [a] = await sim.submit("13800000000", "1065", [seg()])
    assert sim.journal_path is not None
    with open(sim.journal_path, "r+b") as f:  # make it due now, as if the restart came much later
        line = json.loads(f.readline())
        line["due"] = line["ts"]
        f.seek(0)
        f.truncate()
        f.write(json.dumps(line).encode() + b"\n")

    events = FakeEvents()
    restarted = make(tmp_path, events, receipt_delay=60)
    restarted.inline_load_limit = 0
    with trio.fail_after(5):
        async with running(restarted):
            while not events.receipts:
                await trio.sleep(0.01)
    assert events.ids() == [a.carrier_id]


async def test_drain_refuses_new_submits_and_finishes_those_in_flight(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    sim = make(tmp_path, FakeEvents(), submit_latency=1, journal=False)
    results: list[str | None] = []

    async def submit_one() -> None:
        [outcome] = await sim.submit("13800000000", "1065", [seg()])
        results.append(outcome.carrier_id)

    async with running(sim), trio.open_nursery() as nursery:
        nursery.start_soon(submit_one)
        await trio.sleep(0.5)
        await sim.drain()
        assert len(results) == 1  # drain returned only after the in-flight submit finished
        [refused] = await sim.submit("13800000000", "1065", [seg()])
    assert results and results[0] is not None
    assert refused.error is not None and refused.error.name == "LINK_DOWN"


async def test_inject_reply_reaches_the_core(tmp_path: Path) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, journal=False)
    await sim.inject_reply("13800000000", "10657000112", "yes")
    [(channel, reply)] = events.replies
    assert (channel, reply.sender, reply.destination, reply.text) == (
        "sim",
        "13800000000",
        "10657000112",
        "yes",
    )


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"receipt_delay": -1}, "receipt_delay"),
        ({"receipt_delay": [2, 1]}, "receipt_delay"),
        ({"receipt_delay": [1]}, "receipt_delay"),
        ({"receipt_delay": "fast"}, "receipt_delay"),
        ({"receipt_delay": math.inf}, "receipt_delay"),
        ({"outcomes": {"delivered": 1, "accepted": 1}}, "outcomes"),
        ({"outcomes": {"delivered": -1}}, "outcomes"),
        ({"outcomes": {"delivered": 0}}, "outcomes"),
        ({"outcomes": {}}, "outcomes"),
        ({"outcomes": "delivered"}, "outcomes"),
        ({"submit_error_rate": 1.5}, "submit_error_rate"),
        ({"submit_error_rate": True}, "submit_error_rate"),
        ({"reject_rate": -0.1}, "reject_rate"),
        ({"submit_error_rate": 0.6, "reject_rate": 0.6}, "reject_rate"),
        ({"reject_prefixes": "+86139"}, "reject_prefixes"),
        ({"reject_prefixes": [""]}, "reject_prefixes"),
        ({"submit_latency": -0.5}, "submit_latency"),
        ({"seed": "abc"}, "seed"),
        ({"journal": "yes"}, "journal"),
        ({"keep_record": 1}, "keep_record"),
        ({"receipt_concurrency": 0}, "receipt_concurrency"),
        ({"recipt_delay": 1}, "recipt_delay"),
    ],
)
def test_invalid_options_raise_value_error_naming_the_option(
    tmp_path: Path, options: Mapping[str, Any], option: str
) -> None:
    with pytest.raises(ValueError, match=rf"\b{option}=") as info:
        SimChannel("sim", options, FakeEvents(), str(tmp_path))
    assert repr(options[option]) in str(info.value)


def test_valid_options_are_accepted(tmp_path: Path) -> None:
    sim = SimChannel(
        "a/b",
        {
            "receipt_delay": 0,
            "outcomes": {"DELIVERED": 1, "expired": 0.5, "none": 0},
            "submit_error_rate": 0.1,
            "reject_rate": 0.2,
            "reject_prefixes": ["999"],
            "submit_latency": 0.01,
            "seed": 1,
            "journal": True,
            "keep_record": False,
            "receipt_concurrency": 1,
        },
        FakeEvents(),
        str(tmp_path),
    )
    assert sim.journal_path == os.path.join(str(tmp_path), "sim-a_b.journal")
