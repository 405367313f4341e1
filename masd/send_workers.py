"""Send workers: processes that claim and send beside the daemon, so that sending uses more than one core.

One masd process sends on one core at a time (the GIL): its trio thread and its writer thread take turns.
With ``[send] workers = N`` the daemon starts N worker processes. Each runs the dispatchers and channel
drivers of every channel and nothing else — no HTTP, socket, DB polling, webhooks or meeting module — with
a node name of its own (``<node>-send<i>``), so its claims are leases like any node's: a worker that dies
has its claims returned when it starts again, or when their lease runs out. Each binds to the carrier on
its own (the carrier sees 1 + N sessions of every channel, each with the channel's window); receipts and
replies are stored by whichever process's bind they arrive on.

The daemon owns the workers as it owns intake workers: it starts each with its configuration over the
worker's stdin, which it keeps open, starts a worker again if it exits, and asks it to drain by closing
that pipe — so a worker also drains and ends when the daemon is killed. A worker tells the daemon over a
loopback datagram what its counters reached (the daemon adds the increase to its own ``/metrics``) and
when it wrote events for apps (so the socket and webhook consumers look at once).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from typing import Any

import structlog
import trio
from prometheus_client import Counter

from masd._workers import stop_worker, worker_config
from masd.config import Config
from masd.metrics import Metrics

__all__ = ["SendWorkers", "main", "sender_config"]

log = structlog.get_logger("masd.send")

STOP_TIMEOUT = 15.0  # a worker drains for up to 5 s (masd.daemon.DRAIN_SECONDS) twice, then must be gone
REPORT_EVERY = 1.0  # seconds between a worker's counter reports


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


def _counter_totals(metrics: Metrics) -> list[list[Any]]:
    """Every counter sample of a registry: [name, labels, value]."""
    out: list[list[Any]] = []
    for family in metrics.registry.collect():
        if family.type != "counter":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out.append([family.name, sample.labels, sample.value])
    return out


class SendWorkers:
    """The daemon's side: the workers, and what they report."""

    def __init__(self, cfg: Config, metrics: Metrics, on_events: Any) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.on_events = on_events
        self.started = 0  # worker processes started, restarts included
        self._procs: dict[int, trio.Process] = {}
        self._draining = False
        self._seen: dict[tuple[int, str, tuple[tuple[str, str], ...]], float] = {}  # by worker pid
        self._counters = {c._name: c for c in vars(metrics).values() if isinstance(c, Counter)}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        wake = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await wake.bind(("127.0.0.1", 0))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen, wake)
                for index in range(self.cfg.send.workers):
                    config = sender_config(self.cfg, index).model_dump_json().encode() + b"\n"
                    nursery.start_soon(self._keep, index, wake.getsockname()[1], config)
                log.info("send workers started", workers=self.cfg.send.workers)
                task_status.started()
        finally:
            wake.close()

    async def drain(self) -> None:
        """Ask every worker to drain (its pipe closes) and wait until they have ended."""
        self._draining = True
        for proc in list(self._procs.values()):
            if proc.stdin is not None:
                await proc.stdin.aclose()
        with trio.move_on_after(STOP_TIMEOUT):
            for proc in list(self._procs.values()):
                await proc.wait()

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

    async def _keep(self, index: int, wake_port: int, config: bytes) -> None:
        delay = 1.0
        argv = [sys.executable, "-m", "masd.send_workers", "--wake", str(wake_port), "--index", str(index)]
        while not self._draining:
            began = trio.current_time()
            proc = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE)
            self._procs[index] = proc
            self.started += 1
            assert proc.stdin is not None
            try:
                await proc.stdin.send_all(config)
                code = await proc.wait()
            finally:
                with trio.CancelScope(shield=True):
                    await stop_worker(proc, STOP_TIMEOUT)
            if self._draining:
                return
            # Restart at once after a long life; back off when it keeps failing (a bad database URL, say).
            delay = 1.0 if trio.current_time() - began > 60 else min(delay * 2, 30.0)
            log.warning("send worker exited; starting it again", worker=index, code=code, after_s=delay)
            await trio.sleep(delay)


# ----- the worker -------------------------------------------------------------------------------------


async def _work(cfg: Config, wake_port: int, index: int) -> None:
    from masd.daemon import Daemon

    daemon = Daemon(cfg, role="sender")
    tell = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tell.setblocking(False)
    tell.connect(("127.0.0.1", wake_port))

    def send(report: dict[str, Any]) -> None:
        try:
            tell.send(json.dumps({"worker": index, "pid": os.getpid(), **report}).encode())
        except OSError:
            pass  # lost: the next report carries the totals; consumers poll for events anyway

    daemon.gateway.on_events = lambda: send({"events": True})

    async def report() -> None:
        while True:
            await trio.sleep(REPORT_EVERY)
            send({"counters": _counter_totals(daemon.metrics)})

    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            reporting = trio.CancelScope()

            async def reports() -> None:
                with reporting:
                    await report()

            nursery.start_soon(reports)
            while await stdin.receive_some():
                pass  # the daemon writes nothing more; end of file means drain and stop
            daemon.stop()  # daemon.run drains its dispatchers and drivers, then returns
            reporting.cancel()
    finally:
        send({"counters": _counter_totals(daemon.metrics)})
        tell.close()


def main(argv: list[str] | None = None) -> int:
    """A worker's entry point; the daemon starts it (``python -m masd.send_workers``)."""
    ap = argparse.ArgumentParser(prog="masd send worker", description="started by masd run; see [send]")
    ap.add_argument("--wake", type=int, required=True, help="the daemon's loopback datagram port")
    ap.add_argument("--index", type=int, required=True)
    args = ap.parse_args(argv)
    # The daemon closes our stdin when it drains (or dies): then a send worker drains.
    cfg = worker_config("send_worker", args.index)
    if cfg is None:
        return 0
    trio.run(_work, cfg, args.wake, args.index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
