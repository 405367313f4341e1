"""A whole meeting day (会信通) over real SMPP against masd's simulated SMSC, with calls through the
simulated voice network: 50 attendees in three departments, replies as staff type them (Traditional
script, names, negations, a question, a changed answer, a check-in on the day), silent attendees
reminded by a second SMS and then called, and a board that ends exactly as the script implies — every
answer, the history of each, the reply awaiting an answer, and the confirmations and ask-backs the SMSC
carried."""

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
        """The SMS the SMSC carried to ``number``, in order, each long one joined from its parts."""
        out: list[str] = []
        parts: dict[int, dict[int, bytes]] = {}  # concatenation reference → seq → body
        for line in self.record.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            if r["destination"] != number:
                continue
            body = bytes.fromhex(r["body"])
            if r["esm_class"] & 0x40:  # UDH: 00 03 ref total seq (8-bit ref) or 08 04 ref ref total seq
                udh, body = body[1 : 1 + body[0]], body[1 + body[0] :]
                ref, total, seq = (
                    (udh[2], udh[3], udh[4]) if udh[0] == 0 else (udh[2] << 8 | udh[3], udh[4], udh[5])
                )
                got = parts.setdefault(ref, {})
                got[seq] = body
                if len(got) < total:
                    continue
                body = b"".join(got[i] for i in sorted(got))
                del parts[ref]
            out.append(body.decode("utf-16-be") if r["data_coding"] == 8 else body.decode("latin-1"))
        return out

    async def texts_until(self, number: str, n: int) -> list[str]:
        with trio.fail_after(10):
            while len(texts := self.texts_to(number)) < n:
                await trio.sleep(0.05)
        return texts


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
        (person(1), "參加"),  # Traditional
        (person(2), "１"),  # full-width
        (person(3), "2"),  # changes to 1 below
        (person(4), "我请假，孩子生病"),
        (person(5), "請假：出差開會"),  # Traditional: the reason is kept as written
        (person(6), "去不了"),
        (person(7), "张三参加"),  # a name signed before the answer
        (person(8), "参加不了"),  # a negation after the attend word
        (person(9), "是否需要带材料？"),  # a question: asked back, nothing recorded
        (person(11), "已簽到"),  # the meeting is today: a check-in
        (person(27), "不參加"),
        (STRANGER, "1"),
    ):
        await day.reply(sender, ext_a, text)
    # Person 3 changes their mind once the first answer is confirmed.
    await day.texts_until(person(3), 2)
    await day.reply(person(3), ext_a, "1")
    # The carrier dropped the extension, and person 10 has two open meetings: masd asks back.
    await day.reply(person(10), SERVICE, "1")

    async def asked_back() -> bool:
        return any(f"#{a}" in t and f"#{b}" in t for t in day.texts_to(person(10)))

    await wait_for("ask back", asked_back)
    await day.reply(person(10), SERVICE, f"1 #{a}")
    await trio.sleep(max(0.0, now + 1.5 - time.time()))
    await day.reply(person(51), SERVICE, "1")  # after C's deadline: counts, marked late

    expected_attend = {1, 2, 3, 7, 10, *range(12, 22)}
    expected_decline = {6, 8, 27, *range(22, 27)}
    expected_leave = {4: "孩子生病", 5: "出差開會"}
    # Not answered when the second SMS falls due (11 checked in; 9 asked a question, which answers nothing).
    silent_after_sms = {9, *range(12, 27), *range(28, 51)}
    answers = {
        **{i: ["attend"] for i in expected_attend},
        **{i: ["decline"] for i in expected_decline},
        **{i: ["leave"] for i in expected_leave},
        3: ["decline", "attend"],
        11: ["checkin"],
    }

    async def settled() -> bool:
        rows = {r["mobile"]: r for r in (await day.board(a))["attendees"]}
        called = [rows[person(i)] for i in silent_after_sms]
        attending = [rows[person(i)] for i in expected_attend]
        return (
            all(r["call_outcome"] for r in called)
            and all(r["reminded"] for r in attending)
            and all(rows[person(i)]["response"] for i in range(12, 27))
            and len(rows[person(3)]["answers"]) == 2
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
        assert [x["kind"] for x in r["answers"]] == answers.get(i, []), (i, r)
        assert all(x["via"] == ("voice" if i in range(12, 27) else "sms") for x in r["answers"]), (i, r)
        assert (r["pending_reply"] is not None) == (i == 9), (i, r)
        assert r["ask_backs"] == (1 if i in (9, 10) else 0), (i, r)
    assert [x["reply"] for x in rows[3]["answers"]] == ["2", "1"]
    assert rows[1]["answers"][0]["reply"] == "參加"
    assert rows[9]["pending_reply"]["text"] == rows[9]["comment"] == "是否需要带材料？"
    assert board["counts"] == {
        "attendees": 50,
        "notified": 50,
        "delivered": 50,
        "undelivered": 0,
        "refused": 0,
        "attend": 15,
        "decline": 8,
        "leave": 2,
        "no_reply": 25,
        "awaiting": 1,
        "late": 0,
        "second_sms": 39,
        "called": 39,
        "reminded": 15,
        "checked_in": 1,
    }

    # The other meetings: person 10's answer went to A only; person 51's reply to C was late.
    assert (await day.board(b))["attendees"][0]["response"] is None
    (late,) = (await day.board(c))["attendees"]
    assert late["response"] == "attend" and late["late"]

    # The stranger's reply is kept as unmatched, and not answered.
    unmatched = await day.daemon.gateway.list_replies(unmatched=True)
    assert [(r["sender"], r["text"]) for r in unmatched] == [(STRANGER, "1")]
    assert not day.texts_to(STRANGER)

    # What the SMSC carried back: each answer confirmed with how to correct it, the question asked back.
    sign = "【市政府办公室】"
    title = "「防汛工作部署会」"
    attend = f"已记录：参加{title}。如有误请回复2不参加、3请假+原因。{sign}"
    decline = f"已记录：不参加{title}。如有误请回复1参加、3请假+原因。{sign}"
    said = {i: day.texts_to(person(i)) for i in (*range(1, 12), 27)}
    for i in (1, 2, 7, 10):
        assert said[i].count(attend) == 1, (i, said[i])
    for i in (6, 8, 27):
        assert said[i].count(decline) == 1, (i, said[i])
    assert [t for t in said[3] if t.startswith("已记录")] == [decline, attend]
    assert f"已记录：请假（孩子生病）{title}。如有误请回复1参加、2不参加。{sign}" in said[4]
    assert f"已记录：请假（出差開會）{title}。如有误请回复1参加、2不参加。{sign}" in said[5]
    assert f"已签到{title}。如有误请联系办公室。{sign}" in said[11]
    asked = (
        f"未能确认您对{title}的回复，尚未登记。请回复1参加、2不参加、3请假+原因（会议编号#{a}）；"
        f"到场后回复“签到”签到。{sign}"
    )
    assert said[9].count(asked) == 1 and not any(t.startswith("已记录") for t in said[9])
    (which,) = [t for t in said[10] if t.startswith("您有2个会议待回复")]
    assert f"#{a} 防汛工作部署会" in which and f"#{b} 党组会" in which
    assert "请回复1参加、2不参加、3请假+原因，并注明会议编号，如“1 #" in which
