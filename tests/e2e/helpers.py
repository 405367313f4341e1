"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

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
