"""Errors over HTTP, all in one shape: ``{"error": {"code", "reason", "field"?, "index"?, "value"?}}``.

Whoever finds the fault (a route, FastAPI's body parsing, the core's validation, the store, the server)
the client gets this shape. Field names in errors are the ones the client sent: the core calls
recipients ``recipients``, the body calls them ``to``, and an error says ``to``. A module's router
raises :class:`ApiError` and documents its answers with :func:`error_responses`; the handlers that
:func:`add_error_handlers` installs render them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from masd.core.gateway import QueueFull, Refused, Rejected
from masd.interfaces.http.limits import MAX_BODY, MAX_ID
from masd.interfaces.json_input import UnusableJson
from masd.store.db import StoreUnavailable

__all__ = [
    "QUEUE_FULL_RETRY_AFTER",
    "STORE_DOWN",
    "TOO_LARGE",
    "ApiError",
    "ErrorDetail",
    "ErrorResponse",
    "add_error_handlers",
    "echo",
    "error_response",
    "error_responses",
    "unusable_json_response",
    "validation_response",
]

log = structlog.get_logger("masd.http")

QUEUE_FULL_RETRY_AFTER = "5"
TOO_LARGE = f"the body is larger than {MAX_BODY} bytes"
STORE_DOWN = "The store is unavailable; retry after Retry-After seconds"

_BODY_FIELDS = ("to", "text", "priority", "send_at", "validity_seconds", "client_ref", "extension", "channel")
_CORE_TO_HTTP_FIELD = {"recipients": "to"}


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid"])
    reason: str = Field(examples=["not a mainland mobile number (11 digits starting 13–19) nor E.164"])
    field: str | None = Field(None, examples=["to"], description="The request field at fault")
    message_index: int | None = Field(None, description="In a batch: the position of the message at fault")
    index: int | None = Field(None, description="Position in a list field (e.g. which recipient)")
    value: Any = Field(None, description="The value at fault, as given")
    retry_after: float | None = Field(None, description="Seconds to wait before trying again (429)")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """An answer other than success; rendered as ``{"error": {...}}`` by its handler."""

    def __init__(
        self, status: int, code: str, reason: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason
        self.headers = headers
        self.extra = extra


def error_responses(*codes: int, **described_as: str) -> dict[int | str, dict[str, Any]]:
    """Error responses for the OpenAPI document; ``described_as`` rewords one (``e503="…"``)."""
    described = {
        400: "The body is not a JSON object (or not UTF-8, not JSON, nested too deeply)",
        401: "No API key, or one that is not valid",
        403: "The app may not use this kind of channel (masd apps set NAME --channels …)",
        404: "No such message for this app",
        413: "The body is larger than 1 MiB",
        422: "A field is missing or not valid; the error names it",
        429: "The app's rate or daily quota is used up; retry after Retry-After seconds",
        503: "The queue is full or the store is unavailable; retry after Retry-After seconds",
    }
    described.update((int(k[1:]), v) for k, v in described_as.items())
    return {c: {"model": ErrorResponse, "description": described[c]} for c in codes}


def error_response(
    status: int, code: str, reason: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The error answer itself; ``extra`` fields that are None are left out."""
    body: dict[str, Any] = {"code": code, "reason": reason}
    body.update((k, v) for k, v in extra.items() if v is not None)
    try:
        return JSONResponse({"error": body}, status_code=status, headers=headers)
    except ValueError:
        # Something JSON cannot carry (NaN, a lone surrogate) reached an error: answer without the
        # value and with the texts made writable, rather than fail with a 500 while refusing.
        body.pop("value", None)
        for k, v in body.items():
            if isinstance(v, str):
                body[k] = v.encode("utf-8", "replace").decode("utf-8")
        return JSONResponse({"error": body}, status_code=status, headers=headers)


def echo(value: Any) -> Any:
    """The offending value to echo in an error, or None: only when it helps, is small and JSON can
    carry it; never a whole object, a 100 kB text, a 400-digit number, NaN or a lone surrogate."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -MAX_ID - 1 <= value <= MAX_ID else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= 100:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return value
    return None


def unusable_json_response(e: UnusableJson) -> JSONResponse:
    """A body :func:`~masd.interfaces.json_input.load_json` refused: 400 for the body as a whole (not
    UTF-8, not JSON, too deep), 422 naming the value at fault — and in a batch the message it is in, as
    the core's refusals do."""
    if e.field is None:
        return error_response(400, "bad_request", e.reason)
    in_batch = len(e.path) > 2 and e.path[0] == "messages" and isinstance(e.path[1], int)
    message_index = e.path[1] if in_batch else None
    return error_response(422, "invalid", e.reason, field=e.field, message_index=message_index, index=e.index)


def validation_response(exc: RequestValidationError) -> JSONResponse:
    """FastAPI's refusal of a request (body, path, query) in the house shape, naming the first fault."""
    errors = exc.errors()
    first = errors[0] if errors else {"type": "", "loc": (), "msg": "invalid request"}
    kind = first.get("type", "")
    loc = tuple(first.get("loc", ()))
    if kind == "json_invalid":
        detail = cast("dict[str, Any]", first.get("ctx") or {}).get("error", "")
        return error_response(
            400, "bad_request", f"the body is not valid JSON ({detail} at character {loc[-1]})"
        )
    if loc == ("body",):
        if kind == "missing":
            return error_response(400, "bad_request", "the body is empty; send a JSON object")
        if isinstance(first.get("input"), bytes):
            return error_response(
                400, "bad_request", "the body is not JSON; send it with Content-Type: application/json"
            )
        return error_response(400, "bad_request", "the body must be a JSON object")
    source, path = (loc[0], loc[1:]) if loc and loc[0] in ("body", "path", "query", "header") else ("", loc)
    names = [p for p in path if isinstance(p, str)]
    index = next((p for p in path if isinstance(p, int)), None)
    field = ".".join(names) or str(source)
    if kind == "missing":
        reason = "is required"
    elif kind == "extra_forbidden":
        reason = f"unknown field; the fields are {', '.join(_BODY_FIELDS)}"
    elif field == "to" and kind == "list_type":
        reason = "must be a phone number (a string) or a list of them"
    else:
        # Pydantic's sentences start "Input should ..."; the core's start lower-case mid-sentence.
        msg = str(first.get("msg", "is not valid"))
        reason = msg[:1].lower() + msg[1:]
    value = None if kind in ("missing", "extra_forbidden") else echo(first.get("input"))
    return error_response(422, "invalid", reason, field=field, index=index, value=value)


def _http_field(field: str) -> str:
    # "recipients" or "messages[3].recipients" → the body's own name for it.
    head, dot, last = field.rpartition(".")
    return f"{head}{dot}{_CORE_TO_HTTP_FIELD.get(last, last)}"


# ----- the handlers ---------------------------------------------------------------------------------------


async def _on_api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.reason, exc.headers, **exc.extra)


async def _on_validation(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_response(exc)


async def _on_rejected(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Rejected)
    d = exc.as_dict()
    d["field"] = _http_field(d["field"])
    if "value" in d:
        d["value"] = echo(d["value"])
    reason = d.pop("reason")
    return error_response(422, "invalid", reason, **d)


async def _on_refused(_: Request, exc: Exception) -> Response:
    # 403: the app may never do this (permissions); 429: not now (rate, quota), with Retry-After.
    assert isinstance(exc, Refused)
    d = exc.as_dict()
    d["field"] = _http_field(d["field"])
    reason = d.pop("reason")
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    code = {"rate": "rate_limited", "quota": "quota_exceeded"}.get(exc.field.rsplit(".", 1)[-1], "forbidden")
    return error_response(exc.status, code, reason, headers, **d)


async def _on_queue_full(_: Request, exc: Exception) -> Response:
    return error_response(503, "queue_full", str(exc), {"Retry-After": QUEUE_FULL_RETRY_AFTER})


async def _on_store_down(_: Request, exc: Exception) -> Response:
    # The driver's message names hosts and databases: it goes to the log, not to the client.
    log.warning("store unavailable; answered 503", error=str(exc))
    reason = "the message store is unavailable; nothing was stored, try again"
    return error_response(503, "store_unavailable", reason, {"Retry-After": QUEUE_FULL_RETRY_AFTER})


async def _on_crash(_: Request, exc: Exception) -> Response:
    # Starlette re-raises after this answer, so Hypercorn still logs the traceback.
    return error_response(500, "internal", "the server failed to handle this request; it has been logged")


async def _on_http_error(_: Request, exc: Exception) -> Response:
    # Unknown paths, wrong methods, oversized bodies: the same shape as every other error.
    assert isinstance(exc, StarletteHTTPException)
    code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.status_code, "http_error"
    )
    reason = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 413:
        reason = TOO_LARGE
    return error_response(exc.status_code, code, reason.lower() if reason.istitle() else reason, exc.headers)


def add_error_handlers(app: FastAPI) -> None:
    """Render every error ``app`` can meet in the house shape."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(Rejected, _on_rejected)
    app.add_exception_handler(Refused, _on_refused)
    app.add_exception_handler(QueueFull, _on_queue_full)
    app.add_exception_handler(StoreUnavailable, _on_store_down)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_crash)
