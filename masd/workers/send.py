"""Send workers, the daemon's side: processes that claim and send beside the daemon, so that sending uses
more than one core.

One masd process sends on one core at a time (the GIL): its trio thread and its writer thread take turns.
With ``[send] workers = N`` the daemon starts N worker processes (:mod:`masd.workers.send_process`). Each
runs the dispatchers and channel drivers of every channel and nothing else — no HTTP, socket, DB polling,
webhooks or meeting module — with a node name of its own (``<node>-send<i>``), so its claims are leases
like any node's: a worker that dies has its claims returned when it starts again, or when their lease
runs out. Each binds to the carrier on its own (the carrier sees 1 + N sessions of every channel, each
with the channel's window); receipts and replies are stored by whichever process's bind they arrive on.

The daemon owns the workers as it owns intake workers (:class:`~masd.workers.supervise.WorkerProcesses`):
it starts each with its configuration over the worker's stdin, which it keeps open, starts a worker again
if it exits, and asks it to drain by closing that pipe — so a worker also drains and ends when the daemon
is killed. A worker tells the daemon over a loopback datagram what its counters reached (the daemon adds
the increase to its own ``/metrics``) and when it wrote events for apps (so the socket and webhook
consumers look at once).
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable
from typing import Any

import structlog
import trio
from prometheus_client import Counter

from masd.config import Config
from masd.metrics import Metrics
from masd.workers.supervise import WorkerProcesses

__all__ = ["STOP_TIMEOUT", "SendWorkers", "sender_config"]

log = structlog.get_logger("masd.send")

STOP_TIMEOUT = 15.0  # a worker drains for up to 5 s (masd.daemon.DRAIN_SECONDS) twice, then must be gone
PROCESS = "masd.workers.send_process"  # the module a worker runs


def sender_config(cfg: Config, index: int) -> Config:
    """The configuration a send worker runs: the daemon's, with its own node name and only the sending
    parts on."""
    return cfg.model_copy(
        update={
            "node": cfg.node.model_copy(update={"name": f"{cfg.node_name}-send{index}"}),
            "http": cfg.http.model_copy(update={"enabled": False}),
            "socket": cfg.socket.model_copy(update={"enabled": False}),
            "webhooks": cfg.webhooks.model_copy(update={"enabled": False}),
            "meeting": cfg.meeting.model_copy(update={"enabled": False}),
            "intake": cfg.intake.model_copy(update={"workers": 0}),
            "dbpoll": {},
        }
    )


class SendWorkers:
    """The daemon's side: the workers, and what they report."""

    def __init__(self, cfg: Config, metrics: Metrics, on_events: Callable[[], None]) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.on_events = on_events
        self._workers: WorkerProcesses | None = None
        self._seen: dict[tuple[int, str, tuple[tuple[str, str], ...]], float] = {}  # by worker pid
        self._counters = {c._name: c for c in vars(metrics).values() if isinstance(c, Counter)}

    @property
    def started(self) -> int:
        """Worker processes started, restarts included."""
        return self._workers.started if self._workers is not None else 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        wake = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await wake.bind(("127.0.0.1", 0))
        port = wake.getsockname()[1]
        self._workers = WorkerProcesses(
            "send",
            argv=lambda i: [sys.executable, "-m", PROCESS, "--wake", str(port), "--index", str(i)],
            config=lambda i: sender_config(self.cfg, i).model_dump_json().encode() + b"\n",
            stop_timeout=STOP_TIMEOUT,
            log=log,
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen, wake)
                for index in range(self.cfg.send.workers):
                    nursery.start_soon(self._workers.keep, index)
                log.info("send workers started", workers=self.cfg.send.workers)
                task_status.started()
        finally:
            wake.close()

    async def drain(self) -> None:
        """Ask every worker to drain (its pipe closes) and wait until they have ended."""
        if self._workers is not None:
            await self._workers.drain()

    async def _listen(self, wake: trio.socket.SocketType) -> None:
        while True:
            data = await wake.recv(65536)
            try:
                report = json.loads(data)
            except ValueError:
                continue
            if report.get("events"):
                self.on_events()
            totals = report.get("counters")
            if totals:
                self._add(int(report.get("pid", 0)), totals)

    def _add(self, pid: int, totals: list[list[Any]]) -> None:
        """Add what a worker process's counters grew by since its last report to the daemon's own. A
        worker started again is a new process: its counts start from zero under its new pid."""
        for name, labels, value in totals:
            counter = self._counters.get(name)
            if counter is None:
                continue
            key = (pid, name, tuple(sorted(labels.items())))
            grown = value - self._seen.get(key, 0.0)
            self._seen[key] = value
            if grown > 0:
                (counter.labels(**labels) if labels else counter).inc(grown)
