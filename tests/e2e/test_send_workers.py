"""Send workers (``[send] workers``), through a real ``masd run`` subprocess and ``masd sim smsc`` over
SMPP: the daemon and its worker each bind; messages go out through both; the simulator spreads receipts
over both binds, so many arrive at the process that did not send them, and every one is applied; the
worker's counters reach the daemon's /metrics; the worker drains and ends with the daemon, even when the
daemon is killed."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import alive, child_pids, free_port_pair, until

WORKER = "masd.workers.send_process"


def _port_pair() -> int:
    return free_port_pair()


class Node:
    def __init__(self, tmp_path: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MASD_")}
        argv = [sys.executable, "-m", "masd.cli"]
        smsc_port = _port_pair()
        self.smsc_control = smsc_port + 1
        self.logs = [(tmp_path / name).open("wb") for name in ("smsc.log", "masd.log")]
        sim = ["sim", "smsc", "--port", str(smsc_port), "--account", "masd:secret", "--receipt-delay", "0"]
        self.smsc = subprocess.Popen(
            [*argv, *sim],
            env=self.env,
            stdout=self.logs[0],
            stderr=subprocess.STDOUT,
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.http = f"http://127.0.0.1:{s.getsockname()[1]}"
        self.db = tmp_path / "data" / "masd.db"
        config = tmp_path / "masd.toml"
        config.write_text(
            f"""
[node]
name = "n1"
data_dir = "{(tmp_path / "data").as_posix()}"
[http]
listen = "{self.http[7:]}"
[send]
workers = 1
[socket]
enabled = false
[meeting]
enabled = false
[channels.smpp]
driver = "smpp"
rate = 100000
window = 50
service_number = "106570001"
[channels.smpp.options]
host = "127.0.0.1"
port = {smsc_port}
system_id = "masd"
password = "secret"
""",
            encoding="utf-8",
        )
        made = subprocess.run(
            [*argv, "apps", "create", "oa", "--json", "--config", str(config)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        self.key = json.loads(made.stdout)["key"]
        run = [*argv, "run", "--config", str(config)]
        self.proc = subprocess.Popen(run, env=self.env, stdout=self.logs[1], stderr=subprocess.STDOUT)
        self.log_path = tmp_path / "masd.log"
        until("the daemon to be ready", self._ready)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.http + "/readyz", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def smsc_stats(self) -> dict[str, Any]:
        with socket.create_connection(("127.0.0.1", self.smsc_control), timeout=5) as s:
            s.sendall(b'{"op": "stats"}\n')
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return dict(json.loads(buf)["stats"])

    def workers(self) -> list[int]:
        return child_pids(self.proc.pid, WORKER)

    def post_batch(self, n: int) -> None:
        body = {"messages": [{"to": [f"1380000{i:04d}"], "text": f"通知 {i}"} for i in range(n)]}
        req = urllib.request.Request(self.http + "/v1/messages/batch", data=json.dumps(body).encode())
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Bearer {self.key}")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 201

    def states(self) -> dict[str, int]:
        with sqlite3.connect(self.db, timeout=30) as db:
            return dict(db.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall())

    def stop(self) -> None:
        for p in (self.proc, self.smsc):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)
        for f in self.logs:
            f.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    try:
        yield n
    finally:
        n.stop()


def test_the_daemon_and_its_send_worker_both_bind_and_every_receipt_is_applied(node: Node) -> None:
    assert len(node.workers()) == 1
    until("two binds at the SMSC", lambda: node.smsc_stats()["binds"] == 2)
    for _ in range(5):
        node.post_batch(200)
    until("every delivery to be delivered", lambda: node.states() == {"delivered": 1000}, timeout=120)
    with sqlite3.connect(node.db) as db:
        held = db.execute("SELECT count(*) FROM receipts WHERE segment_id IS NULL").fetchone()[0]
        applied = db.execute("SELECT count(*) FROM receipts WHERE segment_id IS NOT NULL").fetchone()[0]
    assert (held, applied) == (0, 1000)
    # The worker stored receipts on its own bind (its log lines carry send_worker=0).
    lines = [json.loads(x) for x in node.log_path.read_text().splitlines() if x.startswith("{")]
    assert any(x.get("send_worker") == 0 and x.get("event") == "delivery final" for x in lines)
    assert any(x.get("send_worker") is None and x.get("event") == "delivery final" for x in lines)

    def counted() -> bool:
        metrics = urllib.request.urlopen(node.http + "/metrics", timeout=10).read().decode()
        return (
            'masd_segments_submitted_total{channel="smpp",result="ok"} 1000.0' in metrics
            and 'masd_receipts_total{status="delivered"} 1000.0' in metrics
        )

    until("the worker's counters in the daemon's /metrics", counted, timeout=15)


def test_the_send_worker_drains_and_ends_when_the_daemon_is_killed(node: Node) -> None:
    (worker,) = until("the send worker", node.workers)
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(timeout=10)
    until("the worker to end", lambda: not alive(worker), timeout=30)
