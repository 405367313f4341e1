"""Reading address-book files and planning an import: headers in Chinese or English, the encodings Excel
writes, bad rows listed with their row number and reason, duplicates, and what an import would change."""

from __future__ import annotations

import codecs
import io

import openpyxl
import pytest

from masd.modules.contacts import importer
from masd.modules.contacts.importer import FileProblem, Known, parse_file, plan_import

ZH = '姓名,手机,部门,职务,标签,分组\n张三,13800138000,市政府/办公室/秘书科,科长,"党员,值班",办公会\n'
EN = "name,mobile,department,title,tags,groups\n" + ZH.split("\n", 1)[1]


def xlsx(rows: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def test_chinese_headers_are_read() -> None:
    parsed = parse_file(ZH.encode())
    (row,) = parsed.rows
    assert (row.name, row.mobile, row.department, row.title) == (
        "张三",
        "13800138000",
        "市政府/办公室/秘书科",
        "科长",
    )
    assert row.tags == ("党员", "值班") and row.groups == ("办公会",)


def test_english_headers_read_the_same_as_chinese() -> None:
    assert parse_file(EN.encode()).rows == parse_file(ZH.encode()).rows


def test_header_aliases_and_marks_are_recognised() -> None:
    parsed = parse_file("姓名*,手机号码（必填）,Department\n李四,13900139000,办公室\n".encode())
    assert parsed.columns == ("name", "mobile", "department")
    assert parsed.rows[0].department == "办公室"


def test_utf8_with_bom_is_read() -> None:
    parsed = parse_file(codecs.BOM_UTF8 + ZH.encode())
    assert parsed.rows[0].name == "张三"


def test_gbk_csv_as_excel_in_china_saves_it_is_read() -> None:
    parsed = parse_file(ZH.encode("gbk"))
    assert parsed.rows[0].name == "张三" and parsed.rows[0].department == "市政府/办公室/秘书科"


def test_xlsx_is_read_with_numeric_mobiles_as_digits() -> None:
    data = xlsx([["姓名", "手机", "部门"], ["王五", 13700137000, "市政府 > 财政局"]])
    (row,) = parse_file(data).rows
    assert row.mobile == "13700137000" and row.department == "市政府/财政局"


def test_a_title_row_above_the_header_is_skipped() -> None:
    data = xlsx([["2026年通讯录"], [], ["姓名", "手机"], ["王五", "13700137000"]])
    parsed = parse_file(data)
    assert parsed.header_line == 3 and parsed.rows[0].line == 4


def test_mobiles_are_normalised() -> None:
    parsed = parse_file("name,mobile\nA,+86 139-0013-9000\nB,１３８００１３８００１\n".encode())
    assert [r.mobile for r in parsed.rows] == ["13900139000", "13800138001"]


def test_an_invalid_mobile_is_listed_with_its_row_and_reason() -> None:
    parsed = parse_file("姓名,手机\n张三,13800138000\n李四,12345\n".encode())
    assert [r.name for r in parsed.rows] == ["张三"]
    (issue,) = parsed.issues
    assert (issue.line, issue.field, issue.value) == (3, "mobile", "12345")
    assert "mainland mobile" in issue.reason


def test_a_missing_name_is_listed() -> None:
    (issue,) = parse_file("姓名,手机\n,13800138000\n".encode()).issues
    assert (issue.line, issue.field, issue.reason) == (2, "name", "is required")


def test_a_missing_mobile_is_listed() -> None:
    (issue,) = parse_file("姓名,手机\n张三,\n".encode()).issues
    assert (issue.field, issue.reason) == ("mobile", "is required")


def test_a_mobile_repeated_in_the_file_is_a_duplicate_of_its_first_row() -> None:
    parsed = parse_file("姓名,手机\n张三,13800138000\n李四,13900139000\n张三丰,+8613800138000\n".encode())
    assert [r.line for r in parsed.rows] == [2, 3]
    (issue,) = parsed.issues
    assert (issue.line, issue.reason) == (4, "duplicate of row 2")


def test_a_number_excel_turned_into_scientific_notation_is_explained() -> None:
    (issue,) = parse_file("姓名,手机\n张三,1.38001E+10\n".encode()).issues
    assert "scientific notation" in issue.reason


def test_blank_rows_are_skipped() -> None:
    parsed = parse_file("姓名,手机\n\n,\n张三,13800138000\n".encode())
    assert [r.line for r in parsed.rows] == [4] and parsed.issues == []


def test_unknown_columns_are_reported_and_ignored() -> None:
    parsed = parse_file("姓名,手机,备注\n张三,13800138000,x\n".encode())
    assert parsed.ignored_columns == ["备注"] and len(parsed.rows) == 1


def test_a_file_without_a_mobile_column_is_refused_naming_it() -> None:
    with pytest.raises(FileProblem, match="no mobile column"):
        parse_file("姓名,部门\n张三,办公室\n".encode())


def test_a_file_without_a_header_is_refused() -> None:
    with pytest.raises(FileProblem, match="no header row"):
        parse_file("张三,13800138000\n".encode())


def test_an_old_xls_file_is_refused_with_what_to_do() -> None:
    with pytest.raises(FileProblem, match=r"\.xlsx"):
        parse_file(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)


def test_columns_left_out_leave_those_fields_alone() -> None:
    (row,) = parse_file(b"name,mobile\nA,13800138000\n").rows
    assert row.department is None and row.title is None and row.tags is None and row.groups is None


KNOWN = Known(1, "张三", "13800138000", "市政府/办公室/秘书科", "科长", ("值班", "党员"), ("办公会",))


def test_a_row_matching_what_is_stored_is_unchanged() -> None:
    plan = plan_import(
        parse_file(ZH.encode()),
        {"13800138000": KNOWN},
        ["市政府", "市政府/办公室", "市政府/办公室/秘书科"],
        ["办公会"],
    )
    assert plan.unchanged and not plan.add and not plan.update and not plan.writes


def test_a_known_mobile_with_other_details_is_an_update_listing_the_changes() -> None:
    parsed = parse_file("姓名,手机,职务\n张三,13800138000,处长\n".encode())
    (up,) = plan_import(parsed, {"13800138000": KNOWN}).update
    assert up.person_id == 1 and up.changes == {"title": ("科长", "处长")}


def test_a_new_mobile_is_an_addition_with_its_new_departments_and_groups() -> None:
    plan = plan_import(parse_file(ZH.encode()), {}, ["市政府"], [])
    assert [r.mobile for r in plan.add] == ["13800138000"]
    assert plan.new_departments == ["市政府/办公室", "市政府/办公室/秘书科"]
    assert plan.new_groups == ["办公会"]


def test_the_plan_as_json_counts_invalid_rows_once_each() -> None:
    parsed = parse_file("姓名,手机\n,123\n".encode())  # two problems on one row
    assert plan_import(parsed, {}).as_dict()["counts"]["invalid"] == 1


def test_an_exported_csv_reads_back_as_the_same_rows() -> None:
    person = {"name": "张三", "mobile": "+4915112345678", "department": "市政府/办公室", "title": "科长",
              "tags": ["党员", "值班"], "groups": ["办公会"]}  # fmt: skip
    (row,) = parse_file(importer.write_csv([person])).rows
    assert (row.name, row.mobile, row.department, row.title, row.tags, row.groups) == (
        "张三", "+4915112345678", "市政府/办公室", "科长", ("党员", "值班"), ("办公会",)
    )  # fmt: skip


def test_an_exported_xlsx_keeps_a_formula_like_name_as_text() -> None:
    person = {
        "name": "=1+1",
        "mobile": "13800138000",
        "department": "",
        "title": "",
        "tags": [],
        "groups": [],
    }
    (row,) = parse_file(importer.write_xlsx([person])).rows
    assert row.name == "=1+1"


def test_an_exported_csv_guards_a_formula_like_name_and_import_removes_the_guard() -> None:
    person = {"name": "=HYPERLINK(1)", "mobile": "13800138000", "department": "", "title": "", "tags": [],
              "groups": []}  # fmt: skip
    data = importer.write_csv([person])
    assert "'=HYPERLINK" in data.decode("utf-8-sig")
    assert parse_file(data).rows[0].name == "=HYPERLINK(1)"
