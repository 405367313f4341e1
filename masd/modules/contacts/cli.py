"""``masd contacts``: the address book (通讯录) from the command line — people, departments, groups, and
import/export of CSV and XLSX files. An import only shows what it would do until it is given ``--apply``.

Every command takes ``--json`` and then prints one JSON document on stdout; errors go to stderr, naming
the field and the reason, with exit code 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from masd.cli.common import (
    ConfigOption,
    JsonOption,
    err,
    fail,
    jsonable,
    note,
    open_store,
    out,
    print_json,
    read_config,
    run_async,
)
from masd.core.times import local_text
from masd.store.db import Database

from . import importer
from . import store as book
from .model import ContactError

__all__ = ["contacts_app"]

T = TypeVar("T")

contacts_app = typer.Typer(
    help="The address book (通讯录): people, departments and groups; import and export CSV or XLSX.",
    no_args_is_help=True,
)
dept_app = typer.Typer(
    help="Departments (部门), a tree named by paths like 市政府/办公室.", no_args_is_help=True
)
group_app = typer.Typer(help="Groups (分组) of people, e.g. 办公会 or 值班组.", no_args_is_help=True)
contacts_app.add_typer(dept_app, name="dept")
contacts_app.add_typer(group_app, name="group")

# Rows of a preview shown on a terminal before summarising; --json always has them all.
MAX_SHOWN = 20

PersonArg = Annotated[str, typer.Argument(help="The person: a mobile number or an id (手机号或编号).")]
DeptOption = Annotated[
    str | None, typer.Option("--dept", "-d", help="Department path, e.g. 市政府/办公室 (部门路径).")
]
TitleOption = Annotated[str | None, typer.Option("--title", help="Title or post (职务).")]
TagsOption = Annotated[
    str | None, typer.Option("--tags", help="Tags, comma-separated (标签，逗号分隔).", show_default=False)
]
GroupsOption = Annotated[
    str | None, typer.Option("--groups", help="Groups, comma-separated (分组，逗号分隔).", show_default=False)
]


@contextmanager
def _book(config: Path | None) -> Iterator[Database]:
    """The configured store, with the address book's refusals printed as ``field: reason``."""
    cfg = read_config(config)
    with open_store(cfg) as db:
        try:
            yield db
        except ContactError as e:
            shown = f" ({e.value})" if e.value not in (None, "") else ""
            fail(f"{e.field}{shown}: {e.reason}")


def _read(db: Database, fn: Callable[[sa.Connection], T]) -> T:
    return run_async(lambda: db.read(fn))


def _write(db: Database, fn: Callable[[sa.Connection], T]) -> T:
    return run_async(lambda: db.write(fn))


def _ref(value: str) -> int | str:
    # A person's id is accepted bare ("12") or as "#12"; anything else is a mobile number.
    return int(value[1:]) if value.startswith("#") and value[1:].isdigit() else value


def _person_lines(p: dict[str, Any]) -> None:
    for label, value in (
        ("id", p["id"]),
        ("name 姓名", p["name"]),
        ("mobile 手机", p["mobile"]),
        ("department 部门", p["department"] or "-"),
        ("title 职务", p["title"] or "-"),
        ("tags 标签", ", ".join(p["tags"]) or "-"),
        ("groups 分组", ", ".join(p["groups"]) or "-"),
        ("created", local_text(p["created_at"])),
        ("updated", local_text(p["updated_at"])),
    ):
        out.print(f"{label:<16} {value}", markup=False)


def _people_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(show_edge=False)
    for col in (
        "id",
        "name 姓名",
        "mobile 手机",
        "department 部门",
        "title 职务",
        "tags 标签",
        "groups 分组",
    ):
        table.add_column(col, no_wrap=col.startswith(("id", "mobile")))
    for p in rows:
        table.add_row(
            str(p["id"]),
            Text(p["name"]),
            p["mobile"],
            Text(p["department"]),
            Text(p["title"]),
            Text(", ".join(p["tags"])),
            Text(", ".join(p["groups"])),
        )
    return table


# ----- people --------------------------------------------------------------------------------------------


@contacts_app.command("add")
def contacts_add(
    name: Annotated[str, typer.Argument(help="Full name (姓名).")],
    mobile: Annotated[
        str, typer.Argument(help="Mobile number (手机号), e.g. 13800138000 or +86 138 0013 8000.")
    ],
    dept: DeptOption = None,
    title: TitleOption = None,
    tags: TagsOption = None,
    groups: GroupsOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a person (添加联系人). Missing departments and groups are made."""
    with _book(config) as db:
        person = _write(
            db,
            lambda c: book.get_person(
                c,
                book.add_person(
                    c,
                    name=name,
                    mobile=mobile,
                    department=dept,
                    title=title or "",
                    tags=tags or "",
                    groups=groups or "",
                    now=time.time(),
                ),
            ),
        )
    if as_json:
        print_json(jsonable(person))
    else:
        out.print(f"added {person['name']} ({person['mobile']}), id {person['id']}", markup=False)


@contacts_app.command("update")
def contacts_update(
    person: PersonArg,
    name: Annotated[str | None, typer.Option("--name", help="New name (姓名).")] = None,
    mobile: Annotated[str | None, typer.Option("--mobile", help="New mobile number (手机号).")] = None,
    dept: Annotated[
        str | None, typer.Option("--dept", "-d", help="Department path; '' for none (部门，空为无).")
    ] = None,
    title: TitleOption = None,
    tags: Annotated[
        str | None,
        typer.Option("--tags", help="Replace the tags; '' for none (替换标签).", show_default=False),
    ] = None,
    groups: Annotated[
        str | None,
        typer.Option("--groups", help="Replace the groups; '' for none (替换分组).", show_default=False),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a person's details (修改联系人); what is not given stays as it is."""

    def change(c: sa.Connection) -> tuple[bool, dict[str, Any]]:
        pid = book.get_person(c, _ref(person))["id"]
        changed = book.update_person(
            c,
            pid,
            now=time.time(),
            name=name,
            mobile=mobile,
            department=dept,
            title=title,
            tags=tags,
            groups=groups,
        )
        return changed, book.get_person(c, pid)

    with _book(config) as db:
        changed, found = _write(db, change)
    if as_json:
        print_json({**jsonable(found), "changed": changed})
    elif changed:
        out.print(f"updated {found['name']} ({found['mobile']})", markup=False)
    else:
        out.print(
            f"{found['name']} ({found['mobile']}) already had these details; nothing changed", markup=False
        )


@contacts_app.command("list")
def contacts_list(
    dept: Annotated[
        str | None, typer.Option("--dept", "-d", help="Only this department and those below it (部门).")
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Only people with this tag (标签).")] = None,
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="Only members of this group (分组).")
    ] = None,
    search: Annotated[
        str | None, typer.Option("--search", "-s", help="Part of a name, title or mobile (搜索).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1_000_000, help="At most this many.")] = 500,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List people (联系人列表), by department then name."""
    with _book(config) as db:
        rows, total = _read(
            db,
            lambda c: (
                book.find_people(c, department=dept, tag=tag, group=group, search=search, limit=limit),
                book.count_people(c, department=dept, tag=tag, group=group, search=search),
            ),
        )
    if as_json:
        print_json(jsonable(rows))
        return
    if not rows:
        out.print("no people match" if (dept or tag or group or search) else "the address book is empty")
        return
    out.print(_people_table(rows))
    if total > len(rows):
        note(f"showing {len(rows)} of {total}; use --limit to see more")


@contacts_app.command("show")
def contacts_show(person: PersonArg, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Show one person (查看联系人)."""
    with _book(config) as db:
        found = _read(db, lambda c: book.get_person(c, _ref(person)))
    if as_json:
        print_json(jsonable(found))
    else:
        _person_lines(found)


@contacts_app.command("remove")
def contacts_remove(
    people: Annotated[list[str], typer.Argument(help="Mobile numbers or ids (手机号或编号).")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove people (删除联系人), all or none."""
    with _book(config) as db:
        gone = _write(db, lambda c: [book.remove_person(c, _ref(p)) for p in people])
    if as_json:
        print_json(jsonable(gone))
        return
    for p in gone:
        out.print(f"removed {p['name']} ({p['mobile']})", markup=False)


# ----- import and export ---------------------------------------------------------------------------------


def _show_plan(plan: importer.ImportPlan) -> None:
    counts = plan.as_dict()["counts"]
    out.print(
        f"{counts['add']} to add (新增), {counts['update']} to update (更新), "
        f"{counts['unchanged']} unchanged (不变), {counts['invalid']} invalid (无效)",
        markup=False,
    )
    if plan.ignored_columns:
        note(f"ignored columns (未识别的列): {', '.join(plan.ignored_columns)}")
    if plan.issues:
        table = Table(title="invalid rows (无效行)", show_edge=False, title_justify="left")
        for col in ("row 行", "column 列", "value 值", "reason 原因"):
            table.add_column(col)
        for issue in plan.issues[:MAX_SHOWN]:
            table.add_row(str(issue.line), issue.field, Text(issue.value), Text(issue.reason, style="red"))
        out.print(table)
        if len(plan.issues) > MAX_SHOWN:
            note(f"… and {len(plan.issues) - MAX_SHOWN} more; --json lists them all")
    if plan.add:
        table = Table(title="to add (新增)", show_edge=False, title_justify="left")
        for col in ("row 行", "name 姓名", "mobile 手机", "department 部门"):
            table.add_column(col)
        for row in plan.add[:MAX_SHOWN]:
            table.add_row(str(row.line), Text(row.name), row.mobile, Text(row.department or ""))
        out.print(table)
        if len(plan.add) > MAX_SHOWN:
            note(f"… and {len(plan.add) - MAX_SHOWN} more to add")
    if plan.update:
        table = Table(title="to update (更新)", show_edge=False, title_justify="left")
        for col in ("row 行", "mobile 手机", "change 变更"):
            table.add_column(col)
        for up in plan.update[:MAX_SHOWN]:
            said = "; ".join(f"{field}: {_said(a)} → {_said(b)}" for field, (a, b) in up.changes.items())
            table.add_row(str(up.row.line), up.row.mobile, Text(said))
        out.print(table)
        if len(plan.update) > MAX_SHOWN:
            note(f"… and {len(plan.update) - MAX_SHOWN} more to update")
    if plan.new_departments:
        out.print(f"new departments (新部门): {', '.join(plan.new_departments)}", markup=False)
    if plan.new_groups:
        out.print(f"new groups (新分组): {', '.join(plan.new_groups)}", markup=False)


def _count(n: int, word: str, many: str = "") -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


def _said(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ",".join(value) or "''"
    return str(value) if value else "''"


@contacts_app.command("import")
def contacts_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="A .csv (UTF-8 or GBK) or .xlsx file with a header row "
            "(姓名, 手机, 部门, 职务, 标签, 分组).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    apply: Annotated[
        bool, typer.Option("--apply", help="Write the import (执行导入); without it only a preview is shown.")
    ] = False,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid", help="Import the valid rows and leave the invalid ones out (跳过无效行)."
        ),
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import people from CSV or XLSX (导入通讯录); a preview unless --apply.

    --apply writes everything in one transaction. People are matched by mobile, so importing the same
    file again changes nothing.
    """
    with _book(config) as db:
        parsed = importer.parse_file(file.read_bytes(), file.name)
        plan = _read(db, lambda c: book.preview_import(c, parsed))
        if not apply:
            if as_json:
                print_json({"applied": False, **plan.as_dict()})
            else:
                _show_plan(plan)
                if plan.issues and plan.writes:
                    note(
                        "nothing written; fix the invalid rows, or add --skip-invalid --apply to import "
                        "the rest"
                    )
                elif plan.writes:
                    note("nothing written yet; run again with --apply to import (加 --apply 执行导入)")
            return
        if plan.issues and not skip_invalid:
            if as_json:
                print_json({"applied": False, **plan.as_dict()})
            else:
                _show_plan(plan)
            fail(
                f"{_count(len({i.line for i in plan.issues}), 'row')} not valid; nothing was imported. "
                "Fix them, or add --skip-invalid to import the valid rows only"
            )
        progress = Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("people"),
            TimeElapsedColumn(),
            console=err,
            disable=not err.is_terminal or len(plan.add) + len(plan.update) < 100,
        )
        with progress:
            task = progress.add_task("import", total=len(plan.add) + len(plan.update))
            done = _write(
                db,
                lambda c: book.apply_import(
                    c,
                    parsed,
                    now=time.time(),
                    skip_invalid=skip_invalid,
                    progress=lambda n: progress.advance(task, n),
                ),
            )
    if as_json:
        print_json({"applied": True, **done.as_dict()})
        return
    counts = done.as_dict()["counts"]
    out.print(
        f"imported: {counts['add']} added, {counts['update']} updated, {counts['unchanged']} unchanged"
        + (f", {_count(counts['invalid'], 'invalid row')} left out" if done.issues else ""),
        markup=False,
    )


@contacts_app.command("export")
def contacts_export(
    file: Annotated[Path, typer.Argument(help="Where to write: a .csv or .xlsx file (by its extension).")],
    lang: Annotated[
        str, typer.Option("--lang", help="Header language: zh (姓名, 手机, …) or en (name, mobile, …).")
    ] = "zh",
    dept: Annotated[str | None, typer.Option("--dept", "-d", help="Only this department and below.")] = None,
    group: Annotated[str | None, typer.Option("--group", "-g", help="Only members of this group.")] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export people to CSV or XLSX (导出通讯录), in the columns import reads back."""
    kind = file.suffix.lower()
    if kind not in (".csv", ".xlsx"):
        raise typer.BadParameter(f"{file.name!r} must end in .csv or .xlsx", param_hint="FILE")
    if lang not in importer.EXPORT_HEADERS:
        raise typer.BadParameter(f"{lang!r} is not zh or en", param_hint="--lang")
    with _book(config) as db:
        rows = _read(db, lambda c: book.export_people(c, department=dept, group=group))
    data = importer.write_xlsx(rows, lang) if kind == ".xlsx" else importer.write_csv(rows, lang)
    try:
        file.write_bytes(data)
    except OSError as e:
        fail(f"cannot write {file}: {e.strerror or e}")
    if as_json:
        print_json({"file": str(file), "people": len(rows), "format": kind[1:]})
    else:
        out.print(f"exported {_count(len(rows), 'person', 'people')} to {file}", markup=False)


# ----- departments ---------------------------------------------------------------------------------------


@dept_app.command("add")
def dept_add(
    path: Annotated[
        str, typer.Argument(help="The path, e.g. 市政府/办公室/秘书科; missing parents are made.")
    ],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a department (添加部门)."""
    with _book(config) as db:
        found = _write(db, lambda c: book.get_department(c, book.add_department(c, path, now=time.time())))
    if as_json:
        print_json(jsonable(found))
    else:
        out.print(f"added department {found['path']} (id {found['id']})", markup=False)


@dept_app.command("list")
def dept_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Show the department tree with head counts (部门树)."""
    with _book(config) as db:
        tree = book.department_tree(_read(db, book.list_departments))
    if as_json:
        print_json(tree)
        return
    if not tree:
        out.print("no departments yet; 'masd contacts dept add 市政府/办公室' makes one", markup=False)
        return
    root = Tree("departments (部门)", hide_root=True)

    def grow(branch: Tree, node: dict[str, Any]) -> None:
        label = Text(node["name"])
        label.append(f"  {_count(node['total'], 'person', 'people')}", style="dim")
        leaf = branch.add(label)
        for child in node["children"]:
            grow(leaf, child)

    for node in tree:
        grow(root, node)
    out.print(root)


@dept_app.command("rename")
def dept_rename(
    path: Annotated[str, typer.Argument(help="The department's path.")],
    name: Annotated[str, typer.Argument(help="Its new name (not a path).")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rename a department (重命名部门); the departments below it follow."""
    with _book(config) as db:
        new = _write(db, lambda c: book.rename_department(c, path, name))
    if as_json:
        print_json({"path": new})
    else:
        out.print(f"renamed to {new}", markup=False)


@dept_app.command("remove")
def dept_remove(
    path: Annotated[str, typer.Argument(help="The department's path.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove an empty department (删除部门): no people, no sub-departments."""
    with _book(config) as db:
        gone = _write(db, lambda c: book.remove_department(c, path))
    if as_json:
        print_json({"removed": gone})
    else:
        out.print(f"removed department {gone}", markup=False)


# ----- groups --------------------------------------------------------------------------------------------


@group_app.command("add")
def group_add(
    name: Annotated[str, typer.Argument(help="The group's name (分组名).")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a group (添加分组)."""
    with _book(config) as db:
        found = _write(db, lambda c: book.get_group(c, book.add_group(c, name, now=time.time())))
    if as_json:
        print_json(jsonable(found))
    else:
        out.print(f"added group {found['name']} (id {found['id']})", markup=False)


@group_app.command("list")
def group_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List groups with their member counts (分组列表)."""
    with _book(config) as db:
        rows = _read(db, book.list_groups)
    if as_json:
        print_json(jsonable(rows))
        return
    if not rows:
        out.print("no groups yet; 'masd contacts group add NAME' makes one", markup=False)
        return
    table = Table(show_edge=False)
    for col in ("id", "name 名称", "members 人数"):
        table.add_column(col)
    for g in rows:
        table.add_row(str(g["id"]), Text(g["name"]), str(g["members"]))
    out.print(table)


@group_app.command("show")
def group_show(
    name: Annotated[str, typer.Argument(help="The group's name or id.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a group's members (分组成员)."""
    with _book(config) as db:
        group, members = _read(
            db, lambda c: (book.get_group(c, name), book.find_people(c, group=name, limit=None))
        )
    if as_json:
        print_json(jsonable({**group, "members": members}))
        return
    out.print(f"{group['name']}: {len(members)} members", markup=False)
    if members:
        out.print(_people_table(members))


@group_app.command("remove")
def group_remove(
    name: Annotated[str, typer.Argument(help="The group's name or id.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a group (删除分组); its members stay in the address book."""
    with _book(config) as db:
        gone = _write(db, lambda c: book.remove_group(c, name))
    if as_json:
        print_json({"removed": gone})
    else:
        out.print(f"removed group {gone}", markup=False)


MembersArg = Annotated[list[str], typer.Argument(help="People: mobile numbers or ids (手机号或编号).")]


@group_app.command("add-member")
def group_add_member(
    group: Annotated[str, typer.Argument(help="The group's name or id.")],
    people: MembersArg,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Put people in a group (添加分组成员)."""
    with _book(config) as db:
        added = _write(db, lambda c: book.add_members(c, group, [_ref(p) for p in people], now=time.time()))
    if as_json:
        print_json({"group": group, "added": added})
    else:
        also = " (the others were members already)" if added < len(people) else ""
        out.print(f"{added} added to {group}{also}", markup=False)


@group_app.command("remove-member")
def group_remove_member(
    group: Annotated[str, typer.Argument(help="The group's name or id.")],
    people: MembersArg,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Take people out of a group (移出分组)."""
    with _book(config) as db:
        removed = _write(db, lambda c: book.remove_members(c, group, [_ref(p) for p in people]))
    if as_json:
        print_json({"group": group, "removed": removed})
    else:
        out.print(f"{removed} removed from {group}", markup=False)
