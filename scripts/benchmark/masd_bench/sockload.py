"""The socket load generator, a subprocess of the masd-socket row (``python -m masd_bench _sockload
SPEC``): non-blocking sockets and one selector keeping submits in flight on each connection and
acknowledging the receipts pushed back."""

from __future__ import annotations

import collections
import json
import selectors
import signal
import socket
import time
from pathlib import Path
from typing import Any

from masd_bench.measure import percentile


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
