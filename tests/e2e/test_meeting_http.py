"""The meeting module's HTTP API end to end: a real daemon with the sim channel, real HTTP over loopback,
replies injected through the sim channel as a handset would send them.

Each test starts its own daemon in a temporary data directory.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from openpyxl import load_workbook

from masd.config import load_config
from masd.daemon import Daemon
from masd.interfaces.http import ErrorResponse
from masd.modules.meeting.http import BoardOut, MeetingDetail, MeetingList, ScheduleItemOut, ScheduleList
from masd.store import apps as app_store

SERVICE_NUMBER = "10657001"
MEETING_EXTENSION = "9"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Env:
    daemon: Daemon
    client: httpx.AsyncClient
    key: str
    other_key: str

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    async def post(self, path: str, body: Any, key: str | None = None) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.auth(key))

    async def get(self, path: str, key: str | None = None, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.auth(key))

    async def create(self, **fields: Any) -> dict[str, Any]:
        body = {"title": "周一例会", "starts_at": _at(hours=2), "place": "三楼会议室", **fields}
        r = await self.post("/v1/meetings", body)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    async def reply(self, sender: str, text: str, meeting_id: int | None) -> None:
        extension = f"{MEETING_EXTENSION}{meeting_id}" if meeting_id is not None else ""
        await self.daemon.drivers["sim"].inject_reply(sender, SERVICE_NUMBER + extension, text)  # type: ignore[attr-defined]

    async def board(self, meeting_id: int) -> dict[str, Any]:
        r = await self.get(f"/v1/meetings/{meeting_id}/board")
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    async def board_until(self, meeting_id: int, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        with trio.fail_after(10):
            while True:
                board = await self.board(meeting_id)
                if done(board):
                    return board
                await trio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **extra_env: str) -> AsyncIterator[Env]:
    port = _free_port()
    env = {
        "MASD_NODE__DATA_DIR": str(tmp_path),
        "MASD_HTTP__LISTEN": f"127.0.0.1:{port}",
        "MASD_SOCKET__ENABLED": "false",
        "MASD_CHANNELS__SIM__OPTIONS": "{receipt_delay = 0.01}",
        "MASD_CHANNELS__SIM__SERVICE_NUMBER": f'"{SERVICE_NUMBER}"',
        "MASD_MEETING__CONFIRM_REPLIES": "false",
        **extra_env,
    }
    daemon = Daemon(load_config(None, env=env))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        # The organisers' app names people and departments: it may read the address book.
        scopes = "contacts:read,meetings,messages,replies"
        _, key = await daemon.db.write(
            lambda c: app_store.create_app(c, "office", now=time.time(), scopes=scopes)
        )
        _, other = await daemon.db.write(
            lambda c: app_store.create_app(c, "other", now=time.time(), scopes=scopes)
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield Env(daemon, client, key, other)
        daemon.stop()


@pytest.fixture
async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    async with running(tmp_path, monkeypatch) as e:
        yield e


def _at(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    ErrorResponse.model_validate(r.json())
    err: dict[str, Any] = r.json()["error"]
    return err


def _row(board: dict[str, Any], mobile: str) -> dict[str, Any]:
    (row,) = [r for r in board["attendees"] if r["mobile"] == mobile]
    return row


NUMBERS = ["13800000001", "13800000002", "13800000003", "13800000004"]


# ----- creating and reading -----------------------------------------------------------------------------


async def test_create_answers_the_meeting_with_its_code_and_attendees(env: Env) -> None:
    r = await env.post(
        "/v1/meetings",
        {
            "title": "项目评审会",
            "starts_at": _at(days=1),
            "place": "五楼",
            "attachments": ["议程.docx"],
            "numbers": ["13800000001", "+86 138-0000-0002", "13800000001"],
            "attendees": [{"name": "张三", "mobile": "+86 139-0000-0003", "department": "办公室"}],
            "second_sms_after_minutes": None,
            "checkin_code": "QD42",
        },
    )
    assert r.status_code == 201, r.text
    body = MeetingDetail.model_validate(r.json()).model_dump()
    assert r.headers["location"] == f"/v1/meetings/{body['id']}"
    assert body["code"] == f"#{body['id']}"
    assert body["counts"]["attendees"] == 3  # the repeated number is one attendee
    assert body["attachments"] == ["议程.docx"]
    assert body["second_sms_after_minutes"] is None  # null turns it off
    assert body["remind_before_minutes"] == 60  # left out: the configured default
    assert body["checkin_code"] == "QD42"
    assert r.json()["starts_at"].endswith("Z")
    board = await env.board(body["id"])
    assert (_row(board, "13900000003")["name"], _row(board, "13900000003")["department"]) == (
        "张三",
        "办公室",
    )


async def test_naming_the_address_book_needs_contacts_read_and_numbers_do_not(env: Env) -> None:
    _, plain = await env.daemon.db.write(lambda c: app_store.create_app(c, "plain", now=time.time()))
    base = {"title": "周例会", "starts_at": _at(days=1), "place": "三楼"}
    for field, value in (("departments", ["市政府/办公室"]), ("groups", ["办公会"]), ("people", [1])):
        err = _error(await env.post("/v1/meetings", {**base, field: value}, key=plain), 403)
        assert (err["field"], err["value"]) == ("scope", "contacts:read") and field in err["reason"]
    err = _error(
        await env.post(
            "/v1/schedule", {"kind": "reminder", "title": "t", "text": "x", "person": 1}, key=plain
        ),
        403,
    )
    assert err["value"] == "contacts:read"
    r = await env.post("/v1/meetings", {**base, "numbers": ["13800000001"]}, key=plain)
    assert r.status_code == 201, r.text


async def test_the_notice_goes_out_and_the_board_shows_it_delivered(env: Env) -> None:
    meeting = await env.create(numbers=NUMBERS[:2])
    board = await env.board_until(meeting["id"], lambda b: b["counts"]["delivered"] == 2)
    BoardOut.model_validate(board)
    assert board["meeting"]["state"] == "notified"
    assert all(r["notified_at"] and r["notice_state"] == "delivered" for r in board["attendees"])


async def test_the_board_shows_each_kind_of_reply(env: Env) -> None:
    meeting = await env.create(numbers=NUMBERS)
    mid = meeting["id"]
    await env.board_until(mid, lambda b: b["counts"]["notified"] == 4)
    await env.reply(NUMBERS[0], "１", mid)  # full-width 1
    await env.reply(NUMBERS[1], "不参加", mid)
    await env.reply(NUMBERS[2], "请假 孩子发烧", mid)
    board = await env.board_until(mid, lambda b: b["counts"]["no_reply"] == 1)
    assert {k: board["counts"][k] for k in ("attend", "decline", "leave", "no_reply")} == {
        "attend": 1,
        "decline": 1,
        "leave": 1,
        "no_reply": 1,
    }
    assert _row(board, NUMBERS[0])["response"] == "attend"
    assert _row(board, NUMBERS[0])["response_via"] == "sms"
    assert _row(board, NUMBERS[1])["response"] == "decline"
    leave = _row(board, NUMBERS[2])
    assert (leave["response"], leave["reason"], leave["late"]) == ("leave", "孩子发烧", False)
    assert _row(board, NUMBERS[3])["response"] is None


async def test_the_board_has_each_attendees_answers_and_the_reply_awaiting_an_answer(env: Env) -> None:
    meeting = await env.create(numbers=NUMBERS[:2])
    mid = meeting["id"]
    await env.board_until(mid, lambda b: b["counts"]["notified"] == 2)
    await env.reply(NUMBERS[0], "2", mid)
    await env.board_until(mid, lambda b: b["counts"]["decline"] == 1)
    await env.reply(NUMBERS[0], "参加", mid)
    await env.reply(NUMBERS[1], "是否需要带材料？", mid)
    board = await env.board_until(mid, lambda b: b["counts"]["attend"] == 1 and b["counts"]["awaiting"] == 1)
    BoardOut.model_validate(board)
    changed, asking = _row(board, NUMBERS[0]), _row(board, NUMBERS[1])
    assert [(x["kind"], x["reply"]) for x in changed["answers"]] == [("decline", "2"), ("attend", "参加")]
    assert all(x["at"].endswith("Z") and x["via"] == "sms" and not x["late"] for x in changed["answers"])
    assert changed["pending_reply"] is None
    assert (asking["response"], asking["answers"], asking["ask_backs"]) == (None, [], 1)
    assert asking["pending_reply"]["text"] == "是否需要带材料？"
    assert asking["pending_reply"]["at"].endswith("Z")


async def test_a_reply_without_the_extension_matches_the_senders_only_open_meeting(env: Env) -> None:
    meeting = await env.create(numbers=NUMBERS[:1])
    await env.board_until(meeting["id"], lambda b: b["counts"]["notified"] == 1)
    await env.reply(NUMBERS[0], "参加", None)
    board = await env.board_until(meeting["id"], lambda b: b["counts"]["attend"] == 1)
    assert _row(board, NUMBERS[0])["responded_at"] is not None


async def test_a_reply_after_the_deadline_counts_and_is_marked_late(env: Env) -> None:
    meeting = await env.create(numbers=NUMBERS[:1], reply_deadline=_at(seconds=1))
    await env.board_until(meeting["id"], lambda b: b["counts"]["notified"] == 1)
    await trio.sleep(1.2)
    await env.reply(NUMBERS[0], "1", meeting["id"])
    board = await env.board_until(meeting["id"], lambda b: b["counts"]["attend"] == 1)
    assert board["counts"]["late"] == 1
    assert _row(board, NUMBERS[0])["late"] is True


async def test_the_board_shows_the_second_sms_to_those_still_silent(env: Env) -> None:
    meeting = await env.create(numbers=NUMBERS[:2], second_sms_after_minutes=0.05)  # 3 s
    mid = meeting["id"]
    await env.board_until(mid, lambda b: b["counts"]["notified"] == 2)
    await env.reply(NUMBERS[0], "1", mid)
    board = await env.board_until(mid, lambda b: b["counts"]["second_sms"] == 1)
    assert _row(board, NUMBERS[1])["second_sms_at"] is not None
    assert _row(board, NUMBERS[0])["second_sms_at"] is None


async def test_get_meeting_has_the_board_counts(env: Env) -> None:
    meeting = await env.create(numbers=NUMBERS[:2])
    r = await env.get(f"/v1/meetings/{meeting['id']}")
    assert r.status_code == 200, r.text
    body = MeetingDetail.model_validate(r.json())
    assert body.title == "周一例会"
    assert body.counts.attendees == 2


async def test_history_searches_by_text_attendee_and_date(env: Env) -> None:
    a = await env.create(title="预算评审会", numbers=["13800000001"], starts_at=_at(days=3))
    b = await env.create(title="周一例会", numbers=["13800000002"], starts_at=_at(days=1))

    async def ids(**params: Any) -> list[int]:
        r = await env.get("/v1/meetings", **params)
        assert r.status_code == 200, r.text
        return [m.id for m in MeetingList.model_validate(r.json()).meetings]

    assert await ids() == [a["id"], b["id"]]  # newest first
    assert await ids(text="预算") == [a["id"]]
    assert await ids(attendee="13800000002") == [b["id"]]
    assert await ids(**{"from": _at(days=2)}) == [a["id"]]
    assert await ids(to=_at(days=2)) == [b["id"]]
    assert await ids(upcoming="true") == [b["id"], a["id"]]  # soonest first


async def test_an_app_sees_only_its_own_meetings(env: Env) -> None:
    meeting = await env.create(numbers=NUMBERS[:1])
    assert (
        _error(await env.get(f"/v1/meetings/{meeting['id']}", key=env.other_key), 404)["code"] == "not_found"
    )
    assert (await env.get(f"/v1/meetings/{meeting['id']}/board", key=env.other_key)).status_code == 404
    r = await env.get("/v1/meetings", key=env.other_key)
    assert r.json() == {"meetings": []}


# ----- exports ------------------------------------------------------------------------------------------


async def test_the_board_downloads_as_xlsx_with_one_row_per_attendee(env: Env) -> None:
    meeting = await env.create(numbers=NUMBERS[:2])
    mid = meeting["id"]
    await env.board_until(mid, lambda b: b["counts"]["notified"] == 2)
    await env.reply(NUMBERS[1], "3 出差", mid)
    await env.board_until(mid, lambda b: b["counts"]["leave"] == 1)
    r = await env.get(f"/v1/meetings/{mid}/board.xlsx")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert f"meeting-{mid}-board.xlsx" in r.headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(r.content)).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    header = rows[0]
    assert header[:3] == ("姓名", "部门", "手机")
    by_mobile = {row[2]: dict(zip(header, row, strict=True)) for row in rows[1:]}
    assert set(by_mobile) == set(NUMBERS[:2])
    assert (by_mobile[NUMBERS[1]]["回复"], by_mobile[NUMBERS[1]]["请假原因"]) == ("请假", "出差")
    assert by_mobile[NUMBERS[0]]["回复"] == "未回复"


async def test_the_board_downloads_as_csv_in_english(env: Env) -> None:
    meeting = await env.create(numbers=NUMBERS[:1])
    r = await env.get(f"/v1/meetings/{meeting['id']}/board.csv", lang="en")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Name", "Department", "Mobile"]
    assert [row[2] for row in rows[1:]] == [NUMBERS[0]]


# ----- changing and cancelling --------------------------------------------------------------------------


async def test_a_change_tells_everyone_notified(env: Env) -> None:
    meeting = await env.create(numbers=NUMBERS[:3])
    await env.board_until(meeting["id"], lambda b: b["counts"]["notified"] == 3)
    new_start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=5)
    r = await env.client.patch(
        f"/v1/meetings/{meeting['id']}",
        json={"starts_at": new_start.isoformat(), "place": "五楼"},
        headers=env.auth(),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["told"] == 3
    assert body["meeting"]["place"] == "五楼"
    assert body["meeting"]["revision"] == 1
    assert datetime.fromisoformat(body["meeting"]["starts_at"]) == new_start
    # The meeting keeps its length: the end moved with the start.
    assert datetime.fromisoformat(body["meeting"]["ends_at"]) == new_start + timedelta(hours=1)


async def test_a_change_with_nothing_to_change_is_refused(env: Env) -> None:
    meeting = await env.create(numbers=NUMBERS[:1])
    r = await env.client.patch(f"/v1/meetings/{meeting['id']}", json={}, headers=env.auth())
    assert "nothing to change" in _error(r, 422)["reason"]


async def test_cancel_tells_everyone_notified_once(env: Env) -> None:
    meeting = await env.create(numbers=NUMBERS[:2])
    await env.board_until(meeting["id"], lambda b: b["counts"]["notified"] == 2)
    first = await env.post(f"/v1/meetings/{meeting['id']}/cancel", None)
    assert first.status_code == 200, first.text
    assert (first.json()["told"], first.json()["already_cancelled"]) == (2, False)
    assert first.json()["meeting"]["state"] == "cancelled"
    again = await env.post(f"/v1/meetings/{meeting['id']}/cancel", None)
    assert (again.json()["told"], again.json()["already_cancelled"]) == (0, True)


async def test_a_cancelled_meeting_cannot_be_changed(env: Env) -> None:
    meeting = await env.create(numbers=NUMBERS[:1])
    await env.post(f"/v1/meetings/{meeting['id']}/cancel", None)
    r = await env.client.patch(f"/v1/meetings/{meeting['id']}", json={"place": "五楼"}, headers=env.auth())
    assert _error(r, 409)["code"] == "cancelled"


# ----- refusals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "index", "reason"),
    [
        ({"starts_at": "2020-01-01T09:00:00Z"}, "starts_at", None, "in the past"),
        ({"mode": "fax"}, "mode", None, "'sms', 'sms+voice' or 'voice'"),
        ({"numbers": []}, "attendees", None, "no attendees"),
        ({"numbers": ["13800000001", "12345"]}, "numbers", 1, "not a mainland mobile number"),
        ({"attendees": [{"mobile": "12345"}]}, "attendees.mobile", 0, "not a mainland mobile number"),
        ({"template": "{name}: {venue}"}, "template", None, "unknown placeholder {venue}"),
        ({"second_sms_after_minutes": -5}, "second_sms_after_minutes", None, "greater than or equal to 0"),
        ({"departments": ["没有这个部门"]}, "departments", 0, "no such department"),
        ({"title": "a\x00b"}, "title", None, "NUL"),
        (
            {"sendat": "2030-01-01T00:00:00Z"},
            "sendat",
            None,
            "unknown field; the fields are title, starts_at",
        ),
    ],
)
async def test_a_bad_field_is_refused_and_named(
    env: Env, fields: dict[str, Any], field: str, index: int | None, reason: str
) -> None:
    body = {"title": "周一例会", "starts_at": _at(hours=2), "numbers": ["13800000001"], **fields}
    err = _error(await env.post("/v1/meetings", body), 422)
    assert (err["field"], err.get("index")) == (field, index)
    assert reason in err["reason"]
    r = await env.get("/v1/meetings")
    assert r.json() == {"meetings": []}


async def test_a_meeting_route_without_a_key_is_unauthorized(env: Env) -> None:
    r = await env.client.get("/v1/meetings")
    assert _error(r, 401)["code"] == "unauthorized"


async def test_an_unknown_meeting_is_not_found(env: Env) -> None:
    assert _error(await env.get("/v1/meetings/999"), 404)["value"] == 999


# ----- schedule reminders and memos ---------------------------------------------------------------------


async def test_a_schedule_reminder_is_sent_by_sms_at_its_time(env: Env) -> None:
    r = await env.post(
        "/v1/schedule",
        {"mobile": "13800000009", "title": "交季度报表", "text": "下午五点前", "remind_at": _at(seconds=1)},
    )
    assert r.status_code == 201, r.text
    item = ScheduleItemOut.model_validate(r.json())
    assert (item.kind, item.sent_at) == ("reminder", None)
    with trio.fail_after(10):
        while True:
            listed = ScheduleList.model_validate((await env.get("/v1/schedule", pending="false")).json())
            if listed.items:
                break
            await trio.sleep(0.05)
    (sent,) = listed.items
    assert sent.id == item.id and sent.message_id is not None
    message = await env.daemon.gateway.get_message(sent.message_id)
    assert message is not None
    assert message["text"] == "【日程提醒】交季度报表：下午五点前"
    assert [d["recipient"] for d in message["deliveries"]] == ["13800000009"]


async def test_a_memo_without_a_time_is_kept_and_listed(env: Env) -> None:
    r = await env.post("/v1/schedule", {"kind": "memo", "mobile": "13800000009", "title": "带工作证"})
    assert r.status_code == 201, r.text
    listed = (await env.get("/v1/schedule", kind="memo")).json()["items"]
    assert [(i["title"], i["remind_at"], i["sent_at"]) for i in listed] == [("带工作证", None, None)]


async def test_a_reminder_needs_a_time(env: Env) -> None:
    err = _error(await env.post("/v1/schedule", {"mobile": "13800000009", "title": "x"}), 422)
    assert err["field"] == "remind_at"
