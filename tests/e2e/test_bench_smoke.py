"""The benchmark (masd_bench, run as ``python -m masd_bench``) runs end to end: a short masd-single load
(wrk → HTTP → store → SMPP → masd sim smsc → receipt stored), the same load over CMPP (masd-cmpp-single:
a cmpp channel → masd sim ismg → every status report stored), a short masd-socket load (the socket
interface, receipts pushed back) and a small masd-drain run (a backlog queued before start) that produce
figures. The full benchmark is scripts/bench; see docs/benchmarks.md.

The tests install nothing. The masd-single and masd-cmpp-single ones need wrk (Debian package ``wrk``,
which scripts/test installs): where wrk is missing but apt-get is there, that is a missing install step
and the test fails; only a machine that has neither is skipped. The others need no tool of their own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

BENCH = [sys.executable, "-m", "masd_bench"]


def _need_wrk() -> None:
    if shutil.which("wrk") is None:
        if shutil.which("apt-get") is None:
            pytest.skip("wrk is not installed and apt-get is not available to install it")
        pytest.fail("wrk is not installed: scripts/test installs it (apt-get install wrk)")


def test_a_quick_masd_single_run_measures_throughput_and_latency() -> None:
    _need_wrk()
    argv = [
        *BENCH,
        "--quick",
        "--duration",
        "2",
        "--rows",
        "masd-single",
        "--no-write",
        "--no-install",
        "--json",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    (row,) = result["rows"]
    assert row["row"] == "masd-single" and row["measured"], row["note"]
    assert row["accepted"] > 0 and row["receipts"] == row["accepted"]
    assert row["e2e_rate"] > 0 and row["accept_rate"] > 0
    assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert row["smsc_submits"] >= row["accepted"]
    assert row["cpu"]["masd"] > 0
    assert result["machine"]["nproc"]


def test_a_quick_masd_cmpp_single_run_ends_when_every_status_report_is_stored() -> None:
    _need_wrk()
    argv = [
        *BENCH,
        "--quick",
        "--duration",
        "2",
        "--rows",
        "masd-cmpp-single",
        "--no-write",
        "--no-install",
        "--json",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(done.stdout)["rows"]
    assert row["row"] == "masd-cmpp-single" and row["measured"], row["note"]
    assert row["accepted"] > 0 and row["receipts"] == row["accepted"]
    assert row["extra"]["states"] == {"delivered": row["accepted"]} and row["extra"]["undrained"] == 0
    # One ASCII text a message, one CMPP_SUBMIT each: the ISMG counted them all.
    assert row["smsc_submits"] >= row["accepted"]
    assert row["e2e_rate"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    assert row["cpu"]["masd"] > 0 and row["cpu"]["ismg"] > 0
    per = row["extra"]["cpu_us_per_message"]
    assert per["masd"] > 0 and per["ismg"] > 0
    assert "µs" in row["note"] and "no Kannel row" in row["note"]


def test_a_quick_masd_socket_run_measures_throughput_and_the_pushed_receipts() -> None:
    argv = [
        *BENCH,
        "--quick",
        "--duration",
        "1",
        "--rows",
        "masd-socket",
        "--socket-connections",
        "2",
        "--no-write",
        "--no-install",
        "--json",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(done.stdout)["rows"]
    assert row["row"] == "masd-socket" and row["measured"], row["note"]
    assert row["accepted"] > 0 and row["receipts"] == row["accepted"] == row["extra"]["submit_acks"]
    assert row["extra"]["receipts_pushed"] == row["accepted"]
    assert row["e2e_rate"] > 0 and row["accept_rate"] > 0
    assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert row["cpu"]["masd"] > 0 and row["cpu"]["socket-load"] > 0
    assert row["extra"]["generator_load_cpu_share"] > 0


def test_a_quick_masd_drain_run_sends_the_whole_backlog_queued_before_start() -> None:
    argv = [
        *BENCH,
        "--rows",
        "masd-drain",
        "--drain-queued",
        "3000",
        "--no-write",
        "--no-install",
        "--json",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(done.stdout)["rows"]
    assert row["row"] == "masd-drain" and row["measured"], row["note"]
    assert row["accepted"] == 3000 and row["receipts"] == 3000
    assert row["extra"]["states"] == {"delivered": 3000} and row["extra"]["undrained"] == 0
    assert row["e2e_rate"] > 0 and row["smsc_submits"] >= 3000
    assert row["cpu"]["masd"] > 0 and "µs of CPU a delivery" in row["note"]
