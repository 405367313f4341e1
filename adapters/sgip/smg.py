"""A simulated China Unicom SMG (短消息网关): a real SGIP 1.2 server on trio (``masd sim smg``), for tests,
demos and benchmarks; it speaks to masd's SGIP driver and to third-party SP clients alike.

SGIP has two links, and so has this SMG:

* **The SP's link (the SMG is the server).** Bind is checked against ``accounts`` (Login_Name →
  Login_Password): Bind_Resp Result 1 (illegal login) for a wrong name or password, 4 for a Login_Type
  other than 1; a refused Bind is answered, then the connection closes. A Submit before a Bind gets
  Result 1 and changes nothing. After a Bind each Submit gets Result 0, or ``throttle_result`` (11, node
  busy, by default) for every ``throttle_every``-th Submit of a connection, or 8 (message length) for
  MessageContent above 140 octets. Unbind is answered with Unbind_Resp and the connection closes.
  ``disconnect_every`` cuts a connection when its N-th Submit arrives (unanswered); ``idle_timeout``
  unbinds a connection silent that long, as real SMGs do (SGIP has no keep-alive).
* **The link back to the SP (the SMG is the client).** Reports and injected MOs go to the SP's listener
  at ``callback``: the SMG connects, binds with Login_Type 2 (``callback_login_name`` /
  ``callback_password``), sends at most ``deliver_window`` requests unanswered at once, sends again what
  gets no answer within ``resend_after`` seconds or an answer with a Result other than 0 (after 1 s), and
  unbinds once it has had nothing to send for ``callback_idle`` seconds. What is owed waits, while the
  SP's listener is not reachable, and goes when it is.
* **Reports.** A Submit accepted with ReportFlag 1 (or 0 and a failure, or 3) gets, after
  ``report_delay``, a Report per UserNumber naming the Submit by its Sequence Number
  (SubmitSequenceNumber) with a State drawn from ``outcomes``: ``delivered`` (State 0), ``failed``
  (State 2, ErrorCode 28), an ErrorCode such as ``29`` (State 2 with it), ``waiting`` (a State 1 Report,
  then a State 0 one after another delay), ``none`` (no report).
* **MO** (上行短信) injected through the control port: MessageCoding 0, 8 or 15 (chosen per text when not
  given), one Deliver, or several each starting with a UDH (``05 00 03`` or ``06 08 04``) with TP_udhi 1,
  from UserNumber to SPNumber (the SP's access number + extension).

Record: with ``record`` set, every Bind and Submit received is appended to that JSON-lines file: ``time``,
``pdu`` (``SGIP_BIND`` / ``SGIP_SUBMIT``), ``connection``; for Bind ``login_type``, ``login_name``,
``result``; for Submit ``login_name``, ``sequence_number`` (the 30-digit text a Report names), ``result``,
``outcome``, every field of the Submit by its codec name (``message_content`` in hex, UDH included,
``user_numbers`` a list) and ``text``, the content decoded without its UDH (null for binary).

Control port: newline-delimited JSON on 127.0.0.1 only (no authentication; do not expose it), on
``control_port`` (default: the SGIP port + 2, 8803, because + 1 is the SP listener's customary 8802; an
ephemeral one when the SGIP port is 0):
``{"op": "mo", "from": "8613800138000", "to": "1065501234501", "text": "1", "coding": 8, "concat":
"udh8", "shuffle": false}`` → ``{"ok": true, "parts": 1}``; ``{"op": "stats"}``; ``{"op":
"disconnect"}`` (every connection cut, both links); ``{"op": "set", "throttle_every": 3, ...}`` (any of
:data:`RUNTIME_SETTINGS`); ``{"op": "config"}``; ``{"op": "ping"}``.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import logging
import math
import random
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from .. import _simkit, cn_text
from .._simkit import (
    OutcomeDraw,
    RecordFile,
    answer_control,
    check_counts,
    check_outcomes,
    check_ports,
    check_seconds,
    cut_text,
    draw_delay,
    out_of_order,
    parse_weights,
    public_view,
    record_line,
    request_str,
    serve_simulator,
    without_udh,
)
from . import pdu
from . import sequence as seq
from .constants import (
    BIND,
    CODING_ASCII,
    CODING_GBK,
    CODING_UCS2,
    LOGIN_SMG_TO_SP,
    LOGIN_SP_TO_SMG,
    REPORT_ALWAYS,
    REPORT_CHARGE_ONLY,
    REPORT_ON_ERROR,
    RESULT_ERROR_RECEIVING,
    RESULT_ILLEGAL_LOGIN,
    RESULT_LOGIN_TYPE_WRONG,
    RESULT_MESSAGE_LENGTH,
    RESULT_NODE_BUSY,
    RESULT_OK,
    STATE_DELIVERED,
    STATE_FAILED,
    STATE_WAITING,
    SUBMIT,
    UNBIND,
    UNBIND_RESP,
    command_name,
)

__all__ = [
    "OUTCOMES",
    "RUNTIME_SETTINGS",
    "Smg",
    "SmgConfig",
    "SmgStats",
    "account_list",
    "parse_delay",
    "parse_outcomes",
]

log = logging.getLogger(__name__)

OUTCOMES: tuple[str, ...] = ("delivered", "failed", "waiting", "none")
RUNTIME_SETTINGS = frozenset(
    {
        "report_delay",
        "outcomes",
        "throttle_every",
        "throttle_result",
        "disconnect_every",
        "idle_timeout",
        "resend_after",
        "deliver_window",
        "callback_idle",
    }
)

_CONTENT_MAX = 140
_NACK_RETRY = 1.0
_UNBIND_WAIT = 2.0
_CONNECT_RETRY = 1.0
_DECODED = frozenset({BIND, SUBMIT, UNBIND, UNBIND_RESP})  # what an SP sends on its link
_RECORD_FIELDS = [f.name for f in dataclasses.fields(pdu.Submit)]


# ----- configuration ------------------------------------------------------------------------------------


def _outcome_key(key: object) -> str:
    if not isinstance(key, str):
        raise ValueError(f"outcome {key!r} is not a name")
    name = key.strip().lower()
    if name in OUTCOMES:
        return name
    if name.isdigit() and 1 <= int(name) <= 255:
        return str(int(name))  # an ErrorCode: State 2 with it
    raise ValueError(f"unknown outcome {key!r}; expected {', '.join(OUTCOMES)} or an ErrorCode 1-255")


def parse_outcomes(text: str) -> dict[str, float]:
    """``"delivered=0.9,failed=0.05,29=0.05"`` → weights; ValueError on a bad name or number."""
    return check_outcomes(parse_weights(text), _outcome_key)


def _check_delay(delay: object) -> float | tuple[float, float]:
    if isinstance(delay, tuple | list) and len(delay) == 2:
        low, high = float(delay[0]), float(delay[1])
        if 0 <= low <= high and math.isfinite(high):
            return (low, high)
    elif isinstance(delay, int | float) and not isinstance(delay, bool) and 0 <= delay < math.inf:
        return float(delay)
    raise ValueError(f"report delay must be seconds >= 0 or a (min, max) range, got {delay!r}")


def parse_delay(text: str) -> float | tuple[float, float]:
    """``"1.5"`` → 1.5 seconds; ``"0.5-2"`` or ``"0.5,2"`` → uniformly between 0.5 and 2 seconds."""
    return _simkit.parse_delay(text, _check_delay)


def account_list(specs: Iterable[str]) -> dict[str, str]:
    """``["sp:secret", …]`` → accounts (Login_Name → Login_Password); ValueError without a colon."""
    return _simkit.account_list(specs, "login_name:password")


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"callback {value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


@dataclasses.dataclass
class SmgConfig:
    """Everything the simulated SMG can be told; validated on construction (ValueError)."""

    host: str = "127.0.0.1"
    port: int = 8801  # 0: an ephemeral port (see Smg.port)
    accounts: dict[str, str] = dataclasses.field(default_factory=lambda: {"sp": "secret"})
    node_id: int = 2010000001  # the SMG's own node id, in the Sequence Numbers it makes
    callback: str = "127.0.0.1:8802"  # the SP's listener; empty: reports and MOs are kept, never sent
    callback_login_name: str = "smg"
    callback_password: str = "secret"
    report_delay: float | tuple[float, float] = (0.1, 1.0)
    outcomes: dict[str, float] = dataclasses.field(default_factory=lambda: {"delivered": 1.0})
    throttle_every: int = 0  # every Nth Submit of a connection is answered throttle_result; 0 = off
    throttle_result: int = RESULT_NODE_BUSY
    disconnect_every: int = 0  # cut a connection when its Nth Submit arrives, unanswered; 0 = off
    idle_timeout: float = 0.0  # unbind an SP connection silent this long; 0 = never
    resend_after: float = 60.0  # a Report or Deliver unanswered this long is sent again
    deliver_window: int = 16
    callback_idle: float = 5.0  # unbind the link to the SP after this long with nothing to send
    seed: int | None = None
    record: str | Path | None = None
    control: bool = True
    control_port: int | None = None  # None: port + 2 (ephemeral when port is 0); 8802 is the SP's

    def __post_init__(self) -> None:
        if not self.accounts:
            raise ValueError("at least one account (login_name: password) is needed")
        for name, password in self.accounts.items():
            if not (1 <= len(name) <= 16 and len(password) <= 16 and (name + password).isascii()):
                raise ValueError(
                    f"account {name!r}: a login name and password are at most 16 ASCII characters"
                )
        seq.SequenceNumber(self.node_id, 0, 0)
        if self.callback:
            _address(self.callback)
        self.report_delay = _check_delay(self.report_delay)
        self.outcomes = check_outcomes(self.outcomes, _outcome_key)
        check_counts(self, ("throttle_every", "disconnect_every"))
        if not 1 <= self.throttle_result <= 255:
            raise ValueError("throttle_result must be a Result 1-255")
        if self.deliver_window < 1:
            raise ValueError("deliver_window must be >= 1")
        check_seconds(self, ("idle_timeout", "resend_after", "callback_idle"))
        if self.resend_after <= 0:
            raise ValueError("resend_after must be > 0")
        check_ports(self.port, self.control_port)

    def public(self) -> dict[str, Any]:
        """A JSON-ready view (passwords left out)."""
        data = public_view(self)
        del data["callback_password"]
        return data


@dataclasses.dataclass
class SmgStats:
    """Counters since start; ``sessions``, ``callback_up`` and the ``*_pending`` values are current."""

    connections_total: int = 0
    sessions: int = 0
    logins: int = 0
    login_failures: int = 0
    submits: int = 0
    accepted: int = 0
    throttled: int = 0
    rejected: int = 0
    refused_before_bind: int = 0
    unbinds_received: int = 0
    dropped_disconnect_every: int = 0
    dropped_idle: int = 0
    reports_scheduled: int = 0
    reports_sent: int = 0
    reports_resent: int = 0
    reports_acked: int = 0
    reports_pending: int = 0
    mo_sent: int = 0
    mo_acked: int = 0
    mo_pending: int = 0
    nacks: int = 0  # Report_Resp / Deliver_Resp with a Result other than 0
    callback_connects: int = 0
    callback_bind_failures: int = 0
    callback_unbinds: int = 0
    callback_up: int = 0
    malformed: int = 0
    unsupported: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class _Item:
    """A Report or a Deliver owed to the SP until it answers Result 0."""

    __slots__ = ("attempts", "message", "sent_at")

    def __init__(self, message: pdu.Report | pdu.Deliver) -> None:
        self.message = message
        self.attempts = 0
        self.sent_at = 0.0

    @property
    def is_report(self) -> bool:
        return isinstance(self.message, pdu.Report)


def _text_of(submit: pdu.Submit) -> str | None:
    content = without_udh(submit.message_content, submit.tp_udhi)
    decoded = cn_text.decode_content(content, submit.message_coding)
    return decoded if isinstance(decoded, str) else None


def _cut(text: str, coding: int, concat: cn_text.Concat) -> list[str]:
    """``text`` in the parts of MessageCoding ``coding``: one when it fits 140 octets."""
    limit = cn_text.capacity(coding, concat)
    return cut_text(text, lambda t: cn_text.encode_text(t, coding), _CONTENT_MAX, limit)


# ----- the SP's connections -------------------------------------------------------------------------------


class _Conn:
    def __init__(self, smg: Smg, stream: trio.SocketStream, number: int) -> None:
        self.smg = smg
        self.stream = stream
        self.number = number
        self.login_name: str | None = None
        self.submits = 0
        self.out = bytearray()
        self.wake = trio.Event()
        self.closing = False
        self.scope = trio.CancelScope()
        self.last_rx = trio.current_time()

    def send(self, message: pdu.Pdu, number: seq.SequenceNumber) -> None:
        self.out += pdu.encode(message, sequence_number=number)
        self.wake.set()

    def close_after_flush(self) -> None:
        self.closing = True
        self.wake.set()

    async def writer(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake = trio.Event()
                while self.out:
                    data, self.out = self.out, bytearray()
                    await self.stream.send_all(data)
                if self.closing:
                    self.scope.cancel()
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.scope.cancel()

    async def idle_watch(self) -> None:
        while True:
            timeout = self.smg.config.idle_timeout
            if not timeout:
                await trio.sleep(1.0)
                continue
            due = self.last_rx + timeout
            if trio.current_time() < due:
                await trio.sleep(min(due - trio.current_time(), 1.0))
                continue
            log.info("smg: connection %d idle %.3g s; unbinding it", self.number, timeout)
            self.smg.stats.dropped_idle += 1
            self.send(pdu.Unbind(), self.smg.next_number())
            await trio.sleep(_UNBIND_WAIT)
            self.close_after_flush()
            return

    async def reader(self) -> None:
        frames = bytearray()
        try:
            while not self.closing:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    return
                frames += chunk
                while len(frames) >= pdu.HEADER_LENGTH and not self.closing:
                    length = pdu.decode_header(bytes(frames[: pdu.HEADER_LENGTH])).message_length
                    if len(frames) < length:
                        break
                    raw = bytes(frames[:length])
                    del frames[:length]
                    self.last_rx = trio.current_time()
                    self.handle(raw)
        except pdu.PduError as e:
            log.info("smg: connection %d: %s; closing", self.number, e)
            self.smg.stats.malformed += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    def handle(self, raw: bytes) -> None:
        smg = self.smg
        try:
            packet = pdu.decode(raw)
        except pdu.PduError:
            header = pdu.decode_header(raw)
            if header.command_id in _DECODED:
                raise
            smg.stats.unsupported += 1
            log.info(
                "smg: connection %d: %s not served; skipped", self.number, command_name(header.command_id)
            )
            return
        message, number = packet.pdu, packet.sequence_number
        if isinstance(message, pdu.Bind):
            result = RESULT_OK
            if self.login_name is not None:
                result = 2  # repeated login
            elif message.login_type != LOGIN_SP_TO_SMG:
                result = RESULT_LOGIN_TYPE_WRONG
            elif smg.config.accounts.get(message.login_name) != message.login_password:
                result = RESULT_ILLEGAL_LOGIN
            smg.record(
                self,
                "SGIP_BIND",
                {"login_type": message.login_type, "login_name": message.login_name, "result": result},
            )
            self.send(pdu.BindResp(result), number)
            if result == RESULT_OK:
                self.login_name = message.login_name
                smg.stats.logins += 1
                smg.stats.sessions += 1
                log.info("smg: connection %d: %r bound", self.number, message.login_name)
            elif self.login_name is None:
                smg.stats.login_failures += 1
                self.close_after_flush()
        elif isinstance(message, pdu.Submit):
            if self.login_name is None:
                smg.stats.refused_before_bind += 1
                self.send(pdu.SubmitResp(RESULT_ILLEGAL_LOGIN), number)
                return
            self.on_submit(message, number)
        elif isinstance(message, pdu.Unbind):
            smg.stats.unbinds_received += 1
            self.send(pdu.UnbindResp(), number)
            self.close_after_flush()
        elif isinstance(message, pdu.UnbindResp):
            self.close_after_flush()
        else:
            smg.stats.unsupported += 1

    def on_submit(self, submit: pdu.Submit, number: seq.SequenceNumber) -> None:
        smg = self.smg
        cfg = smg.config
        smg.stats.submits += 1
        self.submits += 1
        if cfg.disconnect_every and self.submits % cfg.disconnect_every == 0:
            log.info("smg: connection %d cut at Submit %d (disconnect_every)", self.number, self.submits)
            smg.stats.dropped_disconnect_every += 1
            self.closing = True
            self.scope.cancel()
            return
        result = RESULT_OK
        if cfg.throttle_every and self.submits % cfg.throttle_every == 0:
            result = cfg.throttle_result
            smg.stats.throttled += 1
        elif len(submit.message_content) > _CONTENT_MAX:
            result = RESULT_MESSAGE_LENGTH
            smg.stats.rejected += 1
        self.send(pdu.SubmitResp(result), number)
        outcome = None
        if result == RESULT_OK:
            smg.stats.accepted += 1
            outcome = smg.draw_outcome()
            for user in submit.user_numbers:
                smg.schedule_report(number, user, outcome, submit.report_flag)
        smg.record_submit(self, number, submit, result, outcome)


# ----- the server ---------------------------------------------------------------------------------------


class Smg:
    """The simulated SMG. Run :meth:`serve` in a nursery (``await nursery.start(smg.serve)``)."""

    def __init__(self, config: SmgConfig | None = None) -> None:
        self.config = config or SmgConfig()
        self.stats = SmgStats()
        self.port = 0
        self.control_port = 0
        self._rng = random.Random(self.config.seed)
        self._sequencer = seq.Sequencer(self.config.node_id, start=self._rng.randrange(1, 1 << 31))
        self._mo_ref = self._rng.randrange(1 << 16)
        self._conn_numbers = itertools.count(1)
        self._conns: set[_Conn] = set()
        self._queue: collections.deque[_Item] = collections.deque()
        self._queue_changed = trio.Event()
        self._heap: list[tuple[float, int, _Item]] = []
        self._tiebreak = itertools.count()
        self._wake_scheduler = trio.Event()
        self._callback_scope: trio.CancelScope | None = None
        self._record = RecordFile()
        self._outcomes = OutcomeDraw(self.config.outcomes)

    def update(self, **changes: Any) -> SmgConfig:
        """Change settings while running (the control port's ``set``); only :data:`RUNTIME_SETTINGS`."""
        unknown = sorted(set(changes) - RUNTIME_SETTINGS)
        if unknown:
            raise ValueError(f"cannot change {', '.join(unknown)} at run time")
        if isinstance(changes.get("outcomes"), str):
            changes["outcomes"] = parse_outcomes(changes["outcomes"])
        if isinstance(changes.get("report_delay"), list):
            changes["report_delay"] = tuple(changes["report_delay"])
        self.config = dataclasses.replace(self.config, **changes)
        self._outcomes = OutcomeDraw(self.config.outcomes)
        return self.config

    def next_number(self) -> seq.SequenceNumber:
        return self._sequencer.next(datetime.now())

    def draw_outcome(self) -> str:
        return self._outcomes.draw(self._rng)

    def _delay(self) -> float:
        return draw_delay(self._rng, self.config.report_delay)

    # --- serving ----------------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ``task_status.started(port)`` once both ports accept connections."""
        tasks = (self._scheduler, self._callback_loop)
        await serve_simulator(
            self,
            self._serve_connection,
            tasks,
            self._record,
            "smg: SGIP",
            log,
            task_status,
            control_offset=2,  # + 1 is the SP listener's customary port (8802)
        )

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = _Conn(self, stream, next(self._conn_numbers))
        self._conns.add(conn)
        self.stats.connections_total += 1
        try:
            async with stream:
                with conn.scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(conn.writer)
                        nursery.start_soon(conn.idle_watch)
                        await conn.reader()
                        conn.close_after_flush()
                        await trio.sleep(_UNBIND_WAIT)
                        nursery.cancel_scope.cancel()
        finally:
            self._conns.discard(conn)
            if conn.login_name is not None:
                self.stats.sessions -= 1

    def disconnect_all(self) -> int:
        """Cut every connection, both links, at once; returns how many."""
        conns = list(self._conns)
        for conn in conns:
            conn.closing = True
            conn.scope.cancel()
        dropped = len(conns)
        if self._callback_scope is not None:
            self._callback_scope.cancel()
            dropped += 1
        return dropped

    # --- reports and MOs --------------------------------------------------------------------------------

    def schedule_report(self, submit: seq.SequenceNumber, user: str, outcome: str, report_flag: int) -> None:
        if outcome == "none":
            return
        failed = outcome not in ("delivered", "waiting")
        if report_flag not in (REPORT_ALWAYS, REPORT_CHARGE_ONLY) and not (
            report_flag == REPORT_ON_ERROR and failed
        ):
            return
        if failed:
            code = RESULT_ERROR_RECEIVING if outcome == "failed" else int(outcome)
            reports = [pdu.Report(submit, user, STATE_FAILED, code)]
        elif outcome == "waiting":
            reports = [pdu.Report(submit, user, STATE_WAITING), pdu.Report(submit, user, STATE_DELIVERED)]
        else:
            reports = [pdu.Report(submit, user, STATE_DELIVERED)]
        due = trio.current_time()
        for report in reports:
            due += self._delay()
            self.stats.reports_scheduled += 1
            self.stats.reports_pending += 1
            self._push(due, _Item(report))

    async def inject_mo(
        self,
        *,
        sender: str,
        sp_number: str,
        text: str,
        coding: int | None = None,
        concat: str = "udh8",
        shuffle: bool = False,
    ) -> int:
        """Send ``text`` from ``sender`` (UserNumber, "86…") to ``sp_number`` (access number + extension)
        as Deliver, in parts with a UDH when above 140 octets; returns the number of parts."""
        for what, value in (("sender", sender), ("sp_number", sp_number)):
            if not value or len(value) > 21 or not value.isascii() or "\0" in value:
                raise ValueError(f"{what} must be 1-21 ASCII characters, got {value!r}")
        if concat not in ("udh8", "udh16"):
            raise ValueError(f"concat must be udh8 or udh16, got {concat!r}")
        scheme: cn_text.Concat = "udh8" if concat == "udh8" else "udh16"
        fmt = cn_text.choose_msg_fmt(text) if coding is None else coding
        if fmt not in (CODING_ASCII, CODING_UCS2, CODING_GBK):
            raise ValueError(f"coding must be 0 (ASCII), 8 (UCS-2) or 15 (GBK), got {coding!r}")
        try:
            parts = cn_text.encode_parts(
                cn_text.Plan(fmt, tuple(_cut(text, fmt, scheme))), concat=scheme, ref=self._next_ref()
            )
        except UnicodeEncodeError as e:
            raise ValueError(f"the text cannot be written in coding {fmt}: {e.reason}") from None
        items = [
            _Item(
                pdu.Deliver(
                    user_number=sender,
                    sp_number=sp_number,
                    tp_udhi=part.tp_udhi,
                    message_coding=part.msg_fmt,
                    message_content=part.msg_content,
                )
            )
            for part in parts
        ]
        if shuffle:
            out_of_order(items, self._rng)
        self.stats.mo_pending += len(items)
        for item in items:
            self._ready(item)
        await trio.lowlevel.checkpoint()
        return len(items)

    def _next_ref(self) -> int:
        self._mo_ref = (self._mo_ref + 1) & 0xFFFF
        return self._mo_ref

    def _push(self, when: float, item: _Item) -> None:
        earliest = not self._heap or when < self._heap[0][0]
        heapq.heappush(self._heap, (when, next(self._tiebreak), item))
        if earliest:
            self._wake_scheduler.set()

    def _ready(self, item: _Item, *, front: bool = False) -> None:
        if front:
            self._queue.appendleft(item)
        else:
            self._queue.append(item)
        self._queue_changed.set()

    async def _scheduler(self) -> None:
        while True:
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                self._ready(heapq.heappop(self._heap)[2])
            self._wake_scheduler = trio.Event()
            if self._heap:
                with trio.move_on_at(self._heap[0][0]):
                    await self._wake_scheduler.wait()
            else:
                await self._wake_scheduler.wait()

    # --- the link back to the SP ------------------------------------------------------------------------

    async def _callback_loop(self) -> None:
        """Whenever something is owed, connect to the SP's listener, bind (Login_Type 2), send it, and
        unbind once idle."""
        while True:
            if not self._queue or not self.config.callback:
                self._queue_changed = trio.Event()
                with trio.move_on_after(1.0):  # "set" or a queued item
                    await self._queue_changed.wait()
                continue
            host, port = _address(self.config.callback)
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError as e:
                log.info("smg: cannot reach the SP's listener %s:%d: %s", host, port, e)
                await trio.sleep(_CONNECT_RETRY)
                continue
            self.stats.callback_connects += 1
            inflight: dict[seq.SequenceNumber, _Item] = {}
            try:
                async with stream:
                    with trio.CancelScope() as scope:
                        self._callback_scope = scope
                        await self._callback_session(stream, inflight)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, pdu.PduError) as e:
                log.info("smg: the link to the SP ended: %s", e)
            finally:
                self._callback_scope = None
                self.stats.callback_up = 0
                for item in reversed(list(inflight.values())):
                    self._ready(item, front=True)

    async def _callback_session(
        self, stream: trio.SocketStream, inflight: dict[seq.SequenceNumber, _Item]
    ) -> None:
        frames = _Reader(stream)
        cfg = self.config
        bind = pdu.Bind(LOGIN_SMG_TO_SP, cfg.callback_login_name, cfg.callback_password)
        await stream.send_all(pdu.encode(bind, sequence_number=self.next_number()))
        with trio.fail_after(10):
            raw = await frames.receive()
        if raw is None:
            raise pdu.PduError("the SP closed its listener's connection without answering SGIP_BIND")
        resp = pdu.decode(raw).pdu
        if not isinstance(resp, pdu.BindResp) or resp.result != RESULT_OK:
            self.stats.callback_bind_failures += 1
            log.warning("smg: the SP's listener refused SGIP_BIND: %r", resp)
            await trio.sleep(2.0)
            return
        self.stats.callback_up = 1
        sending = trio.Lock()
        done = trio.Event()
        state = {"last": trio.current_time()}

        async def send(data: bytes) -> None:
            async with sending:
                await stream.send_all(data)

        async def reader() -> None:
            while True:
                raw = await frames.receive()
                if raw is None:
                    done.set()
                    return
                packet = pdu.decode(raw)
                message = packet.pdu
                state["last"] = trio.current_time()
                if isinstance(message, pdu.DeliverResp | pdu.ReportResp):
                    item = inflight.pop(packet.sequence_number, None)
                    if item is not None:
                        self._answered(item, message.result)
                elif isinstance(message, pdu.Unbind):
                    await send(pdu.encode(pdu.UnbindResp(), sequence_number=packet.sequence_number))
                    done.set()
                    return
                elif isinstance(message, pdu.UnbindResp):
                    done.set()
                    return

        async def feeder() -> None:
            while True:
                now = trio.current_time()
                for number, item in list(inflight.items()):
                    if now - item.sent_at >= self.config.resend_after:
                        del inflight[number]
                        self._ready(item, front=True)
                while self._queue and len(inflight) < self.config.deliver_window:
                    item = self._queue.popleft()
                    number = self.next_number()
                    item.attempts += 1
                    item.sent_at = now
                    inflight[number] = item
                    if item.is_report:
                        self.stats.reports_sent += 1
                        self.stats.reports_resent += item.attempts > 1
                    else:
                        self.stats.mo_sent += 1
                    state["last"] = now
                    await send(pdu.encode(item.message, sequence_number=number))
                if not self._queue and not inflight and now - state["last"] >= self.config.callback_idle:
                    self.stats.callback_unbinds += 1
                    await send(pdu.encode(pdu.Unbind(), sequence_number=self.next_number()))
                    with trio.move_on_after(_UNBIND_WAIT):
                        await done.wait()
                    done.set()
                    return
                self._queue_changed = trio.Event()
                with trio.move_on_after(0.05):
                    await self._queue_changed.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            nursery.start_soon(feeder)
            await done.wait()
            nursery.cancel_scope.cancel()

    def _answered(self, item: _Item, result: int) -> None:
        if result == RESULT_OK:
            if item.is_report:
                self.stats.reports_acked += 1
                self.stats.reports_pending -= 1
            else:
                self.stats.mo_acked += 1
                self.stats.mo_pending -= 1
            return
        self.stats.nacks += 1
        self._push(trio.current_time() + _NACK_RETRY, item)

    # --- recording --------------------------------------------------------------------------------------

    def record(self, conn: _Conn, what: str, fields: dict[str, Any]) -> None:
        if self._record.active:
            self._record.append(record_line(what, conn.number, fields))

    def record_submit(
        self, conn: _Conn, number: seq.SequenceNumber, submit: pdu.Submit, result: int, outcome: str | None
    ) -> None:
        if not self._record.active:
            return
        fields = {name: getattr(submit, name) for name in _RECORD_FIELDS}
        fields["message_content"] = submit.message_content.hex()
        fields["user_numbers"] = list(submit.user_numbers)
        self.record(
            conn,
            "SGIP_SUBMIT",
            {
                "login_name": conn.login_name,
                "sequence_number": seq.to_text(number),
                "result": result,
                "outcome": outcome,
                **fields,
                "text": _text_of(submit),
            },
        )

    def flush_record(self) -> None:
        """Write what was recorded so far (also done every 100 ms while serving)."""
        self._record.flush()

    # --- control port -----------------------------------------------------------------------------------

    async def control(self, line: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
        """Answer one control request (a JSON line or an already decoded object)."""
        return await answer_control(
            line, self, {"mo": self._control_mo}, "mo, stats, disconnect, set, config or ping"
        )

    async def _control_mo(self, request: Mapping[str, Any]) -> dict[str, Any]:
        coding = request.get("coding")
        if coding is not None and (not isinstance(coding, int) or isinstance(coding, bool)):
            raise ValueError("'coding' must be 0, 8 or 15")
        parts = await self.inject_mo(
            sender=request_str(request, "from"),
            sp_number=request_str(request, "to"),
            text=request_str(request, "text", empty=True),
            coding=coding,
            concat=request_str(request, "concat", default="udh8"),
            shuffle=bool(request.get("shuffle", False)),
        )
        return {"ok": True, "parts": parts}


class _Reader:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def receive(self) -> bytes | None:
        while True:
            if len(self.buffer) >= pdu.HEADER_LENGTH:
                length = pdu.decode_header(bytes(self.buffer[: pdu.HEADER_LENGTH])).message_length
                if len(self.buffer) >= length:
                    raw = bytes(self.buffer[:length])
                    del self.buffer[:length]
                    return raw
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            self.buffer += chunk
