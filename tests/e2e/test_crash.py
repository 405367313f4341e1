"""Crash safety, the small version of scripts/chaos: kill -9 the daemon mid-flight and start it again."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_chaos() -> ModuleType:
    spec = importlib.util.spec_from_file_location("masd_chaos", ROOT / "scripts" / "chaos.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["masd_chaos"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_kill_9_mid_flight_loses_nothing_and_counts_its_duplicates(tmp_path: Path) -> None:
    chaos = load_chaos()
    r = chaos.run(1500, window=50, rate=1000, kill_at=0.3, timeout=240, workdir=tmp_path)
    assert r["deliveries_stored"] == 1500
    assert r["final_states"] == {"delivered": 1500}
    assert r["carrier_received_distinct"] == 1500
    # Killed mid-flight: some claims were outstanding, and whatever the carrier saw twice was counted.
    assert r["states_at_kill"].get("queued", 0) > 0
    assert r["carrier_duplicates"] <= r["masd_counted_possible_duplicates"] <= r["window"]
    assert r["clean_shutdown_exit_code"] == 0
    assert chaos.check(r) == []
