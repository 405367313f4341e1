"""A whole meeting day (会信通) over real SMPP against masd's simulated SMSC, with calls through the
simulated voice network: 50 attendees in three departments, replies of every kind, silent attendees
reminded by a second SMS and then called, and a board that ends exactly as the script implies."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from masd.config import load_config
from masd.daemon import Daemon
from masd.modules.contacts import store as contacts
from masd.modules.meeting import store as meeting_store
from masd.modules.meeting.service import MeetingSpec
from masd_adapters.smpp.smsc import Smsc, SmscConfig

SERVICE = "1065700012345"
DEPARTMENTS = ("市政府/办公室", "市政府/应急管理局", "市政府/水利局")
STRANGER = "13999999999"

CONFIG = """
[node]
name = "meeting-day"
data_dir = "{data}"
[http]
enabled = false
[socket]
enabled = false
[queue]
poll_interval = 0.05
claim_linger_ms = 0
[meeting]
signature = "【市政府办公室】"
[channels.smpp]
driver = "smpp"
rate = 2000
service_number = "{service}"
[channels.smpp.options]
host = "127.0.0.1"
port = {port}
system_id = "masd"
password = "secret"
reconnect_min = 0.1
reconnect_max = 0.5
[channels.voice]
driver = "voice_sim"
kind = "voice"
service_number = "{service}"
[channels.voice.options]
time_scale = 0.01
ring_seconds = [1, 2]
outcomes = {{"no-answer" = 1}}
script = {script}
"""


def person(i: int) -> str:
    return f"1380000{i:04d}"


# The silent ones' phones, when masd calls them (everyone else not listed lets it ring out).
CALL_SCRIPT = {
    **{person(i): "answer:1" for i in range(12, 22)},
    **{person(i): "answer:2" for i in range(22, 27)},
    **{person(i): "busy" for i in range(37, 42)},
    **{person(i): "answer" for i in range(42, 51)},
}


@dataclass
class Day:
    daemon: Daemon
    smsc: Smsc
    record: Path

    async def reply(self, sender: str, to: str, text: str) -> None:
        await self.smsc.inject_mo(sender=sender, destination=to, text=text)

    async def board(self, meeting_id: int) -> dict[str, Any]:
        b = await self.daemon.db.read(lambda c: meeting_store.board(c, meeting_id))
        assert b is not None
        return b

    def texts_to(self, number: str) -> list[str]:
        out = []
        for line in self.record.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            if r["destination"] == number:
                body = bytes.fromhex(r["body"])
                out.append(body.decode("utf-16-be") if r["data_coding"] == 8 else body.decode("latin-1"))
        return out


@pytest.fixture
async def day(tmp_path: Path) -> AsyncIterator[Day]:
    record = tmp_path / "smsc.jsonl"
    smsc = Smsc(
        SmscConfig(
            port=0, accounts={"masd": "secret"}, receipt_delay=0.02, control=False, record=record, seed=1
        )
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(smsc.serve)
        cfg_path = tmp_path / "masd.toml"
        script = "{" + ", ".join(f'"{k}" = "{v}"' for k, v in CALL_SCRIPT.items()) + "}"
        cfg_path.write_text(
            CONFIG.format(data=tmp_path.as_posix(), port=smsc.port, service=SERVICE, script=script),
            encoding="utf-8",
        )
        daemon = Daemon(load_config(cfg_path, env={}))

        def address_book(conn: Any) -> None:
            now = time.time()
            for i in range(1, 52):
                # 1–17, 18–34, 35–50 in the three departments; 51 is in the book but not invited to A.
                dept = DEPARTMENTS[min((i - 1) // 17, 2)] if i <= 50 else "市政府/财政局"
                contacts.add_person(conn, name=f"员工{i:02d}", mobile=person(i), department=dept, now=now)

        await nursery.start(daemon.run)
        await daemon.db.write(address_book)
        with trio.fail_after(10):
            while not daemon.drivers["smpp"].up:
                await trio.sleep(0.02)
        yield Day(daemon, smsc, record)
        daemon.stop()
        nursery.cancel_scope.cancel()


async def wait_for(what: str, check: Any, timeout: float = 40.0) -> None:
    with trio.move_on_after(timeout):
        while not await check():
            await trio.sleep(0.1)
        return
    raise AssertionError(f"waited {timeout} s for {what}")


async def test_a_whole_meeting_day(day: Day) -> None:
    svc = day.daemon.meeting
    assert svc is not None
    now = time.time()
    a = await svc.create(
        MeetingSpec(
            title="防汛工作部署会",
            starts_at=now + 90,
            ends_at=now + 3690,
            place="三楼第一会议室",
            organiser="办公室",
            mode="sms+voice",
            departments=list(DEPARTMENTS),
            reply_deadline=now + 80,
            second_sms_after=5,
            call_after=3,
            remind_before=84,
            checkin_code="",
        )
    )
    b = await svc.create(
        MeetingSpec(
            title="党组会",
            starts_at=now + 120,
            numbers=[person(10)],
            second_sms_after=None,
            remind_before=None,
        )
    )
    c = await svc.create(
        MeetingSpec(
            title="安全检查通报会",
            starts_at=now + 150,
            people=[person(51)],
            reply_deadline=now + 1,
            second_sms_after=None,
            remind_before=None,
        )
    )

    async def notified() -> bool:
        counts = [(await day.board(x))["counts"] for x in (a, b, c)]
        return [k["notified"] for k in counts] == [50, 1, 1]

    await wait_for("notices", notified)
    ext_a = SERVICE + "9" + str(a)
    for sender, text in (
        (person(1), "1"),
        (person(2), "１"),  # full-width
        (person(3), "2"),
        (person(4), "3 孩子发烧"),
        (person(5), "请假：出差在外"),
        (person(6), "不参加"),
        (person(7), "yes"),
        (person(8), "Y"),
        (person(9), "会议室在哪？"),  # nonsense: a comment, answered with the help text
        (person(11), "签到"),
        (STRANGER, "1"),
    ):
        await day.reply(sender, ext_a, text)
    # The carrier dropped the extension, and person 10 has two open meetings: masd asks back.
    await day.reply(person(10), SERVICE, "1")

    async def asked_back() -> bool:
        return any(f"#{a}" in t and f"#{b}" in t for t in day.texts_to(person(10)))

    await wait_for("ask back", asked_back)
    await day.reply(person(10), SERVICE, f"1 #{a}")
    await trio.sleep(max(0.0, now + 1.5 - time.time()))
    await day.reply(person(51), SERVICE, "1")  # after C's deadline: counts, marked late

    expected_attend = {1, 2, 7, 8, 10, *range(12, 22)}
    expected_decline = {3, 6, *range(22, 27)}
    expected_leave = {4: "孩子发烧", 5: "出差在外"}
    silent_after_sms = {9, *range(12, 51)}  # not answered when the second SMS falls due (11 checked in)

    async def settled() -> bool:
        rows = {r["mobile"]: r for r in (await day.board(a))["attendees"]}
        called = [rows[person(i)] for i in silent_after_sms]
        attending = [rows[person(i)] for i in expected_attend]
        return (
            all(r["call_outcome"] for r in called)
            and all(r["reminded"] for r in attending)
            and all(rows[person(i)]["response"] for i in range(12, 27))
        )

    await wait_for("calls, keypresses and reminders", settled, timeout=60)

    board = await day.board(a)
    rows = {int(r["mobile"][-4:]): r for r in board["attendees"]}
    assert len(rows) == 50
    assert {r["department"] for r in rows.values()} == set(DEPARTMENTS)
    for i, r in rows.items():
        assert r["notified"] and r["notice_state"] == "delivered" and r["delivered"], i
        want = "attend" if i in expected_attend else "decline" if i in expected_decline else None
        want = "leave" if i in expected_leave else want
        assert r["response"] == want, (i, r)
        assert r["reason"] == expected_leave.get(i, ""), (i, r)
        assert not r["late"], i
        assert (r["response_via"] == "voice") == (i in range(12, 27)), (i, r)
        assert (r["second_sms"] is not None) == (i in silent_after_sms), (i, r)
        assert (r["called"] is not None) == (i in silent_after_sms), (i, r)
        outcome = {**{k: "answered" for k in range(12, 27)}, **{k: "busy" for k in range(37, 42)}}
        outcome |= {k: "answered" for k in range(42, 51)}
        want_outcome = outcome.get(i, "no-answer") if i in silent_after_sms else None
        assert r["call_outcome"] == want_outcome, (i, r)
        assert (r["reminded"] is not None) == (i in expected_attend), (i, r)
        assert (r["checked_in"] is not None) == (i == 11), (i, r)
    assert rows[9]["comment"] == "会议室在哪？"
    assert board["counts"] == {
        "attendees": 50,
        "notified": 50,
        "delivered": 50,
        "undelivered": 0,
        "refused": 0,
        "attend": 15,
        "decline": 7,
        "leave": 2,
        "no_reply": 26,
        "late": 0,
        "second_sms": 40,
        "called": 40,
        "reminded": 15,
        "checked_in": 1,
    }

    # The other meetings: person 10's answer went to A only; person 51's reply to C was late.
    assert (await day.board(b))["attendees"][0]["response"] is None
    (late,) = (await day.board(c))["attendees"]
    assert late["response"] == "attend" and late["late"]

    # The stranger's reply is kept as unmatched; the nonsense was answered with the help text.
    unmatched = await day.daemon.gateway.list_replies(unmatched=True)
    assert [(r["sender"], r["text"]) for r in unmatched] == [(STRANGER, "1")]
    assert any("未能识别" in t for t in day.texts_to(person(9)))
    assert any("已登记：请假（孩子发烧）" in t for t in day.texts_to(person(4)))
    assert not day.texts_to(STRANGER)
