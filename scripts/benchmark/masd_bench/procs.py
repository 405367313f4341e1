"""The processes a benchmark run starts and waits for: free ports, a subprocess with its log, polling
until something answers, tools installed from Debian's packages, and command lines shown without this
machine's paths."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from masd_bench.measure import proc_cpu
from masd_bench.rows import NotMeasured

# The masd checkout this benchmark lives in (scripts/benchmark/masd_bench/procs.py): the report is
# written to its docs/, the Node SMSC is its tests/interop/smsc.js.
ROOT = Path(__file__).resolve().parents[3]


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
