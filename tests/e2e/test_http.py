"""The HTTP interface end to end: a real daemon with the sim channel, real HTTP over loopback.

Each test starts its own daemon in a temporary data directory, so tests share nothing but the code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import trio

import masd
from masd.config import load_config
from masd.daemon import Daemon
from masd.interfaces.http import ErrorResponse, KeyCache, MessageOut, ReadyOut, SendResponse
from masd.store import apps as app_store
from masd.store.db import StoreUnavailable
from masd.store.tables import messages as messages_table

FINAL = {"delivered", "undelivered", "expired", "rejected", "failed", "cancelled"}


@dataclasses.dataclass
class Env:
    daemon: Daemon
    client: httpx.AsyncClient
    key: str
    other_key: str

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    async def send(self, body: Any, key: str | None = None) -> httpx.Response:
        return await self.client.post("/v1/messages", json=body, headers=self.auth(key))

    async def get(self, message_id: int, key: str | None = None) -> httpx.Response:
        return await self.client.get(f"/v1/messages/{message_id}", headers=self.auth(key))

    async def wait_final(self, message_id: int, timeout: float = 10.0) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                r = await self.get(message_id)
                assert r.status_code == 200, r.text
                msg: dict[str, Any] = r.json()
                if all(d["state"] in FINAL for d in msg["deliveries"]):
                    return msg
                await trio.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **extra_env: str) -> AsyncIterator[Env]:
    port = _free_port()
    env = {
        "MASD_NODE__DATA_DIR": str(tmp_path),
        "MASD_HTTP__LISTEN": f"127.0.0.1:{port}",
        "MASD_SOCKET__ENABLED": "false",
        "MASD_CHANNELS__SIM__OPTIONS": "{receipt_delay = 0.01}",
        **extra_env,
    }
    daemon = Daemon(load_config(None, env=env))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        _, key = await daemon.db.write(lambda c: app_store.create_app(c, "t", now=time.time()))
        _, other = await daemon.db.write(lambda c: app_store.create_app(c, "other", now=time.time()))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield Env(daemon, client, key, other)
        daemon.stop()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with running(tmp_path) as e:
        yield e


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    ErrorResponse.model_validate(r.json())
    err: dict[str, Any] = r.json()["error"]
    return err


# ----- sending and following -------------------------------------------------------------------------


async def test_send_then_follow_until_delivered(env: Env) -> None:
    r = await env.send({"to": "+86 138-0013-8000", "text": "Your code is 482913."})
    assert r.status_code == 201, r.text
    body = SendResponse.model_validate(r.json())
    assert body.state == "queued"
    assert body.created is True
    assert body.recipients == ["13800138000"]
    assert (body.segments, body.encoding) == (1, "gsm7")
    assert body.links.self_ == f"/v1/messages/{body.id}" == r.headers["location"]

    msg = await env.wait_final(body.id)
    MessageOut.model_validate(msg)
    assert msg["state"] == "delivered"
    assert msg["counts"] == {"delivered": 1}
    assert msg["text"] == "Your code is 482913."
    assert msg["created_at"].endswith("Z")
    (d,) = msg["deliveries"]
    assert d["recipient"] == "13800138000"
    assert d["attempts"] >= 1
    assert d["segment_count"] == 1
    (seg,) = d["segments"]
    assert (seg["seq"], seg["total"], seg["state"]) == (1, 1, "delivered")
    assert seg["carrier_id"]
    assert seg["receipt_at"] is not None


async def test_long_chinese_text_is_ucs2_in_several_segments(env: Env) -> None:
    text = "【会议通知】明天上午9点在三楼会议室召开项目评审会，请准时参加。回复1确认，回复2请假。" * 3
    r = await env.send({"to": ["13800138000", "13900139000", "8613800138000"], "text": text})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["encoding"] == "ucs2"
    assert body["segments"] >= 2
    assert body["recipients"] == ["13800138000", "13900139000"]  # the third is the first again

    msg = await env.wait_final(body["id"])
    assert msg["state"] == "delivered"
    assert msg["encoding"] == "ucs2"
    for d in msg["deliveries"]:
        assert d["segment_count"] == body["segments"]
        delivered = [s for s in d["segments"] if s["state"] == "delivered"]
        assert sorted(s["seq"] for s in delivered) == list(range(1, body["segments"] + 1))
        assert {s["total"] for s in d["segments"]} == {body["segments"]}


async def test_mixed_state_summary_and_scheduled_send(env: Env) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    r = await env.send(
        {"to": "13800138000", "text": "later", "send_at": later.astimezone().isoformat(), "priority": 9}
    )
    assert r.status_code == 201, r.text
    await trio.sleep(0.3)
    msg = (await env.get(r.json()["id"])).json()
    assert msg["state"] == "queued"  # not due for an hour
    assert msg["priority"] == 9
    sent_at = datetime.fromisoformat(msg["send_at"])
    assert abs((sent_at - later).total_seconds()) < 0.01


async def test_client_ref_repeat_returns_the_stored_message(env: Env) -> None:
    body = {"to": "13800138000", "text": "once only", "client_ref": "oa-42"}
    first = await env.send(body)
    again = await env.send(body)
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["created"] is False
    # The same reference from another app is another message.
    theirs = await env.send(body, key=env.other_key)
    assert theirs.status_code == 201
    assert theirs.json()["id"] != first.json()["id"]

    stored = await env.daemon.db.read(
        lambda c: c.execute(
            sa.select(sa.func.count())
            .select_from(messages_table)
            .where(messages_table.c.client_ref == "oa-42")
        ).scalar_one()
    )
    assert stored == 2  # one per app


# ----- refusals ---------------------------------------------------------------------------------------


async def test_invalid_recipient_is_named_with_its_index(env: Env) -> None:
    err = _error(await env.send({"to": ["13800138000", "12345"], "text": "hi"}), 422)
    assert err["code"] == "invalid"
    assert err["field"] == "to"
    assert err["index"] == 1
    assert err["value"] == "12345"
    assert "mainland" in err["reason"]


async def test_body_validation_errors_name_the_field(env: Env) -> None:
    err = _error(await env.send({"to": "13800138000"}), 422)
    assert (err["field"], err["reason"]) == ("text", "is required")

    err = _error(await env.send({"to": "13800138000", "text": "hi", "priority": 12}), 422)
    assert err["field"] == "priority"
    assert err["value"] == 12
    assert "9" in err["reason"]

    err = _error(await env.send({"to": "13800138000", "text": ""}), 422)
    assert err["field"] == "text"

    err = _error(await env.send({"to": [], "text": "hi"}), 422)
    assert err["field"] == "to"

    err = _error(await env.send({"to": ["13800138000", 5], "text": "hi"}), 422)
    assert (err["field"], err["index"]) == ("to", 1)

    err = _error(await env.send({"to": "13800138000", "text": "hi", "sendAt": "2030-01-01T00:00:00Z"}), 422)
    assert err["field"] == "sendAt"
    assert "unknown field" in err["reason"]

    err = _error(await env.send({"to": "13800138000", "text": "hi", "channel": "nope"}), 422)
    assert (err["field"], err["value"]) == ("channel", "nope")

    err = _error(await env.send({"to": "13800138000", "text": "hi", "send_at": "tomorrow"}), 422)
    assert err["field"] == "send_at"

    # Nothing refused was stored.
    stored = await env.daemon.db.read(
        lambda c: c.execute(sa.select(sa.func.count()).select_from(messages_table)).scalar_one()
    )
    assert stored == 0


async def test_body_that_is_not_json(env: Env) -> None:
    auth = env.auth()
    r = await env.client.post(
        "/v1/messages", content=b"{to: 1", headers={**auth, "Content-Type": "application/json"}
    )
    assert "not valid JSON" in _error(r, 400)["reason"]
    r = await env.client.post("/v1/messages", content=b'{"to":"13800138000","text":"x"}', headers=auth)
    assert "Content-Type: application/json" in _error(r, 400)["reason"]
    r = await env.client.post("/v1/messages", json=["13800138000"], headers=auth)
    assert "JSON object" in _error(r, 400)["reason"]
    r = await env.client.post("/v1/messages", headers={**auth, "Content-Type": "application/json"})
    assert "empty" in _error(r, 400)["reason"]


async def test_oversized_body_is_refused(env: Env) -> None:
    r = await env.send({"to": "13800138000", "text": "x" * (1024 * 1024 + 1)})
    assert _error(r, 413)["code"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked, counted as it comes
        yield b'{"to": "13800138000", "text": "'
        for _ in range(40):
            yield b"x" * 32768
        yield b'"}'

    headers = {**env.auth(), "Content-Type": "application/json"}
    r = await env.client.post("/v1/messages", content=chunks(), headers=headers)
    assert _error(r, 413)["code"] == "too_large"


async def test_missing_or_unknown_key_is_401(env: Env) -> None:
    body = {"to": "13800138000", "text": "hi"}
    r = await env.client.post("/v1/messages", json=body)
    err = _error(r, 401)
    assert err["code"] == "unauthorized"
    assert "masd apps create NAME" in err["reason"]
    assert r.headers["www-authenticate"].startswith("Bearer")

    r = await env.send(body, key="masd_not-a-key")
    assert "not valid" in _error(r, 401)["reason"]
    assert 'error="invalid_token"' in r.headers["www-authenticate"]

    r = await env.client.post("/v1/messages", json=body, headers={"Authorization": f"Basic {env.key}"})
    assert "Bearer" in _error(r, 401)["reason"]

    r = await env.client.get("/v1/messages/1")
    _error(r, 401)


async def test_another_apps_message_is_not_found(env: Env) -> None:
    r = await env.send({"to": "13800138000", "text": "mine"})
    mid = r.json()["id"]
    assert (await env.get(mid)).status_code == 200
    err = _error(await env.get(mid, key=env.other_key), 404)
    assert err["code"] == "not_found"
    _error(await env.get(mid + 1000), 404)
    err = _error(await env.client.get("/v1/messages/abc", headers=env.auth()), 422)
    assert err["field"] == "id"


# ----- an app's cancel and retry -----------------------------------------------------------------------


async def test_an_app_cancels_what_of_its_message_is_still_queued(env: Env) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    r = await env.send({"to": ["13800138000", "13900139000"], "text": "later", "send_at": later})
    mid = r.json()["id"]
    r = await env.client.post(f"/v1/messages/{mid}/cancel", headers=env.auth())
    assert r.status_code == 200, r.text
    assert r.json() == {"id": mid, "cancelled": 2, "counts": {"cancelled": 2}}
    msg = MessageOut.model_validate((await env.get(mid)).json())
    assert {d.state for d in msg.deliveries} == {"cancelled"}
    assert {d.reason for d in msg.deliveries} == {"cancelled by the app"}
    again = await env.client.post(f"/v1/messages/{mid}/cancel", headers=env.auth())
    assert again.json()["cancelled"] == 0


async def test_cancel_and_retry_of_another_apps_message_are_404(env: Env) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    mid = (await env.send({"to": "13800138000", "text": "mine", "send_at": later})).json()["id"]
    for action in ("cancel", "retry"):
        err = _error(
            await env.client.post(f"/v1/messages/{mid}/{action}", headers=env.auth(env.other_key)), 404
        )
        assert err["code"] == "not_found"
        _error(await env.client.post(f"/v1/messages/{mid + 1000}/{action}", headers=env.auth()), 404)
        _error(await env.client.post(f"/v1/messages/{mid}/{action}"), 401)
    assert (await env.get(mid)).json()["state"] == "queued"


async def test_an_app_retries_its_undelivered_message_and_the_history_shows_the_first_attempt(
    tmp_path: Path,
) -> None:
    options = "{receipt_delay = 0.01, outcomes = {undelivered = 1.0}}"
    async with running(tmp_path, MASD_CHANNELS__SIM__OPTIONS=options) as env:
        mid = (await env.send({"to": "13800138000", "text": "fails", "validity_seconds": 600})).json()["id"]
        first = await env.wait_final(mid)
        assert first["state"] == "undelivered"
        r = await env.client.post(f"/v1/messages/{mid}/retry", headers=env.auth())
        assert r.status_code == 200, r.text
        assert (r.json()["id"], r.json()["retried"]) == (mid, 1)
        msg = await env.wait_final(mid)
        MessageOut.model_validate(msg)
        (dl,) = msg["deliveries"]
        assert dl["state"] == "undelivered"
        (h,) = dl["history"]
        assert (h["event"], h["channel"], h["state"]) == ("retry", "sim", "undelivered")
        assert h["at"].endswith("Z")
        assert [s["state"] for s in dl["segments"]] == ["superseded", "undelivered"]


async def test_queue_full_is_503_with_retry_after(tmp_path: Path) -> None:
    async with running(tmp_path, MASD_QUEUE__MAX_PENDING="1") as env:
        r = await env.send({"to": ["13800138000", "13900139000"], "text": "two"})
        err = _error(r, 503)
        assert err["code"] == "queue_full"
        assert r.headers["retry-after"] == "5"


async def test_key_cache_asks_once_and_forgets_misses_sooner() -> None:
    calls: list[str] = []

    async def lookup(key: str) -> dict[str, Any] | None:
        calls.append(key)
        await trio.sleep(0.05)
        return {"id": 1, "name": "t"} if key == "good" else None

    cache = KeyCache(lookup, ttl=60, miss_ttl=0.1)
    async with trio.open_nursery() as nursery:
        for _ in range(20):  # a burst of requests with one key shares one lookup
            nursery.start_soon(cache.get, "good")
    assert calls == ["good"]
    assert await cache.get("good") == {"id": 1, "name": "t"}
    assert await cache.get("bad") is None
    assert await cache.get("bad") is None
    assert calls == ["good", "bad"]
    await trio.sleep(0.15)  # a key created just after a miss works soon
    assert await cache.get("bad") is None
    assert calls == ["good", "bad", "bad"]


async def test_store_outage_is_503_and_a_crash_is_a_json_500(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*_: Any, **__: Any) -> None:
        raise StoreUnavailable("database unavailable: could not connect to db1.internal")

    async def crash(*_: Any, **__: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(env.daemon.gateway, "get_message", down)
    r = await env.get(1)
    err = _error(r, 503)
    assert err["code"] == "store_unavailable"
    assert "db1.internal" not in err["reason"]  # hosts and databases stay in the log
    assert r.headers["retry-after"] == "5"

    monkeypatch.setattr(env.daemon.gateway, "get_message", crash)
    assert _error(await env.get(1), 500)["code"] == "internal"
    assert (await env.client.get("/healthz")).status_code == 200  # and the server goes on


# ----- operations -------------------------------------------------------------------------------------


async def test_health_readiness_metrics(env: Env) -> None:
    r = await env.client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})

    with trio.fail_after(5):  # the sim channel comes up just after the daemon reports started
        while (r := await env.client.get("/readyz")).status_code != 200:
            await trio.sleep(0.02)
    ready = ReadyOut.model_validate(r.json())
    assert ready.status == "ready"
    assert ready.failed == []

    env.daemon.ready = False  # as while stopping
    r = await env.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["failed"] == ["daemon"]
    env.daemon.ready = True

    await env.send({"to": "13800138000", "text": "count me"})
    r = await env.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert 'masd_messages_accepted_total{interface="http"} 1.0' in r.text


async def test_openapi_documents_the_api(env: Env) -> None:
    r = await env.client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert spec["info"]["title"] == "masd"
    assert spec["info"]["version"] == masd.__version__
    assert {"/v1/messages", "/v1/messages/{id}", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    post = spec["paths"]["/v1/messages"]["post"]
    assert post["security"] == [{"bearer": []}]
    assert {"201", "200", "401", "422", "503"} <= set(post["responses"])
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    assert any("会议" in e["value"]["text"] for e in examples.values())
    schemas = spec["components"]["schemas"]
    assert {"SendRequest", "SendResponse", "MessageOut", "ErrorResponse"} <= set(schemas)


async def test_unknown_path_is_a_json_error(env: Env) -> None:
    assert _error(await env.client.get("/v2/nothing"), 404)["code"] == "not_found"


async def test_a_batch_is_accepted_whole_and_each_message_delivered(env: Env) -> None:
    body = {"messages": [{"to": f"1380000{i:04d}", "text": f"batch {i}"} for i in range(50)]}
    r = await env.client.post("/v1/messages/batch", json=body, headers=env.auth())
    assert r.status_code == 201, r.text
    out = r.json()["messages"]
    assert len(out) == 50 and len({m["id"] for m in out}) == 50
    assert out[7]["recipients"] == ["13800000007"]
    msg = await env.wait_final(out[-1]["id"])
    assert msg["deliveries"][0]["state"] == "delivered"


async def test_a_batch_with_one_bad_message_stores_none_and_names_it(env: Env) -> None:
    body = {
        "messages": [
            {"to": "13800000001", "text": "ok"},
            {"to": ["13800000002", "999"], "text": "bad number"},
        ]
    }
    r = await env.client.post("/v1/messages/batch", json=body, headers=env.auth())
    err = _error(r, 422)
    assert err["field"] == "messages[1].to" and err["index"] == 1 and err["message_index"] == 1
    assert await env.daemon.gateway.state_counts() == {}


async def test_a_batch_error_names_the_message_that_caused_it_wherever_it_is(env: Env) -> None:
    good = {"to": "13800000001", "text": "ok"}
    for at in (0, 2, 4):
        messages: list[dict[str, object]] = [good] * 4
        messages.insert(at, {"to": "13800000002", "text": "长" * 1000})
        err = _error(
            await env.client.post("/v1/messages/batch", json={"messages": messages}, headers=env.auth()), 422
        )
        assert err["message_index"] == at and err["field"] == f"messages[{at}].text", err
        assert "index" not in err  # that is a recipient's position within the message
    assert await env.daemon.gateway.state_counts() == {}


async def test_a_batch_over_the_limit_is_refused(env: Env) -> None:
    body = {"messages": [{"to": "13800000001", "text": "x"}] * 1001}
    err = _error(await env.client.post("/v1/messages/batch", json=body, headers=env.auth()), 422)
    assert err["field"] == "messages"


async def test_a_refused_request_is_counted_once_whichever_path_answers_it(env: Env) -> None:
    refused = env.daemon.metrics.requests_refused.labels("http", "invalid")
    before = refused._value.get()
    _error(await env.send({"to": ["12345"], "text": "hi"}), 422)
    assert refused._value.get() == before + 1
