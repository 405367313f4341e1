"""Exports of the organiser's board (签到表) and of the meeting history, as XLSX and CSV: pure functions from
the store's rows (:func:`masd.modules.meeting.store.board`, :func:`~masd.modules.meeting.store.find_meetings`)
to the bytes of a file. The CLI writes them to disk, the HTTP API serves them as downloads.

Both formats carry the same table, one row per attendee (or per meeting), with headers in Chinese or
English; the XLSX board also has a sheet of every answer recorded. Times are the server's local time:
real date cells in XLSX, so a spreadsheet sorts and filters them, and ``YYYY-MM-DD HH:MM:SS`` in CSV.
CSV is UTF-8 with a byte-order mark, which is what makes Excel read Chinese correctly. Text that came
from a handset (a leave reason, a comment, a reply) is data, never a formula: XLSX cells are written as
strings and CSV cells that a spreadsheet would evaluate get a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from masd.core.times import local_datetime, local_text

__all__ = [
    "CSV_TYPE",
    "FORMATS",
    "XLSX_TYPE",
    "Lang",
    "answers_table",
    "board_csv",
    "board_table",
    "board_xlsx",
    "format_of",
    "history_csv",
    "history_table",
    "history_xlsx",
]

Lang = Literal["zh", "en"]
FORMATS = ("xlsx", "csv")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_TYPE = "text/csv; charset=utf-8"

_TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
# What a spreadsheet would start evaluating; a bare E.164 number ("+4915…") is left as it is.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PHONE = re.compile(r"^\+[0-9]{6,15}$")
# openpyxl is imported where a workbook is made: `masd run` and every other command should not pay
# for it at start.
_HEADER_COLOUR = "DDEBF7"


class _Time(float):
    """Epoch seconds that the writers render as a time."""


# ----- words -------------------------------------------------------------------------------------------

_RESPONSE = {
    "zh": {"attend": "参加", "decline": "不参加", "leave": "请假", None: "未回复"},
    "en": {"attend": "attend", "decline": "decline", "leave": "leave", None: "no reply"},
}
_ANSWER = {
    "zh": {"attend": "参加", "decline": "不参加", "leave": "请假", "checkin": "签到"},
    "en": {"attend": "attend", "decline": "decline", "leave": "leave", "checkin": "check-in"},
}
_DELIVERY = {
    "zh": {
        "delivered": "已送达",
        "undelivered": "未送达",
        "expired": "已过期",
        "failed": "失败",
        "refused": "未发送",
    },
    "en": {},
}
_VIA = {"zh": {"sms": "短信", "voice": "语音"}, "en": {}}
_STATE = {
    "zh": {"scheduled": "待发送", "notified": "已通知", "cancelled": "已取消"},
    "en": {},
}
_MODE = {"zh": {"sms": "短信", "sms+voice": "短信+语音", "voice": "语音"}, "en": {}}
_YES = {"zh": "是", "en": "yes"}


def _outcome(value: str | None, lang: Lang) -> str:
    if not value:
        return ""
    if lang == "en":
        return value
    words = {
        "answered": "已接听",
        "no-answer": "未接听",
        "busy": "占线",
        "declined": "拒接",
        "failed": "失败",
    }
    head, _, rest = value.partition(" ")
    return words.get(head, head) + (f" {rest}" if rest else "")


# ----- the board -----------------------------------------------------------------------------------------

_Column = tuple[str, str, str, Callable[[Mapping[str, Any], Lang], Any]]


def _t(key: str) -> Callable[[Mapping[str, Any], Lang], Any]:
    return lambda r, _lang: None if r.get(key) is None else _Time(r[key])


def _plain(key: str) -> Callable[[Mapping[str, Any], Lang], Any]:
    return lambda r, _lang: r.get(key) or ""


_BOARD_COLUMNS: tuple[_Column, ...] = (
    ("name", "姓名", "Name", _plain("name")),
    ("department", "部门", "Department", _plain("department")),
    ("mobile", "手机", "Mobile", _plain("mobile")),
    ("notified", "通知时间", "Notified", _t("notified")),
    (
        "delivery",
        "送达",
        "Delivery",
        lambda r, lang: (
            _DELIVERY[lang].get(r["notice_state"], r["notice_state"]) if r["notice_state"] else ""
        ),
    ),
    ("delivered", "送达时间", "Delivered", _t("delivered")),
    ("response", "回复", "Reply", lambda r, lang: _RESPONSE[lang][r["response"]]),
    ("reason", "请假原因", "Reason", _plain("reason")),
    ("late", "逾期", "Late", lambda r, lang: _YES[lang] if r.get("late") else ""),
    ("responded", "回复时间", "Replied", _t("responded")),
    (
        "via",
        "回复方式",
        "Via",
        lambda r, lang: _VIA[lang].get(r["response_via"], r["response_via"]) if r.get("response_via") else "",
    ),
    ("second_sms", "二次短信", "Second SMS", _t("second_sms")),
    ("called", "呼叫时间", "Called", _t("called")),
    ("call_outcome", "呼叫结果", "Call outcome", lambda r, lang: _outcome(r.get("call_outcome"), lang)),
    ("reminded", "会前提醒", "Reminded", _t("reminded")),
    ("checked_in", "签到时间", "Checked in", _t("checked_in")),
    ("comment", "备注", "Comment", _plain("comment")),
    (
        "refusals",
        "未发送原因",
        "Not sent",
        lambda r, _lang: "; ".join(f"{x['send']}: {x['reason']}" for x in r.get("refusals") or ()),
    ),
    # Added after the others, so that a reader of the older columns by position is not misled.
    (
        "awaiting",
        "待确认回复",
        "Awaiting answer",
        lambda r, _lang: (r.get("pending_reply") or {}).get("text") or "",
    ),
    (
        "answers",
        "历次回复",
        "Answers",
        lambda r, lang: " → ".join(_ANSWER[lang].get(x["kind"], x["kind"]) for x in r.get("answers") or ()),
    ),
)

# The sheet of every answer recorded, one row each, oldest first (XLSX only; CSV has one table).
_ANSWER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("姓名", "Name"),
    ("部门", "Department"),
    ("手机", "Mobile"),
    ("回复时间", "At"),
    ("回复", "Answer"),
    ("原因或备注", "Reason or note"),
    ("短信原文", "Reply as sent"),
    ("回复方式", "Via"),
    ("逾期", "Late"),
)

_COUNT_WORDS = {
    "attendees": ("应到人数", "Attendees"),
    "notified": ("已通知", "Notified"),
    "delivered": ("已送达", "Delivered"),
    "undelivered": ("未送达", "Undelivered"),
    "refused": ("未发送（应用限额）", "Refused by the app's limits"),
    "attend": ("参加", "Attend"),
    "decline": ("不参加", "Decline"),
    "leave": ("请假", "Leave"),
    "no_reply": ("未回复", "No reply"),
    "awaiting": ("待确认", "Awaiting an answer"),
    "late": ("逾期回复", "Late replies"),
    "second_sms": ("二次短信", "Second SMS"),
    "called": ("已呼叫", "Called"),
    "reminded": ("已提醒", "Reminded"),
    "checked_in": ("已签到", "Checked in"),
}


def board_table(board: Mapping[str, Any], *, lang: Lang = "zh") -> tuple[list[str], list[list[Any]]]:
    """The board as a header and one row per attendee. Time cells are epoch seconds wrapped in a
    ``float`` subclass the writers recognise; everything else is text."""
    header = [c[1] if lang == "zh" else c[2] for c in _BOARD_COLUMNS]
    rows = [[c[3](r, lang) for c in _BOARD_COLUMNS] for r in board["attendees"]]
    return header, rows


def answers_table(board: Mapping[str, Any], *, lang: Lang = "zh") -> tuple[list[str], list[list[Any]]]:
    """Every answer recorded in the meeting as a header and one row each, oldest first."""
    header = [c[0] if lang == "zh" else c[1] for c in _ANSWER_COLUMNS]
    given = [(r, x) for r in board["attendees"] for x in r.get("answers") or ()]
    rows = [
        [
            r.get("name") or "",
            r.get("department") or "",
            r.get("mobile") or "",
            _Time(x["at"]),
            _ANSWER[lang].get(x["kind"], x["kind"]),
            x.get("text") or "",
            x.get("reply") or "",
            _VIA[lang].get(x["via"], x["via"]) if x.get("via") else "",
            _YES[lang] if x.get("late") else "",
        ]
        for r, x in sorted(given, key=lambda rx: rx[1]["at"])
    ]
    return header, rows


def _summary(board: Mapping[str, Any], lang: Lang) -> list[tuple[str, Any]]:
    m = board["meeting"]
    zh = lang == "zh"
    lines: list[tuple[str, Any]] = [
        ("会议编号" if zh else "Meeting", f"#{m['id']}"),
        ("会议名称" if zh else "Title", m["title"]),
        ("开始时间" if zh else "Starts", _Time(m["starts_at"])),
        ("结束时间" if zh else "Ends", _Time(m["ends_at"])),
        ("地点" if zh else "Place", m.get("place") or ""),
        ("组织者" if zh else "Organiser", m.get("organiser") or ""),
        ("创建应用" if zh else "App", m.get("app") or ("命令行" if zh else "command line")),
        ("议程" if zh else "Agenda", m.get("agenda") or ""),
        ("附件" if zh else "Attachments", "、".join(m.get("attachments") or ())),
        ("通知方式" if zh else "Mode", _MODE[lang].get(m["mode"], m["mode"])),
        ("状态" if zh else "State", _STATE[lang].get(m["state"], m["state"])),
        ("签到码" if zh else "Check-in code", m.get("checkin_code") or ""),
        (
            "回复截止" if zh else "Reply deadline",
            _Time(m["reply_deadline"]) if m.get("reply_deadline") else "",
        ),
    ]
    counts = board["counts"]
    lines += [(words[0 if zh else 1], counts[key]) for key, words in _COUNT_WORDS.items() if key in counts]
    return lines


def board_csv(board: Mapping[str, Any], *, lang: Lang = "zh") -> bytes:
    header, rows = board_table(board, lang=lang)
    return _csv(header, rows)


def board_xlsx(board: Mapping[str, Any], *, lang: Lang = "zh") -> bytes:
    """Three sheets: the attendees (header in row 1, one row each), a summary of the meeting and its
    counts, and every answer recorded (回复记录: who, when, what, from which reply)."""
    header, rows = board_table(board, lang=lang)
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "签到表" if lang == "zh" else "Board"
    _fill_table(ws, header, rows)
    summary = wb.create_sheet("汇总" if lang == "zh" else "Summary")
    for key, value in _summary(board, lang):
        _append(summary, [key, value])
    for row in summary.iter_rows(min_col=1, max_col=1):
        row[0].font = _font_bold()
    summary.column_dimensions["A"].width = 16
    summary.column_dimensions["B"].width = 40
    history = wb.create_sheet("回复记录" if lang == "zh" else "Answers")
    _fill_table(history, *answers_table(board, lang=lang))
    return _save(wb)


# ----- the history ---------------------------------------------------------------------------------------

_HISTORY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("id", "编号", "ID"),
    ("title", "会议名称", "Title"),
    ("starts_at", "开始时间", "Starts"),
    ("ends_at", "结束时间", "Ends"),
    ("place", "地点", "Place"),
    ("organiser", "组织者", "Organiser"),
    ("mode", "通知方式", "Mode"),
    ("state", "状态", "State"),
    ("attendees", "应到人数", "Attendees"),
    ("attend", "参加", "Attend"),
    ("decline", "不参加", "Decline"),
    ("leave", "请假", "Leave"),
    ("no_reply", "未回复", "No reply"),
    ("app", "创建应用", "App"),  # last, so that a reader of the older columns by position is not misled
)


def history_table(
    meetings: Sequence[Mapping[str, Any]],
    counts: Mapping[int, Mapping[str, int]],
    *,
    lang: Lang = "zh",
) -> tuple[list[str], list[list[Any]]]:
    """Meetings as a header and one row each, with their answer counts (``counts`` by meeting id)."""
    i = 1 if lang == "zh" else 2
    header = [c[i] for c in _HISTORY_COLUMNS]
    rows: list[list[Any]] = []
    for m in meetings:
        c = counts.get(int(m["id"]), {})
        rows.append(
            [
                int(m["id"]),
                m["title"],
                _Time(m["starts_at"]),
                _Time(m["ends_at"]),
                m.get("place") or "",
                m.get("organiser") or "",
                _MODE[lang].get(m["mode"], m["mode"]),
                _STATE[lang].get(m["state"], m["state"]),
                *(int(c.get(k, 0)) for k in ("attendees", "attend", "decline", "leave", "no_reply")),
                m.get("app") or "",
            ]
        )
    return header, rows


def history_csv(
    meetings: Sequence[Mapping[str, Any]], counts: Mapping[int, Mapping[str, int]], *, lang: Lang = "zh"
) -> bytes:
    header, rows = history_table(meetings, counts, lang=lang)
    return _csv(header, rows)


def history_xlsx(
    meetings: Sequence[Mapping[str, Any]], counts: Mapping[int, Mapping[str, int]], *, lang: Lang = "zh"
) -> bytes:
    header, rows = history_table(meetings, counts, lang=lang)
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "会议记录" if lang == "zh" else "Meetings"
    _fill_table(ws, header, rows)
    return _save(wb)


def format_of(filename: str) -> str:
    """``xlsx`` or ``csv`` from a file name's extension; ValueError for anything else."""
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if ext not in FORMATS:
        raise ValueError(f"the file name must end in .xlsx or .csv, not {filename!r}")
    return ext


# ----- writing -------------------------------------------------------------------------------------------


def _text_for_csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, _Time):
        return local_text(value)
    text = str(value)
    if text.startswith(_FORMULA_START) and not _PHONE.match(text):
        return "'" + text
    return text


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_text_for_csv(v) for v in row])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _cell(value: Any) -> Any:
    if isinstance(value, _Time):
        return local_datetime(value)
    if isinstance(value, str):
        # Control characters from a handset would make the file unreadable; XLSX cannot hold them.
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        return ILLEGAL_CHARACTERS_RE.sub("", value)
    return value


def _append(ws: Any, values: list[Any]) -> None:
    ws.append([_cell(v) for v in values])
    for col, value in enumerate(values, start=1):
        cell = ws.cell(ws.max_row, col)
        if isinstance(value, _Time):
            cell.number_format = _TIME_FORMAT
        elif isinstance(value, str):
            # A string is stored as a string, even one starting with "=": it may have come from a handset.
            cell.data_type = "s"


def _font_bold() -> Any:
    from openpyxl.styles import Font

    return Font(bold=True)


def _fill_table(ws: Any, header: list[str], rows: list[list[Any]]) -> None:
    from openpyxl.styles import PatternFill
    from openpyxl.utils import get_column_letter

    ws.append(header)
    for cell in ws[1]:
        cell.font = _font_bold()
        cell.fill = PatternFill("solid", fgColor=_HEADER_COLOUR)
    widths = [max(6, len(h) * 2) for h in header]
    for row in rows:
        _append(ws, row)
        for col, value in enumerate(row):
            if isinstance(value, _Time):
                widths[col] = max(widths[col], 19)
            elif isinstance(value, str):
                widths[col] = min(40, max(widths[col], len(value) * 2))
    for col, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(col)].width = width
    ws.freeze_panes = "A2"
    if rows:
        ws.auto_filter.ref = f"A1:{get_column_letter(len(header))}{len(rows) + 1}"


def _save(wb: Any) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
