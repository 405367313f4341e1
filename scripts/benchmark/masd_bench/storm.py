"""Throttle storm: send for a while through an SMSC that throttles every Nth submit and drops the link
once, then check that nothing was lost, nothing still valid failed, and no part was accepted twice.

The SMSC is tests/interop/smsc.js, built on the npm ``smpp`` package (a peer that is not masd's). masd
runs as a real process (``masd run``, SQLite, one SMPP channel); messages — short ones and three-part
Chinese ones — are accepted through the core at a steady pace for ``--minutes``, the link is dropped
once half-way, and the script then waits for every delivery to end and reads what the SMSC accepted.

    python scripts/storm.py --minutes 10                 # the full storm (docs/reliability.md)
    python scripts/storm.py --minutes 0.3 --json         # the short one the test suite runs
    python scripts/storm.py --minutes 2 --kill           # and a kill -9 three quarters in

It prints: accepted, the final states, parts the SMSC accepted and how many of them twice, throttling
answers, the lowest channel rate masd fell to, and the rate at the end.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio

from masd.config import load_config
from masd.core.gateway import Gateway, SubmitRequest
from masd.logging import configure_logging
from masd.store.db import database_from_config
from masd.store.tables import deliveries
from masd_adapters.smpp.constants import ESME_RTHROTTLED
from masd_bench.procs import ROOT, free_port

INTEROP = ROOT / "tests" / "interop"
FINAL = {"delivered", "undelivered", "expired", "rejected", "failed", "cancelled"}
LONG = (
    "防汛紧急通知：请各单位立即检查辖区内的水库、河道和低洼地带，做好人员转移准备，保障群众安全。" * 4
)  # 3 parts

CONFIG = """\
[node]
name = "storm"
data_dir = "{data_dir}"
[http]
listen = "127.0.0.1:{http_port}"
[socket]
enabled = false
[log]
level = "warning"
format = "json"
[queue]
poll_interval = 0.05
max_attempts = {max_attempts}
retry_base_seconds = 0.2
retry_max_seconds = 2
[channels.smpp]
driver = "smpp"
rate = {rate}
window = {window}
service_number = "1065700012345"
[channels.smpp.options]
host = "127.0.0.1"
port = {smpp_port}
system_id = "masd"
password = "secret"
reconnect_min = 0.1
reconnect_max = 1.0
"""


def start_smsc(throttle_every: int, record: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    node = shutil.which("node")
    if node is None or not (INTEROP / "node_modules" / "smpp").is_dir():
        raise SystemExit(
            "needs Node.js and tests/interop/node_modules (run scripts/test once, or npm ci there)"
        )
    argv = [node, str(INTEROP / "smsc.js"), "--port", "0", "--control-port", "0", "--system-id", "masd"]
    argv += ["--password", "secret", "--receipt-delay", "50", "--throttle-every", str(throttle_every)]
    argv += ["--record", str(record), "--keep", "10"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, int(info["port"]), int(info["control_port"])


def control(port: int, op: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/{op}", data=data, method="GET" if data is None else "POST"
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def channel_rate(http_port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=5) as r:
            return float(json.loads(r.read())["channels"]["smpp"]["rate"])
    except Exception:
        return None


def counts(db: Any) -> dict[str, int]:
    return dict(
        db.read_sync(
            lambda c: c.execute(
                sa.select(deliveries.c.state, sa.func.count()).group_by(deliveries.c.state)
            ).all()
        )
    )


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    record = workdir / "smsc.jsonl"
    smsc, smpp_port, control_port = start_smsc(args.throttle_every, record)
    http_port = free_port()
    config = workdir / "storm.toml"
    config.write_text(
        CONFIG.format(
            data_dir=(workdir / "data").as_posix(),
            http_port=http_port,
            smpp_port=smpp_port,
            rate=args.rate,
            window=args.window,
            max_attempts=args.max_attempts,
        )
    )
    configure_logging("warning", "json")
    cfg = load_config(config, env={})
    db = database_from_config(cfg)
    db.upgrade()
    gateway = Gateway(cfg, db)
    log = (workdir / "daemon.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "masd.cli", "run", "--config", str(config)],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    daemon = start()
    killed = False
    accepted = parts_expected = 0
    rates: list[float] = []
    dropped = False
    try:
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        i = 0

        async def accept(reqs: list[SubmitRequest]) -> int:
            return sum(a.segments for a in await gateway.accept(reqs, interface="storm"))

        while time.monotonic() < end:
            reqs = []
            for _ in range(args.per_second):
                long = i % 3 == 0
                reqs.append(
                    SubmitRequest(
                        f"{i}号" + (LONG if long else "会议通知"), [f"139{i:08d}"], validity_seconds=3600
                    )
                )
                parts_expected += 3 if long else 1
                i += 1
            trio.run(accept, reqs)
            accepted += len(reqs)
            if not dropped and time.monotonic() >= t0 + args.minutes * 30:
                control(control_port, "drop", {"block_ms": 2000})
                dropped = True
            if args.kill and not killed and time.monotonic() >= t0 + args.minutes * 45:
                # kill -9 while long messages are half sent: the restart must resume from the parts
                # already recorded and send only the others.
                daemon.send_signal(signal.SIGKILL)
                daemon.wait()
                daemon = start()
                killed = True
            r = channel_rate(http_port)
            if r is not None:
                rates.append(r)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0) % 1.0))
        deadline = time.monotonic() + args.drain_timeout
        while True:
            c = counts(db)
            if sum(v for k, v in c.items() if k in FINAL) >= accepted or time.monotonic() > deadline:
                break
            r = channel_rate(http_port)
            if r is not None:
                rates.append(r)
            time.sleep(1.0)
        stats = control(control_port, "stats")
        final_rate = channel_rate(http_port)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        smsc.terminate()
        smsc.wait(timeout=10)
    accepted_parts: collections.Counter[tuple[str, int, int]] = collections.Counter()
    throttled = 0
    with record.open() as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("event") != "submit_sm":
                continue
            if rec.get("status") == ESME_RTHROTTLED:
                throttled += 1
            elif rec.get("status") == 0:
                info = rec.get("concat") or {"ref": -1, "seq": 1}
                accepted_parts[(rec["destination_addr"], info["ref"], info["seq"])] += 1
    recovered = db.read_sync(
        lambda c: c.execute(sa.select(sa.func.coalesce(sa.func.sum(deliveries.c.recovered), 0))).scalar_one()
    )
    final = counts(db)
    db.dispose()
    return {
        "minutes": args.minutes,
        "throttle_every": args.throttle_every,
        "accepted": accepted,
        "final_states": dict(sorted(final.items())),
        "parts_expected": parts_expected,
        "parts_accepted_by_smsc": sum(accepted_parts.values()),
        "parts_accepted_twice": sum(n - 1 for n in accepted_parts.values() if n > 1),
        "masd_counted_possible_duplicates": int(recovered),
        "throttling_answers": throttled,
        "smsc_stats": {k: stats.get(k) for k in ("submits_ok", "throttled", "receipts_acked")},
        "link_dropped_once": dropped,
        "killed_with_9_once": killed,
        "lowest_rate": min(rates) if rates else None,
        "rate_at_end": final_rate,
        "configured_rate": args.rate,
    }


def check(r: dict[str, Any]) -> list[str]:
    problems = []
    f = r["final_states"]
    if f.get("delivered", 0) != r["accepted"]:
        problems.append(f"not every delivery was delivered: {f}")
    if r["parts_accepted_by_smsc"] - r["parts_accepted_twice"] != r["parts_expected"]:
        problems.append(
            f"the SMSC accepted {r['parts_accepted_by_smsc']} parts of {r['parts_expected']} expected"
        )
    if r["parts_accepted_twice"] > r["masd_counted_possible_duplicates"] * 3:
        problems.append("the SMSC accepted more parts twice than masd's counted crash window allows")
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--throttle-every", type=int, default=2)
    ap.add_argument("--per-second", type=int, default=5, help="messages accepted each second")
    ap.add_argument("--rate", type=float, default=200.0, help="the channel's configured rate")
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--max-attempts", type=int, default=3)
    ap.add_argument("--drain-timeout", type=float, default=300.0)
    ap.add_argument(
        "--kill", action="store_true", help="kill -9 the daemon once, three quarters in, and restart it"
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, the SMSC's record)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="masd-storm-") as tmp:
        r = run(args, Path(tmp))
        if args.keep:
            keep = Path(tempfile.mkdtemp(prefix="masd-storm-kept-"))
            shutil.copytree(tmp, keep, dirs_exist_ok=True)
            r["kept"] = str(keep)
    r["problems"] = check(r)
    if args.json:
        print(json.dumps(r, ensure_ascii=False))
    else:
        print(f"masd throttle storm ({args.minutes:g} min, every {args.throttle_every}th submit throttled)")
        for k, v in r.items():
            print(f"  {k:34} {v}")
        print("RESULT:", "PASS" if not r["problems"] else "FAIL — " + "; ".join(r["problems"]))
    sys.exit(1 if r["problems"] else 0)


if __name__ == "__main__":
    main()
