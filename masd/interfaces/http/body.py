"""The check every request body passes before a route reads it (:class:`BodyCheck`).

A JSON body is checked with :func:`masd.interfaces.json_input.load_json` first: NaN, a lone surrogate,
a 400-digit number or 10,000 nested brackets pass FastAPI's own parsing and would fail later, in a
handler or in writing the answer, as a 500.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from masd.interfaces.http.errors import TOO_LARGE, error_response, unusable_json_response
from masd.interfaces.http.fastpath import replay
from masd.interfaces.json_input import UnusableJson, load_json

__all__ = ["BodyCheck"]


class BodyCheck:
    """ASGI middleware refusing, with the usual JSON error and before any route reads it, a request body
    over ``limit`` bytes (413) and a JSON body that :func:`~masd.interfaces.json_input.load_json` will not
    take (400 for the body as a whole, 422 naming the value at fault).

    Starlette's own limit answers a declared oversized body in plain text whatever the app's handlers
    say, so masd keeps its own: a declared length over the limit is refused before anything is read;
    a body without one (chunked) is counted as it arrives. A body that is not JSON by its Content-Type
    and has a length is passed on unread."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        length: int | None = None
        json_body = False
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                # More digits than any body has: too large, without converting 5,000 digits.
                length = int(value) if len(value) <= 18 else self.limit + 1
            elif name == b"content-type":
                media = value.split(b";", 1)[0].strip().lower()
                json_body = media == b"application/json" or (
                    media.startswith(b"application/") and media.endswith(b"+json")
                )
        if length is not None and length > self.limit:
            await error_response(413, "too_large", TOO_LARGE)(scope, receive, send)
            return
        if length is not None and not json_body:
            await self.app(scope, receive, send)  # the server reads exactly the declared length
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await error_response(413, "too_large", TOO_LARGE)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json_body and body:  # an empty body is the route's to refuse ("send a JSON object")
            try:
                load_json(body)
            except UnusableJson as e:
                await unusable_json_response(e)(scope, receive, send)
                return
        await self.app(scope, replay(body, receive), send)
