"""The report: the machine and commit measured, the results table, the method, and the page written to
docs/benchmarks.md."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shlex
import shutil
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path

from masd_bench.kannel import kannel_version
from masd_bench.procs import ROOT
from masd_bench.rows import QUEUED_ROWS, Row, Settings
from masd_bench.smsc import ISMG_DELIVER_WINDOW


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = proc_meminfo_total()
    import masd

    info = {
        "commit": git_describe(),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": f"{mem / 1024 / 1024:.1f} GiB" if mem else "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "masd": getattr(masd, "__version__", "unknown"),
        "sqlite": sqlite3.sqlite_version,
    }
    bearerbox = shutil.which("bearerbox") or (
        "/usr/sbin/bearerbox" if Path("/usr/sbin/bearerbox").exists() else None
    )
    info["kannel"] = kannel_version(bearerbox) if bearerbox else "not installed"
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True)
        m = re.search(r"wrk (\S+)", out.stdout + out.stderr)
        info["wrk"] = m.group(1) if m else "unknown"
    node = shutil.which("node")
    if node:
        info["node"] = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    return info


def git_describe() -> str:
    """The commit measured, and whether its code differed from it (read-only git commands). Changes under
    docs/ are not code: editing these pages while a run goes on does not change what it measures."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = sorted({line[3:] for line in dirty if line.strip() and not line[3:].startswith("docs/")})
    if not head:
        return "unknown"
    return head + (f" with uncommitted changes to {', '.join(changed)}" if changed else "")


def proc_meminfo_total() -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return None


def _f(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def latency(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms:,.0f} ms" if ms < 10_000 else f"{ms / 1000:,.1f} s"


def _cpu(row: Row) -> str:
    if not row.cpu or not row.cpu_wall_s:
        return "—"
    return ", ".join(f"{k} {v:.1f} s ({v / row.cpu_wall_s * 100:.0f}%)" for k, v in row.cpu.items())


def table(rows: Sequence[Row]) -> str:
    out: list[str] = []
    if any(r.row not in QUEUED_ROWS for r in rows):
        out += [
            "| row | run | accepted | receipts stored | accepted/s | end-to-end receipts/s | "
            "p50 accept→receipt | p99 accept→receipt | request p50 / p99 | SMSC submit_sm/s | "
            "CPU seconds over the window (% of one core) | notes |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
    for r in rows:
        if r.row in QUEUED_ROWS:
            continue
        if not r.measured:
            out.append(f"| {r.row} | {r.run} | not measured | | | | | | | | | {r.note} |")
            continue
        http = f"{_f(r.http_p50_ms, 1)} / {_f(r.http_p99_ms, 1)} ms" if r.http_p50_ms is not None else "—"
        notes = r.note
        if r.errors:
            what = "error frames" if r.row == "masd-socket" else "HTTP errors"
            notes = (notes + "; " if notes else "") + f"{r.errors} {what}"
        out.append(
            f"| {r.row} | {r.run} | {_f(r.accepted)} | {_f(r.receipts)} | {_f(r.accept_rate)} | "
            f"{_f(r.e2e_rate)} | {latency(r.p50_ms)} | {latency(r.p99_ms)} | {http} | {_f(r.smsc_rate)} | "
            f"{_cpu(r)} | {notes} |"
        )
    queued = [r for r in rows if r.row in QUEUED_ROWS]
    if queued:
        if out:
            out.append("")
        out += ["| row | figure | notes |", "|---|---:|---|"]
        for r in queued:
            fig = f"{_f(r.value, 1 if r.unit == 'MiB' else 2)} {r.unit}" if r.measured else "not measured"
            out.append(f"| {r.row} | {fig} | {r.note} |")
    return "\n".join(out)


SMSC_TEXT = {
    "masd": "`masd sim smsc` (receipts at once: `--receipt-delay 0`)",
    "node": "tests/interop/smsc.js (the npm `smpp` package's server; receipts at once)",
}

METHOD = """\
- Load: `wrk -c {c} -t {t} -d {d}s` with a Lua script that makes every message unique (`bench <n>` to
  `138xxxxxxxx`), the same for both gateways.
- SMSC: {smsc}, a new process for each run. Both gateways bind once (transceiver) with a window of
  {window} (masd `window = {window}`, Kannel `max-pending-submits = {window}`).
- masd: SQLite (WAL, synchronous=FULL) in a fresh data directory for each run; `POST /v1/messages`, then
  `POST /v1/messages/batch` with {batch} messages a request. Latency: `done_at - created_at` of each
  delivered row of the `deliveries` table (accepted and stored → receipt stored).
- Kannel: bearerbox + smsbox from Debian's packages, `store-type = file`, internal DLR storage,
  `GET /cgi-bin/sendsms?…&dlr-mask=1&dlr-url=…`. The dlr-url carries the time wrk made the request; a
  local HTTP sink records when each DLR arrives. Latency: arrival − request time. A receipt counts as
  stored when Kannel has called the dlr-url with it (Kannel keeps no receipt of its own).
- accepted: masd, rows in `deliveries`; Kannel, 2xx answers (or the MT count of its status page when
  that is larger: requests in flight when wrk stops). End-to-end receipts/s: receipts stored ÷ (last
  receipt − first accept). SMSC submit_sm/s: the simulator's own counter over the same window; its CPU
  is in the CPU column, so one can see whether it was the limit.
- masd-single-intake, masd-batch-intake: the same loads posted to `[intake] workers = {iw}` (ADR 0007);
  the daemon's process only claims and sends. The workers' CPU is listed as intake0, intake1, ….
- masd-batch-send: the batch load posted to `[intake] workers = {iw}`, with `[send] workers = {sw}`
  (ADR 0008) sending beside the daemon; the window is shared out ({sww} per process, each binding once),
  so masd has no more submits outstanding than Kannel. The send workers' CPU is listed as send0, ….
- masd-cmpp-single, masd-cmpp-batch: the masd-single and masd-batch loads through one `cmpp` channel
  (CMPP 3.0, one connection, `window = {window}`) to `masd sim ismg --report-delay 0 --outcomes
  delivered=1 --deliver-window {dw}` (reports unanswered at once per session; masd answers one only once
  stored, so the default 16 would be the limit); done when every segment's status report is stored. SMSC
  submit_sm/s is the ISMG's CMPP_SUBMITs; the notes give CPU µs per message of masd and of the ISMG.
  No Kannel row: Debian's Kannel 1.4.5 has no CMPP driver (its SMSC types: smpp, emi, cimd2, at, http, …).
- masd-socket: the socket interface (docs/socket.md), {sc} connections, each logged in as its own app
  (an app's receipts are pushed to one connection), each keeping {sp} single-recipient submits
  unanswered (masd `[socket] pipeline = {sp}`) for {d} s and acknowledging the receipts pushed to it.
  The load generator is a subprocess of the benchmark (masd_bench) on non-blocking sockets (one selector, one
  process); its CPU is its own process time, and the notes give its share of one core during the load
  (saturated at 90% or more). Throughput and latency come from masd's `deliveries` table as in the other
  masd rows; request p50 / p99 is submit → `submit_ack`, and the notes give submit → `receipt` frame.
- request p50 / p99: wrk's HTTP request latency; masd-socket, submit → `submit_ack`.
- CPU: user + system seconds of each process from /proc/<pid>/stat, from the start of the load to the
  last receipt, and that as a share of one core over the same time. Everything, wrk and the socket load
  generator included, shares the machine's {nproc} CPUs.
- When a gateway accepts faster than it sends, a backlog builds during the load and its latency
  mostly measures that backlog. The *-paced rows offer both the same load, {paced} messages/s (wrk's
  `delay()` holds each connection back), so their latencies compare. The batch rows' notes give the
  receipts stored per second while the load ran and after it (the backlog draining alone).
- masd-drain: {dq} messages queued through `Gateway.accept` before masd starts, then `masd run` sends
  them with nothing else running: receipts stored ÷ (last receipt − first submit). Its CPU is counted
  from the start of `masd run`, start-up included.\
"""


def report(rows: Sequence[Row], s: Settings, info: dict[str, str], argv: Sequence[str]) -> str:
    cmds: dict[str, list[str]] = {}
    for r in rows:
        cmds.setdefault(r.row, r.commands)
    lines = [
        "# Benchmarks",
        "",
        "Written by `scripts/bench` (scripts/benchmark/masd_bench); every figure below was measured by that "
        "run on the machine described, nothing is estimated. Run it again to measure yours.",
        "",
        "## Machine",
        "",
        f"- {info['nproc']} CPUs: {info['cpu']}; {info['ram']} RAM; Linux {info['kernel']}",
        f"- masd {info['masd']} at commit {info['commit']}",
        f"- Python {info['python']}, SQLite {info['sqlite']}, Kannel {info['kannel']}, "
        f"wrk {info.get('wrk', 'not installed')}" + (f", Node {info['node']}" if "node" in info else ""),
        f"- run: `scripts/bench {shlex.join(argv)}`".replace("scripts/bench `", "scripts/bench`").replace(
            str(ROOT) + "/", ""
        ),
        f"- date: {info.get('date', '?')}, {info.get('minutes', '?')} minutes",
        "",
        "## Method",
        "",
        METHOD.format(
            c=s.connections,
            t=s.threads,
            d=f"{s.duration:g}",
            window=s.window,
            batch=s.batch_size,
            nproc=info["nproc"],
            smsc=SMSC_TEXT[s.smsc],
            paced=f"{s.paced_rate:g}",
            sc=s.socket_connections,
            iw=s.intake_workers,
            sw=s.send_workers,
            sww=max(1, s.window // (1 + s.send_workers)),
            sp=s.socket_pipeline,
            dq=f"{s.drain_queued:,}",
            dw=ISMG_DELIVER_WINDOW,
        ),
        "",
        "## Results",
        "",
        table(rows),
        "",
        "## Commands",
        "",
        "`$WORK` is the run's temporary directory; `$KEY` the API key `masd apps create` printed. The "
        "configuration files (masd.toml, kannel.conf), wrk's Lua scripts and the socket load's spec are "
        "written by the benchmark, masd_bench (`MASD_CONFIG`, `KANNEL_CONF`, `LUA_*`, `masd_socket`); "
        "`python -m masd_bench _sockload` is its socket load generator (`run_sockload`).",
        "",
    ]
    for name, cs in cmds.items():
        lines.append(f"{name}:")
        lines.append("")
        lines.append("```sh")
        lines.extend(cs)
        lines.append("```")
        lines.append("")
    return "\n".join(lines)
