"""The address book in the database: people, the department tree, groups and tags, and :func:`resolve`,
which turns an organiser's choice (people, departments, groups, bare numbers) into attendees.

Every function takes an open connection and runs inside the caller's transaction (``Database.read`` /
``Database.write``), so a caller may combine several in one. Refusals raise the errors of
:mod:`masd.modules.contacts.model`, naming the field and the reason.

References: a person is an ``int`` id or a ``str`` mobile (any form :func:`~masd.core.recipients.normalize`
reads; a short string of digits that is no mobile is taken as an id); a department is an ``int`` id or a
``str`` path; a group is an ``int`` id or a ``str`` name (a string of digits naming no group is taken as
an id).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from . import importer
from .model import (
    Attendee,
    ContactConflict,
    ContactNotFound,
    InvalidContact,
    clean_group_name,
    clean_mobile,
    clean_name,
    clean_title,
    join_path,
    split_list,
    split_path,
)
from .tables import departments, group_members, groups, people, person_tags

# resolve() names its parameters after the tables; these reach the tables from inside it.
_people_t = people
_departments_t = departments

__all__ = [
    "add_department",
    "add_group",
    "add_members",
    "add_person",
    "apply_import",
    "count_people",
    "department_tree",
    "ensure_department",
    "export_people",
    "find_people",
    "get_department",
    "get_group",
    "get_person",
    "list_departments",
    "list_groups",
    "preview_import",
    "remove_department",
    "remove_group",
    "remove_members",
    "remove_person",
    "rename_department",
    "rename_group",
    "resolve",
    "update_person",
]

PersonRef = int | str
DepartmentRef = int | str
GroupRef = int | str
Progress = Callable[[int], None]

CHUNK = 500  # ids or mobiles in one IN (...) list
UNSET: Any = object()


def _like_prefix(path: str) -> str:
    # Department names may contain LIKE's wildcards; escape them so "a_b/" matches only itself.
    return path.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ----- departments ---------------------------------------------------------------------------------------


def get_department(conn: sa.Connection, ref: DepartmentRef, field: str = "department") -> dict[str, Any]:
    """The department ``ref`` names; raises :class:`ContactNotFound`."""
    d = departments
    if isinstance(ref, int):
        rid = _as_id(ref)
        row = None if rid is None else conn.execute(sa.select(d).where(d.c.id == rid)).mappings().first()
    else:
        path = join_path(split_path(ref, field))
        if not path:
            raise InvalidContact(field, "is empty; give a path such as 市政府/办公室", ref)
        row = conn.execute(sa.select(d).where(d.c.path == path)).mappings().first()
        if row is None and (rid := _as_id(ref)) is not None:
            row = conn.execute(sa.select(d).where(d.c.id == rid)).mappings().first()
    if row is None:
        raise ContactNotFound(field, "no such department; 'masd contacts dept list' shows them", ref)
    return dict(row)


def ensure_department(conn: sa.Connection, path: str, *, now: float, field: str = "department") -> int | None:
    """The id of the department at ``path``, making it and any missing parents; None for a blank path."""
    parts = split_path(path, field)
    parent: int | None = None
    for depth in range(len(parts)):
        here = join_path(parts[: depth + 1])
        found = conn.execute(sa.select(departments.c.id).where(departments.c.path == here)).scalar()
        if found is None:
            found = conn.execute(
                sa.insert(departments)
                .values(name=parts[depth], parent_id=parent, path=here, created_at=now)
                .returning(departments.c.id)
            ).scalar_one()
        parent = int(found)
    return parent


def add_department(conn: sa.Connection, path: str, *, now: float) -> int:
    """Make the department at ``path`` (and missing parents); refuses one that exists."""
    canonical = join_path(split_path(path))
    if not canonical:
        raise InvalidContact("department", "is empty; give a path such as 市政府/办公室", path)
    if conn.execute(sa.select(departments.c.id).where(departments.c.path == canonical)).first() is not None:
        raise ContactConflict("department", "already exists", canonical)
    dept_id = ensure_department(conn, canonical, now=now)
    assert dept_id is not None
    return dept_id


def rename_department(conn: sa.Connection, ref: DepartmentRef, new_name: str) -> str:
    """Give a department a new name; its sub-departments' paths follow. Returns the new path."""
    dept = get_department(conn, ref)
    parts = split_path(new_name, "name")
    if len(parts) != 1:
        raise InvalidContact("name", "is one department's name, without / or >", new_name)
    old = dept["path"]
    parent = old.rpartition("/")[0]
    new = f"{parent}/{parts[0]}" if parent else parts[0]
    if new == old:
        return new
    if conn.execute(sa.select(departments.c.id).where(departments.c.path == new)).first() is not None:
        raise ContactConflict("name", "a department with this path exists already", new)
    d = departments
    below = conn.execute(
        sa.select(d.c.id, d.c.path).where(d.c.path.like(_like_prefix(old), escape="\\"))
    ).all()
    conn.execute(sa.update(d).where(d.c.id == dept["id"]).values(name=parts[0], path=new))
    for dept_id, path in below:
        conn.execute(sa.update(d).where(d.c.id == dept_id).values(path=new + path[len(old) :]))
    return new


def remove_department(conn: sa.Connection, ref: DepartmentRef) -> str:
    """Remove an empty department (no people, no sub-departments); returns its path."""
    dept = get_department(conn, ref)
    if conn.execute(
        sa.select(departments.c.id).where(departments.c.parent_id == dept["id"]).limit(1)
    ).first():
        raise ContactConflict("department", "has sub-departments; remove or rename those first", dept["path"])
    members = conn.execute(
        sa.select(sa.func.count()).select_from(people).where(people.c.department_id == dept["id"])
    ).scalar_one()
    if members:
        raise ContactConflict(
            "department",
            f"still has {members} {'person' if members == 1 else 'people'}; move them to another "
            "department first",
            dept["path"],
        )
    conn.execute(sa.delete(departments).where(departments.c.id == dept["id"]))
    return str(dept["path"])


def list_departments(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every department with its direct head count, in path order (a parent before its children)."""
    d, p = departments, people
    counts = (
        sa.select(p.c.department_id, sa.func.count().label("n"))
        .where(p.c.department_id.is_not(None))
        .group_by(p.c.department_id)
        .subquery()
    )
    rows = conn.execute(
        sa.select(
            d.c.id, d.c.name, d.c.parent_id, d.c.path, sa.func.coalesce(counts.c.n, 0).label("people")
        ).select_from(d.outerjoin(counts, counts.c.department_id == d.c.id))
    ).mappings()
    # Sorted here: "/" must sort before every other character for parents to come first, which no
    # collation promises.
    return sorted((dict(r) for r in rows), key=lambda r: r["path"].split("/"))


def department_tree(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nest :func:`list_departments` rows: each gets ``children``; ``total`` counts people below too."""
    nodes = {r["id"]: {**r, "children": []} for r in rows}
    roots: list[dict[str, Any]] = []
    for r in rows:
        node = nodes[r["id"]]
        parent = nodes.get(r["parent_id"])
        (parent["children"] if parent is not None else roots).append(node)

    def total(node: dict[str, Any]) -> int:
        node["total"] = node["people"] + sum(total(c) for c in node["children"])
        return int(node["total"])

    for root in roots:
        total(root)
    return roots


def _subtree_ids(conn: sa.Connection, dept: dict[str, Any]) -> list[int]:
    d = departments
    rows = conn.execute(
        sa.select(d.c.id).where(
            sa.or_(d.c.id == dept["id"], d.c.path.like(_like_prefix(dept["path"]), escape="\\"))
        )
    )
    return [int(i) for (i,) in rows]


# ----- groups ----------------------------------------------------------------------------------------------


def get_group(conn: sa.Connection, ref: GroupRef, field: str = "group") -> dict[str, Any]:
    g = groups
    row = None
    if isinstance(ref, str):
        row = conn.execute(sa.select(g).where(g.c.name == ref.strip())).mappings().first()
        if row is None and (rid := _as_id(ref)) is not None:
            row = conn.execute(sa.select(g).where(g.c.id == rid)).mappings().first()
    else:
        rid = _as_id(ref)
        row = None if rid is None else conn.execute(sa.select(g).where(g.c.id == rid)).mappings().first()
    if row is None:
        raise ContactNotFound(field, "no such group; 'masd contacts group list' shows them", ref)
    return dict(row)


def add_group(conn: sa.Connection, name: str, *, now: float) -> int:
    name = clean_group_name(name, "name")
    if conn.execute(sa.select(groups.c.id).where(groups.c.name == name)).first() is not None:
        raise ContactConflict("name", "a group with this name exists already", name)
    return int(
        conn.execute(sa.insert(groups).values(name=name, created_at=now).returning(groups.c.id)).scalar_one()
    )


def rename_group(conn: sa.Connection, ref: GroupRef, new_name: str) -> None:
    group = get_group(conn, ref)
    name = clean_group_name(new_name, "name")
    if name == group["name"]:
        return
    if conn.execute(sa.select(groups.c.id).where(groups.c.name == name)).first() is not None:
        raise ContactConflict("name", "a group with this name exists already", name)
    conn.execute(sa.update(groups).where(groups.c.id == group["id"]).values(name=name))


def remove_group(conn: sa.Connection, ref: GroupRef) -> str:
    """Remove a group (its people stay in the book); returns its name."""
    group = get_group(conn, ref)
    conn.execute(sa.delete(group_members).where(group_members.c.group_id == group["id"]))
    conn.execute(sa.delete(groups).where(groups.c.id == group["id"]))
    return str(group["name"])


def list_groups(conn: sa.Connection) -> list[dict[str, Any]]:
    g, m = groups, group_members
    rows = conn.execute(
        sa.select(g.c.id, g.c.name, g.c.created_at, sa.func.count(m.c.person_id).label("members"))
        .select_from(g.outerjoin(m, m.c.group_id == g.c.id))
        .group_by(g.c.id, g.c.name, g.c.created_at)
        .order_by(g.c.name)
    ).mappings()
    return [dict(r) for r in rows]


def _ensure_group(conn: sa.Connection, name: str, now: float) -> int:
    found = conn.execute(sa.select(groups.c.id).where(groups.c.name == name)).scalar()
    if found is not None:
        return int(found)
    return int(
        conn.execute(sa.insert(groups).values(name=name, created_at=now).returning(groups.c.id)).scalar_one()
    )


def add_members(conn: sa.Connection, group: GroupRef, members: Sequence[PersonRef], *, now: float) -> int:
    """Put people in a group; returns how many were not in it already."""
    group_id = int(get_group(conn, group)["id"])
    ids = [_person_id(conn, ref, f"people[{i}]") for i, ref in enumerate(members)]
    have = {
        int(pid)
        for (pid,) in conn.execute(
            sa.select(group_members.c.person_id).where(group_members.c.group_id == group_id)
        )
    }
    new = list(dict.fromkeys(i for i in ids if i not in have))
    if new:
        conn.execute(
            sa.insert(group_members), [{"group_id": group_id, "person_id": i, "added_at": now} for i in new]
        )
    return len(new)


def remove_members(conn: sa.Connection, group: GroupRef, members: Sequence[PersonRef]) -> int:
    """Take people out of a group; returns how many were in it."""
    group_id = int(get_group(conn, group)["id"])
    ids = [_person_id(conn, ref, f"people[{i}]") for i, ref in enumerate(members)]
    m = group_members
    result = conn.execute(sa.delete(m).where(m.c.group_id == group_id, m.c.person_id.in_(ids)))
    return int(result.rowcount)


# ----- people ----------------------------------------------------------------------------------------------


MAX_ID = 2**63 - 1


def _as_id(ref: object) -> int | None:
    """``ref`` as a row id if it can be one (an int or a digit string that fits a BIGINT column)."""
    if isinstance(ref, bool):
        return None
    if isinstance(ref, int):
        n = ref
    elif isinstance(ref, str) and ref.strip().isdigit() and len(ref.strip()) <= 19:
        n = int(ref.strip())
    else:
        return None
    return n if 0 < n <= MAX_ID else None


def _person_id(conn: sa.Connection, ref: PersonRef, field: str = "person") -> int:
    p = people
    if isinstance(ref, int):
        rid = _as_id(ref)
        found = None if rid is None else conn.execute(sa.select(p.c.id).where(p.c.id == rid)).scalar()
    else:
        try:
            mobile = clean_mobile(ref, field)
        except InvalidContact:
            rid = _as_id(ref)
            if rid is None:
                raise ContactNotFound(field, "is neither a person's id nor a mobile number", ref) from None
            found = conn.execute(sa.select(p.c.id).where(p.c.id == rid)).scalar()
        else:
            found = conn.execute(sa.select(p.c.id).where(p.c.mobile == mobile)).scalar()
    if found is None:
        raise ContactNotFound(field, "no such person in the address book", ref)
    return int(found)


def _details(conn: sa.Connection, ids: Sequence[int]) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """person id → tags, and person id → group names."""
    tags: dict[int, list[str]] = {}
    member_of: dict[int, list[str]] = {}
    for chunk in _chunks(ids):
        for pid, tag in conn.execute(
            sa.select(person_tags.c.person_id, person_tags.c.tag).where(person_tags.c.person_id.in_(chunk))
        ):
            tags.setdefault(int(pid), []).append(tag)
        for pid, name in conn.execute(
            sa.select(group_members.c.person_id, groups.c.name)
            .select_from(group_members.join(groups, groups.c.id == group_members.c.group_id))
            .where(group_members.c.person_id.in_(chunk))
        ):
            member_of.setdefault(int(pid), []).append(name)
    # Sorted here, by code point: the engines' collations would each order Chinese differently.
    for found in (tags, member_of):
        for values in found.values():
            values.sort()
    return tags, member_of


def _people_select() -> sa.Select[Any]:
    p, d = people, departments
    return sa.select(
        p.c.id,
        p.c.name,
        p.c.mobile,
        p.c.department_id,
        sa.func.coalesce(d.c.path, "").label("department"),
        p.c.title,
        p.c.created_at,
        p.c.updated_at,
    ).select_from(p.outerjoin(d, d.c.id == p.c.department_id))


def _with_details(conn: sa.Connection, rows: Iterable[Any]) -> list[dict[str, Any]]:
    found = [dict(r) for r in rows]
    tags, member_of = _details(conn, [r["id"] for r in found])
    for r in found:
        r["tags"] = tags.get(r["id"], [])
        r["groups"] = member_of.get(r["id"], [])
    return found


def get_person(conn: sa.Connection, ref: PersonRef) -> dict[str, Any]:
    """One person with department path, tags and groups; raises :class:`ContactNotFound`."""
    pid = _person_id(conn, ref)
    return _with_details(conn, conn.execute(_people_select().where(people.c.id == pid)).mappings())[0]


def _filters(
    conn: sa.Connection,
    *,
    search: str | None,
    mobile: str | None,
    department: DepartmentRef | None,
    tag: str | None,
    group: GroupRef | None,
) -> list[sa.ColumnElement[bool]]:
    p = people
    where: list[sa.ColumnElement[bool]] = []
    if mobile:
        where.append(p.c.mobile == clean_mobile(mobile))
    if search:
        text = search.strip()
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        digits = "".join(ch for ch in text if ch.isdigit())
        either = [sa.func.lower(p.c.name).like(like.lower(), escape="\\"), p.c.title.like(like, escape="\\")]
        if digits:
            either.append(p.c.mobile.like(f"%{digits}%"))
        where.append(sa.or_(*either))
    if department is not None:
        ids = _subtree_ids(conn, get_department(conn, department))
        where.append(p.c.department_id.in_(ids))
    if tag:
        where.append(p.c.id.in_(sa.select(person_tags.c.person_id).where(person_tags.c.tag == tag.strip())))
    if group is not None:
        group_id = get_group(conn, group)["id"]
        where.append(
            p.c.id.in_(sa.select(group_members.c.person_id).where(group_members.c.group_id == group_id))
        )
    return where


def find_people(
    conn: sa.Connection,
    *,
    search: str | None = None,
    mobile: str | None = None,
    department: DepartmentRef | None = None,
    tag: str | None = None,
    group: GroupRef | None = None,
    limit: int | None = 200,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """People matching every filter given, by department path then name. ``search`` matches part of a
    name (any case), a title, or digits of a mobile; ``department`` includes its sub-departments."""
    where = _filters(conn, search=search, mobile=mobile, department=department, tag=tag, group=group)
    query = (
        _people_select()
        .where(*where)
        .order_by(sa.func.coalesce(departments.c.path, ""), people.c.name, people.c.id)
    )
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return _with_details(conn, conn.execute(query).mappings())


def count_people(
    conn: sa.Connection,
    *,
    search: str | None = None,
    mobile: str | None = None,
    department: DepartmentRef | None = None,
    tag: str | None = None,
    group: GroupRef | None = None,
) -> int:
    where = _filters(conn, search=search, mobile=mobile, department=department, tag=tag, group=group)
    return int(conn.execute(sa.select(sa.func.count()).select_from(people).where(*where)).scalar_one())


def export_people(conn: sa.Connection, **filters: Any) -> list[dict[str, Any]]:
    """Everyone (or those matching ``filters``, as :func:`find_people`), for an export."""
    return find_people(conn, limit=None, **filters)


def _as_list(value: Sequence[str] | str, field: str) -> list[str]:
    return split_list(value if isinstance(value, str) else ",".join(value), field)


def _set_tags(conn: sa.Connection, person_id: int, tags: Sequence[str]) -> None:
    conn.execute(sa.delete(person_tags).where(person_tags.c.person_id == person_id))
    if tags:
        conn.execute(sa.insert(person_tags), [{"person_id": person_id, "tag": t} for t in tags])


def _set_groups(conn: sa.Connection, person_id: int, names: Sequence[str], now: float) -> None:
    want = {_ensure_group(conn, n, now) for n in names}
    m = group_members
    have = {int(g) for (g,) in conn.execute(sa.select(m.c.group_id).where(m.c.person_id == person_id))}
    if have - want:
        conn.execute(sa.delete(m).where(m.c.person_id == person_id, m.c.group_id.in_(have - want)))
    if want - have:
        conn.execute(
            sa.insert(m),
            [{"group_id": g, "person_id": person_id, "added_at": now} for g in sorted(want - have)],
        )


def _mobile_taken(conn: sa.Connection, mobile: str, *, but: int | None = None) -> None:
    query = sa.select(people.c.id, people.c.name).where(people.c.mobile == mobile)
    row = conn.execute(query).first()
    if row is not None and row.id != but:
        raise ContactConflict("mobile", f"already belongs to {row.name} (id {row.id})", mobile)


def add_person(
    conn: sa.Connection,
    *,
    name: str,
    mobile: str,
    now: float,
    department: str | None = None,
    title: str = "",
    tags: Sequence[str] | str = (),
    groups: Sequence[str] | str = (),
) -> int:
    """Add a person; missing departments and groups are made. Refuses a mobile already in the book."""
    name = clean_name(name)
    number = clean_mobile(mobile)
    title = clean_title(title)
    tag_list = _as_list(tags, "tags")
    group_list = _as_list(groups, "groups")
    _mobile_taken(conn, number)
    dept_id = ensure_department(conn, department, now=now) if department else None
    pid = int(
        conn.execute(
            sa.insert(people)
            .values(
                name=name, mobile=number, department_id=dept_id, title=title, created_at=now, updated_at=now
            )
            .returning(people.c.id)
        ).scalar_one()
    )
    _set_tags(conn, pid, tag_list)
    _set_groups(conn, pid, group_list, now)
    return pid


def update_person(
    conn: sa.Connection,
    ref: PersonRef,
    *,
    now: float,
    name: str | None = None,
    mobile: str | None = None,
    department: str | None = None,
    title: str | None = None,
    tags: Sequence[str] | str | None = None,
    groups: Sequence[str] | str | None = None,
) -> bool:
    """Change what is given (None leaves a field alone; ``department=""`` clears it; ``tags``/``groups``
    replace the person's set). Returns whether anything changed."""
    current = get_person(conn, ref)
    pid = int(current["id"])
    values: dict[str, Any] = {}
    if name is not None and (new_name := clean_name(name)) != current["name"]:
        values["name"] = new_name
    if mobile is not None and (number := clean_mobile(mobile)) != current["mobile"]:
        _mobile_taken(conn, number, but=pid)
        values["mobile"] = number
    if title is not None and (new_title := clean_title(title)) != current["title"]:
        values["title"] = new_title
    if department is not None and join_path(split_path(department)) != current["department"]:
        values["department_id"] = ensure_department(conn, department, now=now)
    changed = bool(values)
    if tags is not None:
        tag_list = _as_list(tags, "tags")
        if set(tag_list) != set(current["tags"]):
            _set_tags(conn, pid, tag_list)
            changed = True
    if groups is not None:
        names = _as_list(groups, "groups")
        if set(names) != set(current["groups"]):
            _set_groups(conn, pid, names, now)
            changed = True
    if changed:
        values["updated_at"] = now
        conn.execute(sa.update(people).where(people.c.id == pid).values(**values))
    return changed


def remove_person(conn: sa.Connection, ref: PersonRef) -> dict[str, Any]:
    """Remove a person (and their tags and memberships); returns who it was."""
    person = get_person(conn, ref)
    pid = person["id"]
    conn.execute(sa.delete(person_tags).where(person_tags.c.person_id == pid))
    conn.execute(sa.delete(group_members).where(group_members.c.person_id == pid))
    conn.execute(sa.delete(people).where(people.c.id == pid))
    return person


# ----- import ---------------------------------------------------------------------------------------------


def _known(conn: sa.Connection, mobiles: Sequence[str]) -> dict[str, importer.Known]:
    found: list[dict[str, Any]] = []
    for chunk in _chunks(mobiles):
        found.extend(
            dict(r) for r in conn.execute(_people_select().where(people.c.mobile.in_(chunk))).mappings()
        )
    tags, member_of = _details(conn, [r["id"] for r in found])
    return {
        r["mobile"]: importer.Known(
            id=int(r["id"]),
            name=r["name"],
            mobile=r["mobile"],
            department=r["department"],
            title=r["title"],
            tags=tuple(tags.get(r["id"], ())),
            groups=tuple(member_of.get(r["id"], ())),
        )
        for r in found
    }


def preview_import(conn: sa.Connection, parsed: importer.ParsedFile) -> importer.ImportPlan:
    """What importing ``parsed`` would do now; writes nothing."""
    existing = _known(conn, [r.mobile for r in parsed.rows])
    dept_paths = {p for (p,) in conn.execute(sa.select(departments.c.path))}
    group_names = {n for (n,) in conn.execute(sa.select(groups.c.name))}
    return importer.plan_import(parsed, existing, dept_paths, group_names)


class InvalidRows(InvalidContact):
    """An import refused because some rows are bad; ``plan`` lists them (nothing was written)."""

    def __init__(self, plan: importer.ImportPlan) -> None:
        lines = sorted({i.line for i in plan.issues})
        super().__init__(
            "file",
            f"{len(lines)} {'row is' if len(lines) == 1 else 'rows are'} not valid "
            f"(row {', '.join(map(str, lines[:10]))}"
            f"{'…' if len(lines) > 10 else ''}); nothing was imported. Correct them, or import the valid "
            "rows only",
        )
        self.plan = plan


def apply_import(
    conn: sa.Connection,
    parsed: importer.ParsedFile,
    *,
    now: float,
    skip_invalid: bool = False,
    progress: Progress | None = None,
) -> importer.ImportPlan:
    """Import in the caller's transaction: plan again against what the book holds now, then add and update.

    Refuses (:class:`InvalidRows`, nothing written) when a row is bad, unless ``skip_invalid``.
    ``progress(n)`` is called as rows are written, with how many were written since the last call.
    """
    plan = preview_import(conn, parsed)
    if plan.issues and not skip_invalid:
        raise InvalidRows(plan)
    dept_ids: dict[str, int | None] = {"": None}
    for row in plan.add:
        if row.department and row.department not in dept_ids:
            dept_ids[row.department] = ensure_department(conn, row.department, now=now)
    for up in plan.update:
        if "department" in up.changes and up.row.department not in dept_ids:
            assert up.row.department is not None
            dept_ids[up.row.department] = ensure_department(conn, up.row.department, now=now)
    group_ids = {name: _ensure_group(conn, name, now) for name in plan.new_groups}

    # Added people: one multi-row insert per chunk, then their ids by mobile for tags and groups.
    for chunk in _chunks(plan.add):
        conn.execute(
            sa.insert(people),
            [
                {
                    "name": r.name,
                    "mobile": r.mobile,
                    "department_id": dept_ids[r.department or ""],
                    "title": r.title or "",
                    "created_at": now,
                    "updated_at": now,
                }
                for r in chunk
            ],
        )
        added = sa.select(people.c.mobile, people.c.id).where(people.c.mobile.in_([r.mobile for r in chunk]))
        ids = {mobile: int(pid) for mobile, pid in conn.execute(added)}
        tag_rows = [{"person_id": ids[r.mobile], "tag": t} for r in chunk for t in r.tags or ()]
        if tag_rows:
            conn.execute(sa.insert(person_tags), tag_rows)
        member_rows = []
        for r in chunk:
            for g in r.groups or ():
                if g not in group_ids:
                    group_ids[g] = _ensure_group(conn, g, now)
                member_rows.append({"group_id": group_ids[g], "person_id": ids[r.mobile], "added_at": now})
        if member_rows:
            conn.execute(sa.insert(group_members), member_rows)
        if progress is not None:
            progress(len(chunk))

    for up in plan.update:
        values: dict[str, Any] = {"updated_at": now}
        if "name" in up.changes:
            values["name"] = up.row.name
        if "title" in up.changes:
            values["title"] = up.row.title
        if "department" in up.changes:
            values["department_id"] = dept_ids[up.row.department or ""]
        conn.execute(sa.update(people).where(people.c.id == up.person_id).values(**values))
        if "tags" in up.changes:
            _set_tags(conn, up.person_id, up.row.tags or ())
        if "groups" in up.changes:
            _set_groups(conn, up.person_id, up.row.groups or (), now)
        if progress is not None:
            progress(1)
    return plan


# ----- resolving an organiser's choice ---------------------------------------------------------------------


def resolve(
    conn: sa.Connection,
    *,
    people: Sequence[PersonRef] = (),
    departments: Sequence[DepartmentRef] = (),
    groups: Sequence[GroupRef] = (),
    numbers: Sequence[str] = (),
) -> list[Attendee]:
    """The attendees an organiser's choice names, each mobile once, in the order given (people, then
    departments with their sub-departments, then groups, then numbers).

    A bare number that belongs to someone in the book becomes that person. Raises
    :class:`ContactNotFound` for a person, department or group that does not exist and
    :class:`InvalidContact` for a number that is not one; ``field`` says which, e.g. ``numbers[2]``.
    """
    found: dict[str, Attendee] = {}

    def take(rows: Iterable[Any]) -> None:
        for r in rows:
            found.setdefault(r["mobile"], Attendee(int(r["id"]), r["name"], r["mobile"], r["department"]))

    p = _people_t
    if people:
        ids = [_person_id(conn, ref, f"people[{i}]") for i, ref in enumerate(people)]
        rows = {
            r["id"]: r
            for chunk in _chunks(ids)
            for r in conn.execute(_people_select().where(p.c.id.in_(chunk))).mappings()
        }
        take(rows[i] for i in ids)
    for i, dref in enumerate(departments):
        dept = get_department(conn, dref, f"departments[{i}]")
        ids = _subtree_ids(conn, dept)
        take(
            conn.execute(
                _people_select()
                .where(p.c.department_id.in_(ids))
                .order_by(_departments_t.c.path, p.c.name, p.c.id)
            ).mappings()
        )
    for i, gref in enumerate(groups):
        group = get_group(conn, gref, f"groups[{i}]")
        members = sa.select(group_members.c.person_id).where(group_members.c.group_id == group["id"])
        take(conn.execute(_people_select().where(p.c.id.in_(members)).order_by(p.c.name, p.c.id)).mappings())
    numbers_clean = [clean_mobile(n, f"numbers[{i}]") for i, n in enumerate(numbers)]
    fresh = [n for n in dict.fromkeys(numbers_clean) if n not in found]
    known: dict[str, Any] = {}
    for chunk in _chunks(fresh):
        known.update(
            (r["mobile"], r) for r in conn.execute(_people_select().where(p.c.mobile.in_(chunk))).mappings()
        )
    for number in fresh:
        row = known.get(number)
        if row is not None:
            take([row])
        else:
            found[number] = Attendee(None, "", number, "")
    return list(found.values())
