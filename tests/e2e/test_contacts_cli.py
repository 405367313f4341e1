"""``masd contacts`` run as a real subprocess (``python -m masd.cli``) against a fresh data directory per
test: people, departments, groups, and imports that preview first, refuse bad rows, and round-trip
through CSV and XLSX exports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Masd = Callable[..., subprocess.CompletedProcess[str]]

FILE = (
    "姓名,手机,部门,职务,标签,分组\n"
    '张三,13800138000,市政府/办公室/秘书科,科长,"党员,值班",办公会\n'
    "李四,+86 139-0013-9000,市政府 > 办公室,,,办公会\n"
    "王五,13700137000,市政府/财政局,局长,,\n"
)
BAD_ROW = "赵六,12345,市政府,,,\n"


def _masd(tmp_path: Path, data_dir: str) -> Masd:
    # Start from the caller's environment without any MASD_* setting that could leak into the test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASD_")}
    env.update(
        MASD_NODE__DATA_DIR=str(tmp_path / data_dir),
        MASD_SOCKET__ENABLED="false",
        PYTHONIOENCODING="utf-8",
    )

    def run(*args: str, rc: int | None = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "masd.cli", "contacts", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if rc is not None:
            assert proc.returncode == rc, (
                f"masd contacts {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run


@pytest.fixture
def masd(tmp_path: Path) -> Masd:
    return _masd(tmp_path, "data")


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


def _file(tmp_path: Path, text: str, name: str = "people.csv", encoding: str = "utf-8") -> str:
    (tmp_path / name).write_bytes(text.encode(encoding))
    return name


def test_a_person_added_is_shown_with_normalised_mobile_and_department(masd: Masd) -> None:
    masd("add", "张三", "+86 138 0013 8000", "--dept", "市政府 > 办公室", "--tags", "党员，值班", "--json")
    shown = _json(masd("show", "13800138000", "--json"))
    assert (shown["mobile"], shown["department"], sorted(shown["tags"])) == (
        "13800138000",
        "市政府/办公室",
        ["值班", "党员"],
    )


def test_adding_a_mobile_twice_fails_naming_the_field(masd: Masd) -> None:
    masd("add", "张三", "13800138000")
    proc = masd("add", "李四", "13800138000", rc=1)
    assert "mobile (13800138000): already belongs to 张三" in proc.stderr


def test_list_filters_by_department_including_those_below(masd: Masd, tmp_path: Path) -> None:
    masd("import", _file(tmp_path, FILE), "--apply")
    rows = _json(masd("list", "--dept", "市政府/办公室", "--json"))
    assert {r["name"] for r in rows} == {"张三", "李四"}


def test_an_import_without_apply_only_previews(masd: Masd, tmp_path: Path) -> None:
    preview = _json(masd("import", _file(tmp_path, FILE), "--json"))
    assert preview["applied"] is False and preview["counts"]["add"] == 3
    assert _json(masd("list", "--json")) == []


def test_a_preview_lists_bad_rows_with_row_number_and_reason(masd: Masd, tmp_path: Path) -> None:
    preview = _json(masd("import", _file(tmp_path, FILE + BAD_ROW), "--json"))
    (bad,) = preview["invalid"]
    assert (bad["line"], bad["field"], bad["value"]) == (5, "mobile", "12345")
    assert "mainland mobile" in bad["reason"]


def test_an_import_with_bad_rows_is_refused_and_writes_nothing(masd: Masd, tmp_path: Path) -> None:
    proc = masd("import", _file(tmp_path, FILE + BAD_ROW), "--apply", rc=1)
    assert "1 row not valid; nothing was imported" in proc.stderr
    assert _json(masd("list", "--json")) == []


def test_an_import_may_skip_the_bad_rows(masd: Masd, tmp_path: Path) -> None:
    done = _json(masd("import", _file(tmp_path, FILE + BAD_ROW), "--apply", "--skip-invalid", "--json"))
    assert done["applied"] is True and done["counts"]["add"] == 3 and done["counts"]["invalid"] == 1
    assert len(_json(masd("list", "--json"))) == 3


def test_a_gbk_file_imports_like_utf8(masd: Masd, tmp_path: Path) -> None:
    masd("import", _file(tmp_path, FILE, encoding="gbk"), "--apply")
    assert _json(masd("show", "13700137000", "--json"))["department"] == "市政府/财政局"


def test_importing_the_same_file_twice_changes_nothing(masd: Masd, tmp_path: Path) -> None:
    name = _file(tmp_path, FILE)
    masd("import", name, "--apply")
    before = _json(masd("list", "--json"))
    again = _json(masd("import", name, "--apply", "--json"))
    assert again["counts"] == {"add": 0, "update": 0, "unchanged": 3, "invalid": 0}
    assert _json(masd("list", "--json")) == before


def test_an_xlsx_export_imports_into_an_empty_book_as_the_same_people(masd: Masd, tmp_path: Path) -> None:
    masd("import", _file(tmp_path, FILE), "--apply")
    masd("export", "book.xlsx")
    other = _masd(tmp_path, "other")
    other("import", "book.xlsx", "--apply")

    def people(run: Masd) -> list[tuple[Any, ...]]:
        rows = _json(run("list", "--json"))
        return sorted(
            (r["name"], r["mobile"], r["department"], r["title"], r["tags"], r["groups"]) for r in rows
        )

    assert people(other) == people(masd)


def test_a_csv_export_imported_again_changes_nothing(masd: Masd, tmp_path: Path) -> None:
    masd("import", _file(tmp_path, FILE), "--apply")
    masd("export", "book.csv", "--lang", "en")
    assert (tmp_path / "book.csv").read_text(encoding="utf-8-sig").startswith("name,mobile,department")
    again = _json(masd("import", "book.csv", "--json"))
    assert again["counts"] == {"add": 0, "update": 0, "unchanged": 3, "invalid": 0}


def test_export_to_an_unknown_extension_is_a_usage_error(masd: Masd) -> None:
    proc = masd("export", "book.txt", rc=2)
    assert ".csv or .xlsx" in proc.stderr


def test_the_department_tree_nests_and_counts(masd: Masd, tmp_path: Path) -> None:
    masd("import", _file(tmp_path, FILE), "--apply")
    (root,) = _json(masd("dept", "list", "--json"))
    assert (root["name"], root["total"]) == ("市政府", 3)
    assert sorted((c["name"], c["total"]) for c in root["children"]) == [("办公室", 2), ("财政局", 1)]


def test_a_department_with_people_cannot_be_removed(masd: Masd) -> None:
    masd("add", "张三", "13800138000", "--dept", "办公室")
    proc = masd("dept", "remove", "办公室", rc=1)
    assert "still has 1 person" in proc.stderr


def test_group_members_are_added_and_removed(masd: Masd) -> None:
    masd("add", "张三", "13800138000")
    masd("add", "李四", "13900139000")
    masd("group", "add", "办公会")
    assert _json(masd("group", "add-member", "办公会", "13800138000", "13900139000", "--json"))["added"] == 2
    masd("group", "remove-member", "办公会", "13900139000")
    (group,) = _json(masd("group", "list", "--json"))
    assert (group["name"], group["members"]) == ("办公会", 1)


def test_a_removed_person_is_gone(masd: Masd) -> None:
    masd("add", "张三", "13800138000")
    masd("remove", "13800138000")
    proc = masd("show", "13800138000", rc=1)
    assert "no such person" in proc.stderr
