"""Long replies survive a kill -9 of the daemon between their parts: ``masd run`` as a real process,
bound over TCP to a scriptable SMSC in this test (it can send one part at a time and see each
deliver_sm_resp), on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio

from masd.config import load_config
from masd.core.reply_parts import MISSING
from masd.store.db import Database, database_from_config
from masd.store.tables import replies, reply_parts

from .test_smpp_channel import Conn, FakeSmsc

CONFIG = """
[node]
name = "long-replies"
data_dir = "{data}"
[store]
url = "{store_url}"
[http]
enabled = false
[socket]
enabled = false
[log]
format = "json"
[channels.smpp]
driver = "smpp"
service_number = "1065700012345"
[channels.smpp.options]
host = "127.0.0.1"
port = {port}
system_id = "masd"
password = "secret"
reconnect_min = 0.1
reconnect_max = 0.5
mo_timeout = {mo_timeout}
"""

SENDER = "8613800138000"
TO = "106570001234542"
# A surrogate pair (👍) straddles parts 1 and 2: the parts must be joined as bytes, across the restart.
TEXT = "收到，明天上午九点的会议我参加👍，但需要晚到十分钟，请见谅。"
BODY = TEXT.encode("utf-16-be")
CUT_1 = TEXT.index("👍") * 2 + 2  # between the high and the low surrogate
CUT_2 = CUT_1 + 20
CHUNKS = [BODY[:CUT_1], BODY[CUT_1:CUT_2], BODY[CUT_2:]]


class Daemon:
    """``masd run`` in a process of its own, killed or stopped by signal."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "masd.cli", "run", "--config", str(self.config)],
            stdout=out,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    async def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = await trio.to_thread.run_sync(self.proc.wait)
        self.proc = None
        return code

    def kill_if_running(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
async def smsc(nursery: trio.Nursery) -> FakeSmsc:
    server = FakeSmsc()
    await nursery.start(server.serve)
    return server


def rig(tmp_path: Path, smsc: FakeSmsc, store_url: str, mo_timeout: float) -> tuple[Daemon, Database]:
    config = tmp_path / "masd.toml"
    config.write_text(
        CONFIG.format(data=tmp_path.as_posix(), store_url=store_url, port=smsc.port, mo_timeout=mo_timeout)
    )
    db = database_from_config(load_config(config, env={}))
    db.upgrade()
    return Daemon(config, tmp_path / "daemon.log"), db


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    things: list[Any] = []
    yield things
    for thing in things:
        if isinstance(thing, Daemon):
            thing.kill_if_running()
        else:
            thing.dispose()


async def bound(smsc: FakeSmsc, daemon: Daemon, timeout: float = 30.0) -> Conn:
    """The daemon's bind, once it is there."""
    with trio.fail_after(timeout):
        while not smsc.bound():
            assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log.read_text()
            await trio.sleep(0.05)
    [conn] = smsc.bound()
    return conn


async def send_part(conn: Conn, seq: int, total: int = 3) -> int:
    """Part ``seq`` of TEXT; the command_status the daemon answered it with."""
    sm_seq = await conn.deliver(
        source_addr=SENDER,
        source_addr_ton=1,
        destination_addr=TO,
        esm_class=0x40,
        data_coding=8,
        short_message=bytes([5, 0, 3, 0x5A, total, seq]) + CHUNKS[seq - 1],
    )
    return (await conn.wait_resp(sm_seq, timeout=10))[0]


def stored(db: Database) -> list[dict[str, Any]]:
    return db.read_sync(lambda c: [dict(r) for r in c.execute(sa.select(replies)).mappings()])


def parts_held(db: Database) -> list[int]:
    return sorted(db.read_sync(lambda c: list(c.execute(sa.select(reply_parts.c.seq)).scalars())))


async def wait_stored(db: Database, timeout: float = 20.0) -> list[dict[str, Any]]:
    with trio.fail_after(timeout):
        while not (rows := stored(db)):
            await trio.sleep(0.05)
    return rows


async def test_a_kill_9_after_part_1_is_acknowledged_loses_nothing_and_the_reply_is_stored_once(
    tmp_path: Path, smsc: FakeSmsc, store_url: str, cleanup: list[Any]
) -> None:
    daemon, db = rig(tmp_path, smsc, store_url, mo_timeout=60)
    cleanup += [daemon, db]
    daemon.start()
    conn = await bound(smsc, daemon)
    assert await send_part(conn, 1) == 0
    assert parts_held(db) == [1]  # acknowledged, so already in the database

    assert await daemon.signal(signal.SIGKILL) == -signal.SIGKILL
    with trio.fail_after(5):
        await conn.closed.wait()
    daemon.start()
    conn = await bound(smsc, daemon)
    assert await send_part(conn, 3) == 0
    assert await send_part(conn, 2) == 0
    # The SMSC missed the deliver_sm_resps and sends both again: no second reply, no stray part.
    assert await send_part(conn, 2) == 0
    assert await send_part(conn, 3) == 0

    [row] = await wait_stored(db)
    assert (row["sender"], row["destination"], row["text"], row["channel"]) == (
        "13800138000",  # stored as a mainland number
        TO,
        TEXT,
        "smpp",
    )
    await trio.sleep(1.5)  # a tick of the missing-part timer or two: nothing more appears
    assert len(stored(db)) == 1 and parts_held(db) == []
    assert await daemon.signal(signal.SIGTERM) == 0


async def test_a_part_that_never_comes_is_given_up_after_the_timeout_across_a_kill_9(
    tmp_path: Path, smsc: FakeSmsc, store_url: str, cleanup: list[Any]
) -> None:
    timeout = 4.0
    daemon, db = rig(tmp_path, smsc, store_url, mo_timeout=timeout)
    cleanup += [daemon, db]
    daemon.start()
    conn = await bound(smsc, daemon)
    first_acked = time.time()
    assert await send_part(conn, 1) == 0
    assert await send_part(conn, 3) == 0

    assert await daemon.signal(signal.SIGKILL) == -signal.SIGKILL
    with trio.fail_after(5):
        await conn.closed.wait()
    assert stored(db) == [] and parts_held(db) == [1, 3]
    daemon.start()
    conn = await bound(smsc, daemon)

    [row] = await wait_stored(db, timeout=timeout + 20)
    # Part 1 ends with half of 👍, whose other half was in the part that never came.
    expected = CHUNKS[0].decode("utf-16-be", errors="replace") + MISSING + CHUNKS[2].decode("utf-16-be")
    assert row["text"] == expected and expected.startswith("收到") and expected.endswith("请见谅。")
    assert row["received_at"] >= first_acked + timeout - 0.5  # the timeout ran from part 1, before the kill
    assert parts_held(db) == []
    # Part 3 again, as an SMSC re-sends what it saw no answer to: recognised, not a new reply.
    assert await send_part(conn, 3) == 0
    await trio.sleep(1.5)
    assert len(stored(db)) == 1 and parts_held(db) == []
    assert await daemon.signal(signal.SIGTERM) == 0


async def test_a_clean_restart_between_parts_loses_nothing_either(
    tmp_path: Path, smsc: FakeSmsc, store_url: str, cleanup: list[Any]
) -> None:
    daemon, db = rig(tmp_path, smsc, store_url, mo_timeout=60)
    cleanup += [daemon, db]
    daemon.start()
    conn = await bound(smsc, daemon)
    assert await send_part(conn, 2) == 0
    assert await daemon.signal(signal.SIGTERM) == 0
    with trio.fail_after(5):
        await conn.closed.wait()
    daemon.start()
    conn = await bound(smsc, daemon)
    assert await send_part(conn, 1) == 0
    assert await send_part(conn, 3) == 0
    [row] = await wait_stored(db)
    assert row["text"] == TEXT
    assert await daemon.signal(signal.SIGTERM) == 0
