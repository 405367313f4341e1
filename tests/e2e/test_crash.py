"""Crash safety, the small version of scripts/chaos (masd_bench.chaos): kill -9 the daemon mid-flight and
start it again."""

from __future__ import annotations

from pathlib import Path

from masd_bench import chaos


def test_kill_9_mid_flight_loses_nothing_and_counts_its_duplicates(tmp_path: Path) -> None:
    r = chaos.run(1500, window=50, rate=1000, kill_at=0.3, timeout=240, workdir=tmp_path)
    assert r["deliveries_stored"] == 1500
    assert r["final_states"] == {"delivered": 1500}
    assert r["carrier_received_distinct"] == 1500
    # Killed mid-flight: some claims were outstanding, and whatever the carrier saw twice was counted.
    assert r["states_at_kill"].get("queued", 0) > 0
    assert r["carrier_duplicates"] <= r["masd_counted_possible_duplicates"] <= r["window"]
    assert r["clean_shutdown_exit_code"] == 0
    assert chaos.check(r) == []
