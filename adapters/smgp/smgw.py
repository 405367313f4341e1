"""A simulated China Telecom SMGW (短消息网关): a real SMGP 3.0 server on trio (``masd sim smgw``), for
tests, demos and benchmarks; it speaks to masd's SMGP driver and to third-party SP clients alike.

This module owns the SMGW's side of a session, built on the codec of :mod:`.pdu`:

* **Login.** SMGP_Login is checked against ``accounts`` (ClientID → shared secret): Login_Resp Status 21
  (authentication failed) for an unknown ClientID or an AuthenticatorClient that is not MD5(ClientID + 7
  zero octets + secret + TimeStamp), 22 for a ClientVersion above 0x30, 10 for a LoginMode other than 0
  (send), 1 (receive) or 2 (both). On success AuthenticatorServer = MD5(Status + AuthenticatorClient +
  secret); on failure 16 zero octets, then the connection closes. The TimeStamp is not compared with the
  clock (SP clocks drift).
* **Submit** before a login, or on a receive-only link, gets Status 11 (command word error) and changes
  nothing. After a login each Submit gets a MsgID in the spec's BCD layout (``smgw_code``, MMDDHHMM of
  the local time, a 6-digit sequence: :mod:`.msgid`), or a refusal on demand: Status 74 (sending banned
  in this time window) while ``quiet_hours`` is on or for every ``banned_every``-th Submit of a
  connection; 75 (daily volume exceeded) once an account had ``daily_limit`` Submits accepted (the count
  restarts at local midnight, or on the control port's ``reset_day``); 1 (system busy) for every
  ``busy_every``-th Submit of a connection or above ``busy_above_rate`` per second; 36 for a MsgContent
  above 140 octets. A refused Submit's MsgID is 10 zero octets.
* **Reports.** A Submit with NeedReport 1 gets, after ``report_delay``, one status report per
  DestTermID: a Deliver with IsReport 1 whose MsgContent is the spec's 122 octets (``id:`` the Submit's
  MsgID, ``stat:`` and ``err:`` drawn from ``outcomes``: delivered → DELIVRD/000, undelivered →
  UNDELIV/003, expired → EXPIRED/001, …, a gateway's own stat word as itself with err 006, ``none`` for
  no report). Each part of a long message is its own Submit here, with its own MsgID and report.
  Reports (and MOs) go to the account's logged-in links that receive (LoginMode 1 or 2), round robin, at
  most ``deliver_window`` unanswered per link; they wait for a login when none is up, and are sent again
  when Deliver_Resp does not come within ``report_resend_after`` seconds or comes with a non-zero Status.
* **MO** (上行短信) injected through the control port: MsgFormat 0, 8 or 15 (chosen per text when not
  given), one part or several with a UDH (``05 00 03`` or ``06 08 04``) and the TP_udhi TLV set to 1, to
  DestTermID = service code + extension, from SrcTermID.
* **Links.** Active_Test is answered in any state; the SMGW sends its own every ``active_test_interval``
  seconds after a login and drops a link whose answer does not come within ``active_test_timeout``.
  Exit is answered with Exit_Resp and the connection closes; the control port's ``exit`` sends the
  SMGW's own. ``disconnect_every`` drops a connection when its N-th Submit arrives (unanswered, no Exit),
  ``disconnect_after`` drops each logged-in connection that many seconds after its login. A PDU that
  cannot be framed or decoded closes the connection; a RequestID this SMGW does not serve is skipped.

Record: with ``record`` set, every Login and Submit received is appended to that JSON-lines file, one
object a PDU: ``time``, ``pdu`` (``SMGP_Login`` or ``SMGP_Submit``), ``connection``, and for Login
``client_id``, ``login_mode``, ``version``, ``timestamp``, ``status``; for Submit ``client_id``,
``sequence_id``, ``msg_id`` (:func:`.msgid.to_text`, null when refused), ``status``, ``outcome``, every
field of the Submit by its codec name (``msg_content`` in hex, UDH included) and ``text``, the content
decoded by its MsgFormat without the UDH (null for binary). Lines are written every 100 ms and on
shutdown.

Control port: newline-delimited JSON on 127.0.0.1 only (no authentication; do not expose it), on
``control_port`` (default: the SMGP port + 1; an ephemeral one when the SMGP port is 0). One request a
line, one answer a line, ``"ok": true`` or ``"ok": false, "error": "..."``:

* ``{"op": "mo", "from": "13300133000", "to": "1065901234501", "text": "1", "msg_format": 8,
  "concat": "udh8", "client_id": "10690001", "shuffle": false}`` → ``{"ok": true, "parts": 1}``;
* ``{"op": "stats"}`` → ``{"ok": true, "stats": {...}}`` (the counters of :class:`SmgwStats`);
* ``{"op": "disconnect"}`` → ``{"ok": true, "dropped": n}``: every connection cut at once;
* ``{"op": "exit"}`` → ``{"ok": true, "exited": n}``: an Exit to every logged-in connection;
* ``{"op": "set", "quiet_hours": true, ...}`` → ``{"ok": true, "config": {...}}``: any of
  :data:`RUNTIME_SETTINGS`; ``{"op": "reset_day"}``; ``{"op": "config"}``; ``{"op": "ping"}``.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import random
import time
from collections.abc import Iterable, Mapping
from datetime import date, datetime
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
    DELIVER_RESP,
    EXIT,
    EXIT_RESP,
    IS_REPORT,
    LOGIN,
    LOGIN_MODE_NAMES,
    LOGIN_MODE_RECEIVE,
    LOGIN_MODE_SEND,
    MAX_MT_LENGTH,
    MSG_FORMAT_ASCII,
    MSG_FORMAT_GB18030,
    MSG_FORMAT_UCS2,
    NEED_REPORT,
    STAT_DELETED,
    STAT_DELIVERED,
    STAT_EXPIRED,
    STAT_REJECTED,
    STAT_UNDELIVERABLE,
    STAT_UNKNOWN,
    STATUS_AUTH_FAILED,
    STATUS_BAD_COMMAND,
    STATUS_BAD_MSG_LENGTH,
    STATUS_BAD_STRUCTURE,
    STATUS_DAILY_VOLUME_EXCEEDED,
    STATUS_OK,
    STATUS_SENDING_BANNED_NOW,
    STATUS_SYSTEM_BUSY,
    STATUS_VERSION_TOO_HIGH,
    SUBMIT,
    VERSION_30,
    command_name,
    status_name,
)
from .pdu import (
    HEADER_LENGTH,
    ActiveTest,
    ActiveTestResp,
    Deliver,
    DeliverResp,
    Exit,
    ExitResp,
    Login,
    LoginResp,
    Pdu,
    PduError,
    Report,
    Submit,
    SubmitResp,
    authenticator_client,
    authenticator_server,
    decode,
    decode_header,
    encode,
    encode_report,
)

__all__ = [
    "OUTCOMES",
    "RUNTIME_SETTINGS",
    "Smgw",
    "SmgwConfig",
    "SmgwStats",
    "account_list",
    "parse_delay",
    "parse_outcomes",
]

log = logging.getLogger(__name__)

# Outcome names and the stat and err each puts in a report; "none" sends no report. Any other key of 1-7
# upper-case ASCII characters (a gateway's own code) is sent as the stat itself, with err 006.
_STAT_OF = {
    "delivered": (STAT_DELIVERED, "000"),
    "undelivered": (STAT_UNDELIVERABLE, "003"),
    "expired": (STAT_EXPIRED, "001"),
    "rejected": (STAT_REJECTED, "004"),
    "deleted": (STAT_DELETED, "006"),
    "unknown": (STAT_UNKNOWN, "999"),
}
OUTCOMES: tuple[str, ...] = (*_STAT_OF, "none")

RUNTIME_SETTINGS = frozenset(
    {
        "report_delay",
        "outcomes",
        "quiet_hours",
        "banned_every",
        "daily_limit",
        "busy_every",
        "busy_above_rate",
        "disconnect_every",
        "disconnect_after",
        "active_test_interval",
        "active_test_timeout",
        "report_resend_after",
        "deliver_window",
    }
)

_DECODED = frozenset({LOGIN, SUBMIT, DELIVER_RESP, ACTIVE_TEST, ACTIVE_TEST_RESP, EXIT, EXIT_RESP})
_NO_MSG_ID = bytes(msgid.LENGTH)
Concats: tuple[str, ...] = get_args(Concat)


# ----- configuration ------------------------------------------------------------------------------------


def _outcome_key(key: object) -> str:
    return outcome_or_stat(key, OUTCOMES, "stat")  # a gateway's own stat word, sent as it is


def parse_outcomes(text: str) -> dict[str, float]:
    """``"delivered=0.9,undelivered=0.05,expired=0.05"`` → weights; ValueError on a bad name or number."""
    return check_outcomes(parse_weights(text), _outcome_key)


def account_list(specs: Iterable[str]) -> dict[str, str]:
    """``["10690001:secret", …]`` → accounts (ClientID → shared secret); ValueError without a colon."""
    return _accounts(specs, "client_id:secret")


@dataclasses.dataclass
class SmgwConfig:
    """Everything the simulated SMGW can be told; validated on construction (ValueError)."""

    host: str = "127.0.0.1"
    port: int = 8890  # 0: an ephemeral port (see Smgw.port)
    accounts: dict[str, str] = dataclasses.field(default_factory=lambda: {"10690001": "secret"})
    smgw_code: int = 10601  # the 6-digit SMGW code in every MsgID: area code 010, device class 06, number 1
    report_delay: float | tuple[float, float] = (0.1, 1.0)  # seconds, fixed or uniform (min, max)
    outcomes: dict[str, float] = dataclasses.field(default_factory=lambda: {"delivered": 1.0})
    quiet_hours: bool = False  # every Submit gets Status 74 (sending banned in this time window)
    banned_every: int = 0  # every Nth Submit of a connection gets Status 74; 0 = off
    daily_limit: int = 0  # Submits accepted per account per day before Status 75; 0 = no limit
    busy_every: int = 0  # every Nth Submit of a connection gets Status 1 (system busy); 0 = off
    busy_above_rate: float = 0.0  # Submits/s per connection (1 s burst) beyond which Status 1; 0 = off
    disconnect_every: int = 0  # drop a connection when its Nth Submit arrives, unanswered; 0 = off
    disconnect_after: float = 0.0  # drop a logged-in connection this many seconds after login; 0 = off
    active_test_interval: float = 180.0  # the spec's 3 minutes between the SMGW's Active_Test; 0 = never
    active_test_timeout: float = 60.0  # a connection that does not answer within this is dropped
    report_resend_after: float = 60.0  # a Deliver without Deliver_Resp after this is sent again
    deliver_window: int = 16  # Delivers (reports, MOs) unanswered at once per connection
    seed: int | None = None
    record: str | Path | None = None  # JSON-lines file of every Login and Submit received
    control: bool = True  # serve the control port
    control_port: int | None = None  # None: port + 1 (ephemeral when port is 0)

    def __post_init__(self) -> None:
        if not self.accounts:
            raise ValueError("at least one account (client_id: secret) is needed")
        for client_id in self.accounts:
            # ClientID is 8 octets; an id that does not fit could never log in.
            if not (1 <= len(client_id) <= 8 and client_id.isascii() and client_id.isprintable()):
                raise ValueError(f"account {client_id!r}: a client_id is 1-8 ASCII characters")
        if not 0 <= self.smgw_code <= 999_999:
            raise ValueError(f"smgw_code {self.smgw_code} does not fit 6 digits")
        self.report_delay = check_delay(self.report_delay)
        self.outcomes = check_outcomes(self.outcomes, _outcome_key)
        check_counts(self, ("banned_every", "daily_limit", "busy_every", "disconnect_every"))
        if self.deliver_window < 1:
            raise ValueError("deliver_window must be >= 1")
        check_seconds(
            self,
            (
                "busy_above_rate",
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
        return public_view(self)


@dataclasses.dataclass
class SmgwStats:
    """Counters since start; ``sessions`` and the ``*_pending`` values are current."""

    connections_total: int = 0
    sessions: int = 0  # logged-in connections now
    logins: int = 0
    login_failures: int = 0
    submits: int = 0  # Submits received after a login
    accepted: int = 0
    banned: int = 0  # answered Status 74
    over_daily_limit: int = 0  # answered Status 75
    busy: int = 0  # answered Status 1
    rejected: int = 0  # answered another Status (too long)
    refused_not_logged_in: int = 0  # Submits before a login or on a receive-only link
    reports_scheduled: int = 0
    reports_sent: int = 0  # Delivers sent, resends included
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
    exits_received: int = 0
    exits_sent: int = 0
    malformed: int = 0  # connections closed for a PDU that did not frame or decode
    unsupported: int = 0  # PDUs of a RequestID not served here, skipped

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


# ----- what waits to go out as Deliver ------------------------------------------------------------------


class _Outbound(Outbound):
    """One Deliver owed to an account (a report or an MO part) until a Deliver_Resp with Status 0.

    A report's MsgContent is made when it first falls due (its done date is then). The PDU is encoded
    once, with SequenceID 0 that each send patches, so a resend is the same message."""

    __slots__ = ("data", "deliver", "report")

    def __init__(self, client_id: str, deliver: Deliver, report: Report | None = None) -> None:
        super().__init__(client_id)
        self.deliver = deliver
        self.report = report
        self.data: bytes | None = None

    @property
    def is_report(self) -> bool:
        return self.report is not None

    def wire(self, sequence_id: int) -> bytes:
        if self.data is None:
            deliver = self.deliver
            if self.report is not None:
                deliver = dataclasses.replace(deliver, msg_content=encode_report(self.report))
            self.data = encode(deliver, sequence_id=0)
        return self.data[:8] + sequence_id.to_bytes(4, "big") + self.data[12:]


def _report_time(t: float) -> str:
    """Submit date / done date of a report: YYMMDDHHMM, local time."""
    return time.strftime("%y%m%d%H%M", time.localtime(t))


def _recv_time(t: float) -> str:
    """A Deliver's RecvTime: YYYYMMDDHHMMSS, local time."""
    return time.strftime("%Y%m%d%H%M%S", time.localtime(t))


def _text_of(submit: Submit) -> str | None:
    """A Submit's text without its UDH, for the record; None for binary content."""
    text = decode_content(without_udh(submit.msg_content, submit.tp_udhi), submit.msg_format)
    return text if isinstance(text, str) else None


def _plan_in(text: str, msg_format: int, concat: Concat) -> Plan:
    """``text`` cut into parts of MsgFormat ``msg_format`` (one part without a UDH when it fits 140
    octets); ValueError when the format cannot encode it or it needs more than 255 parts."""
    parts = cut_text(
        text, lambda t: encode_text(t, msg_format), capacity(msg_format), capacity(msg_format, concat)
    )
    return Plan(msg_format, tuple(parts))


# ----- one SMGP connection ------------------------------------------------------------------------------


class _Conn(SimConn):
    """One TCP connection: its login, its output buffer and writer, its Delivers in flight."""

    name = "smgw"
    log = log
    header_length = HEADER_LENGTH
    error = PduError
    active_test_resp = "Active_Test_Resp"

    def __init__(self, smgw: Smgw, stream: trio.SocketStream, number: int) -> None:
        super().__init__(stream, number)
        self.smgw = smgw
        self.client_id = ""
        self.login_mode: int | None = None  # set once logged in
        self.inflight: dict[int, _Outbound] = {}  # Deliver SequenceID → what it carries, in send order
        self.exit_seq = -1
        self.exit_answered = trio.Event()

    @property
    def server(self) -> Smgw:
        return self.smgw

    def length_of(self, header: bytes) -> int:
        return decode_header(header).packet_length

    def active_test(self, sequence_id: int) -> None:
        self.reply(ActiveTest(), sequence_id)

    def deliver_wire(self, item: _Outbound, sequence_id: int) -> bytes:
        return item.wire(sequence_id)

    @property
    def logged_in(self) -> bool:
        return self.login_mode is not None

    @property
    def receives(self) -> bool:
        """Whether Delivers go to this link: LoginMode 1 (receive) or 2 (both)."""
        return self.login_mode is not None and self.login_mode != LOGIN_MODE_SEND

    # --- output -----------------------------------------------------------------------------------------

    def reply(self, pdu: Pdu, sequence_id: int) -> None:
        self.send(encode(pdu, sequence_id=sequence_id))

    # --- input ------------------------------------------------------------------------------------------

    def handle(self, raw: bytes) -> None:
        header = decode_header(raw)
        request_id, seq = header.request_id, header.sequence_id
        if request_id not in _DECODED:
            self.smgw.stats.unsupported += 1
            log.info(
                "smgw: connection %d: %s is not served here; skipped", self.number, command_name(request_id)
            )
            return
        pdu = decode(raw).pdu
        if isinstance(pdu, Login):
            self.on_login(pdu, seq)
        elif isinstance(pdu, ActiveTest):
            self.smgw.stats.active_tests_received += 1
            self.reply(ActiveTestResp(), seq)
        elif isinstance(pdu, ActiveTestResp):
            if seq == self.active_test_seq and self.active_test_answered is not None:
                self.active_test_answered.set()
        elif isinstance(pdu, Exit):
            self.smgw.stats.exits_received += 1
            self.reply(ExitResp(), seq)
            self.smgw.forget(self)
            self.close_after_flush()
        elif isinstance(pdu, ExitResp):
            if seq == self.exit_seq:
                self.exit_answered.set()
        elif isinstance(pdu, Submit):
            if self.logged_in and self.login_mode != LOGIN_MODE_RECEIVE:
                self.on_submit(pdu, seq)
            else:
                self.smgw.stats.refused_not_logged_in += 1
                log.info("smgw: connection %d: Submit without a send login refused", self.number)
                self.reply(SubmitResp(_NO_MSG_ID, STATUS_BAD_COMMAND), seq)
        elif isinstance(pdu, DeliverResp):
            item = self.inflight.pop(seq, None)
            if item is not None:
                self.smgw.answered(self, item, pdu.status)

    def on_login(self, pdu: Login, seq: int) -> None:
        smgw = self.smgw
        if self.logged_in:
            self.reply(LoginResp(STATUS_BAD_STRUCTURE, bytes(16)), seq)
            return
        secret = smgw.config.accounts.get(pdu.client_id)
        status = STATUS_OK
        if pdu.client_version > VERSION_30:
            status = STATUS_VERSION_TOO_HIGH
        elif pdu.login_mode not in LOGIN_MODE_NAMES:
            status = STATUS_BAD_STRUCTURE
        elif secret is None or pdu.authenticator_client != authenticator_client(
            pdu.client_id, secret, pdu.timestamp
        ):
            status = STATUS_AUTH_FAILED
        smgw.record_login(self, pdu, status)
        if status != STATUS_OK:
            smgw.stats.login_failures += 1
            log.info(
                "smgw: connection %d: Login of %r (mode %d) refused: %s",
                self.number,
                pdu.client_id,
                pdu.login_mode,
                status_name(status),
            )
            self.reply(LoginResp(status, bytes(16)), seq)
            self.close_after_flush()
            return
        assert secret is not None
        auth = authenticator_server(STATUS_OK, pdu.authenticator_client, secret)
        self.reply(LoginResp(STATUS_OK, auth), seq)
        self.client_id = pdu.client_id
        self.login_mode = pdu.login_mode
        log.info(
            "smgw: connection %d (%s): %r logged in, mode %s",
            self.number,
            self.peer,
            self.client_id,
            LOGIN_MODE_NAMES[pdu.login_mode],
        )
        smgw.on_login(self)
        if self.nursery is not None:
            self.nursery.start_soon(self.active_tester)
            if smgw.config.disconnect_after:
                self.nursery.start_soon(self.disconnect_timer, smgw.config.disconnect_after)

    def on_submit(self, submit: Submit, seq: int) -> None:
        smgw = self.smgw
        cfg = smgw.config
        stats = smgw.stats
        stats.submits += 1
        self.submits += 1
        if cfg.disconnect_every and self.submits >= cfg.disconnect_every:
            log.info(
                "smgw: connection %d: dropped at Submit %d (disconnect_every)", self.number, self.submits
            )
            stats.dropped_disconnect_every += 1
            # Out of service at once; answers owed for earlier PDUs are still written, then the close.
            smgw.forget(self)
            self.close_after_flush()
            return
        status = STATUS_OK
        if cfg.quiet_hours or (cfg.banned_every and self.submits % cfg.banned_every == 0):
            status = STATUS_SENDING_BANNED_NOW
            stats.banned += 1
        elif cfg.daily_limit and smgw.accepted_today(self.client_id) >= cfg.daily_limit:
            status = STATUS_DAILY_VOLUME_EXCEEDED
            stats.over_daily_limit += 1
        elif (cfg.busy_every and self.submits % cfg.busy_every == 0) or (
            cfg.busy_above_rate and not self.bucket.take(cfg.busy_above_rate)
        ):
            status = STATUS_SYSTEM_BUSY
            stats.busy += 1
        elif len(submit.msg_content) > MAX_MT_LENGTH:
            status = STATUS_BAD_MSG_LENGTH
            stats.rejected += 1
        if status != STATUS_OK:
            self.reply(SubmitResp(_NO_MSG_ID, status), seq)
            smgw.record_submit(self, seq, submit, None, status, None)
            return
        stats.accepted += 1
        smgw.count_accepted(self.client_id)
        msg_id = smgw.new_msg_id()
        self.reply(SubmitResp(msg_id, STATUS_OK), seq)
        outcome = smgw.draw_outcome()
        if submit.need_report == NEED_REPORT and outcome != "none":
            for terminal in submit.dest_term_ids:
                smgw.schedule_report(self.client_id, msg_id, outcome, submit, terminal)
        smgw.record_submit(self, seq, submit, msg_id, status, outcome)

    # --- the SMGW's own requests ------------------------------------------------------------------------

    async def exit(self) -> None:
        """Send Exit, stop sending Delivers, close when Exit_Resp comes (or after 5 s)."""
        self.exit_seq = self.next_sequence()
        self.smgw.stats.exits_sent += 1
        self.reply(Exit(), self.exit_seq)
        self.smgw.forget(self)
        await self.end_after(self.exit_answered)


# ----- the server ---------------------------------------------------------------------------------------


class Smgw:
    """The simulated SMGW. Run :meth:`serve` in a nursery (``await nursery.start(smgw.serve)``)."""

    def __init__(self, config: SmgwConfig | None = None) -> None:
        self.config = config or SmgwConfig()
        self.stats = SmgwStats()
        self.port = 0
        self.control_port = 0
        self._rng = random.Random(self.config.seed)
        # The 6-digit sequence starts at a random point so that two runs rarely give the same ids.
        self._msg_seq = self._rng.randrange(1_000_000)
        self._mo_ref = self._rng.randrange(1 << 16)
        self._conn_numbers = itertools.count(1)
        self._conns: set[_Conn] = set()
        self._outbox: Outbox[_Outbound] = Outbox(  # its sessions: the receiving links
            self.stats,
            window=lambda: self.config.deliver_window,
            resend_after=lambda: self.config.report_resend_after,
            prepare=self._falls_due,
        )
        self._record = RecordFile()
        self._outcomes = OutcomeDraw(self.config.outcomes)
        self._day = date.today()
        self._accepted_today: collections.Counter[str] = collections.Counter()

    # --- settings ---------------------------------------------------------------------------------------

    def update(self, **changes: Any) -> SmgwConfig:
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
        if "quiet_hours" in changes and not isinstance(changes["quiet_hours"], bool):
            raise ValueError("quiet_hours must be true or false")
        self.config = dataclasses.replace(self.config, **changes)  # validated in __post_init__
        self._outcomes = OutcomeDraw(self.config.outcomes)
        return self.config

    def accepted_today(self, client_id: str) -> int:
        """Submits of ``client_id`` accepted since local midnight (what ``daily_limit`` counts)."""
        today = date.today()
        if today != self._day:
            self._day = today
            self._accepted_today.clear()
        return self._accepted_today[client_id]

    def count_accepted(self, client_id: str) -> None:
        self.accepted_today(client_id)  # a new day starts the count again
        self._accepted_today[client_id] += 1

    def reset_day(self) -> None:
        """Start the daily count again, as midnight would (the control port's ``reset_day``)."""
        self._accepted_today.clear()

    # --- serving ----------------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ``task_status.started(port)`` once both ports accept connections."""
        tasks = (self._outbox.scheduler, self._outbox.sweeper)
        await serve_simulator(
            self, self._serve_connection, tasks, self._record, "smgw: SMGP", log, task_status
        )

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = _Conn(self, stream, next(self._conn_numbers))
        self._conns.add(conn)
        self.stats.connections_total += 1
        await conn.run()

    def on_login(self, conn: _Conn) -> None:
        self.stats.logins += 1
        self.stats.sessions += 1
        if conn.receives:
            self._outbox.add_session(conn.client_id, conn)

    def forget(self, conn: _Conn) -> None:
        """Take a connection out of service; its Delivers in flight go back to the front of the queue."""
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        if not conn.logged_in:
            return
        self.stats.sessions -= 1
        self._outbox.remove_session(conn.client_id, conn)

    def disconnect_all(self) -> int:
        """Cut every connection at once, without Exit; returns how many."""
        return drop_all(self._conns)

    def exit_all(self) -> int:
        """Send Exit to every logged-in connection (each closes on its Exit_Resp)."""
        return say_goodbye(self._conns, _Conn.exit)

    # --- MsgIDs, outcomes, reports ----------------------------------------------------------------------

    def new_msg_id(self) -> bytes:
        """A MsgID in the spec's layout: the SMGW code, the local time to the minute, a 6-digit sequence."""
        self._msg_seq = (self._msg_seq + 1) % 1_000_000
        now = datetime.now()
        fields = msgid.MsgId(self.config.smgw_code, now.month, now.day, now.hour, now.minute, self._msg_seq)
        return msgid.pack(fields)

    def draw_outcome(self) -> str:
        return self._outcomes.draw(self._rng)

    def _delay(self) -> float:
        return draw_delay(self._rng, self.config.report_delay)

    def schedule_report(
        self, client_id: str, msg_id: bytes, outcome: str, submit: Submit, terminal: str
    ) -> None:
        stat, err = _STAT_OF.get(outcome, (outcome, "006"))
        content = without_udh(submit.msg_content, submit.tp_udhi)
        report = Report(
            msg_id=msg_id,
            stat=stat,
            submit_date=_report_time(time.time()),
            done_date="",  # filled in when it falls due
            err=err,
            # The spec's Text: the message's length in 3 digits and its first 17 octets.
            text=f"{len(submit.msg_content):03d}".encode() + content[:17],
        )
        deliver = Deliver(
            msg_id=_NO_MSG_ID,  # its own MsgID is given when it falls due, as the handset's answer comes then
            is_report=IS_REPORT,
            msg_format=MSG_FORMAT_ASCII,
            src_term_id=terminal,
            dest_term_id=submit.src_term_id,  # the SP's number + extension the Submit came from
        )
        self.stats.reports_scheduled += 1
        self.stats.reports_pending += 1
        self._outbox.push(trio.current_time() + self._delay(), _Outbound(client_id, deliver, report))

    # --- mobile-originated messages ---------------------------------------------------------------------

    async def inject_mo(
        self,
        *,
        sender: str,
        dest_term_id: str,
        text: str,
        msg_format: int | None = None,
        client_id: str | None = None,
        concat: Concat = "udh8",
        shuffle: bool = False,
    ) -> int:
        """Send ``text`` from handset ``sender`` to ``dest_term_id`` (service code + extension) as Deliver
        with IsReport 0, to a receiving link of ``client_id`` (default: an account with one, else the
        first account), or queued until one logs in. ``msg_format`` 0, 8 or 15 (default: ASCII when the
        text is, else UCS-2); a text above 140 octets goes in parts, each with the UDH of ``concat`` and
        the TP_udhi TLV 1. ``shuffle`` sends the parts out of order. Returns the number of parts;
        ValueError for what cannot be sent."""
        for what, value in (("sender", sender), ("dest_term_id", dest_term_id)):
            if not value or len(value) > 21 or not value.isascii() or "\0" in value:
                raise ValueError(f"{what} must be 1-21 ASCII characters, got {value!r}")
        if concat not in Concats:
            raise ValueError(f"concat must be one of {', '.join(Concats)}, got {concat!r}")
        if client_id is None:
            client_id = next((cid for cid, conns in self._outbox.sessions.items() if conns), None)
            client_id = client_id or next(iter(self.config.accounts))
        elif client_id not in self.config.accounts:
            raise ValueError(f"unknown client_id {client_id!r}")
        fmt = choose_msg_fmt(text) if msg_format is None else msg_format
        if fmt not in (MSG_FORMAT_ASCII, MSG_FORMAT_UCS2, MSG_FORMAT_GB18030):
            raise ValueError(f"msg_format must be 0 (ASCII), 8 (UCS-2) or 15 (GB18030), got {msg_format!r}")
        self._mo_ref = (self._mo_ref + 1) & 0xFFFF
        parts = encode_parts(_plan_in(text, fmt, concat), concat=concat, ref=self._mo_ref)
        now = time.time()
        items = [
            _Outbound(
                client_id,
                Deliver(
                    msg_id=self.new_msg_id(),
                    is_report=0,
                    msg_format=part.msg_fmt,
                    recv_time=_recv_time(now),
                    src_term_id=sender,
                    dest_term_id=dest_term_id,
                    msg_content=part.msg_content,
                    tp_udhi=part.tp_udhi,
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

    # --- the Deliver machinery --------------------------------------------------------------------------

    def _falls_due(self, item: _Outbound) -> None:
        if item.report is not None and not item.report.done_date:
            # Due now: the handset "answered" now, and the report's Deliver gets its own MsgID.
            now = time.time()
            item.report = dataclasses.replace(item.report, done_date=_report_time(now))
            item.deliver = dataclasses.replace(
                item.deliver, msg_id=self.new_msg_id(), recv_time=_recv_time(now)
            )

    def answered(self, conn: _Conn, item: _Outbound, status: int) -> None:
        # Busy, or an error: a real SMGW sends it again later.
        self._outbox.answered(conn.client_id, item, status == STATUS_OK)

    # --- recording --------------------------------------------------------------------------------------

    @property
    def recording(self) -> bool:
        return self._record.active

    def record_login(self, conn: _Conn, pdu: Login, status: int) -> None:
        if not self._record.active:
            return
        self._record.append(
            record_line(
                "SMGP_Login",
                conn.number,
                {
                    "client_id": pdu.client_id,
                    "login_mode": pdu.login_mode,
                    "version": pdu.client_version,
                    "timestamp": pdu.timestamp,
                    "status": status,
                },
            )
        )

    def record_submit(
        self, conn: _Conn, seq: int, submit: Submit, msg_id: bytes | None, status: int, outcome: str | None
    ) -> None:
        if not self._record.active:
            return
        fields = {f.name: getattr(submit, f.name) for f in dataclasses.fields(submit)}
        fields["msg_content"] = submit.msg_content.hex()
        fields["dest_term_ids"] = list(submit.dest_term_ids)
        fields["other_tlvs"] = [{"tag": t.tag, "value": t.value.hex()} for t in submit.other_tlvs]
        self._record.append(
            record_line(
                "SMGP_Submit",
                conn.number,
                {
                    "client_id": conn.client_id,
                    "sequence_id": seq,
                    "msg_id": None if msg_id is None else msgid.to_text(msg_id),
                    "status": status,
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
        ops = {"mo": self._control_mo, "exit": self._control_exit, "reset_day": self._control_reset_day}
        expected = "mo, stats, disconnect, exit, set, reset_day, config or ping"
        return await answer_control(line, self, ops, expected)

    async def _control_exit(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return {"ok": True, "exited": self.exit_all()}

    async def _control_reset_day(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self.reset_day()
        return {"ok": True}

    async def _control_mo(self, request: Mapping[str, Any]) -> dict[str, Any]:
        msg_format = request.get("msg_format")
        if msg_format is not None and (not isinstance(msg_format, int) or isinstance(msg_format, bool)):
            raise ValueError("'msg_format' must be 0, 8 or 15")
        parts = await self.inject_mo(
            sender=request_str(request, "from"),
            dest_term_id=request_str(request, "to"),
            text=request_str(request, "text", empty=True),
            msg_format=msg_format,
            client_id=request.get("client_id"),
            concat=request.get("concat", "udh8"),
            shuffle=bool(request.get("shuffle", False)),
        )
        return {"ok": True, "parts": parts}
