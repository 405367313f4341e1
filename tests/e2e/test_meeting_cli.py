"""``masd meeting`` and ``masd schedule`` run as real subprocesses against a fresh data directory per test:
creating, listing, the board, exports opened with openpyxl, history, changes and cancellations — with
``masd run`` delivering the notices where a test needs them sent."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

CONFIG = """\
[http]
enabled = false

[socket]
enabled = false

[channels.sim]
driver = "sim"
options = { receipt_delay = 0.01 }
"""

# The command line as masd/cli.py builds it; the meeting groups are added here if it does not (yet).
CLI = """\
from masd.cli import app
from masd.modules.meeting.cli import meeting_app, schedule_app
names = {g.name for g in app.registered_groups}
if "meeting" not in names:
    app.add_typer(meeting_app, name="meeting")
if "schedule" not in names:
    app.add_typer(schedule_app, name="schedule")
app(prog_name="masd")
"""

Masd = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASD_")}
    config = tmp_path / "masd.toml"
    config.write_text(CONFIG, encoding="utf-8")
    env.update(MASD_CONFIG=str(config), MASD_NODE__DATA_DIR=str(tmp_path / "data"), PYTHONIOENCODING="utf-8")
    return env


@pytest.fixture
def masd(env: dict[str, str], tmp_path: Path) -> Masd:
    def run(*args: str, rc: int | None = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-c", CLI, *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if rc is not None:
            assert proc.returncode == rc, (
                f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    return run


def _local(**delta: float) -> str:
    return (dt.datetime.now() + dt.timedelta(**delta)).strftime("%Y-%m-%d %H:%M")


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


def _create(masd: Masd, title: str = "周一例会", *args: str) -> dict[str, Any]:
    created: dict[str, Any] = _json(
        masd("meeting", "create", title, "--start", _local(hours=2), "--place", "三楼会议室", *args, "--json")
    )
    return created


NUMBERS = ("13800000001", "13800000002", "13800000003")


# ----- creating and looking ------------------------------------------------------------------------------


def test_create_stores_the_meeting_with_its_attendees(masd: Masd) -> None:
    created = _create(masd, "周一例会", "--number", "13800000001,13800000002", "--number", "13800000001")
    assert created["code"] == f"#{created['id']}"
    assert created["attendees"] == 2  # the repeated number is one attendee
    assert created["meeting"]["state"] == "scheduled"
    assert created["meeting"]["place"] == "三楼会议室"


def test_create_prints_the_id_code_and_attendees(masd: Masd) -> None:
    proc = masd("meeting", "create", "周一例会", "--start", _local(hours=2), "--number", ",".join(NUMBERS))
    assert "meeting 1 created (code #1): 3 attendees" in proc.stdout


def test_create_takes_attendees_from_the_address_book(masd: Masd) -> None:
    masd("contacts", "add", "张三", "13800000001", "--dept", "市政府/办公室/秘书科")
    masd("contacts", "add", "李四", "13800000002", "--dept", "市政府/办公室", "--groups", "办公会")
    masd("contacts", "add", "王五", "13800000003", "--dept", "市政府/财政局", "--groups", "办公会")
    created = _create(
        masd, "周一例会", "--dept", "市政府/办公室", "--group", "办公会", "--number", "13900000009"
    )
    board = _json(masd("meeting", "board", str(created["id"]), "--json"))
    people = {r["mobile"]: (r["name"], r["department"]) for r in board["attendees"]}
    assert people == {
        "13800000001": ("张三", "市政府/办公室/秘书科"),  # the sub-department comes with its parent
        "13800000002": ("李四", "市政府/办公室"),  # in the department and the group: once
        "13800000003": ("王五", "市政府/财政局"),
        "13900000009": ("", ""),
    }


def test_create_with_an_unknown_department_names_it(masd: Masd) -> None:
    proc = masd("meeting", "create", "x", "--start", _local(hours=2), "--dept", "没有这个部门", rc=1)
    assert "--dept #1 (没有这个部门): no such department" in proc.stderr


def test_create_with_a_start_in_the_past_is_refused_naming_the_option(masd: Masd) -> None:
    proc = masd("meeting", "create", "x", "--start", _local(hours=-1), "--number", NUMBERS[0], rc=1)
    assert "--start: is in the past" in proc.stderr
    assert _json(masd("meeting", "history", "--json")) == []


def test_create_with_an_unreadable_time_is_a_usage_error(masd: Masd) -> None:
    proc = masd("meeting", "create", "x", "--start", "明天上午", "--number", NUMBERS[0], rc=2)
    assert "is not a time" in proc.stderr


def test_create_with_a_bad_number_names_which(masd: Masd) -> None:
    proc = masd("meeting", "create", "x", "--start", _local(hours=2), "--number", "13800000001,12345", rc=1)
    assert "--number #2 (12345)" in proc.stderr


def test_create_turns_a_delay_off_with_none(masd: Masd) -> None:
    created = _create(
        masd, "x", "--number", NUMBERS[0], "--second-sms-after", "none", "--remind-before", "15"
    )
    assert created["meeting"]["second_sms_after"] is None
    assert created["meeting"]["remind_before"] == 15 * 60


def test_list_shows_coming_meetings_soonest_first(masd: Masd) -> None:
    later = _json(
        masd("meeting", "create", "later", "--start", _local(days=2), "--number", NUMBERS[0], "--json")
    )
    sooner = _json(
        masd("meeting", "create", "sooner", "--start", _local(hours=3), "--number", NUMBERS[0], "--json")
    )
    listed = _json(masd("meeting", "list", "--json"))
    assert [m["id"] for m in listed] == [sooner["id"], later["id"]]
    assert listed[0]["counts"] == {"attendees": 1, "attend": 0, "decline": 0, "leave": 0, "no_reply": 1}


def test_list_as_a_table_names_each_meeting(masd: Masd) -> None:
    _create(masd, "预算评审会", "--number", NUMBERS[0])
    assert "预算评审会" in masd("meeting", "list").stdout


def test_history_finds_meetings_by_text_and_attendee(masd: Masd) -> None:
    budget = _create(masd, "预算评审会", "--number", NUMBERS[0])
    weekly = _create(masd, "周一例会", "--number", NUMBERS[1])
    assert [m["id"] for m in _json(masd("meeting", "history", "--text", "预算", "--json"))] == [budget["id"]]
    by_attendee = _json(masd("meeting", "history", "--attendee", NUMBERS[1], "--json"))
    assert [m["id"] for m in by_attendee] == [weekly["id"]]
    today = dt.date.today().isoformat()
    assert len(_json(masd("meeting", "history", "--from", today, "--to", today, "--json"))) in (1, 2)
    assert _json(masd("meeting", "history", "--to", "2000-01-01", "--json")) == []


def test_history_exports_its_results_to_xlsx(masd: Masd, tmp_path: Path) -> None:
    budget = _create(masd, "预算评审会", "--number", ",".join(NUMBERS))
    _create(masd, "周一例会", "--number", NUMBERS[0])
    target = tmp_path / "history.xlsx"
    masd("meeting", "history", "--text", "预算", "--export", str(target))
    rows = list(load_workbook(target).worksheets[0].iter_rows(values_only=True))
    assert rows[0][:3] == ("编号", "会议名称", "开始时间")
    assert [(r[0], r[1], r[8]) for r in rows[1:]] == [(budget["id"], "预算评审会", 3)]


def test_show_prints_the_details_and_counts(masd: Masd) -> None:
    created = _create(
        masd, "周一例会", "--number", NUMBERS[0], "--agenda", "一、小结", "--checkin-code", "QD7"
    )
    shown = _json(masd("meeting", "show", str(created["id"]), "--json"))
    assert shown["meeting"]["agenda"] == "一、小结"
    assert shown["meeting"]["checkin_code"] == "QD7"
    assert shown["counts"]["attendees"] == 1
    assert [e["kind"] for e in shown["log"]] == ["created"]


def test_an_unknown_meeting_is_reported(masd: Masd) -> None:
    assert "no meeting 42" in masd("meeting", "board", "42", rc=1).stderr


# ----- the board and its exports -------------------------------------------------------------------------


def test_board_has_counts_and_one_row_per_attendee(masd: Masd) -> None:
    created = _create(masd, "周一例会", "--number", ",".join(NUMBERS))
    board = _json(masd("meeting", "board", str(created["id"]), "--json"))
    assert board["counts"]["attendees"] == 3
    assert board["counts"]["no_reply"] == 3
    assert sorted(r["mobile"] for r in board["attendees"]) == sorted(NUMBERS)
    assert all(r["response"] is None and r["notified"] is None for r in board["attendees"])


def test_board_as_a_table_lists_every_attendee(masd: Masd) -> None:
    created = _create(masd, "周一例会", "--number", ",".join(NUMBERS))
    table = masd("meeting", "board", str(created["id"])).stdout
    assert all(n in table for n in NUMBERS)
    assert "未回复" in table


def _answered(env: dict[str, str], meeting_id: int) -> None:
    """As the daemon records replies: NUMBERS[0] answered 2, then 1; NUMBERS[1] asked a question."""
    from masd.config import load_config
    from masd.modules.meeting import store
    from masd.store.db import database_from_config

    db = database_from_config(load_config(Path(env["MASD_CONFIG"]), env=env))
    try:

        def write(conn: Any) -> None:
            rows = {r["mobile"]: r["id"] for r in store.attendees_of(conn, meeting_id)}
            first, second = rows[NUMBERS[0]], rows[NUMBERS[1]]
            now = time.time()
            for i, (kind, reply) in enumerate((("decline", "去不了"), ("attend", "參加"))):
                store.record_answer(
                    conn,
                    meeting_id,
                    first,
                    kind=kind,
                    text="",
                    reply=reply,
                    reply_id=i + 1,
                    via="sms",
                    late=False,
                    now=now + i,
                )
            store.update_attendee(conn, first, now=now, response="attend", responded_at=now + 1)
            store.await_answer(conn, second, "是否需要带材料？", asked=True, now=now)

        db.write_sync(write)
    finally:
        db.dispose()


def test_board_shows_each_attendees_answers_and_the_reply_awaiting_one(
    masd: Masd, env: dict[str, str]
) -> None:
    created = _create(masd, "周一例会", "--number", ",".join(NUMBERS))
    _answered(env, created["id"])
    board = _json(masd("meeting", "board", str(created["id"]), "--json"))
    rows = {r["mobile"]: r for r in board["attendees"]}
    assert [(x["kind"], x["reply"]) for x in rows[NUMBERS[0]]["answers"]] == [
        ("decline", "去不了"),
        ("attend", "參加"),
    ]
    assert all(dt.datetime.fromisoformat(x["at"]).tzinfo for x in rows[NUMBERS[0]]["answers"])  # ISO 8601
    assert rows[NUMBERS[1]]["pending_reply"]["text"] == "是否需要带材料？"
    assert (rows[NUMBERS[1]]["ask_backs"], board["counts"]["awaiting"]) == (1, 1)
    table = masd("meeting", "board", str(created["id"])).stdout
    assert "不参加 → 参加" in table and "待确认" in table and "是否需要带材料？" in table


def test_show_lists_every_answer_recorded(masd: Masd, env: dict[str, str]) -> None:
    created = _create(masd, "周一例会", "--number", ",".join(NUMBERS))
    _answered(env, created["id"])
    shown = _json(masd("meeting", "show", str(created["id"]), "--json"))
    assert [(x["mobile"], x["kind"]) for x in shown["answers"]] == [
        (NUMBERS[0], "decline"),
        (NUMBERS[0], "attend"),
    ]
    text = masd("meeting", "show", str(created["id"])).stdout
    assert "answers 回复记录" in text and "去不了" in text


def test_board_watch_prints_a_board_per_refresh_until_interrupted(
    masd: Masd, env: dict[str, str], tmp_path: Path
) -> None:
    created = _create(masd, "周一例会", "--number", NUMBERS[0])
    watch = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLI,
            "meeting",
            "board",
            str(created["id"]),
            "--watch",
            "--json",
            "--interval",
            "0.5",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watch.stdout is not None
    boards = [json.loads(watch.stdout.readline()) for _ in range(2)]
    watch.send_signal(signal.SIGINT)
    assert watch.wait(timeout=20) == 0
    assert [b["meeting"]["id"] for b in boards] == [created["id"], created["id"]]
    assert boards[1]["counts"]["attendees"] == 1


def test_export_writes_the_board_to_xlsx_one_row_per_attendee(masd: Masd, tmp_path: Path) -> None:
    created = _create(masd, "周一例会", "--number", ",".join(NUMBERS))
    target = tmp_path / "board.xlsx"
    done = _json(masd("meeting", "export", str(created["id"]), str(target), "--json"))
    assert done == {"file": str(target), "format": "xlsx", "meeting": created["id"], "attendees": 3}
    book = load_workbook(target)
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    header = rows[0]
    assert header[:7] == ("姓名", "部门", "手机", "通知时间", "送达", "送达时间", "回复")
    assert sorted(r[2] for r in rows[1:]) == sorted(NUMBERS)
    assert {r[6] for r in rows[1:]} == {"未回复"}
    summary = dict(book.worksheets[1].iter_rows(values_only=True))
    assert (summary["会议名称"], summary["应到人数"]) == ("周一例会", 3)


def test_export_writes_csv_when_the_file_ends_in_csv(masd: Masd, tmp_path: Path) -> None:
    created = _create(masd, "周一例会", "--number", NUMBERS[0])
    target = tmp_path / "board.csv"
    masd("meeting", "export", str(created["id"]), str(target), "--lang", "en")
    rows = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8-sig"))))
    assert rows[0][:3] == ["Name", "Department", "Mobile"]
    assert [r[2] for r in rows[1:]] == [NUMBERS[0]]


def test_export_refuses_another_extension(masd: Masd, tmp_path: Path) -> None:
    created = _create(masd, "周一例会", "--number", NUMBERS[0])
    proc = masd("meeting", "export", str(created["id"]), str(tmp_path / "board.pdf"), rc=2)
    assert ".xlsx or .csv" in proc.stderr


# ----- cancelling, and the notices a running daemon sends ------------------------------------------------


def test_cancel_before_the_notice_tells_nobody(masd: Masd) -> None:
    created = _create(masd, "周一例会", "--number", NUMBERS[0], "--at", _local(hours=1))
    assert _json(masd("meeting", "cancel", str(created["id"]), "--json")) == {
        "id": created["id"],
        "told": 0,
        "already_cancelled": False,
    }
    assert _json(masd("meeting", "show", str(created["id"]), "--json"))["meeting"]["state"] == "cancelled"


@pytest.fixture
def daemon(env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "run"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def _board_until(masd: Masd, meeting_id: int, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        board: dict[str, Any] = _json(masd("meeting", "board", str(meeting_id), "--json"))
        if done(board) or time.monotonic() > deadline:
            return board
        time.sleep(0.2)


def _queued_until(masd: Masd, n: int) -> list[dict[str, Any]]:
    """The deliveries in the queue once there are ``n`` of them (or after 30 s, whatever is there)."""
    deadline = time.monotonic() + 30
    while True:
        listed = _json(masd("queue", "list", "--limit", "100", "--json"))
        deliveries: list[dict[str, Any]] = listed["deliveries"]
        if len(deliveries) >= n or time.monotonic() > deadline:
            return deliveries
        time.sleep(0.2)


def test_a_running_daemon_sends_the_notices_and_change_and_cancel_tell_everyone(
    masd: Masd, daemon: subprocess.Popen[str]
) -> None:
    created = _create(masd, "周一例会", "--number", ",".join(NUMBERS))
    mid = str(created["id"])
    board = _board_until(masd, created["id"], lambda b: b["counts"]["delivered"] == 3)
    assert board["counts"]["delivered"] == 3, board["counts"]
    assert all(r["notified"] and r["notice_state"] == "delivered" for r in board["attendees"])

    changed = _json(masd("meeting", "change", mid, "--place", "五楼", "--json"))
    assert (changed["told"], changed["meeting"]["place"], changed["meeting"]["revision"]) == (3, "五楼", 1)
    # The CLI records the change; the running daemon queues its notices on its next pass (about a
    # second). A cancellation made before that pass would supersede them: wait for them first.
    assert len(_queued_until(masd, len(NUMBERS) * 2)) == len(NUMBERS) * 2
    cancelled = _json(masd("meeting", "cancel", mid, "--json"))
    assert cancelled == {"id": created["id"], "told": 3, "already_cancelled": False}
    # Notice, change notice and cancellation notice: three deliveries to each attendee.
    deliveries = _queued_until(masd, len(NUMBERS) * 3)
    assert sorted(d["recipient"] for d in deliveries) == sorted(NUMBERS * 3)


# ----- schedule reminders and memos ----------------------------------------------------------------------


def test_schedule_add_stores_a_reminder_for_its_time(masd: Masd) -> None:
    at = _local(hours=1)
    item = _json(
        masd("schedule", "add", "--mobile", "13800000009", "--title", "交季度报表", "--at", at, "--json")
    )
    assert (item["kind"], item["mobile"], item["title"], item["sent_at"]) == (
        "reminder",
        "13800000009",
        "交季度报表",
        None,
    )
    listed = _json(masd("schedule", "list", "--pending", "--json"))
    assert [i["id"] for i in listed] == [item["id"]]


def test_schedule_memo_without_a_time_is_kept(masd: Masd) -> None:
    masd("schedule", "memo", "--mobile", "13800000009", "--title", "带工作证")
    listed = _json(masd("schedule", "list", "--kind", "memo", "--json"))
    assert [(i["title"], i["remind_at"]) for i in listed] == [("带工作证", None)]


def test_schedule_add_for_a_person_in_the_address_book(masd: Masd) -> None:
    masd("contacts", "add", "张三", "13800000001")
    item = _json(
        masd("schedule", "add", "--person", "13800000001", "--title", "x", "--at", _local(hours=1), "--json")
    )
    assert (item["name"], item["mobile"]) == ("张三", "13800000001")


def test_schedule_add_needs_a_mobile_or_a_person(masd: Masd) -> None:
    proc = masd("schedule", "add", "--title", "x", "--at", _local(hours=1), rc=2)
    assert "--mobile or --person" in proc.stderr


def test_a_schedule_reminder_is_sent_by_a_running_daemon(masd: Masd, daemon: subprocess.Popen[str]) -> None:
    at = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    item = _json(
        masd("schedule", "add", "--mobile", "13800000009", "--title", "交报表", "--at", at, "--json")
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        (listed,) = _json(masd("schedule", "list", "--json"))
        if listed["sent_at"]:
            break
        time.sleep(0.2)
    assert listed["id"] == item["id"]
    assert listed["sent_at"] is not None and listed["message_id"] is not None
