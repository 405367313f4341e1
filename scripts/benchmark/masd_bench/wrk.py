"""Load generation with wrk: the Lua scripts (every message unique, a fixed pace if asked), running wrk
and reading its figures."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

from masd_bench.rows import Settings

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
