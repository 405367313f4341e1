"""The SMSC peer both gateways bind to: ``masd sim smsc`` or the npm ``smpp`` server of
tests/interop/smsc.js, with its own counters read over its control port."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

from masd_bench.procs import ROOT, Proc, free_port, free_port_pair, http_get, masd_argv, port_open, wait_for
from masd_bench.rows import ACCOUNT, NotMeasured


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
