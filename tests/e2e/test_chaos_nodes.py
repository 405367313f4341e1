"""The two-node crash test, small: masd_bench.chaos_nodes with two `masd run` processes on PostgreSQL,
the one holding every job killed with SIGKILL mid-flight (`scripts/chaos --nodes 2` is the full run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from masd_bench import chaos_nodes

pytestmark = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)


def test_killing_the_node_that_holds_the_jobs_loses_nothing_and_moves_every_job(
    store_url: str, tmp_path: Path
) -> None:
    # store_url: PostgreSQL is started if it is down; chaos_nodes makes a database of its own.
    r = chaos_nodes.run_nodes(
        deliveries_n=400,
        oa_rows=60,
        attendees=5,
        rate=100,
        window=20,
        kill_at=0.4,
        timeout=90,
        workdir=tmp_path,
    )
    assert chaos_nodes.check(r, oa_rows=60) == []
    assert r["lost"] == 0 and r["accepted"] == 400 + 60 + 2 * 5
    in_flight = {k: v for k, v in r["states_at_kill"].items() if k in ("queued", "submitting", "submitted")}
    assert sum(in_flight.values()) > 0  # killed mid-flight
    assert r["smsc_duplicates"] <= r["masd_counted_possible_duplicates"]
    assert r["api_rpt_rows"] == 60 and r["api_rpt_duplicates"] == 0
    assert r["webhooks_twice_otherwise"] == 0
    assert all(s is not None and s <= 15 for s in r["job_moved_seconds"].values())
