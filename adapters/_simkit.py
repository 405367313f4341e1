"""What the simulated carriers (``smpp.smsc``, ``cmpp.ismg``, ``sgip.smg``, ``smgp.smgw``) share beside
their protocols: the listeners and the control port's JSON-lines loop, the record file and its flushes,
the outcome mix and the report delay (their option readers and their draws), a token bucket for "above
a rate", accounts given as ``id:secret`` and texts cut into parts between characters. Each simulator
keeps its own options, error texts where they differ, log lines and counters."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import json
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import IO, Any, Protocol

import trio

from ._journal import number

__all__ = [
    "CONTROL_HOST",
    "ControlOp",
    "OutcomeDraw",
    "RecordFile",
    "Simulator",
    "TokenBucket",
    "account_list",
    "answer_control",
    "check_counts",
    "check_delay",
    "check_outcomes",
    "check_ports",
    "check_seconds",
    "cut_text",
    "draw_delay",
    "open_control",
    "out_of_order",
    "outcome_or_stat",
    "parse_delay",
    "parse_weights",
    "peer_of",
    "port_of",
    "public_view",
    "record_line",
    "request_str",
    "serve_control",
    "serve_simulator",
    "without_udh",
]

CONTROL_HOST = "127.0.0.1"  # the control port has no authentication: never anything but loopback
_CONTROL_MAX = 1 << 20  # nobody sends a megabyte of control request; it is not a client of ours
_FLUSH_EVERY = 0.1  # seconds between record flushes while serving


# ----- options --------------------------------------------------------------------------------------------


def account_list(specs: Iterable[str], form: str) -> dict[str, str]:
    """``["id:secret", …]`` → accounts (id → secret); ValueError naming ``form`` (``"sp_id:secret"``)
    for an entry without a colon or an id."""
    accounts: dict[str, str] = {}
    for spec in specs:
        name, sep, secret = spec.partition(":")
        if not sep or not name:
            raise ValueError(f"account {spec!r} is not {form}")
        accounts[name] = secret
    return accounts


def check_counts(settings: object, names: Iterable[str]) -> None:
    """ValueError naming the first of the settings ``names`` below 0."""
    for name in names:
        if getattr(settings, name) < 0:
            raise ValueError(f"{name} must be >= 0")


def check_seconds(settings: object, names: Iterable[str]) -> None:
    """ValueError naming the first of the settings ``names`` that is not a finite number >= 0."""
    for name in names:
        value = getattr(settings, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0")


def check_ports(port: int, control_port: int | None) -> None:
    if not 0 <= port <= 65535 or not (control_port is None or 0 <= control_port <= 65535):
        raise ValueError("ports must be 0 … 65535")


def public_view(settings: Any) -> dict[str, Any]:
    """A simulator's settings (a dataclass) JSON-ready: its accounts' ids without their secrets, its
    record file's path as text."""
    data = dataclasses.asdict(settings)
    data["accounts"] = sorted(settings.accounts)
    data["record"] = None if settings.record is None else str(settings.record)
    return data


def outcome_or_stat(key: object, outcomes: Sequence[str], word: str) -> str:
    """An outcome's name (in any case) as itself in lower case, or a gateway's own stat word of 1-7
    upper-case ASCII characters as it is, sent in the report so (``word`` calls it so in the error)."""
    if not isinstance(key, str):
        raise ValueError(f"outcome {key!r} is not a name")
    name = key.strip()
    if name.lower() in outcomes:
        return name.lower()
    if 1 <= len(name) <= 7 and name.isascii() and name.isprintable() and name == name.upper():
        return name
    raise ValueError(
        f"unknown outcome {key!r}; expected {', '.join(outcomes)} or a {word} of 1-7 upper-case characters"
    )


def parse_weights(text: str) -> dict[str, float]:
    """``"delivered=0.9,undelivered=0.1"`` → {name: weight}, a name given twice adding up; the names and
    the weights are the caller's to check."""
    weights: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"outcome {item.strip()!r} is not name=weight")
        weights[key.strip()] = weights.get(key.strip(), 0.0) + float(value)
    return weights


def check_outcomes(weights: Mapping[str, float], key_of: Callable[[object], str]) -> dict[str, float]:
    """Weights of outcomes as {key_of(name): weight}, names that ``key_of`` reads alike adding up;
    ValueError for a weight below 0 or not finite, or none above 0 (``key_of`` raises its own)."""
    table: dict[str, float] = {}
    for key, weight in weights.items():
        value = float(weight)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"weight of outcome {key!r} must be finite and not negative, got {weight!r}")
        name = key_of(key)
        table[name] = table.get(name, 0.0) + value
    if sum(table.values()) <= 0:
        raise ValueError("outcome weights must add up to more than 0")
    return table


def check_delay(delay: object) -> float | tuple[float, float]:
    """A report delay: seconds >= 0, or a (min, max) range of them drawn uniformly; ValueError else."""
    if isinstance(delay, tuple | list):
        if len(delay) == 2:
            low, high = float(delay[0]), float(delay[1])
            if 0 <= low <= high and math.isfinite(high):
                return (low, high)
        raise ValueError(f"report delay range must be (min, max) with 0 <= min <= max, got {delay!r}")
    fixed = number(delay)
    if fixed is not None and fixed >= 0:
        return fixed
    raise ValueError(f"report delay must be a finite number of seconds >= 0, got {delay!r}")


def parse_delay(
    text: str, check: Callable[[object], float | tuple[float, float]] = check_delay
) -> float | tuple[float, float]:
    """``"1.5"`` → 1.5 seconds; ``"0.5-2"``, ``"0.5,2"`` or ``"0.5:2"`` → uniformly between 0.5 and 2
    seconds; what ``check`` makes of it (it raises ValueError for what is not a delay)."""
    for sep in (",", "-", ":"):
        if sep in text.strip().lstrip("-"):
            low, _, high = text.partition(sep)
            return check((float(low), float(high)))
    return check(float(text))


# ----- outcomes, delays, rates --------------------------------------------------------------------------


class OutcomeDraw:
    """Outcome names drawn by their weights (those of weight 0 never)."""

    __slots__ = ("cumulative", "names")

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.names = [k for k, w in weights.items() if w > 0]
        self.cumulative = list(itertools.accumulate(weights[k] for k in self.names))

    def draw(self, rng: random.Random) -> str:
        cum = self.cumulative
        if len(cum) == 1:
            return self.names[0]  # no draw: a run with one outcome uses the generator for nothing else
        return self.names[bisect.bisect_right(cum, rng.random() * cum[-1])]


def out_of_order(items: list[Any], rng: random.Random) -> None:
    """Shuffle ``items`` (the parts of a long MO) until they are in another order than given."""
    if len(items) > 1:
        original = list(items)
        while items == original:
            rng.shuffle(items)


def draw_delay(rng: random.Random, delay: float | tuple[float, float]) -> float:
    """Seconds: ``delay`` itself, or uniformly within its (min, max)."""
    return rng.uniform(*delay) if isinstance(delay, tuple) else delay


class TokenBucket:
    """Holding one second's worth: short bursts pass, a sustained rate above it does not."""

    __slots__ = ("at", "rate", "tokens")

    def __init__(self) -> None:
        self.tokens = self.at = self.rate = 0.0

    def take(self, rate: float) -> bool:
        """Whether one more request passes at ``rate`` a second (a new rate starts a full bucket)."""
        now = trio.current_time()
        if self.rate != rate:
            self.rate, self.tokens, self.at = rate, rate, now
        self.tokens = min(rate, self.tokens + (now - self.at) * rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


# ----- texts ----------------------------------------------------------------------------------------------


def without_udh(content: bytes, tp_udhi: int | None) -> bytes:
    """A message's content without the UDH that ``tp_udhi`` says it starts with."""
    return content[1 + content[0] :] if tp_udhi and content else content


def cut_text(text: str, encode: Callable[[str], bytes], whole: int, part: int) -> list[str]:
    """``text`` as one part when ``encode`` makes at most ``whole`` octets of it, else cut between
    characters into parts of at most ``part`` octets; ValueError above 255 parts (what ``encode`` raises
    for a character it cannot write goes through)."""
    if len(encode(text)) <= whole:
        return [text]
    parts: list[str] = []
    start = used = 0
    for index, character in enumerate(text):
        cost = len(encode(character))
        if used + cost > part:
            parts.append(text[start:index])
            start, used = index, 0
        used += cost
    parts.append(text[start:])
    if len(parts) > 255:
        raise ValueError(f"the text needs {len(parts)} parts; a long message has at most 255")
    return parts


# ----- listeners and the control port -------------------------------------------------------------------


def port_of(listeners: list[trio.SocketListener]) -> int:
    return int(listeners[0].socket.getsockname()[1])


def peer_of(stream: trio.SocketStream) -> str:
    """``host:port`` of the other end, ``?`` when the socket no longer knows."""
    try:
        host, port = stream.socket.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


async def open_control(
    listeners: list[trio.SocketListener], port: int, control_port: int | None, offset: int = 1
) -> list[trio.SocketListener]:
    """The control port's listeners on 127.0.0.1: ``control_port``, or by default the protocol's
    ``port`` + ``offset`` (an ephemeral one when ``port`` is 0). When it cannot be had, the protocol's
    ``listeners`` are closed and the OSError goes through, so that a port in use fails plainly."""
    wanted = control_port if control_port is not None else (port + offset if port else 0)
    try:
        return await trio.open_tcp_listeners(wanted, host=CONTROL_HOST)
    except OSError:
        for listener in listeners:
            await listener.aclose()
        raise


async def serve_control(
    stream: trio.SocketStream, answer: Callable[[bytes], Awaitable[dict[str, Any]]]
) -> None:
    """One control connection: each non-blank line a request handed to ``answer``, each answer one JSON
    line back, until the client closes (or sends a megabyte without a newline)."""
    buf = bytearray()
    async with stream:
        try:
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buf += chunk
                if len(buf) > _CONTROL_MAX:
                    return
                while b"\n" in buf:
                    line, _, rest = bytes(buf).partition(b"\n")
                    buf = bytearray(rest)
                    if line.strip():
                        reply = await answer(line)
                        await stream.send_all(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


class Simulator(Protocol):
    """What the control port's common ops use of a simulator."""

    @property
    def stats(self) -> Any: ...  # with as_dict()

    @property
    def config(self) -> Any: ...  # with public()

    def disconnect_all(self) -> int: ...

    def update(self, **changes: Any) -> Any: ...


ControlOp = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


async def answer_control(
    line: bytes | str | Mapping[str, Any], server: Simulator, ops: Mapping[str, ControlOp], expected: str
) -> dict[str, Any]:
    """Answer one control request (a JSON line or an already decoded object): the ops every simulator
    serves (``ping``, ``stats``, ``config``, ``disconnect``, ``set``) and its own ``ops`` (``mo``, …),
    an unknown op naming the ``expected`` ones; ``{"ok": false, "error": …}`` for a ValueError or
    TypeError on the way."""
    try:
        request = line if isinstance(line, Mapping) else json.loads(line)
        if not isinstance(request, Mapping):
            raise ValueError("a request is a JSON object")
        op = request.get("op")
        if op == "ping":
            return {"ok": True}
        if op == "stats":
            return {"ok": True, "stats": server.stats.as_dict()}
        if op == "config":
            return {"ok": True, "config": server.config.public()}
        if op == "disconnect":
            return {"ok": True, "dropped": server.disconnect_all()}
        if op == "set":
            changes = {k: v for k, v in request.items() if k != "op"}
            return {"ok": True, "config": server.update(**changes).public()}
        own = ops.get(op) if isinstance(op, str) else None
        if own is not None:
            return await own(request)
        raise ValueError(f"unknown op {op!r}; expected {expected}")
    except (ValueError, TypeError) as e:
        return {"ok": False, "error": str(e)}


async def serve_simulator(
    sim: Any,
    connection: Callable[[trio.SocketStream], Awaitable[None]],
    tasks: Sequence[Callable[[], Awaitable[object]]],
    record: RecordFile,
    serving: str,
    log: logging.Logger,
    task_status: trio.TaskStatus[int],
    control_offset: int = 1,
) -> None:
    """Serve the simulator ``sim`` until cancelled: its protocol port (``connection`` for each client),
    its control port (its ``control`` answering), its ``tasks``, and its ``record`` flushed, all as its
    ``config`` says (``host``, ``port``, ``control``, ``control_port``, ``record``); sets ``sim.port`` and
    ``sim.control_port``, logs "``serving`` on HOST:PORT, control on …" and ``task_status.started(port)``
    once both ports accept connections."""
    cfg = sim.config
    if cfg.record is not None:
        record.open(cfg.record)
    try:
        # Opened before the nursery so that a port in use raises a plain OSError.
        listeners = await trio.open_tcp_listeners(cfg.port, host=cfg.host)
        sim.port = port_of(listeners)
        control: list[trio.SocketListener] = []
        if cfg.control:
            control = await open_control(listeners, cfg.port, cfg.control_port, control_offset)
            sim.control_port = port_of(control)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, connection, listeners)
            if control:
                answer = functools.partial(serve_control, answer=sim.control)
                nursery.start_soon(trio.serve_listeners, answer, control)
            for task in tasks:
                nursery.start_soon(task)
            if record.active:
                nursery.start_soon(record.run)
            log.info("%s on %s:%d, control on 127.0.0.1:%d", serving, cfg.host, sim.port, sim.control_port)
            task_status.started(sim.port)
    finally:
        record.close()


def request_str(
    request: Mapping[str, Any], key: str, *, empty: bool = False, default: str | None = None
) -> str:
    """A control request's string field; ValueError when it is missing, not a string, or empty unless
    ``empty``."""
    value = request.get(key, default)
    if not isinstance(value, str) or (not value and not empty):
        raise ValueError(f"{key!r} must be a{'' if empty else ' non-empty'} string")
    return value


# ----- the record ---------------------------------------------------------------------------------------


def record_line(pdu: str, connection: int, fields: Mapping[str, Any]) -> str:
    """One record line of a PDU received: its time (epoch seconds), name and connection, then ``fields``."""
    line = {"time": round(time.time(), 6), "pdu": pdu, "connection": connection, **fields}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


class RecordFile:
    """A JSON-lines file a simulator appends what it received to: lines are kept and written together,
    every 100 ms while :meth:`run` runs and at :meth:`close`."""

    def __init__(self) -> None:
        self._file: IO[str] | None = None
        self._lines: list[str] = []

    @property
    def active(self) -> bool:
        return self._file is not None

    def open(self, path: str | os.PathLike[str]) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def append(self, line: str) -> None:
        if self._file is not None:
            self._lines.append(line)

    def flush(self) -> None:
        """Write what was recorded so far."""
        if self._file is None or not self._lines:
            return
        lines, self._lines = self._lines, []
        # A plain write from the event loop: a batch is at most 100 ms of submits (a few hundred KB at full
        # speed) going to the page cache, cheaper than a hop to a worker thread.
        self._file.write("\n".join(lines) + "\n")
        self._file.flush()

    async def run(self) -> None:
        while True:
            await trio.sleep(_FLUSH_EVERY)
            self.flush()

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None
