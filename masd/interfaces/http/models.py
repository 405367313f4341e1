"""The HTTP API's request and response models: what the OpenAPI document shows.

Unknown body fields are refused (``extra="forbid"``): a misspelt ``send_at`` would otherwise send at
once, which cannot be taken back once a handset has it. A naive ``send_at`` (no UTC offset) is read in
the server's local time zone. Handlers build their answers themselves; these models document them (and
the tests check the answers against them), but FastAPI does not validate each answer again, which at
thousands of requests per second is a cost worth not paying.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, WithJsonSchema

from masd.interfaces.http.limits import MAX_BATCH

__all__ = [
    "BATCH_EXAMPLES",
    "REPLY_EXAMPLE",
    "SEND_EXAMPLES",
    "BatchRequest",
    "BatchResponse",
    "CancelOut",
    "ChannelState",
    "DeliveryOut",
    "HealthOut",
    "HistoryOut",
    "Links",
    "MessageOut",
    "ReadyOut",
    "RepliesPage",
    "ReplyOut",
    "RetryOut",
    "SegmentOut",
    "SendRequest",
    "SendResponse",
]


# ----- models: the request ----------------------------------------------------------------------------


def _one_or_many(value: Any) -> Any:
    # One recipient may be given as a plain string; everything else is a list to pydantic.
    return [value] if isinstance(value, str) else value


SEND_EXAMPLES: dict[str, dict[str, Any]] = {
    "one": {
        "summary": "One recipient",
        "value": {"to": "13800138000", "text": "Your verification code is 482913."},
    },
    "chinese": {
        "summary": "Chinese text to several recipients, scheduled, with a client reference",
        "value": {
            "to": ["13800138000", "+86 139-0013-9000"],
            "text": "【会议通知】明天上午9点在三楼会议室召开项目评审会，请准时参加。回复1确认，回复2请假。",
            "priority": 7,
            "send_at": "2030-05-20T08:30:00+08:00",
            "validity_seconds": 3600,
            "client_ref": "oa-meeting-20300520-17",
            "extension": "17",
        },
    },
    "international": {
        "summary": "An E.164 number outside mainland China",
        "value": {"to": ["+4915112345678"], "text": "Server room temperature above 35 °C", "priority": 9},
    },
}


# The alphabet a text goes out in: GSM 7-bit or UCS-2 on SMPP; ASCII, GBK or UCS-2 on the Chinese carriers'
# protocols (CMPP); tts for a voice call, which reads it aloud.
Encoding = Literal["gsm7", "ucs2", "ascii", "gbk", "tts"]


class SendRequest(BaseModel):
    """One message: one text to one or more recipients."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [e["value"] for e in SEND_EXAMPLES.values()]}
    )

    to: Annotated[
        list[str],
        BeforeValidator(_one_or_many),
        Field(min_length=1),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                ],
                "description": "Recipient or recipients: a mainland mobile number (11 digits, optionally "
                "with +86, 86 or 0086) or E.164 (+ and 8–15 digits). Spaces, dashes, parentheses and "
                "full-width digits are ignored; duplicates after normalisation are dropped.",
                "examples": ["13800138000", ["13800138000", "+4915112345678"]],
            }
        ),
    ]
    text: str = Field(
        min_length=1,
        description="The message text (at most queue.max_text_length characters, 2000 by default). "
        "GSM 03.38 text is sent 7-bit (160 characters, 153 per part when split); anything else UCS-2 "
        "(70, 67 per part).",
    )
    priority: StrictInt | None = Field(
        None, ge=0, le=9, description="0 (lowest) to 9 (highest); default queue.default_priority (5)"
    )
    send_at: datetime | None = Field(
        None,
        description="ISO 8601 date and time to send at, e.g. 2030-05-20T08:30:00+08:00. Without a UTC "
        "offset it is read in the server's local time zone. Omitted or in the past: send now.",
    )
    validity_seconds: StrictInt | None = Field(
        None,
        ge=1,
        description="Give up on a delivery this long after send time; default queue.validity_seconds",
    )
    client_ref: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="Your reference, unique per app. Submitting the same client_ref again returns the "
        "message already stored (200, created false) instead of sending twice.",
    )
    extension: str | None = Field(
        None,
        pattern=r"^[0-9]{0,12}$",
        description="Digits appended to the channel's service number as the sender (扩展码); replies to "
        "that number are matched back to this message.",
    )
    channel: str | None = Field(None, description="Send through this channel instead of the routed one")


# ----- models: the answers ----------------------------------------------------------------------------


BATCH_EXAMPLES: dict[str, dict[str, Any]] = {
    "two": {
        "summary": "Two messages, each with its own recipients and reference",
        "value": {
            "messages": [
                {"to": "13800138000", "text": "第一条：明天上午9点开会", "client_ref": "oa-batch-1"},
                {"to": ["13900139000", "+4915112345678"], "text": "second", "priority": 7},
            ]
        },
    },
}


class BatchRequest(BaseModel):
    """Up to 1,000 messages, accepted or refused together."""

    model_config = ConfigDict(extra="forbid")

    messages: list[SendRequest] = Field(min_length=1, max_length=MAX_BATCH)


class Links(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    self_: str = Field(alias="self", examples=["/v1/messages/42"])


class SendResponse(BaseModel):
    """The message as stored: 201 when created, 200 when its client_ref was already stored."""

    id: int = Field(examples=[42])
    state: str = Field(examples=["queued"], description="Always queued at acceptance")
    recipients: list[str] = Field(examples=[["13800138000"]], description="Normalised, without duplicates")
    segments: int = Field(examples=[1], description="Parts on the wire for the longest delivery")
    encoding: Encoding
    created: bool = Field(description="False: this client_ref was stored before and this is that message")
    links: Links


class BatchResponse(BaseModel):
    messages: list[SendResponse] = Field(description="One per message sent, in the same order")


class SegmentOut(BaseModel):
    seq: int
    total: int
    channel: str = Field(description="The channel it was handed to")
    carrier_id: str
    state: str = Field(
        description="submitted, delivered, undelivered, expired, rejected, deleted, unknown; superseded: "
        "sent again with the rest of its delivery (a retry, a resend, a move to another channel)"
    )
    error_code: int | None
    submitted_at: datetime
    receipt_at: datetime | None


class HistoryOut(BaseModel):
    """Something that happened to a delivery before its current attempt."""

    at: datetime
    event: str = Field(
        description="resend: a receipt failed it and it was sent again; failover: moved to the backup of "
        "a channel that is down; failback: moved home again; retry: sent again by the app or an operator",
        examples=["resend"],
    )
    channel: str = Field(description="The channel it was on")
    state: str | None = Field(description="The outcome that attempt ended with (resend, retry)")
    reason: str | None
    error_code: int | None = Field(description="The carrier's code, when it gave one")
    next_channel: str | None = Field(description="The channel it went on to (resend, failover, failback)")


class DeliveryOut(BaseModel):
    id: int
    recipient: str
    state: str = Field(
        description="queued, submitting, submitted, delivered, undelivered, expired, rejected, failed, "
        "cancelled"
    )
    reason: str | None
    attempts: int
    resends: int = Field(description="Times it was sent again after a failed receipt")
    extension: str
    channel: str
    updated_at: datetime
    segment_count: int = Field(description="Parts this delivery is split into")
    segments: list[SegmentOut] = Field(description="Each part handed to a carrier, with its receipt")
    history: list[HistoryOut] = Field(
        description="What happened before the current attempt (resends, failovers, retries), oldest first"
    )


class MessageOut(BaseModel):
    id: int
    text: str
    encoding: Encoding
    priority: int
    client_ref: str | None
    created_at: datetime
    send_at: datetime | None
    expires_at: datetime
    state: str = Field(description="The deliveries' state when they all share one, else mixed")
    counts: dict[str, int] = Field(
        description="Deliveries per state", examples=[{"delivered": 2, "queued": 1}]
    )
    deliveries: list[DeliveryOut]


REPLY_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "sender": "13800138000",
    "destination": "106570001234517",
    "extension": "17",
    "text": "1",
    "received_at": "2030-05-20T01:02:03.456Z",
    "matched_by": "extension",
    "channel": "smpp",
    "message_id": 42,
    "client_ref": "oa-meeting-20300520-17",
    "delivery_id": 118,
}


class ReplyOut(BaseModel):
    """A reply (上行短信) routed to the calling app."""

    model_config = ConfigDict(json_schema_extra={"examples": [REPLY_EXAMPLE]})

    id: int = Field(description="Increasing; use the last one seen as the next `after`")
    sender: str = Field(description="The handset that replied, normalised like a recipient")
    destination: str = Field(description="The number it replied to: service number and extension")
    extension: str = Field(
        description="What followed the app's own extension in the destination (often the extension the "
        "message was sent with); empty when nothing did"
    )
    text: str
    received_at: datetime = Field(description="When masd received it, UTC")
    matched_by: str = Field(
        description="How it was routed to this app: extension, keyword, recent (the latest delivery to "
        "the sender) or manual (masd replies assign)"
    )
    channel: str = Field(description="The channel it arrived on")
    message_id: int | None = Field(description="The message it answers, when known")
    client_ref: str | None = Field(description="That message's client_ref, when it had one")
    delivery_id: int | None = Field(description="The delivery it answers, when known")


class RepliesPage(BaseModel):
    """One page of replies; poll again with ``after=next``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"replies": [REPLY_EXAMPLE], "next": 7}]})

    replies: list[ReplyOut] = Field(description="Oldest first; empty when there is nothing new")
    next: int = Field(
        description="The cursor for the next call: the last reply's id, or the given `after` when there "
        "were none"
    )


class CancelOut(BaseModel):
    """What a cancel did: the deliveries still queued are cancelled; the others are as ``counts`` says."""

    # The meeting module has a CancelOut too, so the OpenAPI document names this one by its module:
    # the package's, as the models were published before the package was split.
    __module__ = "masd.interfaces.http"

    id: int
    cancelled: int = Field(description="Deliveries cancelled now (each gets its receipt event)")
    counts: dict[str, int] = Field(
        description="Deliveries per state after it", examples=[{"cancelled": 2, "submitted": 1}]
    )


class RetryOut(BaseModel):
    """What a retry did: deliveries that ended unsuccessfully are queued again."""

    id: int
    retried: int = Field(description="Deliveries queued again now")
    counts: dict[str, int] = Field(
        description="Deliveries per state after it", examples=[{"queued": 1, "delivered": 2}]
    )


class HealthOut(BaseModel):
    status: Literal["ok"]


class ChannelState(BaseModel):
    up: bool
    rate: float = Field(
        description="Segments per second it sends at now; lower than configured while throttled"
    )
    configured_rate: float
    throttled: bool = Field(description="The carrier throttled it and it has not yet recovered its rate")
    problem: str | None = Field(
        None,
        description="Why the link is down, when the driver knows, e.g. 'CMPP_CONNECT refused: status 3 "
        "(authentication failed)'",
    )


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str] = Field(
        examples=[{"daemon": "ok", "store": "ok", "channels": "up: sim"}],
        description="Each check's finding: ok, or what is wrong",
    )
    failed: list[str] = Field(description="Names of the checks that failed")
    channels: dict[str, ChannelState] = Field(
        default_factory=dict, description="Each channel: link up or down, and the rate it sends at now"
    )
