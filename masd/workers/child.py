"""What every worker process does first: leave signals to the daemon, read its configuration, and open
its line back to the daemon.

A worker reads its configuration as one JSON line on stdin, which the daemon keeps open; end of file
means "finish". Workers ignore SIGINT and SIGTERM: a terminal's Ctrl-C and a service manager's SIGTERM
reach the whole process group, and the order of shutdown is the daemon's to decide.
"""

from __future__ import annotations

import signal
import socket
import sys

import structlog

from masd.config import Config

__all__ = ["daemon_line", "worker_config"]


def worker_config(context_key: str, index: int) -> Config | None:
    """Leave signals to the daemon, read the configuration from stdin, set up logging with
    ``context_key=index`` on every line. None if the daemon closed stdin at once."""
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


def daemon_line(port: int) -> socket.socket:
    """A loopback datagram socket to the daemon's ``port``, that never blocks: a worker's reports are
    worth only what they save in latency, and one that cannot be sent is dropped."""
    tell = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tell.setblocking(False)
    tell.connect(("127.0.0.1", port))
    return tell
