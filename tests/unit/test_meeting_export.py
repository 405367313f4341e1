"""The board and history exports: the bytes of XLSX and CSV files, read back with openpyxl and csv."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest
from openpyxl import load_workbook

from masd.modules.meeting import export

START = dt.datetime(2030, 5, 20, 9, 0).timestamp()
NOTIFIED = dt.datetime(2030, 5, 19, 8, 0, 5).timestamp()


def _row(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 1,
        "name": "张三",
        "department": "市政府/办公室",
        "mobile": "13800000001",
        "notified": NOTIFIED,
        "delivered": NOTIFIED + 3,
        "notice_state": "delivered",
        "response": None,
        "reason": "",
        "late": False,
        "response_via": None,
        "responded": None,
        "second_sms": None,
        "called": None,
        "call_outcome": None,
        "reminded": None,
        "checked_in": None,
        "comment": "",
    }
    row.update(fields)
    return row


def _board(*rows: dict[str, Any]) -> dict[str, Any]:
    meeting = {
        "id": 42,
        "title": "周一例会",
        "starts_at": START,
        "ends_at": START + 3600,
        "place": "三楼会议室",
        "agenda": "",
        "organiser": "办公室",
        "attachments": ["议程.docx", "名单.xlsx"],
        "mode": "sms+voice",
        "state": "notified",
        "checkin_code": "4821",
        "reply_deadline": START - 3600,
    }
    counts = {"attendees": len(rows), "attend": sum(1 for r in rows if r["response"] == "attend")}
    return {"meeting": meeting, "counts": counts, "attendees": list(rows)}


def _sheet_rows(data: bytes, sheet: int = 0) -> list[tuple[Any, ...]]:
    return list(load_workbook(io.BytesIO(data)).worksheets[sheet].iter_rows(values_only=True))


def _csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def test_xlsx_board_has_a_header_and_one_row_per_attendee() -> None:
    board = _board(_row(), _row(id=2, name="李四", mobile="13800000002", response="attend"))
    rows = _sheet_rows(export.board_xlsx(board))
    assert rows[0][:3] == ("姓名", "部门", "手机")
    assert [(r[0], r[2]) for r in rows[1:]] == [("张三", "13800000001"), ("李四", "13800000002")]


def test_xlsx_board_writes_times_as_local_date_cells() -> None:
    rows = _sheet_rows(export.board_xlsx(_board(_row())))
    header = rows[0]
    cells = dict(zip(header, rows[1], strict=True))
    assert cells["通知时间"] == dt.datetime(2030, 5, 19, 8, 0, 5)


def test_board_answers_are_words_in_the_chosen_language() -> None:
    board = _board(
        _row(response="leave", reason="孩子发烧", late=True, response_via="sms"),
        _row(id=2, mobile="13800000002", response=None, called=NOTIFIED, call_outcome="no-answer (486)"),
    )
    zh = _csv_rows(export.board_csv(board, lang="zh"))
    first = dict(zip(zh[0], zh[1], strict=True))
    assert (first["回复"], first["请假原因"], first["逾期"], first["回复方式"]) == (
        "请假",
        "孩子发烧",
        "是",
        "短信",
    )
    second = dict(zip(zh[0], zh[2], strict=True))
    assert (second["回复"], second["呼叫结果"]) == ("未回复", "未接听 (486)")
    en = _csv_rows(export.board_csv(board, lang="en"))
    first_en = dict(zip(en[0], en[1], strict=True))
    assert (first_en["Reply"], first_en["Late"], first_en["Delivery"]) == ("leave", "yes", "delivered")


def test_csv_board_starts_with_a_byte_order_mark_for_excel() -> None:
    assert export.board_csv(_board(_row())).startswith("\ufeff".encode())


def test_csv_board_writes_times_as_local_text() -> None:
    rows = _csv_rows(export.board_csv(_board(_row())))
    assert dict(zip(rows[0], rows[1], strict=True))["通知时间"] == "2030-05-19 08:00:05"


def test_csv_cells_that_a_spreadsheet_would_evaluate_are_quoted_as_text() -> None:
    rows = _csv_rows(export.board_csv(_board(_row(comment='=HYPERLINK("http://x")', response="attend"))))
    assert dict(zip(rows[0], rows[1], strict=True))["备注"] == '\'=HYPERLINK("http://x")'


def test_csv_leaves_an_international_number_as_it_is() -> None:
    rows = _csv_rows(export.board_csv(_board(_row(mobile="+4915112345678"))))
    assert rows[1][2] == "+4915112345678"


def test_xlsx_stores_a_formula_like_reply_as_a_string() -> None:
    data = export.board_xlsx(_board(_row(comment="=1+1")))
    cell = load_workbook(io.BytesIO(data)).worksheets[0]["Q2"]
    assert (cell.value, cell.data_type) == ("=1+1", "s")


def test_xlsx_drops_control_characters_it_cannot_hold() -> None:
    rows = _sheet_rows(export.board_xlsx(_board(_row(comment="ok\x07\x1b"))))
    assert rows[1][rows[0].index("备注")] == "ok"


def test_xlsx_board_summary_sheet_has_the_meeting_and_its_counts() -> None:
    board = _board(_row(response="attend"))
    summary = dict(_sheet_rows(export.board_xlsx(board), sheet=1))
    assert summary["会议编号"] == "#42"
    assert summary["会议名称"] == "周一例会"
    assert summary["附件"] == "议程.docx、名单.xlsx"
    assert summary["通知方式"] == "短信+语音"
    assert (summary["应到人数"], summary["参加"]) == (1, 1)


def test_an_empty_board_is_a_header_only() -> None:
    assert len(_sheet_rows(export.board_xlsx(_board()))) == 1
    assert len(_csv_rows(export.board_csv(_board()))) == 1


def test_history_has_one_row_per_meeting_with_its_counts() -> None:
    meetings = [
        _board()["meeting"],
        {**_board()["meeting"], "id": 7, "title": "预算会", "state": "cancelled"},
    ]
    counts = {42: {"attendees": 5, "attend": 3, "decline": 1, "leave": 0, "no_reply": 1}}
    rows = _sheet_rows(export.history_xlsx(meetings, counts, lang="en"))
    assert rows[0] == (
        "ID",
        "Title",
        "Starts",
        "Ends",
        "Place",
        "Organiser",
        "Mode",
        "State",
        "Attendees",
        "Attend",
        "Decline",
        "Leave",
        "No reply",
        "App",
    )
    assert rows[1][:3] == (42, "周一例会", dt.datetime(2030, 5, 20, 9, 0))
    assert rows[1][8:13] == (5, 3, 1, 0, 1)
    assert (rows[2][0], rows[2][7], rows[2][8]) == (7, "cancelled", 0)  # no counts: zero


def test_history_csv_in_chinese() -> None:
    rows = _csv_rows(export.history_csv([_board()["meeting"]], {}, lang="zh"))
    assert rows[0][:2] == ["编号", "会议名称"]
    assert rows[1][:3] == ["42", "周一例会", "2030-05-20 09:00:00"]


@pytest.mark.parametrize(("name", "fmt"), [("b.xlsx", "xlsx"), ("B.CSV", "csv"), ("dir.v2/b.csv", "csv")])
def test_the_format_follows_the_extension(name: str, fmt: str) -> None:
    assert export.format_of(name) == fmt


@pytest.mark.parametrize("name", ["board", "board.xls", "board.pdf"])
def test_another_extension_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"\.xlsx or \.csv"):
        export.format_of(name)


def test_the_summary_names_the_app_that_made_the_meeting_or_the_command_line() -> None:
    board = _board(_row())
    board["meeting"]["app"] = "oa-office"
    assert dict(_sheet_rows(export.board_xlsx(board, lang="en"), sheet=1))["App"] == "oa-office"
    del board["meeting"]["app"]
    assert dict(_sheet_rows(export.board_xlsx(board), sheet=1))["创建应用"] == "命令行"


def test_the_board_says_what_the_apps_limits_refused_in_its_column_after_the_comment() -> None:
    refusal = {"send": "notice", "limit": "quota", "reason": "app 'oa' has used 20 of its 20", "at": NOTIFIED}
    board = _board(_row(notice_state="refused", notified=None, delivered=None, refusals=[refusal]))
    header, *rows = _csv_rows(export.board_csv(board, lang="zh"))
    assert header.index("未发送原因") == header.index("备注") + 1
    assert rows[0][header.index("未发送原因")] == "notice: app 'oa' has used 20 of its 20"
    assert rows[0][header.index("送达")] == "未发送"


def test_the_history_names_each_meetings_app_last() -> None:
    meetings = [{**_board()["meeting"], "app": "oa-office"}, _board()["meeting"]]
    rows = _sheet_rows(export.history_xlsx(meetings, {}, lang="en"))
    assert rows[0][-1] == "App"
    assert [r[-1] for r in rows[1:]] == ["oa-office", None]


def _answer(kind: str, reply: str, at: float, text: str = "", **fields: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "text": text,
        "reply": reply,
        "reply_id": 1,
        "via": "sms",
        "late": False,
        "at": at,
        **fields,
    }


def test_the_board_shows_the_reply_awaiting_an_answer_and_the_answers_given() -> None:
    changed = _row(
        response="attend",
        answers=[_answer("decline", "2", NOTIFIED + 60), _answer("attend", "1", NOTIFIED + 120)],
    )
    asking = _row(mobile="13800000002", pending_reply={"text": "是否需要带材料？", "at": NOTIFIED + 90})
    header, *rows = _csv_rows(export.board_csv(_board(changed, asking), lang="zh"))
    assert header[-2:] == ["待确认回复", "历次回复"]
    assert [r[-2:] for r in rows] == [["", "不参加 → 参加"], ["是否需要带材料？", ""]]
    header, *rows = _csv_rows(export.board_csv(_board(changed), lang="en"))
    assert header[-2:] == ["Awaiting answer", "Answers"] and rows[0][-1] == "decline → attend"


def test_the_xlsx_board_has_a_sheet_of_every_answer_oldest_first() -> None:
    first = _row(response="leave", answers=[_answer("leave", "我请假，孩子生病", NOTIFIED + 300, "孩子生病")])
    second = _row(
        name="李四",
        mobile="13800000002",
        answers=[
            _answer("attend", "1", NOTIFIED + 100, late=True),
            _answer("checkin", "签到", NOTIFIED + 400),
        ],
    )
    sheet = load_workbook(io.BytesIO(export.board_xlsx(_board(first, second)))).worksheets[2]
    assert sheet.title == "回复记录"
    header, *rows = list(sheet.iter_rows(values_only=True))
    assert header == (
        "姓名",
        "部门",
        "手机",
        "回复时间",
        "回复",
        "原因或备注",
        "短信原文",
        "回复方式",
        "逾期",
    )
    assert [(r[0], r[4], r[5], r[6], r[8]) for r in rows] == [
        ("李四", "参加", None, "1", "是"),
        ("张三", "请假", "孩子生病", "我请假，孩子生病", None),
        ("李四", "签到", None, "签到", None),
    ]
    assert rows[0][3] == dt.datetime.fromtimestamp(NOTIFIED + 100).replace(microsecond=0)
    assert rows[0][7] == "短信"


def test_the_answers_sheet_is_in_english_with_lang_en() -> None:
    board = _board(_row(answers=[_answer("checkin", "已簽到", NOTIFIED)]))
    sheet = load_workbook(io.BytesIO(export.board_xlsx(board, lang="en"))).worksheets[2]
    header, row = list(sheet.iter_rows(values_only=True))
    assert (sheet.title, header[4], row[4], row[6]) == ("Answers", "Answer", "check-in", "已簽到")


def test_every_call_outcome_the_voice_table_names_has_a_chinese_word() -> None:
    from masd_adapters.voice import CallOutcome

    words = {o: export._outcome(o.value, "zh") for o in CallOutcome}
    assert words == {
        CallOutcome.ANSWERED: "已接听",
        CallOutcome.NO_ANSWER: "未接听",
        CallOutcome.BUSY: "占线",
        CallOutcome.DECLINED: "拒接",
        CallOutcome.FAILED: "失败",
    }
