"""Benchmark masd end to end against Kannel: accept → store → SMPP → receipt stored.

Both gateways send to the same simulated SMSC (``masd sim smsc``, a subprocess; its own submits/s and CPU
time are reported so one can see it is not the bottleneck) under the same load generator (``wrk``, 16
connections on 2 threads, a fixed duration, a Lua script that makes every message unique):

    masd-single    masd, POST /v1/messages, one message per request, on masd's own HTTP/1.1 server
                   (the default, ``[http] server = "builtin"``)
    masd-single-hypercorn  the same on Hypercorn's trio worker (``[http] server = "hypercorn"``): the
                   option measured against the builtin server
    kannel-single  Kannel 1.4 (bearerbox + smsbox from Debian's packages), GET /cgi-bin/sendsms with
                   dlr-mask=1 and a dlr-url pointing at a local HTTP sink that counts the receipts
    masd-paced     the same two at a fixed offered load (--paced-rate, 300 messages/s), below what
    kannel-paced   either can take, so that their latencies compare: a saturated gateway's latency is
                   mostly its backlog
    masd-batch     masd, POST /v1/messages/batch, --batch-size messages per request
    masd-single-intake, masd-batch-intake  the same two rows posted to intake workers
                   (``[intake] workers``, --intake-workers processes, 1 by default): the daemon's own
                   process only sends, the workers accept and store
    masd-batch-send  masd-batch-intake with --send-workers processes ([send] workers, 1) sending beside
                   the daemon, the window shared out between them
    masd-cmpp-single, masd-cmpp-batch  masd-single and masd-batch through one CMPP 3.0 channel (one
                   connection, the same window) to `masd sim ismg` instead of SMPP to `masd sim smsc`:
                   accepted → every segment's status report stored; CPU per message of masd and the ISMG
                   in the notes (no Kannel row: Debian's Kannel has no CMPP driver)
    masd-socket    masd's socket interface (docs/socket.md): --socket-connections connections, each of
                   its own app, each keeping --socket-pipeline single-recipient submits in flight and
                   acknowledging the receipts pushed to it; the load generator is a subprocess of the
                   benchmark on non-blocking sockets, and its CPU use is reported so one can see it is not
                   the bottleneck (Kannel has no such interface: masd only, like masd-batch)
    masd-drain     --drain-queued messages (200,000) queued before `masd run` starts, then sent with
                   nothing else running: how fast the daemon alone claims, sends and stores receipts
    masd-rss-1m    resident memory of `masd run` with --queued messages queued (1,000,000) and the
                   channel unreachable, so nothing drains
    masd-ready-1m  seconds from starting `masd run` to /readyz answering 200 with as many queued

masd and Kannel rows alternate (masd, kannel, masd, kannel, …) for --rounds rounds. For each run:
messages accepted, receipts stored, end-to-end throughput (receipts stored per second from the first
accept to the last receipt), p50/p99 accept→receipt latency (masd: done_at - created_at of its deliveries
table; Kannel: DLR arrival at the sink minus the time wrk made the request, carried in the dlr-url), and
the CPU seconds of every process taken from /proc/<pid>/stat (the socket load generator's from its own
process time).

    scripts/bench                          # all rows but masd-cmpp-batch, 30 s, writes docs/benchmarks.md
    scripts/bench --quick --no-write       # a smoke run: 3 s each, 20,000 queued
    scripts/bench --rows masd-single,kannel-single --duration 60 --rounds 3
    masd bench --rows masd-batch --json    # the same, through the CLI
    scripts/bench --rows masd-socket --socket-connections 16

Missing tools (wrk, kannel) are installed from Debian's packages unless --no-install; a row whose tool
cannot be had is reported as not measured, with the reason. masd-socket needs neither.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from masd_bench.dlr_sink import run_sink
from masd_bench.kannel import kannel_throughput
from masd_bench.masd_rows import masd_drain, masd_queued, masd_socket, masd_throughput
from masd_bench.procs import ROOT, ensure_tool
from masd_bench.report import git_describe, machine, report, table
from masd_bench.rows import ALL_ROWS, DEFAULT_ROWS, QUEUED_ROWS, WRK_ROWS, NotMeasured, Row, Settings
from masd_bench.sockload import run_sockload


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--rows",
        default=",".join(DEFAULT_ROWS),
        help=f"comma-separated: {', '.join(ALL_ROWS)} (default: all but masd-cmpp-batch)",
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run: 3 s loads, one round, 20,000 queued")
    ap.add_argument("--duration", type=float, help="seconds of load per run (30; --quick 3)")
    ap.add_argument(
        "--rounds", type=int, help="how many times each throughput row runs, alternating (2; --quick 1)"
    )
    ap.add_argument("--connections", type=int, default=16, help="wrk -c (16)")
    ap.add_argument("--threads", type=int, default=2, help="wrk -t (2)")
    ap.add_argument("--window", type=int, default=100, help="SMPP window of both gateways (100)")
    ap.add_argument("--batch-size", type=int, default=200, help="messages per batch request (200)")
    ap.add_argument("--intake-workers", type=int, default=1, help="[intake] workers of the *-intake rows (1)")
    ap.add_argument("--send-workers", type=int, default=1, help="[send] workers of masd-batch-send (1)")
    ap.add_argument(
        "--paced-rate", type=float, default=300, help="messages/s offered in the *-paced rows (300)"
    )
    ap.add_argument(
        "--socket-connections", type=int, default=8, help="connections (one app each) of masd-socket (8)"
    )
    ap.add_argument(
        "--socket-pipeline",
        type=int,
        default=100,
        help="masd-socket: masd's [socket] pipeline, and the submits each connection keeps in flight (100)",
    )
    ap.add_argument("--queued", type=int, help="messages queued for the memory and start-up rows (1,000,000)")
    ap.add_argument("--drain-queued", type=int, help="messages queued before the masd-drain row (200,000)")
    ap.add_argument("--drain-timeout", type=float, help="most seconds to wait for the receipts after a load")
    ap.add_argument("--smsc", choices=("masd", "node"), default="masd", help="the SMSC simulator (masd)")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing wrk / kannel")
    ap.add_argument("--no-write", action="store_true", help="do not write docs/benchmarks.md")
    ap.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_sink"]:
        return run_sink(int(argv[1]), Path(argv[2]))
    if argv[:1] == ["_sockload"]:
        return run_sockload(Path(argv[1]))
    a = parse_args(argv)
    rows_wanted = [r.strip() for r in a.rows.split(",") if r.strip()]
    unknown = [r for r in rows_wanted if r not in ALL_ROWS]
    if unknown:
        print(f"unknown row {unknown[0]!r}; rows: {', '.join(ALL_ROWS)}", file=sys.stderr)
        return 2
    duration = a.duration or (3.0 if a.quick else 30.0)
    workdir = Path(tempfile.mkdtemp(prefix="masd-bench-"))
    s = Settings(
        rows=rows_wanted,
        duration=duration,
        rounds=a.rounds or (1 if a.quick else 2),
        connections=a.connections,
        threads=a.threads,
        window=a.window,
        batch_size=a.batch_size,
        intake_workers=a.intake_workers,
        send_workers=a.send_workers,
        paced_rate=a.paced_rate,
        socket_connections=a.socket_connections,
        socket_pipeline=a.socket_pipeline,
        queued=a.queued or (20_000 if a.quick else 1_000_000),
        drain_queued=a.drain_queued or (20_000 if a.quick else 200_000),
        drain_timeout=a.drain_timeout or max(120.0, duration * 20),
        smsc=a.smsc,
        install=not a.no_install,
        keep=a.keep,
        workdir=workdir,
        quick=a.quick,
    )
    os.environ.setdefault("PYTHONPATH", "")
    rows: list[Row] = []
    started = time.time()
    info = machine()
    info["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))

    def attempt(name: str, run: int, fn: Callable[[], list[Row]]) -> None:
        print(f"== {name} (run {run})", file=sys.stderr)
        try:
            got = fn()
        except NotMeasured as e:
            got = [Row(n, run, measured=False, note=str(e)) for n in name.split("+")]
        except Exception as e:
            note = f"failed: {type(e).__name__}: {str(e)[:300]}"
            got = [Row(n, run, measured=False, note=note) for n in name.split("+")]
        for r in got:
            print(f"   {r.row}: {json.dumps(dataclasses.asdict(r), default=str)[:600]}", file=sys.stderr)
        rows.extend(got)

    try:
        wrk: str | None = None
        if any(r in WRK_ROWS for r in s.rows):
            try:
                wrk = ensure_tool("wrk", "wrk", s.install)
            except NotMeasured as e:
                for name in (r for r in WRK_ROWS if r in s.rows):
                    rows.append(Row(name, measured=False, note=str(e)))
        if wrk is not None:
            w = wrk
            # masd and Kannel alternate, so a drift of the machine over the run shows in both.
            for run in range(1, s.rounds + 1):
                if "masd-single" in s.rows:
                    attempt("masd-single", run, lambda: [masd_throughput(s, w, "single", run)])
                if "kannel-single" in s.rows:
                    attempt("kannel-single", run, lambda: [kannel_throughput(s, w, run)])
                if "masd-single-hypercorn" in s.rows:
                    attempt(
                        "masd-single-hypercorn", run, lambda: [masd_throughput(s, w, "single-hypercorn", run)]
                    )
                if "masd-cmpp-single" in s.rows:
                    attempt("masd-cmpp-single", run, lambda: [masd_throughput(s, w, "cmpp-single", run)])
                if "masd-single-intake" in s.rows:
                    attempt("masd-single-intake", run, lambda: [masd_throughput(s, w, "single-intake", run)])
                if "masd-paced" in s.rows:
                    attempt("masd-paced", run, lambda: [masd_throughput(s, w, "paced", run)])
                if "kannel-paced" in s.rows:
                    attempt("kannel-paced", run, lambda: [kannel_throughput(s, w, run, paced=True)])
            if "masd-batch" in s.rows:
                attempt("masd-batch", 1, lambda: [masd_throughput(s, w, "batch", 1)])
            if "masd-cmpp-batch" in s.rows:
                attempt("masd-cmpp-batch", 1, lambda: [masd_throughput(s, w, "cmpp-batch", 1)])
            if "masd-batch-intake" in s.rows:
                attempt("masd-batch-intake", 1, lambda: [masd_throughput(s, w, "batch-intake", 1)])
            if "masd-batch-send" in s.rows:
                attempt("masd-batch-send", 1, lambda: [masd_throughput(s, w, "batch-send", 1)])
        if "masd-socket" in s.rows:
            attempt("masd-socket", 1, lambda: [masd_socket(s, 1)])
        if "masd-drain" in s.rows:
            attempt("masd-drain", 1, lambda: [masd_drain(s, 1)])
        if any(r in QUEUED_ROWS for r in s.rows):
            attempt(
                "+".join(r for r in QUEUED_ROWS if r in s.rows),
                1,
                lambda: masd_queued(s),
            )
    finally:
        if s.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    info["minutes"] = f"{(time.time() - started) / 60:.0f}"
    commit_end = git_describe()
    if commit_end != info["commit"]:
        info["commit"] += f" when the run began, {commit_end} when it ended (the code changed during the run)"
    print(table(rows), file=sys.stderr if a.json else sys.stdout)
    if a.json:
        print(
            json.dumps(
                {"machine": info, "rows": [dataclasses.asdict(r) for r in rows]}, indent=2, default=str
            )
        )
    if not a.no_write:
        a.output.parent.mkdir(parents=True, exist_ok=True)
        a.output.write_text(report(rows, s, info, argv))
        print(f"wrote {a.output}", file=sys.stderr)
    return 0 if all(r.measured for r in rows) else 1
