"""The daemon's log as an operator's log shipper sees it: with ``[log] format = "json"`` every line on
stderr is one JSON document with the same keys, including the lines of libraries that log through the
standard ``logging`` module (here httpx, which logs each webhook request it makes)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import until

KEYS = {"timestamp", "level", "logger", "event"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def webhook_url() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def _masd(env: dict[str, str], *args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "masd.cli", *args, "--json"], env=env, capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def test_daemon_log_is_json_lines_including_httpx_lines(tmp_path: Path, webhook_url: str) -> None:
    listen = f"127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        "MASD_CONFIG": "",
        "MASD_NODE__DATA_DIR": str(tmp_path / "data"),
        "MASD_HTTP__LISTEN": listen,
        "MASD_SOCKET__ENABLED": "false",
        "MASD_LOG__FORMAT": "json",
        "MASD_CHANNELS__SIM__OPTIONS": "{receipt_delay = 0.01}",
        "MASD_WEBHOOKS__DISCOVER_SECONDS": "0.2",
    }
    key = _masd(env, "apps", "create", "hooked", "--webhook", webhook_url)["key"]
    log_path = tmp_path / "masd.log"
    with log_path.open("wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "masd.cli", "run"], env=env, stderr=log)
    try:
        request = urllib.request.Request(
            f"http://{listen}/v1/messages",
            data=json.dumps({"to": ["13800138000"], "text": "hi"}).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )

        def submitted() -> bool:
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    return bool(r.status == 201)
            except OSError:
                return False

        until("the daemon to accept a message", submitted)
        until("httpx to log the webhook request", lambda: b'"logger": "httpx"' in log_path.read_bytes())
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    lines = log_path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    assert all(r.keys() >= KEYS for r in records), [r for r in records if not r.keys() >= KEYS]
    httpx_lines = [r for r in records if r["logger"] == "httpx"]
    assert httpx_lines and "POST" in httpx_lines[0]["event"]
    assert any(r["logger"].startswith("masd.") for r in records)
