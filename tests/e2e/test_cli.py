"""The ``masd`` command line, run as a real subprocess (``python -m masd.cli``) against a fresh data
directory per test: apps and keys, sending (lists, files, chunking, refusal of bad numbers before
anything is stored), status, queue actions, schema upgrade, configuration errors, and ``masd run``
delivering through the in-process simulated carrier and stopping cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

CONFIG = """\
[channels.sim]
driver = "sim"
options = { receipt_delay = [0.01, 0.05], seed = 7 }
"""

Masd = Callable[..., subprocess.CompletedProcess[str]]


def _env(tmp_path: Path) -> dict[str, str]:
    # Start from the caller's environment without any MASD_* setting that could leak into the test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASD_")}
    config = tmp_path / "masd.toml"
    config.write_text(CONFIG, encoding="utf-8")
    env.update(
        MASD_CONFIG=str(config),
        MASD_NODE__DATA_DIR=str(tmp_path / "data"),
        PYTHONIOENCODING="utf-8",
    )
    return env


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return _env(tmp_path)


@pytest.fixture
def masd(env: dict[str, str], tmp_path: Path) -> Masd:
    def run(*args: str, rc: int | None = 0, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "masd.cli", *args],
            env=env,
            cwd=tmp_path,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if rc is not None:
            said = f"{proc.stdout}\n{proc.stderr}"
            assert proc.returncode == rc, f"masd {' '.join(args)} -> {proc.returncode}\n{said}"
        return proc

    return run


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


def _set_state(tmp_path: Path, delivery_id: int, state: str) -> None:
    # Simulates what the dispatcher or a carrier would have done to the row.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'masd.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE deliveries SET state = :s WHERE id = :i"), {"s": state, "i": delivery_id}
            )
    finally:
        engine.dispose()


def test_apps_create_list_rotate_revoke(masd: Masd) -> None:
    created = masd("apps", "create", "oa")
    key = re.search(r"masd_\S+", created.stdout)
    assert key, created.stdout
    assert "store it now; masd keeps only its hash" in created.stdout

    listed = masd("apps", "list")
    assert "oa" in listed.stdout
    assert key.group(0) not in listed.stdout
    rows = _json(masd("apps", "list", "--json"))
    assert [r["name"] for r in rows] == ["oa"]
    assert "key" not in rows[0] and rows[0]["revoked_at"] is None

    again = masd("apps", "create", "oa", rc=1)
    assert "already exists" in again.stderr and "Traceback" not in again.stderr

    made = _json(masd("apps", "create", "crm", "--json"))
    assert {"id", "name", "key"} <= set(made) and made["name"] == "crm"
    assert (made["channels"], made["rate"], made["quota_per_day"]) == (None, None, None)
    rotated = _json(masd("apps", "rotate", "crm", "--json"))
    assert rotated["key"].startswith("masd_") and rotated["key"] != made["key"]

    masd("apps", "revoke", "crm")
    assert "no active app" in masd("apps", "revoke", "crm", rc=1).stderr
    assert "no active app" in masd("apps", "rotate", "crm", rc=1).stderr
    revoked = {r["name"]: r["revoked_at"] for r in _json(masd("apps", "list", "--json"))}
    assert revoked["oa"] is None and revoked["crm"] is not None


def test_an_apps_own_resend_count_is_set_shown_and_cleared(masd: Masd) -> None:
    made = _json(masd("apps", "create", "oa", "--resend", "2", "--json"))
    assert made["resend"] == 2
    assert "resend     1" in masd("apps", "set", "oa", "--resend", "1").stdout
    assert _json(masd("apps", "set", "oa", "--resend", "none", "--json"))["resend"] is None
    assert "channel's" in masd("apps", "list").stdout
    bad = masd("apps", "set", "oa", "--resend", "11", rc=2)
    assert "--resend" in bad.stderr and "0 to 10" in bad.stderr


def test_an_apps_signature_is_set_shown_and_cleared(masd: Masd) -> None:
    made = _json(masd("apps", "create", "oa", "--signature", "【市政府办公室】", "--json"))
    assert made["signature"] == "【市政府办公室】"
    assert "signature  【会务组】" in masd("apps", "set", "oa", "--signature", " 【会务组】 ").stdout
    assert "【会务组】" in masd("apps", "list").stdout
    assert _json(masd("apps", "set", "oa", "--signature", "none", "--json"))["signature"] is None
    bad = masd("apps", "set", "oa", "--signature", "市政府", rc=2)
    assert "--signature" in bad.stderr and "full-width brackets" in bad.stderr


def test_send_two_numbers_then_status(masd: Masd) -> None:
    sent = _json(masd("send", "hello 你好", "--to", "13800138000,+86 139 0013 9000", "--json"))
    assert len(sent) == 1
    assert sent[0]["recipient_count"] == 2 and sent[0]["encoding"] == "ucs2" and sent[0]["segments"] == 1
    mid = sent[0]["message_id"]

    status = _json(masd("status", str(mid), "--json"))
    assert status["id"] == mid and status["text"] == "hello 你好" and status["interface"] == "cli"
    assert sorted(d["recipient"] for d in status["deliveries"]) == ["13800138000", "13900139000"]
    assert [d["state"] for d in status["deliveries"]] == ["queued", "queued"]
    # Times are ISO 8601 with an offset in JSON.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", status["created_at"])

    human = masd("status", str(mid))
    assert "13800138000" in human.stdout and "queued" in human.stdout
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", human.stdout)

    missing = masd("status", "999", rc=1)
    assert "no message with id 999" in missing.stderr


def test_send_scheduled_and_text_from_stdin(masd: Masd) -> None:
    args = ("send", "-", "--to", "13800138000", "--at", "2031-12-01 09:00", "--json")
    sent = _json(masd(*args, stdin="定时\n"))
    status = _json(masd("status", str(sent[0]["message_id"]), "--json"))
    assert status["text"] == "定时"
    assert status["send_at"].startswith("2031-12-01T09:00:00")
    past = masd("send", "x", "--to", "13800138000", "--at", "2001-01-01 09:00", rc=2)
    assert "in the past" in past.stderr


def test_bad_number_fails_whole_command_and_stores_nothing(masd: Masd, tmp_path: Path) -> None:
    bad = masd("send", "hi", "--to", "13800138000", "--to", "12345", rc=1)
    assert "recipient #2 '12345'" in bad.stderr
    assert "nothing was sent" in bad.stderr

    numbers = tmp_path / "numbers.txt"
    numbers.write_text("# staff\n13800138000\n\n1390013900x\n", encoding="utf-8")
    bad_file = masd("send", "hi", "--file", str(numbers), rc=1)
    assert "recipient #4 '1390013900x' (line 4 of numbers.txt)" in bad_file.stderr

    assert _json(masd("queue", "list", "--json"))["deliveries"] == []
    assert sum(_json(masd("queue", "counts", "--json")).values()) == 0


def test_send_file_of_2500_numbers_makes_three_messages(masd: Masd, tmp_path: Path) -> None:
    numbers = tmp_path / "numbers.txt"
    lines = ["# exported from OA", ""] + [f"139{i:08d}" for i in range(2500)] + ["13900000007"]  # one repeat
    numbers.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sent = _json(masd("send", "notice", "--file", str(numbers), "--json"))
    assert [m["recipient_count"] for m in sent] == [1000, 1000, 500]
    assert len({m["message_id"] for m in sent}) == 3
    assert _json(masd("queue", "counts", "--json"))["queued"] == 2500

    csv_file = tmp_path / "people.csv"
    csv_file.write_text("mobile,name\n13812345678,张三\n+8613812345679,李四\n", encoding="gbk")
    from_csv = _json(masd("send", "csv", "--file", str(csv_file), "--json"))
    assert from_csv[0]["recipients"] == ["13812345678", "13812345679"]


def test_invalid_config_exits_2_naming_key_and_value(masd: Masd, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[queue]\nmax_attempts = "many"\n', encoding="utf-8")
    proc = masd("queue", "counts", "-c", str(bad), rc=2)
    assert "queue.max_attempts" in proc.stderr and "many" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_queue_cancel_and_retry(masd: Masd, tmp_path: Path) -> None:
    sent = _json(masd("send", "hi", "--to", "13800138000,13900139000,13700137000", "--json"))
    mid = sent[0]["message_id"]
    d1, d2, d3 = (d["id"] for d in _json(masd("status", str(mid), "--json"))["deliveries"])

    cancelled = masd("queue", "cancel", str(d1))
    assert "cancelled 1 delivery" in cancelled.stdout

    _set_state(tmp_path, d3, "submitted")
    partly = _json(masd("queue", "cancel", "--message", str(mid), "--json"))
    assert partly == {"cancelled": 1, "not_cancelled": {"cancelled": 1, "submitted": 1}, "unknown_ids": []}
    human = masd("queue", "cancel", str(d3))
    assert "cancelled 0 deliveries" in human.stdout and "already handed to the carrier" in human.stderr

    _set_state(tmp_path, d2, "failed")
    assert "IDS" in masd("queue", "retry", rc=2).stderr
    retried = masd("queue", "retry", "--state", "failed")
    assert "requeued 1 delivery" in retried.stdout
    states = {d["id"]: d["state"] for d in _json(masd("status", str(mid), "--json"))["deliveries"]}
    assert states == {d1: "cancelled", d2: "queued", d3: "submitted"}

    listed = _json(masd("queue", "list", "--state", "queued,cancelled", "--summary", "--json"))
    assert [d["id"] for d in listed["deliveries"]] == [d1, d2]
    assert listed["counts"]["queued"] == 1 and listed["counts"]["submitted"] == 1


def test_db_upgrade_and_status(masd: Masd) -> None:
    before = _json(masd("db", "status", "--json"))
    assert before["current"] is None and before["up_to_date"] is False
    upgraded = masd("db", "upgrade")
    assert re.fullmatch(rf"database sqlite:///\S+masd\.db at revision {before['head']}\n", upgraded.stdout)
    after = _json(masd("db", "status", "--json"))
    assert after["current"] == after["head"] and after["up_to_date"] is True
    # Again: nothing to do, same answer.
    assert masd("db", "upgrade").stdout == upgraded.stdout


def test_run_delivers_and_stops_on_sigterm(masd: Masd, env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    with log.open("w") as log_file:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "masd.cli", "run"],
            env={**env, "MASD_HTTP__ENABLED": "false", "MASD_SOCKET__ENABLED": "false"},
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        sent = _json(masd("send", "hello from the daemon test", "--to", "13800138000,13900139000", "--json"))
        mid = str(sent[0]["message_id"])
        deadline = time.monotonic() + 20
        states: list[str] = []
        while time.monotonic() < deadline:
            assert daemon.poll() is None, f"masd run exited early:\n{log.read_text()}"
            states = [d["state"] for d in _json(masd("status", mid, "--json"))["deliveries"]]
            if states == ["delivered", "delivered"]:
                break
            time.sleep(0.3)
        assert states == ["delivered", "delivered"], log.read_text()
        segment = _json(masd("status", mid, "--json"))["deliveries"][0]["segment_list"][0]
        assert segment["carrier_id"] and segment["state"] == "delivered"

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0, log.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
