"""Intake workers: processes that accept submissions so that the daemon's own process can send.

One masd process runs on one core at a time (the GIL): while HTTP clients post batches as fast as they
can, checking and storing them leaves the dispatcher a few turns a second. With ``[intake] workers = N``
the daemon starts N worker processes that share one listening socket on ``intake.listen`` and serve
``POST /v1/messages`` and ``POST /v1/messages/batch`` exactly as the main API does (same keys, checks,
answers and errors), storing into the same database; the daemon claims and sends what they stored.
Kannel splits its work the same way (smsbox takes HTTP, bearerbox talks to the SMSC).

The daemon owns the workers: it opens the socket, starts each worker with the socket and its own
configuration (over the worker's stdin, which it keeps open), starts a worker again if it exits, and
stops them by closing that pipe — so a worker also ends when the daemon is killed. A worker tells the
daemon over a loopback datagram when it is serving and after every stored batch (how many messages and
deliveries), so the dispatchers claim at once and ``masd_messages_accepted_total{interface="intake"}``
counts them. A lost datagram costs only latency: the dispatchers look for work every
``queue.poll_interval`` anyway.

What is per process: an app's ``rate`` limit applies in each worker and in the daemon separately; quotas
are counted in the database on every request once workers run, so they hold across processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import sys
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import structlog
import trio

from masd._workers import stop_worker, worker_config
from masd.config import Config
from masd.interfaces._http11 import _split_listen, serve_asgi

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from masd.core.gateway import Gateway
    from masd.daemon import Daemon
    from masd.metrics import Metrics
    from masd.store.db import Database

__all__ = ["IntakeWorkers", "main"]

log = structlog.get_logger("masd.intake")

READY_TIMEOUT = 60.0  # seconds the daemon waits for every worker to serve at start
STOP_TIMEOUT = 10.0  # seconds a worker may take to stop once its pipe is closed
INTERFACE = "intake"  # the interface label of what workers accept, in the daemon's metrics

_SERVED = {
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/batch"),
    ("GET", "/healthz"),
    ("HEAD", "/healthz"),
}


def _listening_socket(listen: str) -> socket.socket:
    host, port = _split_listen(listen)
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"intake.listen = {listen!r}: cannot listen there: {e.strerror}") from None
    sock.listen(1024)
    return sock


class IntakeWorkers:
    """The daemon's side: the shared socket, the workers, and what they report."""

    def __init__(self, cfg: Config, gateway: Gateway) -> None:
        self.cfg = cfg
        self.gateway = gateway
        self.url = ""
        self.started = 0  # worker processes started, restarts included
        self._ready: set[int] = set()
        self._all_ready = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the workers and keep them running until cancelled; started once every worker serves,
        with the intake URL."""
        sock = _listening_socket(self.cfg.intake.listen)
        wake = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await wake.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()[:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        config = self.cfg.model_dump_json().encode() + b"\n"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen, wake)
                for index in range(self.cfg.intake.workers):
                    nursery.start_soon(self._keep, index, sock, wake.getsockname()[1], config)
                with trio.fail_after(READY_TIMEOUT):
                    await self._all_ready.wait()
                log.info("intake workers serving", url=self.url, workers=self.cfg.intake.workers)
                task_status.started(self.url)
        finally:
            sock.close()
            wake.close()

    async def _listen(self, wake: trio.socket.SocketType) -> None:
        while True:
            data = await wake.recv(512)
            words = data.split()
            if len(words) == 3 and words[0] == b"accepted":
                self.gateway.accepted_elsewhere(int(words[1]), int(words[2]), INTERFACE)
            elif len(words) == 2 and words[0] == b"ready":
                self._ready.add(int(words[1]))
                if len(self._ready) >= self.cfg.intake.workers:
                    self._all_ready.set()

    async def _keep(self, index: int, sock: socket.socket, wake_port: int, config: bytes) -> None:
        delay = 1.0
        argv = [
            sys.executable,
            "-m",
            "masd.interfaces.intake",
            "--fd",
            str(sock.fileno()),
            "--wake",
            str(wake_port),
            "--index",
            str(index),
        ]
        while True:
            began = trio.current_time()
            proc = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE, pass_fds=(sock.fileno(),))
            self.started += 1
            assert proc.stdin is not None
            try:
                await proc.stdin.send_all(config)
                code = await proc.wait()
            finally:
                with trio.CancelScope(shield=True):
                    await stop_worker(proc, STOP_TIMEOUT)
            self._ready.discard(index)
            # Restart at once after a long life; back off when it keeps failing (a bad database URL, say).
            delay = 1.0 if trio.current_time() - began > 60 else min(delay * 2, 30.0)
            log.warning("intake worker exited; starting it again", worker=index, code=code, after_s=delay)
            await trio.sleep(delay)


# ----- the worker -------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Node:
    """What the API application reads of a daemon; a worker has no channels and no modules."""

    cfg: Config
    db: Database
    gateway: Gateway
    metrics: Metrics
    drivers: dict[str, Any] = dataclasses.field(default_factory=dict)
    meeting: Any = None
    ready: bool = True


class _IntakeOnly:
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
        if scope["type"] != "http" or (scope["method"], scope["path"]) in _SERVED:
            await self.app(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def _intake_app(node: _Node) -> ASGIApp:
    from masd.interfaces.fastpath import FastSubmit
    from masd.interfaces.http import MAX_BATCH, MAX_BODY, make_app

    # make_app reads only the attributes _Node has.
    app = make_app(cast("Daemon", node))
    api = f"http://{node.cfg.http.listen}" if node.cfg.http.enabled else "the daemon (its [http] is off)"
    return FastSubmit(
        _IntakeOnly(app, api), node.gateway, app.state.keys.get, max_body=MAX_BODY, max_batch=MAX_BATCH
    )


async def _work(cfg: Config, sock: socket.socket, wake_port: int, index: int) -> None:
    from masd.core.gateway import Gateway
    from masd.interfaces.http import MAX_BODY
    from masd.metrics import Metrics
    from masd.store.db import database_from_config

    db = database_from_config(cfg)  # the daemon has migrated it before starting any worker
    metrics = Metrics()
    gateway = Gateway(cfg, db, metrics)
    tell = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tell.setblocking(False)
    tell.connect(("127.0.0.1", wake_port))

    def accepted(messages: int, deliveries: int) -> None:
        try:
            tell.send(b"accepted %d %d" % (messages, deliveries))
        except OSError:
            pass  # the daemon's dispatchers find the work at their next poll

    gateway.on_accepted = accepted
    await gateway.refresh_pending()
    app = _intake_app(_Node(cfg, db, gateway, metrics))
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
    """A worker's entry point; the daemon starts it (``python -m masd.interfaces.intake``)."""
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
