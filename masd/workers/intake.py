"""Intake workers, the daemon's side: processes that accept submissions so that the daemon's own process
can send.

One masd process runs on one core at a time (the GIL): while HTTP clients post batches as fast as they
can, checking and storing them leaves the dispatcher a few turns a second. With ``[intake] workers = N``
the daemon starts N worker processes (:mod:`masd.workers.intake_process`) that share one listening socket
on ``intake.listen`` and serve ``POST /v1/messages`` and ``POST /v1/messages/batch`` exactly as the main
API does (same keys, checks, answers and errors), storing into the same database; the daemon claims and
sends what they stored. Kannel splits its work the same way (smsbox takes HTTP, bearerbox talks to the
SMSC).

The daemon owns the workers (:class:`~masd.workers.supervise.WorkerProcesses`): it opens the socket,
starts each worker with the socket and its own configuration (over the worker's stdin, which it keeps
open), starts a worker again if it exits, and stops them by closing that pipe — so a worker also ends
when the daemon is killed. A worker tells the daemon over a loopback datagram when it is serving and
after every stored batch (how many messages and deliveries), so the dispatchers claim at once and
``masd_messages_accepted_total{interface="intake"}`` counts them. A lost datagram costs only latency: the
dispatchers look for work every ``queue.poll_interval`` anyway.

What is per process: an app's ``rate`` limit applies in each worker and in the daemon separately; quotas
are counted in the database on every request once workers run, so they hold across processes.
"""

from __future__ import annotations

import socket
import sys

import structlog
import trio

from masd.config import Config
from masd.core.gateway import Gateway
from masd.interfaces.http.http11 import split_listen
from masd.workers.supervise import WorkerProcesses

__all__ = ["INTERFACE", "IntakeWorkers"]

log = structlog.get_logger("masd.intake")

READY_TIMEOUT = 60.0  # seconds the daemon waits for every worker to serve at start
STOP_TIMEOUT = 10.0  # seconds a worker may take to stop once its pipe is closed
INTERFACE = "intake"  # the interface label of what workers accept, in the daemon's metrics
PROCESS = "masd.workers.intake_process"  # the module a worker runs


def _listening_socket(listen: str) -> socket.socket:
    host, port = split_listen(listen)
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
        self._workers: WorkerProcesses | None = None
        self._ready: set[int] = set()
        self._all_ready = trio.Event()

    @property
    def started(self) -> int:
        """Worker processes started, restarts included."""
        return self._workers.started if self._workers is not None else 0

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the workers and keep them running until cancelled; started once every worker serves,
        with the intake URL."""
        sock = _listening_socket(self.cfg.intake.listen)
        wake = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await wake.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()[:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        config = self.cfg.model_dump_json().encode() + b"\n"
        fd, wake_port = sock.fileno(), wake.getsockname()[1]
        self._workers = WorkerProcesses(
            "intake",
            argv=lambda i: [
                sys.executable,
                "-m",
                PROCESS,
                "--fd",
                str(fd),
                "--wake",
                str(wake_port),
                "--index",
                str(i),
            ],
            config=lambda i: config,
            stop_timeout=STOP_TIMEOUT,
            log=log,
            pass_fds=(fd,),
            on_exit=self._ready.discard,
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen, wake)
                for index in range(self.cfg.intake.workers):
                    nursery.start_soon(self._workers.keep, index)
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
