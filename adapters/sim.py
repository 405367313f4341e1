"""An in-process simulated carrier (the ``sim`` driver) behaving like a persistent SMSC, for demo and tests.

``SimChannel`` accepts submits without any network, answers each segment with a carrier id or an SMPP-style
error (random throttling and rejection rates, or deterministic rejection by destination prefix), and later
sends one receipt per accepted segment with a weighted final status. Like a real SMSC it persists what it
accepted: every accepted segment and every acknowledged receipt is appended to a JSON-lines journal at
``<data_dir>/sim-<channel>.journal``, and on start every receipt that was never acknowledged is delivered
again, so crash tests see the at-least-once behaviour a real carrier gives. :func:`read_journal` lets such
tests count what the "carrier" received, including duplicates.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import heapq
import itertools
import json
import logging
import math
import os
import random
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
import trio

from . import _journal
from ._journal import read_records, replace_atomically
from .base import (
    ChannelDriver,
    ChannelEvents,
    DriverOptions,
    InboundReceipt,
    InboundReply,
    InvalidOption,
    OutboundSegment,
    ReceiptStatus,
    SubmitError,
    SubmitOutcome,
    option,
)
from .smpp.constants import ESME_RINVDSTADR, ESME_RTHROTTLED

__all__ = [
    "FINAL_STATUSES",
    "INVALID_DESTINATION",
    "JOURNAL_FAILED",
    "LINK_DOWN",
    "THROTTLED",
    "SimChannel",
    "SimJournal",
    "SimJournalEntry",
    "SimOptions",
    "SimRecord",
    "read_journal",
]

log = logging.getLogger(__name__)

FINAL_STATUSES: frozenset[ReceiptStatus] = frozenset(
    {
        ReceiptStatus.DELIVERED,
        ReceiptStatus.UNDELIVERED,
        ReceiptStatus.EXPIRED,
        ReceiptStatus.REJECTED,
        ReceiptStatus.DELETED,
        ReceiptStatus.UNKNOWN,
    }
)
NO_RECEIPT = "none"  # outcome weight key (and journal value) for "the carrier never sends a receipt"

THROTTLED = SubmitError(code=ESME_RTHROTTLED, name="ESME_RTHROTTLED", retriable=True, throttled=True)
INVALID_DESTINATION = SubmitError(code=ESME_RINVDSTADR, name="ESME_RINVDSTADR", retriable=False)
LINK_DOWN = SubmitError(code=0, name="LINK_DOWN", retriable=True)
JOURNAL_FAILED = SubmitError(code=0, name="SIM_JOURNAL_ERROR", retriable=True)

# Receipt text the way SMSCs word it (stat field) and sim-specific err values; delivered is err:000 as on
# real networks, the others only need to be distinct and non-zero.
_STAT_TEXT = {
    ReceiptStatus.DELIVERED: ("DELIVRD", 0),
    ReceiptStatus.UNDELIVERED: ("UNDELIV", 1),
    ReceiptStatus.EXPIRED: ("EXPIRED", 2),
    ReceiptStatus.DELETED: ("DELETED", 3),
    ReceiptStatus.REJECTED: ("REJECTD", 4),
    ReceiptStatus.UNKNOWN: ("UNKNOWN", 5),
}

_PREFIX_HEX = 8  # hex digits of the per-run carrier id prefix
_RETRY_FIRST = 0.5  # seconds before re-sending a receipt the core failed to store; doubles per attempt
_RETRY_MAX = 30.0

# (due time on trio's clock, carrier id, status). The id is unique, so the status is never compared.
_Due = tuple[float, str, ReceiptStatus]


@dataclasses.dataclass(frozen=True, slots=True)
class SimRecord:
    """One segment the simulated carrier accepted, kept in memory for tests."""

    carrier_id: str
    destination: str
    source: str
    segment: OutboundSegment
    status: ReceiptStatus | None  # the receipt it will send; None = none ever


@dataclasses.dataclass(frozen=True, slots=True)
class SimJournalEntry:
    """One accepted segment as the journal holds it."""

    carrier_id: str
    destination: str
    source: str
    segment: OutboundSegment
    status: ReceiptStatus | None  # None = no receipt is ever sent
    submitted_at: float  # wall clock (time.time())
    due_at: float  # wall clock at which the receipt is due

    @property
    def body(self) -> bytes:
        """The segment's text bytes without the UDH: a resend after a crash may carry a new concat
        reference, and it is still the same text reaching the handset."""
        seg = self.segment
        if seg.message_payload is not None:
            return seg.message_payload
        if seg.udh and seg.short_message:
            return seg.short_message[1 + seg.short_message[0] :]
        return seg.short_message

    @property
    def dedup_key(self) -> tuple[str, str, int, int, bytes]:
        return (self.destination, self.source, self.segment.seq, self.segment.total, self.body)


@dataclasses.dataclass(slots=True)
class SimJournal:
    """What a journal file says the carrier received and which receipts were acknowledged."""

    submitted: list[SimJournalEntry] = dataclasses.field(default_factory=list)
    acked: set[str] = dataclasses.field(default_factory=set)
    torn: bool = False  # the file ended in a partial line (ignored)
    valid_bytes: int = 0  # length of the file up to and including its last complete line
    compacted_submitted: int = 0  # submissions dropped by earlier compactions (already acked or no receipt)
    compacted_acked: int = 0

    def unacked(self) -> list[SimJournalEntry]:
        """Accepted segments whose receipt is owed and not yet acknowledged."""
        return [e for e in self.submitted if e.status is not None and e.carrier_id not in self.acked]

    def duplicates(self) -> int:
        """Submissions beyond the first of the same destination, source, seq/total and body.

        Only meaningful when a test sends distinct texts: two genuinely separate messages with the same
        text to the same number count as a duplicate here too."""
        counts = collections.Counter(e.dedup_key for e in self.submitted)
        return sum(n - 1 for n in counts.values() if n > 1)


def _sub_line(
    carrier_id: str,
    destination: str,
    source: str,
    seg: OutboundSegment,
    status: ReceiptStatus | None,
    submitted_at: float,
    due_at: float,
) -> bytes:
    obj = {
        "t": "sub",
        "id": carrier_id,
        "dst": destination,
        "src": source,
        "seq": seg.seq,
        "total": seg.total,
        "dc": seg.data_coding,
        "sm": seg.short_message.hex(),
        "mp": None if seg.message_payload is None else seg.message_payload.hex(),
        "sar": None if seg.sar is None else list(seg.sar),
        "udh": seg.udh,
        "st": NO_RECEIPT if status is None else status.value,
        "ts": round(submitted_at, 6),
        "due": round(due_at, 6),
    }
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _ack_line(carrier_id: str) -> bytes:
    return json.dumps({"t": "ack", "id": carrier_id}, separators=(",", ":")).encode() + b"\n"


def _decode_sub(obj: Mapping[str, Any]) -> SimJournalEntry:
    sar = obj.get("sar")
    mp = obj.get("mp")
    st = obj["st"]
    segment = OutboundSegment(
        seq=int(obj["seq"]),
        total=int(obj["total"]),
        data_coding=int(obj["dc"]),
        short_message=bytes.fromhex(obj["sm"]),
        udh=bool(obj.get("udh", False)),
        sar=None if sar is None else (int(sar[0]), int(sar[1]), int(sar[2])),
        message_payload=None if mp is None else bytes.fromhex(mp),
    )
    return SimJournalEntry(
        carrier_id=str(obj["id"]),
        destination=str(obj["dst"]),
        source=str(obj["src"]),
        segment=segment,
        status=None if st == NO_RECEIPT else ReceiptStatus(st),
        submitted_at=float(obj["ts"]),
        due_at=float(obj["due"]),
    )


def read_journal(path: str | os.PathLike[str]) -> SimJournal:
    """Parse a simulator journal. A partial last line (a write cut short) is ignored and flagged in
    ``torn``; a malformed complete line anywhere raises ValueError, since this driver never writes one."""
    journal = SimJournal()

    def apply(obj: dict[str, Any]) -> None:
        kind = obj["t"]
        if kind == "sub":
            journal.submitted.append(_decode_sub(obj))
        elif kind == "ack":
            journal.acked.add(str(obj["id"]))
        elif kind == "sum":
            journal.compacted_submitted += int(obj["sub"])
            journal.compacted_acked += int(obj["ack"])
        else:
            raise ValueError(f"unknown record type {kind!r}")

    journal.torn, journal.valid_bytes = read_records(path, apply, "simulator journal")
    return journal


def _compact(path: str, journal: SimJournal) -> SimJournal:
    """Rewrite the journal with only the receipts still owed plus a summary line; returns the new view.
    Replaced atomically, so a crash leaves either the old or the new journal."""
    keep = journal.unacked()
    summary: dict[str, Any] = {
        "t": "sum",
        "sub": journal.compacted_submitted + len(journal.submitted) - len(keep),
        "ack": journal.compacted_acked + len(journal.acked),
    }
    lines = [json.dumps(summary, separators=(",", ":")).encode() + b"\n"]
    lines += [
        _sub_line(e.carrier_id, e.destination, e.source, e.segment, e.status, e.submitted_at, e.due_at)
        for e in keep
    ]
    size = replace_atomically(path, lines)
    return SimJournal(
        submitted=keep,
        compacted_submitted=int(summary["sub"]),
        compacted_acked=int(summary["ack"]),
        valid_bytes=size,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Loaded:
    """What opening the journal yields; computed off the trio thread for large journals."""

    fd: int
    size: int
    pending: list[tuple[float, str, ReceiptStatus]]  # (seconds until due, carrier id, status)
    prefixes: set[str]


_DELAY_RANGE = "seconds >= 0 as a number or as [min, max] with 0 <= min <= max"


class SimOptions(DriverOptions):
    """The ``sim`` driver's options; see :class:`SimChannel`."""

    receipt_delay: tuple[float, float] = option((0.05, 0.5), _DELAY_RANGE)
    outcomes: dict[str, float] = option(
        {"delivered": 1.0}, "a table of status -> weight >= 0 with some weight > 0"
    )
    submit_error_rate: float = option(0.0, "a fraction from 0 to 1", ge=0, le=1)
    reject_rate: float = option(0.0, "a fraction from 0 to 1", ge=0, le=1)
    reject_prefixes: list[str] = option(
        [], 'a list of non-empty destination prefixes, e.g. ["+86138", "1390"]'
    )
    submit_latency: float = option(0.0, "seconds >= 0", ge=0)
    seed: int | None = option(None, "an integer")
    journal: bool = option(True, "true or false")
    keep_record: bool = option(True, "true or false")
    receipt_concurrency: int = option(64, "an integer from 1 to 10000", ge=1, le=10_000)

    @pydantic.field_validator("receipt_delay", mode="before")
    @classmethod
    def _delay(cls, value: object) -> tuple[float, float]:
        return _journal.seconds_range(value, f"expected {_DELAY_RANGE}")

    @pydantic.field_validator("outcomes", mode="before")
    @classmethod
    def _outcomes(cls, value: object) -> dict[str, float]:
        names = [*sorted(s.value for s in FINAL_STATUSES), NO_RECEIPT]
        allowed = (
            f"expected a table of status -> weight >= 0 with keys from {', '.join(names)} and some weight > 0"
        )

        def status(key: object) -> str:
            if not isinstance(key, str) or key.lower() not in names:
                raise ValueError(f"key {key!r} is not allowed; {allowed}")
            return key.lower()

        return _journal.weights(value, allowed, status)

    @pydantic.field_validator("reject_prefixes", mode="before")
    @classmethod
    def _prefixes(cls, value: object) -> object:
        # A bare string would otherwise be iterated character by character and reject almost everything.
        if not isinstance(value, list | tuple) or not all(isinstance(p, str) and p for p in value):
            raise ValueError('expected a list of non-empty destination prefixes, e.g. ["+86138", "1390"]')
        return list(value)

    @pydantic.model_validator(mode="after")
    def _rates(self) -> SimOptions:
        if self.submit_error_rate + self.reject_rate > 1:
            first = self.submit_error_rate
            raise InvalidOption(
                "reject_rate",
                self.reject_rate,
                f"submit_error_rate + reject_rate must be <= 1 (submit_error_rate is {first})",
            )
        return self


class SimChannel(ChannelDriver):
    """Simulated persistent SMSC. See the module docstring; its options are :class:`SimOptions`."""

    driver = "sim"
    Options = SimOptions
    settings: SimOptions

    compact_threshold: int = 64 * 1024 * 1024  # bytes; journals above this are compacted on start
    inline_load_limit: int = 1024 * 1024  # bytes; larger journals are read on a worker thread (~5k lines/MB)

    def __init__(self, name: str, options: Mapping[str, Any], events: ChannelEvents, data_dir: str) -> None:
        super().__init__(name, options, events, data_dir)
        s = self.settings
        self._delay_lo, self._delay_hi = s.receipt_delay
        self._outcome_keys = [None if key == NO_RECEIPT else ReceiptStatus(key) for key in s.outcomes]
        self._outcome_cum = list(itertools.accumulate(s.outcomes.values()))
        self._error_rate = s.submit_error_rate
        self._reject_rate = s.reject_rate
        self._reject_prefixes = tuple(s.reject_prefixes)
        self._submit_latency = s.submit_latency
        seed = s.seed
        journal = s.journal
        self._concurrency = s.receipt_concurrency
        self._keep_record = s.keep_record

        # The channel name comes from a config key; keep it from escaping the data directory.
        safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"
        self.journal_path: str | None = (
            os.path.join(data_dir, f"sim-{safe_name}.journal") if journal else None
        )
        self.received: list[SimRecord] = []

        self._rng = random.Random(seed)
        self._heap: list[_Due] = []
        self._wake = trio.Event()
        self._fd: int | None = None
        self._journal_size = 0
        self._run_prefix = ""
        self._counter = 0
        self._accepting = False
        self._running = False
        self._attempts: dict[str, int] = {}
        self._submits_in_flight = 0
        self._drained: trio.Event | None = None

    # -- the driver interface -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._running:
            raise RuntimeError(f"sim channel {self.name!r} is already running")
        self._running = True
        try:
            prefixes: set[str] = set()
            if self.journal_path is not None:
                loaded = await self._open_journal(self.journal_path)
                self._fd, self._journal_size, prefixes = loaded.fd, loaded.size, loaded.prefixes
                # The journal is the truth after a restart: it holds every receipt still owed.
                now = trio.current_time()
                self._heap = [(now + wait, cid, st) for wait, cid, st in loaded.pending]
                heapq.heapify(self._heap)
                self._attempts.clear()
                if loaded.pending:
                    log.info(
                        "sim channel %s: re-delivering %d unacknowledged receipts",
                        self.name,
                        len(loaded.pending),
                    )
            self._run_prefix = secrets.token_hex(_PREFIX_HEX // 2)
            while self._run_prefix in prefixes:
                self._run_prefix = secrets.token_hex(_PREFIX_HEX // 2)
            self._counter = 0

            send, recv = trio.open_memory_channel[_Due](0)
            async with trio.open_nursery() as nursery:
                # A fixed pool rather than a task per receipt: a slow store then holds at most
                # `receipt_concurrency` receipts in flight, and the heap stays the only per-receipt cost.
                for _ in range(self._concurrency):
                    nursery.start_soon(self._worker, recv.clone())
                recv.close()
                self.up = True
                self._accepting = True
                self.events.link_state(self.name, True)
                task_status.started()
                await self._schedule(send)
        finally:
            was_up = self.up
            self.up = False
            self._accepting = False
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._running = False
            if was_up:
                self.events.link_state(self.name, False)

    async def submit(
        self, destination: str, source: str, segments: Sequence[OutboundSegment]
    ) -> list[SubmitOutcome]:
        if not self._accepting:
            return [SubmitOutcome(error=LINK_DOWN) for _ in segments]
        self._submits_in_flight += 1
        try:
            if self._submit_latency:
                await trio.sleep(self._submit_latency)
            if not self.up:  # run() ended while this submit was on the wire
                return [SubmitOutcome(error=LINK_DOWN) for _ in segments]
            return self._accept(destination, source, segments)
        finally:
            self._submits_in_flight -= 1
            if self._submits_in_flight == 0 and self._drained is not None:
                self._drained.set()

    async def drain(self) -> None:
        """Refuse new submits (LINK_DOWN, retriable) and wait for those in flight; receipts keep flowing
        until ``run`` is cancelled, and any not yet acknowledged are re-sent on the next start."""
        self._accepting = False
        while self._submits_in_flight:
            self._drained = trio.Event()
            await self._drained.wait()
        self._drained = None

    async def inject_reply(self, sender: str, destination: str, text: str) -> None:
        """Deliver a mobile-originated message to the core, as if a handset had sent it (demo, tests)."""
        raw = f"sim mo from {sender} to {destination}"
        await self.events.reply(
            self.name, InboundReply(sender=sender, destination=destination, text=text, raw=raw)
        )

    # -- submit path ----------------------------------------------------------------------------------

    def _accept(
        self, destination: str, source: str, segments: Sequence[OutboundSegment]
    ) -> list[SubmitOutcome]:
        now = trio.current_time()
        wall = time.time()
        rejected = any(destination.startswith(p) for p in self._reject_prefixes)
        outcomes: list[SubmitOutcome] = []
        lines: list[bytes] = []
        due: list[_Due] = []
        records: list[SimRecord] = []
        for seg in segments:
            if rejected:
                outcomes.append(SubmitOutcome(error=INVALID_DESTINATION))
                continue
            if self._error_rate or self._reject_rate:
                u = self._rng.random()
                if u < self._error_rate:
                    outcomes.append(SubmitOutcome(error=THROTTLED))
                    continue
                if u < self._error_rate + self._reject_rate:
                    outcomes.append(SubmitOutcome(error=INVALID_DESTINATION))
                    continue
            status = self._pick_status()
            delay = self._pick_delay()
            carrier_id = f"{self._run_prefix}{self._counter:08x}"
            self._counter += 1
            if self._fd is not None:
                lines.append(_sub_line(carrier_id, destination, source, seg, status, wall, wall + delay))
            if status is not None:
                due.append((now + delay, carrier_id, status))
            if self._keep_record:
                records.append(SimRecord(carrier_id, destination, source, seg, status))
            outcomes.append(SubmitOutcome(carrier_id=carrier_id))
        if lines:
            try:
                self._write(b"".join(lines))
            except OSError:
                log.exception("sim channel %s: journal write failed; refusing the submit", self.name)
                return [o if o.error is not None else SubmitOutcome(error=JOURNAL_FAILED) for o in outcomes]
        for item in due:
            self._push(item)
        self.received.extend(records)
        return outcomes

    def _pick_status(self) -> ReceiptStatus | None:
        if len(self._outcome_keys) == 1:
            return self._outcome_keys[0]
        i = bisect.bisect_right(self._outcome_cum, self._rng.random() * self._outcome_cum[-1])
        return self._outcome_keys[min(i, len(self._outcome_keys) - 1)]

    def _pick_delay(self) -> float:
        if self._delay_lo == self._delay_hi:
            return self._delay_lo
        return self._rng.uniform(self._delay_lo, self._delay_hi)

    def _write(self, data: bytes) -> None:
        """Append to the journal. A plain os.write on an O_APPEND fd: once it returns the bytes are in the
        kernel, so they survive a kill -9 of this process (not a power cut; the sim does not fsync)."""
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            # Cut a partial batch off again so the next append does not glue onto half a line.
            try:
                os.ftruncate(self._fd, self._journal_size)
            except OSError:
                pass
            raise
        self._journal_size += len(data)

    # -- receipt path ---------------------------------------------------------------------------------

    def _push(self, item: _Due) -> None:
        heapq.heappush(self._heap, item)
        if self._heap[0] is item:  # new earliest deadline: the scheduler must shorten its sleep
            self._wake.set()

    async def _schedule(self, send: trio.MemorySendChannel[_Due]) -> None:
        async with send:
            while True:
                now = trio.current_time()
                while self._heap and self._heap[0][0] <= now:
                    item = heapq.heappop(self._heap)
                    try:
                        await send.send(item)  # blocks while every worker is busy: the in-flight bound
                    except BaseException:
                        # A cancelled send delivered nothing; keep the receipt owed.
                        heapq.heappush(self._heap, item)
                        raise
                self._wake = trio.Event()
                with trio.move_on_at(self._heap[0][0] if self._heap else math.inf):
                    await self._wake.wait()

    async def _worker(self, recv: trio.MemoryReceiveChannel[_Due]) -> None:
        async with recv:
            async for item in recv:
                await self._deliver(item)

    async def _deliver(self, item: _Due) -> None:
        _, carrier_id, status = item
        stat, err = _STAT_TEXT[status]
        dlvrd = "001" if status is ReceiptStatus.DELIVERED else "000"
        receipt = InboundReceipt(
            carrier_id=carrier_id,
            status=status,
            error_code=err,
            raw=f"id:{carrier_id} sub:001 dlvrd:{dlvrd} stat:{stat} err:{err:03d}",
        )
        try:
            await self.events.receipt(self.name, receipt)
        except Exception:
            # The core could not store it, so it is not acknowledged: re-send later, as an SMSC does.
            attempts = self._attempts.get(carrier_id, 0) + 1
            self._attempts[carrier_id] = attempts
            delay = min(_RETRY_MAX, _RETRY_FIRST * 2 ** (attempts - 1))
            log.warning(
                "sim channel %s: receipt for %s not stored (attempt %d); retrying in %.1fs",
                self.name,
                carrier_id,
                attempts,
                delay,
                exc_info=True,
            )
            self._push((trio.current_time() + delay, carrier_id, status))
            return
        except BaseException:
            # Cancelled mid-call: still owed. Matters without a journal, where the heap is the only copy.
            self._push(item)
            raise
        self._attempts.pop(carrier_id, None)
        if self._fd is not None:
            try:
                self._write(_ack_line(carrier_id))
            except OSError:
                # Worst case the receipt is delivered again after a restart: at-least-once, as promised.
                log.exception("sim channel %s: could not journal the ack for %s", self.name, carrier_id)

    # -- journal --------------------------------------------------------------------------------------

    async def _open_journal(self, path: str) -> _Loaded:
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            size = 0
        if size > self.inline_load_limit:
            return await trio.to_thread.run_sync(self._load_journal, path)
        # Small journals load inline: a thread hop costs more than the read, and under trio's MockClock
        # (autojump) a pending thread would let virtual time jump past test deadlines.
        return self._load_journal(path)

    def _load_journal(self, path: str) -> _Loaded:
        os.makedirs(self.data_dir, exist_ok=True)
        pending: list[tuple[float, str, ReceiptStatus]] = []
        prefixes: set[str] = set()
        if os.path.exists(path):
            journal = read_journal(path)
            if journal.torn:
                # The cut-off line was never acknowledged to anyone; drop it so appends start on a line.
                log.warning("sim channel %s: dropping a torn last line from %s", self.name, path)
                os.truncate(path, journal.valid_bytes)
            if journal.valid_bytes > self.compact_threshold:
                log.info("sim channel %s: compacting %s (%d bytes)", self.name, path, journal.valid_bytes)
                journal = _compact(path, journal)
            wall = time.time()
            for e in journal.unacked():
                assert e.status is not None
                pending.append((max(0.0, e.due_at - wall), e.carrier_id, e.status))
            prefixes = {e.carrier_id[:_PREFIX_HEX] for e in journal.submitted}
            prefixes.update(cid[:_PREFIX_HEX] for cid in journal.acked)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return _Loaded(fd=fd, size=os.fstat(fd).st_size, pending=pending, prefixes=prefixes)
