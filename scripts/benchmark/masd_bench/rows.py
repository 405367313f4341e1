"""What the benchmark measures: the names of its rows, the settings of a run and the Row of figures
each run gives (or the reason it gives none)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

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
    "masd-cmpp-single",  # the single and batch loads through a CMPP channel to masd sim ismg
    "masd-cmpp-batch",
)
THROUGHPUT_ROWS = (*WRK_ROWS, "masd-socket", "masd-drain")
QUEUED_ROWS = ("masd-rss-1m", "masd-ready-1m")
ALL_ROWS = THROUGHPUT_ROWS + QUEUED_ROWS
# A run without --rows: every row but masd-cmpp-batch, whose backlog (the batch load's, sent at the CMPP
# row's pace) adds about three minutes to a full run for little that masd-cmpp-single and masd-batch do not
# show; ask for it by name.
DEFAULT_ROWS = tuple(r for r in ALL_ROWS if r != "masd-cmpp-batch")
FINAL_STATES = ("delivered", "undelivered", "expired", "rejected", "failed", "cancelled")
ACCOUNT = ("masd", "masd")
CMPP_ACCOUNT = ("901234", "secret")  # sp_id (6 characters) and secret of the masd-cmpp-* rows
SERVICE_NUMBER = "106570001"


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
