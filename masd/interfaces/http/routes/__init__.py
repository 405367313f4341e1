"""The core API's routes, one router per tag: messages, replies, operations."""

from __future__ import annotations

from masd.interfaces.http.routes.messages import router as messages_router
from masd.interfaces.http.routes.operations import router as operations_router
from masd.interfaces.http.routes.replies import router as replies_router

__all__ = ["messages_router", "operations_router", "replies_router"]
