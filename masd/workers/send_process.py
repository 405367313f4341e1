"""A send worker's process: a :class:`~masd.daemon.Daemon` in the "sender" role, which runs the
dispatchers and channel drivers of every channel and reports to the daemon that started it
(:mod:`masd.workers.send`). The daemon starts it as ``python -m masd.workers.send_process``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import trio

from masd.config import Config
from masd.daemon import Daemon
from masd.metrics import Metrics
from masd.workers.child import daemon_line, worker_config

__all__ = ["counter_totals", "main"]

REPORT_EVERY = 1.0  # seconds between a worker's counter reports


def counter_totals(metrics: Metrics) -> list[list[Any]]:
    """Every counter sample of a registry: [name, labels, value]."""
    out: list[list[Any]] = []
    for family in metrics.registry.collect():
        if family.type != "counter":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out.append([family.name, sample.labels, sample.value])
    return out


async def _work(cfg: Config, wake_port: int, index: int) -> None:
    daemon = Daemon(cfg, role="sender")
    tell = daemon_line(wake_port)

    def send(report: dict[str, Any]) -> None:
        try:
            tell.send(json.dumps({"worker": index, "pid": os.getpid(), **report}).encode())
        except OSError:
            pass  # lost: the next report carries the totals; consumers poll for events anyway

    daemon.gateway.on_events = lambda: send({"events": True})

    async def report() -> None:
        while True:
            await trio.sleep(REPORT_EVERY)
            send({"counters": counter_totals(daemon.metrics)})

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
        send({"counters": counter_totals(daemon.metrics)})
        tell.close()


def main(argv: list[str] | None = None) -> int:
    """A worker's entry point; the daemon starts it (``python -m masd.workers.send_process``)."""
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
