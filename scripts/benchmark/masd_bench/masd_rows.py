"""The rows measured on masd: the wrk loads over HTTP (single, batch, paced, intake and send workers),
the socket load, draining a backlog, and memory and start-up with a million messages queued."""

from __future__ import annotations

import contextlib
import json
import sys
import time

from masd_bench.masd_setup import (
    create_app_key,
    drain_masd,
    masd_db,
    masd_state_counts,
    populate,
    start_masd,
    write_masd_config,
)
from masd_bench.measure import CpuMeter, percentile, proc_status_kib, split_by_load
from masd_bench.procs import Proc, child_pids, free_port, http_get, port_open, shown, wait_for
from masd_bench.report import latency
from masd_bench.rows import Row, Settings
from masd_bench.smsc import ISMG_DELIVER_WINDOW, IsmgSimulator, Simulator
from masd_bench.wrk import LUA_MASD_BATCH, LUA_MASD_SINGLE, pacing, run_wrk

# The modules masd's worker processes run (``python -m …``), found in their command lines: their CPU
# counts as masd's.
INTAKE_WORKER = "masd.workers.intake_process"
SEND_WORKER = "masd.workers.send_process"


def masd_throughput(s: Settings, wrk: str, mode: str, run: int) -> Row:
    """A wrk row. ``mode`` "cmpp-single" or "cmpp-batch" is the single or batch load through one CMPP
    channel to ``masd sim ismg`` in place of the SMPP bind to ``masd sim smsc``; the rest is the same."""
    row = Row(f"masd-{mode}", run)
    work = s.workdir / f"{row.row}-{run}"
    work.mkdir(parents=True)
    cmpp = mode.startswith("cmpp-")
    kind = mode.removeprefix("cmpp-")  # the load: single, batch, paced, …
    sim = IsmgSimulator(work) if cmpp else Simulator(s.smsc, work)
    row.commands.append(shown(sim.proc.argv, work))
    procs: list[Proc] = [sim.proc]
    try:
        http_port = free_port()
        # masd-batch-send: intake and send workers both; the window is shared out between the daemon and
        # its send workers, so masd never has more submits outstanding than Kannel.
        sending = kind == "batch-send"
        intake_port = free_port() if kind.endswith("-intake") or sending else None
        config = write_masd_config(
            work,
            http_port=http_port,
            smpp_port=sim.port,
            window=max(1, s.window // (1 + s.send_workers)) if sending else s.window,
            http_server="hypercorn" if kind == "single-hypercorn" else "builtin",
            intake_port=intake_port,
            intake_workers=s.intake_workers,
            send_workers=s.send_workers if sending else 0,
            channel="cmpp" if cmpp else "smpp",
        )
        key = create_app_key(config, work, row.commands)
        masd = start_masd(config, work, row.commands)
        procs.append(masd)
        base = f"http://127.0.0.1:{http_port}"
        wait_for("masd's /readyz", lambda: http_get(base + "/readyz")[0] == 200, 60, procs)
        script = work / f"{mode}.lua"
        batch = kind.startswith("batch")
        lua = LUA_MASD_BATCH if batch else LUA_MASD_SINGLE
        script.write_text(lua.format(key=key, batch=s.batch_size) + (pacing(s) if kind == "paced" else ""))
        watched = {"masd": masd.pid, sim.proc.name: sim.proc.pid}  # smsc, or ismg
        if intake_port is not None:
            # The workers' CPU counts as masd's: they are children of the daemon.
            base = f"http://127.0.0.1:{intake_port}"
            watched.update((f"intake{i}", pid) for i, pid in enumerate(child_pids(masd.pid, INTAKE_WORKER)))
            senders = child_pids(masd.pid, SEND_WORKER)
            watched.update((f"send{i}", pid) for i, pid in enumerate(senders))
        meter = CpuMeter(watched)
        sim_before = sim.submits()
        meter.start()
        w = run_wrk(
            wrk,
            script,
            base + ("/v1/messages/batch" if batch else "/v1/messages"),
            s,
            work / "wrk.log",
        )
        row.commands.append(shown(w.argv, work).replace(key, "$KEY"))
        left = drain_masd(row, work, s, meter, procs)
        sim_after = sim.submits()
        with contextlib.closing(masd_db(work)) as db:
            accepted, first, last_created = db.execute(
                "SELECT count(*), min(created_at), max(created_at) FROM deliveries"
            ).fetchone()
            done = db.execute(
                "SELECT created_at, done_at FROM deliveries WHERE state = 'delivered' ORDER BY done_at"
            ).fetchall()
        lat = sorted((d - c) * 1000 for c, d in done)
        row.extra.update(split_by_load(done, first, last_created))
        row.requests = w.requests
        row.errors = w.non2xx + w.socket_errors
        row.accepted = int(accepted)
        row.receipts = len(done)
        row.accept_rate = round(accepted / w.seconds, 1)
        if done:
            row.window_s = round(done[-1][1] - first, 3)
            row.e2e_rate = round(len(done) / max(row.window_s, 1e-9), 1)
        row.p50_ms = percentile(lat, 50)
        row.p99_ms = percentile(lat, 99)
        row.http_p50_ms, row.http_p99_ms = w.p50_ms, w.p99_ms
        row.smsc_submits = sim_after - sim_before
        if row.window_s:
            row.smsc_rate = round(row.smsc_submits / row.window_s, 1)
        if batch and row.extra.get("receipts_per_s_after_load"):
            row.note = (
                f"receipts stored {row.extra['receipts_per_s_during_load']:,.0f}/s while the load ran, "
                f"{row.extra['receipts_per_s_after_load']:,.0f}/s after it"
            )
        row.extra |= {
            "states": masd_state_counts(work),
            "wrk_seconds": w.seconds,
            "requests_per_s": w.rps,
            "accept_span_s": round(last_created - first, 3) if accepted else None,
            "undrained": left,
        }
        if cmpp:
            cmpp_notes(row)
    finally:
        for p in reversed(procs):
            p.stop()
    return row


def cmpp_notes(row: Row) -> None:
    """The masd-cmpp-* rows' notes: CPU per message of masd and of the ISMG, the peer's settings, and why
    Kannel has no such row."""
    per = {
        name: round(seconds / row.receipts * 1e6, 1)
        for name, seconds in row.cpu.items()
        if row.receipts and seconds == seconds  # not NaN (a process gone before the meter stopped)
    }
    row.extra["cpu_us_per_message"] = per
    notes = [row.note] if row.note else []
    if per:
        notes.append("CPU a message: " + ", ".join(f"{name} {us:,.0f} µs" for name, us in per.items()))
    notes.append(
        "one CMPP 3.0 connection, window as the SMPP rows'; masd sim ismg --report-delay 0 "
        f"--outcomes delivered=1 --deliver-window {ISMG_DELIVER_WINDOW}; SMSC submit_sm/s is the ISMG's "
        "CMPP_SUBMITs; no Kannel row: Debian's Kannel 1.4.5 has no CMPP driver"
    )
    row.note = "; ".join(notes)


def masd_drain(s: Settings, run: int) -> Row:
    """The masd-drain row: a backlog queued before masd starts (through Gateway.accept, as the 1,000,000
    rows do), then `masd run` sends it all; nothing else runs meanwhile. How fast the daemon claims,
    sends and stores receipts when no intake competes for its CPU or the database."""
    row = Row("masd-drain", run)
    n = s.drain_queued
    work = s.workdir / f"{row.row}-{run}"
    work.mkdir(parents=True)
    sim = Simulator(s.smsc, work)
    queued = f"# first: {n:,} messages queued through masd.core.gateway.Gateway.accept, 1,000 a call"
    row.commands.append(queued)
    row.commands.append(shown(sim.proc.argv, work))
    procs: list[Proc] = [sim.proc]
    try:
        config = write_masd_config(work, http_port=free_port(), smpp_port=sim.port, window=s.window)
        populate(config, n)
        sim_before = sim.submits()
        masd = start_masd(config, work, row.commands)
        procs.append(masd)
        meter = CpuMeter({"masd": masd.pid, "smsc": sim.proc.pid})
        meter.start()
        left = drain_masd(row, work, s, meter, procs)
        row.smsc_submits = sim.submits() - sim_before
        with contextlib.closing(masd_db(work)) as db:
            delivered, first_sent, last_done = db.execute(
                "SELECT count(*), min(submitted_at), max(done_at) FROM deliveries WHERE state = 'delivered'"
            ).fetchone()
        row.accepted = n
        row.receipts = int(delivered)
        if delivered:
            row.window_s = round(last_done - first_sent, 3)
            row.e2e_rate = round(delivered / max(row.window_s, 1e-9), 1)
            row.smsc_rate = round(row.smsc_submits / max(row.window_s, 1e-9), 1)
            per = row.cpu["masd"] / delivered * 1e6
            row.note = (row.note + "; " if row.note else "") + (
                f"{n:,} queued before start; masd {per:,.0f} µs of CPU a delivery (its start-up included)"
            )
        row.extra = {"states": masd_state_counts(work), "undrained": left}
    finally:
        for p in reversed(procs):
            p.stop()
    return row


def masd_socket(s: Settings, run: int) -> Row:
    """The masd-socket row: a subprocess of the benchmark (`python -m masd_bench _sockload SPEC`) drives
    masd's socket interface; throughput and latency come from masd's deliveries table as in the other masd
    rows, and the generator reports what it saw (answers, pushed receipts) and its own CPU time."""
    row = Row("masd-socket", run)
    work = s.workdir / f"{row.row}-{run}"
    work.mkdir(parents=True)
    sim = Simulator(s.smsc, work)
    row.commands.append(shown(sim.proc.argv, work))
    procs: list[Proc] = [sim.proc]
    gen: Proc | None = None
    try:
        http_port, socket_port = free_port(), free_port()
        config = write_masd_config(
            work,
            http_port=http_port,
            smpp_port=sim.port,
            window=s.window,
            socket_port=socket_port,
            socket_pipeline=s.socket_pipeline,
        )
        # One app per connection, so that each connection receives (and acknowledges) its own receipts:
        # masd pushes an app's events to one connection only, the one that logged in last.
        n = s.socket_connections
        keys = [create_app_key(config, work, None, f"bench-{i}") for i in range(n)]
        row.commands.append(
            f"for i in $(seq 0 {n - 1}); do masd apps create bench-$i --json --config $WORK/masd.toml; done"
        )
        masd = start_masd(config, work, row.commands)
        procs.append(masd)
        base = f"http://127.0.0.1:{http_port}"
        wait_for("masd's /readyz", lambda: http_get(base + "/readyz")[0] == 200, 60, procs)
        wait_for("masd's socket interface", lambda: port_open(socket_port), 30, procs)
        spec = work / "sockload.json"
        result_path = work / "sockload-result.json"
        spec.write_text(
            json.dumps(
                {
                    "port": socket_port,
                    "keys": keys,
                    "duration": s.duration,
                    "inflight": s.socket_pipeline,
                    "stall": 30.0,
                    "timeout": s.drain_timeout,
                    "out": str(result_path),
                }
            )
        )
        gen_argv = [sys.executable, "-m", "masd_bench", "_sockload", str(spec)]
        meter = CpuMeter({"masd": masd.pid, "smsc": sim.proc.pid})
        sim_before = sim.submits()
        meter.start()
        gen = Proc("socket-load", gen_argv, log=work / "sockload.log")
        row.commands.append(
            shown(gen_argv, work)
            + f"  # {n} connections × {s.socket_pipeline} submits in flight for {s.duration:g} s"
        )
        # The generator exits once every accepted submit's receipt has been pushed to it (or they stop
        # coming); then the store must have every delivery final with its receipt stored.
        load = gen
        wait_for("the socket load", lambda: not load.alive(), s.duration + s.drain_timeout + 120, procs)
        left = drain_masd(row, work, s, meter, procs)
        sim_after = sim.submits()
        if gen.stop() != 0 or not result_path.exists():
            tail = gen.log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"the socket load generator failed:\n{tail}")
        g = json.loads(result_path.read_text())
        with contextlib.closing(masd_db(work)) as db:
            accepted, first, last_created = db.execute(
                "SELECT count(*), min(created_at), max(created_at) FROM deliveries"
            ).fetchone()
            done = db.execute(
                "SELECT created_at, done_at FROM deliveries WHERE state = 'delivered' ORDER BY done_at"
            ).fetchall()
        lat = sorted((d - c) * 1000 for c, d in done)
        row.extra.update(split_by_load(done, first, last_created))
        row.requests = g["submitted"]
        row.errors = sum(g["errors"].values())
        row.accepted = int(accepted)
        row.receipts = len(done)
        row.accept_rate = round(accepted / max(g["load_seconds"], 1e-9), 1)
        if done:
            row.window_s = round(done[-1][1] - first, 3)
            row.e2e_rate = round(len(done) / max(row.window_s, 1e-9), 1)
        row.p50_ms = percentile(lat, 50)
        row.p99_ms = percentile(lat, 99)
        row.http_p50_ms, row.http_p99_ms = g["ack_p50_ms"], g["ack_p99_ms"]
        row.smsc_submits = sim_after - sim_before
        if row.window_s:
            row.smsc_rate = round(row.smsc_submits / row.window_s, 1)
        # The generator ran from before the meter's start to after its stop: its whole process time.
        row.cpu["socket-load"] = round(g["cpu_seconds"], 2)
        share = g["load_cpu_seconds"] / max(g["load_seconds"], 1e-9)
        saturated = share >= 0.9
        row.extra |= {
            "states": masd_state_counts(work),
            "connections": n,
            "in_flight_per_connection": s.socket_pipeline,
            "submit_acks": g["acks"],
            "error_frames": g["errors"],
            "receipts_pushed": g["receipts"],
            "duplicate_pushes": g["duplicate_pushes"],
            "push_p50_ms": g["push_p50_ms"],
            "push_p99_ms": g["push_p99_ms"],
            "pushed_e2e_rate": g["pushed_e2e_rate"],
            "load_seconds": g["load_seconds"],
            "generator_load_cpu_share": round(share, 3),
            "generator_saturated": saturated,
            "accept_span_s": round(last_created - first, 3) if accepted else None,
            "undrained": left,
        }
        notes = [row.note] if row.note else []
        if saturated:
            notes.append(
                f"the load generator was saturated ({share:.0%} of one core during the load): "
                "masd may accept more than shown"
            )
        else:
            notes.append(f"load generator {share:.0%} of one core during the load, not the limit")
        notes.append(
            f"{g['receipts']:,} receipts pushed, submit → receipt frame p50 {latency(g['push_p50_ms'])}, "
            f"p99 {latency(g['push_p99_ms'])}"
        )
        row.note = "; ".join(notes)
    finally:
        if gen is not None:
            gen.stop()
        for p in reversed(procs):
            p.stop()
    return row


def masd_queued(s: Settings) -> list[Row]:
    n = s.queued
    label = f"{n:,}"
    work = s.workdir / "queued"
    work.mkdir(parents=True)
    commands = [f"# first: {n:,} messages queued through masd.core.gateway.Gateway.accept, 1,000 a call"]
    rows: list[Row] = []
    http_port = free_port()
    # Nothing listens on this port: the channel stays down and nothing drains.
    config = write_masd_config(work, http_port=http_port, smpp_port=free_port(), window=s.window)
    print(f"queueing {label} messages through Gateway.accept", file=sys.stderr)
    populate_s = populate(config, n)
    base = f"http://127.0.0.1:{http_port}"

    if "masd-rss-1m" in s.rows:
        row = Row("masd-rss-1m", unit="MiB", commands=list(commands))
        masd = start_masd(config, work, row.commands, "masd-unreachable")
        try:

            def started() -> bool:
                code, body = http_get(base + "/readyz")
                return code in (200, 503) and b'"daemon":"ok"' in body.replace(b" ", b"")

            t_started = wait_for("masd to start (its channel is down)", started, 600, [masd])
            time.sleep(5.0)  # settle: the first claims, the housekeeping pass
            rss = proc_status_kib(masd.pid, "VmRSS")
            hwm = proc_status_kib(masd.pid, "VmHWM")
            states = masd_state_counts(work)
            row.value = round(rss / 1024, 1) if rss else None
            row.extra = {
                "queued": n,
                "vm_hwm_mib": round(hwm / 1024, 1) if hwm else None,
                "seconds_to_start": round(t_started, 2),
                "states": states,
                "seconds_to_queue_through_gateway": round(populate_s, 1),
            }
            row.note = (
                f"{label} queued (channel unreachable); peak (VmHWM) {row.extra['vm_hwm_mib']} MiB; "
                f"queueing them through Gateway.accept took {populate_s:.0f} s"
            )
        finally:
            masd.stop()
        rows.append(row)

    if "masd-ready-1m" in s.rows:
        row = Row("masd-ready-1m", unit="s", commands=list(commands))
        # /readyz needs a channel up: this SMSC binds but answers every submit_sm with 0x58 (throttled), so
        # the queue stays where it is while masd retries.
        sim = Simulator(s.smsc, work, throttle_every=1, receipts=False)
        row.commands.append(shown(sim.proc.argv, work))
        config2 = write_masd_config(work, http_port=http_port, smpp_port=sim.port, window=s.window)
        ready: Proc | None = None
        try:
            t0 = time.monotonic()
            ready = masd = start_masd(config2, work, row.commands, "masd-ready")
            healthz = wait_for("/healthz", lambda: http_get(base + "/healthz")[0] == 200, 600, [masd])
            wait_for("/readyz", lambda: http_get(base + "/readyz")[0] == 200, 600, [masd])
            total = time.monotonic() - t0
            rss = proc_status_kib(masd.pid, "VmRSS")
            states = masd_state_counts(work)
            row.value = round(total, 2)
            row.extra = {
                "queued": n,
                "seconds_to_healthz": round(healthz, 2),
                "vm_rss_mib_at_ready": round(rss / 1024, 1) if rss else None,
                "states_after": states,
            }
            row.note = (
                f"{label} queued; /healthz after {healthz:.2f} s; RSS at ready "
                f"{row.extra['vm_rss_mib_at_ready']} MiB"
            )
        finally:
            if ready is not None:
                ready.stop()
            sim.proc.stop()
        rows.append(row)
    return rows
