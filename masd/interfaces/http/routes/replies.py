"""``GET /v1/replies``: the replies (上行短信) routed to the calling app, after a cursor, oldest first.

Each reply is returned once and none is skipped when a client polls with ``after`` set to the previous
answer's ``next`` (the store never hands on a reply above one that may still commit).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from masd.core.gateway import App
from masd.core.times import utc_iso
from masd.interfaces.http.auth import calling_app
from masd.interfaces.http.errors import STORE_DOWN, error_responses
from masd.interfaces.http.limits import MAX_ID, MAX_REPLIES
from masd.interfaces.http.models import REPLY_EXAMPLE, RepliesPage
from masd.interfaces.http.state import NodeDep
from masd.store import replies as reply_store

__all__ = ["reply_json", "router"]

router = APIRouter()


def reply_json(r: dict[str, Any], answers: Mapping[int, tuple[int, str | None]]) -> dict[str, Any]:
    """A stored reply → its JSON; ``answers`` gives the message (id, client_ref) of its delivery."""
    message_id, client_ref = answers.get(r["delivery_id"], (None, None))
    return {
        "id": r["id"],
        "sender": r["sender"],
        "destination": r["destination"],
        "extension": r["extension"],
        "text": r["text"],
        "received_at": utc_iso(r["received_at"]),
        "matched_by": r["matched_by"],
        "channel": r["channel"],
        "message_id": message_id,
        "client_ref": client_ref,
        "delivery_id": r["delivery_id"],
    }


@router.get(
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
                            "value": {"replies": [REPLY_EXAMPLE], "next": 7},
                        },
                        "none": {
                            "summary": "Nothing new after reply 7",
                            "value": {"replies": [], "next": 7},
                        },
                    }
                }
            },
        },
        **error_responses(401, 422, 503, e503=STORE_DOWN),
    },
)
async def list_replies(
    node: NodeDep,
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
    caller_app: App = Depends(calling_app),
) -> Response:
    """Replies routed to the calling app (by its extension, a keyword rule or the latest delivery to
    the sender), oldest first. Poll with ``after`` set to the previous answer's ``next``: each reply
    is returned once, none is skipped."""
    found = await node.gateway.list_replies(app_id=caller_app.id, after=after, limit=limit)
    delivery_ids = sorted({r["delivery_id"] for r in found if r["delivery_id"] is not None})
    answers = await node.db.read(lambda c: reply_store.answered(c, delivery_ids)) if delivery_ids else {}
    return JSONResponse(
        {"replies": [reply_json(r, answers) for r in found], "next": found[-1]["id"] if found else after}
    )
