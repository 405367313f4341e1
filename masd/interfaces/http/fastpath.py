"""The HTTP hot path: ``POST /v1/messages`` and ``/v1/messages/batch`` without FastAPI's machinery.

On this 2-core machine Hypercorn with FastAPI serves about a thousand trivial requests a second; the
routing, dependency injection and pydantic validation of a full route cost more than storing the
message. This ASGI wrapper answers the common case itself — a known key, a JSON body with only the
plain fields (``to``, ``text``, ``priority``, ``validity_seconds``, ``client_ref``, ``extension``,
``channel``), a request the core accepts — and hands everything else to the full FastAPI route,
unchanged, so every error is still worded and shaped exactly as docs/http.md says. The core's own
validation is the same on both paths: this module only checks the shape of the JSON.

Bodies are read with :func:`masd.interfaces.json_input.load_json`, as every interface reads untrusted
JSON.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from masd.core.gateway import Accepted, App, Gateway, QueueFull, Refused, Rejected, SubmitRequest
from masd.interfaces.json_input import UnusableJson, load_json
from masd.store.db import StoreUnavailable

__all__ = ["FastSubmit", "accepted_json", "replay"]


_PLAIN = frozenset({"to", "text", "priority", "validity_seconds", "client_ref", "extension", "channel"})
_JSON_HEADERS = [(b"content-type", b"application/json")]


# ----- the hot path --------------------------------------------------------------------------------------


def _request(body: Any) -> SubmitRequest | None:
    """A SubmitRequest when the JSON has the plain shape; None sends it to the full route."""
    if type(body) is not dict or not body.keys() <= _PLAIN:
        return None
    to = body.get("to")
    if type(to) is str:
        to = [to]
    elif type(to) is not list or not to or not all(type(x) is str for x in to):
        return None
    text = body.get("text")
    if type(text) is not str:
        return None
    for name in ("priority", "validity_seconds"):
        if name in body and body[name] is not None and type(body[name]) is not int:
            return None
    for name in ("client_ref", "extension", "channel"):
        if name in body and body[name] is not None and type(body[name]) is not str:
            return None
    return SubmitRequest(
        text=text,
        recipients=to,
        priority=body.get("priority"),
        validity_seconds=body.get("validity_seconds"),
        client_ref=body.get("client_ref"),
        extension=body.get("extension") or "",
        channel=body.get("channel"),
    )


def accepted_json(acc: Accepted) -> dict[str, Any]:
    """The answer to an accepted message, the same from this path and from the full routes."""
    return {
        "id": acc.message_id,
        "state": "queued",
        "recipients": acc.recipients,
        "segments": acc.segments,
        "encoding": acc.encoding,
        "created": acc.created,
        "links": {"self": f"/v1/messages/{acc.message_id}"},
    }


class FastSubmit:
    def __init__(
        self,
        app: ASGIApp,
        gateway: Gateway,
        authenticate: Callable[[str], Awaitable[App | None]],
        *,
        max_body: int,
        max_batch: int,
    ) -> None:
        self.app = app
        self.gateway = gateway
        self.authenticate = authenticate
        self.max_body = max_body
        self.max_batch = max_batch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or path not in ("/v1/messages", "/v1/messages/batch")
        ):
            await self.app(scope, receive, send)
            return
        key = None
        json_body = False
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                key = value[7:].strip().decode("latin-1")
            elif name == b"content-type":
                json_body = value.split(b";")[0].strip().lower() == b"application/json"
            elif name == b"content-length" and (
                not value.isdigit() or len(value) > 18 or int(value) > self.max_body
            ):
                await self.app(scope, receive, send)  # the full route answers 413 or 400
                return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json_body and len(body) <= self.max_body and key:
            app = await self.authenticate(key)
            if app is not None and await self._serve(path, body, app, send):
                return
        await self.app(scope, replay(body, receive), send)

    async def _serve(self, path: str, body: bytes, app: App, send: Send) -> bool:
        try:
            parsed = load_json(body)
        except UnusableJson:
            return False  # the full route says what is wrong
        if path == "/v1/messages":
            req = _request(parsed)
            if req is None:
                return False
            reqs = [req]
        else:
            if type(parsed) is not dict or parsed.keys() != {"messages"}:
                return False
            items = parsed["messages"]
            if type(items) is not list or not 0 < len(items) <= self.max_batch:
                return False
            reqs = []
            for item in items:
                req = _request(item)
                if req is None:
                    return False
                reqs.append(req)
        try:
            accepted = await self.gateway.accept(
                reqs, interface="http", app=app, notify=app.webhook_url is not None, count_refusals=False
            )
        except (Rejected, Refused, QueueFull, StoreUnavailable):
            # Nothing was stored; the full route runs the same checks and words the answer.
            return False
        if path == "/v1/messages":
            out: dict[str, Any] = accepted_json(accepted[0])
            status = 201 if accepted[0].created else 200
            headers = [*_JSON_HEADERS, (b"location", out["links"]["self"].encode())]
        else:
            out = {"messages": [accepted_json(a) for a in accepted]}
            status = 201
            headers = list(_JSON_HEADERS)
        data = json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()
        headers.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
        return True


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives an app ``body``, already read, as the request's whole body."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
