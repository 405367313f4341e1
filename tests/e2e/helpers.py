"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from masd.core.states import FINAL_VALUES
from masd.daemon import Daemon


async def wait_final(d: Daemon, message_id: int, timeout: float = 30) -> dict[str, Any]:
    """The message once every delivery of it has reached a final state; fails after ``timeout``."""
    with trio.fail_after(timeout):
        while True:
            msg = await d.gateway.get_message(message_id)
            assert msg is not None
            if all(x["state"] in FINAL_VALUES for x in msg["deliveries"]):
                return msg
            await trio.sleep(0.05)


def until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` (from a test's own thread, not trio) until it answers something true; that answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def free_port_pair() -> int:
    """A loopback port P with P+1 free too (``masd sim smsc`` puts its control port at P+1)."""
    for _ in range(200):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports on 127.0.0.1")


def child_pids(pid: int, marker: str) -> list[int]:
    """The live children of ``pid`` whose command line contains ``marker`` (a worker's module name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid and marker in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"
