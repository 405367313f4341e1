"""The HTTP hot path: ``POST /v1/messages`` and ``/v1/messages/batch`` without FastAPI's machinery.

On this 2-core machine Hypercorn with FastAPI serves about a thousand trivial requests a second; the
routing, dependency injection and pydantic validation of a full route cost more than storing the
message. This ASGI wrapper answers the common case itself — a known key, a JSON body with only the
plain fields (``to``, ``text``, ``priority``, ``validity_seconds``, ``client_ref``, ``extension``,
``channel``), a request the core accepts — and hands everything else to the full FastAPI route,
unchanged, so every error is still worded and shaped exactly as docs/http.md says. The core's own
validation is the same on both paths: this module only checks the shape of the JSON.

It also holds :func:`load_json`, the one reader of untrusted JSON that the HTTP API (this path and
the full routes) and the socket interface share: strict UTF-8, no NaN or Infinity, no lone
surrogates, no whole number beyond 64 bits, at most ``MAX_DEPTH`` levels of nesting. Whatever it
refuses it names, so an interface answers with an error instead of failing later on a value that it
can neither store nor write back as JSON.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from masd.core.gateway import Accepted, App, Gateway, QueueFull, Refused, Rejected, SubmitRequest

__all__ = ["MAX_DEPTH", "FastSubmit", "UnusableJson", "accepted_json", "load_json", "replay"]

MAX_DEPTH = 32  # levels of arrays and objects; masd's deepest body (a batch) has four
_MAX_INT = 2**63 - 1  # the widest integer column; nothing masd takes is larger
_SURROGATE = re.compile("[\ud800-\udfff]")

_PLAIN = frozenset({"to", "text", "priority", "validity_seconds", "client_ref", "extension", "channel"})
_JSON_HEADERS = [(b"content-type", b"application/json")]


# ----- reading untrusted JSON ----------------------------------------------------------------------------


class UnusableJson(ValueError):
    """JSON that masd will not take. ``reason`` is a sentence for people; ``field`` the path of the
    value at fault (``text``, ``messages[2].text``) when one value is, with ``index`` the position
    when that value sits in a list (``to`` and ``index`` 1 for the second recipient); ``path`` the
    same as keys and positions."""

    def __init__(self, reason: str, path: tuple[str | int, ...] = ()) -> None:
        self.reason = reason
        self.path = path
        self.field: str | None = None
        self.index: int | None = None
        if path:
            if isinstance(path[-1], int):
                self.index = path[-1]
                path = path[:-1]
            self.field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        super().__init__(f"{self.field}: {reason}" if self.field else reason)


def load_json(data: bytes, what: str = "body") -> Any:
    """``data`` as JSON, or :class:`UnusableJson` saying why not; ``what`` names it in the reason
    ("the body is not valid UTF-8 …"). A leading UTF-8 byte order mark is ignored."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnusableJson(
            f"the {what} is not valid UTF-8 (byte 0x{data[e.start]:02x} at position {e.start})"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise UnusableJson(f"the {what} is not valid JSON ({e.msg} at character {e.pos})") from None
    except RecursionError:
        raise UnusableJson(f"the {what} nests arrays and objects more than {MAX_DEPTH} deep") from None
    except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise UnusableJson(f"the {what} holds a number with too many digits") from None
    # A lone surrogate can only come from a \u escape: strict UTF-8 decoding lets none through.
    _check(doc, what, surrogates="\\u" in text)
    return doc


def _check(doc: Any, what: str, *, surrogates: bool) -> None:
    """Raise :class:`UnusableJson` for the first value, in document order, that masd cannot take."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(doc, ())]
    while stack:
        value, path = stack.pop()
        kind = type(value)
        if kind is dict or kind is list:
            if len(path) >= MAX_DEPTH:
                raise UnusableJson(f"the {what} nests arrays and objects more than {MAX_DEPTH} deep")
            if kind is list:
                stack.extend((value[i], (*path, i)) for i in range(len(value) - 1, -1, -1))
                continue
            items = list(value.items())
            if surrogates:
                for key, _ in items:
                    if _SURROGATE.search(key):
                        raise _fault(f"has a field name that {_lone(key)}", path, what)
            stack.extend((v, (*path, k)) for k, v in reversed(items))
        elif kind is str:
            if surrogates and _SURROGATE.search(value):
                raise _fault(_lone(value), path, what)
        elif kind is float:
            if not math.isfinite(value):
                why = "is not a finite number (NaN, Infinity and numbers beyond about 1.8e308 are not JSON)"
                raise _fault(why, path, what)
        elif kind is int and not -_MAX_INT - 1 <= value <= _MAX_INT:
            why = f"is out of range; masd takes whole numbers from {-_MAX_INT - 1} to {_MAX_INT}"
            raise _fault(why, path, what)


def _fault(reason: str, path: tuple[str | int, ...], what: str) -> UnusableJson:
    # A value with a field name is that field's fault; one outside any object is the whole body's.
    if any(isinstance(p, str) for p in path):
        return UnusableJson(reason, path)
    return UnusableJson(f"the {what} {reason}" if not path else f"a value in the {what} {reason}")


def _lone(text: str) -> str:
    found = _SURROGATE.search(text)
    assert found is not None
    return (
        f"contains \\u{ord(found.group()):04x}, half of a UTF-16 surrogate pair without its other half, "
        "which is not a character"
    )


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
        except (Rejected, Refused, QueueFull):
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
