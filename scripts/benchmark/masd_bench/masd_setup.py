"""The masd under test: its configuration, an app key, the ``masd run`` process, what its database
holds, waiting for it to finish every delivery, and a backlog queued through the core before it starts."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from masd_bench.measure import CpuMeter
from masd_bench.procs import Proc, drain, masd_argv, shown
from masd_bench.rows import ACCOUNT, CMPP_ACCOUNT, FINAL_STATES, SERVICE_NUMBER, Row, Settings

MASD_CONFIG = """\
[node]
name = "bench"
data_dir = "{data_dir}"

[http]
listen = "127.0.0.1:{http_port}"
server = "{http_server}"

{socket}

[meeting]
enabled = false

[log]
level = "warning"
format = "json"

[queue]
max_pending = 10000000
retry_base_seconds = 1.0
retry_max_seconds = 5.0

{channel}"""

# The one channel of every SMPP row: a bind to the simulated SMSC with the benchmark's window.
SMPP_CHANNEL = """\
[channels.smpp]
driver = "smpp"
rate = 1000000
window = {window}
service_number = "{sender}"

[channels.smpp.options]
host = "127.0.0.1"
port = {smpp_port}
system_id = "{system_id}"
password = "{password}"
window = {window}
"""

# The masd-cmpp-* rows' one channel: CMPP 3.0 to `masd sim ismg`, one connection with the same window as
# the SMPP rows' bind, reports asked for (registered_delivery = 1, the default), no rate cap of its own.
CMPP_CHANNEL = """\
[channels.cmpp]
driver = "cmpp"
rate = 1000000
window = {window}
service_number = "{sender}"

[channels.cmpp.options]
host = "127.0.0.1"
port = {smpp_port}
sp_id = "{system_id}"
password = "{password}"
version = "3.0"
connections = 1
window = {window}
"""


SOCKET_OFF = """\
# Off except in the masd-socket row, so that a running demo's port does not matter.
[socket]
enabled = false"""

SOCKET_ON = """\
[socket]
enabled = true
listen = "127.0.0.1:{port}"
pipeline = {pipeline}"""


def write_masd_config(
    work: Path,
    *,
    http_port: int,
    smpp_port: int,
    window: int,
    socket_port: int | None = None,
    socket_pipeline: int = 100,
    http_server: str = "builtin",
    intake_port: int | None = None,
    intake_workers: int = 1,
    send_workers: int = 0,
    channel: str = "smpp",
) -> Path:
    """masd's configuration for a row; ``channel`` "cmpp" puts the CMPP channel of the masd-cmpp-* rows
    in place of the SMPP one (``smpp_port`` is then the ISMG's port)."""
    path = work / "masd.toml"
    account = CMPP_ACCOUNT if channel == "cmpp" else ACCOUNT
    links = CMPP_CHANNEL if channel == "cmpp" else SMPP_CHANNEL
    sock = SOCKET_OFF if socket_port is None else SOCKET_ON.format(port=socket_port, pipeline=socket_pipeline)
    if intake_port is not None:
        sock += f'\n\n[intake]\nworkers = {intake_workers}\nlisten = "127.0.0.1:{intake_port}"'
    if send_workers:
        sock += f"\n\n[send]\nworkers = {send_workers}"
    link = links.format(
        smpp_port=smpp_port, window=window, sender=SERVICE_NUMBER, system_id=account[0], password=account[1]
    )
    path.write_text(
        MASD_CONFIG.format(
            channel=link,
            socket=sock,
            data_dir=(work / "data").as_posix(),
            http_port=http_port,
            http_server=http_server,
        )
    )
    return path


def masd_db(work: Path) -> sqlite3.Connection:
    return sqlite3.connect(work / "data" / "masd.db", timeout=30)


def masd_state_counts(work: Path) -> dict[str, int]:
    with contextlib.closing(masd_db(work)) as db:
        return dict(db.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall())


def create_app_key(config: Path, work: Path, commands: list[str] | None, name: str = "bench") -> str:
    argv = masd_argv("apps", "create", name, "--json", "--config", str(config))
    if commands is not None:
        commands.append(shown(argv, work))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"masd apps create failed: {out.stderr[-500:]}")
    return str(json.loads(out.stdout)["key"])


def start_masd(config: Path, work: Path, commands: list[str], name: str = "masd") -> Proc:
    argv = masd_argv("run", "--config", str(config))
    commands.append(shown(argv, work))
    return Proc(name, argv, log=work / f"{name}.log")


def drain_masd(row: Row, work: Path, s: Settings, meter: CpuMeter, procs: Sequence[Proc]) -> int:
    """Wait until masd has finished every delivery (or stopped making progress), then stop the CPU
    meter; the deliveries left unfinished, with the reason in ``row.note``."""
    left, row.note = drain(
        "deliveries",
        lambda: sum(v for k, v in masd_state_counts(work).items() if k not in FINAL_STATES),
        timeout=s.drain_timeout,
        stall=15,
        procs=procs,
    )
    row.cpu = meter.stop()
    row.cpu_wall_s = meter.wall
    return left


def populate(config: Path, n: int) -> float:
    """Queue ``n`` messages through the core API (Gateway.accept, 1,000 a call); return the seconds."""
    import trio

    from masd.config import load_config
    from masd.core.gateway import Gateway, SubmitRequest
    from masd.logging import configure_logging
    from masd.store.db import database_from_config

    configure_logging("warning", "json")
    cfg = load_config(config, env={})
    db = database_from_config(cfg)
    db.upgrade()
    gateway = Gateway(cfg, db)

    async def accept_all() -> None:
        for start in range(0, n, 1000):
            reqs = [
                SubmitRequest(f"queued {i}", [f"138{i % 100_000_000:08d}"])
                for i in range(start, min(n, start + 1000))
            ]
            await gateway.accept(reqs, interface="bench")
            if start and start % 100_000 == 0:
                print(f"  queued {start:,}", file=sys.stderr)

    t0 = time.monotonic()
    trio.run(accept_all)
    seconds = time.monotonic() - t0
    db.dispose()
    return seconds
