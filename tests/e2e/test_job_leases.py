"""Two daemons on one PostgreSQL database: each singleton job runs on exactly one of them, and moves to
the other within 15 s when its node dies; a webhook is then sent by the survivor, once.

Both daemons run in this process (their own data directories, node names, sim channels and HTTP
ports). A node "dies" by having its nursery cancelled with nothing given back, its connections closed
— to the database that is what a kill -9 looks like.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import trio
from typer.testing import CliRunner

from masd.cli import app as cli_app
from masd.config import load_config
from masd.daemon import Daemon
from masd.jobs import LEASE_SECONDS, RENEW_SECONDS
from masd.store import apps as app_store
from masd.store import jobs as job_store
from masd.store.db import Database
from masd.store.webhooks import CONSUMER

from .test_webhooks import Receiver, _free_port

pytestmark = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)

JOBS = ["dbpoll:oa1", "housekeeping", "meeting", "webhooks"]
MOVE_WITHIN = 15.0


@dataclasses.dataclass
class Node:
    daemon: Daemon
    scope: trio.CancelScope
    client: httpx.AsyncClient

    def kill(self) -> None:
        self.scope.cancel()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        r.release.set()
        r.server.shutdown()
        r.server.server_close()


@pytest.fixture
def prepared(store_url: str, tmp_path: Path, receiver: Receiver) -> tuple[str, str]:
    """The shared database with the apps both nodes need (dbpoll's, one with a webhook), and the OA's."""
    oa_url = f"sqlite:///{tmp_path / 'oa.db'}"
    done = CliRunner().invoke(
        cli_app, ["dbpoll", "init", "oa1", "--url", oa_url], env={"MASD_NODE__DATA_DIR": str(tmp_path)}
    )
    assert done.exit_code == 0, done.output
    db = Database(store_url)
    db.upgrade()
    db.write_sync(lambda c: app_store.create_app(c, "oa", now=time.time()))
    _, key = db.write_sync(
        lambda c: app_store.create_app(
            c, "crm", now=time.time(), webhook_url=receiver.url + "/crm", webhook_secret="s"
        )
    )
    db.dispose()
    return oa_url, key


def _env(store_url: str, oa_url: str, tmp_path: Path, node: str) -> dict[str, str]:
    return {
        "MASD_NODE__NAME": node,
        "MASD_NODE__DATA_DIR": str(tmp_path / node),
        "MASD_STORE__URL": store_url,
        "MASD_HTTP__LISTEN": f"127.0.0.1:{_free_port()}",
        "MASD_SOCKET__ENABLED": "false",
        "MASD_CHANNELS__SIM__OPTIONS": "{receipt_delay = 0.01}",
        "MASD_WEBHOOKS__DISCOVER_SECONDS": "0.2",
        "MASD_DBPOLL__OA1__URL": oa_url,
        "MASD_DBPOLL__OA1__APP": "oa",
        "MASD_DBPOLL__OA1__INTERVAL": "0.2",
    }


@contextlib.asynccontextmanager
async def nodes(store_url: str, oa_url: str, tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    async with trio.open_nursery() as nursery:
        started: list[Node] = []
        for name in ("n1", "n2"):
            daemon = Daemon(load_config(None, env=_env(store_url, oa_url, tmp_path, name)))
            scope = trio.CancelScope()

            async def run(
                daemon: Daemon = daemon,
                scope: trio.CancelScope = scope,
                *,
                task_status: trio.TaskStatus[None],
            ) -> None:
                with scope:
                    await daemon.run(task_status=task_status)
                if scope.cancelled_caught:
                    daemon.db.dispose()  # a dead process's connections close

            await nursery.start(run)
            client = httpx.AsyncClient(base_url=f"http://{daemon.cfg.http.listen}", timeout=10)
            started.append(Node(daemon, scope, client))
        try:
            yield started[0], started[1]
        finally:
            for n in started:
                await n.client.aclose()
                n.daemon.stop()


async def _holders(node: Node) -> dict[str, tuple[str | None, int]]:
    rows = await node.daemon.db.read(job_store.leases)
    return {r["job"]: (r["holder"], int(r["epoch"])) for r in rows}


async def _webhook_cursor(node: Node) -> int:
    app = await node.daemon.gateway.app_named("crm")
    assert app is not None
    return await node.daemon.gateway.get_cursor(app.id, CONSUMER)


async def _send(node: Node, key: str, ref: str) -> None:
    r = await node.client.post(
        "/v1/messages",
        json={"to": "13800138000", "text": "hello", "client_ref": ref},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 201, r.text


async def test_each_job_runs_on_one_node_and_moves_to_the_survivor_when_its_node_dies(
    store_url: str, tmp_path: Path, prepared: tuple[str, str], receiver: Receiver
) -> None:
    oa_url, key = prepared
    async with nodes(store_url, oa_url, tmp_path) as (first, second):
        assert sorted(first.daemon.jobs.held()) == JOBS  # it started first and took every job
        assert second.daemon.jobs.held() == {}
        assert await _holders(second) == {job: ("n1", 1) for job in JOBS}
        await _send(second, key, "before")  # HTTP works on both; the webhook goes out from n1
        (hit,) = await receiver.wait_for("/crm", 1)
        assert hit.event["client_ref"] == "before"
        # Killed after the cursor moved: otherwise n2 would rightly send it again (at least once).
        with trio.fail_after(5):
            while await _webhook_cursor(second) < int(hit.event["event"]):
                await trio.sleep(0.02)

        first.kill()
        died = trio.current_time()
        with trio.fail_after(MOVE_WITHIN):
            while sorted(second.daemon.jobs.held()) != JOBS:
                await trio.sleep(0.05)
        moved = trio.current_time() - died
        print(f"every job moved to n2 {moved:.1f} s after n1 died")
        assert moved <= LEASE_SECONDS + RENEW_SECONDS + 1
        assert await _holders(second) == {job: ("n2", 2) for job in JOBS}

        await _send(second, key, "after")
        hits = await receiver.wait_for("/crm", 2)
        assert [h.event["client_ref"] for h in hits] == ["before", "after"]
        await trio.sleep(0.5)
        assert len(receiver.for_path("/crm")) == 2  # nothing sent twice


async def test_a_node_that_stops_cleanly_hands_its_jobs_over_at_once(
    store_url: str, tmp_path: Path, prepared: tuple[str, str]
) -> None:
    oa_url, _ = prepared
    async with nodes(store_url, oa_url, tmp_path) as (first, second):
        assert sorted(first.daemon.jobs.held()) == JOBS
        first.daemon.stop()
        stopped = trio.current_time()
        with trio.fail_after(RENEW_SECONDS + 2):
            while sorted(second.daemon.jobs.held()) != JOBS:
                await trio.sleep(0.05)
        assert trio.current_time() - stopped < RENEW_SECONDS + 2
        async with httpx.AsyncClient() as probe:
            with pytest.raises(httpx.ConnectError):
                await probe.get(f"http://{first.daemon.cfg.http.listen}/healthz")
