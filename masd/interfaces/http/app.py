"""The ASGI application: the core's routers, the modules' routers the daemon hands over, one error shape.

:func:`make_app` assembles it for one node and keeps what routes read on ``app.state``: the node
(``node``), its store (``db``, which the modules' routers read), the key cache (``keys``) and whatever a
module's :class:`Mount` brings (the meeting router's service, say). This package imports no module: the
daemon decides which modules' routes are served.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import trio
from fastapi import APIRouter, FastAPI, params

import masd
from masd.interfaces.http.auth import KeyCache
from masd.interfaces.http.body import BodyCheck
from masd.interfaces.http.errors import add_error_handlers
from masd.interfaces.http.limits import MAX_BODY
from masd.interfaces.http.routes import messages_router, operations_router, replies_router
from masd.node import Node

__all__ = ["Mount", "make_app"]


@dataclasses.dataclass(frozen=True)
class Mount:
    """A module's router as the daemon hands it to :func:`make_app`."""

    router: APIRouter
    dependencies: Sequence[params.Depends] = ()  # run before each of its routes (a key check, say)
    state: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # put on app.state for its routes


def make_app(node: Node, mounts: Sequence[Mount] = ()) -> FastAPI:
    """The ASGI application for one node, serving the modules' routers in ``mounts`` before the core's;
    of its own it keeps only the key cache."""
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
    app.state.node = node
    app.state.db = node.db
    app.state.keys = KeyCache(node.gateway.authenticate)
    app.state.probe_limiter = trio.CapacityLimiter(
        1
    )  # a hung store holds one thread for probes, not one per probe
    for mount in mounts:
        for name, value in mount.state.items():
            setattr(app.state, name, value)
        app.include_router(mount.router, dependencies=list(mount.dependencies))
    app.add_middleware(BodyCheck, limit=MAX_BODY)
    add_error_handlers(app)
    app.include_router(messages_router)
    app.include_router(replies_router)
    app.include_router(operations_router)
    return app
