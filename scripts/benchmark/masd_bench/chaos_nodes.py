"""Crash test with two nodes: two ``masd run`` processes on one PostgreSQL database, one killed mid-flight.

What runs (all on loopback, in a work directory of its own):

- a fresh PostgreSQL database shared by nodes ``n1`` and ``n2`` (each with its own HTTP port);
- one simulated SMSC (``masd sim smsc``) both nodes bind to, recording every submit_sm it accepts and
  sending each receipt to whichever node is bound, as an SMSC does for one account;
- HTTP load: ``--deliveries`` messages, each to its own number, sent alternately to both nodes by an app
  with a webhook; a request to a node that is down goes to the other with the same ``client_ref``;
- DB polling: ``--oa-rows`` rows written into ``api_mt_oa1`` of an OA database (SQLite) while the load runs;
- webhooks: a local receiver counts every POST by event id;
- meetings: one created over HTTP before the kill (its notices sent by that request), one after it,
  due two seconds later — the scheduler that sends it must have moved to the survivor.

Node ``n1`` starts first and holds every job. Once ``--kill-at`` of the HTTP load is accepted it gets
``kill -9``; the load goes on against ``n2``. When everything accepted is final, the api_mt table empty
and every event sent, the figures are printed: accepted, delivered, lost (must be 0), duplicates at
the SMSC (against what masd counted as possibly sent twice), api_rpt rows and webhooks delivered twice
(inside and outside the crash window), and how long each job took to move (from the kill to ``n2``'s
taking its lease).

    scripts/chaos --nodes 2                                # the full run
    python -m masd_bench.chaos_nodes --deliveries 400      # a small one (tests/e2e/test_chaos_nodes.py)
"""

from __future__ import annotations

import argparse
import collections
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import trio

from masd.store import apps as app_store
from masd.store import mas
from masd.store.db import Database
from masd.store.tables import apps, deliveries, job_leases, messages
from masd_bench.procs import free_port

PG_ADMIN = os.environ.get("MASD_CHAOS_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
CODE = "oa1"
JOBS = ("dbpoll:oa1", "housekeeping", "meeting", "webhooks")
FINAL = ("delivered", "undelivered", "expired", "rejected", "failed", "cancelled")
MOVE_WITHIN = 15.0
QUEUE_LEASE = 10.0  # a dead node's claims go back to the queue after this long

NODE_CONFIG = """\
[node]
name = "{name}"
data_dir = "{data_dir}"

[store]
url = "{store_url}"

[http]
listen = "127.0.0.1:{http_port}"

[socket]
enabled = false

[log]
level = "info"
format = "json"

[queue]
poll_interval = 0.05
lease_seconds = {lease}
max_pending = 10000000

[webhooks]
discover_seconds = 0.5

[channels.smpp]
driver = "smpp"
rate = {rate}
window = {window}
service_number = "1065700"

[channels.smpp.options]
host = "127.0.0.1"
port = {smsc_port}
system_id = "masd"
password = "secret"
window = {window}
reconnect_min = 0.1
reconnect_max = 0.5

[dbpoll.{code}]
url = "{oa_url}"
app = "oa"
interval = 0.1
"""


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited at start (code {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} does not listen on port {port}")


# ----- the webhook receiver --------------------------------------------------------------------------


class Webhooks:
    """Counts every POST by its event id, with the time it arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits: list[tuple[int, float, str]] = []  # (event id, arrival, type)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.hits.append(
                        (int(self.headers["X-Masd-Event-Id"]), time.time(), json.loads(body)["type"])
                    )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def twice(self, kill_wall: float) -> tuple[int, int, int]:
        """(distinct events, sent twice across the kill, sent twice otherwise)."""
        times: dict[int, list[float]] = collections.defaultdict(list)
        with self.lock:
            for event_id, at, _ in self.hits:
                times[event_id].append(at)
        across = other = 0
        for ts in times.values():
            for a, b in zip(sorted(ts), sorted(ts)[1:], strict=False):
                if a <= kill_wall < b:
                    across += 1
                else:
                    other += 1
        return len(times), across, other


# ----- the run ---------------------------------------------------------------------------------------


class Cluster:
    def __init__(self, workdir: Path, *, rate: float, window: int) -> None:
        self.workdir = workdir
        self.name = f"masd_chaos_{uuid.uuid4().hex[:10]}"
        self.store_url = sa.make_url(PG_ADMIN).set(database=self.name).render_as_string(hide_password=False)
        self.oa_url = f"sqlite:///{workdir / 'oa.db'}"
        self.rate, self.window = rate, window
        self.smsc_port = free_port()
        self.record = workdir / "smsc.jsonl"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.logs: dict[str, Path] = {}

    def create_database(self) -> None:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{self.name}"')
        admin.dispose()

    def drop_database(self) -> None:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        admin.dispose()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        out = log.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "masd.cli", *args],
            stdout=out,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.procs[name] = proc
        return proc

    def start_smsc(self) -> None:
        proc = self._spawn(
            "smsc",
            [
                "sim", "smsc", "--port", str(self.smsc_port), "--account", "masd:secret",
                "--receipt-delay", "0.05-0.5", "--resend-after", "2", "--record", str(self.record),
                "--control-port", "-1", "--seed", "7",
            ],
        )  # fmt: skip
        _wait_port(self.smsc_port, proc, "the simulated SMSC")

    def init_oa(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "masd.cli", "dbpoll", "init", CODE, "--url", self.oa_url],
            capture_output=True,
            env={**os.environ, "MASD_NODE__DATA_DIR": str(self.workdir / "cli")},
        )
        if done.returncode:
            raise SystemExit(f"masd dbpoll init failed: {done.stderr.decode()}")

    def start_node(self, name: str) -> None:
        port = free_port()
        config = self.workdir / f"{name}.toml"
        config.write_text(
            NODE_CONFIG.format(
                name=name,
                data_dir=(self.workdir / name).as_posix(),
                store_url=self.store_url,
                http_port=port,
                lease=QUEUE_LEASE,
                rate=self.rate,
                window=self.window,
                smsc_port=self.smsc_port,
                code=CODE,
                oa_url=self.oa_url,
            )
        )
        self.ports[name] = port
        proc = self._spawn(name, ["run", "--config", str(config)])
        _wait_port(port, proc, f"node {name}", timeout=60)

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def stop_all(self) -> dict[str, int]:
        codes: dict[str, int] = {}
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = -9
        return codes


def _counts(db: Database) -> dict[str, int]:
    return dict(
        db.read_sync(
            lambda c: c.execute(
                sa.select(deliveries.c.state, sa.func.count()).group_by(deliveries.c.state)
            ).all()  # type: ignore[arg-type]
        )
    )


def _final_by_app(db: Database) -> dict[str, int]:
    """Final deliveries by the app that sent them: crm (HTTP), oa (DB polling), meeting."""
    q = (
        sa.select(apps.c.name, sa.func.count())
        .select_from(
            deliveries.join(messages, messages.c.id == deliveries.c.message_id).join(
                apps, apps.c.id == messages.c.app_id
            )
        )
        .where(deliveries.c.state.in_(FINAL))
        .group_by(apps.c.name)
    )
    return {str(name): int(n) for name, n in db.read_sync(lambda c: c.execute(q).all())}


def _leases(db: Database) -> dict[str, dict[str, Any]]:
    return {
        r["job"]: dict(r) for r in db.read_sync(lambda c: c.execute(sa.select(job_leases)).mappings().all())
    }


def run_nodes(
    *,
    deliveries_n: int,
    oa_rows: int,
    attendees: int,
    rate: float,
    window: int,
    kill_at: float,
    timeout: float,
    workdir: Path,
    keep_database: bool = False,
) -> dict[str, Any]:
    """The whole run (see the module docstring); its figures. ``keep_database``: leave the PostgreSQL
    database for a look afterwards (its URL is in the figures)."""
    cluster = Cluster(workdir, rate=rate, window=window)
    cluster.create_database()
    db = Database(cluster.store_url)
    hooks = Webhooks()
    try:
        db.upgrade()
        db.write_sync(lambda c: app_store.create_app(c, "oa", now=time.time()))
        _, key = db.write_sync(
            lambda c: app_store.create_app(
                c, "crm", now=time.time(), webhook_url=hooks.url, webhook_secret="chaos"
            )
        )
        cluster.init_oa()
        cluster.start_smsc()
        cluster.start_node("n1")
        deadline = time.monotonic() + 30
        while set(JOBS) - {j for j, r in _leases(db).items() if r["holder"] == "n1"}:
            if time.monotonic() > deadline or not cluster.alive("n1"):
                raise SystemExit(f"node n1 did not take every job; see {cluster.logs['n1']}")
            time.sleep(0.05)
        cluster.start_node("n2")
        result = trio.run(_drive, cluster, db, hooks, key, deliveries_n, oa_rows, attendees, kill_at, timeout)
        codes = cluster.stop_all()
        result["clean_shutdown_exit_codes"] = {k: v for k, v in codes.items() if k != "n1"}
        result.update(_figures(cluster, db, hooks, result))
        result["logs"] = str(workdir)
        if keep_database:
            result["database"] = sa.make_url(cluster.store_url).render_as_string(hide_password=True)
        return result
    finally:
        cluster.stop_all()
        hooks.close()
        db.dispose()
        if not keep_database:
            cluster.drop_database()


async def _drive(
    cluster: Cluster,
    db: Database,
    hooks: Webhooks,
    key: str,
    n: int,
    oa_rows: int,
    attendees: int,
    kill_at: float,
    timeout: float,
) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {key}"}
    bases = {name: f"http://127.0.0.1:{port}" for name, port in cluster.ports.items()}
    accepted: set[str] = set()
    meetings: list[int] = []
    state: dict[str, Any] = {"kill_wall": None, "killed_after_accepted": None, "retried_elsewhere": 0}
    oa = sa.create_engine(cluster.oa_url, poolclass=sa.pool.NullPool)
    mt = mas.mas_tables(CODE, "sqlite").mt
    deadline = trio.current_time() + timeout

    async with httpx.AsyncClient(timeout=10) as client:

        async def post(path: str, body: dict[str, Any], prefer: str) -> httpx.Response:
            order = [prefer] + [x for x in bases if x != prefer]
            while True:
                for name in order:
                    if not cluster.alive(name):
                        continue
                    try:
                        r = await client.post(bases[name] + path, json=body, headers=auth)
                    except httpx.TransportError:
                        state["retried_elsewhere"] += 1
                        continue  # the node died under the request: the other gets it, same client_ref
                    if r.status_code in (200, 201):
                        return r
                    if r.status_code == 503 or r.status_code >= 500:
                        state["retried_elsewhere"] += 1
                        continue
                    raise SystemExit(f"POST {path} refused: {r.status_code} {r.text}")
                await trio.sleep(0.1)

        async def meeting(prefix: str, send_in: float, prefer: str) -> None:
            numbers = [f"136{prefix}{i:07d}" for i in range(attendees)]
            now = time.time()
            body: dict[str, Any] = {
                "title": f"chaos {prefix}",
                "starts_at": _iso(now + 86400),
                "place": "三楼",
                "numbers": numbers,
            }
            if send_in > 0:
                body["send_at"] = _iso(now + send_in)
            r = await post("/v1/meetings", body, prefer)
            meetings.append(int(r.json()["id"]))

        async def http_load() -> None:
            # Paced a little above what the two channels send, so that a queue builds up and the kill
            # finds work in flight; at most 16 requests open at once.
            limit = trio.Semaphore(16)
            pace = 1.0 / max(1.0, cluster.rate * 1.5)

            async def one(i: int) -> None:
                try:
                    ref = f"chaos-{i}"
                    body = {"to": f"139{i:08d}", "text": f"chaos #{i}", "client_ref": ref}
                    await post("/v1/messages", body, "n1" if i % 2 == 0 else "n2")
                    accepted.add(ref)
                finally:
                    limit.release()

            async with trio.open_nursery() as nursery:
                for i in range(n):
                    await limit.acquire()
                    nursery.start_soon(one, i)
                    await trio.sleep(pace)

        async def oa_load() -> None:
            batch = max(1, oa_rows // 20)
            for start in range(0, oa_rows, batch):
                rows = [
                    {"sm_id": 1 + i, "src_id": 0, "mobiles": f"137{i:08d}", "content": f"OA 通知 {i}"}
                    for i in range(start, min(oa_rows, start + batch))
                ]
                await trio.to_thread.run_sync(_oa_insert, oa, mt, rows)
                await trio.sleep(0.2)

        async def killer() -> None:
            while len(accepted) < kill_at * n:
                await trio.sleep(0.02)
            cluster.kill("n1")
            state["kill_wall"] = time.time()
            state["killed_after_accepted"] = len(accepted)
            state["states_at_kill"] = _counts(db)
            await meeting("2", 2.0, "n2")  # due after the kill: only a moved scheduler sends it

        async with trio.open_nursery() as nursery:
            nursery.start_soon(killer)
            nursery.start_soon(oa_load)
            await meeting("1", 0, "n2")  # due now: the request sends its notices itself
            await http_load()

        expected = {"crm": len(accepted), "oa": oa_rows, "meeting": attendees * len(meetings)}
        rpt = mas.mas_tables(CODE, "sqlite").rpt
        while True:
            final = _final_by_app(db)
            mt_left = await trio.to_thread.run_sync(lambda: _oa_count(oa, mt))
            rpt_rows = await trio.to_thread.run_sync(lambda: _oa_count(oa, rpt))
            events, _, _ = hooks.twice(state["kill_wall"] or 0)
            done = all(final.get(app, 0) >= want for app, want in expected.items())
            if done and mt_left == 0 and rpt_rows >= oa_rows and events >= len(accepted):
                break
            if trio.current_time() > deadline:
                state["timed_out"] = {
                    "final": final,
                    "api_mt_left": mt_left,
                    "api_rpt_rows": rpt_rows,
                    "webhook_events": events,
                }
                break
            await trio.sleep(0.2)
        # Let stragglers (a repeated webhook, a late api_rpt row) arrive before counting them; the leases
        # are read before the survivor stops (a clean stop gives them back).
        await trio.sleep(2.0)
        state["leases"] = _leases(db)
    oa.dispose()
    state["expected"] = expected
    return state


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t))


def _oa_insert(oa: sa.Engine, mt: sa.Table, rows: list[dict[str, Any]]) -> None:
    with oa.begin() as c:
        c.execute(sa.insert(mt), rows)


def _oa_count(oa: sa.Engine, mt: sa.Table) -> int:
    with oa.connect() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(mt)).scalar_one())


def _figures(cluster: Cluster, db: Database, hooks: Webhooks, r: dict[str, Any]) -> dict[str, Any]:
    kill_wall = r.pop("kill_wall")
    c = _counts(db)
    final = _final_by_app(db)
    expected: dict[str, int] = r.pop("expected")
    recovered = db.read_sync(
        lambda conn: conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(deliveries.c.recovered), 0))
        ).scalar_one()
    )
    per_part: collections.Counter[tuple[str, str]] = collections.Counter()
    if cluster.record.exists():
        for line in cluster.record.read_text().splitlines():
            sub = json.loads(line)
            if sub.get("status") == 0:
                per_part[(sub["destination"], sub["body"])] += 1
    smsc_dupes = sum(k - 1 for k in per_part.values() if k > 1)
    oa = sa.create_engine(cluster.oa_url, poolclass=sa.pool.NullPool)
    rpt = mas.mas_tables(CODE, "sqlite").rpt
    with oa.connect() as conn:
        rpt_rows = conn.execute(sa.select(rpt.c.sm_id, rpt.c.mobile)).all()
    oa.dispose()
    rpt_keys = collections.Counter((int(x.sm_id), str(x.mobile)) for x in rpt_rows)
    events, across, other = hooks.twice(kill_wall)
    leases = r.pop("leases")
    moved = {
        job: round(float(leases[job]["taken_at"]) - kill_wall, 2)
        if job in leases and leases[job]["holder"] == "n2" and leases[job]["taken_at"]
        else None
        for job in JOBS
    }
    return {
        "accepted": sum(expected.values()),
        "accepted_by": {"http": expected["crm"], "dbpoll": expected["oa"], "meetings": expected["meeting"]},
        "stored": sum(c.values()),
        "delivered": c.get("delivered", 0),
        "final_states": dict(sorted(c.items())),
        "lost": sum(max(0, want - final.get(app, 0)) for app, want in expected.items()),
        "smsc_received_distinct": len(per_part),
        "smsc_duplicates": smsc_dupes,
        "masd_counted_possible_duplicates": int(recovered),
        "api_rpt_rows": len(rpt_rows),
        "api_rpt_duplicates": sum(k - 1 for k in rpt_keys.values() if k > 1),
        "webhook_events": events,
        "webhooks_twice_across_the_kill": across,
        "webhooks_twice_otherwise": other,
        "job_moved_seconds": moved,
    }


def check(r: dict[str, Any], *, oa_rows: int) -> list[str]:
    problems = []
    if r.get("timed_out"):
        problems.append(f"timed out waiting for the work to finish: {r['timed_out']}")
    if r["lost"]:
        problems.append(f"lost {r['lost']} of {r['accepted']} accepted deliveries")
    if r["smsc_duplicates"] > r["masd_counted_possible_duplicates"]:
        problems.append("the SMSC received more duplicates than masd counted")
    if r["api_rpt_rows"] < oa_rows:
        problems.append(f"api_rpt holds {r['api_rpt_rows']} rows for {oa_rows} OA rows")
    if r["api_rpt_duplicates"]:
        problems.append(f"{r['api_rpt_duplicates']} api_rpt rows written twice")
    if r["webhooks_twice_otherwise"]:
        problems.append(f"{r['webhooks_twice_otherwise']} webhooks sent twice outside the crash window")
    if r["webhook_events"] < r["accepted_by"]["http"]:
        problems.append(f"{r['webhook_events']} webhook events for {r['accepted_by']['http']} HTTP messages")
    for job, s in r["job_moved_seconds"].items():
        if s is None or s > MOVE_WITHIN:
            problems.append(f"job {job} did not move to the survivor within {MOVE_WITHIN:g} s ({s})")
    if any(code != 0 for code in r["clean_shutdown_exit_codes"].values()):
        problems.append(f"a survivor did not stop cleanly: {r['clean_shutdown_exit_codes']}")
    return problems


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--oa-rows", type=int, default=500, help="rows written into api_mt (--nodes 2)")
    ap.add_argument("--attendees", type=int, default=20, help="attendees of each meeting (--nodes 2)")


def main_nodes(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="masd-chaos-nodes-") as tmp:
        r = run_nodes(
            deliveries_n=args.deliveries,
            oa_rows=args.oa_rows,
            attendees=args.attendees,
            rate=args.rate,
            window=args.window,
            kill_at=args.kill_at,
            timeout=args.timeout,
            workdir=Path(tmp),
            keep_database=args.keep,
        )
        problems = check(r, oa_rows=args.oa_rows)
        r["problems"] = problems
        if args.keep:
            keep = Path(tempfile.mkdtemp(prefix="masd-chaos-kept-"))
            subprocess.run(["cp", "-r", f"{tmp}/.", str(keep)], check=False)
            r["logs"] = str(keep)
        else:
            del r["logs"]  # the work directory goes with the run
    if args.json:
        print(json.dumps(r, ensure_ascii=False))
    else:
        print("masd crash test, two nodes on one PostgreSQL (kill -9 of the node holding the jobs)")
        for k, v in r.items():
            if k != "problems":
                print(f"  {k:36} {v}")
        print("RESULT:", "PASS" if not problems else "FAIL — " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deliveries", type=int, default=5000)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--rate", type=float, default=300)
    ap.add_argument("--kill-at", type=float, default=0.4)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true")
    add_arguments(ap)
    sys.exit(main_nodes(ap.parse_args()))
