"""Specification of the simulated voice network (``masd_adapters.voice_sim``): scripted and weighted call
outcomes, the keypress handed to the core as a reply to the number the call came from, one receipt per
call with a SIP code, the journal of what each callee heard, replay after a restart, and option
validation. Calls run on trio's autojump MockClock, and the simulator's wall clock is made to follow it,
so the tests take no real time."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from masd_adapters.base import InboundReceipt, InboundReply, OutboundSegment, ReceiptStatus
from masd_adapters.voice import CallOutcome
from masd_adapters.voice_sim import CallPlan, VoiceSimChannel, parse_plan, read_call_journal

SOURCE = "106570001" + "4207"  # service number + extension
WALL_START = 1_700_000_000.0
NOTICE = "请于明天上午九点到三楼会议室开会。参加请按1，不参加请按2。"


class FakeEvents:
    """The core's side, recording every call in order; it can be made to fail the first few stores."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, InboundReceipt | InboundReply, float]] = []
        self.links: list[tuple[str, bool]] = []
        self.fail_times = 0

    def _fail(self) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("store unavailable")

    async def receipt(self, channel: str, receipt: InboundReceipt) -> None:
        self._fail()
        self.log.append(("receipt", channel, receipt, trio.current_time()))

    async def reply(self, channel: str, reply: InboundReply) -> None:
        self._fail()
        self.log.append(("reply", channel, reply, trio.current_time()))

    def link_state(self, channel: str, up: bool) -> None:
        self.links.append((channel, up))

    @property
    def receipts(self) -> list[InboundReceipt]:
        return [e for kind, _, e, _ in self.log if kind == "receipt" and isinstance(e, InboundReceipt)]

    @property
    def replies(self) -> list[InboundReply]:
        return [e for kind, _, e, _ in self.log if kind == "reply" and isinstance(e, InboundReply)]


def text(body: str = NOTICE) -> list[OutboundSegment]:
    """A voice delivery as the dispatcher sends it: one segment, the whole text in UTF-8."""
    return [OutboundSegment(seq=1, total=1, data_coding=8, short_message=body.encode("utf-8"))]


def make(tmp_path: Path, events: FakeEvents, name: str = "voice", **options: Any) -> VoiceSimChannel:
    options.setdefault("time_scale", 0)
    sim = VoiceSimChannel(name, options, events, str(tmp_path))
    # Call times follow trio's (mock) clock, so that timing can be asserted and restarts replayed.
    sim.wall_clock = lambda: WALL_START + trio.current_time()
    return sim


@asynccontextmanager
async def running(sim: VoiceSimChannel) -> AsyncIterator[VoiceSimChannel]:
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        yield sim
        nursery.cancel_scope.cancel()


async def call(sim: VoiceSimChannel, number: str, body: str = NOTICE) -> str:
    [outcome] = await sim.submit(number, SOURCE, text(body))
    assert outcome.error is None and outcome.carrier_id is not None
    return outcome.carrier_id


# -- outcomes ------------------------------------------------------------------------------------------


async def test_an_answered_call_with_key_1_sends_the_key_as_a_reply_then_a_delivered_receipt(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, script={"13800000001": "answer:1"})
    async with running(sim):
        call_id = await call(sim, "13800000001")
        await trio.sleep(1)
    assert [kind for kind, *_ in events.log] == ["reply", "receipt"]
    [reply] = events.replies
    assert (reply.sender, reply.destination, reply.text) == ("13800000001", SOURCE, "1")
    [receipt] = events.receipts
    assert (receipt.carrier_id, receipt.status, receipt.error_code) == (call_id, ReceiptStatus.DELIVERED, 0)
    assert "outcome:answered" in receipt.raw and "key:1" in receipt.raw


async def test_the_keypress_reply_goes_to_the_number_the_call_came_from(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, outcomes={"answer:2": 1})
    async with running(sim):
        await sim.submit("13800000009", "1065700017", text())
        await trio.sleep(1)
    [reply] = events.replies
    assert reply.destination == "1065700017" and reply.text == "2"


async def test_an_answered_call_without_a_key_is_delivered_and_sends_no_reply(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, script={"13800000002": "answer"})
    async with running(sim):
        await call(sim, "13800000002")
        await trio.sleep(1)
    assert events.replies == []
    [receipt] = events.receipts
    assert receipt.status is ReceiptStatus.DELIVERED and "key:none" in receipt.raw


@pytest.mark.parametrize(
    ("outcome", "code", "words"),
    [
        ("no-answer", 480, "nobody answered"),
        ("busy", 486, "busy"),
        ("failed", 503, "could not connect"),
        ("failed:404", 404, "not in service"),
    ],
)
async def test_an_unanswered_call_is_undelivered_with_its_sip_code_and_a_readable_reason(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, outcome: str, code: int, words: str
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, script={"13800000003": outcome})
    async with running(sim):
        call_id = await call(sim, "13800000003")
        await trio.sleep(1)
    assert events.replies == []
    [receipt] = events.receipts
    assert (receipt.carrier_id, receipt.status, receipt.error_code) == (
        call_id,
        ReceiptStatus.UNDELIVERED,
        code,
    )
    assert words in receipt.raw and f"sip:{code}" in receipt.raw


async def test_every_call_gets_exactly_one_receipt(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, outcomes={"answer:1": 1, "answer": 1, "no-answer": 1, "busy": 1}, seed=3)
    async with running(sim):
        ids = [await call(sim, f"138000{i:05d}") for i in range(20)]
        await trio.sleep(1)
    assert sorted(r.carrier_id for r in events.receipts) == sorted(ids)
    assert len(set(ids)) == 20


async def test_the_script_matches_a_number_however_its_country_code_is_written(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, script={"+86 138-0000-0004": "busy"})
    async with running(sim):
        await call(sim, "13800000004")
        await trio.sleep(1)
    assert [r.error_code for r in events.receipts] == [486]


async def test_set_script_changes_what_later_calls_to_a_number_do(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, script={"13800000005": "no-answer"})
    async with running(sim):
        await call(sim, "13800000005")
        await trio.sleep(1)
        sim.set_script("13800000005", "answer:2")
        await call(sim, "13800000005")
        await trio.sleep(1)
        sim.set_script("13800000005", None)  # back to the default mix: answer:1
        await call(sim, "13800000005")
        await trio.sleep(1)
    assert [r.error_code for r in events.receipts] == [480, 0, 0]
    assert [r.text for r in events.replies] == ["2", "1"]


def test_set_script_refuses_an_unknown_outcome(tmp_path: Path) -> None:
    sim = make(tmp_path, FakeEvents())
    with pytest.raises(ValueError, match="answer:<key>"):
        sim.set_script("13800000005", "answer:x")


async def test_the_same_seed_gives_the_same_mix(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def outcomes() -> list[CallOutcome]:
        sim = make(
            tmp_path, FakeEvents(), outcomes={"answer:1": 1, "busy": 1}, seed=11, journal=False, lines=100
        )
        async with running(sim):
            for i in range(40):
                await call(sim, f"139000{i:05d}")
        return [c.outcome for c in sim.calls]

    first = await outcomes()
    assert first == await outcomes()
    assert set(first) == {CallOutcome.ANSWERED, CallOutcome.BUSY}


# -- timing ----------------------------------------------------------------------------------------------


async def test_the_key_comes_after_ringing_reading_and_the_key_delay_scaled(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    body = "x" * 40  # 10 s of reading at 4 characters a second
    sim = make(
        tmp_path,
        events,
        script={"13800000006": "answer:1"},
        ring_seconds=5,
        chars_per_second=4,
        key_seconds=2,
        time_scale=0.5,
    )
    async with running(sim):
        t0 = trio.current_time()
        await call(sim, "13800000006", body)
        await trio.sleep(60)
    (_, _, _, reply_at), (_, _, _, receipt_at) = events.log
    assert reply_at - t0 == pytest.approx((5 + 10 + 2) * 0.5)
    assert receipt_at == pytest.approx(reply_at)


async def test_an_unanswered_call_ends_after_the_ring_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, script={"13800000007": "no-answer"}, ring_timeout=30, time_scale=1)
    async with running(sim):
        t0 = trio.current_time()
        await call(sim, "13800000007")
        await trio.sleep(29.9)
        assert events.log == []
        await trio.sleep(0.2)
    [(_, _, _, at)] = events.log
    assert at - t0 == pytest.approx(30)


async def test_calls_beyond_the_lines_are_refused_as_retriable_and_throttled(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, lines=2, script={"13800000008": "no-answer"}, ring_timeout=30, time_scale=1)
    async with running(sim):
        await call(sim, "13800000008")
        await call(sim, "13800000008")
        [refused] = await sim.submit("13800000008", SOURCE, text())
        assert sim.active_calls == 2
        await trio.sleep(31)
        assert sim.active_calls == 0
        await call(sim, "13800000008")
    assert refused.carrier_id is None and refused.error is not None
    assert (refused.error.name, refused.error.retriable, refused.error.throttled) == (
        "SIM_ALL_LINES_BUSY",
        True,
        True,
    )


# -- submit errors ---------------------------------------------------------------------------------------


async def test_submit_when_not_running_is_a_retriable_link_down(tmp_path: Path) -> None:
    sim = make(tmp_path, FakeEvents())
    [outcome] = await sim.submit("13800000000", SOURCE, text())
    assert outcome.error is not None and outcome.error.name == "LINK_DOWN" and outcome.error.retriable


async def test_after_drain_new_calls_are_refused_as_link_down(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    sim = make(tmp_path, FakeEvents())
    async with running(sim):
        await sim.drain()
        [outcome] = await sim.submit("13800000000", SOURCE, text())
    assert outcome.error is not None and outcome.error.name == "LINK_DOWN"


async def test_a_number_that_cannot_be_dialled_is_refused_permanently(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    sim = make(tmp_path, FakeEvents())
    async with running(sim):
        [outcome] = await sim.submit("not-a-number", SOURCE, text())
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.name, outcome.error.retriable) == (
        484,
        "SIM_INVALID_NUMBER",
        False,
    )
    assert sim.calls == []


@pytest.mark.parametrize(
    "segments",
    [
        [
            OutboundSegment(1, 2, data_coding=8, short_message="上半".encode()),
            OutboundSegment(2, 2, data_coding=8, short_message="下半".encode()),
        ],
        [OutboundSegment(1, 1, data_coding=8, short_message=b"\xff\xfe")],
        [OutboundSegment(1, 1, data_coding=8, short_message=b"   ")],
    ],
    ids=["split", "not-utf8", "blank"],
)
async def test_anything_but_one_segment_of_readable_utf8_is_refused_permanently(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, segments: list[OutboundSegment]
) -> None:
    sim = make(tmp_path, FakeEvents())
    async with running(sim):
        outcomes = await sim.submit("13800000000", SOURCE, segments)
    assert len(outcomes) == len(segments)
    for outcome in outcomes:
        assert outcome.error is not None and outcome.error.name == "SIM_NOT_A_VOICE_TEXT"
        assert not outcome.error.retriable


async def test_a_keypress_or_receipt_the_core_cannot_store_is_offered_again(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    events.fail_times = 3
    sim = make(tmp_path, events, script={"13800000001": "answer:1"})
    async with running(sim):
        await call(sim, "13800000001")
        await trio.sleep(60)
    assert [kind for kind, *_ in events.log] == ["reply", "receipt"]


# -- journal ---------------------------------------------------------------------------------------------


async def test_the_journal_says_what_each_callee_heard_and_did(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    sim = make(tmp_path, FakeEvents(), script={"13800000001": "answer:1", "13800000002": "no-answer"})
    async with running(sim):
        answered = await call(sim, "13800000001")
        await call(sim, "13800000002")
        await trio.sleep(1)
    assert sim.journal_path is not None
    journal = read_call_journal(sim.journal_path)
    [a] = journal.calls_to("13800000001")
    [b] = journal.calls_to("13800000002")
    assert (a.call_id, a.source, a.heard, a.outcome, a.key) == (
        answered,
        SOURCE,
        NOTICE,
        CallOutcome.ANSWERED,
        "1",
    )
    assert (b.heard, b.outcome, b.key) == (None, CallOutcome.NO_ANSWER, None)
    assert journal.keyed == {answered} and journal.ended == {a.call_id, b.call_id}
    assert journal.open_calls() == []


async def test_the_journal_keeps_chinese_text_readable(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    sim = make(tmp_path, FakeEvents())
    async with running(sim):
        await call(sim, "13800000001")
    assert sim.journal_path is not None
    first = json.loads(Path(sim.journal_path).read_text("utf-8").splitlines()[0])
    assert first["text"] == NOTICE and first["to"] == "13800000001" and first["plan"] == "answer:1"


async def test_a_restart_finishes_calls_whose_keypress_and_receipt_were_never_stored(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    script = {"13800000001": "answer:1"}
    first = make(tmp_path, events, script=script, ring_seconds=5, time_scale=1)
    async with running(first):
        call_id = await call(first, "13800000001")
        await trio.sleep(1)  # still ringing when the daemon dies
    assert events.log == []

    again = make(tmp_path, events, script=script, ring_seconds=5, time_scale=1)
    async with running(again):
        await trio.sleep(120)
    assert [(kind, getattr(e, "carrier_id", None)) for kind, _, e, _ in events.log] == [
        ("reply", None),
        ("receipt", call_id),
    ]
    assert again.journal_path is not None
    assert read_call_journal(again.journal_path).open_calls() == []


async def test_a_restart_after_the_keypress_was_stored_sends_only_the_receipt(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    first = make(tmp_path, events, script={"13800000001": "answer:1"})
    journal_path = first.journal_path
    assert journal_path is not None
    async with running(first):
        call_id = await call(first, "13800000001")
        await trio.sleep(1)
    # Make it look as if the daemon died after the keypress was stored and before the receipt was.
    lines = Path(journal_path).read_text("utf-8").splitlines(keepends=True)
    assert [json.loads(line)["t"] for line in lines] == ["call", "key", "end"]
    Path(journal_path).write_text("".join(lines[:2]), "utf-8")

    events2 = FakeEvents()
    again = make(tmp_path, events2)
    async with running(again):
        await trio.sleep(1)
    assert [(kind, getattr(e, "carrier_id", None)) for kind, _, e, _ in events2.log] == [("receipt", call_id)]


async def test_without_a_journal_an_unfinished_call_is_finished_when_the_same_driver_runs_again(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events, journal=False, script={"13800000002": "no-answer"}, time_scale=1)
    async with running(sim):
        await call(sim, "13800000002")
        await trio.sleep(1)
    async with running(sim):
        await trio.sleep(60)
    assert [r.error_code for r in events.receipts] == [480]
    assert not list(tmp_path.iterdir())


async def test_a_torn_last_journal_line_is_dropped_on_start(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    sim = make(tmp_path, events)
    assert sim.journal_path is not None
    Path(sim.journal_path).write_bytes(b'{"t":"call","id":"ab')
    async with running(sim):
        await call(sim, "13800000001")
        await trio.sleep(1)
    journal = read_call_journal(sim.journal_path)
    assert not journal.torn and len(journal.calls) == 1 and len(events.receipts) == 1


async def test_a_large_journal_is_compacted_to_its_open_calls_on_start(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = FakeEvents()
    script = {"13800000001": "answer", "13800000002": "no-answer"}
    sim = make(tmp_path, events, script=script, ring_timeout=30, time_scale=1)
    async with running(sim):
        for _ in range(5):
            await call(sim, "13800000001")
        pending = await call(sim, "13800000002")
        await trio.sleep(20)  # the answered calls ended; the unanswered one still rings
    again = make(tmp_path, events, script=script, ring_timeout=30, time_scale=1)
    again.compact_threshold = 0
    async with running(again):
        assert again.journal_path is not None
        journal = read_call_journal(again.journal_path)
        assert journal.compacted == 5 and [c.call_id for c in journal.calls] == [pending]
        await trio.sleep(20)
    assert events.receipts[-1].carrier_id == pending


# -- options and pure functions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"script": {"13800000001": "maybe"}}, "script"),
        ({"script": ["13800000001"]}, "script"),
        ({"outcomes": {"answer:1": -1}}, "outcomes"),
        ({"outcomes": {"answer:1": 0}}, "outcomes"),
        ({"outcomes": {"hold": 1}}, "outcomes"),
        ({"ring_seconds": [5, 1]}, "ring_seconds"),
        ({"ring_timeout": 0}, "ring_timeout"),
        ({"chars_per_second": True}, "chars_per_second"),
        ({"time_scale": -1}, "time_scale"),
        ({"lines": 0}, "lines"),
        ({"seed": "x"}, "seed"),
        ({"journal": "yes"}, "journal"),
        ({"speech": 1}, "speech"),
        ({"speech_voice": "cmn; rm"}, "speech_voice"),
        ({"colour": "red"}, "unknown option colour"),
    ],
)
def test_an_invalid_option_is_refused_naming_it(tmp_path: Path, options: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words) as info:
        VoiceSimChannel("voice", options, FakeEvents(), str(tmp_path))
    assert "voice_sim channel 'voice'" in str(info.value)


@pytest.mark.parametrize(
    ("written", "plan"),
    [
        ("answer:1", CallPlan(CallOutcome.ANSWERED, key="1")),
        ("Answer:#", CallPlan(CallOutcome.ANSWERED, key="#")),
        ("answer", CallPlan(CallOutcome.ANSWERED)),
        ("no-answer", CallPlan(CallOutcome.NO_ANSWER, code=480)),
        ("busy", CallPlan(CallOutcome.BUSY, code=486)),
        ("failed", CallPlan(CallOutcome.FAILED, code=503)),
        ("failed:404", CallPlan(CallOutcome.FAILED, code=404)),
    ],
)
def test_outcomes_are_written_as_short_words(written: str, plan: CallPlan) -> None:
    assert parse_plan(written) == plan
    assert parse_plan(str(plan)) == plan


@pytest.mark.parametrize("written", ["answer:12", "answer:", "busy:1", "failed:200", "ring", ""])
def test_an_unknown_outcome_is_refused(written: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_plan(written)
