"""scripts/storm.py in small: a short throttle storm against the npm smpp SMSC (every 2nd submit
throttled, the link dropped once) ends with every message delivered and no part accepted twice."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def test_a_short_throttle_storm_loses_nothing_and_sends_no_part_twice(node_smsc: list[str]) -> None:
    if shutil.which("node") is None:
        pytest.fail("Node.js is needed (scripts/test installs it)")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "storm.py"),
            "--minutes",
            "0.25",
            "--max-attempts",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    r = json.loads(done.stdout.strip().splitlines()[-1])
    assert r["problems"] == []
    assert r["final_states"] == {"delivered": r["accepted"]} and r["accepted"] > 0
    assert r["parts_accepted_twice"] == 0 and r["parts_accepted_by_smsc"] == r["parts_expected"]
    assert r["throttling_answers"] >= r["parts_expected"] // 2 - 1
    assert r["link_dropped_once"]
