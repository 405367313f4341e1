"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import trio

from masd.core.states import FINAL_VALUES
from masd.daemon import Daemon

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str) -> ModuleType:
    """A module of scripts/ (``chaos``, ``bench``), imported by path: scripts/ is not a package."""
    spec = importlib.util.spec_from_file_location(f"masd_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[f"masd_{name}"] = mod
    spec.loader.exec_module(mod)
    return mod


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


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"
