"""``GET /v1/replies`` end to end: replies injected through the gateway as a channel would deliver them,
read back over real HTTP by the app they were routed to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from masd.interfaces.http import RepliesPage
from masd.store import apps as app_store
from masd_adapters.base import InboundReply
from tests.e2e.test_http import Env, _error, running

SERVICE_NUMBER = "106570001"  # the sim channel's default


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with running(tmp_path, MASD_SOCKET__ENABLED="false") as e:
        # "t" owns extension 17 and "other" 18, so a reply's destination says whose it is.
        await e.daemon.db.write(lambda c: app_store.update_app(c, "t", extension="17"))
        await e.daemon.db.write(lambda c: app_store.update_app(c, "other", extension="18"))
        yield e


async def _reply(env: Env, destination: str, text: str, sender: str = "13800138000") -> None:
    await env.daemon.gateway.reply("sim", InboundReply(sender, SERVICE_NUMBER + destination, text))


async def _replies(env: Env, key: str | None = None, **params: Any) -> dict[str, Any]:
    r = await env.client.get("/v1/replies", params=params, headers=env.auth(key))
    assert r.status_code == 200, r.text
    RepliesPage.model_validate(r.json())
    page: dict[str, Any] = r.json()
    return page


async def test_a_reply_is_listed_with_the_message_it_answers(env: Env) -> None:
    r = await env.send(
        {"to": "13800138000", "text": "Reply 1 to confirm", "extension": "3", "client_ref": "m-1"}
    )
    message_id = r.json()["id"]
    msg = await env.wait_final(message_id)
    await _reply(env, "173", "1 确认")

    page = await _replies(env)
    (reply,) = page["replies"]
    assert page["next"] == reply["id"]
    assert (reply["sender"], reply["destination"], reply["text"]) == ("13800138000", "106570001173", "1 确认")
    assert (reply["extension"], reply["matched_by"], reply["channel"]) == ("3", "extension", "sim")
    assert (reply["message_id"], reply["client_ref"]) == (message_id, "m-1")
    assert reply["delivery_id"] == msg["deliveries"][0]["id"]
    assert reply["received_at"].endswith("Z")


async def test_a_reply_answering_nothing_known_has_no_message(env: Env) -> None:
    await _reply(env, "17", "hello?", sender="13900139000")

    (reply,) = (await _replies(env))["replies"]
    assert (reply["message_id"], reply["client_ref"], reply["delivery_id"]) == (None, None, None)
    assert reply["extension"] == ""


async def test_polling_with_next_returns_each_reply_once_in_order(env: Env) -> None:
    for i in range(5):
        await _reply(env, "17", f"r{i}")

    seen: list[str] = []
    cursor = 0
    for expected in (2, 2, 1, 0):
        page = await _replies(env, after=cursor, limit=2)
        assert len(page["replies"]) == expected
        seen += [x["text"] for x in page["replies"]]
        cursor = page["next"]
    assert seen == ["r0", "r1", "r2", "r3", "r4"]

    await _reply(env, "17", "late")
    page = await _replies(env, after=cursor)
    assert [x["text"] for x in page["replies"]] == ["late"]


async def test_an_empty_page_gives_back_the_cursor_it_was_given(env: Env) -> None:
    page = await _replies(env, after=12345)
    assert page == {"replies": [], "next": 12345}


async def test_an_app_sees_only_its_own_replies(env: Env) -> None:
    await _reply(env, "17", "for t")
    await _reply(env, "18", "for other")
    await _reply(env, "99", "for nobody", sender="13700137000")

    assert [x["text"] for x in (await _replies(env))["replies"]] == ["for t"]
    assert [x["text"] for x in (await _replies(env, key=env.other_key))["replies"]] == ["for other"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"after": -1}, "after"),
        ({"after": "x"}, "after"),
    ],
)
async def test_a_bad_cursor_or_limit_is_refused_naming_it(
    env: Env, params: dict[str, Any], field: str
) -> None:
    r = await env.client.get("/v1/replies", params=params, headers=env.auth())
    err = _error(r, 422)
    assert (err["code"], err["field"]) == ("invalid", field)


async def test_replies_need_a_key(env: Env) -> None:
    err = _error(await env.client.get("/v1/replies"), 401)
    assert err["code"] == "unauthorized"
