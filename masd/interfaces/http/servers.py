"""Serving the API inside the daemon's nursery: masd's own HTTP/1.1 server (``http.server = "builtin"``,
:mod:`masd.interfaces.http.http11`) or Hypercorn's trio worker, with the hot path for plain submits
(:mod:`masd.interfaces.http.fastpath`) in front of the application either way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import trio

from masd.interfaces.http.app import Mount, make_app
from masd.interfaces.http.fastpath import FastSubmit
from masd.interfaces.http.http11 import serve_asgi
from masd.interfaces.http.limits import MAX_BATCH, MAX_BODY
from masd.node import Node

if TYPE_CHECKING:
    from hypercorn.config import Config as HypercornConfig

__all__ = ["hypercorn_config", "serve_http"]


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
    node: Node,
    mounts: Sequence[Mount] = (),
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the API on ``node.cfg.http.listen`` until cancelled; started once the socket listens."""
    app = make_app(node, mounts)
    fast = FastSubmit(app, node.gateway, app.state.keys.get, max_body=MAX_BODY, max_batch=MAX_BATCH)
    if node.cfg.http.server == "builtin":
        # The server refuses a body over MAX_BODY with the same 413 as BodyCheck, from its Content-Length
        # alone, before reading it (BodyCheck does so too under Hypercorn).
        await serve_asgi(fast, node.cfg.http.listen, max_body=MAX_BODY, task_status=task_status)
        return
    from hypercorn.trio import serve
    from hypercorn.typing import ASGIFramework

    # The daemon stops the server by cancelling its nursery once it has drained, so Hypercorn's own
    # graceful-shutdown trigger waits on an event that nobody sets.
    never = trio.Event()
    # Starlette's ASGI types and Hypercorn's differ only in how precisely they spell the same protocol.
    await serve(
        cast(ASGIFramework, fast),
        hypercorn_config(node.cfg.http.listen),
        shutdown_trigger=never.wait,
        task_status=task_status,
    )
