"""The SMSC peer both gateways bind to: ``masd sim smsc`` or the npm ``smpp`` server of
tests/interop/smsc.js, with its own counters read over its control port; and the ISMG of the CMPP rows,
``masd sim ismg``."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

from masd_bench.procs import ROOT, Proc, free_port, free_port_pair, http_get, masd_argv, port_open, wait_for
from masd_bench.rows import ACCOUNT, CMPP_ACCOUNT, NotMeasured


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


# Reports unanswered at once per ISMG session in the masd-cmpp-* rows. masd answers a DELIVER only once
# its report is stored, up to 1,000 reports a write; the ISMG's default of 16 would make that window the
# limit of the row, not masd (nor the simulator).
ISMG_DELIVER_WINDOW = 1000


class IsmgSimulator(Simulator):
    """The China Mobile ISMG of the masd-cmpp-* rows: ``masd sim ismg`` (CMPP 3.0), every SUBMIT answered
    at once and reported DELIVRD at once (``--report-delay 0``, ``--outcomes delivered=1``). Its control
    port speaks the same JSON lines as ``masd sim smsc``'s, so :meth:`Simulator.stats` reads it."""

    def __init__(self, work: Path) -> None:
        self.kind = "ismg"
        self.port = free_port_pair()
        self.control_port = self.port + 1
        argv = masd_argv(
            "sim",
            "ismg",
            "--port",
            str(self.port),
            "--control-port",
            str(self.control_port),
            "--account",
            ":".join(CMPP_ACCOUNT),
            "--report-delay",
            "0",
            "--outcomes",
            "delivered=1",
            "--deliver-window",
            str(ISMG_DELIVER_WINDOW),
        )
        self.proc = Proc("ismg", argv, log=work / "ismg.log")
        wait_for("the simulated ISMG to listen", lambda: port_open(self.port), 30, [self.proc])
        wait_for("the ISMG's control port", lambda: port_open(self.control_port), 30, [self.proc])
