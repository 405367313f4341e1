"""The channel driver contract: what the core asks of a carrier link, and what a link tells the core.

A driver knows its wire protocol and nothing about meetings, OA systems or HTTP. It owns its link for
the daemon's life (``run``), sends one delivery's segments when asked (``submit``) and reports receipts
and replies through the :class:`ChannelEvents` it was given; one part of a long reply goes to the core
as it arrives (``reply_part``), which keeps it until the rest come, so a driver holds nothing a restart
could lose. Everything the core calls on a driver is a method of :class:`ChannelDriver`, and everything
a driver calls on the core a method of :class:`ChannelEvents`; the optional ones (``submit_nowait``,
``drain``, ``receipt_batch``) have defaults there, so neither side looks for an operation by name.
Drivers register in the ``masd.channels`` entry-point group, so a third party can add one without
touching masd.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import importlib.metadata
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import pydantic
import trio

__all__ = [
    "ChannelDriver",
    "ChannelEvents",
    "DriverOptions",
    "InboundReceipt",
    "InboundReply",
    "InboundReplyPart",
    "InvalidOption",
    "OutboundSegment",
    "ReceiptStatus",
    "Segmenter",
    "SubmitDone",
    "SubmitError",
    "SubmitOutcome",
    "driver_class",
    "option",
    "parse_options",
]


class ReceiptStatus(enum.StrEnum):
    """Final states a carrier reports for one segment (SMPP message_state names, lower case)."""

    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    EXPIRED = "expired"
    REJECTED = "rejected"
    DELETED = "deleted"
    UNKNOWN = "unknown"
    ACCEPTED = "accepted"  # intermediate: the SMSC accepted it; not final
    ENROUTE = "enroute"  # intermediate


@dataclasses.dataclass(frozen=True, slots=True)
class OutboundSegment:
    """One PDU's worth of a delivery, already encoded by the core's splitter."""

    seq: int  # 1-based position
    total: int
    # SMPP: 0 = GSM 7-bit default alphabet (unpacked septets), 8 = UCS-2; a driver with its own
    # Segmenter puts its protocol's value here (CMPP's Msg_Fmt: 0 ASCII, 8 UCS-2, 15 GBK).
    data_coding: int
    short_message: bytes  # includes the UDH when ``udh`` is true
    udh: bool = False  # esm_class UDHI bit
    sar: tuple[int, int, int] | None = None  # (ref, total, seq) for SAR TLVs
    message_payload: bytes | None = None  # whole text in one PDU (concat = "payload")


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitOutcome:
    """What the carrier said to one segment: its message id, or an error."""

    carrier_id: str | None = None
    error: SubmitError | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SubmitError:
    code: int  # wire status, e.g. SMPP command_status; 0 for a local error
    name: str  # readable name, e.g. "ESME_RTHROTTLED"
    retriable: bool
    rebind: bool = False
    throttled: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class InboundReceipt:
    carrier_id: str
    status: ReceiptStatus
    error_code: int | None = None
    raw: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class InboundReply:
    """A mobile-originated message; ``destination`` keeps the extension the sender replied to."""

    sender: str
    destination: str
    text: str
    raw: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class InboundReplyPart:
    """One part of a concatenated mobile-originated message, as it came off the wire.

    ``reference`` names the concatenation reference with its scheme (``"udh8:42"``, ``"udh16:4660"``,
    ``"sar:7"``), so that references of different schemes never meet; with ``sender`` and
    ``destination`` it identifies the message. ``body`` is the part's user data without its UDH, and
    ``codec`` says how to read it (see :func:`masd.core.reply_parts.decode`: ``"gsm7"``, ``"ucs2"`` or a
    Python codec name): the parts are joined as bytes before decoding, because a character may straddle
    two parts.
    """

    sender: str
    destination: str
    reference: str
    total: int  # parts in the message, at least 2
    seq: int  # this part's position, 1 … total
    codec: str
    body: bytes
    received_at: float  # epoch seconds; the missing-part timeout runs from the first part's


class ChannelEvents(abc.ABC):
    """The core's side. Each call returns only once the event is durably stored, so a driver may then
    acknowledge it on the wire (e.g. send deliver_sm_resp)."""

    @abc.abstractmethod
    async def receipt(self, channel: str, receipt: InboundReceipt) -> None: ...

    async def receipt_batch(self, channel: str, receipts: Sequence[InboundReceipt]) -> None:
        """Store several receipts, in one write where the core can (masd's Gateway does). Each is stored,
        or it raises and none may be assumed stored: the driver then stores them one by one, and a
        receipt stored twice changes nothing. By default, one :meth:`receipt` after the other."""
        for receipt in receipts:
            await self.receipt(channel, receipt)

    @abc.abstractmethod
    async def reply(self, channel: str, reply: InboundReply) -> None:
        """A reply that came whole (one PDU)."""

    @abc.abstractmethod
    async def reply_part(self, channel: str, part: InboundReplyPart) -> InboundReply | None:
        """Store one part of a long reply. When it is the last one missing, the parts are joined and the
        reply stored, in the same transaction, and returned; else None. A part the core holds already,
        or one of a reply it has just handed over (the SMSC re-sends what it saw no answer to), changes
        nothing and returns None, so a reply is stored exactly once."""

    @abc.abstractmethod
    async def expire_reply_parts(self, channel: str, older_than: float) -> list[InboundReply]:
        """Give up waiting: store, with each run of missing parts marked
        (:data:`masd.core.reply_parts.MISSING`), every long reply of ``channel`` still incomplete whose
        first part arrived before ``older_than`` (epoch seconds), and return them. A driver calls this
        from a timer of its own, every second or so, with now less its missing-part timeout."""

    @abc.abstractmethod
    def link_state(self, channel: str, up: bool) -> None:
        """The link went up or down; the core routes around a channel that is down."""


class Segmenter(abc.ABC):
    """How a channel's wire protocol cuts a text into segments, for a driver whose protocol does not
    take SMPP's (GSM 7-bit or UCS-2, :mod:`masd.core.split`), e.g. CMPP's ASCII/GBK/UCS-2 octets.

    The core counts a delivery's segments with :meth:`count` when it accepts the message (it is what the
    receipts roll up over) and asks :meth:`encode` for them when it sends, so both must agree for every
    text. ``concat`` is the channel's concatenation method (``udh8``, ``udh16``, …; a segmenter refuses
    one its protocol cannot carry with ValueError), ``ref`` the delivery's concatenation reference.
    A text needing more than ``max_segments`` raises :class:`masd.core.split.TooManySegments`; one that
    cannot be encoded at all (an unpaired surrogate) raises ValueError."""

    @abc.abstractmethod
    def count(self, text: str, *, concat: str, max_segments: int) -> int: ...

    @abc.abstractmethod
    def encode(self, text: str, *, concat: str, ref: int, max_segments: int) -> list[OutboundSegment]: ...

    def encoding(self, text: str) -> str | None:
        """The alphabet ``text`` goes out in, as the API reports a message's ``encoding`` (``ascii``,
        ``gbk``, ``ucs2``); None (the default): the SMS splitter's name for it (``gsm7`` or ``ucs2``)."""
        return None


SubmitDone = Callable[[list[SubmitOutcome]], None]
"""What :meth:`ChannelDriver.submit_nowait` calls with one delivery's outcomes, once they are known."""


class DriverOptions(pydantic.BaseModel):
    """Base of a driver's options model: the ``[channels.NAME.options]`` table, declared as fields.

    Types are strict (``true`` is not 1, ``"5"`` is not 5), numbers finite, and a key the model does not
    declare is an error. Declare each field with :func:`option`, which keeps the words an operator reads
    when the value does not fit; a validator that needs more words raises :class:`InvalidOption`."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    secret: ClassVar[frozenset[str]] = frozenset()  # options whose value never goes into a message


def option(default: Any, expected: str, **constraints: Any) -> Any:
    """A field of a :class:`DriverOptions` model: its default, what a valid value looks like (``"an
    integer from 1 to 64"``, shown after "expected") and pydantic's constraints (``ge``, ``le`` …)."""
    return pydantic.Field(default, json_schema_extra={"expected": expected}, **constraints)


class InvalidOption(ValueError):
    """A driver option that cannot be used: which one, the value given and what is allowed. Raised by an
    options model's validators; :func:`parse_options` makes the message."""

    def __init__(self, option: str, value: object, allowed: str) -> None:
        self.option = option
        self.value = value
        self.allowed = allowed
        super().__init__(f"option {option}={value!r} is invalid: {allowed}")


_Options = TypeVar("_Options", bound=DriverOptions)


def parse_options(model: type[_Options], driver: str, channel: str, options: Mapping[str, Any]) -> _Options:
    """Validate a channel's driver options against the driver's model; ValueError names the driver, the
    channel, the option and its value, and says what is allowed."""
    where = f"{driver} channel {channel!r}"
    unknown = sorted(set(options) - set(model.model_fields))
    if unknown:
        raise ValueError(
            f"{where}: unknown option {unknown[0]}={options[unknown[0]]!r}; "
            f"allowed options: {', '.join(sorted(model.model_fields))}"
        )
    try:
        return model.model_validate(dict(options))
    except pydantic.ValidationError as e:
        raise ValueError(f"{where}: {_first_problem(model, options, e)}") from None


def _first_problem(
    model: type[DriverOptions], options: Mapping[str, Any], error: pydantic.ValidationError
) -> str:
    problem = error.errors()[0]
    cause = (problem.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidOption):
        key, value, allowed = cause.option, cause.value, cause.allowed
    else:
        key = str(problem["loc"][0])
        value = options.get(key)
        if isinstance(cause, ValueError):
            allowed = str(cause)
        else:
            extra = model.model_fields[key].json_schema_extra
            expected = extra.get("expected") if isinstance(extra, dict) else None
            allowed = f"expected {expected}" if expected else problem["msg"]
    if key in model.secret and isinstance(value, str):
        value = f"<{len(value)} characters, not shown>"  # a password never goes into a log line
    return f"option {key}={value!r} is invalid: {allowed}"


class ChannelDriver(abc.ABC):
    """Base of every driver. Subclasses implement ``run`` and ``submit``; ``submit_nowait`` and ``drain``
    have defaults (not offered; nothing to finish).

    A driver declares its options as a :class:`DriverOptions` model in ``Options`` and its name in
    messages in ``driver``; the options are checked here, once, when the driver is made, and the
    validated model is ``settings`` (``options`` keeps the table as given)."""

    driver: ClassVar[str] = "channel"
    Options: ClassVar[type[DriverOptions]] = DriverOptions

    def __init__(self, name: str, options: Mapping[str, Any], events: ChannelEvents, data_dir: str) -> None:
        self.name = name
        self.options = dict(options)
        self.settings: DriverOptions = parse_options(self.Options, self.driver, name, self.options)
        self.events = events
        self.data_dir = data_dir
        self.up = False

    @property
    def problem(self) -> str | None:
        """Why the link is down, in an operator's words, when the driver knows (a refused login names the
        carrier's status); None otherwise. Shown by ``/readyz`` and ``masd channels``."""
        return None

    @abc.abstractmethod
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the link up until cancelled; call ``task_status.started()`` once submits may be made."""

    @abc.abstractmethod
    async def submit(
        self, destination: str, source: str, segments: Sequence[OutboundSegment]
    ) -> list[SubmitOutcome]:
        """Send every segment of one delivery; return one outcome per segment, in order."""

    def submit_nowait(
        self, destination: str, source: str, segments: Sequence[OutboundSegment], done: SubmitDone
    ) -> bool:
        """``submit`` without waiting, for a delivery that can go at once: queue it, return True, and
        later call ``done`` with the outcomes ``submit`` would have returned. False: nothing was sent, and
        the core calls ``submit`` instead. It spares the core a task per delivery, which at thousands a
        second is a noticeable share of the CPU. By default no delivery can go so (False)."""
        return False

    async def drain(self) -> None:
        """Called on shutdown before cancellation: stop taking submits, finish what is in flight."""
        return None

    @classmethod
    def segmenter(cls, settings: DriverOptions) -> Segmenter | None:
        """How this driver's channels cut texts, given a channel's validated options; None (the default):
        the core's SMS splitter, GSM 7-bit or UCS-2 (:mod:`masd.core.split`). A class method, because the
        core counts segments where no driver runs (``masd send``, intake workers)."""
        return None


def driver_class(name: str) -> type[ChannelDriver]:
    """The driver registered as ``name`` in the ``masd.channels`` entry-point group; LookupError names the
    installed ones when there is none, TypeError when the entry point is not a ChannelDriver."""
    eps = importlib.metadata.entry_points(group="masd.channels")
    for ep in eps:
        if ep.name == name:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, ChannelDriver)):
                raise TypeError(f"channel driver {name!r} ({ep.value}) is not a ChannelDriver")
            return cls
    known = ", ".join(sorted(ep.name for ep in eps)) or "none"
    raise LookupError(f"no channel driver named {name!r}; installed drivers: {known}")
