"""A simulated China Mobile ISMG (互联网短信网关): a real CMPP 2.0 / 3.0 server on trio (``masd sim ismg``),
for tests, demos and benchmarks; it speaks to masd's CMPP driver and to third-party SP clients alike.

This module owns the ISMG's side of a session, built on the codec of :mod:`.pdu`:

* **Login.** CONNECT is checked against ``accounts`` (Source_Addr → shared secret): CONNECT_RESP Status 2
  for an unknown Source_Addr, 3 when AuthenticatorSource is not MD5(Source_Addr + 9 zero octets + secret
  + Timestamp), 4 for a version above ``version``. The session then speaks the client's version: 0x30 in
  the 3.0 layout, 0x20 and any other 2.x (pycmpp sends 0x21) in the 2.0 layout; CONNECT_RESP carries the
  version octet the client sent and, on success, AuthenticatorISMG = MD5(Status + AuthenticatorSource +
  secret) (16 zero octets on failure, as the spec says "empty"). A refused login is answered, then the
  connection closes. The Timestamp is not compared with the clock (SP clocks drift; real ISMGs vary).
* **SUBMIT** before a login gets SUBMIT_RESP Result 2 (command word error) and changes nothing. After a
  login each SUBMIT gets a Msg_Id in the spec's layout (month | day | hour | minute | second of the local
  time, ``ismg_code`` in 22 bits, a 16-bit sequence: :mod:`.msgid`), or Result 8 (flow control) for every
  ``throttle_every``-th SUBMIT of a connection or above ``throttle_above_rate`` per second, or Result 6
  for a Msg_Content above 140 octets. Sequence_Id 0 is accepted (gocmpp and pycmpp start there).
* **Reports.** A SUBMIT with Registered_Delivery 1 gets, after ``report_delay``, one status report per
  Dest_terminal_Id: a DELIVER with Registered_Delivery 1 whose Msg_Content (60 octets on a 2.0 session,
  71 on 3.0; 60 everywhere with ``short_reports``, as gocmpp sends them) carries the SUBMIT_RESP's Msg_Id
  and a Stat drawn from ``outcomes`` (delivered → DELIVRD, undelivered → UNDELIV, expired → EXPIRED, …,
  a carrier code such as ``MK:0005`` as itself, ``none`` for no report). Each part of a long message is
  its own SUBMIT here, with its own Msg_Id and report, as on the real network. Reports (and MOs) go to
  the logged-in connections of the SUBMIT's account, round robin, at most ``deliver_window`` unanswered
  per connection; they wait for a login when none is up, and are sent again when DELIVER_RESP does not
  come within ``report_resend_after`` seconds or comes with a Result other than 0.
* **MO** (上行短信) injected through the control port: Msg_Fmt 0, 8 or 15 (chosen per text when not
  given), one part or several with a UDH (``05 00 03`` or ``06 08 04``) and TP_udhi 1, to Dest_Id =
  service code + extension, from Src_terminal_Id, with a LinkID on 3.0 sessions when one is given.
* **Links.** ACTIVE_TEST is answered in any state with a 13-octet ACTIVE_TEST_RESP; the ISMG sends its
  own every ``active_test_interval`` seconds after a login and drops a connection whose answer does not
  come within ``active_test_timeout`` (an answer that is not 13 octets is malformed: see below).
  TERMINATE is answered with TERMINATE_RESP and the connection closes; the control port's ``terminate``
  sends the ISMG's own. ``disconnect_every`` drops a connection when its N-th SUBMIT arrives (unanswered,
  no TERMINATE: a crash or a cut cable), ``disconnect_after`` drops each logged-in connection that many
  seconds after its login. A PDU that cannot be framed or decoded closes the connection; a Command_Id
  this ISMG does not serve (QUERY, CANCEL, …) is logged and skipped.

Record: with ``record`` set, every CONNECT and SUBMIT received is appended to that JSON-lines file, one
object a PDU: ``time`` (epoch seconds), ``pdu`` (``CMPP_CONNECT`` or ``CMPP_SUBMIT``), ``connection``
(its number), and for CONNECT ``source_addr``, ``version`` (the octet sent), ``timestamp``, ``status``;
for SUBMIT ``sp_id``, ``version`` ("2.0" / "3.0": the session's layout), ``sequence_id``, ``msg_id``
(:func:`.msgid.to_text`, null when refused), ``result``, ``outcome`` (drawn, or null), every field of the
SUBMIT by its codec name (``msg_content`` in hex, UDH included) and ``text``, the content decoded by its
Msg_Fmt without the UDH (null for binary). Lines are written at least every 100 ms and on shutdown.

Control port: newline-delimited JSON on 127.0.0.1 only (no authentication; do not expose it), on
``control_port`` (default: the CMPP port + 1; an ephemeral one when the CMPP port is 0). One request a
line, one answer a line, ``"ok": true`` or ``"ok": false, "error": "..."``:

* ``{"op": "mo", "from": "13800138000", "to": "106571234501", "text": "1", "msg_fmt": 8,
  "concat": "udh8", "sp_id": "901234", "shuffle": false, "service_id": "", "link_id": ""}`` →
  ``{"ok": true, "parts": 1}`` (all but ``from``, ``to`` and ``text`` optional; :meth:`Ismg.inject_mo`);
* ``{"op": "stats"}`` → ``{"ok": true, "stats": {...}}`` (the counters of :class:`IsmgStats`);
* ``{"op": "disconnect"}`` → ``{"ok": true, "dropped": n}``: every connection cut at once;
* ``{"op": "terminate"}`` → ``{"ok": true, "terminated": n}``: a TERMINATE to every logged-in connection,
  each closed when its TERMINATE_RESP comes (or after 5 s);
* ``{"op": "set", "throttle_every": 3, ...}`` → ``{"ok": true, "config": {...}}``: any of
  :data:`RUNTIME_SETTINGS`; ``{"op": "config"}``; ``{"op": "ping"}``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

import trio

from .._outbox import Outbound, Outbox
from .._simconn import SimConn, drop_all, say_goodbye
from .._simkit import (
    OutcomeDraw,
    RecordFile,
    answer_control,
    check_counts,
    check_delay,
    check_outcomes,
    check_ports,
    check_seconds,
    cut_text,
    draw_delay,
    out_of_order,
    outcome_or_stat,
    parse_delay,
    parse_weights,
    public_view,
    record_line,
    request_str,
    serve_simulator,
    without_udh,
)
from .._simkit import account_list as _accounts
from ..cn_text import (
    SINGLE_OCTETS,
    Concat,
    Plan,
    capacity,
    choose_msg_fmt,
    decode_content,
    encode_parts,
    encode_text,
)
from . import msgid
from .constants import (
    ACTIVE_TEST,
    ACTIVE_TEST_RESP,
    CONNECT,
    CONNECT_AUTH_FAILED,
    CONNECT_BAD_SOURCE_ADDR,
    CONNECT_BAD_STRUCTURE,
    CONNECT_OK,
    CONNECT_VERSION_TOO_HIGH,
    DELIVER_RESP,
    MSG_FMT_ASCII,
    MSG_FMT_GBK,
    MSG_FMT_UCS2,
    REGISTERED_DELIVERY_REPORT,
    RESULT_BAD_COMMAND,
    RESULT_FLOW_CONTROL,
    RESULT_OK,
    RESULT_TOO_LONG,
    STAT_DELETED,
    STAT_DELIVERED,
    STAT_EXPIRED,
    STAT_REJECTED,
    STAT_UNDELIVERABLE,
    STAT_UNKNOWN,
    SUBMIT,
    TERMINATE,
    TERMINATE_RESP,
    VERSION_20,
    VERSION_30,
    command_name,
    connect_status_name,
)
from .pdu import (
    HEADER_LENGTH,
    ActiveTest,
    ActiveTestResp,
    Connect,
    ConnectResp,
    Deliver,
    DeliverResp,
    Pdu,
    PduError,
    Report,
    Submit,
    SubmitResp,
    Terminate,
    TerminateResp,
    authenticator_ismg,
    authenticator_source,
    decode,
    decode_header,
    encode,
    encode_report,
)

__all__ = [
    "OUTCOMES",
    "RUNTIME_SETTINGS",
    "Ismg",
    "IsmgConfig",
    "IsmgStats",
    "account_list",
    "parse_delay",
    "parse_outcomes",
    "parse_version",
]

log = logging.getLogger(__name__)

# Outcome names and the Stat each puts in a report; "none" sends no report. Any other key of 1-7
# upper-case ASCII characters (a carrier code such as "MK:0005") is sent as the Stat itself.
_STAT_OF = {
    "delivered": STAT_DELIVERED,
    "undelivered": STAT_UNDELIVERABLE,
    "expired": STAT_EXPIRED,
    "rejected": STAT_REJECTED,
    "deleted": STAT_DELETED,
    "unknown": STAT_UNKNOWN,
}
OUTCOMES: tuple[str, ...] = (*_STAT_OF, "none")

RUNTIME_SETTINGS = frozenset(
    {
        "report_delay",
        "outcomes",
        "short_reports",
        "throttle_every",
        "throttle_above_rate",
        "disconnect_every",
        "disconnect_after",
        "active_test_interval",
        "active_test_timeout",
        "report_resend_after",
        "deliver_window",
    }
)

_DECODED = frozenset(
    {CONNECT, SUBMIT, DELIVER_RESP, ACTIVE_TEST, ACTIVE_TEST_RESP, TERMINATE, TERMINATE_RESP}
)
_VERSION_TEXT = {VERSION_20: "2.0", VERSION_30: "3.0"}
_TERMINAL_ID = {VERSION_20: 21, VERSION_30: 32}
Concats: tuple[str, ...] = get_args(Concat)


# ----- configuration ------------------------------------------------------------------------------------


def parse_version(value: int | str) -> int:
    """``"3.0"``, ``"2.0"``, ``0x30`` or ``0x20`` → the version octet; ValueError otherwise."""
    if isinstance(value, str):
        for octet, text in _VERSION_TEXT.items():
            if value.strip() == text:
                return octet
    elif value in _VERSION_TEXT:
        return value
    raise ValueError(f"version must be 3.0 or 2.0, got {value!r}")


def _outcome_key(key: object) -> str:
    return outcome_or_stat(key, OUTCOMES, "Stat")  # a carrier's own Stat word, sent as it is


def parse_outcomes(text: str) -> dict[str, float]:
    """``"delivered=0.9,undelivered=0.05,expired=0.05"`` → weights; ValueError on a bad name or number."""
    return check_outcomes(parse_weights(text), _outcome_key)


def account_list(specs: Iterable[str]) -> dict[str, str]:
    """``["901234:secret", …]`` → accounts (Source_Addr → shared secret); ValueError without a colon."""
    return _accounts(specs, "sp_id:secret")


@dataclasses.dataclass
class IsmgConfig:
    """Everything the simulated ISMG can be told; validated on construction (ValueError)."""

    host: str = "127.0.0.1"
    port: int = 7890  # 0: an ephemeral port (see Ismg.port)
    version: int = VERSION_30  # the highest version it speaks: 0x30 (takes 2.x and 3.0) or 0x20
    accounts: dict[str, str] = dataclasses.field(default_factory=lambda: {"901234": "secret"})
    ismg_code: int = 10086  # the 22-bit ISMG code in every Msg_Id it gives
    report_delay: float | tuple[float, float] = (0.1, 1.0)  # seconds, fixed or uniform (min, max)
    outcomes: dict[str, float] = dataclasses.field(default_factory=lambda: {"delivered": 1.0})
    short_reports: bool = False  # 60-octet reports on 3.0 sessions too (gocmpp's habit)
    throttle_every: int = 0  # every Nth SUBMIT of a connection gets Result 8; 0 = off
    throttle_above_rate: float = 0.0  # SUBMITs/s per connection (1 s burst) beyond which Result 8; 0 = off
    disconnect_every: int = 0  # drop a connection when its Nth SUBMIT arrives, unanswered; 0 = off
    disconnect_after: float = 0.0  # drop a logged-in connection this many seconds after login; 0 = off
    active_test_interval: float = 180.0  # the spec's 3 minutes between the ISMG's ACTIVE_TEST; 0 = never
    active_test_timeout: float = 60.0  # a connection that does not answer within this is dropped
    report_resend_after: float = 60.0  # a DELIVER without DELIVER_RESP after this is sent again
    deliver_window: int = 16  # DELIVERs (reports, MOs) unanswered at once per connection
    seed: int | None = None
    record: str | Path | None = None  # JSON-lines file of every CONNECT and SUBMIT received
    control: bool = True  # serve the control port
    control_port: int | None = None  # None: port + 1 (ephemeral when port is 0)

    def __post_init__(self) -> None:
        self.version = parse_version(self.version)
        if not self.accounts:
            raise ValueError("at least one account (sp_id: secret) is needed")
        for sp_id in self.accounts:
            # Source_Addr is 6 octets; an id that does not fit could never log in.
            if not (1 <= len(sp_id) <= 6 and sp_id.isascii() and sp_id.isprintable()):
                raise ValueError(f"account {sp_id!r}: an sp_id is 1-6 ASCII characters")
        if not 0 <= self.ismg_code < 1 << 22:
            raise ValueError(f"ismg_code {self.ismg_code} does not fit 22 bits (0 … {(1 << 22) - 1})")
        self.report_delay = check_delay(self.report_delay)
        self.outcomes = check_outcomes(self.outcomes, _outcome_key)
        check_counts(self, ("throttle_every", "disconnect_every"))
        if self.deliver_window < 1:
            raise ValueError("deliver_window must be >= 1")
        check_seconds(
            self,
            (
                "throttle_above_rate",
                "disconnect_after",
                "active_test_interval",
                "active_test_timeout",
                "report_resend_after",
            ),
        )
        if self.active_test_timeout <= 0 or self.report_resend_after <= 0:
            raise ValueError("active_test_timeout and report_resend_after must be > 0")
        check_ports(self.port, self.control_port)

    def public(self) -> dict[str, Any]:
        """A JSON-ready view (secrets left out)."""
        data = public_view(self)
        data["version"] = _VERSION_TEXT[self.version]
        return data


@dataclasses.dataclass
class IsmgStats:
    """Counters since start; ``sessions`` and the ``*_pending`` values are current."""

    connections_total: int = 0
    sessions: int = 0  # logged-in connections now
    logins: int = 0
    login_failures: int = 0
    submits: int = 0  # SUBMITs received after a login
    accepted: int = 0
    throttled: int = 0  # answered Result 8
    rejected: int = 0  # answered another Result (too long)
    refused_before_connect: int = 0
    reports_scheduled: int = 0
    reports_sent: int = 0  # DELIVERs sent, resends included
    reports_resent: int = 0
    reports_acked: int = 0
    reports_pending: int = 0
    mo_sent: int = 0
    mo_acked: int = 0
    mo_pending: int = 0
    active_tests_received: int = 0
    active_tests_sent: int = 0
    active_tests_answered: int = 0
    dropped_unanswered_active_test: int = 0
    dropped_disconnect_every: int = 0
    dropped_disconnect_after: int = 0
    terminates_received: int = 0
    terminates_sent: int = 0
    malformed: int = 0  # connections closed for a PDU that did not frame or decode
    unsupported: int = 0  # PDUs of a Command_Id not served here, skipped

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


# ----- what waits to go out as DELIVER ------------------------------------------------------------------


class _Outbound(Outbound):
    """One DELIVER owed to an account (a report or an MO part) until a DELIVER_RESP with Result 0.

    A report's Msg_Content is made when it first falls due (its Done_time is then). The PDU is encoded
    once per session version, with Sequence_Id 0 that each send patches, so a resend is the same message.
    """

    __slots__ = ("deliver", "report", "wire_of")

    def __init__(self, sp_id: str, deliver: Deliver, report: Report | None = None) -> None:
        super().__init__(sp_id)
        self.deliver = deliver
        self.report = report
        self.wire_of: dict[int, bytes] = {}

    @property
    def is_report(self) -> bool:
        return self.report is not None

    def wire(self, version: int, short_reports: bool, sequence_id: int) -> bytes:
        data = self.wire_of.get(version)
        if data is None:
            data = self.wire_of[version] = encode(
                self._deliver_for(version, short_reports), sequence_id=0, version=version
            )
        return data[:8] + sequence_id.to_bytes(4, "big") + data[12:]

    def _deliver_for(self, version: int, short_reports: bool) -> Deliver:
        width = _TERMINAL_ID[version]
        deliver = dataclasses.replace(self.deliver, src_terminal_id=self.deliver.src_terminal_id[:width])
        if version == VERSION_20:
            deliver = dataclasses.replace(deliver, link_id="", src_terminal_type=0)
        if self.report is not None:
            layout = VERSION_20 if short_reports else version
            report = dataclasses.replace(
                self.report, dest_terminal_id=self.report.dest_terminal_id[: _TERMINAL_ID[layout]]
            )
            deliver = dataclasses.replace(deliver, msg_content=encode_report(report, version=layout))
        return deliver


def _cmpp_time(t: float) -> str:
    """Submit_time / Done_time of a report: YYMMDDHHMM, local time."""
    return time.strftime("%y%m%d%H%M", time.localtime(t))


def _text_of(submit: Submit) -> str | None:
    """A SUBMIT's text without its UDH, for the record; None for binary content."""
    text = decode_content(without_udh(submit.msg_content, submit.tp_udhi), submit.msg_fmt)
    return text if isinstance(text, str) else None


def _plan_in(text: str, msg_fmt: int, concat: Concat) -> Plan:
    """``text`` cut into parts of Msg_Fmt ``msg_fmt`` (one part without a UDH when it fits 140 octets);
    ValueError when the format cannot encode it or it needs more than 255 parts."""
    parts = cut_text(text, lambda t: encode_text(t, msg_fmt), capacity(msg_fmt), capacity(msg_fmt, concat))
    return Plan(msg_fmt, tuple(parts))


# ----- one CMPP connection ------------------------------------------------------------------------------


class _Conn(SimConn):
    """One TCP connection: its login, its output buffer and writer, its DELIVERs in flight."""

    name = "ismg"
    log = log
    header_length = HEADER_LENGTH
    error = PduError
    active_test_resp = "ACTIVE_TEST_RESP"

    def __init__(self, ismg: Ismg, stream: trio.SocketStream, number: int) -> None:
        super().__init__(stream, number)
        self.ismg = ismg
        self.sp_id = ""
        self.version: int | None = None  # the session's layout once logged in
        self.inflight: dict[int, _Outbound] = {}  # DELIVER Sequence_Id → what it carries, in send order
        self.terminate_seq = -1
        self.terminate_answered = trio.Event()

    @property
    def server(self) -> Ismg:
        return self.ismg

    def length_of(self, header: bytes) -> int:
        return decode_header(header).total_length

    def active_test(self, sequence_id: int) -> None:
        self.reply(ActiveTest(), sequence_id)

    def deliver_wire(self, item: _Outbound, sequence_id: int) -> bytes:
        assert self.version is not None
        return item.wire(self.version, self.ismg.config.short_reports, sequence_id)

    @property
    def logged_in(self) -> bool:
        return self.version is not None

    @property
    def layout(self) -> int:
        """The version to encode in: the session's, or before a login the ISMG's own."""
        return self.ismg.config.version if self.version is None else self.version

    # --- output -----------------------------------------------------------------------------------------

    def reply(self, pdu: Pdu, sequence_id: int) -> None:
        self.send(encode(pdu, sequence_id=sequence_id, version=self.layout))

    # --- input ------------------------------------------------------------------------------------------

    def handle(self, raw: bytes) -> None:
        header = decode_header(raw)
        command_id, seq = header.command_id, header.sequence_id
        if command_id not in _DECODED:
            self.ismg.stats.unsupported += 1
            log.info(
                "ismg: connection %d: %s is not served here; skipped", self.number, command_name(command_id)
            )
            return
        pdu = decode(raw, version=self.layout).pdu
        if isinstance(pdu, Connect):
            self.on_connect(pdu, seq)
        elif isinstance(pdu, ActiveTest):
            self.ismg.stats.active_tests_received += 1
            self.reply(ActiveTestResp(), seq)
        elif isinstance(pdu, ActiveTestResp):
            if seq == self.active_test_seq and self.active_test_answered is not None:
                self.active_test_answered.set()
        elif isinstance(pdu, Terminate):
            self.ismg.stats.terminates_received += 1
            self.reply(TerminateResp(), seq)
            self.ismg.forget(self)
            self.close_after_flush()
        elif isinstance(pdu, TerminateResp):
            if seq == self.terminate_seq:
                self.terminate_answered.set()
        elif isinstance(pdu, Submit):
            if self.logged_in:
                self.on_submit(pdu, seq)
            else:
                self.ismg.stats.refused_before_connect += 1
                log.info("ismg: connection %d: SUBMIT before CONNECT refused", self.number)
                self.reply(SubmitResp(0, RESULT_BAD_COMMAND), seq)
        elif isinstance(pdu, DeliverResp):
            item = self.inflight.pop(seq, None)
            if item is not None:
                self.ismg.answered(self, item, pdu.result)

    def on_connect(self, pdu: Connect, seq: int) -> None:
        ismg = self.ismg
        if self.logged_in:
            self.reply(ConnectResp(CONNECT_BAD_STRUCTURE, bytes(16), self.layout), seq)
            return
        status, layout = _negotiate(pdu.version, ismg.config.version)
        secret = ismg.config.accounts.get(pdu.source_addr)
        if status == CONNECT_OK:
            if secret is None:
                status = CONNECT_BAD_SOURCE_ADDR
            elif pdu.authenticator_source != authenticator_source(pdu.source_addr, secret, pdu.timestamp):
                status = CONNECT_AUTH_FAILED
        ismg.record_connect(self, pdu, status)
        if status != CONNECT_OK:
            ismg.stats.login_failures += 1
            log.info(
                "ismg: connection %d: CONNECT of %r (version 0x%02X) refused: %s",
                self.number,
                pdu.source_addr,
                pdu.version,
                connect_status_name(status),
            )
            resp = ConnectResp(
                status, bytes(16), layout if status != CONNECT_VERSION_TOO_HIGH else ismg.config.version
            )
            self.send(encode(resp, sequence_id=seq, version=layout))
            self.close_after_flush()
            return
        assert secret is not None
        auth = authenticator_ismg(CONNECT_OK, pdu.authenticator_source, secret, version=layout)
        self.send(encode(ConnectResp(CONNECT_OK, auth, pdu.version), sequence_id=seq, version=layout))
        self.sp_id = pdu.source_addr
        self.version = layout
        log.info(
            "ismg: connection %d (%s): %r logged in, CMPP %s",
            self.number,
            self.peer,
            self.sp_id,
            _VERSION_TEXT[layout],
        )
        ismg.on_login(self)
        if self.nursery is not None:
            self.nursery.start_soon(self.active_tester)
            if ismg.config.disconnect_after:
                self.nursery.start_soon(self.disconnect_timer, ismg.config.disconnect_after)

    def on_submit(self, submit: Submit, seq: int) -> None:
        ismg = self.ismg
        cfg = ismg.config
        stats = ismg.stats
        stats.submits += 1
        self.submits += 1
        if cfg.disconnect_every and self.submits >= cfg.disconnect_every:
            log.info(
                "ismg: connection %d: dropped at SUBMIT %d (disconnect_every)", self.number, self.submits
            )
            stats.dropped_disconnect_every += 1
            # Out of service at once; answers owed for earlier PDUs are still written, then the close.
            ismg.forget(self)
            self.close_after_flush()
            return
        result = RESULT_OK
        if (cfg.throttle_every and self.submits % cfg.throttle_every == 0) or (
            cfg.throttle_above_rate and not self.bucket.take(cfg.throttle_above_rate)
        ):
            result = RESULT_FLOW_CONTROL
            stats.throttled += 1
        elif len(submit.msg_content) > SINGLE_OCTETS:
            result = RESULT_TOO_LONG
            stats.rejected += 1
        if result != RESULT_OK:
            self.reply(SubmitResp(0, result), seq)
            ismg.record_submit(self, seq, submit, None, result, None)
            return
        stats.accepted += 1
        msg_id = ismg.new_msg_id()
        self.reply(SubmitResp(msg_id, RESULT_OK), seq)
        outcome = ismg.draw_outcome()
        if submit.registered_delivery == REGISTERED_DELIVERY_REPORT and outcome != "none":
            for terminal in submit.dest_terminal_ids:
                ismg.schedule_report(self.sp_id, msg_id, outcome, submit, terminal)
        ismg.record_submit(self, seq, submit, msg_id, result, outcome)

    # --- the ISMG's own requests ------------------------------------------------------------------------

    async def terminate(self) -> None:
        """Send TERMINATE, stop sending DELIVERs, close when TERMINATE_RESP comes (or after 5 s)."""
        self.terminate_seq = self.next_sequence()
        self.ismg.stats.terminates_sent += 1
        self.reply(Terminate(), self.terminate_seq)
        self.ismg.forget(self)
        await self.end_after(self.terminate_answered)


def _negotiate(asked: int, highest: int) -> tuple[int, int]:
    """(CONNECT_RESP Status, the layout to speak) for a client's Version octet: any 2.x in the 2.0 layout
    (pycmpp sends 0x21), 0x30 in 3.0 when the ISMG speaks it; above that "version too high" (4); below
    2.0 there is no layout, a structure error (1)."""
    if asked >> 4 == VERSION_20 >> 4:
        return CONNECT_OK, VERSION_20
    if asked == VERSION_30 and highest == VERSION_30:
        return CONNECT_OK, VERSION_30
    if asked >= VERSION_30:
        return CONNECT_VERSION_TOO_HIGH, highest
    return CONNECT_BAD_STRUCTURE, highest


# ----- the server ---------------------------------------------------------------------------------------


class Ismg:
    """The simulated ISMG. Run :meth:`serve` in a nursery (``await nursery.start(ismg.serve)``)."""

    def __init__(self, config: IsmgConfig | None = None) -> None:
        self.config = config or IsmgConfig()
        self.stats = IsmgStats()
        self.port = 0
        self.control_port = 0
        self._rng = random.Random(self.config.seed)
        # The 16-bit sequence starts at a random point so that two runs rarely give the same ids.
        self._msg_seq = self._rng.randrange(1 << 16)
        self._mo_ref = self._rng.randrange(1 << 16)
        self._smsc_sequence = itertools.count(1)
        self._conn_numbers = itertools.count(1)
        self._conns: set[_Conn] = set()
        self._outbox: Outbox[_Outbound] = Outbox(
            self.stats,
            window=lambda: self.config.deliver_window,
            resend_after=lambda: self.config.report_resend_after,
            prepare=self._falls_due,
        )
        self._record = RecordFile()
        self._outcomes = OutcomeDraw(self.config.outcomes)

    # --- settings ---------------------------------------------------------------------------------------

    def update(self, **changes: Any) -> IsmgConfig:
        """Change settings while running (the control port's ``set``); only :data:`RUNTIME_SETTINGS`."""
        unknown = sorted(set(changes) - RUNTIME_SETTINGS)
        if unknown:
            raise ValueError(f"cannot change {', '.join(unknown)} at run time")
        if isinstance(changes.get("outcomes"), str):
            changes["outcomes"] = parse_outcomes(changes["outcomes"])
        if isinstance(changes.get("report_delay"), str):
            changes["report_delay"] = parse_delay(changes["report_delay"])
        if isinstance(changes.get("report_delay"), list):
            changes["report_delay"] = tuple(changes["report_delay"])
        self.config = dataclasses.replace(self.config, **changes)  # validated in __post_init__
        self._outcomes = OutcomeDraw(self.config.outcomes)
        return self.config

    # --- serving ----------------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ``task_status.started(port)`` once both ports accept connections."""
        tasks = (self._outbox.scheduler, self._outbox.sweeper)
        await serve_simulator(
            self, self._serve_connection, tasks, self._record, "ismg: CMPP", log, task_status
        )

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = _Conn(self, stream, next(self._conn_numbers))
        self._conns.add(conn)
        self.stats.connections_total += 1
        await conn.run()

    def on_login(self, conn: _Conn) -> None:
        self.stats.logins += 1
        self.stats.sessions += 1
        self._outbox.add_session(conn.sp_id, conn)

    def forget(self, conn: _Conn) -> None:
        """Take a connection out of service; its DELIVERs in flight go back to the front of the queue."""
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        if not conn.logged_in:
            return
        self.stats.sessions -= 1
        self._outbox.remove_session(conn.sp_id, conn)

    def disconnect_all(self) -> int:
        """Cut every connection at once, without TERMINATE; returns how many."""
        return drop_all(self._conns)

    def terminate_all(self) -> int:
        """Send TERMINATE to every logged-in connection (each closes on its TERMINATE_RESP)."""
        return say_goodbye(self._conns, _Conn.terminate)

    # --- Msg_Ids, outcomes, reports -----------------------------------------------------------------------

    def new_msg_id(self) -> int:
        """A Msg_Id in the spec's layout: the local time to the second, the ISMG code, a 16-bit sequence."""
        self._msg_seq = (self._msg_seq + 1) & 0xFFFF
        now = datetime.now()
        fields = msgid.MsgId(
            now.month, now.day, now.hour, now.minute, now.second, self.config.ismg_code, self._msg_seq
        )
        return msgid.pack(fields)

    def draw_outcome(self) -> str:
        return self._outcomes.draw(self._rng)

    def _delay(self) -> float:
        return draw_delay(self._rng, self.config.report_delay)

    def schedule_report(self, sp_id: str, msg_id: int, outcome: str, submit: Submit, terminal: str) -> None:
        report = Report(
            msg_id=msg_id,
            stat=_STAT_OF.get(outcome, outcome),
            submit_time=_cmpp_time(time.time()),
            done_time="",  # filled in when it falls due
            dest_terminal_id=terminal,
            smsc_sequence=next(self._smsc_sequence) & 0xFFFFFFFF,
        )
        deliver = Deliver(
            msg_id=0,  # its own Msg_Id is given when it falls due, as the handset's answer comes then
            dest_id=submit.src_id,  # the SP's service code + extension the SUBMIT came from
            service_id=submit.service_id,
            msg_fmt=MSG_FMT_ASCII,
            src_terminal_id=terminal,
            registered_delivery=REGISTERED_DELIVERY_REPORT,
        )
        self.stats.reports_scheduled += 1
        self.stats.reports_pending += 1
        self._outbox.push(trio.current_time() + self._delay(), _Outbound(sp_id, deliver, report))

    # --- mobile-originated messages ---------------------------------------------------------------------

    async def inject_mo(
        self,
        *,
        sender: str,
        dest_id: str,
        text: str,
        msg_fmt: int | None = None,
        sp_id: str | None = None,
        concat: Concat = "udh8",
        shuffle: bool = False,
        service_id: str = "",
        link_id: str = "",
    ) -> int:
        """Send ``text`` from handset ``sender`` to ``dest_id`` (service code + extension) as DELIVER with
        Registered_Delivery 0, to a logged-in connection of ``sp_id`` (default: an account with a session,
        else the first account), or queued until one logs in. ``msg_fmt`` 0, 8 or 15 (default: ASCII when
        the text is, else UCS-2); a text above 140 octets goes in parts, each with the UDH of ``concat``
        and TP_udhi 1. ``shuffle`` sends the parts out of order; ``link_id`` goes to 3.0 sessions only.
        Returns the number of parts; ValueError for what cannot be sent."""
        for what, value, width in (("sender", sender, 32), ("dest_id", dest_id, 21)):
            if not value or len(value) > width or not value.isascii() or "\0" in value:
                raise ValueError(f"{what} must be 1-{width} ASCII characters, got {value!r}")
        if len(service_id) > 10 or len(link_id) > 20 or not (service_id + link_id).isascii():
            raise ValueError("service_id is at most 10 and link_id at most 20 ASCII characters")
        if concat not in Concats:
            raise ValueError(f"concat must be one of {', '.join(Concats)}, got {concat!r}")
        if sp_id is None:
            sp_id = next((sid for sid, conns in self._outbox.sessions.items() if conns), None)
            sp_id = sp_id or next(iter(self.config.accounts))
        elif sp_id not in self.config.accounts:
            raise ValueError(f"unknown sp_id {sp_id!r}")
        fmt = choose_msg_fmt(text) if msg_fmt is None else msg_fmt
        if fmt not in (MSG_FMT_ASCII, MSG_FMT_UCS2, MSG_FMT_GBK):
            raise ValueError(f"msg_fmt must be 0 (ASCII), 8 (UCS-2) or 15 (GBK), got {msg_fmt!r}")
        self._mo_ref = (self._mo_ref + 1) & 0xFFFF
        parts = encode_parts(_plan_in(text, fmt, concat), concat=concat, ref=self._mo_ref)
        items = [
            _Outbound(
                sp_id,
                Deliver(
                    msg_id=self.new_msg_id(),
                    dest_id=dest_id,
                    service_id=service_id,
                    tp_udhi=part.tp_udhi,
                    msg_fmt=part.msg_fmt,
                    src_terminal_id=sender,
                    registered_delivery=0,
                    msg_content=part.msg_content,
                    link_id=link_id,
                ),
            )
            for part in parts
        ]
        if shuffle:
            out_of_order(items, self._rng)
        self.stats.mo_pending += len(items)
        for item in items:
            self._outbox.make_ready(item)
        await trio.lowlevel.checkpoint()
        return len(items)

    # --- the DELIVER machinery --------------------------------------------------------------------------

    def _falls_due(self, item: _Outbound) -> None:
        if item.report is not None and not item.report.done_time:
            # Due now: the handset "answered" now, and the report's DELIVER gets its own Msg_Id.
            item.report = dataclasses.replace(item.report, done_time=_cmpp_time(time.time()))
            item.deliver = dataclasses.replace(item.deliver, msg_id=self.new_msg_id())

    def answered(self, conn: _Conn, item: _Outbound, result: int) -> None:
        # Result 8 (slow down) or an error: a real ISMG sends it again later.
        self._outbox.answered(conn.sp_id, item, result == RESULT_OK)

    # --- recording --------------------------------------------------------------------------------------

    @property
    def recording(self) -> bool:
        return self._record.active

    def record_connect(self, conn: _Conn, pdu: Connect, status: int) -> None:
        if not self._record.active:
            return
        self._record.append(
            record_line(
                "CMPP_CONNECT",
                conn.number,
                {
                    "source_addr": pdu.source_addr,
                    "version": pdu.version,
                    "timestamp": pdu.timestamp,
                    "status": status,
                },
            )
        )

    def record_submit(
        self, conn: _Conn, seq: int, submit: Submit, msg_id: int | None, result: int, outcome: str | None
    ) -> None:
        if not self._record.active:
            return
        fields = {f.name: getattr(submit, f.name) for f in dataclasses.fields(submit)}
        fields["msg_content"] = submit.msg_content.hex()
        fields["dest_terminal_ids"] = list(submit.dest_terminal_ids)
        del fields["msg_id"]  # 0 from the SP; the one given is below
        self._record.append(
            record_line(
                "CMPP_SUBMIT",
                conn.number,
                {
                    "sp_id": conn.sp_id,
                    "version": _VERSION_TEXT[conn.layout],
                    "sequence_id": seq,
                    "msg_id": None if msg_id is None else msgid.to_text(msg_id),
                    "result": result,
                    "outcome": outcome,
                    **fields,
                    "text": _text_of(submit),
                },
            )
        )

    def flush_record(self) -> None:
        """Write what was recorded so far (also done every 100 ms while serving)."""
        self._record.flush()

    # --- control port -----------------------------------------------------------------------------------

    async def control(self, line: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
        """Answer one control request (a JSON line or an already decoded object)."""
        ops = {"mo": self._control_mo, "terminate": self._control_terminate}
        return await answer_control(line, self, ops, "mo, stats, disconnect, terminate, set, config or ping")

    async def _control_terminate(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return {"ok": True, "terminated": self.terminate_all()}

    async def _control_mo(self, request: Mapping[str, Any]) -> dict[str, Any]:
        msg_fmt = request.get("msg_fmt")
        if msg_fmt is not None and (not isinstance(msg_fmt, int) or isinstance(msg_fmt, bool)):
            raise ValueError("'msg_fmt' must be 0, 8 or 15")
        parts = await self.inject_mo(
            sender=request_str(request, "from"),
            dest_id=request_str(request, "to"),
            text=request_str(request, "text", empty=True),
            msg_fmt=msg_fmt,
            sp_id=request.get("sp_id"),
            concat=request.get("concat", "udh8"),
            shuffle=bool(request.get("shuffle", False)),
            service_id=request_str(request, "service_id", empty=True, default=""),
            link_id=request_str(request, "link_id", empty=True, default=""),
        )
        return {"ok": True, "parts": parts}
