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
    masd-socket    masd's socket interface (docs/socket.md): --socket-connections connections, each of
                   its own app, each keeping --socket-pipeline single-recipient submits in flight and
                   acknowledging the receipts pushed to it; the load generator is a subprocess of this
                   script on non-blocking sockets, and its CPU use is reported so one can see it is not
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

    scripts/bench                          # every row, 30 s each, writes docs/benchmarks.md
    scripts/bench --quick --no-write       # a smoke run: 3 s each, 20,000 queued
    scripts/bench --rows masd-single,kannel-single --duration 60 --rounds 3
    masd bench --rows masd-batch --json    # the same, through the CLI
    scripts/bench --rows masd-socket --socket-connections 16

Missing tools (wrk, kannel) are installed from Debian's packages unless --no-install; a row whose tool
cannot be had is reported as not measured, with the reason. masd-socket needs neither.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import platform
import re
import selectors
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import types
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

# `masd bench` loads this file through importlib; dataclasses look their module up in sys.modules.
sys.modules.setdefault(__name__, types.ModuleType(__name__))

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
WRK_ROWS = (
    "masd-single",
    "kannel-single",
    "masd-single-hypercorn",
    "masd-paced",
    "kannel-paced",
    "masd-batch",
    "masd-single-intake",
    "masd-batch-intake",
    "masd-batch-send",
)
THROUGHPUT_ROWS = (*WRK_ROWS, "masd-socket", "masd-drain")
QUEUED_ROWS = ("masd-rss-1m", "masd-ready-1m")
ALL_ROWS = THROUGHPUT_ROWS + QUEUED_ROWS
FINAL_STATES = ("delivered", "undelivered", "expired", "rejected", "failed", "cancelled")
ACCOUNT = ("masd", "masd")
SERVICE_NUMBER = "106570001"


# ----- settings and results -------------------------------------------------------------------------------


@dataclasses.dataclass
class Settings:
    rows: list[str]
    duration: float
    rounds: int
    connections: int
    threads: int
    window: int
    batch_size: int
    paced_rate: float
    socket_connections: int
    socket_pipeline: int  # masd's [socket] pipeline, and the submits each connection keeps in flight
    queued: int
    drain_timeout: float
    smsc: str  # "masd" (masd sim smsc) or "node" (tests/interop/smsc.js)
    install: bool
    keep: bool
    workdir: Path
    quick: bool
    intake_workers: int = 1
    send_workers: int = 1  # [send] workers of the masd-batch-send row
    drain_queued: int = 200_000  # messages queued before the masd-drain row starts masd


@dataclasses.dataclass
class Row:
    row: str
    run: int = 1
    measured: bool = True
    note: str = ""
    accepted: int | None = None  # messages accepted by the gateway
    receipts: int | None = None  # messages whose delivery receipt was stored
    requests: int | None = None  # HTTP requests wrk completed (masd-socket: submit frames sent)
    errors: int | None = None  # non-2xx answers and socket errors seen by wrk (masd-socket: error frames)
    accept_rate: float | None = None  # messages accepted per second of the load
    e2e_rate: float | None = None  # receipts stored per second, first accept → last receipt
    window_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    http_p50_ms: float | None = None  # wrk's request latency (masd-socket: submit → submit_ack)
    http_p99_ms: float | None = None
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)  # CPU seconds per component
    cpu_wall_s: float | None = None  # the wall-clock seconds those CPU seconds were counted over
    smsc_submits: int | None = None
    smsc_rate: float | None = None  # the simulator's own submit_sm per second over the window
    value: float | None = None  # the figure of a memory or start-up row
    unit: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    commands: list[str] = dataclasses.field(default_factory=list)


class NotMeasured(Exception):
    """A row that cannot be measured here; the message says why."""


# ----- processes ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A port P with P+1 free too (masd sim smsc puts its control port at P+1)."""
    for _ in range(200):
        p = free_port()
        if p >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no two adjacent free ports")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a live process has used, from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14 and 15 of stat(5)


def child_pids(pid: int, marker: str) -> list[int]:
    """The children of ``pid`` whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid and marker in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def proc_status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Proc:
    """A subprocess with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        cwd: Path | None = None,
        stdout: int | IO[Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._log = log.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log if stdout is None else stdout,
            stderr=self._log,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.pid = self.popen.pid

    def cpu(self) -> float:
        return proc_cpu(self.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with code {self.popen.returncode}:\n{tail}")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


def wait_for(what: str, check: Callable[[], bool], timeout: float, procs: Sequence[Proc] = ()) -> float:
    """Poll ``check`` until true; return the seconds it took. A process that dies meanwhile fails it."""
    t0 = time.monotonic()
    while True:
        if check():
            return time.monotonic() - t0
        for p in procs:
            p.check()
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.01)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def ensure_tool(binary: str, package: str, install: bool) -> str:
    """The path of ``binary``, installing Debian's ``package`` when it is missing and allowed."""
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if found:
        return found
    if not install:
        raise NotMeasured(f"{binary} is not installed (Debian package {package}; --no-install was given)")
    if shutil.which("apt-get") is None:
        raise NotMeasured(f"{binary} is not installed and apt-get is not available to install {package}")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print(f"installing {package} from Debian's packages", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    ok = subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", package], env=env, capture_output=True)
    if ok.returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, capture_output=True)
        ok = subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", package], env=env, capture_output=True)
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if not found:
        raise NotMeasured(f"{binary} could not be installed: {ok.stderr.decode(errors='replace')[-300:]}")
    return found


def masd_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "masd.cli", *args]


def shown(argv: Sequence[str], work: Path) -> str:
    """A command line as the report shows it: no absolute paths of this machine."""
    out = []
    masd_cli = list(argv[:3]) == [sys.executable, "-m", "masd.cli"]
    for i, a in enumerate(argv):
        if masd_cli and i < 2:
            continue
        if masd_cli and i == 2:
            a = "masd"
        elif i == 0 and a == sys.executable:
            a = "python"
        a = a.replace(str(ROOT) + "/", "")
        if a.startswith("/usr/") or a.startswith("/bin/"):
            a = Path(a).name
        out.append(a)
    # After quoting, so that $WORK stays expandable when the line is pasted into a shell.
    return shlex.join(out).replace(str(work), "$WORK")


# ----- the simulated SMSC ---------------------------------------------------------------------------------


class Simulator:
    """The SMSC both gateways bind to: ``masd sim smsc`` (default) or tests/interop/smsc.js."""

    def __init__(self, kind: str, work: Path, *, throttle_every: int = 0, receipts: bool = True) -> None:
        self.kind = kind
        self.port = free_port_pair()
        if kind == "masd":
            argv = masd_argv(
                "sim",
                "smsc",
                "--port",
                str(self.port),
                "--account",
                ":".join(ACCOUNT),
                "--receipt-delay",
                "0",
            )
            if throttle_every:
                argv += ["--throttle-every", str(throttle_every)]
            if not receipts:
                argv += ["--outcomes", "none=1"]
            self.control_port = self.port + 1
        else:
            self.control_port = free_port()
            node = shutil.which("node")
            if node is None:
                raise NotMeasured("node is not installed (needed by --smsc node)")
            argv = [
                node,
                str(ROOT / "tests" / "interop" / "smsc.js"),
                "--port",
                str(self.port),
                "--control-port",
                str(self.control_port),
                "--system-id",
                ACCOUNT[0],
                "--password",
                ACCOUNT[1],
                "--receipt-delay",
                "0",
                "--keep",
                "0",
                "--throttle-every",
                str(throttle_every),
            ]
        self.proc = Proc("smsc", argv, log=work / "smsc.log")
        wait_for("the simulated SMSC to listen", lambda: port_open(self.port), 30, [self.proc])
        wait_for("the SMSC's control port", lambda: port_open(self.control_port), 30, [self.proc])

    def stats(self) -> dict[str, Any]:
        if self.kind == "node":
            code, body = http_get(f"http://127.0.0.1:{self.control_port}/stats")
            return json.loads(body) if code == 200 else {}
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=5) as s:
            s.sendall(b'{"op": "stats"}\n')
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        answer = json.loads(buf)
        return dict(answer.get("stats", answer))

    def submits(self) -> int:
        st = self.stats()
        return int(st.get("submits", 0))

    def mt_accepted(self) -> int:
        st = self.stats()
        return int(st.get("accepted", st.get("submits_ok", 0)))


# ----- wrk --------------------------------------------------------------------------------------------------

# Every script numbers its messages per thread (thread number × 10^9 + counter), so each text is unique.
# wrk is built on LuaJIT, whose FFI gives the wall clock in milliseconds.
LUA_COMMON = """\
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_usec; }} bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]
local tv = ffi.new("bench_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end
local counter = 0
local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
local function next_n()
  counter = counter + 1
  return (tid or 0) * 1000000000 + counter
end
local function number(n)
  return string.format("138%08d", n % 100000000)
end
"""

LUA_MASD_SINGLE = (
    LUA_COMMON
    + """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
function request()
  local n = next_n()
  return wrk.format(nil, "/v1/messages", nil,
    string.format('{{"to":["%s"],"text":"bench %d"}}', number(n), n))
end
"""
)

LUA_MASD_BATCH = (
    LUA_COMMON
    + """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
function request()
  local parts = {{}}
  for i = 1, {batch} do
    local n = next_n()
    parts[i] = string.format('{{"to":["%s"],"text":"bench %d"}}', number(n), n)
  end
  return wrk.format(nil, "/v1/messages/batch", nil, '{{"messages":[' .. table.concat(parts, ",") .. ']}}')
end
"""
)

# Kannel's script puts the wall clock (ms) into the dlr-url so the sink can compute request → receipt.
LUA_KANNEL = (
    LUA_COMMON
    + """\
local function esc(s)
  return (string.gsub(s, "[^%w%-_%.~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end
function request()
  local n = next_n()
  local dlr = string.format("http://127.0.0.1:{sink}/dlr?id=%d&t=%d&type=%%d", n, math.floor(now_ms()))
  return wrk.format("GET", "/cgi-bin/sendsms?username=bench&password=bench&from={sender}&to=" .. number(n)
    .. "&text=bench+" .. n .. "&dlr-mask=1&dlr-url=" .. esc(dlr))
end
"""
)


def pacing(s: Settings) -> str:
    """Lua that offers --paced-rate requests per second in all: wrk asks delay() how many ms to wait before
    a connection's next request; each call books the thread's next free slot on a fixed schedule, so the
    rate holds whatever the answers' own times are (as long as the connections suffice)."""
    interval = s.threads / s.paced_rate * 1000
    return (
        "local next_slot = 0\n"
        "function delay()\n"
        "  local now = now_ms()\n"
        f"  next_slot = math.max(next_slot + {interval:.4f}, now)\n"
        "  return math.floor(next_slot - now)\n"
        "end\n"
    )


@dataclasses.dataclass
class WrkResult:
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    argv: list[str]


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        return float("nan")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]
    return float(m.group(1)) * scale


def run_wrk(wrk: str, script: Path, url: str, s: Settings, log: Path) -> WrkResult:
    argv = [
        wrk,
        "-c",
        str(s.connections),
        "-t",
        str(s.threads),
        "-d",
        f"{s.duration:g}s",
        "--timeout",
        "30s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=s.duration + 120)
    log.write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr[-500:]}")
    text = out.stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise RuntimeError(f"cannot read wrk's output: {text[-500:]}")
    requests = int(m.group(1))
    seconds = _ms(m.group(2) + m.group(3)) / 1000
    non2xx_m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non2xx = int(non2xx_m.group(1)) if non2xx_m else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    socket_errors = sum(int(x) for x in sock.groups()) if sock else 0
    rps_m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"\s50%\s+(\S+)", text)
    p99 = re.search(r"\s99%\s+(\S+)", text)
    return WrkResult(
        requests=requests,
        seconds=seconds,
        non2xx=non2xx,
        socket_errors=socket_errors,
        rps=float(rps_m.group(1)) if rps_m else requests / max(seconds, 1e-9),
        p50_ms=_ms(p50.group(1)) if p50 else None,
        p99_ms=_ms(p99.group(1)) if p99 else None,
        argv=argv,
    )


# ----- statistics -------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


class CpuMeter:
    """CPU seconds of some processes between start() and stop()."""

    def __init__(self, procs: dict[str, int]) -> None:
        self.procs = procs
        self.t0: dict[str, float] = {}
        self.result: dict[str, float] = {}

        self.wall = 0.0
        self._t = 0.0

    def start(self) -> None:
        self.t0 = {name: proc_cpu(pid) for name, pid in self.procs.items()}
        self._t = time.monotonic()

    def stop(self) -> dict[str, float]:
        self.result = {name: round(proc_cpu(pid) - self.t0[name], 2) for name, pid in self.procs.items()}
        self.wall = round(time.monotonic() - self._t, 2)
        return self.result


# ----- masd -------------------------------------------------------------------------------------------------

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
) -> Path:
    path = work / "masd.toml"
    sock = SOCKET_OFF if socket_port is None else SOCKET_ON.format(port=socket_port, pipeline=socket_pipeline)
    if intake_port is not None:
        sock += f'\n\n[intake]\nworkers = {intake_workers}\nlisten = "127.0.0.1:{intake_port}"'
    if send_workers:
        sock += f"\n\n[send]\nworkers = {send_workers}"
    path.write_text(
        MASD_CONFIG.format(
            socket=sock,
            data_dir=(work / "data").as_posix(),
            http_port=http_port,
            http_server=http_server,
            smpp_port=smpp_port,
            window=window,
            sender=SERVICE_NUMBER,
            system_id=ACCOUNT[0],
            password=ACCOUNT[1],
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


def drain(
    what: str,
    remaining: Callable[[], int],
    *,
    timeout: float,
    stall: float,
    procs: Sequence[Proc] = (),
) -> tuple[int, str]:
    """Wait until ``remaining()`` is 0; give up after ``timeout`` or when it has not moved for ``stall``."""
    t0 = time.monotonic()
    last = remaining()
    moved = t0
    while last > 0:
        time.sleep(0.2)
        for p in procs:
            p.check()
        now = remaining()
        if now != last:
            last, moved = now, time.monotonic()
        if time.monotonic() - moved > stall:
            return last, f"{last} {what} still pending after {stall:.0f} s without progress"
        if time.monotonic() - t0 > timeout:
            return last, f"{last} {what} still pending after {timeout:.0f} s"
    return 0, ""


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


def masd_throughput(s: Settings, wrk: str, mode: str, run: int) -> Row:
    row = Row(f"masd-{mode}", run)
    work = s.workdir / f"{row.row}-{run}"
    work.mkdir(parents=True)
    sim = Simulator(s.smsc, work)
    row.commands.append(shown(sim.proc.argv, work))
    procs: list[Proc] = [sim.proc]
    try:
        http_port = free_port()
        # masd-batch-send: intake and send workers both; the window is shared out between the daemon and
        # its send workers, so masd never has more submits outstanding than Kannel.
        sending = mode == "batch-send"
        intake_port = free_port() if mode.endswith("-intake") or sending else None
        config = write_masd_config(
            work,
            http_port=http_port,
            smpp_port=sim.port,
            window=max(1, s.window // (1 + s.send_workers)) if sending else s.window,
            http_server="hypercorn" if mode == "single-hypercorn" else "builtin",
            intake_port=intake_port,
            intake_workers=s.intake_workers,
            send_workers=s.send_workers if sending else 0,
        )
        key = create_app_key(config, work, row.commands)
        masd = start_masd(config, work, row.commands)
        procs.append(masd)
        base = f"http://127.0.0.1:{http_port}"
        wait_for("masd's /readyz", lambda: http_get(base + "/readyz")[0] == 200, 60, procs)
        script = work / f"{mode}.lua"
        batch = mode.startswith("batch")
        lua = LUA_MASD_BATCH if batch else LUA_MASD_SINGLE
        script.write_text(lua.format(key=key, batch=s.batch_size) + (pacing(s) if mode == "paced" else ""))
        watched = {"masd": masd.pid, "smsc": sim.proc.pid}
        if intake_port is not None:
            # The workers' CPU counts as masd's: they are children of the daemon.
            base = f"http://127.0.0.1:{intake_port}"
            watched.update(
                (f"intake{i}", pid) for i, pid in enumerate(child_pids(masd.pid, "masd.interfaces.intake"))
            )
            senders = child_pids(masd.pid, "masd.send_workers")
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
        if mode.startswith("batch") and row.extra.get("receipts_per_s_after_load"):
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
    finally:
        for p in reversed(procs):
            p.stop()
    return row


def split_by_load(done: Sequence[tuple[float, float]], first: float, last: float) -> dict[str, Any]:
    """Receipts stored per second while messages were still being accepted, and after: a gateway that
    accepts faster than it sends drains its backlog after the load, and the two rates say how much the
    intake slowed the drain."""
    during = sum(1 for _, d in done if d <= last)
    after = len(done) - during
    span_after = (done[-1][1] - last) if done and after else 0.0
    return {
        "receipts_per_s_during_load": round(during / (last - first), 1) if last > first else None,
        "receipts_per_s_after_load": round(after / span_after, 1) if span_after > 0 else None,
    }


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
    """The masd-socket row: a subprocess of this script (`bench.py _sockload SPEC`) drives masd's socket
    interface; throughput and latency come from masd's deliveries table as in the other masd rows, and
    the generator reports what it saw (answers, pushed receipts) and its own CPU time."""
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
        gen_argv = [sys.executable, str(Path(__file__).resolve()), "_sockload", str(spec)]
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
            f"{g['receipts']:,} receipts pushed, submit → receipt frame p50 {_lat(g['push_p50_ms'])}, "
            f"p99 {_lat(g['push_p99_ms'])}"
        )
        row.note = "; ".join(notes)
    finally:
        if gen is not None:
            gen.stop()
        for p in reversed(procs):
            p.stop()
    return row


# ----- Kannel -----------------------------------------------------------------------------------------------

KANNEL_CONF = """\
# Generated by scripts/bench.py: bearerbox + smsbox, one SMPP 3.4 bind (transceiver) to the simulated SMSC.
group = core
admin-port = {admin_port}
admin-password = bench
status-password = bench
admin-allow-ip = "127.0.0.1"
smsbox-port = {box_port}
box-allow-ip = "127.0.0.1"
log-file = "{work}/bearerbox.log"
log-level = 2
dlr-storage = internal
store-type = file
store-location = "{work}/kannel.store"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {box_port}
sendsms-port = {sendsms_port}
sendsms-interface = 127.0.0.1
log-file = "{work}/smsbox.log"
log-level = 2

group = sendsms-user
username = bench
password = bench
user-allow-ip = "127.0.0.1"
max-messages = 10
concatenation = true

group = smsc
smsc = smpp
smsc-id = sim
host = 127.0.0.1
port = {smpp_port}
transceiver-mode = true
smsc-username = "{system_id}"
smsc-password = "{password}"
system-type = ""
max-pending-submits = {window}
enquire-link-interval = 30
reconnect-delay = 1

group = sms-service
keyword = default
text = "ok"
max-messages = 0
"""


def kannel_version(bearerbox: str) -> str:
    out = subprocess.run([bearerbox, "--version"], capture_output=True, text=True, timeout=10)
    m = re.search(r"version `([^']+)'", out.stdout + out.stderr)
    return m.group(1) if m else "unknown"


def kannel_status(admin_port: int) -> str:
    code, body = http_get(f"http://127.0.0.1:{admin_port}/status.txt?password=bench")
    return body.decode(errors="replace") if code == 200 else ""


def kannel_sent(status: str) -> int | None:
    m = re.search(r"SMS: received [^\n]*?sent (\d+)", status) or re.search(r"sent (\d+) \(", status)
    return int(m.group(1)) if m else None


def kannel_throughput(s: Settings, wrk: str, run: int, *, paced: bool = False) -> Row:
    bearerbox = ensure_tool("bearerbox", "kannel", s.install)
    smsbox = ensure_tool("smsbox", "kannel", s.install)
    row = Row("kannel-paced" if paced else "kannel-single", run)
    work = s.workdir / f"{row.row}-{run}"
    work.mkdir(parents=True)
    sim = Simulator(s.smsc, work)
    row.commands.append(shown(sim.proc.argv, work))
    procs: list[Proc] = [sim.proc]
    try:
        sink_port = free_port()
        sink_argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "_sink",
            str(sink_port),
            str(work / "dlr.tsv"),
        ]
        sink = Proc("dlr-sink", sink_argv, log=work / "sink.log")
        procs.append(sink)
        row.commands.append(shown(sink_argv, work))
        ports = {"admin_port": free_port(), "box_port": free_port(), "sendsms_port": free_port()}
        conf = work / "kannel.conf"
        conf.write_text(
            KANNEL_CONF.format(
                work=work.as_posix(),
                smpp_port=sim.port,
                window=s.window,
                system_id=ACCOUNT[0],
                password=ACCOUNT[1],
                **ports,
            )
        )
        bb = Proc("bearerbox", [bearerbox, str(conf)], log=work / "bearerbox.out")
        procs.append(bb)
        row.commands.append(shown(bb.argv, work))
        wait_for("bearerbox's admin port", lambda: port_open(ports["admin_port"]), 30, procs)
        sb = Proc("smsbox", [smsbox, str(conf)], log=work / "smsbox.out")
        procs.append(sb)
        row.commands.append(shown(sb.argv, work))
        wait_for("smsbox's sendsms port", lambda: port_open(ports["sendsms_port"]), 30, procs)
        wait_for(
            "Kannel's SMSC link to come online",
            lambda: "(online" in kannel_status(ports["admin_port"]),
            30,
            procs,
        )
        wait_for("the DLR sink", lambda: port_open(sink_port), 30, procs)
        script = work / "kannel.lua"
        script.write_text(
            LUA_KANNEL.format(sink=sink_port, sender=SERVICE_NUMBER) + (pacing(s) if paced else "")
        )
        meter = CpuMeter({"bearerbox": bb.pid, "smsbox": sb.pid, "dlr-sink": sink.pid, "smsc": sim.proc.pid})
        sim_before = sim.submits()
        meter.start()
        w = run_wrk(
            wrk, script, f"http://127.0.0.1:{ports['sendsms_port']}/cgi-bin/sendsms", s, work / "wrk.log"
        )
        row.commands.append(shown(w.argv, work))
        accepted_http = w.requests - w.non2xx

        def count() -> int:
            code, body = http_get(f"http://127.0.0.1:{sink_port}/count")
            return int(body) if code == 200 else 0

        # Kannel may have taken a request whose answer wrk did not wait for at the end of the run: count
        # what it says it sent as accepted when that is more.
        def pending() -> int:
            sent = kannel_sent(kannel_status(ports["admin_port"])) or 0
            return max(accepted_http, sent) - count()

        left, row.note = drain("receipts", pending, timeout=s.drain_timeout, stall=15, procs=procs)
        row.cpu = meter.stop()
        row.cpu_wall_s = meter.wall
        sim_after = sim.submits()
        status = kannel_status(ports["admin_port"])
        http_get(f"http://127.0.0.1:{sink_port}/dump")
        records = []
        for line in (work / "dlr.tsv").read_text().splitlines():
            ident, sent_ms, kind, arrived = line.split("\t")
            records.append(
                (int(ident) if ident.isdigit() else ident, float(sent_ms) / 1000, kind, float(arrived))
            )
        delivered = [r for r in records if r[2] == "1"]
        distinct = {r[0] for r in delivered}
        lat = sorted((r[3] - r[1]) * 1000 for r in delivered)
        sent = kannel_sent(status)
        row.requests = w.requests
        row.errors = w.non2xx + w.socket_errors
        row.accepted = max(accepted_http, sent or 0)
        row.receipts = len(distinct)
        row.accept_rate = round(accepted_http / w.seconds, 1)
        if delivered:
            first = min(r[1] for r in delivered)
            row.window_s = round(max(r[3] for r in delivered) - first, 3)
            row.e2e_rate = round(len(distinct) / max(row.window_s, 1e-9), 1)
        row.p50_ms = percentile(lat, 50)
        row.p99_ms = percentile(lat, 99)
        row.http_p50_ms, row.http_p99_ms = w.p50_ms, w.p99_ms
        row.smsc_submits = sim_after - sim_before
        if row.window_s:
            row.smsc_rate = round(row.smsc_submits / row.window_s, 1)
        row.extra = {
            "kannel_sent": sent,
            "accepted_http": accepted_http,
            "dlr_calls": len(records),
            "dlr_duplicates": len(delivered) - len(distinct),
            "dlr_types": {k: sum(1 for r in records if r[2] == k) for k in sorted({r[2] for r in records})},
            "wrk_seconds": w.seconds,
            "requests_per_s": w.rps,
            "undrained": left,
        }
    finally:
        for p in reversed(procs):
            p.stop()
    return row


# ----- the DLR sink (a subprocess: `bench.py _sink PORT FILE`) -------------------------------------------


def run_sink(port: int, out: Path) -> int:
    """A small HTTP/1.1 server (keep-alive) that records every DLR Kannel calls back with: GET
    /dlr?id=..&t=..&type=.. → one line of id, t, type and the arrival time. /count answers how many;
    /dump writes them to ``out``."""
    records: list[str] = []

    def dump() -> None:
        out.write_text("".join(records))

    def handle(target: str) -> bytes:
        path, _, query = target.partition("?")
        if path == "/dlr":
            q = urllib.parse.parse_qs(query)
            records.append(
                "\t".join((q.get("id", ["?"])[0], q.get("t", ["0"])[0], q.get("type", ["?"])[0]))
                + f"\t{time.time():.6f}\n"
            )
            return b"ok"
        if path == "/count":
            return str(len(records)).encode()
        if path == "/dump":
            dump()
            return str(len(records)).encode()
        return b"?"

    class Http(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end]
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                body_len = int(m.group(1)) if m else 0
                if len(self.buf) < end + 4 + body_len:
                    return
                self.buf = self.buf[end + 4 + body_len :]
                parts = head.split(b"\r\n", 1)[0].split(b" ")
                body = handle(parts[1].decode("latin-1") if len(parts) > 1 else "/")
                close = b"connection: close" in head.lower() or parts[-1] == b"HTTP/1.0"
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s"
                    % (len(body), b"Connection: close\r\n" if close else b"", body)
                )
                if close:
                    self.transport.close()
                    return

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        server = await loop.create_server(Http, "127.0.0.1", port, backlog=1024)
        async with server:
            await stop.wait()
        dump()

    asyncio.run(serve())
    return 0


# ----- the socket load generator (a subprocess: `bench.py _sockload SPEC`) --------------------------------


class _LoadConn:
    """One connection of the socket load: what it has sent and what it is owed."""

    __slots__ = (
        "acked",
        "inbuf",
        "index",
        "last_event",
        "out",
        "pong",
        "ready",
        "receipted",
        "sent_at",
        "sock",
        "waiting",
        "writing",
    )

    def __init__(self, index: int, sock: socket.socket) -> None:
        self.index = index
        self.sock = sock
        self.inbuf = bytearray()
        self.out = bytearray()
        self.writing = False  # registered for EVENT_WRITE
        self.ready = False  # logged in
        self.pong = False
        self.sent_at: list[float] = []  # submit n (its ref is "n") was sent at sent_at[n]
        self.waiting: collections.deque[int] = collections.deque()  # unanswered submits, oldest first
        self.receipted: set[int] = set()
        self.last_event = 0
        self.acked = 0


def _pct_ms(values: list[float], q: float) -> float | None:
    got = percentile(values, q)
    return None if got is None else round(got * 1000, 2)


def run_sockload(spec_path: Path) -> int:
    """Drive masd's socket interface as the spec says, then write what was seen to spec["out"].

    Phases: log every connection in; for ``duration`` seconds keep ``inflight`` submits unanswered on
    each connection (a new one for every answer); wait for the answers still owed; then wait for the
    receipts of every accepted submit (acknowledging them as they come) until none has come for
    ``stall`` seconds; ping every connection (so the acks are stored) and close. Non-blocking sockets
    and one selector, no framework: the per-message work is one small formatted line out and one
    json.loads per frame in."""
    spec = json.loads(spec_path.read_text())
    duration, inflight = float(spec["duration"]), int(spec["inflight"])
    stall, timeout = float(spec["stall"]), float(spec["timeout"])
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    sel = selectors.DefaultSelector()
    conns: list[_LoadConn] = []
    for i, key in enumerate(spec["keys"]):
        sock = socket.create_connection(("127.0.0.1", int(spec["port"])), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        c = _LoadConn(i, sock)
        c.out += json.dumps({"type": "login", "key": key}).encode() + b"\n"
        sel.register(sock, selectors.EVENT_READ, c)
        conns.append(c)

    ack_lat: list[float] = []
    push_lat: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    states: collections.Counter[str] = collections.Counter()
    acks = receipts = duplicates = duplicate_pushes = 0
    last_receipt_wall = 0.0
    load_started_wall = 0.0

    def fill(c: _LoadConn, now: float) -> None:
        base = c.index * 10_000_000
        while len(c.waiting) < inflight:
            n = len(c.sent_at)
            c.sent_at.append(now)
            c.waiting.append(n)
            c.out += (
                f'{{"type":"submit","ref":"{n}","to":"138{(base + n) % 100_000_000:08d}",'
                f'"text":"bench {c.index}-{n}"}}\n'
            ).encode()

    def flush(c: _LoadConn) -> None:
        if c.out:
            try:
                sent = c.sock.send(c.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            del c.out[:sent]
        want = bool(c.out)
        if want != c.writing:
            c.writing = want
            sel.modify(c.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0), c)

    def on_frame(c: _LoadConn, f: dict[str, Any], now: float) -> None:
        nonlocal acks, receipts, duplicates, duplicate_pushes, last_receipt_wall
        kind = f.get("type")
        if kind == "receipt":
            n = int(f["ref"])
            c.last_event = max(c.last_event, int(f["event"]))
            if n in c.receipted:
                duplicate_pushes += 1
                return
            c.receipted.add(n)
            receipts += 1
            push_lat.append(now - c.sent_at[n])
            states[f["state"]] += 1
            last_receipt_wall = time.time()
        elif kind == "submit_ack":
            n = c.waiting.popleft()
            ack_lat.append(now - c.sent_at[n])
            acks += 1
            duplicates += bool(f.get("duplicate"))
        elif kind == "error":
            errors[str(f.get("code"))] += 1
            if f.get("ref") is not None and c.waiting:
                c.waiting.popleft()
            elif not c.ready:
                raise RuntimeError(f"login refused: {f}")
        elif kind == "login_ok":
            c.ready = True
        elif kind == "pong":
            c.pong = True
        elif kind == "reply":
            c.last_event = max(c.last_event, int(f["event"]))

    phase = "login"
    t0 = time.monotonic()
    load_t0 = load_end = closing_t = cpu_load0 = load_cpu = 0.0
    progress = t0
    for c in conns:
        flush(c)
    while True:
        now = time.monotonic()
        if phase == "login":
            if all(c.ready for c in conns):
                phase, load_t0, cpu_load0 = "load", now, time.process_time()
                load_started_wall = time.time()
                for c in conns:
                    fill(c, now)
                    flush(c)
            elif now - t0 > 30:
                raise RuntimeError("masd did not answer every login within 30 s")
        if phase == "load" and (now - load_t0 >= duration or stop):
            phase = "answers"
        if phase == "answers" and not any(c.waiting for c in conns):
            phase, load_end, progress = "receipts", now, now
            load_cpu = time.process_time() - cpu_load0
        if phase == "receipts" and (
            receipts >= acks or stop or now - progress > stall or now - load_end > timeout
        ):
            phase, closing_t = "closing", now
            for c in conns:
                c.out += b'{"type":"ping","id":1}\n'
                flush(c)
        if phase == "closing" and (all(c.pong for c in conns) or now - closing_t > 10):
            break
        for key, mask in sel.select(timeout=0.05):
            c = key.data
            if mask & selectors.EVENT_READ:
                try:
                    data = c.sock.recv(262_144)
                except (BlockingIOError, InterruptedError):
                    data = None
                if data == b"":
                    raise RuntimeError(f"masd closed connection {c.index}")
                if data:
                    c.inbuf += data
                    now = time.monotonic()
                    start = 0
                    while (end := c.inbuf.find(b"\n", start)) >= 0:
                        on_frame(c, json.loads(c.inbuf[start:end]), now)
                        start = end + 1
                    del c.inbuf[:start]
                    progress = now
                    if phase == "load":
                        fill(c, now)
                    if c.last_event > c.acked:
                        c.out += b'{"type":"ack","event":%d}\n' % c.last_event
                        c.acked = c.last_event
            flush(c)
    for c in conns:
        c.sock.close()
    load_seconds = max(load_end - load_t0, 1e-9)
    pushed_window = last_receipt_wall - load_started_wall if receipts else 0.0
    result = {
        "connections": len(conns),
        "inflight": inflight,
        "submitted": sum(len(c.sent_at) for c in conns),
        "acks": acks,
        "duplicates": duplicates,
        "errors": dict(errors),
        "receipts": receipts,
        "duplicate_pushes": duplicate_pushes,
        "states": dict(states),
        "load_seconds": round(load_seconds, 3),
        "load_cpu_seconds": round(load_cpu, 3),
        "cpu_seconds": round(time.process_time(), 3),
        "ack_p50_ms": _pct_ms(sorted(ack_lat), 50),
        "ack_p99_ms": _pct_ms(sorted(ack_lat), 99),
        "push_p50_ms": _pct_ms(sorted(push_lat), 50),
        "push_p99_ms": _pct_ms(sorted(push_lat), 99),
        "pushed_e2e_rate": round(receipts / pushed_window, 1) if pushed_window > 0 else None,
        "stopped": stop,
    }
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


# ----- 1,000,000 queued -------------------------------------------------------------------------------------


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


# ----- the report -------------------------------------------------------------------------------------------


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


def _lat(ms: float | None) -> str:
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
            f"{_f(r.e2e_rate)} | {_lat(r.p50_ms)} | {_lat(r.p99_ms)} | {http} | {_f(r.smsc_rate)} | "
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
- masd-socket: the socket interface (docs/socket.md), {sc} connections, each logged in as its own app
  (an app's receipts are pushed to one connection), each keeping {sp} single-recipient submits
  unanswered (masd `[socket] pipeline = {sp}`) for {d} s and acknowledging the receipts pushed to it.
  The load generator is a subprocess of scripts/bench.py on non-blocking sockets (one selector, one
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
        "Written by `scripts/bench` (scripts/bench.py); every figure below was measured by that run on the "
        "machine described, nothing is estimated. Run it again to measure yours.",
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
        "written by scripts/bench.py (`MASD_CONFIG`, `KANNEL_CONF`, `LUA_*`, `masd_socket`); "
        "`bench.py _sockload` is its socket load generator (`run_sockload`).",
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


# ----- main -----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", default=",".join(ALL_ROWS), help=f"comma-separated: {', '.join(ALL_ROWS)}")
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
                if "masd-single-intake" in s.rows:
                    attempt("masd-single-intake", run, lambda: [masd_throughput(s, w, "single-intake", run)])
                if "masd-paced" in s.rows:
                    attempt("masd-paced", run, lambda: [masd_throughput(s, w, "paced", run)])
                if "kannel-paced" in s.rows:
                    attempt("kannel-paced", run, lambda: [kannel_throughput(s, w, run, paced=True)])
            if "masd-batch" in s.rows:
                attempt("masd-batch", 1, lambda: [masd_throughput(s, w, "batch", 1)])
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


if __name__ == "__main__":
    sys.exit(main())
