"""``/v1/messages``: submitting messages (one, or a batch all or none) and following, cancelling and
retrying them. Plain submits are usually answered by :mod:`masd.interfaces.http.fastpath` before these
routes run; these answer the same, and word every refusal.

Only the calling app's messages are visible; another app's answer 404 like a missing one. Times in
answers are UTC, ISO 8601 with a ``Z``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from fastapi.responses import JSONResponse, Response

from masd.core.gateway import App, SubmitRequest
from masd.core.times import utc_iso
from masd.interfaces.http.auth import calling_app
from masd.interfaces.http.errors import STORE_DOWN, ApiError, error_responses
from masd.interfaces.http.fastpath import accepted_json
from masd.interfaces.http.limits import MAX_ID
from masd.interfaces.http.models import (
    BATCH_EXAMPLES,
    SEND_EXAMPLES,
    BatchRequest,
    BatchResponse,
    CancelOut,
    MessageOut,
    RetryOut,
    SendRequest,
    SendResponse,
)
from masd.interfaces.http.state import NodeDep

__all__ = ["router"]

router = APIRouter()

# A message id in a path; module level, since FastAPI resolves the annotations of routes by name.
MessageId = Annotated[int, Path(alias="id", ge=1, le=MAX_ID, description="The message's id")]


def submit_request(body: SendRequest) -> SubmitRequest:
    """A request's body as the core's request."""
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


def message_json(msg: dict[str, Any]) -> dict[str, Any]:
    """A stored message with its deliveries, segments and history → the answer of GET /v1/messages/{id}."""
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
                "updated_at": utc_iso(d["updated_at"]),
                "segment_count": d["segments"],
                "segments": [
                    {
                        "seq": s["seq"],
                        "total": s["total"],
                        "channel": s["channel"],
                        "carrier_id": s["carrier_id"],
                        "state": s["state"],
                        "error_code": s["error_code"],
                        "submitted_at": utc_iso(s["submitted_at"]),
                        "receipt_at": utc_iso(s["receipt_at"]),
                    }
                    for s in d["segment_list"]
                ],
                "history": [
                    {
                        "at": utc_iso(h["at"]),
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
        "created_at": utc_iso(msg["created_at"]),
        "send_at": utc_iso(msg["send_at"]),
        "expires_at": utc_iso(msg["expires_at"]),
        "state": next(iter(counts)) if len(counts) == 1 else "mixed",
        "counts": counts,
        "deliveries": deliveries,
    }


@router.post(
    "/v1/messages",
    tags=["messages"],
    summary="Submit a message",
    status_code=201,
    response_model=SendResponse,
    responses={
        200: {"model": SendResponse, "description": "The client_ref was stored before: that message"},
        **error_responses(400, 401, 403, 413, 422, 429, 503),
    },
)
async def send_message(
    body: Annotated[SendRequest, Body(openapi_examples=SEND_EXAMPLES)],
    node: NodeDep,
    caller_app: App = Depends(calling_app),
) -> Response:
    """Validate and store the message; it is queued for sending when this answers."""
    acc = await node.gateway.send(
        submit_request(body), interface="http", app=caller_app, notify=caller_app.webhook_url is not None
    )
    out = accepted_json(acc)
    return JSONResponse(
        out, status_code=201 if acc.created else 200, headers={"Location": out["links"]["self"]}
    )


@router.post(
    "/v1/messages/batch",
    tags=["messages"],
    summary="Submit up to 1,000 messages in one request",
    status_code=201,
    response_model=BatchResponse,
    responses=error_responses(400, 401, 403, 413, 422, 429, 503),
)
async def send_batch(
    body: Annotated[BatchRequest, Body(openapi_examples=BATCH_EXAMPLES)],
    node: NodeDep,
    caller_app: App = Depends(calling_app),
) -> Response:
    """All or nothing: if any message has a bad field, none is stored, and the error names it as
    ``messages[i].field``. Each message keeps its own ``client_ref`` idempotency."""
    reqs = [submit_request(m) for m in body.messages]
    accepted = await node.gateway.accept(
        reqs, interface="http", app=caller_app, notify=caller_app.webhook_url is not None
    )
    return JSONResponse({"messages": [accepted_json(acc) for acc in accepted]}, status_code=201)


@router.get(
    "/v1/messages/{id}",
    tags=["messages"],
    summary="A message, its deliveries and their receipts",
    response_model=MessageOut,
    responses=error_responses(401, 404, 422, 503, e503=STORE_DOWN),
)
async def get_message(
    message_id: Annotated[int, Path(alias="id", ge=1, le=MAX_ID, description="The message's id")],
    node: NodeDep,
    caller_app: App = Depends(calling_app),
) -> Response:
    """Only the calling app's messages are visible; another app's answer 404 like a missing one."""
    msg = await node.gateway.get_message(message_id, app_id=caller_app.id)
    if msg is None:
        raise ApiError(404, "not_found", f"no message {message_id} for this app", value=message_id)
    return JSONResponse(message_json(msg))


@router.post(
    "/v1/messages/{id}/cancel",
    tags=["messages"],
    summary="Cancel what of a message is still queued",
    response_model=CancelOut,
    responses=error_responses(401, 404, 422, 503, e503=STORE_DOWN),
)
async def cancel_message(
    message_id: MessageId, node: NodeDep, caller_app: App = Depends(calling_app)
) -> Response:
    """The message's deliveries still waiting in the queue end ``cancelled`` (each with its receipt
    event); those already handed to a carrier cannot be called back and go on. Only the calling
    app's messages: another app's answers 404 like a missing one."""
    done = await node.gateway.cancel_message(message_id, app_id=caller_app.id)
    if done is None:
        raise ApiError(404, "not_found", f"no message {message_id} for this app", value=message_id)
    return JSONResponse({"id": message_id, "cancelled": done.deliveries, "counts": done.counts})


@router.post(
    "/v1/messages/{id}/retry",
    tags=["messages"],
    summary="Send a message again where it failed",
    response_model=RetryOut,
    responses=error_responses(401, 404, 422, 503, e503=STORE_DOWN),
)
async def retry_message(
    message_id: MessageId, node: NodeDep, caller_app: App = Depends(calling_app)
) -> Response:
    """The message's deliveries that ended unsuccessfully (undelivered, expired, rejected, failed)
    are queued again with fresh attempts, resends and the message's own validity period; what they
    had ended with stays in their ``history``. Delivered and cancelled ones are left alone. Only the
    calling app's messages: another app's answers 404 like a missing one."""
    done = await node.gateway.retry_message(message_id, app_id=caller_app.id)
    if done is None:
        raise ApiError(404, "not_found", f"no message {message_id} for this app", value=message_id)
    return JSONResponse({"id": message_id, "retried": done.deliveries, "counts": done.counts})
