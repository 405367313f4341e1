"""What the daemon's worker processes (intake workers, send workers) share: how a worker takes its
configuration from the daemon, and how the daemon stops one.

A worker reads its configuration as one JSON line on stdin, which the daemon keeps open; end of file
means "finish". Workers ignore SIGINT and SIGTERM: a terminal's Ctrl-C and a service manager's SIGTERM
reach the whole process group, and the order of shutdown is the daemon's to decide.
"""

from __future__ import annotations

import signal
import sys

import structlog
import trio

from masd.config import Config

__all__ = ["stop_worker", "worker_config"]


def worker_config(context_key: str, index: int) -> Config | None:
    """In a worker process: leave signals to the daemon, read the configuration from stdin, set up
    logging with ``context_key=index`` on every line. None if the daemon closed stdin at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    line = sys.stdin.buffer.readline()
    if not line:
        return None
    cfg = Config.model_validate_json(line)
    from masd.logging import configure_logging

    configure_logging(cfg.log.level, cfg.log.format)
    structlog.contextvars.bind_contextvars(**{context_key: index})
    return cfg


async def stop_worker(proc: trio.Process, timeout: float) -> None:
    """In the daemon: close the worker's stdin (its signal to finish), wait up to ``timeout``, then kill."""
    if proc.returncode is not None:
        return
    if proc.stdin is not None:
        await proc.stdin.aclose()
    with trio.move_on_after(timeout):
        await proc.wait()
        return
    proc.kill()
    await proc.wait()
