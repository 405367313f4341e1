"""The address book as a file: reading CSV and XLSX, checking every row, planning an import, and writing
the export. Everything here is pure (bytes in, values out); :mod:`masd.modules.contacts.store` reads what
exists and applies a plan in one transaction.

Columns are found by their header, in Chinese or English (姓名/name, 手机/mobile, 部门/department,
职务/title, 标签/tags, 分组/groups); only name and mobile are required. A CSV may be UTF-8 (with or
without the BOM Excel writes) or GBK/GB18030 (what Excel in China saves as "CSV"). An import is planned
before anything is written: each row is valid (to add, to update or unchanged, matched by mobile) or bad
(missing name, invalid mobile, a mobile already on an earlier row), with its row number as Excel shows
it. A column left out of the file leaves that field alone; a blank cell in a column that is there clears
it, so an exported file imported again changes nothing.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from .model import ContactError, InvalidContact, clean_mobile, clean_name, clean_title, join_path, split_list
from .model import split_path as _split_path

__all__ = [
    "COLUMNS",
    "FileProblem",
    "ImportPlan",
    "Known",
    "ParsedFile",
    "Row",
    "RowIssue",
    "Update",
    "parse_file",
    "parse_table",
    "plan_import",
    "read_table",
    "write_csv",
    "write_xlsx",
]

# The columns, in export order.
COLUMNS = ("name", "mobile", "department", "title", "tags", "groups")
OPTIONAL = ("department", "title", "tags", "groups")

# Header names, compared after NFKC, case folding and removing spaces, '*' and '(必填)' marks.
HEADER_NAMES: Mapping[str, tuple[str, ...]] = {
    "name": ("姓名", "名字", "name", "fullname"),
    "mobile": (
        "手机",
        "手机号",
        "手机号码",
        "移动电话",
        "电话",
        "mobile",
        "mobilephone",
        "phone",
        "cellphone",
    ),
    "department": ("部门", "所属部门", "单位部门", "department", "dept"),
    "title": ("职务", "职位", "title", "position", "jobtitle"),
    "tags": ("标签", "tags", "tag"),
    "groups": ("分组", "群组", "组", "groups", "group"),
}
EXPORT_HEADERS: Mapping[str, tuple[str, ...]] = {
    "zh": ("姓名", "手机", "部门", "职务", "标签", "分组"),
    "en": COLUMNS,
}
# How far down the sheet to look for the header row (a title row above it is common in OA exports).
HEADER_SEARCH_ROWS = 10
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # the old binary .xls
_HEADER_NOISE = re.compile(r"[\s*＊:：_\-]|\(必填\)|（必填）|\(required\)")
_SCIENTIFIC = re.compile(r"^[0-9](\.[0-9]+)?[eE]\+?[0-9]+$")
# Spreadsheets run what starts with these as a formula; exports prefix such cells with an apostrophe.
_FORMULA_START = ("=", "+", "-", "@")
_PHONE_LIKE = re.compile(r"^\+[0-9 ()-]+$")

Format = Literal["csv", "xlsx"]


class FileProblem(ContactError):
    """The file as a whole cannot be read: not CSV or XLSX, no header row, a required column missing."""

    def __init__(self, reason: str, value: object = None) -> None:
        super().__init__("file", reason, value)


# ----- reading a file into rows of text -------------------------------------------------------------------


def detect_format(data: bytes, filename: str | None = None) -> Format:
    """XLSX by its content (a ZIP), CSV otherwise; an old binary .xls is refused with what to do."""
    if data.startswith(_ZIP_MAGIC):
        return "xlsx"
    if data.startswith(_OLE_MAGIC) or (filename or "").lower().endswith(".xls"):
        raise FileProblem("old Excel .xls files are not read; in Excel use Save As → .xlsx or CSV UTF-8")
    return "csv"


def decode_text(data: bytes) -> str:
    """CSV bytes as text: UTF-8 (a BOM is dropped), UTF-16 with a BOM, else GB18030 (a superset of GBK)."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise FileProblem("the file starts like UTF-16 text but is not") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise FileProblem(
            "the file is neither UTF-8 nor GBK text; save it from Excel as 'CSV UTF-8' or as .xlsx"
        ) from None


def _delimiter(text: str) -> str:
    # The header line decides: Excel writes ',' (or ';' in some locales), "Unicode text" uses tabs.
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {d: first.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_rows(data: bytes) -> list[list[str]]:
    text = decode_text(data)
    try:
        return [list(r) for r in csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))]
    except csv.Error as e:
        raise FileProblem(f"the CSV cannot be read: {e}") from None


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        # A mobile typed into a cell formatted as a number.
        return str(int(value))
    return str(value)


def _xlsx_rows(data: bytes) -> list[list[str]]:
    import openpyxl  # imported here: only imports and exports of .xlsx pay for it

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as e:
        raise FileProblem(f"the file looks like XLSX but cannot be opened ({e})") from None
    try:
        sheet = book.worksheets[0]
        # Some writers record a wrong sheet size; forget it and read every row there is.
        sheet.reset_dimensions()
        return [[_cell_text(v) for v in row] for row in sheet.iter_rows(min_row=1, values_only=True)]
    finally:
        book.close()


def read_table(data: bytes, filename: str | None = None) -> list[list[str]]:
    """The file's first sheet (or the CSV) as rows of cell texts, row 1 first."""
    if not data.strip():
        raise FileProblem("the file is empty")
    return _xlsx_rows(data) if detect_format(data, filename) == "xlsx" else _csv_rows(data)


# ----- rows of text into checked rows --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """One valid row. A field is None when the file has no column for it (the import leaves it alone)."""

    line: int  # the row number as a spreadsheet shows it (the header is a row too)
    name: str
    mobile: str  # normalised
    department: str | None  # a path "a/b/c", "" for none
    title: str | None
    tags: tuple[str, ...] | None
    groups: tuple[str, ...] | None


@dataclasses.dataclass(frozen=True)
class RowIssue:
    """Why row ``line`` cannot be imported."""

    line: int
    field: str
    value: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ParsedFile:
    columns: tuple[str, ...]  # which of COLUMNS the file has, in COLUMNS order
    rows: list[Row]
    issues: list[RowIssue]
    ignored_columns: list[str]  # headers that name none of COLUMNS
    header_line: int


def _header_key(text: str) -> str:
    return _HEADER_NOISE.sub("", unicodedata.normalize("NFKC", text)).casefold()


_HEADER_LOOKUP = {_header_key(alias): field for field, aliases in HEADER_NAMES.items() for alias in aliases}


def _find_header(table: Sequence[Sequence[str]]) -> tuple[int, dict[str, int], list[str]]:
    for index, row in enumerate(table[:HEADER_SEARCH_ROWS]):
        fields = [_HEADER_LOOKUP.get(_header_key(cell)) for cell in row]
        if "name" not in fields and "mobile" not in fields:
            continue
        where: dict[str, int] = {}
        ignored: list[str] = []
        for col, (cell, field) in enumerate(zip(row, fields, strict=True)):
            if field is None:
                if cell.strip():
                    ignored.append(cell.strip())
                continue
            if field in where:
                raise FileProblem(
                    f"row {index + 1} has two {field} columns ({row[where[field]]!r} and {cell!r})"
                )
            where[field] = col
        for field in ("name", "mobile"):
            if field not in where:
                names = "/".join(HEADER_NAMES[field][:3])
                raise FileProblem(f"the header (row {index + 1}) has no {field} column; name one {names}")
        return index, where, ignored
    raise FileProblem(
        f"no header row found in the first {HEADER_SEARCH_ROWS} rows; the file needs a row naming its "
        "columns, at least 姓名/name and 手机/mobile"
    )


def _unquote(text: str) -> str:
    # Undo the apostrophe an export puts before a cell that a spreadsheet would run as a formula.
    if len(text) > 1 and text[0] == "'" and text[1] in _FORMULA_START:
        return text[1:]
    return text


def _mobile(raw: str) -> str:
    if _SCIENTIFIC.match(raw.strip()):
        raise InvalidContact(
            "mobile",
            "the number was saved in scientific notation and has lost its digits; format the column "
            "as text in Excel and enter the numbers again",
            raw,
        )
    if not raw.strip():
        raise InvalidContact("mobile", "is required", raw)
    return clean_mobile(raw)


def parse_table(table: Sequence[Sequence[str]]) -> ParsedFile:
    """Check every row below the header. Blank rows are skipped; a mobile on an earlier row makes a later
    row bad ("duplicate of row N"), whatever else it says."""
    header, where, ignored = _find_header(table)
    columns = tuple(f for f in COLUMNS if f in where)
    rows: list[Row] = []
    issues: list[RowIssue] = []
    first_line: dict[str, int] = {}
    for index in range(header + 1, len(table)):
        line = index + 1
        cells = table[index]

        def cell(field: str, cells: Sequence[str] = cells) -> str:
            col = where.get(field)
            return _unquote(cells[col].strip()) if col is not None and col < len(cells) else ""

        if not any(c.strip() for c in cells):
            continue
        row_issues: list[RowIssue] = []

        def check(field: str, fn: Callable[[str], Any]) -> Any:
            try:
                return fn(cell(field))
            except ContactError as e:
                row_issues.append(RowIssue(line, field, cell(field), e.reason))
                return None

        name = check("name", clean_name)
        mobile = check("mobile", _mobile)
        department = (
            check("department", lambda v: join_path(_split_path(v))) if "department" in where else None
        )
        title = check("title", clean_title) if "title" in where else None
        tags = check("tags", lambda v: tuple(split_list(v, "tags"))) if "tags" in where else None
        groups = check("groups", lambda v: tuple(split_list(v, "groups"))) if "groups" in where else None
        if mobile is not None:
            if mobile in first_line:
                row_issues.append(
                    RowIssue(line, "mobile", cell("mobile"), f"duplicate of row {first_line[mobile]}")
                )
            else:
                first_line[mobile] = line
        if row_issues:
            issues.extend(row_issues)
            continue
        rows.append(Row(line, name, mobile, department, title, tags, groups))
    return ParsedFile(columns, rows, issues, ignored, header + 1)


def parse_file(data: bytes, filename: str | None = None) -> ParsedFile:
    """Read and check a CSV or XLSX file (see :func:`read_table` and :func:`parse_table`)."""
    return parse_table(read_table(data, filename))


# ----- planning an import ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Known:
    """A person already in the book, as an import compares it."""

    id: int
    name: str
    mobile: str
    department: str
    title: str
    tags: tuple[str, ...]
    groups: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Update:
    row: Row
    person_id: int
    changes: dict[str, tuple[Any, Any]]  # field → (now, after the import)


@dataclasses.dataclass
class ImportPlan:
    """What an import would do, or did."""

    columns: tuple[str, ...]
    add: list[Row]
    update: list[Update]
    unchanged: list[Row]
    issues: list[RowIssue]
    new_departments: list[str]  # paths, parents before children
    new_groups: list[str]
    ignored_columns: list[str]

    @property
    def writes(self) -> bool:
        return bool(self.add or self.update)

    def as_dict(self) -> dict[str, Any]:
        def person(row: Row) -> dict[str, Any]:
            d: dict[str, Any] = {"row": row.line, "name": row.name, "mobile": row.mobile}
            for field in OPTIONAL:
                value = getattr(row, field)
                if value is not None:
                    d[field] = list(value) if isinstance(value, tuple) else value
            return d

        def jsonable(v: Any) -> Any:
            return list(v) if isinstance(v, tuple) else v

        return {
            "counts": {
                "add": len(self.add),
                "update": len(self.update),
                "unchanged": len(self.unchanged),
                "invalid": len({i.line for i in self.issues}),
            },
            "columns": list(self.columns),
            "ignored_columns": self.ignored_columns,
            "invalid": [i.as_dict() for i in self.issues],
            "add": [person(r) for r in self.add],
            "update": [
                {
                    "row": u.row.line,
                    "id": u.person_id,
                    "mobile": u.row.mobile,
                    "name": u.row.name,
                    "changes": {
                        f: {"from": jsonable(a), "to": jsonable(b)} for f, (a, b) in u.changes.items()
                    },
                }
                for u in self.update
            ],
            "new_departments": self.new_departments,
            "new_groups": self.new_groups,
        }


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def plan_import(
    parsed: ParsedFile,
    existing: Mapping[str, Known],
    departments: Iterable[str] = (),
    groups: Iterable[str] = (),
) -> ImportPlan:
    """Compare the file with what the book holds: ``existing`` maps a mobile to its person, and
    ``departments``/``groups`` are the paths and names that exist already."""
    have_departments = set(departments)
    have_groups = set(groups)
    new_departments: dict[str, None] = {}
    new_groups: dict[str, None] = {}
    plan = ImportPlan(parsed.columns, [], [], [], list(parsed.issues), [], [], list(parsed.ignored_columns))
    for row in parsed.rows:
        if row.department:
            for path in _ancestors(row.department):
                if path not in have_departments:
                    new_departments.setdefault(path, None)
        for group in row.groups or ():
            if group not in have_groups:
                new_groups.setdefault(group, None)
        known = existing.get(row.mobile)
        if known is None:
            plan.add.append(row)
            continue
        changes: dict[str, tuple[Any, Any]] = {}
        if row.name != known.name:
            changes["name"] = (known.name, row.name)
        if row.department is not None and row.department != known.department:
            changes["department"] = (known.department, row.department)
        if row.title is not None and row.title != known.title:
            changes["title"] = (known.title, row.title)
        # Tags and groups are sets: the same ones in another order are no change.
        if row.tags is not None and set(row.tags) != set(known.tags):
            changes["tags"] = (known.tags, row.tags)
        if row.groups is not None and set(row.groups) != set(known.groups):
            changes["groups"] = (known.groups, row.groups)
        if changes:
            plan.update.append(Update(row, known.id, changes))
        else:
            plan.unchanged.append(row)
    plan.new_departments = list(new_departments)
    plan.new_groups = list(new_groups)
    return plan


# ----- writing the export ---------------------------------------------------------------------------


def _row_cells(person: Mapping[str, Any]) -> list[str]:
    return [
        person["name"],
        person["mobile"],
        person.get("department") or "",
        person.get("title") or "",
        ",".join(person.get("tags") or ()),
        ",".join(person.get("groups") or ()),
    ]


def _guarded(text: str) -> str:
    # A name like "=HYPERLINK(…)" would run when the CSV is opened in a spreadsheet. A phone number
    # ("+49…") is left alone; the importer removes the apostrophe again.
    if text.startswith(_FORMULA_START) and not _PHONE_LIKE.match(text):
        return "'" + text
    return text


def write_csv(people: Iterable[Mapping[str, Any]], lang: str = "zh") -> bytes:
    """UTF-8 with a BOM, so that Excel shows the Chinese text right when the file is opened."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(EXPORT_HEADERS[lang])
    for person in people:
        writer.writerow([_guarded(c) for c in _row_cells(person)])
    return codecs.BOM_UTF8 + buf.getvalue().encode("utf-8")


def write_xlsx(people: Iterable[Mapping[str, Any]], lang: str = "zh") -> bytes:
    """One sheet "通讯录" (or "contacts"), every cell text, so Excel keeps all 11 digits of a mobile."""
    import openpyxl
    from openpyxl.cell import WriteOnlyCell

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("通讯录" if lang == "zh" else "contacts")

    def text_cell(value: str) -> Any:
        cell = WriteOnlyCell(sheet, value=value)
        cell.data_type = "s"  # never a formula, never a number
        return cell

    sheet.append([text_cell(h) for h in EXPORT_HEADERS[lang]])
    for person in people:
        sheet.append([text_cell(c) for c in _row_cells(person)])
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()
