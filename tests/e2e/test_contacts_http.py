"""The address book's HTTP router over real HTTP: an app built here mounts it the way the daemon does
(behind the bearer-key dependency, here answered from a table of test apps, with the store at
``app.state.db`` and the house error handlers) and Hypercorn serves it on a free loopback port. The
scopes against the daemon itself, granted from the command line, are in test_app_scopes.py."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openpyxl
import pytest
import trio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from hypercorn.trio import serve

from masd.core.apps import App
from masd.interfaces.http import ApiError, calling_app, error_response, hypercorn_config, validation_response
from masd.modules.contacts.http import router
from masd.store.db import Database

KEY = "masd_test_key"
READER_KEY = "masd_reader_key"
OTHER_KEY = "masd_other_key"
APPS = {
    KEY: App(1, "test", scopes=frozenset({"contacts:read", "contacts:write"})),
    READER_KEY: App(2, "reader", scopes=frozenset({"contacts:read"})),
    OTHER_KEY: App(3, "other"),  # the default scopes: no address book
}
FILE = (
    "姓名,手机,部门,职务,标签,分组\n"
    '张三,13800138000,市政府/办公室/秘书科,科长,"党员,值班",办公会\n'
    "李四,13900139000,市政府/办公室,,,办公会\n"
).encode("gbk")


def build_app(db: Database) -> FastAPI:
    async def caller(request: Request) -> App:
        found = APPS.get(request.headers.get("authorization", "").removeprefix("Bearer "))
        if found is None:
            raise ApiError(401, "unauthorized", "no API key")
        return found

    async def on_api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.reason, exc.headers, **exc.extra)

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return validation_response(exc)

    app = FastAPI()
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.dependency_overrides[calling_app] = caller
    app.include_router(router, dependencies=[Depends(calling_app)])
    app.state.db = db
    return app


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    db = Database(f"sqlite:///{tmp_path / 'masd.db'}", group_commit_ms=1)
    db.upgrade()
    async with trio.open_nursery() as nursery:
        await nursery.start(db.run_committer)
        binds = await nursery.start(
            lambda task_status: serve(build_app(db), hypercorn_config("127.0.0.1:0"), task_status=task_status)  # type: ignore[arg-type]
        )
        async with httpx.AsyncClient(base_url=binds[0], headers={"Authorization": f"Bearer {KEY}"}) as c:
            yield c
        nursery.cancel_scope.cancel()
    db.dispose()


async def test_every_route_asks_for_the_api_key(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/contacts/people", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def _every_route() -> list[tuple[str, str]]:
    # Every operation the router has, with ids filled in: the scope is checked before the id is looked up.
    return [
        (method, route.path.replace("{id}", "1").replace("{person_id}", "1"))
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods or ())
    ]


@pytest.mark.parametrize(("method", "path"), _every_route())
async def test_an_app_without_the_address_book_scopes_is_refused_on_every_route(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    r = await client.request(method, path, headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert r.status_code == 403, r.text
    scope = "contacts:read" if method == "GET" else "contacts:write"
    error = r.json()["error"]
    assert (error["code"], error["field"], error["value"]) == ("forbidden", "scope", scope)
    assert f"lacks the scope '{scope}'" in error["reason"]
    assert f"masd apps set other --scope +{scope}" in error["reason"]


async def test_an_app_that_may_read_the_address_book_may_not_change_it(client: httpx.AsyncClient) -> None:
    reader = {"Authorization": f"Bearer {READER_KEY}"}
    await client.post("/v1/contacts/import", params={"dry_run": "false"}, content=FILE)
    assert (await client.get("/v1/contacts/people", headers=reader)).json()["total"] == 2
    assert (await client.get("/v1/contacts/export", headers=reader)).status_code == 200
    r = await client.post(
        "/v1/contacts/people", json={"name": "王五", "mobile": "13700137000"}, headers=reader
    )
    assert r.status_code == 403 and r.json()["error"]["value"] == "contacts:write"
    r = await client.post("/v1/contacts/import", content=FILE, headers=reader)  # even a preview
    assert r.status_code == 403 and r.json()["error"]["value"] == "contacts:write"
    assert (await client.get("/v1/contacts/people")).json()["total"] == 2


async def test_a_person_created_is_returned_normalised(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/contacts/people",
        json={"name": "张三", "mobile": "+86 138 0013 8000", "department": "市政府>办公室"},
    )
    assert r.status_code == 201
    body = r.json()
    assert (body["mobile"], body["department"]) == ("13800138000", "市政府/办公室")
    assert r.headers["location"] == f"/v1/contacts/people/{body['id']}"
    assert (await client.get(r.headers["location"])).json() == body


async def test_an_invalid_mobile_is_422_naming_the_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/contacts/people", json={"name": "张三", "mobile": "12345"})
    assert r.status_code == 422
    error = r.json()["error"]
    assert (error["code"], error["field"], error["value"]) == ("invalid", "mobile", "12345")


async def test_a_mobile_already_in_the_book_is_409(client: httpx.AsyncClient) -> None:
    await client.post("/v1/contacts/people", json={"name": "张三", "mobile": "13800138000"})
    r = await client.post("/v1/contacts/people", json={"name": "李四", "mobile": "13800138000"})
    assert r.status_code == 409 and r.json()["error"]["field"] == "mobile"


async def test_an_unknown_person_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/contacts/people/99")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_patch_changes_only_the_fields_given(client: httpx.AsyncClient) -> None:
    made = (
        await client.post(
            "/v1/contacts/people", json={"name": "张三", "mobile": "13800138000", "title": "科员"}
        )
    ).json()
    r = await client.patch(f"/v1/contacts/people/{made['id']}", json={"groups": ["办公会"]})
    assert r.status_code == 200 and (r.json()["title"], r.json()["groups"]) == ("科员", ["办公会"])


async def test_a_deleted_person_is_gone(client: httpx.AsyncClient) -> None:
    made = (await client.post("/v1/contacts/people", json={"name": "张三", "mobile": "13800138000"})).json()
    assert (await client.delete(f"/v1/contacts/people/{made['id']}")).status_code == 204
    assert (await client.get(f"/v1/contacts/people/{made['id']}")).status_code == 404


async def test_search_filters_by_department_below_and_counts(client: httpx.AsyncClient) -> None:
    await client.post("/v1/contacts/import", params={"dry_run": "false"}, content=FILE)
    await client.post(
        "/v1/contacts/people", json={"name": "王五", "mobile": "13700137000", "department": "财政局"}
    )
    r = await client.get("/v1/contacts/people", params={"department": "市政府", "limit": 1})
    assert r.json()["total"] == 2 and len(r.json()["people"]) == 1


async def test_an_upload_previews_by_default_and_writes_nothing(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/contacts/import", content=FILE, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json()["applied"] is False and r.json()["counts"]["add"] == 2
    assert (await client.get("/v1/contacts/people")).json()["total"] == 0


async def test_an_upload_with_a_bad_row_is_refused_listing_it(client: httpx.AsyncClient) -> None:
    data = FILE + "王五,123,,,,\n".encode("gbk")
    r = await client.post("/v1/contacts/import", params={"dry_run": "false"}, content=data)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_rows" and [i["line"] for i in error["invalid"]] == [4]
    assert (await client.get("/v1/contacts/people")).json()["total"] == 0


async def test_an_unreadable_upload_is_422_on_the_file(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/contacts/import", content="张三,13800138000\n".encode())
    assert r.status_code == 422 and r.json()["error"]["field"] == "file"


async def test_an_xlsx_download_uploads_again_as_unchanged(client: httpx.AsyncClient) -> None:
    await client.post("/v1/contacts/import", params={"dry_run": "false"}, content=FILE)
    r = await client.get("/v1/contacts/export", params={"format": "xlsx"})
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = openpyxl.load_workbook(io.BytesIO(r.content)).worksheets[0]
    assert [c.value for c in sheet[1]] == ["姓名", "手机", "部门", "职务", "标签", "分组"]
    again = (await client.post("/v1/contacts/import", params={"dry_run": "false"}, content=r.content)).json()
    assert again["applied"] is True and again["counts"]["unchanged"] == 2


async def test_a_csv_download_has_english_headers_when_asked(client: httpx.AsyncClient) -> None:
    await client.post("/v1/contacts/import", params={"dry_run": "false"}, content=FILE)
    r = await client.get("/v1/contacts/export", params={"format": "csv", "lang": "en"})
    assert r.headers["content-disposition"] == 'attachment; filename="contacts.csv"'
    assert r.content.decode("utf-8-sig").splitlines()[0] == "name,mobile,department,title,tags,groups"


async def test_the_department_tree_is_nested(client: httpx.AsyncClient) -> None:
    await client.post("/v1/contacts/import", params={"dry_run": "false"}, content=FILE)
    (root,) = (await client.get("/v1/contacts/departments")).json()["departments"]
    assert (root["path"], root["total"], root["children"][0]["path"]) == ("市政府", 2, "市政府/办公室")


async def test_a_department_with_people_cannot_be_deleted(client: httpx.AsyncClient) -> None:
    await client.post("/v1/contacts/import", params={"dry_run": "false"}, content=FILE)
    (root,) = (await client.get("/v1/contacts/departments")).json()["departments"]
    office = root["children"][0]
    r = await client.delete(f"/v1/contacts/departments/{office['id']}")
    assert r.status_code == 409 and r.json()["error"]["field"] == "department"


async def test_group_members_are_added_listed_and_removed(client: httpx.AsyncClient) -> None:
    a = (await client.post("/v1/contacts/people", json={"name": "张三", "mobile": "13800138000"})).json()
    group = (await client.post("/v1/contacts/groups", json={"name": "办公会"})).json()
    r = await client.post(
        f"/v1/contacts/groups/{group['id']}/members", json={"people": [a["id"], "13800138000"]}
    )
    assert r.json() == {"added": 1}
    assert [
        m["name"] for m in (await client.get(f"/v1/contacts/groups/{group['id']}")).json()["members"]
    ] == ["张三"]
    assert (await client.delete(f"/v1/contacts/groups/{group['id']}/members/{a['id']}")).status_code == 204
    assert (await client.get("/v1/contacts/groups")).json()["groups"][0]["members"] == 0


async def test_an_unknown_body_field_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/contacts/groups", json={"name": "办公会", "colour": "red"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "colour"
