"""A simulated telephone network for voice notices (the ``voice_sim`` driver), for demo and tests.

``VoiceSimChannel`` places one simulated call per delivery: the phone rings, and the callee either
answers, listens to the text being read and perhaps presses a key, or lets it ring out, is busy, or
cannot be reached. What each number does comes from a script (per number, changeable at runtime) or
from a weighted default mix. A keypress goes to the core as a reply from the called number to the
number the call came from (service number + extension), so it is routed exactly like an SMS reply;
then the call's outcome goes to the core as a receipt: ``delivered`` when answered, ``undelivered``
with a SIP final response code otherwise (see :mod:`masd_adapters.voice`). Every call is appended to a
JSON-lines journal at ``<data_dir>/voice-<channel>.journal`` with what was said, to whom and what
happened, and the journal notes each keypress and receipt the core stored; on start, calls whose
keypress or receipt was never stored are played to their end again, so a restart delivers them at
least once.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import json
import logging
import os
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import pydantic
import trio

from . import _journal, tts, voice
from ._journal import read_records, replace_atomically
from .base import (
    ChannelDriver,
    ChannelEvents,
    DriverOptions,
    InboundReceipt,
    InboundReply,
    OutboundSegment,
    ReceiptStatus,
    SubmitError,
    SubmitOutcome,
    option,
)
from .voice import CallOutcome

__all__ = [
    "ALL_LINES_BUSY",
    "INVALID_NUMBER",
    "JOURNAL_FAILED",
    "LINK_DOWN",
    "NOT_ONE_TEXT",
    "Call",
    "CallJournal",
    "CallPlan",
    "VoiceSimChannel",
    "VoiceSimOptions",
    "parse_plan",
    "read_call_journal",
]

log = logging.getLogger(__name__)


# The codes the simulator reports (see :mod:`.voice`); an answered call is 0, as a delivered SMS is.
NO_ANSWER_CODE = voice.TEMPORARILY_UNAVAILABLE  # rang until the ring timeout, nobody picked up
BUSY_CODE = voice.BUSY
FAILED_CODE = voice.SERVICE_UNAVAILABLE  # the network could not reach the phone (switched off, no signal)

LINK_DOWN = SubmitError(code=0, name="LINK_DOWN", retriable=True)
ALL_LINES_BUSY = SubmitError(code=0, name="SIM_ALL_LINES_BUSY", retriable=True, throttled=True)
JOURNAL_FAILED = SubmitError(code=0, name="SIM_JOURNAL_ERROR", retriable=True)
INVALID_NUMBER = SubmitError(code=484, name="SIM_INVALID_NUMBER", retriable=False)  # SIP Address Incomplete
NOT_ONE_TEXT = SubmitError(code=0, name="SIM_NOT_A_VOICE_TEXT", retriable=False)

KEYS = frozenset("0123456789*#")
_DIALABLE = re.compile(r"\+?[0-9]{3,20}")
_RETRY_FIRST = 0.5  # seconds before offering again a keypress or receipt the core failed to store
_RETRY_MAX = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class CallPlan:
    """What the simulated callee does: ``answer:1``, ``answer`` (no key), ``no-answer``, ``busy``,
    ``failed`` or ``failed:<SIP code>``."""

    outcome: CallOutcome
    key: str | None = None  # the key pressed after the text was read (answered calls only)
    code: int = 0  # SIP final response code reported for an unanswered call

    def __str__(self) -> str:
        if self.outcome is CallOutcome.ANSWERED:
            return f"answer:{self.key}" if self.key else "answer"
        if self.outcome is CallOutcome.FAILED and self.code != FAILED_CODE:
            return f"failed:{self.code}"
        return self.outcome.value


_PLAN_HELP = (
    'expected "answer:<key>" (key 0-9, * or #), "answer" (no key), "no-answer", "busy", '
    '"failed" or "failed:<SIP code 400-699>"'
)


def parse_plan(text: str) -> CallPlan:
    """Parse one outcome as written in ``script`` or ``outcomes``; ValueError says what is allowed."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r}: {_PLAN_HELP}")
    word, sep, arg = text.strip().lower().partition(":")
    if word in ("answer", "answered") and not sep:
        return CallPlan(CallOutcome.ANSWERED)
    if word in ("answer", "answered") and len(arg) == 1 and arg in KEYS:
        return CallPlan(CallOutcome.ANSWERED, key=arg)
    if word == "no-answer" and not sep:
        return CallPlan(CallOutcome.NO_ANSWER, code=NO_ANSWER_CODE)
    if word == "busy" and not sep:
        return CallPlan(CallOutcome.BUSY, code=BUSY_CODE)
    if word == "failed" and not sep:
        return CallPlan(CallOutcome.FAILED, code=FAILED_CODE)
    if word == "failed" and arg.isdigit() and 400 <= int(arg) <= 699:
        return CallPlan(CallOutcome.FAILED, code=int(arg))
    raise ValueError(f"{text!r}: {_PLAN_HELP}")


def _number_key(number: str) -> str:
    """The form a script is looked up by: digits only, a mainland mobile without its +86/0086/86."""
    digits = "".join(ch for ch in number if ch.isdigit())
    for prefix in ("0086", "86"):
        rest = digits[len(prefix) :]
        if digits.startswith(prefix) and len(rest) == 11 and rest.startswith("1"):
            return rest
    return digits


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One call the simulated network placed: what was said, to whom, and its timeline (wall clock)."""

    call_id: str
    destination: str  # the called number
    source: str  # the number shown to the callee: service number + extension
    text: str  # what is read to the callee once answered
    plan: CallPlan
    placed_at: float
    answered_at: float | None  # None: never answered
    key_at: float | None  # when the key is pressed; None: no key
    ended_at: float  # hang-up; the receipt follows

    @property
    def outcome(self) -> CallOutcome:
        return self.plan.outcome

    @property
    def key(self) -> str | None:
        return self.plan.key

    @property
    def heard(self) -> str | None:
        """What the callee heard: the text if the call was answered, else nothing."""
        return self.text if self.answered_at is not None else None


def _call_line(call: Call) -> bytes:
    obj = {
        "t": "call",
        "id": call.call_id,
        "to": call.destination,
        "from": call.source,
        "text": call.text,
        "plan": str(call.plan),
        "outcome": call.outcome.value,
        "key": call.key,
        "code": call.plan.code,
        "placed": round(call.placed_at, 6),
        "answered": None if call.answered_at is None else round(call.answered_at, 6),
        "key_at": None if call.key_at is None else round(call.key_at, 6),
        "ended": round(call.ended_at, 6),
    }
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _mark_line(kind: str, call_id: str) -> bytes:
    return json.dumps({"t": kind, "id": call_id}, separators=(",", ":")).encode() + b"\n"


def _decode_call(obj: Mapping[str, Any]) -> Call:
    def opt(key: str) -> float | None:
        value = obj.get(key)
        return None if value is None else float(value)

    return Call(
        call_id=str(obj["id"]),
        destination=str(obj["to"]),
        source=str(obj["from"]),
        text=str(obj["text"]),
        plan=parse_plan(str(obj["plan"])),
        placed_at=float(obj["placed"]),
        answered_at=opt("answered"),
        key_at=opt("key_at"),
        ended_at=float(obj["ended"]),
    )


@dataclasses.dataclass(slots=True)
class CallJournal:
    """What a voice journal says: the calls placed, which keypresses and receipts the core stored."""

    calls: list[Call] = dataclasses.field(default_factory=list)
    keyed: set[str] = dataclasses.field(default_factory=set)  # call ids whose keypress reply was stored
    ended: set[str] = dataclasses.field(default_factory=set)  # call ids whose receipt was stored
    torn: bool = False  # the file ended in a partial line (ignored)
    valid_bytes: int = 0
    compacted: int = 0  # finished calls dropped by earlier compactions

    def open_calls(self) -> list[Call]:
        """Calls whose receipt the core has not stored yet."""
        return [c for c in self.calls if c.call_id not in self.ended]

    def calls_to(self, number: str) -> list[Call]:
        return [c for c in self.calls if c.destination == number]


def read_call_journal(path: str | os.PathLike[str]) -> CallJournal:
    """Parse a voice simulator journal. A partial last line is ignored and flagged in ``torn``; a
    malformed complete line raises ValueError naming the file and line."""
    journal = CallJournal()

    def apply(obj: dict[str, Any]) -> None:
        kind = obj["t"]
        if kind == "call":
            journal.calls.append(_decode_call(obj))
        elif kind == "key":
            journal.keyed.add(str(obj["id"]))
        elif kind == "end":
            journal.ended.add(str(obj["id"]))
        elif kind == "sum":
            journal.compacted += int(obj["calls"])
        else:
            raise ValueError(f"unknown record type {kind!r}")

    journal.torn, journal.valid_bytes = read_records(path, apply, "voice journal")
    return journal


def _compact(path: str, journal: CallJournal) -> CallJournal:
    """Rewrite the journal with only the open calls (and their keypress marks) plus a summary line.
    Replaced atomically, so a crash leaves the old or the new file, never a mix."""
    keep = journal.open_calls()
    keyed = {c.call_id for c in keep} & journal.keyed
    done = journal.compacted + len(journal.calls) - len(keep)
    lines = [json.dumps({"t": "sum", "calls": done}).encode() + b"\n"]
    for call in keep:
        lines.append(_call_line(call))
        if call.call_id in keyed:
            lines.append(_mark_line("key", call.call_id))
    size = replace_atomically(path, lines)
    return CallJournal(calls=keep, keyed=keyed, compacted=done, valid_bytes=size)


_RANGE = "seconds >= 0 as a number or as [min, max] with 0 <= min <= max"
_SCRIPT = 'a table of number -> outcome, e.g. {"13800000001" = "answer:1"}'
_WEIGHTS = 'a table of outcome -> weight >= 0 with some weight > 0, e.g. {"answer:1" = 3, busy = 1}'


class VoiceSimOptions(DriverOptions):
    """The ``voice_sim`` driver's options; see :class:`VoiceSimChannel`. ``script`` and ``outcomes`` are
    kept with each outcome in its written form (``str(CallPlan)``)."""

    script: dict[str, str] = option({}, _SCRIPT)
    outcomes: dict[str, float] = option({"answer:1": 1.0}, _WEIGHTS)
    ring_seconds: tuple[float, float] = option((3.0, 8.0), _RANGE)
    ring_timeout: float = option(30.0, "a number > 0", gt=0)
    setup_seconds: float = option(1.0, "a number >= 0", ge=0)
    chars_per_second: float = option(4.0, "a number > 0", gt=0)
    key_seconds: float = option(2.0, "a number >= 0", ge=0)
    time_scale: float = option(0.1, "a number >= 0", ge=0)
    lines: int = option(30, "an integer from 1 to 10000", ge=1, le=10_000)
    seed: int | None = option(None, "an integer")
    journal: bool = option(True, "true or false")
    keep_record: bool = option(True, "true or false")
    speech: bool = option(False, "true or false")
    speech_voice: str = option(
        tts.DEFAULT_VOICE, 'an espeak-ng voice name, e.g. "cmn-latn-pinyin"', pattern=r"^[A-Za-z0-9_+-]+$"
    )

    @pydantic.field_validator("script", mode="before")
    @classmethod
    def _script(cls, value: object) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected {_SCRIPT}")
        script: dict[str, str] = {}
        for number, outcome in value.items():
            if not isinstance(number, str) or not _number_key(number):
                raise ValueError(f"key {number!r} is not a phone number; expected {_SCRIPT}")
            try:
                script[_number_key(number)] = str(parse_plan(outcome))
            except ValueError as e:
                raise ValueError(f"number {number}: {e}") from None
        return script

    @pydantic.field_validator("outcomes", mode="before")
    @classmethod
    def _outcomes(cls, value: object) -> dict[str, float]:
        def plan(key: object) -> str:
            try:
                return str(parse_plan(key))  # type: ignore[arg-type]  # parse_plan refuses a non-string
            except ValueError as e:
                raise ValueError(f"key {e}") from None

        return _journal.weights(value, f"expected {_WEIGHTS}", plan)

    @pydantic.field_validator("ring_seconds", mode="before")
    @classmethod
    def _ring(cls, value: object) -> tuple[float, float]:
        return _journal.seconds_range(value, f"expected {_RANGE}")


@dataclasses.dataclass(slots=True)
class _Open:
    """A call in progress: the record plus where it stands with the core."""

    call: Call
    keyed: bool  # the keypress reply was stored (or there is none to send)


class VoiceSimChannel(ChannelDriver):
    """The ``voice_sim`` driver. Options (all optional; times in seconds of a real call, multiplied by
    ``time_scale`` before the simulator waits them):

    - ``script``: number → outcome, e.g. ``{"13800000001" = "answer:1", "13800000002" = "no-answer"}``;
      outcomes are ``answer:<key>``, ``answer``, ``no-answer``, ``busy``, ``failed``, ``failed:<code>``.
    - ``outcomes``: outcome → weight for numbers not in the script (default ``{"answer:1" = 1}``).
    - ``ring_seconds`` (number or ``[min, max]``, default ``[3, 8]``): ringing before an answer.
    - ``ring_timeout`` (30): ringing before a call is given up as not answered.
    - ``setup_seconds`` (1): until the network reports busy or failure.
    - ``chars_per_second`` (4): reading speed of the text.
    - ``key_seconds`` (2): from the end of the reading to the keypress.
    - ``time_scale`` (0.1): 1 plays calls in real time, 0 makes them instant.
    - ``lines`` (30): calls at once; a submit beyond that is refused as retriable and throttled.
    - ``seed``: for a repeatable default mix; ``journal`` (true); ``keep_record`` (true: ``calls``).
    - ``speech`` (false): write what each call plays as 8 kHz μ-law WAV (:meth:`speech_path`), spoken by
      espeak-ng with ``speech_voice`` (``cmn-latn-pinyin``); without espeak-ng calls go on silently.
    """

    driver = "voice_sim"
    Options = VoiceSimOptions
    settings: VoiceSimOptions

    compact_threshold: int = 16 * 1024 * 1024  # bytes; journals above this are compacted on start

    def __init__(self, name: str, options: Mapping[str, Any], events: ChannelEvents, data_dir: str) -> None:
        super().__init__(name, options, events, data_dir)
        s = self.settings
        self._script: dict[str, CallPlan] = {number: parse_plan(plan) for number, plan in s.script.items()}
        self._plans = [parse_plan(plan) for plan in s.outcomes]
        self._cum = list(itertools.accumulate(s.outcomes.values()))
        self._ring = s.ring_seconds
        self._ring_timeout = s.ring_timeout
        self._setup = s.setup_seconds
        self._cps = s.chars_per_second
        self._key_seconds = s.key_seconds
        self._scale = s.time_scale
        self.lines = s.lines
        seed = s.seed
        journal = s.journal
        self._keep_record = s.keep_record
        self.speech = s.speech
        self._speech_voice = s.speech_voice

        # The channel name comes from a config key; keep it from escaping the data directory.
        safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"
        self.journal_path: str | None = (
            os.path.join(data_dir, f"voice-{safe_name}.journal") if journal else None
        )
        self.speech_dir = os.path.join(data_dir, f"voice-{safe_name}")
        self.calls: list[Call] = []  # every call placed since this object was made (keep_record)
        # Call times are wall-clock so they survive a restart; tests swap in a clock of their own.
        self.wall_clock: Callable[[], float] = time.time
        self._rng = random.Random(seed)
        self._open: dict[str, _Open] = {}  # calls not yet ended with a stored receipt
        self._fd: int | None = None
        self._spawn: Callable[[_Open], None] | None = None
        self._accepting = False
        self._running = False

    # -- scripting (tests, demo) ----------------------------------------------------------------------

    def set_script(self, number: str, outcome: str | None) -> None:
        """Make calls to ``number`` end as ``outcome`` from now on (None: back to the default mix).
        Raises ValueError for an outcome the simulator does not know."""
        key = _number_key(number)
        if not key:
            raise ValueError(f"{number!r} is not a phone number")
        if outcome is None:
            self._script.pop(key, None)
        else:
            self._script[key] = parse_plan(outcome)

    @property
    def active_calls(self) -> int:
        """Calls ringing or in progress, which hold a line."""
        return len(self._open)

    # -- the driver interface -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._running:
            raise RuntimeError(f"voice_sim channel {self.name!r} is already running")
        self._running = True
        try:
            if self.journal_path is not None:
                # Small and read once at start; the journal is the truth after a restart.
                fd, owed = self._load_journal(self.journal_path)
                self._fd = fd
                self._open = {call.call_id: _Open(call, keyed) for call, keyed in owed}
                if owed:
                    log.info(
                        "voice_sim channel %s: finishing %d calls of an earlier run", self.name, len(owed)
                    )
            async with trio.open_nursery() as nursery:

                def spawn(entry: _Open) -> None:
                    nursery.start_soon(self._play, entry)

                self._spawn = spawn
                for entry in list(self._open.values()):
                    spawn(entry)
                self.up = True
                self._accepting = True
                self.events.link_state(self.name, True)
                task_status.started()
                await trio.sleep_forever()
        finally:
            was_up = self.up
            self.up = False
            self._accepting = False
            self._spawn = None
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._running = False
            if was_up:
                self.events.link_state(self.name, False)

    async def submit(
        self, destination: str, source: str, segments: Sequence[OutboundSegment]
    ) -> list[SubmitOutcome]:
        if not self._accepting or self._spawn is None:
            return [SubmitOutcome(error=LINK_DOWN) for _ in segments]
        text = self._text_of(segments)
        if text is None:
            return [SubmitOutcome(error=NOT_ONE_TEXT) for _ in segments]
        if not _DIALABLE.fullmatch(destination):
            return [SubmitOutcome(error=INVALID_NUMBER)]
        if len(self._open) >= self.lines:
            return [SubmitOutcome(error=ALL_LINES_BUSY)]
        call = self._plan_call(destination, source, text)
        if self._fd is not None:
            try:
                self._write(_call_line(call))
            except OSError:
                log.exception("voice_sim channel %s: journal write failed; refusing the call", self.name)
                return [SubmitOutcome(error=JOURNAL_FAILED)]
        entry = _Open(call, keyed=call.key_at is None)
        self._open[call.call_id] = entry
        if self._keep_record:
            self.calls.append(call)
        self._spawn(entry)
        return [SubmitOutcome(carrier_id=call.call_id)]

    async def drain(self) -> None:
        """Refuse new calls (LINK_DOWN, retriable); calls in progress go on until ``run`` is cancelled,
        and any whose keypress or receipt was not stored are finished on the next start."""
        self._accepting = False

    # -- placing a call -------------------------------------------------------------------------------

    @staticmethod
    def _text_of(segments: Sequence[OutboundSegment]) -> str | None:
        """The text to read: the core sends a voice delivery as one segment of UTF-8 (data_coding 8)."""
        if len(segments) != 1:
            return None
        seg = segments[0]
        body = seg.message_payload if seg.message_payload is not None else seg.short_message
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return text if text.strip() else None

    def _pick_plan(self, destination: str) -> CallPlan:
        scripted = self._script.get(_number_key(destination))
        if scripted is not None:
            return scripted
        if len(self._plans) == 1:
            return self._plans[0]
        i = bisect.bisect_right(self._cum, self._rng.random() * self._cum[-1])
        return self._plans[min(i, len(self._plans) - 1)]

    def _plan_call(self, destination: str, source: str, text: str) -> Call:
        plan = self._pick_plan(destination)
        s = self._scale
        now = self.wall_clock()
        answered_at = key_at = None
        if plan.outcome is CallOutcome.ANSWERED:
            lo, hi = self._ring
            ring = lo if lo == hi else self._rng.uniform(lo, hi)
            answered_at = now + ring * s
            reading = len(text) / self._cps
            if plan.key is not None:
                key_at = answered_at + (reading + self._key_seconds) * s
                ended_at = key_at
            else:
                ended_at = answered_at + (reading + self._key_seconds) * s  # silence, then hang-up
        elif plan.outcome is CallOutcome.NO_ANSWER:
            ended_at = now + self._ring_timeout * s
        else:
            ended_at = now + self._setup * s
        return Call(
            call_id=secrets.token_hex(8),
            destination=destination,
            source=source,
            text=text,
            plan=plan,
            placed_at=now,
            answered_at=answered_at,
            key_at=key_at,
            ended_at=ended_at,
        )

    # -- playing a call to its end --------------------------------------------------------------------

    def speech_path(self, call_id: str) -> str:
        """Where the audio of a call is written when ``speech`` is on (8 kHz μ-law WAV)."""
        return os.path.join(self.speech_dir, f"{call_id}.wav")

    async def _speak(self, call: Call) -> None:
        """Write what the call plays; a failure is logged and the call goes on without audio."""
        path = self.speech_path(call.call_id)
        if os.path.exists(path):
            return
        try:
            await trio.to_thread.run_sync(
                lambda: tts.synthesize(call.text, path, voice=self._speech_voice), abandon_on_cancel=True
            )
        except (tts.SpeechUnavailable, OSError) as e:
            log.warning("voice_sim channel %s: no audio for call %s: %s", self.name, call.call_id, e)

    async def _play(self, entry: _Open) -> None:
        call = entry.call
        if self.speech:
            await self._speak(call)
        if not entry.keyed and call.key_at is not None:
            await self._sleep_until(call.key_at)
            raw = f"call:{call.call_id} key:{call.key} from {call.destination} to {call.source}"
            reply = InboundReply(
                sender=call.destination, destination=call.source, text=call.key or "", raw=raw
            )
            await self._offer(lambda: self.events.reply(self.name, reply), "keypress", call.call_id)
            entry.keyed = True
            self._mark("key", call.call_id)
        await self._sleep_until(call.ended_at)
        receipt = self._receipt_of(call)
        await self._offer(lambda: self.events.receipt(self.name, receipt), "receipt", call.call_id)
        self._open.pop(call.call_id, None)
        self._mark("end", call.call_id)

    async def _sleep_until(self, wall: float) -> None:
        # Due times are wall-clock so that they survive a restart; the wait itself is on trio's clock.
        wait = wall - self.wall_clock()
        if wait > 0:
            await trio.sleep(wait)

    async def _offer(self, store: Callable[[], Awaitable[None]], what: str, call_id: str) -> None:
        """Hand an event to the core until it is stored, backing off while the core cannot store it."""
        attempt = 0
        while True:
            try:
                await store()
                return
            except Exception:
                attempt += 1
                delay = min(_RETRY_MAX, _RETRY_FIRST * 2 ** (attempt - 1))
                log.warning(
                    "voice_sim channel %s: %s of call %s not stored (attempt %d); retrying in %.1fs",
                    self.name,
                    what,
                    call_id,
                    attempt,
                    delay,
                    exc_info=True,
                )
                await trio.sleep(delay)

    @staticmethod
    def _receipt_of(call: Call) -> InboundReceipt:
        plan = call.plan
        head = f"call:{call.call_id} to:{call.destination} outcome:{plan.outcome.value}"
        if plan.outcome is CallOutcome.ANSWERED:
            assert call.answered_at is not None
            talk = call.ended_at - call.answered_at
            key = call.key or "none"
            raw = f"{head} sip:200 rang:{call.answered_at - call.placed_at:.1f}s talk:{talk:.1f}s key:{key}"
            return InboundReceipt(call.call_id, ReceiptStatus.DELIVERED, 0, raw)
        what = voice.SIP_REASONS.get(plan.code, "call failed")
        took = call.ended_at - call.placed_at
        if plan.outcome is CallOutcome.NO_ANSWER:
            detail = f"rang {took:.1f}s, nobody answered"
        elif plan.outcome is CallOutcome.BUSY:
            detail = "the line was busy"
        else:
            detail = f"the network could not connect the call ({what})"
        raw = f"{head} sip:{plan.code} after:{took:.1f}s; {detail}"
        return InboundReceipt(call.call_id, ReceiptStatus.UNDELIVERED, plan.code, raw)

    # -- journal --------------------------------------------------------------------------------------

    def _mark(self, kind: str, call_id: str) -> None:
        if self._fd is None:
            return
        try:
            self._write(_mark_line(kind, call_id))
        except OSError:
            # Worst case the event is offered again after a restart: at-least-once, as promised.
            log.exception("voice_sim channel %s: could not journal %s of call %s", self.name, kind, call_id)

    def _write(self, data: bytes) -> None:
        """Append whole lines; once os.write returns they survive a kill -9 (not a power cut)."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            # Cut a partial line off again so the next append does not glue onto half a line.
            try:
                os.ftruncate(self._fd, size)
            except OSError:
                pass
            raise

    def _load_journal(self, path: str) -> tuple[int, list[tuple[Call, bool]]]:
        os.makedirs(self.data_dir, exist_ok=True)
        owed: list[tuple[Call, bool]] = []
        if os.path.exists(path):
            journal = read_call_journal(path)
            if journal.torn:
                log.warning("voice_sim channel %s: dropping a torn last line from %s", self.name, path)
                os.truncate(path, journal.valid_bytes)
            if journal.valid_bytes > self.compact_threshold:
                journal = _compact(path, journal)
            owed = [(c, c.key_at is None or c.call_id in journal.keyed) for c in journal.open_calls()]
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return fd, owed
