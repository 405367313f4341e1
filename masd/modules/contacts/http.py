"""The address book over HTTP: ``/v1/contacts`` (people, departments, groups, import, export).

    GET    /v1/contacts/people                 search people (q, mobile, department, tag, group)
    POST   /v1/contacts/people                 add a person
    GET    /v1/contacts/people/{id}            one person
    PATCH  /v1/contacts/people/{id}            change some of a person's details
    DELETE /v1/contacts/people/{id}            remove a person
    GET    /v1/contacts/departments            the department tree
    POST   /v1/contacts/departments            add a department by path
    PATCH  /v1/contacts/departments/{id}       rename a department
    DELETE /v1/contacts/departments/{id}       remove an empty department
    GET    /v1/contacts/groups                 groups with member counts
    POST   /v1/contacts/groups                 add a group
    GET    /v1/contacts/groups/{id}            a group and its members
    DELETE /v1/contacts/groups/{id}            remove a group
    POST   /v1/contacts/groups/{id}/members    put people in a group
    DELETE /v1/contacts/groups/{id}/members/{person_id}
    POST   /v1/contacts/import                 upload CSV or XLSX: a preview (dry_run, the default) or apply
    GET    /v1/contacts/export                 download CSV or XLSX

The address book holds other people's names and numbers, so an app needs a scope for it: reading
(GET: search, the tree, groups, export) needs ``contacts:read``, anything else (add, change, remove,
import, even an import's preview) needs ``contacts:write``, which includes reading. Without it the answer
is 403 ``forbidden`` with ``field: "scope"`` and the missing scope as ``value``. The one check is
:func:`required_scope`, a dependency of the whole router, so a new route cannot leave it out.

The router finds the calling app through :func:`masd.interfaces.http.calling_app` (401 without a valid
key; an app mounting the router elsewhere can put its own in ``dependency_overrides``) and the store at
``request.app.state.db``. Errors are the house shape, ``{"error": {"code", "reason", "field"?,
"value"?}}``, rendered by the app's :class:`~masd.interfaces.http.ApiError` handler.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import sqlalchemy as sa
import trio
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from masd.core.apps import App, Forbidden
from masd.core.times import utc_iso
from masd.interfaces.http import ApiError, ErrorResponse, calling_app, echo
from masd.store.db import Database

from . import importer
from . import store as book
from .importer import XLSX_MIME
from .model import ContactError

__all__ = ["database", "required_scope", "router"]

T = TypeVar("T")
MAX_ID = 2**63 - 1
MAX_PAGE = 1000

_CSV_MIME = "text/csv; charset=utf-8"


def database(request: Request) -> Database:
    """The store the mounting app keeps at ``app.state.db``."""
    db = getattr(request.app.state, "db", None)
    if db is None:
        raise RuntimeError("the contacts router needs the Database at app.state.db")
    return db  # type: ignore[no-any-return]


# Reading the book changes nothing; every other method changes it (an import's preview is asked for on
# the way to an import, so it is a write too).
_READS = frozenset({"GET", "HEAD"})


async def required_scope(request: Request, app: Annotated[App, Depends(calling_app)]) -> None:
    """403 naming the scope unless the calling app may do what the request's method does."""
    scope = "contacts:read" if request.method in _READS else "contacts:write"
    try:
        app.require(scope)
    except Forbidden as e:
        raise ApiError(403, "forbidden", e.reason, field=e.field, value=scope) from None


router = APIRouter(prefix="/v1/contacts", tags=["contacts"], dependencies=[Depends(required_scope)])

Db = Annotated[Database, Depends(database)]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "The body is not a JSON object",
        401: "No API key, or one that is not valid",
        403: "The app lacks the scope this needs (contacts:read to read, contacts:write to change); "
        "the error names it",
        404: "No such person, department or group",
        409: "The change conflicts with what exists (a mobile already in the book, a name taken, a "
        "department that still has people)",
        413: "The upload is larger than 1 MiB",
        422: "A field is not valid; the error names it",
        503: "The store is unavailable; retry after Retry-After seconds",
    }
    # Every route checks the key and the scope.
    return {c: {"model": ErrorResponse, "description": described[c]} for c in sorted({401, 403, *codes})}


def _refusal(e: ContactError) -> ApiError:
    return ApiError(e.status, e.code, e.reason, field=e.field, value=echo(e.value))


async def _read(db: Database, fn: Callable[[sa.Connection], T]) -> T:
    try:
        return await db.read(fn)
    except ContactError as e:
        raise _refusal(e) from None


async def _write(db: Database, fn: Callable[[sa.Connection], T]) -> T:
    try:
        return await db.write(fn)
    except ContactError as e:
        raise _refusal(e) from None


# ----- models ------------------------------------------------------------------------------------------


class PersonIn(BaseModel):
    """A person to add."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "张三",
                    "mobile": "13800138000",
                    "department": "市政府/办公室/秘书科",
                    "title": "科长",
                    "tags": ["党员"],
                    "groups": ["办公会"],
                }
            ]
        },
    )

    name: str = Field(description="Full name, at most 100 characters")
    mobile: str = Field(description="Mobile number; stored normalised (11 digits, or + and digits)")
    department: str | None = Field(None, description="Department path, e.g. 市政府/办公室; made if missing")
    title: str = Field("", description="Title or post (职务)")
    tags: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list, description="Group names; made if missing")


class PersonPatch(BaseModel):
    """The details to change; a field left out stays as it is. ``department: ""`` clears it; ``tags`` and
    ``groups`` replace the person's whole set."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    mobile: str | None = None
    department: str | None = None
    title: str | None = None
    tags: list[str] | None = None
    groups: list[str] | None = None


class PersonOut(BaseModel):
    id: int
    name: str
    mobile: str
    department: str = Field(description="Department path, empty when none")
    title: str
    tags: list[str]
    groups: list[str]
    created_at: str
    updated_at: str


class PeoplePage(BaseModel):
    people: list[PersonOut]
    total: int = Field(description="How many match, of which this page is `limit` from `offset`")


class DepartmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(examples=["市政府/办公室/秘书科"], description="Missing parents are made too")


class DepartmentRename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The new name (one name, not a path); departments below follow")


class DepartmentNode(BaseModel):
    id: int
    name: str
    path: str
    people: int = Field(description="People in this department itself")
    total: int = Field(description="People in it and every department below it")
    children: list[DepartmentNode]


class DepartmentTree(BaseModel):
    departments: list[DepartmentNode]


class DepartmentOut(BaseModel):
    id: int
    name: str
    path: str
    parent_id: int | None


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(examples=["办公会"])


class GroupOut(BaseModel):
    id: int
    name: str
    members: int
    created_at: str


class GroupList(BaseModel):
    groups: list[GroupOut]


class GroupDetail(BaseModel):
    id: int
    name: str
    created_at: str
    members: list[PersonOut]


class MembersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    people: list[int | str] = Field(min_length=1, description="Person ids or mobile numbers")


class MembersAdded(BaseModel):
    added: int = Field(description="How many were not members already")


class RowIssueOut(BaseModel):
    line: int = Field(description="The row number as a spreadsheet shows it (the header is row 1)")
    field: str
    value: str
    reason: str


class ImportCounts(BaseModel):
    add: int
    update: int
    unchanged: int
    invalid: int


class ImportResult(BaseModel):
    """What an import would do (``applied`` false) or did."""

    applied: bool
    counts: ImportCounts
    columns: list[str] = Field(description="The columns the file has")
    ignored_columns: list[str] = Field(description="Headers that name no column the book knows")
    invalid: list[RowIssueOut]
    add: list[dict[str, Any]]
    update: list[dict[str, Any]] = Field(description="Each with `changes`: field → {from, to}")
    new_departments: list[str]
    new_groups: list[str]


def _person_json(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": p["id"],
        "name": p["name"],
        "mobile": p["mobile"],
        "department": p["department"],
        "title": p["title"],
        "tags": p["tags"],
        "groups": p["groups"],
        "created_at": utc_iso(p["created_at"]),
        "updated_at": utc_iso(p["updated_at"]),
    }


def _tree_json(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": n["id"],
            "name": n["name"],
            "path": n["path"],
            "people": n["people"],
            "total": n["total"],
            "children": _tree_json(n["children"]),
        }
        for n in nodes
    ]


def _group_json(g: dict[str, Any]) -> dict[str, Any]:
    return {"id": g["id"], "name": g["name"], "members": g["members"], "created_at": utc_iso(g["created_at"])}


PersonId = Annotated[int, Path(alias="id", ge=1, le=MAX_ID, description="The person's id")]
DepartmentId = Annotated[int, Path(alias="id", ge=1, le=MAX_ID, description="The department's id")]
GroupId = Annotated[int, Path(alias="id", ge=1, le=MAX_ID, description="The group's id")]


# ----- people ------------------------------------------------------------------------------------------


@router.get(
    "/people",
    summary="Search people",
    response_model=PeoplePage,
    responses=_errors(401, 404, 422, 503),
)
async def list_people(
    db: Db,
    q: Annotated[
        str | None, Query(description="Part of a name (any case), a title, or digits of a mobile")
    ] = None,
    mobile: Annotated[str | None, Query(description="Exactly this mobile, in any written form")] = None,
    department: Annotated[
        str | None, Query(description="A department path (or id); people below it are included")
    ] = None,
    tag: Annotated[str | None, Query(description="Only people with this tag")] = None,
    group: Annotated[str | None, Query(description="Only members of this group (name or id)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """People matching every filter given, by department path then name."""
    filters: dict[str, Any] = {
        "search": q,
        "mobile": mobile,
        "department": department,
        "tag": tag,
        "group": group,
    }
    rows, total = await _read(
        db,
        lambda c: (
            book.find_people(c, limit=limit, offset=offset, **filters),
            book.count_people(c, **filters),
        ),
    )
    return JSONResponse({"people": [_person_json(p) for p in rows], "total": total})


@router.post(
    "/people",
    summary="Add a person",
    status_code=201,
    response_model=PersonOut,
    responses=_errors(400, 401, 409, 413, 422, 503),
)
async def create_person(body: PersonIn, db: Db) -> Response:
    """Missing departments and groups are made. A mobile already in the book is refused (409)."""

    def add(c: sa.Connection) -> dict[str, Any]:
        pid = book.add_person(
            c,
            name=body.name,
            mobile=body.mobile,
            department=body.department,
            title=body.title,
            tags=body.tags,
            groups=body.groups,
            now=time.time(),
        )
        return book.get_person(c, pid)

    person = await _write(db, add)
    return JSONResponse(
        _person_json(person), status_code=201, headers={"Location": f"{router.prefix}/people/{person['id']}"}
    )


@router.get(
    "/people/{id}", summary="One person", response_model=PersonOut, responses=_errors(401, 404, 422, 503)
)
async def get_person(person_id: PersonId, db: Db) -> Response:
    return JSONResponse(_person_json(await _read(db, lambda c: book.get_person(c, person_id))))


@router.patch(
    "/people/{id}",
    summary="Change a person's details",
    response_model=PersonOut,
    responses=_errors(400, 401, 404, 409, 413, 422, 503),
)
async def update_person(person_id: PersonId, body: PersonPatch, db: Db) -> Response:
    def change(c: sa.Connection) -> dict[str, Any]:
        book.update_person(c, person_id, now=time.time(), **body.model_dump(exclude_unset=True))
        return book.get_person(c, person_id)

    return JSONResponse(_person_json(await _write(db, change)))


@router.delete(
    "/people/{id}", summary="Remove a person", status_code=204, responses=_errors(401, 404, 422, 503)
)
async def delete_person(person_id: PersonId, db: Db) -> Response:
    await _write(db, lambda c: book.remove_person(c, person_id))
    return Response(status_code=204)


# ----- departments -------------------------------------------------------------------------------------


@router.get(
    "/departments", summary="The department tree", response_model=DepartmentTree, responses=_errors(401, 503)
)
async def department_tree(db: Db) -> Response:
    rows = await _read(db, book.list_departments)
    return JSONResponse({"departments": _tree_json(book.department_tree(rows))})


@router.post(
    "/departments",
    summary="Add a department",
    status_code=201,
    response_model=DepartmentOut,
    responses=_errors(400, 401, 409, 413, 422, 503),
)
async def create_department(body: DepartmentIn, db: Db) -> Response:
    found = await _write(
        db, lambda c: book.get_department(c, book.add_department(c, body.path, now=time.time()))
    )
    out = {k: found[k] for k in ("id", "name", "path", "parent_id")}
    return JSONResponse(out, status_code=201)


@router.patch(
    "/departments/{id}",
    summary="Rename a department",
    response_model=DepartmentOut,
    responses=_errors(400, 401, 404, 409, 413, 422, 503),
)
async def rename_department(dept_id: DepartmentId, body: DepartmentRename, db: Db) -> Response:
    def rename(c: sa.Connection) -> dict[str, Any]:
        book.rename_department(c, dept_id, body.name)
        return book.get_department(c, dept_id)

    found = await _write(db, rename)
    return JSONResponse({k: found[k] for k in ("id", "name", "path", "parent_id")})


@router.delete(
    "/departments/{id}",
    summary="Remove an empty department",
    status_code=204,
    responses=_errors(401, 404, 409, 422, 503),
)
async def delete_department(dept_id: DepartmentId, db: Db) -> Response:
    """Refused (409) while the department has people or sub-departments."""
    await _write(db, lambda c: book.remove_department(c, dept_id))
    return Response(status_code=204)


# ----- groups -------------------------------------------------------------------------------------------


@router.get(
    "/groups", summary="Groups with member counts", response_model=GroupList, responses=_errors(401, 503)
)
async def list_groups(db: Db) -> Response:
    return JSONResponse({"groups": [_group_json(g) for g in await _read(db, book.list_groups)]})


@router.post(
    "/groups",
    summary="Add a group",
    status_code=201,
    response_model=GroupOut,
    responses=_errors(400, 401, 409, 413, 422, 503),
)
async def create_group(body: GroupIn, db: Db) -> Response:
    def add(c: sa.Connection) -> dict[str, Any]:
        gid = book.add_group(c, body.name, now=time.time())
        return next(g for g in book.list_groups(c) if g["id"] == gid)

    return JSONResponse(_group_json(await _write(db, add)), status_code=201)


@router.get(
    "/groups/{id}",
    summary="A group and its members",
    response_model=GroupDetail,
    responses=_errors(401, 404, 422, 503),
)
async def get_group(group_id: GroupId, db: Db) -> Response:
    group, members = await _read(
        db, lambda c: (book.get_group(c, group_id), book.find_people(c, group=group_id, limit=None))
    )
    return JSONResponse(
        {
            "id": group["id"],
            "name": group["name"],
            "created_at": utc_iso(group["created_at"]),
            "members": [_person_json(p) for p in members],
        }
    )


@router.delete(
    "/groups/{id}", summary="Remove a group", status_code=204, responses=_errors(401, 404, 422, 503)
)
async def delete_group(group_id: GroupId, db: Db) -> Response:
    """The group's members stay in the address book."""
    await _write(db, lambda c: book.remove_group(c, group_id))
    return Response(status_code=204)


@router.post(
    "/groups/{id}/members",
    summary="Put people in a group",
    response_model=MembersAdded,
    responses=_errors(400, 401, 404, 413, 422, 503),
)
async def add_members(group_id: GroupId, body: MembersIn, db: Db) -> Response:
    """All or none: an unknown person refuses the whole request (404 naming ``people[i]``)."""
    added = await _write(db, lambda c: book.add_members(c, group_id, body.people, now=time.time()))
    return JSONResponse({"added": added})


@router.delete(
    "/groups/{id}/members/{person_id}",
    summary="Take a person out of a group",
    status_code=204,
    responses=_errors(401, 404, 422, 503),
)
async def remove_member(
    group_id: GroupId,
    person_id: Annotated[int, Path(ge=1, le=MAX_ID, description="The person's id")],
    db: Db,
) -> Response:
    removed = await _write(db, lambda c: book.remove_members(c, group_id, [person_id]))
    if not removed:
        raise ApiError(404, "not_found", "is not a member of this group", field="person_id", value=person_id)
    return Response(status_code=204)


# ----- import and export --------------------------------------------------------------------------------


_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "description": "The file itself as the body: CSV (UTF-8, with or without BOM, or GBK) or XLSX, "
        "with a header row naming the columns (姓名/name, 手机/mobile, 部门/department, 职务/title, "
        "标签/tags, 分组/groups). At most 1 MiB.",
        "content": {
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            XLSX_MIME: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/import",
    summary="Import people from CSV or XLSX (preview by default)",
    response_model=ImportResult,
    responses=_errors(400, 401, 413, 422, 503),
    openapi_extra=_UPLOAD_DOC,
)
async def import_people(
    request: Request,
    db: Db,
    dry_run: Annotated[
        bool, Query(description="true (the default): only say what would happen; false: write it")
    ] = True,
    skip_invalid: Annotated[
        bool, Query(description="With dry_run=false: import the valid rows and leave the invalid ones out")
    ] = False,
) -> Response:
    """People are matched by mobile: new ones are added, known ones updated, so importing the same file
    twice changes nothing. With ``dry_run=false`` the import is one transaction; when a row is invalid
    and ``skip_invalid`` is false nothing is written and the answer is 422 ``invalid_rows`` listing them."""
    data = await request.body()
    try:
        # Reading a spreadsheet is CPU work; keep it off the event loop.
        parsed = await trio.to_thread.run_sync(importer.parse_file, data)
    except ContactError as e:
        raise _refusal(e) from None
    if dry_run:
        plan = await _read(db, lambda c: book.preview_import(c, parsed))
    else:
        try:
            plan = await db.write(
                lambda c: book.apply_import(c, parsed, now=time.time(), skip_invalid=skip_invalid)
            )
        except book.InvalidRows as e:
            found = e.plan.as_dict()
            raise ApiError(
                422, "invalid_rows", e.reason, field="file", counts=found["counts"], invalid=found["invalid"]
            ) from None
        except ContactError as e:
            raise _refusal(e) from None
    return JSONResponse({"applied": not dry_run, **plan.as_dict()})


@router.get(
    "/export",
    summary="Download the address book as CSV or XLSX",
    response_class=Response,
    responses={
        200: {
            "description": "The file, in the columns import reads",
            "content": {"text/csv": {}, XLSX_MIME: {}},
        },
        **_errors(401, 404, 422, 503),
    },
)
async def export_people(
    db: Db,
    format: Annotated[Literal["csv", "xlsx"], Query(description="File format")] = "csv",
    lang: Annotated[Literal["zh", "en"], Query(description="Header language: 姓名… or name…")] = "zh",
    department: Annotated[str | None, Query(description="Only this department and below")] = None,
    group: Annotated[str | None, Query(description="Only members of this group")] = None,
) -> Response:
    rows = await _read(db, lambda c: book.export_people(c, department=department, group=group))
    if format == "xlsx":
        data = await trio.to_thread.run_sync(importer.write_xlsx, rows, lang)
        media = XLSX_MIME
    else:
        data = importer.write_csv(rows, lang)
        media = _CSV_MIME
    return Response(
        data, media_type=media, headers={"Content-Disposition": f'attachment; filename="contacts.{format}"'}
    )


# The tree model refers to itself.
DepartmentNode.model_rebuild()
