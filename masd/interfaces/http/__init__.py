"""The HTTP interface: a JSON API served inside the daemon's nursery (masd's own server or Hypercorn's).

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
* API keys are checked against the store once and then cached in-process (:mod:`.auth`), so the
  hot path costs no database read for authentication.
* Handlers build their responses themselves. The response models document the API (and the tests check
  the answers against them) but FastAPI does not validate each answer again, which at thousands of
  requests per second is a cost worth not paying.
* A naive ``send_at`` (no UTC offset) is read in the server's local time zone; an explicit offset or
  ``Z`` is always better. Times in answers are UTC, ISO 8601 with a ``Z``.

Where things are, one concept per module:

    errors.py     ApiError, the error shape and its handlers, error_responses for the OpenAPI document
    auth.py       bearer keys, the key cache, calling_app (the dependency of every authenticated route)
    body.py       BodyCheck: size and JSON checks before a route reads a body
    models.py     the request and response models
    limits.py     the most one request may carry
    state.py      what routes read from the application: the node
    routes/       module-level routers: messages, replies, operations
    app.py        make_app(node, mounts): the application, with the modules' routers the daemon hands over
    servers.py    serve_http: the built-in HTTP/1.1 server or Hypercorn, with the fast path in front
    fastpath.py   plain submits answered without FastAPI's machinery
    http11.py     masd's own small HTTP/1.1 server for ASGI apps
"""

from __future__ import annotations

from masd.interfaces.http.app import Mount, make_app
from masd.interfaces.http.auth import KeyCache, bearer, calling_app
from masd.interfaces.http.body import BodyCheck
from masd.interfaces.http.errors import (
    STORE_DOWN,
    ApiError,
    ErrorDetail,
    ErrorResponse,
    echo,
    error_response,
    error_responses,
    validation_response,
)
from masd.interfaces.http.limits import MAX_BATCH, MAX_BODY, MAX_ID, MAX_REPLIES
from masd.interfaces.http.models import (
    BatchRequest,
    BatchResponse,
    CancelOut,
    ChannelState,
    DeliveryOut,
    HealthOut,
    HistoryOut,
    MessageOut,
    ReadyOut,
    RepliesPage,
    ReplyOut,
    RetryOut,
    SegmentOut,
    SendRequest,
    SendResponse,
)
from masd.interfaces.http.servers import hypercorn_config, serve_http
from masd.interfaces.http.state import NodeDep, current_node

__all__ = [
    "MAX_BATCH",
    "MAX_BODY",
    "MAX_ID",
    "MAX_REPLIES",
    "STORE_DOWN",
    "ApiError",
    "BatchRequest",
    "BatchResponse",
    "BodyCheck",
    "CancelOut",
    "ChannelState",
    "DeliveryOut",
    "ErrorDetail",
    "ErrorResponse",
    "HealthOut",
    "HistoryOut",
    "KeyCache",
    "MessageOut",
    "Mount",
    "NodeDep",
    "ReadyOut",
    "RepliesPage",
    "ReplyOut",
    "RetryOut",
    "SegmentOut",
    "SendRequest",
    "SendResponse",
    "bearer",
    "calling_app",
    "current_node",
    "echo",
    "error_response",
    "error_responses",
    "hypercorn_config",
    "make_app",
    "serve_http",
    "validation_response",
]
