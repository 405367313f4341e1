"""Crash test: accept N deliveries, kill -9 the daemon while it sends them, start it again, and check
that every accepted delivery reaches a final state, none is lost, and the duplicates the carrier saw
are counted by masd and no more than the channel's in-flight window.

The daemon runs as a real process (``masd run``) on SQLite with the sim channel, whose journal plays
the part of the carrier: it records every segment it accepted and keeps sending receipts that were not
acknowledged, as an SMSC re-sends an unacknowledged deliver_sm.

    scripts/chaos                                     # the full run, 20,000 deliveries
    python -m masd_bench.chaos --deliveries 1500      # a small one (tests/e2e/test_crash.py calls run())

With ``--nodes 2`` it is the two-node test of masd_bench.chaos_nodes instead: two ``masd run`` nodes on
one PostgreSQL database, the one holding the jobs killed mid-flight, the other finishing the work
(``scripts/chaos --nodes 2`` starts PostgreSQL if it is down).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio

from masd.config import load_config
from masd.core.gateway import Gateway, SubmitRequest
from masd.logging import configure_logging
from masd.store.db import database_from_config
from masd.store.tables import deliveries
from masd_adapters.sim import read_journal
from masd_bench import chaos_nodes

CONFIG = """\
[node]
name = "chaos"
data_dir = "{data_dir}"

[http]
enabled = false
[socket]
enabled = false

[log]
level = "warning"
format = "json"

[queue]
poll_interval = 0.05
max_pending = 10000000

[channels.sim]
rate = {rate}
window = {window}

[channels.sim.options]
receipt_delay = [0.05, 0.5]
seed = 7
"""


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "masd.cli", "run", "--config", str(config)],
        stdout=out,
        stderr=out,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def counts(db: Any) -> dict[str, int]:
    return dict(
        db.read_sync(
            lambda c: c.execute(
                sa.select(deliveries.c.state, sa.func.count()).group_by(deliveries.c.state)
            ).all()
        )
    )


def run(n: int, *, window: int, rate: float, kill_at: float, timeout: float, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "data"
    config = workdir / "chaos.toml"
    config.write_text(CONFIG.format(data_dir=data_dir.as_posix(), rate=rate, window=window))
    log = workdir / "daemon.log"
    configure_logging("warning", "json")
    cfg = load_config(config, env={})
    db = database_from_config(cfg)
    db.upgrade()
    gateway = Gateway(cfg, db)

    proc = start_daemon(config, log)
    t0 = time.monotonic()

    async def accept_all() -> None:
        batch = 1000
        for start in range(0, n, batch):
            reqs = [
                SubmitRequest(f"chaos #{i}", [f"138{i:08d}"], client_ref=f"chaos-{i}")
                for i in range(start, min(n, start + batch))
            ]
            await gateway.accept(reqs, interface="chaos")

    trio.run(accept_all)
    accepted_s = time.monotonic() - t0
    # Kill it mid-flight: once a share of the deliveries has left the queue, while the rest is moving.
    deadline = time.monotonic() + timeout
    while True:
        c = counts(db)
        moved = n - c.get("queued", 0)
        if moved >= kill_at * n:
            break
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited by itself (code {proc.returncode}); see {log}")
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the daemon to start sending")
        time.sleep(0.02)
    at_kill = counts(db)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at_s = time.monotonic() - t0

    proc = start_daemon(config, log)
    t1 = time.monotonic()
    final = {"delivered", "undelivered", "expired", "rejected", "failed", "cancelled"}
    while True:
        c = counts(db)
        if sum(v for k, v in c.items() if k in final) == n:
            break
        if proc.poll() is not None:
            raise SystemExit(f"the restarted daemon exited (code {proc.returncode}); see {log}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {c}")
        time.sleep(0.1)
    drained_s = time.monotonic() - t1
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = -9

    journal = read_journal(data_dir / "sim-sim.journal")
    per_text: collections.Counter[str] = collections.Counter()
    for e in journal.submitted:
        per_text[e.destination] += 1
    recovered = db.read_sync(
        lambda c: c.execute(sa.select(sa.func.coalesce(sa.func.sum(deliveries.c.recovered), 0))).scalar_one()
    )
    total_rows = db.read_sync(
        lambda c: c.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one()
    )
    db.dispose()
    duplicates = sum(k - 1 for k in per_text.values() if k > 1)
    return {
        "deliveries_accepted": n,
        "deliveries_stored": int(total_rows),
        "final_states": counts_final(c),
        "states_at_kill": at_kill,
        "carrier_received_distinct": len(per_text),
        "carrier_duplicates": duplicates,
        "masd_counted_possible_duplicates": int(recovered),
        "window": window,
        "seconds_to_accept": round(accepted_s, 2),
        "seconds_to_kill": round(killed_at_s, 2),
        "seconds_to_finish_after_restart": round(drained_s, 2),
        "clean_shutdown_exit_code": code,
        "log": str(log),
    }


def counts_final(c: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in sorted(c.items())}


def check(r: dict[str, Any]) -> list[str]:
    problems = []
    if r["deliveries_stored"] != r["deliveries_accepted"]:
        problems.append(f"stored {r['deliveries_stored']} of {r['deliveries_accepted']} accepted deliveries")
    if r["final_states"].get("delivered", 0) != r["deliveries_accepted"]:
        problems.append(f"not every delivery was delivered: {r['final_states']}")
    if r["carrier_received_distinct"] != r["deliveries_accepted"]:
        problems.append(f"the carrier saw {r['carrier_received_distinct']} distinct deliveries")
    if r["carrier_duplicates"] > r["masd_counted_possible_duplicates"]:
        problems.append("the carrier saw more duplicates than masd counted")
    if r["masd_counted_possible_duplicates"] > r["window"]:
        problems.append("more possible duplicates than the in-flight window")
    if r["clean_shutdown_exit_code"] != 0:
        problems.append(f"the restarted daemon did not stop cleanly (exit {r['clean_shutdown_exit_code']})")
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deliveries", type=int, default=20_000)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument(
        "--kill-at", type=float, default=0.3, help="share of deliveries out of the queue at the kill"
    )
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument(
        "--nodes",
        type=int,
        choices=(1, 2),
        default=1,
        help="2: two nodes on PostgreSQL, one killed once --kill-at of the HTTP load is accepted "
        "(defaults there: --deliveries 5000 --rate 300 --window 50)",
    )
    chaos_nodes.add_arguments(ap)
    args = ap.parse_args()
    if args.nodes == 2:
        if "--deliveries" not in sys.argv:
            args.deliveries = 5000
        if "--rate" not in sys.argv:
            args.rate = 300
        if "--window" not in sys.argv:
            args.window = 50
        sys.exit(chaos_nodes.main_nodes(args))
    with tempfile.TemporaryDirectory(prefix="masd-chaos-") as tmp:
        r = run(
            args.deliveries,
            window=args.window,
            rate=args.rate,
            kill_at=args.kill_at,
            timeout=args.timeout,
            workdir=Path(tmp),
        )
        problems = check(r)
        r["problems"] = problems
        if args.keep:
            keep = Path(tempfile.mkdtemp(prefix="masd-chaos-kept-"))
            os.system(f"cp -r {tmp}/. {keep}/")
            r["kept"] = str(keep)
    if args.json:
        print(json.dumps(r, ensure_ascii=False))
    else:
        print("masd crash test (kill -9 mid-flight, restart)")
        for k, v in r.items():
            print(f"  {k:36} {v}")
        print("RESULT:", "PASS" if not problems else "FAIL — " + "; ".join(problems))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
