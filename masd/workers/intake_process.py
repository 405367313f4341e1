"""An intake worker's process: the HTTP API's submitting routes on the socket the daemon shares, storing
into the same database, and telling the daemon what it stored (:mod:`masd.workers.intake`). The daemon
starts it as ``python -m masd.workers.intake_process``.

A worker is a node without channels and modules: it builds its own :class:`IntakeNode` and serves the
main API's application behind :class:`IntakeOnly`, so keys, checks, answers and errors are the main
API's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import sys
from functools import partial

import structlog
import trio
from starlette.types import ASGIApp, Receive, Scope, Send

from masd.config import Config
from masd.core.gateway import Gateway
from masd.interfaces.http import MAX_BATCH, MAX_BODY, make_app
from masd.interfaces.http.fastpath import FastSubmit
from masd.interfaces.http.http11 import serve_asgi
from masd.metrics import Metrics
from masd.node import ChannelStatus
from masd.store.db import Database, database_from_config
from masd.workers.child import daemon_line, worker_config

__all__ = ["IntakeNode", "IntakeOnly", "intake_app", "main"]

log = structlog.get_logger("masd.intake")

SERVED = frozenset(
    {
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/batch"),
        ("GET", "/healthz"),
        ("HEAD", "/healthz"),
    }
)


@dataclasses.dataclass
class IntakeNode:
    """The node an intake worker is (:class:`masd.node.Node`): no channels, ready once it serves."""

    cfg: Config
    db: Database
    gateway: Gateway
    metrics: Metrics
    ready: bool = True

    def channel_states(self) -> dict[str, ChannelStatus]:
        return {}


class IntakeOnly:
    """Answers 404 to everything but submitting and liveness, pointing at the full API."""

    def __init__(self, app: ASGIApp, api: str) -> None:
        self.app = app
        self.body = json.dumps(
            {
                "error": {
                    "code": "not_found",
                    "reason": "this intake port serves POST /v1/messages and POST /v1/messages/batch "
                    f"only (接收端口只受理提交); the rest of the API is at {api}",
                }
            },
            ensure_ascii=False,
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in SERVED:
            await self.app(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def intake_app(node: IntakeNode) -> ASGIApp:
    """The application an intake worker serves: the main API's, submitting routes only."""
    app = make_app(node)
    api = f"http://{node.cfg.http.listen}" if node.cfg.http.enabled else "the daemon (its [http] is off)"
    return FastSubmit(
        IntakeOnly(app, api), node.gateway, app.state.keys.get, max_body=MAX_BODY, max_batch=MAX_BATCH
    )


async def _work(cfg: Config, sock: socket.socket, wake_port: int, index: int) -> None:
    db = database_from_config(cfg)  # the daemon has migrated it before starting any worker
    metrics = Metrics()
    gateway = Gateway(cfg, db, metrics)
    tell = daemon_line(wake_port)

    def accepted(messages: int, deliveries: int) -> None:
        try:
            tell.send(b"accepted %d %d" % (messages, deliveries))
        except OSError:
            pass  # the daemon's dispatchers find the work at their next poll

    gateway.on_accepted = accepted
    await gateway.refresh_pending()
    app = intake_app(IntakeNode(cfg, db, gateway, metrics))
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run_committer)
            await nursery.start(partial(serve_asgi, app, cfg.intake.listen, max_body=MAX_BODY, sock=sock))
            nursery.start_soon(_count_pending, gateway, cfg.queue.poll_interval * 5)
            tell.send(b"ready %d" % index)
            while await stdin.receive_some():
                pass  # the daemon writes nothing more; end of file means stop
            nursery.cancel_scope.cancel()
    finally:
        db.dispose()
        tell.close()


async def _count_pending(gateway: Gateway, every: float) -> None:
    # queue.max_pending is checked against this process's count: the daemon's sends lower it, so read
    # it again now and then.
    while True:
        await trio.sleep(every)
        try:
            await gateway.refresh_pending()
        except Exception as e:  # the store is down: requests will say so; keep the last count
            log.warning("could not count the queue", error=str(e))


def main(argv: list[str] | None = None) -> int:
    """A worker's entry point; the daemon starts it (``python -m masd.workers.intake_process``)."""
    ap = argparse.ArgumentParser(prog="masd intake worker", description="started by masd run; see [intake]")
    ap.add_argument("--fd", type=int, required=True, help="the listening socket, inherited")
    ap.add_argument("--wake", type=int, required=True, help="the daemon's loopback datagram port")
    ap.add_argument("--index", type=int, required=True)
    args = ap.parse_args(argv)
    # The daemon drains, then closes our stdin, which is when an intake worker stops.
    cfg = worker_config("intake_worker", args.index)
    if cfg is None:
        return 0
    sock = socket.socket(fileno=args.fd)
    trio.run(_work, cfg, sock, args.wake, args.index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
