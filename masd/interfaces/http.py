"""The HTTP interface: a JSON API served by Hypercorn's trio worker inside the daemon's nursery.

    POST /v1/messages         submit one message to one or more recipients
    POST /v1/messages/batch   submit up to 1,000 messages, all or none
    GET  /v1/messages/{id}    a message with its deliveries, segments, receipts and history
    POST /v1/messages/{id}/cancel   cancel what of the app's message is still queued
    POST /v1/messages/{id}/retry    send the app's message again where it failed
    GET  /v1/replies          the app's replies after a cursor, oldest first
    GET  /healthz             the process serves (liveness)
    GET  /readyz              the daemon is ready, the store answers and a channel is up (readiness)
    GET  /metrics             Prometheus text exposition
    GET  /openapi.json        this API, described

Decisions a reader should know:

* Every error is ``{"error": {"code", "reason", ...}}``, whoever found it (the server, FastAPI's body
  parsing or the core's validation), so a client has one shape to handle. Field names in errors are the
  ones the client sent: the core calls recipients ``recipients``, the body calls them ``to``, and an
  error says ``to``.
* A JSON body is checked with :func:`masd.interfaces.json_input.load_json` before any route parses it
  (:class:`BodyCheck`): NaN, a lone surrogate, a 400-digit number or 10,000 nested brackets pass
  FastAPI's own parsing and would fail later, in a handler or in writing the answer, as a 500.
* Unknown body fields are refused: a misspelt ``send_at`` would otherwise send at once, which cannot be
  taken back once a handset has it.
* API keys are checked against the store once and then cached in-process (hits 30 s, misses 5 s), so the
  hot path costs no database read for authentication. A revoked key keeps working for at most 30 s.
* Handlers build their responses themselves. The response models document the API (and the tests check
  the answers against them) but FastAPI does not validate each answer again, which at thousands of
  requests per second is a cost worth not paying.
* A naive ``send_at`` (no UTC offset) is read in the server's local time zone; an explicit offset or
  ``Z`` is always better. Times in answers are UTC, ISO 8601 with a ``Z``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import sqlalchemy as sa
import structlog
import trio
from fastapi import Body, Depends, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

import masd
from masd.core.gateway import App, QueueFull, Refused, Rejected, SubmitRequest
from masd.interfaces._http11 import serve_asgi
from masd.interfaces.fastpath import FastSubmit, accepted_json, replay
from masd.interfaces.json_input import UnusableJson, load_json
from masd.store.db import StoreUnavailable
from masd.store.tables import deliveries as deliveries_table
from masd.store.tables import messages as messages_table

if TYPE_CHECKING:
    from hypercorn.config import Config as HypercornConfig

    from masd.daemon import Daemon

__all__ = [
    "ApiError",
    "BodyCheck",
    "CancelOut",
    "ErrorResponse",
    "KeyCache",
    "MessageOut",
    "RepliesPage",
    "ReplyOut",
    "RetryOut",
    "SendRequest",
    "SendResponse",
    "make_app",
    "serve_http",
]

log = structlog.get_logger("masd.http")

KEY_TTL = 5.0  # seconds a valid key is trusted without asking the store again (a revoke takes this long)
MISS_TTL = 5.0  # seconds an unknown key is refused without asking again (a new key waits at most this)
KEY_CACHE_MAX = 10_000  # entries; random keys from a scanner must not grow the cache without bound
MAX_BODY = 1024 * 1024  # bytes: ample for 2,000 characters to tens of thousands of recipients
READY_STORE_TIMEOUT = 2.0  # seconds: a probe that hangs is worse than one that says "no"
QUEUE_FULL_RETRY_AFTER = "5"
MAX_ID = 2**63 - 1  # the widest id column; larger numbers would fail in the driver, not as a 404
MAX_REPLIES = 1000  # replies in one page of GET /v1/replies

# A message id in a path; module level, since FastAPI resolves the annotations of routes by name.
MessageId = Annotated[int, Path(alias="id", ge=1, le=MAX_ID, description="The message's id")]

_TOO_LARGE = f"the body is larger than {MAX_BODY} bytes"
_GET_KEY = "create one with 'masd apps create NAME' (or 'masd apps rotate NAME' for a new key)"
_BODY_FIELDS = ("to", "text", "priority", "send_at", "validity_seconds", "client_ref", "extension", "channel")
_CORE_TO_HTTP_FIELD = {"recipients": "to"}


# ----- models: the request ----------------------------------------------------------------------------


def _one_or_many(value: Any) -> Any:
    # One recipient may be given as a plain string; everything else is a list to pydantic.
    return [value] if isinstance(value, str) else value


_EXAMPLES: dict[str, dict[str, Any]] = {
    "one": {
        "summary": "One recipient",
        "value": {"to": "13800138000", "text": "Your verification code is 482913."},
    },
    "chinese": {
        "summary": "Chinese text to several recipients, scheduled, with a client reference",
        "value": {
            "to": ["13800138000", "+86 139-0013-9000"],
            "text": "【会议通知】明天上午9点在三楼会议室召开项目评审会，请准时参加。回复1确认，回复2请假。",
            "priority": 7,
            "send_at": "2030-05-20T08:30:00+08:00",
            "validity_seconds": 3600,
            "client_ref": "oa-meeting-20300520-17",
            "extension": "17",
        },
    },
    "international": {
        "summary": "An E.164 number outside mainland China",
        "value": {"to": ["+4915112345678"], "text": "Server room temperature above 35 °C", "priority": 9},
    },
}


class SendRequest(BaseModel):
    """One message: one text to one or more recipients."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [e["value"] for e in _EXAMPLES.values()]}
    )

    to: Annotated[
        list[str],
        BeforeValidator(_one_or_many),
        Field(min_length=1),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                ],
                "description": "Recipient or recipients: a mainland mobile number (11 digits, optionally "
                "with +86, 86 or 0086) or E.164 (+ and 8–15 digits). Spaces, dashes, parentheses and "
                "full-width digits are ignored; duplicates after normalisation are dropped.",
                "examples": ["13800138000", ["13800138000", "+4915112345678"]],
            }
        ),
    ]
    text: str = Field(
        min_length=1,
        description="The message text (at most queue.max_text_length characters, 2000 by default). "
        "GSM 03.38 text is sent 7-bit (160 characters, 153 per part when split); anything else UCS-2 "
        "(70, 67 per part).",
    )
    priority: StrictInt | None = Field(
        None, ge=0, le=9, description="0 (lowest) to 9 (highest); default queue.default_priority (5)"
    )
    send_at: datetime | None = Field(
        None,
        description="ISO 8601 date and time to send at, e.g. 2030-05-20T08:30:00+08:00. Without a UTC "
        "offset it is read in the server's local time zone. Omitted or in the past: send now.",
    )
    validity_seconds: StrictInt | None = Field(
        None,
        ge=1,
        description="Give up on a delivery this long after send time; default queue.validity_seconds",
    )
    client_ref: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="Your reference, unique per app. Submitting the same client_ref again returns the "
        "message already stored (200, created false) instead of sending twice.",
    )
    extension: str | None = Field(
        None,
        pattern=r"^[0-9]{0,12}$",
        description="Digits appended to the channel's service number as the sender (扩展码); replies to "
        "that number are matched back to this message.",
    )
    channel: str | None = Field(None, description="Send through this channel instead of the routed one")


# ----- models: the answers ----------------------------------------------------------------------------


MAX_BATCH = 1000


_BATCH_EXAMPLES: dict[str, dict[str, Any]] = {
    "two": {
        "summary": "Two messages, each with its own recipients and reference",
        "value": {
            "messages": [
                {"to": "13800138000", "text": "第一条：明天上午9点开会", "client_ref": "oa-batch-1"},
                {"to": ["13900139000", "+4915112345678"], "text": "second", "priority": 7},
            ]
        },
    },
}


class BatchRequest(BaseModel):
    """Up to 1,000 messages, accepted or refused together."""

    model_config = ConfigDict(extra="forbid")

    messages: list[SendRequest] = Field(min_length=1, max_length=MAX_BATCH)


class Links(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    self_: str = Field(alias="self", examples=["/v1/messages/42"])


class SendResponse(BaseModel):
    """The message as stored: 201 when created, 200 when its client_ref was already stored."""

    id: int = Field(examples=[42])
    state: str = Field(examples=["queued"], description="Always queued at acceptance")
    recipients: list[str] = Field(examples=[["13800138000"]], description="Normalised, without duplicates")
    segments: int = Field(examples=[1], description="Parts on the wire for the longest delivery")
    encoding: Literal["gsm7", "ucs2"]
    created: bool = Field(description="False: this client_ref was stored before and this is that message")
    links: Links


class BatchResponse(BaseModel):
    messages: list[SendResponse] = Field(description="One per message sent, in the same order")


class SegmentOut(BaseModel):
    seq: int
    total: int
    channel: str = Field(description="The channel it was handed to")
    carrier_id: str
    state: str = Field(
        description="submitted, delivered, undelivered, expired, rejected, deleted, unknown; superseded: "
        "sent again with the rest of its delivery (a retry, a resend, a move to another channel)"
    )
    error_code: int | None
    submitted_at: datetime
    receipt_at: datetime | None


class HistoryOut(BaseModel):
    """Something that happened to a delivery before its current attempt."""

    at: datetime
    event: str = Field(
        description="resend: a receipt failed it and it was sent again; failover: moved to the backup of "
        "a channel that is down; failback: moved home again; retry: sent again by the app or an operator",
        examples=["resend"],
    )
    channel: str = Field(description="The channel it was on")
    state: str | None = Field(description="The outcome that attempt ended with (resend, retry)")
    reason: str | None
    error_code: int | None = Field(description="The carrier's code, when it gave one")
    next_channel: str | None = Field(description="The channel it went on to (resend, failover, failback)")


class DeliveryOut(BaseModel):
    id: int
    recipient: str
    state: str = Field(
        description="queued, submitting, submitted, delivered, undelivered, expired, rejected, failed, "
        "cancelled"
    )
    reason: str | None
    attempts: int
    resends: int = Field(description="Times it was sent again after a failed receipt")
    extension: str
    channel: str
    updated_at: datetime
    segment_count: int = Field(description="Parts this delivery is split into")
    segments: list[SegmentOut] = Field(description="Each part handed to a carrier, with its receipt")
    history: list[HistoryOut] = Field(
        description="What happened before the current attempt (resends, failovers, retries), oldest first"
    )


class MessageOut(BaseModel):
    id: int
    text: str
    encoding: Literal["gsm7", "ucs2"]
    priority: int
    client_ref: str | None
    created_at: datetime
    send_at: datetime | None
    expires_at: datetime
    state: str = Field(description="The deliveries' state when they all share one, else mixed")
    counts: dict[str, int] = Field(
        description="Deliveries per state", examples=[{"delivered": 2, "queued": 1}]
    )
    deliveries: list[DeliveryOut]


_REPLY_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "sender": "13800138000",
    "destination": "106570001234517",
    "extension": "17",
    "text": "1",
    "received_at": "2030-05-20T01:02:03.456Z",
    "matched_by": "extension",
    "channel": "smpp",
    "message_id": 42,
    "client_ref": "oa-meeting-20300520-17",
    "delivery_id": 118,
}


class ReplyOut(BaseModel):
    """A reply (上行短信) routed to the calling app."""

    model_config = ConfigDict(json_schema_extra={"examples": [_REPLY_EXAMPLE]})

    id: int = Field(description="Increasing; use the last one seen as the next `after`")
    sender: str = Field(description="The handset that replied, normalised like a recipient")
    destination: str = Field(description="The number it replied to: service number and extension")
    extension: str = Field(
        description="What followed the app's own extension in the destination (often the extension the "
        "message was sent with); empty when nothing did"
    )
    text: str
    received_at: datetime = Field(description="When masd received it, UTC")
    matched_by: str = Field(
        description="How it was routed to this app: extension, keyword, recent (the latest delivery to "
        "the sender) or manual (masd replies assign)"
    )
    channel: str = Field(description="The channel it arrived on")
    message_id: int | None = Field(description="The message it answers, when known")
    client_ref: str | None = Field(description="That message's client_ref, when it had one")
    delivery_id: int | None = Field(description="The delivery it answers, when known")


class RepliesPage(BaseModel):
    """One page of replies; poll again with ``after=next``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"replies": [_REPLY_EXAMPLE], "next": 7}]})

    replies: list[ReplyOut] = Field(description="Oldest first; empty when there is nothing new")
    next: int = Field(
        description="The cursor for the next call: the last reply's id, or the given `after` when there "
        "were none"
    )


class CancelOut(BaseModel):
    """What a cancel did: the deliveries still queued are cancelled; the others are as ``counts`` says."""

    id: int
    cancelled: int = Field(description="Deliveries cancelled now (each gets its receipt event)")
    counts: dict[str, int] = Field(
        description="Deliveries per state after it", examples=[{"cancelled": 2, "submitted": 1}]
    )


class RetryOut(BaseModel):
    """What a retry did: deliveries that ended unsuccessfully are queued again."""

    id: int
    retried: int = Field(description="Deliveries queued again now")
    counts: dict[str, int] = Field(
        description="Deliveries per state after it", examples=[{"queued": 1, "delivered": 2}]
    )


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


class HealthOut(BaseModel):
    status: Literal["ok"]


class ChannelState(BaseModel):
    up: bool
    rate: float = Field(
        description="Segments per second it sends at now; lower than configured while throttled"
    )
    configured_rate: float
    throttled: bool = Field(description="The carrier throttled it and it has not yet recovered its rate")


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str] = Field(
        examples=[{"daemon": "ok", "store": "ok", "channels": "up: sim"}],
        description="Each check's finding: ok, or what is wrong",
    )
    failed: list[str] = Field(description="Names of the checks that failed")
    channels: dict[str, ChannelState] = Field(
        default_factory=dict, description="Each channel: link up or down, and the rate it sends at now"
    )


def _errors(*codes: int, **described_as: str) -> dict[int | str, dict[str, Any]]:
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


_STORE_DOWN = "The store is unavailable; retry after Retry-After seconds"


# ----- errors -----------------------------------------------------------------------------------------


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


def _error(
    status: int, code: str, reason: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
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


def _unusable(e: UnusableJson) -> JSONResponse:
    # The body as a whole (not UTF-8, not JSON, too deep) is a 400; one value at fault a 422 naming it,
    # and in a batch the message it is in, as the core's refusals do.
    if e.field is None:
        return _error(400, "bad_request", e.reason)
    in_batch = len(e.path) > 2 and e.path[0] == "messages" and isinstance(e.path[1], int)
    message_index = e.path[1] if in_batch else None
    return _error(422, "invalid", e.reason, field=e.field, message_index=message_index, index=e.index)


def _http_field(field: str) -> str:
    # "recipients" or "messages[3].recipients" → the body's own name for it.
    head, dot, last = field.rpartition(".")
    return f"{head}{dot}{_CORE_TO_HTTP_FIELD.get(last, last)}"


def _submit_request(body: SendRequest) -> SubmitRequest:
    return SubmitRequest(
        text=body.text,
        recipients=body.to,
        priority=body.priority,
        send_at=body.send_at.timestamp() if body.send_at is not None else None,
        validity_seconds=body.validity_seconds,
        client_ref=body.client_ref,
        extension=body.extension or "",
        channel=body.channel,
    )


def _echo(value: Any) -> Any:
    # Echo the offending value when it helps, is small and JSON can carry it; never a whole object, a
    # 100 kB text, a 400-digit number, NaN or a string with a lone surrogate.
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


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"type": "", "loc": (), "msg": "invalid request"}
    kind = first.get("type", "")
    loc = tuple(first.get("loc", ()))
    if kind == "json_invalid":
        detail = cast("dict[str, Any]", first.get("ctx") or {}).get("error", "")
        return _error(400, "bad_request", f"the body is not valid JSON ({detail} at character {loc[-1]})")
    if loc == ("body",):
        if kind == "missing":
            return _error(400, "bad_request", "the body is empty; send a JSON object")
        if isinstance(first.get("input"), bytes):
            return _error(
                400, "bad_request", "the body is not JSON; send it with Content-Type: application/json"
            )
        return _error(400, "bad_request", "the body must be a JSON object")
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
    value = None if kind in ("missing", "extra_forbidden") else _echo(first.get("input"))
    return _error(422, "invalid", reason, field=field, index=index, value=value)


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
            await _error(413, "too_large", _TOO_LARGE)(scope, receive, send)
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
                await _error(413, "too_large", _TOO_LARGE)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json_body and body:  # an empty body is the route's to refuse ("send a JSON object")
            try:
                load_json(body)
            except UnusableJson as e:
                await _unusable(e)(scope, receive, send)
                return
        await self.app(scope, replay(body, receive), send)


# ----- authentication -----------------------------------------------------------------------------------


class KeyCache:
    """API key → app, asking the store at most once per key per TTL.

    Concurrent requests with the same uncached key share one lookup, so a burst at start-up (or after
    expiry) costs one read, not one per request."""

    def __init__(
        self,
        lookup: Callable[[str], Awaitable[App | None]],
        *,
        ttl: float = KEY_TTL,
        miss_ttl: float = MISS_TTL,
        max_entries: int = KEY_CACHE_MAX,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._miss_ttl = miss_ttl
        self._max = max_entries
        self._entries: dict[str, tuple[float, App | None]] = {}
        self._inflight: dict[str, trio.Event] = {}

    async def get(self, key: str) -> App | None:
        while True:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > time.monotonic():
                return entry[1]
            pending = self._inflight.get(key)
            if pending is None:
                break
            # Someone is asking already; if their lookup fails we come round and ask ourselves.
            await pending.wait()
        done = self._inflight[key] = trio.Event()
        try:
            app = await self._lookup(key)
        finally:
            del self._inflight[key]
            done.set()
        now = time.monotonic()
        if len(self._entries) >= self._max:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self._max:
                self._entries.clear()
        self._entries[key] = (now + (self._ttl if app is not None else self._miss_ttl), app)
        return app


# ----- converting stored rows -------------------------------------------------------------------------


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _message_json(msg: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    deliveries = []
    for d in msg["deliveries"]:
        counts[d["state"]] = counts.get(d["state"], 0) + 1
        deliveries.append(
            {
                "id": d["id"],
                "recipient": d["recipient"],
                "state": d["state"],
                "reason": d["reason"],
                "attempts": d["attempts"],
                "resends": d["resends"],
                "extension": d["extension"],
                "channel": d["channel"],
                "updated_at": _iso(d["updated_at"]),
                "segment_count": d["segments"],
                "segments": [
                    {
                        "seq": s["seq"],
                        "total": s["total"],
                        "channel": s["channel"],
                        "carrier_id": s["carrier_id"],
                        "state": s["state"],
                        "error_code": s["error_code"],
                        "submitted_at": _iso(s["submitted_at"]),
                        "receipt_at": _iso(s["receipt_at"]),
                    }
                    for s in d["segment_list"]
                ],
                "history": [
                    {
                        "at": _iso(h["at"]),
                        "event": h["event"],
                        "channel": h["channel"],
                        "state": h["state"],
                        "reason": h["reason"],
                        "error_code": h["error_code"],
                        "next_channel": h["next_channel"],
                    }
                    for h in d.get("history", ())
                ],
            }
        )
    return {
        "id": msg["id"],
        "text": msg["text"],
        "encoding": msg["encoding"],
        "priority": msg["priority"],
        "client_ref": msg["client_ref"],
        "created_at": _iso(msg["created_at"]),
        "send_at": _iso(msg["send_at"]),
        "expires_at": _iso(msg["expires_at"]),
        "state": next(iter(counts)) if len(counts) == 1 else "mixed",
        "counts": counts,
        "deliveries": deliveries,
    }


def _reply_json(r: dict[str, Any], answers: Mapping[int, tuple[int, str | None]]) -> dict[str, Any]:
    message_id, client_ref = answers.get(r["delivery_id"], (None, None))
    return {
        "id": r["id"],
        "sender": r["sender"],
        "destination": r["destination"],
        "extension": r["extension"],
        "text": r["text"],
        "received_at": _iso(r["received_at"]),
        "matched_by": r["matched_by"],
        "channel": r["channel"],
        "message_id": message_id,
        "client_ref": client_ref,
        "delivery_id": r["delivery_id"],
    }


def _answered(conn: sa.Connection, delivery_ids: list[int]) -> dict[int, tuple[int, str | None]]:
    """delivery id → (message id, client_ref) of the messages these replies answer."""
    d, m = deliveries_table, messages_table
    rows = conn.execute(
        sa.select(d.c.id, m.c.id, m.c.client_ref)
        .select_from(d.join(m, m.c.id == d.c.message_id))
        .where(d.c.id.in_(delivery_ids))
    )
    return {int(did): (int(mid), ref) for did, mid, ref in rows}


def _select_one(conn: sa.Connection) -> None:
    # Compiled per dialect (Oracle needs FROM DUAL), unlike a literal "SELECT 1".
    conn.execute(sa.select(sa.literal(1)))


# ----- the application --------------------------------------------------------------------------------


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="masd API key",
    description="An app's API key, sent as 'Authorization: Bearer <key>'; " + _GET_KEY + ".",
)


async def calling_app(request: Request, creds: HTTPAuthorizationCredentials | None = Security(bearer)) -> App:
    """The app whose key the request carries, through the application's key cache
    (``app.state.keys``); 401 naming what is wrong otherwise. Every authenticated route, the modules'
    included, depends on this one function."""
    if creds is None:
        given = request.headers.get("authorization")
        reason = (
            "no API key; send 'Authorization: Bearer <key>'"
            if not given
            else "the Authorization header must be 'Bearer <key>'"
        )
        raise ApiError(401, "unauthorized", f"{reason}; {_GET_KEY}", headers={"WWW-Authenticate": "Bearer"})
    found: App | None = await request.app.state.keys.get(creds.credentials)
    if found is None:
        raise ApiError(
            401,
            "unauthorized",
            f"the API key is not valid or was revoked; {_GET_KEY}",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return found


def make_app(daemon: Daemon) -> FastAPI:
    """The ASGI application for one daemon; it holds no state beyond the key cache."""
    gateway = daemon.gateway
    keys = KeyCache(gateway.authenticate)
    probe_limiter = trio.CapacityLimiter(1)  # a hung store holds one thread for probes, not one per probe

    app = FastAPI(
        title="masd",
        version=masd.__version__,
        summary="Messaging gateway: submit SMS, follow their deliveries and receipts",
        description="Bearer API keys come from `masd apps create NAME`. Errors are always "
        '`{"error": {"code", "reason", "field"?, "index"?, "value"?}}`.',
        openapi_tags=[
            {"name": "messages", "description": "Submitting messages and following them"},
            {"name": "replies", "description": "Replies from handsets, routed to the app they answer"},
            {"name": "contacts", "description": "The address book (通讯录): people, departments, groups"},
            {"name": "meetings", "description": "Meetings (会信通): notices, replies, the organiser's board"},
            {"name": "schedule", "description": "Schedule reminders (日程提醒) and memos (备忘录)"},
            {"name": "operations", "description": "Health, readiness and metrics for operators (no key)"},
        ],
    )

    caller = calling_app

    # --- the modules' routes (imported here: they use this module's error helpers) ---

    from masd.modules.contacts.http import router as contacts_router

    app.state.db = daemon.db
    app.state.daemon = daemon
    app.include_router(contacts_router, dependencies=[Depends(caller)])
    from masd.modules.meeting.http import router as meeting_router

    # The meeting routes check the key themselves: each app sees only the meetings it created.
    app.include_router(meeting_router)

    # --- errors, all in one shape ---

    async def on_api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc.status, exc.code, exc.reason, exc.headers, **exc.extra)

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _validation_response(exc)

    async def on_rejected(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Rejected)
        d = exc.as_dict()
        d["field"] = _http_field(d["field"])
        if "value" in d:
            d["value"] = _echo(d["value"])
        reason = d.pop("reason")
        return _error(422, "invalid", reason, **d)

    async def on_refused(_: Request, exc: Exception) -> Response:
        # 403: the app may never do this (permissions); 429: not now (rate, quota), with Retry-After.
        assert isinstance(exc, Refused)
        d = exc.as_dict()
        d["field"] = _http_field(d["field"])
        reason = d.pop("reason")
        headers = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        code = {"rate": "rate_limited", "quota": "quota_exceeded"}.get(
            exc.field.rsplit(".", 1)[-1], "forbidden"
        )
        return _error(exc.status, code, reason, headers, **d)

    async def on_queue_full(_: Request, exc: Exception) -> Response:
        return _error(503, "queue_full", str(exc), {"Retry-After": QUEUE_FULL_RETRY_AFTER})

    async def on_store_down(_: Request, exc: Exception) -> Response:
        # The driver's message names hosts and databases: it goes to the log, not to the client.
        log.warning("store unavailable; answered 503", error=str(exc))
        reason = "the message store is unavailable; nothing was stored, try again"
        return _error(503, "store_unavailable", reason, {"Retry-After": QUEUE_FULL_RETRY_AFTER})

    async def on_crash(_: Request, exc: Exception) -> Response:
        # Starlette re-raises after this answer, so Hypercorn still logs the traceback.
        return _error(500, "internal", "the server failed to handle this request; it has been logged")

    async def on_http_error(_: Request, exc: Exception) -> Response:
        # Unknown paths, wrong methods, oversized bodies: the same shape as every other error.
        assert isinstance(exc, StarletteHTTPException)
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        reason = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 413:
            reason = _TOO_LARGE
        return _error(exc.status_code, code, reason.lower() if reason.istitle() else reason, exc.headers)

    app.add_middleware(BodyCheck, limit=MAX_BODY)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Rejected, on_rejected)
    app.add_exception_handler(Refused, on_refused)
    app.add_exception_handler(QueueFull, on_queue_full)
    app.add_exception_handler(StoreUnavailable, on_store_down)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_crash)

    # --- messages ---

    @app.post(
        "/v1/messages",
        tags=["messages"],
        summary="Submit a message",
        status_code=201,
        response_model=SendResponse,
        responses={
            200: {"model": SendResponse, "description": "The client_ref was stored before: that message"},
            **_errors(400, 401, 403, 413, 422, 429, 503),
        },
    )
    async def send_message(
        body: Annotated[SendRequest, Body(openapi_examples=_EXAMPLES)],
        caller_app: App = Depends(caller),
    ) -> Response:
        """Validate and store the message; it is queued for sending when this answers."""
        acc = await gateway.send(
            _submit_request(body), interface="http", app=caller_app, notify=caller_app.webhook_url is not None
        )
        out = accepted_json(acc)
        return JSONResponse(
            out, status_code=201 if acc.created else 200, headers={"Location": out["links"]["self"]}
        )

    @app.post(
        "/v1/messages/batch",
        tags=["messages"],
        summary="Submit up to 1,000 messages in one request",
        status_code=201,
        response_model=BatchResponse,
        responses=_errors(400, 401, 403, 413, 422, 429, 503),
    )
    async def send_batch(
        body: Annotated[BatchRequest, Body(openapi_examples=_BATCH_EXAMPLES)],
        caller_app: App = Depends(caller),
    ) -> Response:
        """All or nothing: if any message has a bad field, none is stored, and the error names it as
        ``messages[i].field``. Each message keeps its own ``client_ref`` idempotency."""
        reqs = [_submit_request(m) for m in body.messages]
        accepted = await gateway.accept(
            reqs, interface="http", app=caller_app, notify=caller_app.webhook_url is not None
        )
        return JSONResponse({"messages": [accepted_json(acc) for acc in accepted]}, status_code=201)

    @app.get(
        "/v1/messages/{id}",
        tags=["messages"],
        summary="A message, its deliveries and their receipts",
        response_model=MessageOut,
        responses=_errors(401, 404, 422, 503, e503=_STORE_DOWN),
    )
    async def get_message(
        message_id: Annotated[int, Path(alias="id", ge=1, le=MAX_ID, description="The message's id")],
        caller_app: App = Depends(caller),
    ) -> Response:
        """Only the calling app's messages are visible; another app's answer 404 like a missing one."""
        msg = await gateway.get_message(message_id, app_id=caller_app.id)
        if msg is None:
            raise ApiError(404, "not_found", f"no message {message_id} for this app", value=message_id)
        return JSONResponse(_message_json(msg))

    @app.post(
        "/v1/messages/{id}/cancel",
        tags=["messages"],
        summary="Cancel what of a message is still queued",
        response_model=CancelOut,
        responses=_errors(401, 404, 422, 503, e503=_STORE_DOWN),
    )
    async def cancel_message(message_id: MessageId, caller_app: App = Depends(caller)) -> Response:
        """The message's deliveries still waiting in the queue end ``cancelled`` (each with its receipt
        event); those already handed to a carrier cannot be called back and go on. Only the calling
        app's messages: another app's answers 404 like a missing one."""
        done = await gateway.cancel_message(message_id, app_id=caller_app.id)
        if done is None:
            raise ApiError(404, "not_found", f"no message {message_id} for this app", value=message_id)
        return JSONResponse({"id": message_id, "cancelled": done.deliveries, "counts": done.counts})

    @app.post(
        "/v1/messages/{id}/retry",
        tags=["messages"],
        summary="Send a message again where it failed",
        response_model=RetryOut,
        responses=_errors(401, 404, 422, 503, e503=_STORE_DOWN),
    )
    async def retry_message(message_id: MessageId, caller_app: App = Depends(caller)) -> Response:
        """The message's deliveries that ended unsuccessfully (undelivered, expired, rejected, failed)
        are queued again with fresh attempts, resends and the message's own validity period; what they
        had ended with stays in their ``history``. Delivered and cancelled ones are left alone. Only the
        calling app's messages: another app's answers 404 like a missing one."""
        done = await gateway.retry_message(message_id, app_id=caller_app.id)
        if done is None:
            raise ApiError(404, "not_found", f"no message {message_id} for this app", value=message_id)
        return JSONResponse({"id": message_id, "retried": done.deliveries, "counts": done.counts})

    # --- replies ---

    @app.get(
        "/v1/replies",
        tags=["replies"],
        summary="The app's replies after a cursor, oldest first",
        response_model=RepliesPage,
        responses={
            200: {
                "description": "A page of replies, possibly empty",
                "content": {
                    "application/json": {
                        "examples": {
                            "some": {
                                "summary": "A reply to a message sent with extension 17",
                                "value": {"replies": [_REPLY_EXAMPLE], "next": 7},
                            },
                            "none": {
                                "summary": "Nothing new after reply 7",
                                "value": {"replies": [], "next": 7},
                            },
                        }
                    }
                },
            },
            **_errors(401, 422, 503, e503=_STORE_DOWN),
        },
    )
    async def list_replies(
        after: Annotated[
            int,
            Query(
                ge=0,
                le=MAX_ID,
                description="Return replies after this id: 0 (the default) for the oldest kept, then the "
                "`next` of the previous answer",
            ),
        ] = 0,
        limit: Annotated[
            int, Query(ge=1, le=MAX_REPLIES, description=f"At most this many (1 to {MAX_REPLIES})")
        ] = 100,
        caller_app: App = Depends(caller),
    ) -> Response:
        """Replies routed to the calling app (by its extension, a keyword rule or the latest delivery to
        the sender), oldest first. Poll with ``after`` set to the previous answer's ``next``: each reply
        is returned once, none is skipped."""
        found = await gateway.list_replies(app_id=caller_app.id, after=after, limit=limit)
        delivery_ids = sorted({r["delivery_id"] for r in found if r["delivery_id"] is not None})
        answers = await daemon.db.read(lambda c: _answered(c, delivery_ids)) if delivery_ids else {}
        return JSONResponse(
            {"replies": [_reply_json(r, answers) for r in found], "next": found[-1]["id"] if found else after}
        )

    # --- operations ---

    @app.get("/healthz", tags=["operations"], summary="Liveness", response_model=HealthOut)
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def store_check() -> str:
        with trio.move_on_after(READY_STORE_TIMEOUT):
            try:
                # abandon_on_cancel: a store that does not answer must not hold the probe past its deadline.
                await trio.to_thread.run_sync(
                    daemon.db.read_sync, _select_one, limiter=probe_limiter, abandon_on_cancel=True
                )
            except Exception as e:
                return f"error: {e}"
            return "ok"
        return f"no answer within {READY_STORE_TIMEOUT:g} s"

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: started, the store answers, a channel is up",
        response_model=ReadyOut,
        responses={503: {"model": ReadyOut, "description": "Not ready; failed names the checks"}},
    )
    async def readyz() -> Response:
        up = sorted(name for name, drv in daemon.drivers.items() if drv.up)
        down = sorted(name for name, drv in daemon.drivers.items() if not drv.up)
        checks = {
            "daemon": "ok" if daemon.ready else "not ready (starting or stopping)",
            "store": await store_check(),
            "channels": f"up: {', '.join(up)}"
            if up
            else f"none up (down: {', '.join(down) or 'none configured'})",
        }
        failed = [
            name
            for name, ok in (
                ("daemon", daemon.ready),
                ("store", checks["store"] == "ok"),
                ("channels", bool(up)),
            )
            if not ok
        ]
        channels = {
            name: {
                "up": drv.up,
                "rate": round(daemon.dispatchers[name].pace.rate, 3)
                if name in daemon.dispatchers
                else daemon.cfg.channels[name].rate,
                "configured_rate": daemon.cfg.channels[name].rate,
                "throttled": name in daemon.dispatchers and daemon.dispatchers[name].pace.slowed,
            }
            for name, drv in sorted(daemon.drivers.items())
        }
        return JSONResponse(
            {
                "status": "not_ready" if failed else "ready",
                "checks": checks,
                "failed": failed,
                "channels": channels,
            },
            status_code=503 if failed else 200,
        )

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
    )
    async def metrics() -> Response:
        return Response(daemon.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.state.keys = keys
    return app


# ----- serving ----------------------------------------------------------------------------------------


def hypercorn_config(listen: str) -> HypercornConfig:
    from hypercorn.config import Config as HypercornConfig

    config = HypercornConfig()
    config.bind = [listen]
    config.accesslog = None  # one log line per request is too much at thousands of requests per second
    # Hand Hypercorn a logger rather than "-": with "-" it adds a stderr handler of its own and every line
    # also propagates to the root handler masd.logging configures, so each appears twice.
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def serve_http(
    daemon: Daemon, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the API on ``daemon.cfg.http.listen`` until cancelled; started once the socket listens."""
    app = make_app(daemon)
    fast = FastSubmit(app, daemon.gateway, app.state.keys.get, max_body=MAX_BODY, max_batch=MAX_BATCH)
    if daemon.cfg.http.server == "builtin":
        # The server refuses a body over MAX_BODY with the same 413 as BodyCheck, from its Content-Length
        # alone, before reading it (BodyCheck does so too under Hypercorn).
        await serve_asgi(fast, daemon.cfg.http.listen, max_body=MAX_BODY, task_status=task_status)
        return
    from hypercorn.trio import serve
    from hypercorn.typing import ASGIFramework

    # The daemon stops the server by cancelling its nursery once it has drained, so Hypercorn's own
    # graceful-shutdown trigger waits on an event that nobody sets.
    never = trio.Event()
    # Starlette's ASGI types and Hypercorn's differ only in how precisely they spell the same protocol.
    await serve(
        cast(ASGIFramework, fast),
        hypercorn_config(daemon.cfg.http.listen),
        shutdown_trigger=never.wait,
        task_status=task_status,
    )
