"""Intake workers (``[intake] workers``), through a real ``masd run`` subprocess: messages posted to the
workers' port are stored, claimed by the daemon and delivered; bad input is refused as on the main API;
a worker killed with SIGKILL is started again and nothing it accepted is lost; the workers end with the
daemon, even when the daemon is killed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import alive, child_pids, until

WORKER = "masd.workers.intake_process"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(method: str, url: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    return status, json.loads(raw) if raw.startswith((b"{", b"[")) else raw.decode()


def _workers(daemon_pid: int) -> list[int]:
    return child_pids(daemon_pid, WORKER)


class Node:
    def __init__(self, tmp_path: Path) -> None:
        self.http = f"http://127.0.0.1:{_port()}"
        self.intake = f"http://127.0.0.1:{_port()}"
        config = tmp_path / "masd.toml"
        config.write_text(
            f"""
[node]
data_dir = "{(tmp_path / "data").as_posix()}"
[http]
listen = "{self.http[7:]}"
[intake]
workers = 2
listen = "{self.intake[7:]}"
[socket]
enabled = false
[meeting]
enabled = false
[channels.sim]
driver = "sim"
options = {{ receipt_delay = [0.01, 0.05], seed = 3 }}
""",
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("MASD_")}
        argv = [sys.executable, "-m", "masd.cli"]
        made = subprocess.run(
            [*argv, "apps", "create", "oa", "--json", "--config", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        self.key = json.loads(made.stdout)["key"]
        self.log = (tmp_path / "masd.log").open("wb")
        self.proc = subprocess.Popen(
            [*argv, "run", "--config", str(config)], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        until("the daemon to be ready", lambda: self._ready(), timeout=60)

    def _ready(self) -> bool:
        try:
            return _request("GET", self.http + "/readyz")[0] == 200
        except OSError:
            return False

    def final(self, message_id: int) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status, body = _request("GET", f"{self.http}/v1/messages/{message_id}", key=self.key)
            assert status == 200, body
            return body if all(d["state"] == "delivered" for d in body["deliveries"]) else None

        return dict(until(f"message {message_id} to be delivered", done))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    try:
        yield n
    finally:
        n.stop()


def test_a_batch_posted_to_the_intake_port_is_delivered_and_counted_by_the_daemon(node: Node) -> None:
    assert len(_workers(node.proc.pid)) == 2
    batch = {"messages": [{"to": ["13800138000", "13900139000"], "text": f"会议通知 {i}"} for i in range(30)]}
    status, body = _request("POST", node.intake + "/v1/messages/batch", batch, node.key)
    assert status == 201, body
    ids = [m["id"] for m in body["messages"]]
    assert len(set(ids)) == 30
    for message_id in ids:
        msg = node.final(message_id)
        assert msg["text"].startswith("会议通知")
        assert {d["recipient"] for d in msg["deliveries"]} == {"13800138000", "13900139000"}
    status, one = _request(
        "POST", node.intake + "/v1/messages", {"to": ["13700137000"], "text": "hi"}, node.key
    )
    assert status == 201 and one["state"] == "queued"
    assert node.final(one["id"])["deliveries"][0]["recipient"] == "13700137000"
    metrics = urllib.request.urlopen(node.http + "/metrics", timeout=10).read().decode()
    assert 'masd_messages_accepted_total{interface="intake"} 31.0' in metrics
    assert 'masd_deliveries_accepted_total{interface="intake"} 61.0' in metrics


def test_bad_input_on_the_intake_port_names_the_field_and_stores_nothing(node: Node) -> None:
    bad = {"messages": [{"to": ["13800138000"], "text": "ok"}, {"to": ["1380013800x"], "text": "bad"}]}
    status, body = _request("POST", node.intake + "/v1/messages/batch", bad, node.key)
    assert status == 422
    assert body["error"]["field"] == "messages[1].to"
    assert body["error"]["value"] == "1380013800x"
    status, body = _request("POST", node.intake + "/v1/messages", {"to": ["13800138000"]}, node.key)
    assert status == 422 and body["error"]["field"] == "text"
    status, body = _request(
        "POST", node.intake + "/v1/messages", {"to": ["13800138000"], "text": "x"}, "nope"
    )
    assert status == 401
    status, body = _request("GET", f"{node.http}/v1/messages/1", key=node.key)
    assert status == 404  # nothing was stored


def test_the_intake_port_serves_only_submissions_and_points_at_the_full_api(node: Node) -> None:
    status, body = _request("GET", node.intake + "/v1/messages/1", key=node.key)
    assert status == 404
    assert node.http in body["error"]["reason"]
    assert _request("GET", node.intake + "/healthz")[0] == 200


def test_a_killed_worker_is_started_again_and_loses_nothing_it_accepted(node: Node) -> None:
    accepted = []
    for i in range(20):
        status, body = _request(
            "POST", node.intake + "/v1/messages", {"to": ["13800138000"], "text": f"{i}"}, node.key
        )
        assert status == 201, body
        accepted.append(body["id"])
    before = _workers(node.proc.pid)
    os.kill(before[0], signal.SIGKILL)
    after = until(
        "a new worker", lambda: (w := _workers(node.proc.pid)) and len(w) == 2 and w != before and w
    )
    assert before[0] not in after
    for i in range(20, 40):
        status, body = _request(
            "POST", node.intake + "/v1/messages", {"to": ["13800138000"], "text": f"{i}"}, node.key
        )
        assert status == 201, body
        accepted.append(body["id"])
    for message_id in accepted:
        node.final(message_id)


def test_workers_end_with_the_daemon_even_when_it_is_killed(tmp_path: Path) -> None:
    n = Node(tmp_path)
    try:
        workers = _workers(n.proc.pid)
        assert len(workers) == 2
        n.proc.send_signal(signal.SIGKILL)
        n.proc.wait(timeout=10)
        until("the workers to exit", lambda: not any(alive(pid) for pid in workers), timeout=15)
    finally:
        n.stop()
