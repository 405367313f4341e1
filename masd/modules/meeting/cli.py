"""The meeting module's command line (会议通知): ``masd meeting …`` for organisers and ``masd schedule …``
for schedule reminders (日程提醒) and memos (备忘录).

Like ``masd send``, these commands work directly against the store: ``create`` stores the meeting and a
running daemon (``masd run``, on this node or any other sharing the database) sends the notices when
they are due, escalates and takes the replies. ``change`` and ``cancel`` queue their notices through the
core's :class:`~masd.core.gateway.Gateway` as the module's own app, so that replies to them are routed
back to the meeting; the daemon delivers them. Results go to stdout (one JSON document with ``--json``),
notes and errors to stderr; exit codes are 0 success, 1 refused or failed, 2 usage.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import string
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from masd.cli.common import (
    ConfigOption,
    JsonOption,
    fail,
    jsonable,
    note,
    open_store,
    out,
    print_json,
    read_config,
    run_async,
)
from masd.config import Config
from masd.core.gateway import Gateway, Rejected
from masd.core.times import local_iso, local_text
from masd.modules.contacts.model import ContactError
from masd.modules.meeting import export, store
from masd.modules.meeting.service import MODES, MeetingService, MeetingSpec
from masd.store.db import Database

__all__ = ["meeting_app", "schedule_app"]

T = TypeVar("T")

meeting_app = typer.Typer(
    help="Meetings (会议通知, 会信通): notify attendees, follow who is coming on the board, export it.",
    no_args_is_help=True,
)
schedule_app = typer.Typer(
    help="Schedule reminders and memos (日程提醒与备忘录): sent to a person by SMS at their time.",
    no_args_is_help=True,
)

# The service's field names, as the options that set them.
_OPTION_FOR_FIELD = {
    "title": "TITLE",
    "starts_at": "--start",
    "ends_at": "--end",
    "send_at": "--at",
    "reply_deadline": "--deadline",
    "mode": "--mode",
    "template": "--template",
    "checkin_code": "--checkin-code",
    "second_sms_after": "--second-sms-after",
    "call_after": "--call-after",
    "remind_before": "--remind-before",
    "attendees": "attendees (--people/--dept/--group/--number)",
    "numbers": "--number",
    "people": "--people",
    "departments": "--dept",
    "groups": "--group",
    "mobile": "--mobile",
    "remind_at": "--at",
    "meeting": "ID",
}
_BOARD_TIMES = ("notified", "delivered", "responded", "second_sms", "called", "reminded", "checked_in")
_RESPONSE_STYLE = {"attend": "green", "decline": "red", "leave": "yellow"}
_RESPONSE_WORD = {"attend": "参加 attend", "decline": "不参加 decline", "leave": "请假 leave"}
_ANSWER_WORD = {"attend": "参加", "decline": "不参加", "leave": "请假", "checkin": "签到"}
_STATE_STYLE = {"scheduled": "cyan", "notified": "green", "cancelled": "dim"}
_DISABLE_WORDS = ("none", "off", "no", "无", "不")
# A meeting centuries ahead is a typo, and year 10000 cannot be rendered.
LATEST = dt.datetime(3000, 1, 1, tzinfo=dt.UTC).timestamp()


# ----- parsing options -----------------------------------------------------------------------------------


def _parse_time(value: str, option: str) -> float:
    """A local time like '2026-12-01 09:00' (or ISO 8601 with an offset) as epoch seconds."""
    text = value.strip().replace("/", "-")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a time; use local time like '2026-12-01 09:00' (or ISO 8601 with an offset)",
            param_hint=option,
        ) from None
    # astimezone() on a naive datetime takes it as local time.
    try:
        t = when.astimezone().timestamp()
    except (OverflowError, OSError, ValueError):
        t = LATEST
    if t >= LATEST:
        raise typer.BadParameter(
            f"{value!r} is out of range; give a time before the year 3000", param_hint=option
        )
    return t


def _parse_day(value: str, option: str, *, end: bool = False) -> float:
    """A date (or a date and time) as epoch seconds; with ``end``, a bare date means the end of that day,
    so ``--to 2026-12-01`` includes the meetings of the first of December."""
    text = value.strip().replace("/", "-")
    try:
        if len(text) <= 10:
            day = dt.date.fromisoformat(text)
            when = dt.datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time())
        else:
            when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date; use '2026-12-01' (or a time like '2026-12-01 09:00')",
            param_hint=option,
        ) from None
    return when.astimezone().timestamp()


def _minutes(value: str | None, option: str) -> float | None:
    """Minutes as the service's seconds: not given → -1 (the configured default), 'none' → None (off)."""
    if value is None:
        return -1.0
    if value.strip().lower() in _DISABLE_WORDS:
        return None
    try:
        n = float(value)
    except ValueError:
        n = -1.0
    if not 0 <= n <= 525_600:  # a year
        raise typer.BadParameter(
            f"{value!r} is not a number of minutes (0 to 525600); 'none' turns it off", param_hint=option
        )
    return n * 60


def _split(values: Iterable[str] | None) -> list[str]:
    # Repeatable and comma-separated; full-width commas and 、 come from Chinese input methods.
    out_: list[str] = []
    for value in values or ():
        out_.extend(p.strip() for p in re.split(r"[,，;；、]", value) if p.strip())
    return out_


def _ref(value: str) -> int | str:
    # An id may be written "#12"; anything else is passed on as given (a mobile, a path, a name).
    return int(value[1:]) if value.startswith("#") and value[1:].isdigit() else value


def _refused(e: Rejected | ContactError) -> str:
    field = e.field
    # "numbers[2]" (the address book) or field "numbers" with index 2 (the core): the third --number.
    head, _, rest = field.partition("[")
    index = int(rest.rstrip("]")) if rest.rstrip("]").isdigit() else None
    if isinstance(e, Rejected) and e.index is not None:
        index = e.index
    shown = _OPTION_FOR_FIELD.get(head, head) + (f" #{index + 1}" if index is not None else "")
    value = f" ({e.value})" if e.value not in (None, "") else ""
    return f"{shown}{value}: {e.reason}"


# ----- plumbing ------------------------------------------------------------------------------------------


def _service(cfg: Config, db: Database) -> MeetingService:
    return MeetingService(Gateway(cfg, db), cfg)


def _call(fn: Callable[[], Any]) -> Any:
    """Run an async action of the service; its refusals become a message and exit code 1."""
    try:
        return run_async(fn)
    except (Rejected, ContactError) as e:
        fail(_refused(e))


def _meeting_or_fail(db: Database, meeting_id: int) -> dict[str, Any]:
    meeting = db.read_sync(lambda c: store.get_meeting(c, meeting_id))
    if meeting is None:
        fail(f"no meeting {meeting_id}; 'masd meeting list' shows the coming ones")
    return meeting


def _board_or_fail(db: Database, meeting_id: int) -> dict[str, Any]:
    board = db.read_sync(lambda c: store.board(c, meeting_id))
    if board is None:
        fail(f"no meeting {meeting_id}; 'masd meeting list' shows the coming ones")
    return board


def _board_json(board: dict[str, Any]) -> dict[str, Any]:
    rows = [_row_json(r) for r in board["attendees"]]
    return {"meeting": _meeting_json(board["meeting"]), "counts": board["counts"], "attendees": rows}


def _row_json(r: dict[str, Any]) -> dict[str, Any]:
    row = {k: (local_iso(v) if k in _BOARD_TIMES else v) for k, v in r.items()}
    pending = r.get("pending_reply")
    row["pending_reply"] = {**pending, "at": local_iso(pending["at"])} if pending else None
    row["answers"] = [{**x, "at": local_iso(x["at"])} for x in r.get("answers", ())]
    return row


def _answers_of(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every answer recorded in the meeting, oldest first, with the attendee's name and mobile."""
    out = [
        {"attendee_id": r["id"], "name": r["name"], "mobile": r["mobile"], **x}
        for r in board["attendees"]
        for x in r.get("answers", ())
    ]
    return sorted(out, key=lambda x: x["at"])


def _meeting_json(meeting: dict[str, Any]) -> dict[str, Any]:
    return {**jsonable(meeting), "reply_deadline": local_iso(meeting["reply_deadline"])}


def _short(t: float | None) -> str:
    """A time on the board: HH:MM today, MM-DD HH:MM otherwise."""
    if t is None:
        return ""
    when = dt.datetime.fromtimestamp(t)
    return when.strftime("%H:%M" if when.date() == dt.date.today() else "%m-%d %H:%M")


def _when(meeting: dict[str, Any]) -> str:
    start = dt.datetime.fromtimestamp(meeting["starts_at"])
    end = dt.datetime.fromtimestamp(meeting["ends_at"])
    return (
        f"{start:%Y-%m-%d %H:%M}–{end:%H:%M}"
        if start.date() == end.date()
        else f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M}"
    )


# ----- meetings ------------------------------------------------------------------------------------------


@meeting_app.command("create")
def create(
    title: Annotated[str, typer.Argument(help="The meeting's title (会议名称).")],
    start: Annotated[
        str, typer.Option("--start", "-s", help="Start, local time: '2026-12-01 09:00' (开始时间).")
    ],
    end: Annotated[
        str | None,
        typer.Option("--end", "-e", help="End, local time (结束时间); default one hour after the start."),
    ] = None,
    place: Annotated[str, typer.Option("--place", "-p", help="Where (地点).")] = "",
    agenda: Annotated[str, typer.Option("--agenda", help="The agenda (议程).")] = "",
    organiser: Annotated[str, typer.Option("--organiser", help="Who calls it (组织者).")] = "",
    attachments: Annotated[
        list[str] | None,
        typer.Option("--attachment", help="An attachment's name, listed in the notice (附件名); repeatable."),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            help="Notice text (通知模板) with placeholders {name} {title} {time} {end} {place} {code} "
            "{reply} {deadline} {agenda} {organiser}; "
            "default: '{name}您好：定于{time}在{place}召开{title}。{reply}'.",
            show_default=False,
        ),
    ] = None,
    mode: Annotated[
        str,
        typer.Option("--mode", help="How to notify (通知方式): sms, sms+voice (call the silent) or voice."),
    ] = "sms",
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="Send the notice at this local time (定时发送); default now.", show_default=False
        ),
    ] = None,
    deadline: Annotated[
        str | None,
        typer.Option(
            "--deadline",
            help="Reply deadline, local time (回复截止); later replies count, marked late.",
            show_default=False,
        ),
    ] = None,
    second_sms_after: Annotated[
        str | None,
        typer.Option(
            "--second-sms-after",
            help="Minutes after the notice to send a second SMS to those who have not replied (二次提醒); "
            "'none' turns it off; default from the configuration.",
            show_default=False,
        ),
    ] = None,
    call_after: Annotated[
        str | None,
        typer.Option(
            "--call-after",
            help="Minutes after the second SMS to call those still silent (语音催办, mode sms+voice); "
            "'none' turns it off.",
            show_default=False,
        ),
    ] = None,
    remind_before: Annotated[
        str | None,
        typer.Option(
            "--remind-before",
            help="Minutes before the start to remind those attending (会前提醒); 'none' turns it off.",
            show_default=False,
        ),
    ] = None,
    checkin_code: Annotated[
        str | None,
        typer.Option(
            "--checkin-code",
            help="Code that checks in on the day (签到码), up to 12 letters or digits; "
            "default four random digits.",
            show_default=False,
        ),
    ] = None,
    people: Annotated[
        list[str] | None,
        typer.Option(
            "--people",
            help="People from the address book by mobile or #id (人员); repeatable, comma-separated.",
        ),
    ] = None,
    departments: Annotated[
        list[str] | None,
        typer.Option("--dept", help="Departments with their sub-departments, e.g. 市政府/办公室 (部门)."),
    ] = None,
    groups: Annotated[
        list[str] | None, typer.Option("--group", help="Groups from the address book (分组).")
    ] = None,
    numbers: Annotated[
        list[str] | None,
        typer.Option("--number", help="Bare mobile numbers (手机号); repeatable, comma-separated."),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a meeting and notify its attendees (创建会议并通知参会人); a running daemon sends the notice."""
    if mode not in MODES:
        raise typer.BadParameter(f"{mode!r} is not one of: {', '.join(MODES)}", param_hint="--mode")
    if template is not None:
        try:
            list(string.Formatter().parse(template))
        except ValueError as e:
            raise typer.BadParameter(
                f"{e}; write {{{{ and }}}} for literal braces", param_hint="--template"
            ) from None
    spec = MeetingSpec(
        title=title,
        starts_at=_parse_time(start, "--start"),
        ends_at=_parse_time(end, "--end") if end is not None else None,
        place=place,
        agenda=agenda,
        organiser=organiser,
        attachments=_split(attachments),
        template=template,
        mode=mode,
        send_at=_parse_time(at, "--at") if at is not None else None,
        reply_deadline=_parse_time(deadline, "--deadline") if deadline is not None else None,
        second_sms_after=_minutes(second_sms_after, "--second-sms-after"),
        call_after=_minutes(call_after, "--call-after"),
        remind_before=_minutes(remind_before, "--remind-before"),
        checkin_code=checkin_code,
        people=[_ref(p) for p in _split(people)],
        departments=_split(departments),
        groups=_split(groups),
        numbers=_split(numbers),
    )
    cfg = read_config(config)
    with open_store(cfg) as db:
        svc = _service(cfg, db)
        meeting_id: int = _call(lambda: svc.create(spec))
        board = _board_or_fail(db, meeting_id)
    meeting, n = board["meeting"], board["counts"]["attendees"]
    if as_json:
        print_json(
            {"id": meeting_id, "code": f"#{meeting_id}", "attendees": n, "meeting": _meeting_json(meeting)}
        )
        return
    now = time.time()
    when = "now" if meeting["send_at"] <= now + 1 else local_text(meeting["send_at"])
    out.print(
        f"meeting {meeting_id} created (code #{meeting_id}): {n} attendee{'s' if n != 1 else ''}, "
        f"{_when(meeting)}, notice by {meeting['mode']} {when}; "
        f"check-in code {meeting['checkin_code'] or '-'}",
        markup=False,
        soft_wrap=True,
    )
    note(
        "a running daemon (masd run) sends the notice; 'masd meeting board "
        f"{meeting_id}' follows the replies",
        "dim",
    )


def _meetings_table(rows: Sequence[dict[str, Any]], counts: dict[int, dict[str, int]]) -> Table:
    table = Table(show_edge=False)
    for col, kw in (
        ("id", {"justify": "right"}),
        ("title 会议", {}),
        ("when 时间", {}),
        ("place 地点", {}),
        ("mode 方式", {}),
        ("state 状态", {}),
        ("attendees 人数", {"justify": "right"}),
        ("attend 参加", {"justify": "right"}),
        ("decline 不参加", {"justify": "right"}),
        ("leave 请假", {"justify": "right"}),
        ("no reply 未回复", {"justify": "right"}),
    ):
        table.add_column(col, **kw)  # type: ignore[arg-type]
    for m in rows:
        c = counts.get(int(m["id"]), {})
        table.add_row(
            str(m["id"]),
            Text(m["title"]),
            _when(m),
            Text(m["place"] or ""),
            m["mode"],
            Text(m["state"], style=_STATE_STYLE.get(m["state"], "")),
            str(c.get("attendees", 0)),
            Text(str(c.get("attend", 0)), style="green"),
            Text(str(c.get("decline", 0)), style="red"),
            Text(str(c.get("leave", 0)), style="yellow"),
            str(c.get("no_reply", 0)),
        )
    return table


def _search(
    config: Path | None,
    *,
    from_: str | None,
    to: str | None,
    text: str | None,
    attendee: str | None,
    limit: int,
    upcoming: bool,
) -> tuple[list[dict[str, Any]], dict[int, dict[str, int]]]:
    start = _parse_day(from_, "--from") if from_ is not None else None
    end = _parse_day(to, "--to", end=True) if to is not None else None
    cfg = read_config(config)
    with open_store(cfg) as db:

        def read(conn: Any) -> tuple[list[dict[str, Any]], dict[int, dict[str, int]]]:
            rows = store.find_meetings(
                conn,
                start=start,
                end=end,
                ends_after=time.time() if upcoming else None,
                text=text,
                attendee=attendee,
                soonest_first=upcoming,
                limit=limit,
            )
            return rows, store.attendee_counts(conn, [int(r["id"]) for r in rows])

        return db.read_sync(read)


FromOption = Annotated[
    str | None,
    typer.Option("--from", help="Meetings starting on or after this date (起始日期).", show_default=False),
]
ToOption = Annotated[
    str | None,
    typer.Option("--to", help="Meetings starting on or before this date (截止日期).", show_default=False),
]
TextOption = Annotated[
    str | None,
    typer.Option(
        "--text", help="Title, place or agenda contains this (标题/地点/议程包含).", show_default=False
    ),
]
AttendeeOption = Annotated[
    str | None,
    typer.Option(
        "--attendee",
        help="An attendee's name or mobile contains this (参会人姓名或手机).",
        show_default=False,
    ),
]
LimitOption = Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most this many meetings.")]


@meeting_app.command("list")
def list_meetings(
    from_: FromOption = None,
    to: ToOption = None,
    text: TextOption = None,
    attendee: AttendeeOption = None,
    limit: LimitOption = 200,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Meetings not yet over, soonest first (会议列表); --from/--to/--text/--attendee search the history."""
    upcoming = from_ is None and to is None and text is None and attendee is None
    rows, counts = _search(
        config, from_=from_, to=to, text=text, attendee=attendee, limit=limit, upcoming=upcoming
    )
    _show_meetings(rows, counts, as_json, "no meetings coming" if upcoming else "no meetings found")


def _show_meetings(
    rows: list[dict[str, Any]], counts: dict[int, dict[str, int]], as_json: bool, empty: str
) -> None:
    if as_json:
        print_json([{**_meeting_json(r), "counts": counts.get(int(r["id"]), {})} for r in rows])
        return
    if not rows:
        note(empty, "dim")
        return
    out.print(_meetings_table(rows, counts))


@meeting_app.command("history")
def history(
    from_: FromOption = None,
    to: ToOption = None,
    text: TextOption = None,
    attendee: AttendeeOption = None,
    limit: LimitOption = 1000,
    export_to: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="Write the results to this .xlsx or .csv file (导出).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    lang: Annotated[str, typer.Option("--lang", help="Language of the exported headers: zh or en.")] = "zh",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search past and coming meetings, newest first (会议记录查询); --export writes them to a file."""
    fmt = _export_format(export_to, lang)
    rows, counts = _search(
        config, from_=from_, to=to, text=text, attendee=attendee, limit=limit, upcoming=False
    )
    if export_to is None:
        _show_meetings(rows, counts, as_json, "no meetings found")
        return
    writer = export.history_xlsx if fmt == "xlsx" else export.history_csv
    _write_file(export_to, writer(rows, counts, lang=lang))  # type: ignore[arg-type]
    if as_json:
        print_json({"file": str(export_to), "format": fmt, "meetings": len(rows)})
    else:
        out.print(f"{len(rows)} meeting{'s' if len(rows) != 1 else ''} written to {export_to}", markup=False)


@meeting_app.command("show")
def show(
    meeting_id: Annotated[int, typer.Argument(metavar="ID", help="The meeting's id (its code without #).")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """One meeting: its details, counts, every answer recorded and what happened (会议详情)."""
    cfg = read_config(config)
    with open_store(cfg) as db:
        board = _board_or_fail(db, meeting_id)
        events = db.read_sync(lambda c: store.meeting_events(c, meeting_id, limit=50))
    m, counts = board["meeting"], board["counts"]
    answers = _answers_of(board)
    if as_json:
        print_json(
            {
                "meeting": _meeting_json(m),
                "counts": counts,
                "answers": [{**x, "at": local_iso(x["at"])} for x in answers],
                "log": jsonable(events),
            }
        )
        return

    def minutes(seconds: int | None) -> str:
        return "off" if seconds is None else f"{seconds / 60:g} min"

    details = Table.grid(padding=(0, 2))
    for label, value in (
        ("id 编号", f"{m['id']} (code #{m['id']})"),
        ("title 会议", m["title"]),
        ("when 时间", _when(m)),
        ("place 地点", m["place"] or "-"),
        ("organiser 组织者", m["organiser"] or "-"),
        ("app 应用", m.get("app") or "- (command line)"),
        ("agenda 议程", m["agenda"] or "-"),
        ("attachments 附件", ", ".join(m["attachments"]) or "-"),
        ("mode 方式", m["mode"]),
        ("state 状态", m["state"] + (f" (revision {m['revision']})" if m["revision"] else "")),
        (
            "notice 通知",
            local_text(m["send_at"]) + (f", sent {local_text(m['notified_at'])}" if m["notified_at"] else ""),
        ),
        ("deadline 截止", local_text(m["reply_deadline"])),
        ("second SMS 二次短信", minutes(m["second_sms_after"]) + " after the notice"),
        (
            "call 语音",
            minutes(m["call_after"]) + " after the second SMS" if m["mode"] == "sms+voice" else "-",
        ),
        ("reminder 会前提醒", minutes(m["remind_before"]) + " before the start"),
        ("check-in 签到码", m["checkin_code"] or "-"),
    ):
        details.add_row(label, Text(str(value)))
    out.print(details)
    out.print(_counts_line(counts), markup=False, soft_wrap=True)
    if answers:
        table = Table(show_edge=False, title="answers 回复记录", title_justify="left")
        for col in ("at", "who", "answer", "reason / note", "reply"):
            table.add_column(col, overflow="fold")
        for x in answers:
            answer = _ANSWER_WORD.get(x["kind"], x["kind"]) + (" ☎" if x["via"] == "voice" else "")
            answer += " (逾期 late)" if x["late"] else ""
            who = f"{x['name'] or ''} {x['mobile']}".strip()
            table.add_row(local_text(x["at"]), Text(who), answer, Text(x["text"]), Text(x["reply"]))
        out.print(table)
    if events:
        table = Table(show_edge=False, title="log 记录", title_justify="left")
        for col in ("at", "what", "who", "detail"):
            table.add_column(col)
        for e in events:
            who = f"{e['name'] or ''} {e['mobile'] or ''}".strip()
            table.add_row(local_text(e["at"]), e["kind"], Text(who), Text(e["detail"]))
        out.print(table)


def _counts_line(c: dict[str, int]) -> str:
    return (
        f"attendees {c['attendees']} · notified {c['notified']} · delivered {c['delivered']} · "
        f"attend {c['attend']} · decline {c['decline']} · leave {c['leave']} · no reply {c['no_reply']} "
        f"(late {c['late']}) · awaiting an answer {c['awaiting']} · second SMS {c['second_sms']} · "
        f"called {c['called']} · reminded {c['reminded']} · checked in {c['checked_in']}"
    )


def _board_view(board: dict[str, Any]) -> Group:
    m, c = board["meeting"], board["counts"]
    head = Text()
    head.append(f"#{m['id']} {m['title']}", style="bold")
    head.append(f"  {_when(m)}  {m['place']}  ")
    head.append(m["state"], style=_STATE_STYLE.get(m["state"], ""))
    if m.get("app"):
        head.append(f"  app {m['app']}", style="dim")
    counts = Text()
    for label, key, style in (
        ("应到 attendees", "attendees", "bold"),
        ("已通知 notified", "notified", ""),
        ("已送达 delivered", "delivered", "green"),
        ("未送达 undelivered", "undelivered", "red"),
        ("参加 attend", "attend", "green"),
        ("不参加 decline", "decline", "red"),
        ("请假 leave", "leave", "yellow"),
        ("未回复 no reply", "no_reply", "dim"),
        ("待确认 awaiting", "awaiting", "yellow"),
        ("逾期 late", "late", "magenta"),
        ("已呼叫 called", "called", ""),
        ("已提醒 reminded", "reminded", ""),
        ("已签到 checked in", "checked_in", "cyan"),
    ):
        counts.append(f"{label} ", style="dim")
        counts.append(str(c[key]), style=style)
        counts.append("   ")
    table = Table(show_edge=False, expand=False)
    for col in (
        "name 姓名",
        "dept 部门",
        "mobile 手机",
        "notified 通知",
        "delivered 送达",
        "reply 回复",
        "answers 历次回复",
        "reminded 提醒",
        "called 呼叫",
        "checked in 签到",
        "comment 备注",
    ):
        # A number cut short with an ellipsis is useless: it stays whole, everything else wraps.
        mobile = col.startswith("mobile")
        table.add_column(col, no_wrap=mobile, min_width=11 if mobile else None, overflow="fold")
    for r in board["attendees"]:
        state = r["notice_state"]
        if state == "delivered":
            delivered = Text(_short(r["delivered"]) or "✓", style="green")
        elif state:
            delivered = Text(state, style="red")
        else:
            delivered = Text("…" if r["notified"] else "", style="dim")
        if r["response"]:
            reply = Text(_RESPONSE_WORD[r["response"]], style=_RESPONSE_STYLE[r["response"]])
            if r["reason"]:
                reply.append(f": {r['reason']}")
            if r["late"]:
                reply.append(" (逾期 late)", style="magenta")
            if r["response_via"] == "voice":
                reply.append(" ☎", style="dim")
        else:
            reply = Text("— 未回复", style="dim")
            if r["second_sms"]:
                reply.append(f" (2nd SMS {_short(r['second_sms'])})", style="dim")
        if r.get("pending_reply"):
            # Asked back: the reply that recorded nothing, until an answer comes.
            reply.append("\n待确认 awaiting: ", style="yellow")
            reply.append(r["pending_reply"]["text"] or "(empty)", style="yellow")
        history = Text(" → ".join(_ANSWER_WORD.get(x["kind"], x["kind"]) for x in r.get("answers", ())))
        called = Text("")
        if r["called"]:
            outcome = r["call_outcome"] or "calling"
            called = Text(
                f"{_short(r['called'])} {outcome}",
                style="green" if outcome == "answered" else ("yellow" if outcome == "calling" else "red"),
            )
        table.add_row(
            Text(r["name"] or "-"),
            Text(r["department"] or ""),
            r["mobile"],
            _short(r["notified"]),
            delivered,
            reply,
            history,
            _short(r["reminded"]),
            called,
            Text(_short(r["checked_in"]), style="cyan"),
            Text(r["comment"] or "", style="dim"),
        )
    return Group(head, counts, table)


@meeting_app.command("board")
def board_cmd(
    meeting_id: Annotated[int, typer.Argument(metavar="ID", help="The meeting's id (its code without #).")],
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep refreshing until Ctrl-C (实时刷新).")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.5, max=3600, help="Seconds between refreshes with --watch.")
    ] = 3.0,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """The organiser's board (签到看板): counts, and per attendee notified, delivered, reply (and a reply
    awaiting an answer after an ask-back), every answer given, reminded, called and checked in.

    With --watch and --json it prints one JSON document per line at each refresh."""
    cfg = read_config(config)
    with open_store(cfg) as db:
        board = _board_or_fail(db, meeting_id)
        if not watch:
            if as_json:
                print_json(_board_json(board))
            else:
                out.print(_board_view(board))
            return
        try:
            if as_json:
                while True:
                    sys.stdout.write(json.dumps(_board_json(board), ensure_ascii=False, default=str) + "\n")
                    sys.stdout.flush()
                    time.sleep(interval)
                    board = _board_or_fail(db, meeting_id)
            with Live(_board_view(board), console=out, auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    board = _board_or_fail(db, meeting_id)
                    live.update(_board_view(board), refresh=True)
        except KeyboardInterrupt:
            return


def _export_format(path: Path | None, lang: str) -> str:
    if lang not in ("zh", "en"):
        raise typer.BadParameter(f"{lang!r} is not zh or en", param_hint="--lang")
    if path is None:
        return ""
    try:
        return export.format_of(path.name)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="FILE") from None


def _write_file(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror or e}")


@meeting_app.command("export")
def export_cmd(
    meeting_id: Annotated[int, typer.Argument(metavar="ID", help="The meeting's id.")],
    file: Annotated[
        Path, typer.Argument(help="Where to write: a .xlsx or .csv file (导出文件).", dir_okay=False)
    ],
    lang: Annotated[
        str, typer.Option("--lang", help="Language of the headers and answers: zh or en.")
    ] = "zh",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export the board to XLSX or CSV (导出签到表), chosen by the file's extension."""
    fmt = _export_format(file, lang)
    cfg = read_config(config)
    with open_store(cfg) as db:
        board = _board_or_fail(db, meeting_id)
    writer = export.board_xlsx if fmt == "xlsx" else export.board_csv
    _write_file(file, writer(board, lang=lang))  # type: ignore[arg-type]
    n = len(board["attendees"])
    if as_json:
        print_json({"file": str(file), "format": fmt, "meeting": meeting_id, "attendees": n})
    else:
        out.print(
            f"board of meeting {meeting_id}: {n} attendee{'s' if n != 1 else ''} written to {file}",
            markup=False,
        )


@meeting_app.command("change")
def change(
    meeting_id: Annotated[int, typer.Argument(metavar="ID", help="The meeting's id.")],
    title: Annotated[
        str | None, typer.Option("--title", help="New title (会议名称).", show_default=False)
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            "-s",
            help="New start, local time; the end moves with it unless --end is given.",
            show_default=False,
        ),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", "-e", help="New end, local time.", show_default=False)
    ] = None,
    place: Annotated[
        str | None, typer.Option("--place", "-p", help="New place (地点).", show_default=False)
    ] = None,
    agenda: Annotated[
        str | None, typer.Option("--agenda", help="New agenda (议程).", show_default=False)
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a meeting (会议变更); everyone already notified gets a change notice."""
    changes: dict[str, Any] = {
        "title": title,
        "starts_at": _parse_time(start, "--start") if start is not None else None,
        "ends_at": _parse_time(end, "--end") if end is not None else None,
        "place": place,
        "agenda": agenda,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        raise typer.BadParameter("nothing to change; give --title, --start, --end, --place or --agenda")
    if "title" in changes and not changes["title"].strip():
        raise typer.BadParameter("must not be empty", param_hint="--title")
    if "starts_at" in changes and changes["starts_at"] <= time.time():
        raise typer.BadParameter(f"{local_text(changes['starts_at'])} is in the past", param_hint="--start")
    cfg = read_config(config)
    with open_store(cfg) as db:
        _meeting_or_fail(db, meeting_id)
        svc = _service(cfg, db)

        async def do() -> int:
            await svc.ensure_app()
            return await svc.change(meeting_id, **changes)

        told: int = _call(do)
        meeting = _meeting_or_fail(db, meeting_id)
    if as_json:
        print_json({"id": meeting_id, "told": told, "meeting": _meeting_json(meeting)})
        return
    out.print(
        f"meeting {meeting_id} changed: {_when(meeting)} {meeting['place']}; "
        f"the running daemon tells {told} attendee{'s' if told != 1 else ''} (change notice)",
        markup=False,
        soft_wrap=True,
    )


@meeting_app.command("cancel")
def cancel(
    meeting_id: Annotated[int, typer.Argument(metavar="ID", help="The meeting's id.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a meeting (取消会议); everyone already notified gets a cancellation notice."""
    cfg = read_config(config)
    with open_store(cfg) as db:
        before = _meeting_or_fail(db, meeting_id)
        svc = _service(cfg, db)

        async def do() -> int:
            await svc.ensure_app()
            return await svc.cancel(meeting_id)

        told: int = _call(do)
    already = before["state"] == store.CANCELLED
    if as_json:
        print_json({"id": meeting_id, "told": told, "already_cancelled": already})
        return
    if already:
        out.print(f"meeting {meeting_id} was already cancelled; nothing sent", markup=False)
        return
    out.print(
        f"meeting {meeting_id} cancelled; "
        f"the running daemon tells {told} attendee{'s' if told != 1 else ''} (cancellation notice)",
        markup=False,
    )


# ----- schedule reminders and memos ----------------------------------------------------------------------


def _person(db: Database, ref: str) -> tuple[str, str]:
    """(mobile, name) of a person in the address book."""
    from masd.modules.contacts import store as book

    try:
        found = db.read_sync(lambda c: book.resolve(c, people=[_ref(ref)]))
    except ContactError as e:
        fail(f"--person ({ref}): {e.reason}")
    return found[0].mobile, found[0].name


def _add_item(
    config: Path | None,
    as_json: bool,
    *,
    kind: str,
    mobile: str | None,
    person: str | None,
    title: str,
    text: str,
    at: str | None,
) -> None:
    if (mobile is None) == (person is None):
        raise typer.BadParameter("give either --mobile or --person", param_hint="--mobile/--person")
    remind_at = _parse_time(at, "--at") if at is not None else None
    if remind_at is not None and remind_at < time.time() - 60:
        raise typer.BadParameter(f"{local_text(remind_at)} is in the past", param_hint="--at")
    cfg = read_config(config)
    with open_store(cfg) as db:
        name = ""
        if person is not None:
            mobile, name = _person(db, person)
        assert mobile is not None
        svc = _service(cfg, db)
        number = mobile
        item_id: int = _call(
            lambda: svc.add_schedule_item(
                kind=kind, mobile=number, title=title, text=text, remind_at=remind_at, name=name
            )
        )
        item = db.read_sync(lambda c: store.get_schedule_item(c, item_id))
    assert item is not None
    if as_json:
        print_json(jsonable(item))
        return
    word = "reminder" if kind == "reminder" else "memo"
    when = (
        f", sent by SMS at {local_text(remind_at)}" if remind_at is not None else " (no time: kept, not sent)"
    )
    out.print(f"{word} {item_id} for {item['name'] or item['mobile']}{when}", markup=False, soft_wrap=True)


MobileOption = Annotated[
    str | None, typer.Option("--mobile", "-m", help="The person's mobile (手机号).", show_default=False)
]
PersonOption = Annotated[
    str | None,
    typer.Option(
        "--person", help="A person in the address book, by mobile or #id (通讯录人员).", show_default=False
    ),
]
ItemTitle = Annotated[str, typer.Option("--title", help="What it is about (标题).")]
ItemText = Annotated[str, typer.Option("--text", help="More detail, sent after the title (内容).")]


@schedule_app.command("add")
def schedule_add(
    title: ItemTitle,
    at: Annotated[
        str, typer.Option("--at", help="When to send it, local time: '2026-12-01 08:30' (提醒时间).")
    ],
    mobile: MobileOption = None,
    person: PersonOption = None,
    text: ItemText = "",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a schedule reminder (日程提醒): an SMS to one person at a set time."""
    _add_item(config, as_json, kind="reminder", mobile=mobile, person=person, title=title, text=text, at=at)


@schedule_app.command("memo")
def schedule_memo(
    title: ItemTitle,
    mobile: MobileOption = None,
    person: PersonOption = None,
    text: ItemText = "",
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="Also send it by SMS at this local time (提醒时间); without it, only kept.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a memo (备忘录) for a person; with --at it is also sent by SMS then."""
    _add_item(config, as_json, kind="memo", mobile=mobile, person=person, title=title, text=text, at=at)


@schedule_app.command("list")
def schedule_list(
    kind: Annotated[str, typer.Option("--kind", help="reminder, memo or all (类型).")] = "all",
    mobile: MobileOption = None,
    pending: Annotated[
        bool | None,
        typer.Option(
            "--pending/--sent", help="Only those still to send, or only those sent.", show_default=False
        ),
    ] = None,
    limit: LimitOption = 200,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Schedule reminders and memos, by time (日程提醒与备忘录列表)."""
    if kind not in ("reminder", "memo", "all"):
        raise typer.BadParameter(f"{kind!r} is not reminder, memo or all", param_hint="--kind")
    number = None
    if mobile is not None:
        from masd.core import recipients as rcpt

        try:
            number = rcpt.normalize(mobile)
        except rcpt.InvalidRecipient as e:
            raise typer.BadParameter(e.reason, param_hint="--mobile") from None
    cfg = read_config(config)
    with open_store(cfg) as db:
        items = db.read_sync(
            lambda c: store.list_schedule_items(
                c, kind=None if kind == "all" else kind, mobile=number, pending=pending, limit=limit
            )
        )
    if as_json:
        print_json(jsonable(items))
        return
    if not items:
        note("no reminders or memos", "dim")
        return
    table = Table(show_edge=False)
    for col in ("id", "kind 类型", "who 人员", "title 标题", "text 内容", "at 时间", "sent 已发送"):
        table.add_column(col)
    for it in items:
        sent = (
            Text(local_text(it["sent_at"]), style="green")
            if it["sent_at"]
            else Text("-" if it["remind_at"] else "", style="dim")
        )
        table.add_row(
            str(it["id"]),
            "提醒 reminder" if it["kind"] == "reminder" else "备忘 memo",
            Text(f"{it['name']} {it['mobile']}".strip()),
            Text(it["title"]),
            Text(it["text"]),
            local_text(it["remind_at"]) if it["remind_at"] else "-",
            sent,
        )
    out.print(table)
