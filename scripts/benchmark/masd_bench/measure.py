"""Measuring: CPU seconds and memory of a process from /proc, a meter over a window, percentiles, and
the receipts stored per second during and after a load."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a live process has used, from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14 and 15 of stat(5)


def proc_status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


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
