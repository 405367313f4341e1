"""A simulated SMSC: a real SMPP 3.4 server on trio (``masd sim smsc``), for tests, demos and benchmarks.

:class:`Smsc` listens on TCP and speaks SMPP 3.4 to any ESME, masd's own driver or a third-party one.
It checks bind credentials, answers each submit_sm with a message id (or an error it was told to
produce), and later sends a delivery receipt as a deliver_sm to a receiver or transceiver bind of the same
system_id; it injects mobile-originated messages (MO, 上行短信) the same way. It behaves like the SMSCs
masd meets in the field, including the ways they differ:

* message ids in hex or decimal; receipt text keys in lower or upper case; the receipt text may carry the
  id in decimal while submit_sm_resp and the receipted_message_id TLV carry hex (``receipt_text_id``);
  receipted_message_id / message_state / network_error_code TLVs on or off;
* throttling (every Nth submit, or above a rate per bind: ESME_RTHROTTLED 0x58), rejection of
  destinations by prefix (ESME_RINVDSTADR 0x0B), dropped connections every N PDUs;
* receipts owed to a system_id with no receiver bound are queued until one binds; a receipt whose
  deliver_sm_resp does not come in time (or comes with an error) is sent again later, so an ESME sees
  the at-least-once behaviour of a real network;
* its own enquire_link every ``enquire_link_interval`` seconds; a bind that does not answer within
  ``enquire_link_timeout`` is dropped.

Sessions: bind_transmitter / bind_receiver / bind_transceiver with a known system_id and its password
(else ESME_RINVSYSID 0x0F / ESME_RINVPASWD 0x0E; ESME_RBINDFAIL 0x0D beyond ``max_binds``; ESME_RALYBND
0x05 on a second bind); any other request before a bind gets its response with ESME_RINVBNDSTS 0x04,
except enquire_link, which is always answered. submit_sm needs a transmitter or transceiver bind.
unbind gets unbind_resp and the connection closes; an unknown command gets generic_nack 0x03; a PDU that
cannot be framed or decoded gets generic_nack and the connection closes. With ``disconnect_every=N`` a
connection is dropped when its Nth PDU (the bind included) arrives, without answering that PDU (nor
any that came in the same read after it), and without unbind: what a crash or a cut cable looks like
to the ESME. Answers already owed for earlier PDUs are written first. A multipart submit (UDH or SAR)
is N independent submits here, each with its own id and receipt, as on real networks.

Receipt text (SMPP 3.4 Appendix B)::

    id:<id> sub:001 dlvrd:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DELIVRD err:000 text:<20 chars>

``stat`` is DELIVRD, UNDELIV, EXPIRED, DELETED, REJECTD or UNKNOWN by the outcome drawn for the submit
(weights in ``outcomes``; outcome ``none`` means no receipt is ever sent). ``text`` is the first 20
characters of the submitted text, decoded by its data_coding, with anything outside ASCII shown as "?".
With ``receipt_text_case="upper"`` the keys are upper case and so are the hex digits of the id.

Hot-path PDUs (submit_sm in, submit_sm_resp out, deliver_sm out, deliver_sm_resp in) go through the lean
codecs of :mod:`masd_adapters.smpp.fast`; binds and the rare PDUs through smpplib (:mod:`.pdu`). Each
connection has one writer task that sends whatever responses piled up in one ``send_all``, so a client
with a window of 100 costs a few syscalls per window rather than one per PDU. Receipts wait in one heap
served by one scheduler task (never a task per message); one sweeper task finds unanswered deliver_sm.

Recording: with ``record`` set, every submit_sm received is appended to that JSON-lines file, one object
per PDU: ``time`` (epoch seconds), ``system_id``, ``bind`` (connection number), ``bind_type``,
``source``, ``destination``, ``data_coding``, ``esm_class``, ``registered_delivery``, ``body`` (hex of
short_message, UDH included), ``tlvs`` (``{"0x020c": "<hex>"}``), ``message_id`` (null when refused),
``status`` (the command_status answered) and ``outcome`` (the receipt outcome drawn, or null). Lines are
written in batches, at least every 100 ms, and on shutdown.

Control port: newline-delimited JSON over TCP on 127.0.0.1 only (no authentication; do not expose it),
``control_port`` (default: the SMPP port + 1; an ephemeral port when the SMPP port is 0). Each request
line is one JSON object with an ``op``; each answer is one line with ``"ok": true`` or ``"ok": false,
"error": "..."``:

* ``{"op": "mo", "from": "13800138000", "to": "1065700012345", "text": "1", "split": "udh8",
  "system_id": "masd", "shuffle": false}`` → ``{"ok": true, "parts": 1}`` (``split``, ``system_id`` and
  ``shuffle`` optional; see :meth:`Smsc.inject_mo`);
* ``{"op": "stats"}`` → ``{"ok": true, "stats": {...}}`` (counters of :class:`SmscStats`);
* ``{"op": "disconnect"}`` → ``{"ok": true, "dropped": n}``: drops every connection at once, without unbind;
* ``{"op": "set", "throttle_every": 3, "outcomes": {"delivered": 0.5, "undelivered": 0.5}, ...}`` →
  ``{"ok": true, "config": {...}}``: changes any of :data:`RUNTIME_SETTINGS` while running;
* ``{"op": "config"}`` → ``{"ok": true, "config": {...}}``;
* ``{"op": "ping"}`` → ``{"ok": true}``.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import json
import logging
import math
import random
import struct
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import trio

from masd.core import gsm7
from masd.core import split as splitter

from .. import _simkit
from .._simkit import (
    OutcomeDraw,
    RecordFile,
    TokenBucket,
    answer_control,
    check_counts,
    check_ports,
    draw_delay,
    out_of_order,
    peer_of,
    public_view,
    request_str,
    serve_simulator,
)
from . import constants, fast
from .constants import (
    BIND_RECEIVER,
    BIND_TRANSCEIVER,
    BIND_TRANSMITTER,
    CANCEL_SM,
    DATA_CODING_DEFAULT,
    DATA_CODING_UCS2,
    DATA_SM,
    DELIVER_SM_RESP,
    ENQUIRE_LINK,
    ENQUIRE_LINK_RESP,
    ESM_DELIVERY_RECEIPT,
    ESM_UDHI,
    ESME_RALYBND,
    ESME_RBINDFAIL,
    ESME_RINVBNDSTS,
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_RINVDSTADR,
    ESME_RINVPASWD,
    ESME_RINVSYSID,
    ESME_RTHROTTLED,
    GENERIC_NACK,
    NETWORK_TYPE_GSM,
    QUERY_SM,
    REGISTERED_DELIVERY_FAILURE,
    REGISTERED_DELIVERY_FINAL,
    REGISTERED_DELIVERY_MASK,
    REPLACE_SM,
    RESPONSE,
    STATE_DELETED,
    STATE_DELIVERED,
    STATE_EXPIRED,
    STATE_REJECTED,
    STATE_UNDELIVERABLE,
    STATE_UNKNOWN,
    SUBMIT_MULTI,
    SUBMIT_SM,
    SUBMIT_SM_RESP,
    UNBIND,
    UNBIND_RESP,
)
from .pdu import HEADER, PduError, PduStream, SequenceGenerator, command_name, generic_nack, make, parse

__all__ = [
    "OUTCOMES",
    "RUNTIME_SETTINGS",
    "Outcome",
    "Smsc",
    "SmscConfig",
    "SmscStats",
    "account_list",
    "parse_delay",
    "parse_outcomes",
]

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "undelivered", "expired", "rejected", "deleted", "unknown", "none"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
SplitMode = Literal["udh8", "udh16", "sar", "payload"]

# Settings the control port's "set" may change while the server runs (the rest fix sockets and files).
RUNTIME_SETTINGS = frozenset(
    {
        "id_format",
        "receipt_delay",
        "outcomes",
        "receipt_text_case",
        "receipt_text_id",
        "receipt_tlvs",
        "throttle_every",
        "throttle_above_rate",
        "disconnect_every",
        "reject_prefixes",
        "enquire_link_interval",
        "enquire_link_timeout",
        "receipt_resend_after",
        "max_binds",
        "deliver_window",
    }
)

_BINDS = {BIND_TRANSMITTER: "transmitter", BIND_RECEIVER: "receiver", BIND_TRANSCEIVER: "transceiver"}
_CAN_SUBMIT = frozenset({"transmitter", "transceiver"})
_CAN_RECEIVE = frozenset({"receiver", "transceiver"})
# Requests that have a response of their own: before a bind they get that response with 0x04; any other
# unknown or unsupported request gets generic_nack 0x03.
_KNOWN_REQUESTS = frozenset({QUERY_SM, SUBMIT_SM, UNBIND, REPLACE_SM, CANCEL_SM, SUBMIT_MULTI, DATA_SM})

SMSC_SYSTEM_ID = "MASDSIM"

# outcome -> (stat text, err, message_state TLV value per SMPP 3.4 §5.2.28). err values are this
# simulator's own (delivered is err:000 as everywhere); they only need to be distinct and non-zero.
_RECEIPT = {
    "delivered": ("DELIVRD", 0, STATE_DELIVERED),
    "expired": ("EXPIRED", 2, STATE_EXPIRED),
    "deleted": ("DELETED", 3, STATE_DELETED),
    "undelivered": ("UNDELIV", 1, STATE_UNDELIVERABLE),
    "unknown": ("UNKNOWN", 5, STATE_UNKNOWN),
    "rejected": ("REJECTD", 4, STATE_REJECTED),
}

_HIGH_WATER = 1 << 20  # bytes of unsent output after which a connection stops reading (backpressure)
_NACK_RETRY = 1.0  # seconds before a deliver_sm answered with an error status is sent again
_SCHEDULER_SLACK = 0.002  # seconds a due deliver_sm may wait for others to share its send (see _scheduler)
_FINAL_FLUSH = 2.0  # seconds a closing connection gets to send what it still owes


# ----- configuration ------------------------------------------------------------------------------------


def parse_outcomes(text: str) -> dict[str, float]:
    """``"delivered=0.95,undelivered=0.05"`` → weights; ValueError on an unknown outcome or bad number."""
    weights: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"outcome {item!r} is not name=weight")
        weights[key.strip().lower()] = float(value)
    return _check_outcomes(weights)


def parse_delay(text: str) -> float | tuple[float, float]:
    """``"1.5"`` → 1.5 seconds; ``"0.5-2"`` or ``"0.5,2"`` → uniformly between 0.5 and 2 seconds."""
    return _simkit.parse_delay(text, _check_delay)


def _check_outcomes(weights: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(weights) - set(OUTCOMES))
    if unknown:
        raise ValueError(f"unknown outcome(s) {', '.join(unknown)}; expected some of {', '.join(OUTCOMES)}")
    if any(not math.isfinite(w) or w < 0 for w in weights.values()):
        raise ValueError("outcome weights must be finite and not negative")
    if not weights or sum(weights.values()) <= 0:
        raise ValueError("outcome weights must add up to more than 0")
    return {k: float(v) for k, v in weights.items()}


def _check_delay(delay: Any) -> float | tuple[float, float]:
    if isinstance(delay, (tuple, list)):
        if len(delay) != 2:
            raise ValueError(f"receipt delay range must be (min, max), got {delay!r}")
        low, high = float(delay[0]), float(delay[1])
        if not (0 <= low <= high and math.isfinite(high)):
            raise ValueError(f"receipt delay range must satisfy 0 <= min <= max, got {delay!r}")
        return (low, high)
    value = float(delay)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"receipt delay must be a finite number of seconds >= 0, got {delay!r}")
    return value


@dataclasses.dataclass
class SmscConfig:
    """Everything the simulated SMSC can be told; validated on construction (ValueError)."""

    host: str = "127.0.0.1"
    port: int = 2775  # 0: an ephemeral port (see Smsc.port)
    accounts: dict[str, str] = dataclasses.field(default_factory=lambda: {"masd": "masd"})  # system_id: pw
    id_format: Literal["hex", "decimal"] = "hex"
    receipt_delay: float | tuple[float, float] = (0.1, 1.0)  # seconds, fixed or uniform (min, max)
    outcomes: dict[str, float] = dataclasses.field(default_factory=lambda: {"delivered": 1.0})
    receipt_text_case: Literal["lower", "upper"] = "lower"
    receipt_text_id: Literal["same", "decimal"] = "same"  # "decimal": hex ids appear in decimal in the text
    receipt_tlvs: bool = True
    throttle_every: int = 0  # every Nth submit_sm of a bind is answered 0x58; 0 = off
    throttle_above_rate: float = 0.0  # submits/s per bind (1 s burst) beyond which 0x58; 0 = off
    disconnect_every: int = 0  # drop a connection when its Nth PDU arrives, unanswered; 0 = off
    reject_prefixes: tuple[str, ...] = ()  # destinations starting with one of these get 0x0B
    seed: int | None = None
    record: str | Path | None = None  # JSON-lines file of every submit_sm received
    control: bool = True  # serve the control port
    control_port: int | None = None  # None: port + 1 (ephemeral when port is 0)
    max_binds: int = 0  # per system_id; more get ESME_RBINDFAIL 0x0D; 0 = no limit
    enquire_link_interval: float = 30.0  # seconds between the SMSC's own enquire_link; 0 = never
    enquire_link_timeout: float = 10.0  # a bind that does not answer within this is dropped
    receipt_resend_after: float = 10.0  # deliver_sm without deliver_sm_resp after this is sent again
    deliver_window: int = 100  # deliver_sm in flight per bind

    def __post_init__(self) -> None:
        if self.id_format not in ("hex", "decimal"):
            raise ValueError(f"id_format must be hex or decimal, got {self.id_format!r}")
        if self.receipt_text_case not in ("lower", "upper"):
            raise ValueError(f"receipt_text_case must be lower or upper, got {self.receipt_text_case!r}")
        if self.receipt_text_id not in ("same", "decimal"):
            raise ValueError(f"receipt_text_id must be same or decimal, got {self.receipt_text_id!r}")
        self.receipt_delay = _check_delay(self.receipt_delay)
        self.outcomes = _check_outcomes(self.outcomes)
        self.reject_prefixes = tuple(self.reject_prefixes)
        if not self.accounts:
            raise ValueError("at least one account (system_id: password) is needed")
        for sid, pw in self.accounts.items():
            # bind's system_id is at most 15 characters and password at most 8 (SMPP 3.4 §4.1.1).
            if not sid or len(sid) > 15 or len(pw) > 8:
                raise ValueError(f"account {sid!r}: system_id must be 1-15 characters, password at most 8")
        check_counts(self, ("throttle_every", "disconnect_every", "max_binds"))
        if self.deliver_window < 1:
            raise ValueError("deliver_window must be >= 1")
        for name in (
            "throttle_above_rate",
            "enquire_link_interval",
            "enquire_link_timeout",
            "receipt_resend_after",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0")
        if self.receipt_resend_after <= 0 or self.enquire_link_timeout <= 0:
            raise ValueError("receipt_resend_after and enquire_link_timeout must be > 0")
        check_ports(self.port, self.control_port)

    def public(self) -> dict[str, Any]:
        """A JSON-ready view (passwords left out)."""
        data = public_view(self)
        data["reject_prefixes"] = list(self.reject_prefixes)
        return data


@dataclasses.dataclass
class SmscStats:
    """Counters since start; ``binds`` and the ``*_pending`` values are current."""

    binds: int = 0
    binds_total: int = 0
    bind_failures: int = 0
    submits: int = 0  # submit_sm received while bound for it
    accepted: int = 0
    throttled: int = 0
    rejected: int = 0
    receipts_scheduled: int = 0
    receipts_sent: int = 0  # deliver_sm sent, resends included
    receipts_resent: int = 0
    receipts_acked: int = 0
    receipts_pending: int = 0  # owed and not acknowledged yet (waiting, queued for a bind or in flight)
    mo_sent: int = 0  # deliver_sm sent, resends included
    mo_acked: int = 0
    mo_pending: int = 0
    enquire_links_sent: int = 0
    dropped_unanswered_enquire_link: int = 0
    dropped_disconnect_every: int = 0
    generic_nacks: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


# ----- what waits to go out as deliver_sm ---------------------------------------------------------------

_SCHEDULED, _READY, _INFLIGHT, _DONE = range(4)


class _Outbound:
    """One deliver_sm owed to a system_id (a receipt or an MO part), until acknowledged.

    The PDU is encoded once, with a placeholder sequence number that each send patches, so a resend is
    byte-for-byte the same message. A receipt is encoded only when it first becomes due (its done date is
    then), so a receipt that is never sent costs nothing but this object.
    """

    __slots__ = (
        "attempts",
        "body",
        "conn",
        "data_coding",
        "destination",
        "esm_class",
        "is_receipt",
        "message_id",
        "outcome",
        "pdu",
        "sent_at",
        "source",
        "state",
        "submit_time",
        "system_id",
        "tlvs",
    )

    def __init__(self, system_id: str, is_receipt: bool) -> None:
        self.system_id = system_id
        self.is_receipt = is_receipt
        self.state = _SCHEDULED
        self.attempts = 0
        self.conn: _Conn | None = None
        self.sent_at = 0.0
        self.pdu = b""
        # Receipt facts (source/destination as the receipt carries them: swapped from the submit).
        self.message_id = ""
        self.outcome = ""
        self.submit_time = 0.0
        self.source = ""
        self.destination = ""
        self.body = b""
        self.data_coding = 0
        self.esm_class = 0
        self.tlvs: dict[int, bytes] = {}

    def wire(self, seq: int) -> bytes:
        return self.pdu[:12] + seq.to_bytes(4, "big") + self.pdu[16:]


_DATE_CACHE: dict[int, str] = {}


def _smpp_date(t: float) -> str:
    # The receipt's dates have minute resolution; at thousands of receipts a second, formatting each one
    # anew would be wasted work.
    minute = int(t // 60)
    text = _DATE_CACHE.get(minute)
    if text is None:
        if len(_DATE_CACHE) > 64:
            _DATE_CACHE.clear()
        text = _DATE_CACHE[minute] = time.strftime("%y%m%d%H%M", time.localtime(t))
    return text


def _text_of(body: bytes, data_coding: int, esm_class: int) -> str:
    """The submitted text, as far as it can be read (for the receipt's ``text:`` field)."""
    if esm_class & ESM_UDHI and body:
        body = body[1 + body[0] :]
    # Only 20 characters are shown, so only what can hold them is decoded (the GSM decoder is pure
    # Python and would otherwise be the biggest cost of a receipt): 20 characters are at most 40 septets
    # (escape pairs) or 40 UTF-16 code units (surrogate pairs).
    try:
        if data_coding == DATA_CODING_DEFAULT:
            return gsm7.decode_unpacked(body[:40])
        if data_coding == DATA_CODING_UCS2:
            return body[:80].decode("utf-16-be", errors="replace")
    except ValueError:
        pass
    return body[:20].decode("latin-1")


def _addr(raw: bytes) -> str:
    # fast.encode_* takes ASCII of at most 20 characters; some ESMEs send longer alphanumeric sources or
    # stray high bytes, which must not keep a receipt from being encoded.
    return raw[:20].decode("ascii", errors="replace").replace("\ufffd", "?")


# ----- one SMPP connection ------------------------------------------------------------------------------


class _Conn:
    """One TCP connection: its bind state, its output buffer and writer, and its deliver_sm in flight."""

    def __init__(self, smsc: Smsc, stream: trio.SocketStream, number: int) -> None:
        self.smsc = smsc
        self.ps = PduStream(stream)
        self.number = number
        self.peer = peer_of(stream)
        self.bind_type: str | None = None
        self.system_id = ""
        self.scope = trio.CancelScope()
        self.nursery: trio.Nursery | None = None
        self.out = bytearray()
        self.wake = trio.Event()
        self.writer_done = trio.Event()
        self.drained: trio.Event | None = None
        self.closing = False
        self.dropped = False
        self.seq = SequenceGenerator()
        self.inflight: dict[int, _Outbound] = {}  # deliver_sm sequence -> what it carries (send order)
        self.pdus = 0
        self.submit_count = 0
        self.bucket = TokenBucket()  # for throttle_above_rate
        self.elink_seq = 0
        self.elink_answered: trio.Event | None = None

    # --- output -----------------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if not self.dropped:
            self.out += data
            self.wake.set()

    async def writer(self) -> None:
        stream = self.ps.stream
        try:
            while True:
                await self.wake.wait()
                self.wake = trio.Event()
                # One pass of the scheduler first, so responses that are about to be queued go in the
                # same send_all.
                await trio.lowlevel.checkpoint()
                while self.out:
                    # Swap rather than copy: whatever arrives during send_all goes into a fresh buffer.
                    data, self.out = self.out, bytearray()
                    await stream.send_all(data)
                    if self.drained is not None and len(self.out) < _HIGH_WATER:
                        self.drained.set()
                if self.closing:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.drop()
        finally:
            self.writer_done.set()

    def drop(self) -> None:
        """Cut the connection now, without unbind (what a crash or a network fault looks like)."""
        self.dropped = True
        self.closing = True
        self.scope.cancel()
        # Out of service at once, not when the task notices the cancellation: stats and dispatch must not
        # see a bind that is already gone.
        self.smsc.forget(self)

    # --- input ------------------------------------------------------------------------------------------

    async def reader(self) -> None:
        try:
            while not self.closing:
                if len(self.out) > _HIGH_WATER:
                    # The peer does not read what we send; stop reading what it sends until it does.
                    self.drained = trio.Event()
                    await self.drained.wait()
                    self.drained = None
                raw = await self.ps.receive_raw()
                if raw is None:
                    return
                self.handle(raw)
        except PduError as e:
            log.info("smsc: connection %d (%s): %s; closing", self.number, self.peer, e)
            self.smsc.stats.generic_nacks += 1
            self.send(generic_nack(0, ESME_RINVCMDLEN))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.drop()
        except Exception:
            # A bug met by one client's PDU must not take the whole SMSC down (an exception escaping a
            # serve_tcp handler would): log it and drop only this connection.
            log.exception("smsc: connection %d: internal error; dropping it", self.number)
            self.drop()

    def handle(self, raw: bytes) -> None:
        """Act on one PDU; sets ``closing`` when the connection should end after what it owes is sent."""
        _, command_id, status, seq = HEADER.unpack_from(raw)
        self.pdus += 1
        every = self.smsc.config.disconnect_every
        if every and self.pdus >= every:
            log.info("smsc: connection %d: dropped at PDU %d (disconnect_every)", self.number, self.pdus)
            self.smsc.stats.dropped_disconnect_every += 1
            # Out of service at once; this PDU and any read with it go unanswered, but answers already
            # owed for earlier PDUs are written before the close (they must not depend on whether the
            # earlier PDUs came in the same read as this one). No unbind either way.
            self.smsc.forget(self)
            self.closing = True
            self.wake.set()
            return
        try:
            if command_id == SUBMIT_SM:
                self.on_submit(raw, seq)
            elif command_id == DELIVER_SM_RESP:
                self.on_deliver_resp(seq, status)
            elif command_id & RESPONSE:
                self.on_other_resp(command_id, seq)
            elif command_id in _BINDS:
                self.on_bind(raw, command_id, seq)
            elif command_id == ENQUIRE_LINK:
                # Answered in any state: SMPP 5.0 allows it before a bind, and answering never hurts.
                self.send(HEADER.pack(16, ENQUIRE_LINK_RESP, 0, seq))
            elif command_id == UNBIND:
                if self.bind_type is None:
                    self.send(HEADER.pack(16, UNBIND_RESP, ESME_RINVBNDSTS, seq))
                else:
                    self.send(HEADER.pack(16, UNBIND_RESP, 0, seq))
                    self.closing = True
            elif command_id in _KNOWN_REQUESTS and self.bind_type is None:
                self.send(HEADER.pack(16, command_id | RESPONSE, ESME_RINVBNDSTS, seq))
            else:
                self.smsc.stats.generic_nacks += 1
                self.send(generic_nack(seq, ESME_RINVCMDID))
        except PduError as e:
            # The header framed it but the body does not decode: the peer and we disagree about the
            # protocol, and nothing it sends after this can be trusted.
            log.info(
                "smsc: connection %d: malformed %s: %s; closing", self.number, command_name(command_id), e
            )
            self.smsc.stats.generic_nacks += 1
            self.send(generic_nack(seq, ESME_RINVCMDLEN))
            self.closing = True

    def on_bind(self, raw: bytes, command_id: int, seq: int) -> None:
        smsc = self.smsc
        kind = _BINDS[command_id]
        resp = command_id | RESPONSE
        if self.bind_type is not None:
            self.send(HEADER.pack(16, resp, ESME_RALYBND, seq))
            return
        pdu = parse(raw)
        system_id = bytes(pdu.system_id or b"").decode("latin-1")
        password = bytes(pdu.password or b"").decode("latin-1")
        accounts = smsc.config.accounts
        if system_id not in accounts:
            status = ESME_RINVSYSID
        elif accounts[system_id] != password:
            status = ESME_RINVPASWD
        elif smsc.config.max_binds and smsc.binds_of(system_id) >= smsc.config.max_binds:
            status = ESME_RBINDFAIL
        else:
            status = 0
        if status:
            # SMPP 3.4 §4.1.2: the bind response body is not returned when command_status is non-zero.
            smsc.stats.bind_failures += 1
            log.info("smsc: connection %d: %s as %r refused (0x%02X)", self.number, kind, system_id, status)
            self.send(HEADER.pack(16, resp, status, seq))
            return
        self.send(make(command_name(resp), seq, system_id=SMSC_SYSTEM_ID).generate())
        self.bind_type = kind
        self.system_id = system_id
        log.info("smsc: connection %d (%s): bound %s as %r", self.number, self.peer, kind, system_id)
        smsc.on_bound(self)
        if self.nursery is not None:
            self.nursery.start_soon(self.pinger)

    def on_submit(self, raw: bytes, seq: int) -> None:
        smsc = self.smsc
        if self.bind_type not in _CAN_SUBMIT:
            self.send(fast.encode_resp(SUBMIT_SM_RESP, seq, ESME_RINVBNDSTS))
            return
        sm = fast.decode_sm(raw)
        stats = smsc.stats
        stats.submits += 1
        cfg = smsc.config
        self.submit_count += 1
        status = 0
        every = cfg.throttle_every
        if (every and self.submit_count % every == 0) or (
            cfg.throttle_above_rate and not self.bucket.take(cfg.throttle_above_rate)
        ):
            status = ESME_RTHROTTLED
        elif cfg.reject_prefixes and sm.destination_addr.decode("latin-1").startswith(cfg.reject_prefixes):
            status = ESME_RINVDSTADR
        if status:
            if status == ESME_RTHROTTLED:
                stats.throttled += 1
            else:
                stats.rejected += 1
            self.send(fast.encode_resp(SUBMIT_SM_RESP, seq, status))
            if smsc.recording:
                smsc.record(self, sm, None, status, None)
            return
        stats.accepted += 1
        message_id = smsc.new_message_id()
        self.send(fast.encode_resp(SUBMIT_SM_RESP, seq, 0, message_id))
        outcome = smsc.draw_outcome()
        # registered_delivery bits 0-1 (§5.2.17): 1 = receipt on success or failure, 2 = on failure only.
        wanted = sm.registered_delivery & REGISTERED_DELIVERY_MASK
        if outcome != "none" and (
            wanted == REGISTERED_DELIVERY_FINAL
            or (wanted == REGISTERED_DELIVERY_FAILURE and outcome != "delivered")
        ):
            smsc.schedule_receipt(self.system_id, message_id, outcome, sm)
        if smsc.recording:
            smsc.record(self, sm, message_id, 0, outcome)

    def on_deliver_resp(self, seq: int, status: int) -> None:
        item = self.inflight.pop(seq, None)
        if item is not None:
            self.smsc.answered(self, item, status)

    def on_other_resp(self, command_id: int, seq: int) -> None:
        if seq == self.elink_seq and self.elink_answered is not None:
            # A generic_nack in reply to our enquire_link still proves the peer is alive and reading.
            if command_id in (ENQUIRE_LINK_RESP, GENERIC_NACK):
                self.elink_answered.set()
        elif command_id == GENERIC_NACK:
            # Some ESMEs answer a deliver_sm they cannot handle with generic_nack: a negative answer.
            self.on_deliver_resp(seq, ESME_RINVCMDID)

    async def pinger(self) -> None:
        cfg = self.smsc.config
        while cfg.enquire_link_interval > 0:
            await trio.sleep(cfg.enquire_link_interval)
            cfg = self.smsc.config  # "set" may have replaced it
            self.elink_seq = self.seq.next_sequence()
            answered = self.elink_answered = trio.Event()
            self.smsc.stats.enquire_links_sent += 1
            self.send(HEADER.pack(16, ENQUIRE_LINK, 0, self.elink_seq))
            with trio.move_on_after(cfg.enquire_link_timeout):
                await answered.wait()
            if not answered.is_set():
                log.info("smsc: connection %d: no enquire_link_resp; dropping the bind", self.number)
                self.smsc.stats.dropped_unanswered_enquire_link += 1
                self.drop()
                return

    def send_deliver(self, item: _Outbound, now: float) -> None:
        seq = self.seq.next_sequence()
        item.state = _INFLIGHT
        item.conn = self
        item.sent_at = now
        item.attempts += 1
        self.inflight[seq] = item
        self.send(item.wire(seq))


# ----- the server ---------------------------------------------------------------------------------------


class Smsc:
    """The simulated SMSC. Run :meth:`serve` in a nursery (``await nursery.start(smsc.serve)``)."""

    def __init__(self, config: SmscConfig | None = None) -> None:
        self.config = config or SmscConfig()
        self.stats = SmscStats()
        self.port = 0
        self.control_port = 0
        self._rng = random.Random(self.config.seed)
        # Ids start at a random point so that two runs (or two simulators) rarely hand out the same ids.
        self._next_id = self._rng.randrange(1 << 32, 1 << 40)
        self._mo_ref = self._rng.randrange(0, 1 << 16)
        self._conn_numbers = itertools.count(1)
        self._conns: set[_Conn] = set()
        self._receivers: dict[str, list[_Conn]] = collections.defaultdict(list)
        self._rr: dict[str, int] = collections.defaultdict(int)
        self._pending: dict[str, collections.deque[_Outbound]] = collections.defaultdict(collections.deque)
        self._heap: list[tuple[float, int, _Outbound]] = []
        self._tiebreak = itertools.count()
        self._wake_scheduler = trio.Event()
        self._record = RecordFile()
        self._outcomes = OutcomeDraw(self.config.outcomes)

    # --- settings ---------------------------------------------------------------------------------------

    def update(self, **changes: Any) -> SmscConfig:
        """Change settings while running (the control port's ``set``); only :data:`RUNTIME_SETTINGS`."""
        unknown = sorted(set(changes) - RUNTIME_SETTINGS)
        if unknown:
            raise ValueError(f"cannot change {', '.join(unknown)} at run time")
        if isinstance(changes.get("outcomes"), str):
            changes["outcomes"] = parse_outcomes(changes["outcomes"])
        if isinstance(changes.get("receipt_delay"), str):
            changes["receipt_delay"] = parse_delay(changes["receipt_delay"])
        if isinstance(changes.get("receipt_delay"), list):
            changes["receipt_delay"] = tuple(changes["receipt_delay"])
        if "reject_prefixes" in changes:
            prefixes = changes["reject_prefixes"]
            changes["reject_prefixes"] = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
        self.config = dataclasses.replace(self.config, **changes)  # validates in __post_init__
        self._outcomes = OutcomeDraw(self.config.outcomes)
        return self.config

    @property
    def recording(self) -> bool:
        return self._record.active

    # --- serving ----------------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ``task_status.started(port)`` once both ports accept connections."""
        tasks = (self._scheduler, self._sweeper)
        await serve_simulator(
            self, self._serve_connection, tasks, self._record, "smsc: SMPP", log, task_status
        )

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = _Conn(self, stream, next(self._conn_numbers))
        self._conns.add(conn)
        log.debug("smsc: connection %d from %s", conn.number, conn.peer)
        try:
            async with stream:
                with conn.scope:
                    async with trio.open_nursery() as nursery:
                        conn.nursery = nursery
                        nursery.start_soon(conn.writer)
                        await conn.reader()
                        # The reader is done (peer closed, unbind, malformed PDU): stop sending it
                        # deliver_sm, give the writer a moment to send what is owed, then close.
                        self.forget(conn)
                        conn.closing = True
                        conn.wake.set()
                        with trio.move_on_after(_FINAL_FLUSH):
                            await conn.writer_done.wait()
                        nursery.cancel_scope.cancel()
        finally:
            self.forget(conn)
            log.debug("smsc: connection %d closed", conn.number)

    def binds_of(self, system_id: str) -> int:
        return sum(1 for c in self._conns if c.bind_type is not None and c.system_id == system_id)

    def on_bound(self, conn: _Conn) -> None:
        self.stats.binds += 1
        self.stats.binds_total += 1
        if conn.bind_type in _CAN_RECEIVE:
            self._receivers[conn.system_id].append(conn)
            self._dispatch(conn.system_id)

    def forget(self, conn: _Conn) -> None:
        """Take a connection out of service; what it had in flight goes back to the front of the queue."""
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        if conn.bind_type is None:
            return
        self.stats.binds -= 1
        receivers = self._receivers.get(conn.system_id)
        if receivers and conn in receivers:
            receivers.remove(conn)
        if conn.inflight:
            queue = self._pending[conn.system_id]
            for item in reversed(conn.inflight.values()):
                item.state = _READY
                item.conn = None
                queue.appendleft(item)
            conn.inflight.clear()
            self._dispatch(conn.system_id)

    def disconnect_all(self) -> int:
        """Drop every connection at once, without unbind; returns how many."""
        conns = list(self._conns)
        for conn in conns:
            conn.drop()
        return len(conns)

    # --- submits ----------------------------------------------------------------------------------------

    def new_message_id(self) -> str:
        n = self._next_id
        self._next_id = n + 1
        return f"{n:x}" if self.config.id_format == "hex" else str(n)

    def draw_outcome(self) -> str:
        return self._outcomes.draw(self._rng)

    def _delay(self) -> float:
        return draw_delay(self._rng, self.config.receipt_delay)

    def schedule_receipt(self, system_id: str, message_id: str, outcome: str, sm: fast.SubmitSm) -> None:
        item = _Outbound(system_id, True)
        item.message_id = message_id
        item.outcome = outcome
        item.submit_time = time.time()
        item.source = _addr(sm.destination_addr)
        item.destination = _addr(sm.source_addr)
        item.body = sm.short_message or sm.tlvs.get(constants.MESSAGE_PAYLOAD, b"")
        item.data_coding = sm.data_coding
        item.esm_class = sm.esm_class if sm.short_message else 0
        self.stats.receipts_scheduled += 1
        self.stats.receipts_pending += 1
        self._push(trio.current_time() + self._delay(), item)

    def _receipt_pdu(self, item: _Outbound) -> bytes:
        cfg = self.config
        stat, err, state = _RECEIPT[item.outcome]
        shown = item.message_id
        if cfg.receipt_text_id == "decimal" and cfg.id_format == "hex":
            shown = str(int(shown, 16))
        text = _text_of(item.body, item.data_coding, item.esm_class)[:20]
        dlvrd = "001" if item.outcome == "delivered" else "000"
        submit_date = _smpp_date(item.submit_time)
        done_date = _smpp_date(time.time())
        if cfg.receipt_text_case == "upper":
            line = (
                f"ID:{shown.upper()} SUB:001 DLVRD:{dlvrd} SUBMIT DATE:{submit_date} "
                f"DONE DATE:{done_date} STAT:{stat} ERR:{err:03d} TEXT:{text}"
            )
        else:
            line = (
                f"id:{shown} sub:001 dlvrd:{dlvrd} submit date:{submit_date} "
                f"done date:{done_date} stat:{stat} err:{err:03d} text:{text}"
            )
        tlvs: dict[int, bytes] | None = None
        if cfg.receipt_tlvs:
            tlvs = {
                constants.RECEIPTED_MESSAGE_ID: item.message_id.encode("ascii") + b"\0",
                constants.MESSAGE_STATE: bytes((state,)),
            }
            if err:
                tlvs[constants.NETWORK_ERROR_CODE] = struct.pack(">BH", NETWORK_TYPE_GSM, err)
        return fast.encode_deliver_sm(
            1,
            source_addr=item.source,
            destination_addr=item.destination,
            short_message=line.encode("ascii", errors="replace")[:254],
            esm_class=ESM_DELIVERY_RECEIPT,
            data_coding=0,
            tlvs=tlvs,
        )

    # --- mobile-originated messages ---------------------------------------------------------------------

    async def inject_mo(
        self,
        *,
        sender: str,
        destination: str,
        text: str,
        system_id: str | None = None,
        split: SplitMode = "udh8",
        shuffle: bool = False,
    ) -> int:
        """Send ``text`` from handset ``sender`` to service number ``destination`` as deliver_sm.

        GSM 7-bit (data_coding 0, unpacked) when the text fits the GSM alphabet, else UCS-2 (8); a text
        longer than one SMS is cut by :mod:`masd.core.split` and concatenated by ``split`` (UDH with 8-
        or 16-bit reference, SAR TLVs, or one message_payload). The parts go to a receiver bind of
        ``system_id`` (default: the account of some bound receiver, else the first account), or wait for
        one like receipts do. ``shuffle`` sends the parts out of order. Returns the number of parts.
        """
        for what, value in (("sender", sender), ("destination", destination)):
            if not value or len(value) > 20 or not value.isascii() or "\0" in value:
                raise ValueError(f"{what} must be 1-20 ASCII characters, got {value!r}")
        if system_id is None:
            system_id = next((sid for sid, binds in self._receivers.items() if binds), None)
            system_id = system_id or next(iter(self.config.accounts))
        elif system_id not in self.config.accounts:
            raise ValueError(f"unknown system_id {system_id!r}")
        plan = splitter.plan(text, concat=split, max_segments=255)
        self._mo_ref = (self._mo_ref + 1) & 0xFFFF
        segments = splitter.encode(plan, concat=split, ref=self._mo_ref)
        items: list[_Outbound] = []
        for seg in segments:
            tlvs: dict[int, bytes] = {}
            if seg.sar is not None:
                ref, total, seq = seg.sar
                tlvs[constants.SAR_MSG_REF_NUM] = ref.to_bytes(2, "big")
                tlvs[constants.SAR_TOTAL_SEGMENTS] = bytes((total,))
                tlvs[constants.SAR_SEGMENT_SEQNUM] = bytes((seq,))
            if seg.message_payload is not None:
                tlvs[constants.MESSAGE_PAYLOAD] = seg.message_payload
            item = _Outbound(system_id, False)
            item.pdu = fast.encode_deliver_sm(
                1,
                # "+8613800138000" is an international number: TON 1 and the digits without the plus.
                source_addr=sender.removeprefix("+"),
                destination_addr=destination,
                short_message=seg.short_message,
                esm_class=ESM_UDHI if seg.udh else 0,
                data_coding=seg.data_coding,
                source_addr_ton=1 if sender.startswith("+") else 0,
                source_addr_npi=1,
                dest_addr_npi=1,
                tlvs=tlvs or None,
            )
            items.append(item)
        if shuffle:
            out_of_order(items, self._rng)
        self.stats.mo_pending += len(items)
        for item in items:
            self._make_ready(item)
        await trio.lowlevel.checkpoint()
        return len(items)

    # --- the deliver_sm machinery -----------------------------------------------------------------------

    def _push(self, when: float, item: _Outbound) -> None:
        item.state = _SCHEDULED
        heap = self._heap
        entry = (when, next(self._tiebreak), item)
        # The scheduler sleeps until the earliest entry; it needs waking only when that changes.
        earliest = not heap or when < heap[0][0]
        heapq.heappush(heap, entry)
        if earliest:
            self._wake_scheduler.set()

    def _make_ready(self, item: _Outbound) -> None:
        item.state = _READY
        self._pending[item.system_id].append(item)
        self._dispatch(item.system_id)

    def _dispatch(self, system_id: str) -> None:
        """Send what waits for ``system_id`` to its receiver binds, round robin, within each window."""
        queue = self._pending.get(system_id)
        binds = self._receivers.get(system_id)
        if not queue or not binds:
            return
        window = self.config.deliver_window
        now = trio.current_time()
        n = len(binds)
        rr = self._rr[system_id]
        while queue:
            for _ in range(n):
                rr = (rr + 1) % n
                conn = binds[rr]
                if len(conn.inflight) < window and not conn.closing:
                    break
            else:
                break  # every window is full; a deliver_sm_resp will call us again
            item = queue.popleft()
            if item.is_receipt:
                if not item.pdu:
                    item.pdu = self._receipt_pdu(item)
                self.stats.receipts_sent += 1
                if item.attempts:
                    self.stats.receipts_resent += 1
            else:
                self.stats.mo_sent += 1
            conn.send_deliver(item, now)
        self._rr[system_id] = rr

    def answered(self, conn: _Conn, item: _Outbound, status: int) -> None:
        item.conn = None
        if status == 0:
            item.state = _DONE
            if item.is_receipt:
                self.stats.receipts_acked += 1
                self.stats.receipts_pending -= 1
            else:
                self.stats.mo_acked += 1
                self.stats.mo_pending -= 1
        else:
            # A real SMSC keeps the message and tries again later, whatever the error.
            self._push(trio.current_time() + _NACK_RETRY, item)
        self._dispatch(conn.system_id)

    async def _scheduler(self) -> None:
        """Move receipts (and retries) from the heap to their system_id's queue when they fall due."""
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                item = heapq.heappop(heap)[2]
                if item.state == _SCHEDULED:
                    self._make_ready(item)
            self._wake_scheduler = trio.Event()
            if heap:
                # Waking a little after the earliest entry lets the ones due just after it go in the same
                # pass, and so in the same send_all: at thousands of receipts a second with spread-out
                # delays, waking for each one would cost a syscall (and a TCP segment) per receipt.
                with trio.move_on_at(heap[0][0] + _SCHEDULER_SLACK):
                    await self._wake_scheduler.wait()
            else:
                await self._wake_scheduler.wait()

    async def _sweeper(self) -> None:
        """Send again what was not acknowledged in time (deliver_sm_resp lost or never sent)."""
        while True:
            await trio.sleep(min(1.0, self.config.receipt_resend_after / 4))
            limit = trio.current_time() - self.config.receipt_resend_after
            for system_id, binds in list(self._receivers.items()):
                expired: list[_Outbound] = []
                for conn in binds:
                    # inflight is in send order, so the first one still in time ends the scan.
                    for seq, item in list(conn.inflight.items()):
                        if item.sent_at > limit:
                            break
                        del conn.inflight[seq]
                        item.conn = None
                        expired.append(item)
                for item in expired:
                    self._make_ready(item)
                if expired:
                    log.debug("smsc: %d deliver_sm to %r unanswered; sending again", len(expired), system_id)

    # --- recording --------------------------------------------------------------------------------------

    def record(
        self, conn: _Conn, sm: fast.SubmitSm, message_id: str | None, status: int, outcome: str | None
    ) -> None:
        self._record.append(
            json.dumps(
                {
                    "time": round(time.time(), 6),
                    "system_id": conn.system_id,
                    "bind": conn.number,
                    "bind_type": conn.bind_type,
                    "source": sm.source_addr.decode("latin-1"),
                    "destination": sm.destination_addr.decode("latin-1"),
                    "data_coding": sm.data_coding,
                    "esm_class": sm.esm_class,
                    "registered_delivery": sm.registered_delivery,
                    "body": sm.short_message.hex(),
                    "tlvs": {f"0x{tag:04x}": value.hex() for tag, value in sm.tlvs.items()},
                    "message_id": message_id,
                    "status": status,
                    "outcome": outcome,
                },
                separators=(",", ":"),
            )
        )

    def flush_record(self) -> None:
        """Write what was recorded so far to the record file (also done every 100 ms while serving)."""
        self._record.flush()

    # --- control port -----------------------------------------------------------------------------------

    async def control(self, line: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
        """Answer one control request (a JSON line or an already decoded object)."""
        return await answer_control(
            line, self, {"mo": self._control_mo}, "mo, stats, disconnect, set, config or ping"
        )

    async def _control_mo(self, request: Mapping[str, Any]) -> dict[str, Any]:
        split = request.get("split", "udh8")
        if split not in get_args(SplitMode):
            raise ValueError(f"split must be one of {', '.join(get_args(SplitMode))}")
        parts = await self.inject_mo(
            sender=request_str(request, "from"),
            destination=request_str(request, "to"),
            text=request_str(request, "text", empty=True),
            system_id=request.get("system_id"),
            split=split,
            shuffle=bool(request.get("shuffle", False)),
        )
        return {"ok": True, "parts": parts}


def account_list(specs: Iterable[str]) -> dict[str, str]:
    """``["masd:masd", "other:pw"]`` → accounts; ValueError on an entry without a colon."""
    return _simkit.account_list(specs, "system_id:password")
