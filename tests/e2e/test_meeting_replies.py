"""How the meeting module answers replies, end to end: a real daemon with the sim channel, replies
injected as a handset would send them, the board read from the store and the texts sent back read from
the core's messages.

A reply read for sure is recorded, kept in the attendee's answers and confirmed with how to correct it;
one that is not records nothing, is kept as awaiting an answer and is asked back with the choices — at
most ``[meeting] ask_back_limit`` times per attendee and meeting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from masd.config import load_config
from masd.daemon import Daemon
from masd.modules.meeting import store as meeting_store
from masd.modules.meeting.service import MeetingSpec
from masd.store import messages as message_store

SERVICE = "10657001"
TITLE = "周一例会"
A, B, C = "13800000001", "13800000002", "13800000003"
CHOICES = "请回复1参加、2不参加、3请假+原因"


@dataclasses.dataclass
class Env:
    daemon: Daemon

    async def meeting(self, *numbers: str, hours: float = 2.0, title: str = TITLE, **spec: Any) -> int:
        svc = self.daemon.meeting
        assert svc is not None
        mid = await svc.create(
            MeetingSpec(
                title=title,
                starts_at=time.time() + hours * 3600,
                numbers=list(numbers),
                checkin_code="",
                **spec,
            )
        )
        await self.board_until(mid, lambda b: b["counts"]["notified"] == len(numbers))
        return mid

    async def reply(self, sender: str, text: str, meeting_id: int | None) -> None:
        to = SERVICE + (f"9{meeting_id}" if meeting_id is not None else "")
        await self.daemon.drivers["sim"].inject_reply(sender, to, text)  # type: ignore[attr-defined]

    async def board(self, meeting_id: int) -> dict[str, Any]:
        b = await self.daemon.db.read(lambda c: meeting_store.board(c, meeting_id))
        assert b is not None
        return b

    async def board_until(self, meeting_id: int, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        with trio.fail_after(10):
            while True:
                board = await self.board(meeting_id)
                if done(board):
                    return board
                await trio.sleep(0.05)

    async def row(self, meeting_id: int, mobile: str) -> dict[str, Any]:
        (row,) = [r for r in (await self.board(meeting_id))["attendees"] if r["mobile"] == mobile]
        return row

    async def texts_to(self, mobile: str) -> list[str]:
        """What the core was given to send to ``mobile``, oldest first."""

        def read(conn: Any) -> list[str]:
            deliveries = message_store.list_deliveries(conn, limit=10_000)
            out = []
            for d in deliveries:
                if d["recipient"] == mobile:
                    msg = message_store.get_message(conn, d["message_id"])
                    assert msg is not None
                    out.append(str(msg["text"]))
            return out

        texts: list[str] = await self.daemon.db.read(read)
        return texts

    async def texts_until(self, mobile: str, n: int) -> list[str]:
        """The texts to ``mobile`` once there are ``n`` (the notice counts)."""
        with trio.fail_after(10):
            while len(texts := await self.texts_to(mobile)) < n:
                await trio.sleep(0.05)
        return texts

    async def settled(self, sender: str, text: str, meeting_id: int | None, texts: int) -> list[str]:
        """Send a reply and wait for what masd sends back: ``texts`` to the sender in all."""
        await self.reply(sender, text, meeting_id)
        return await self.texts_until(sender, texts)


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **extra_env: str) -> AsyncIterator[Env]:
    env = {
        "MASD_NODE__DATA_DIR": str(tmp_path),
        "MASD_HTTP__ENABLED": "false",
        "MASD_SOCKET__ENABLED": "false",
        "MASD_CHANNELS__SIM__OPTIONS": "{receipt_delay = 0.01}",
        "MASD_CHANNELS__SIM__SERVICE_NUMBER": f'"{SERVICE}"',
        **extra_env,
    }
    daemon = Daemon(load_config(None, env=env))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        yield Env(daemon)
        daemon.stop()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with running(tmp_path) as e:
        yield e


# ----- sure: recorded and confirmed ---------------------------------------------------------------------


async def test_a_sure_reply_is_recorded_and_confirmed_with_how_to_correct_it(env: Env) -> None:
    mid = await env.meeting(A)
    texts = await env.settled(A, "參加", mid, 2)  # Traditional
    assert texts[-1] == f"已记录：参加「{TITLE}」。如有误请回复2不参加、3请假+原因。"
    row = await env.row(mid, A)
    assert (row["response"], row["pending_reply"]) == ("attend", None)
    assert [(x["kind"], x["reply"]) for x in row["answers"]] == [("attend", "參加")]


async def test_a_leave_is_confirmed_with_its_reason(env: Env) -> None:
    mid = await env.meeting(A)
    texts = await env.settled(A, "我请假，孩子生病", mid, 2)
    assert texts[-1] == f"已记录：请假（孩子生病）「{TITLE}」。如有误请回复1参加、2不参加。"
    row = await env.row(mid, A)
    assert (row["response"], row["reason"]) == ("leave", "孩子生病")


async def test_a_decline_is_confirmed_with_how_to_attend_instead(env: Env) -> None:
    mid = await env.meeting(A)
    texts = await env.settled(A, "去不了", mid, 2)
    assert texts[-1] == f"已记录：不参加「{TITLE}」。如有误请回复1参加、3请假+原因。"


async def test_a_late_answer_is_confirmed_as_late(env: Env) -> None:
    mid = await env.meeting(A, reply_deadline=time.time() + 1)
    await trio.sleep(max(0.0, (await env.board(mid))["meeting"]["reply_deadline"] - time.time() + 0.1))
    texts = await env.settled(A, "1", mid, 2)
    assert "（已过回复截止时间）" in texts[-1]
    assert (await env.row(mid, A))["answers"][0]["late"] is True


async def test_a_reason_with_braces_is_confirmed_as_recorded(env: Env) -> None:
    mid = await env.meeting(A)
    texts = await env.settled(A, "请假 {孩子} 发烧{0}", mid, 2)
    reason = (await env.row(mid, A))["reason"]
    assert "{0" in reason and texts[-1].startswith(f"已记录：请假（{reason}）")


async def test_a_check_in_on_the_day_is_confirmed_and_kept_with_the_answers(env: Env) -> None:
    mid = await env.meeting(A, organiser="办公室")
    await env.settled(A, "1", mid, 2)
    texts = await env.settled(A, "已簽到", mid, 3)
    assert texts[-1] == f"已签到「{TITLE}」。如有误请联系办公室。"
    row = await env.row(mid, A)
    assert row["checked_in"] is not None and row["response"] == "attend"
    assert [x["kind"] for x in row["answers"]] == ["attend", "checkin"]


async def test_no_confirmation_is_sent_when_confirmations_are_off(tmp_path: Path) -> None:
    async with running(tmp_path, MASD_MEETING__CONFIRM_REPLIES="false") as env:
        mid = await env.meeting(A)
        await env.reply(A, "1", mid)
        await env.board_until(mid, lambda b: b["counts"]["attend"] == 1)
        await trio.sleep(0.3)
        assert len(await env.texts_to(A)) == 1  # the notice


# ----- a changed answer ---------------------------------------------------------------------------------


async def test_a_later_answer_replaces_the_earlier_and_both_are_kept(env: Env) -> None:
    mid = await env.meeting(A)
    await env.settled(A, "2", mid, 2)
    await env.settled(A, "1", mid, 3)
    row = await env.row(mid, A)
    assert row["response"] == "attend"
    assert [(x["kind"], x["reply"], x["via"]) for x in row["answers"]] == [
        ("decline", "2", "sms"),
        ("attend", "1", "sms"),
    ]
    assert row["answers"][0]["at"] <= row["answers"][1]["at"]
    assert all(x["reply_id"] for x in row["answers"])


# ----- unsure: asked back, nothing recorded -------------------------------------------------------------


async def test_an_unsure_reply_records_nothing_and_is_asked_back_with_the_choices(env: Env) -> None:
    mid = await env.meeting(A)
    texts = await env.settled(A, "是否需要带材料？", mid, 2)
    assert (
        texts[-1]
        == f"未能确认您对「{TITLE}」的回复，尚未登记。{CHOICES}（会议编号#{mid}）；到场后回复“签到”签到。"
    )
    board = await env.board(mid)
    (row,) = board["attendees"]
    assert row["response"] is None and row["answers"] == []
    assert row["pending_reply"]["text"] == "是否需要带材料？" and row["pending_reply"]["at"]
    assert row["comment"] == "是否需要带材料？"
    assert (row["ask_backs"], board["counts"]["awaiting"], board["counts"]["no_reply"]) == (1, 1, 1)


async def test_an_answer_after_an_ask_back_clears_the_reply_awaiting_one(env: Env) -> None:
    mid = await env.meeting(A)
    await env.settled(A, "1点开始吗？", mid, 2)
    await env.settled(A, "参加", mid, 3)
    board = await env.board(mid)
    (row,) = board["attendees"]
    assert (row["response"], row["pending_reply"], board["counts"]["awaiting"]) == ("attend", None, 0)
    assert row["comment"] == "1点开始吗？"  # the question stays as the comment


async def test_a_check_in_before_the_day_records_nothing_and_says_when(env: Env) -> None:
    mid = await env.meeting(A, hours=48)
    texts = await env.settled(A, "签到", mid, 2)
    assert texts[-1].startswith("签到仅在会议当天有效，尚未登记。" + CHOICES)
    row = await env.row(mid, A)
    assert row["checked_in"] is None and row["pending_reply"]["text"] == "签到"


async def test_someone_who_keeps_writing_unclear_replies_is_asked_back_at_most_the_limit(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, MASD_MEETING__ASK_BACK_LIMIT="2") as env:
        mid = await env.meeting(A)
        for i, text in enumerate(("？", "在哪", "几点", "嗯嗯"), start=1):
            await env.reply(A, text, mid)
            await env.board_until(
                mid, lambda b, t=text: (b["attendees"][0]["pending_reply"] or {}).get("text") == t
            )
            assert len(await env.texts_to(A)) == 1 + min(i, 2), text
        row = await env.row(mid, A)
        assert (row["ask_backs"], row["response"]) == (2, None)
        # A clear answer is still recorded and confirmed.
        texts = await env.settled(A, "1", mid, 4)
        assert texts[-1].startswith("已记录：参加")


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("", ""),
        ("会" * 1000, "会" * 1000),
        # NUL, which PostgreSQL cannot store, is U+FFFD from the core's reply store on; the other
        # control characters are dropped by the module.
        ("参加\x00\x07\x1b", "参加\ufffd"),
        # Invalid UTF-16 from a handset: the channel's decoder gives U+FFFD for what it could not read
        # (a lone surrogate never reaches the store).
        ("参加\ufffd", "参加\ufffd"),
    ],
    ids=["empty", "1000 characters", "control characters", "undecodable"],
)
async def test_bad_input_is_kept_cleaned_and_asked_back(env: Env, text: str, kept: str) -> None:
    mid = await env.meeting(A)
    texts = await env.settled(A, text, mid, 2)
    assert texts[-1].startswith("未能确认")
    row = await env.row(mid, A)
    assert row["pending_reply"]["text"] == kept and row["comment"] == kept[:500]
    assert row["response"] is None
    events = await env.daemon.db.read(lambda c: meeting_store.meeting_events(c, mid))
    assert all("\x07" not in e["detail"] for e in events)
    await env.settled(A, "1", mid, 3)  # and the next reply is read as usual
    assert (await env.row(mid, A))["response"] == "attend"


# ----- which meeting -------------------------------------------------------------------------------------


async def test_an_unsure_reply_without_the_extension_to_one_open_meeting_is_asked_back(env: Env) -> None:
    mid = await env.meeting(A)
    texts = await env.settled(A, "2楼会议室吗？", None, 2)
    assert CHOICES in texts[-1]
    row = await env.row(mid, A)
    assert row["response"] is None and row["pending_reply"]["text"] == "2楼会议室吗？"


async def test_a_reply_without_a_meeting_code_among_several_open_meetings_asks_which(env: Env) -> None:
    first = await env.meeting(A, title="周一例会")
    second = await env.meeting(A, title="党组会", hours=3)
    texts = await env.settled(A, "不能参加", None, 3)
    assert f"#{first}" in texts[-1] and f"#{second}" in texts[-1] and CHOICES in texts[-1]
    assert "如“2 #" in texts[-1]  # the example is the answer given
    for mid in (first, second):
        row = await env.row(mid, A)
        assert (row["response"], row["pending_reply"], row["ask_backs"]) == (None, None, 1)
    await env.settled(A, f"不能参加 #{second}", None, 4)
    assert (await env.row(second, A))["response"] == "decline"
    assert (await env.row(first, A))["response"] is None


async def test_a_reply_naming_a_meeting_that_is_not_open_is_asked_back_not_guessed(env: Env) -> None:
    mid = await env.meeting(A)
    texts = await env.settled(A, f"1 #{mid + 100}", None, 2)
    assert f"#{mid}" in texts[-1] and "注明会议编号" in texts[-1]
    assert (await env.row(mid, A))["response"] is None
