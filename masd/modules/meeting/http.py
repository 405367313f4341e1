"""The meeting module over HTTP (会信通 API): meetings, their board and exports, schedule reminders and memos.

    POST  /v1/meetings                   create a meeting; its notice goes out at send_at (now by default)
    GET   /v1/meetings                   the history: from, to, text, attendee (newest first)
    GET   /v1/meetings/{id}              one meeting with its counts
    GET   /v1/meetings/{id}/board        the organiser's board: counts and one row per attendee
    GET   /v1/meetings/{id}/board.xlsx   the board as a spreadsheet (also .csv)
    PATCH /v1/meetings/{id}              change title, time, place or agenda; notified attendees are told
    POST  /v1/meetings/{id}/cancel       cancel; notified attendees are told
    POST  /v1/schedule                   a schedule reminder (日程提醒) or memo (备忘录) for one person
    GET   /v1/schedule                   reminders and memos, by time

An app sees and acts on the meetings it created, no others: an attendee list is personal data. Meetings
made with the CLI belong to no app and are managed there. Schedule items are listed for the app that made
them.

What a meeting or reminder sends counts against the calling app's channel kinds, rate and daily quota,
as a direct ``POST /v1/messages`` would: one whose kinds the app may not use is refused before anything
is stored (403, field ``channel``), and one due now is sent while the request is handled, so that a
refusal of its first messages answers the request (429 ``rate``/``quota`` with Retry-After, 503
``queue_full``) and nothing of it is kept. See the module's service for sends due later.

The router needs from the app that mounts it what :func:`masd.interfaces.http.make_app` provides: the key
cache at ``app.state.keys`` (authentication as for every route), the store at ``app.state.db``, and the
exception handlers that render :class:`~masd.interfaces.http.ApiError` in the house shape,
``{"error": {"code", "reason", "field"?, "index"?, "value"?}}``; and the meeting service at
``app.state.meeting``, which the daemon hands over with the router (503 ``module_disabled`` without it).
"""

from __future__ import annotations

import functools
import re
import string
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt
from pydantic_core import PydanticCustomError

from masd.core import recipients as rcpt
from masd.core.apps import Forbidden
from masd.core.gateway import App, Rejected
from masd.core.times import utc_iso
from masd.interfaces.http import (
    ApiError,
    calling_app,
    echo,
    error_response,
    error_responses,
    validation_response,
)
from masd.modules.contacts.model import ContactError
from masd.modules.meeting import export, store
from masd.modules.meeting.service import MeetingService, MeetingSpec
from masd.store.db import Database

__all__ = ["BoardOut", "MeetingIn", "MeetingOut", "router"]

MAX_ID = 2**63 - 1
MAX_ATTENDEES = 10_000  # per list in one request; a whole office is a few thousand
MAX_MINUTES = 525_600.0  # a year
MAX_LIST = 1000
# Times past this are refused: a meeting centuries ahead is a typo, and year 10000 cannot be rendered.
LATEST = datetime(3000, 1, 1, tzinfo=UTC).timestamp()


# ----- the route class: validation errors that name this router's fields --------------------------------


class _MeetingRoute(APIRoute):
    """Renders a request that fails validation like the rest of the API, but an unknown body field is
    answered with this route's own field names (the app's handler lists the message fields)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        model = self.body_field.field_info.annotation if self.body_field is not None else None
        fields = list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                first = next(iter(exc.errors()), None)
                if first is not None and first.get("type") == "extra_forbidden":
                    loc = [p for p in first.get("loc", ()) if p != "body"]
                    names = [str(p) for p in loc if isinstance(p, str)]
                    index = next((p for p in loc if isinstance(p, int)), None)
                    known = f"; the fields are {', '.join(fields)}" if len(loc) == 1 and fields else ""
                    return error_response(
                        422, "invalid", f"unknown field{known}", field=".".join(names), index=index
                    )
                return validation_response(exc)

        return route


router = APIRouter(route_class=_MeetingRoute)


def database(request: Request) -> Database:
    """The store the mounting app keeps at ``app.state.db``."""
    db: Database = request.app.state.db
    return db


def meeting_service(request: Request) -> MeetingService:
    """The meeting service the daemon hands over with the router (``app.state.meeting``)."""
    service: MeetingService | None = getattr(request.app.state, "meeting", None)
    if service is None:
        raise ApiError(503, "module_disabled", "the meeting module is off ([meeting] enabled = false)")
    return service


Caller = Annotated[App, Depends(calling_app)]
Service = Annotated[MeetingService, Depends(meeting_service)]
Db = Annotated[Database, Depends(database)]
MeetingId = Annotated[int, Path(alias="id", ge=1, le=MAX_ID, description="The meeting's id (its code, #42)")]


# ----- models: what comes in ------------------------------------------------------------------------------


def _refusal(reason: str) -> PydanticCustomError:
    # A custom error keeps pydantic from prefixing "Value error, " to the reason the client reads.
    return PydanticCustomError("invalid", "{reason}", {"reason": reason})


def _storable(value: str) -> str:
    # PostgreSQL cannot store NUL, and a lone surrogate cannot be encoded: refuse them as invalid input
    # rather than fail in the driver.
    if "\x00" in value:
        raise _refusal("may not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _refusal("is not valid Unicode text") from None
    return value


def _written_time(value: Any) -> Any:
    # The schema says ISO 8601; pydantic would also take a number of seconds, which nobody means here.
    if not isinstance(value, str | datetime) or (isinstance(value, str) and _NUMBER.match(value)):
        raise _refusal("must be an ISO 8601 date and time, e.g. 2030-05-20T09:00:00+08:00")
    return value


_NUMBER = re.compile(r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$")


def _ref(value: Any) -> Any:
    """An address book reference: an id or a string (a mobile, a path, a name), checked before the union
    is tried so that a bad one gets one error, not one per member of the union."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _refusal("must be an id (a number) or a string")
    if isinstance(value, int) and not 1 <= value <= MAX_ID:
        raise _refusal(f"is not an id (1 to {MAX_ID})")
    if isinstance(value, str):
        _storable(value)
        # The address book reads a string of digits as an id when nothing else matches; one past the
        # id column's range could only fail in the database driver.
        if value.strip().isdigit() and int(value) > MAX_ID:
            raise _refusal("is too large to be an id and names nobody in the address book")
    return value


def _template(value: str) -> str:
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as e:
        raise _refusal(f"is not a valid template ({e}); write {{{{ and }}}} for literal braces") from None
    for _, field, spec, conversion in parts:
        # A width such as {name:>99999999} would make a 100 MB text for every attendee.
        if field is not None and (spec or conversion):
            raise _refusal(f"placeholders take no format or conversion: write {{{field}}}")
    return value


Text = Annotated[str, AfterValidator(_storable)]
When = Annotated[datetime, BeforeValidator(_written_time)]
Minutes = Annotated[float, Field(ge=0, le=MAX_MINUTES, allow_inf_nan=False)]
PersonId = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]


class AttendeeIn(BaseModel):
    """Someone to notify who is not (or need not be) in the address book."""

    model_config = ConfigDict(extra="forbid")

    mobile: Text = Field(min_length=1, max_length=32, examples=["13800138000"])
    name: Text = Field("", max_length=100, examples=["张三"])
    department: Text = Field("", max_length=255, examples=["市政府/办公室"])


_MEETING_EXAMPLE: dict[str, Any] = {
    "title": "周一例会",
    "starts_at": "2030-05-20T09:00:00+08:00",
    "ends_at": "2030-05-20T10:30:00+08:00",
    "place": "三楼会议室",
    "agenda": "一、上周工作小结；二、本周安排",
    "organiser": "办公室",
    "attachments": ["议程.docx"],
    "mode": "sms+voice",
    "reply_deadline": "2030-05-19T17:00:00+08:00",
    "second_sms_after_minutes": 60,
    "call_after_minutes": 30,
    "remind_before_minutes": 60,
    "departments": ["市政府/办公室"],
    "groups": ["办公会"],
    "numbers": ["13800138000"],
}


class MeetingIn(BaseModel):
    """A meeting to notify. Attendees are the union of people, departments (with their sub-departments),
    groups, numbers and attendees, each mobile once. Times are ISO 8601; without a UTC offset they are
    read in the server's local time zone. The three delays may be left out (the configured default),
    null (off) or a number of minutes."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_MEETING_EXAMPLE]})

    title: Text = Field(min_length=1, max_length=200)
    starts_at: When
    ends_at: When | None = Field(None, description="Default: one hour after the start")
    place: Text = Field("", max_length=200)
    agenda: Text = Field("", max_length=10_000)
    organiser: Text = Field("", max_length=100)
    attachments: list[Annotated[Text, Field(min_length=1, max_length=255)]] = Field(
        default_factory=list, max_length=50, description="Attachments' file names, listed (not sent)"
    )
    template: Annotated[Text, AfterValidator(_template)] | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="The notice text with placeholders {name} {title} {time} {end} {place} {code} {reply} "
        "{deadline} {agenda} {organiser}; default '{name}您好：定于{time}在{place}召开{title}。{reply}'",
    )
    mode: Literal["sms", "sms+voice", "voice"] = Field(
        "sms", description="sms; sms+voice (call those still silent after the second SMS); voice (call only)"
    )
    send_at: When | None = Field(None, description="When to send the notice; default now")
    reply_deadline: When | None = Field(
        None, description="Replies after it still count and are marked late; default the start"
    )
    second_sms_after_minutes: Minutes | None = Field(
        None, description="A second SMS to those silent this long after the notice; null: none"
    )
    call_after_minutes: Minutes | None = Field(
        None, description="Mode sms+voice: call those still silent this long after the second SMS; null: none"
    )
    remind_before_minutes: Minutes | None = Field(
        None, description="Remind those attending this long before the start; null: none"
    )
    checkin_code: str | None = Field(
        None,
        pattern=r"^[0-9A-Za-z]{0,12}$",
        description="Replying it on the day checks in; default four random digits; empty: none",
    )
    people: list[Annotated[PersonId | Annotated[str, Field(max_length=64)], BeforeValidator(_ref)]] = Field(
        default_factory=list, max_length=MAX_ATTENDEES, description="Address book people by id or mobile"
    )
    departments: list[Annotated[str, Field(max_length=255), BeforeValidator(_ref)]] = Field(
        default_factory=list, max_length=1000, description="Department paths (市政府/办公室) or ids"
    )
    groups: list[Annotated[str, Field(max_length=100), BeforeValidator(_ref)]] = Field(
        default_factory=list, max_length=1000, description="Group names or ids"
    )
    numbers: list[Annotated[Text, Field(max_length=32)]] = Field(
        default_factory=list, max_length=MAX_ATTENDEES, description="Bare mobile numbers"
    )
    attendees: list[AttendeeIn] = Field(
        default_factory=list, max_length=MAX_ATTENDEES, description="Attendees given in full"
    )


class MeetingChange(BaseModel):
    """What changes; at least one field. A new start moves the end with it unless ends_at is given."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"starts_at": "2030-05-20T14:00:00+08:00", "place": "五楼"}]},
    )

    title: Text | None = Field(None, min_length=1, max_length=200)
    starts_at: When | None = None
    ends_at: When | None = None
    place: Text | None = Field(None, max_length=200)
    agenda: Text | None = Field(None, max_length=10_000)


class ScheduleIn(BaseModel):
    """A schedule reminder (sent by SMS at remind_at) or a memo (kept; also sent if it has a time), for a
    person given by mobile or from the address book."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "mobile": "13800138000",
                    "title": "交季度报表",
                    "text": "下午五点前",
                    "remind_at": "2030-05-20T09:00:00+08:00",
                }
            ]
        },
    )

    kind: Literal["reminder", "memo"] = "reminder"
    mobile: Text | None = Field(None, min_length=1, max_length=32)
    person: (
        Annotated[PersonId | Annotated[str, Field(min_length=1, max_length=64)], BeforeValidator(_ref)] | None
    ) = Field(None, description="A person in the address book, by id or mobile (instead of mobile)")
    title: Text = Field(min_length=1, max_length=200)
    text: Text = Field("", max_length=1000)
    remind_at: When | None = Field(None, description="When to send it; required for a reminder")


# ----- models: what goes out ------------------------------------------------------------------------------


class MeetingLinks(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    self_: str = Field(alias="self", examples=["/v1/meetings/42"])
    board: str = Field(examples=["/v1/meetings/42/board"])


class ReplyCounts(BaseModel):
    attendees: int
    attend: int
    decline: int
    leave: int
    no_reply: int


class BoardCounts(ReplyCounts):
    awaiting: int = Field(description="Attendees whose last reply was unclear: asked back, nothing recorded")
    notified: int
    delivered: int
    undelivered: int
    refused: int = Field(description="Attendees something was not sent to because of the app's limits")
    late: int = Field(description="Answers after the reply deadline (they count)")
    second_sms: int
    called: int
    reminded: int
    checked_in: int


class MeetingOut(BaseModel):
    id: int = Field(examples=[42])
    code: str = Field(examples=["#42"], description='Shown in notices; a reply may carry it ("1 #42")')
    title: str
    starts_at: datetime
    ends_at: datetime
    place: str
    agenda: str
    organiser: str
    attachments: list[str]
    template: str
    mode: Literal["sms", "sms+voice", "voice"]
    send_at: datetime
    reply_deadline: datetime | None
    second_sms_after_minutes: float | None
    call_after_minutes: float | None
    remind_before_minutes: float | None
    checkin_code: str
    app: str | None = Field(
        description="The app that made the meeting, whose limits its messages count against; null: the CLI"
    )
    state: Literal["scheduled", "notified", "cancelled"]
    revision: int = Field(description="How many changes were announced")
    created_at: datetime
    updated_at: datetime
    notified_at: datetime | None
    cancelled_at: datetime | None
    counts: ReplyCounts
    links: MeetingLinks


class MeetingDetail(MeetingOut):
    counts: BoardCounts


class MeetingList(BaseModel):
    meetings: list[MeetingOut] = Field(description="Newest first")


class Refusal(BaseModel):
    """Something the meeting's app's limits kept from going out; it is not tried again."""

    send: str = Field(
        examples=["notice"], description="notice, second_sms, call, reminder, change, cancel, answer"
    )
    limit: str = Field(
        examples=["quota"], description="quota, channel (a kind the app may not use), app (revoked), rate"
    )
    reason: str
    at: datetime


class Answer(BaseModel):
    """One answer recorded for an attendee; the row shows the latest."""

    kind: Literal["attend", "decline", "leave", "checkin"]
    text: str = Field(description="The reason of a leave, or the note after another answer")
    reply: str = Field(description="The reply it was read from, as it came")
    reply_id: int | None = Field(description="The reply in /v1/replies it came from")
    via: Literal["sms", "voice"]
    late: bool = Field(description="Given after the reply deadline")
    at: datetime


class PendingReply(BaseModel):
    """A reply that could not be read for sure: nothing was recorded, and the attendee was asked back."""

    text: str = Field(description="The reply as it came")
    at: datetime


class BoardRow(BaseModel):
    id: int = Field(description="The attendee's id within the meeting")
    name: str
    department: str
    mobile: str
    notified_at: datetime | None
    notice_state: str | None = Field(
        description="The notice's final state: delivered, undelivered, …; refused: never sent (see refusals)"
    )
    delivered_at: datetime | None
    response: Literal["attend", "decline", "leave"] | None
    reason: str = Field(description="The reason given with a leave (请假)")
    late: bool = Field(description="Answered after the reply deadline")
    response_via: Literal["sms", "voice"] | None = Field(description="An SMS reply or a keypress")
    responded_at: datetime | None
    second_sms_at: datetime | None
    called_at: datetime | None
    call_outcome: str | None = Field(
        description="answered, no-answer, busy, declined or failed (masd_adapters.voice reads the SIP code)"
    )
    reminded_at: datetime | None
    checked_in_at: datetime | None
    comment: str = Field(description="What else the attendee wrote")
    pending_reply: PendingReply | None = Field(
        description="The reply awaiting an answer after an ask-back; null once an answer is recorded"
    )
    ask_backs: int = Field(
        description="How often the attendee was asked back (at most [meeting] ask_back_limit)"
    )
    answers: list[Answer] = Field(description="Every answer recorded, check-ins too, oldest first")
    refusals: list[Refusal] = Field(description="What the app's limits kept from this attendee, oldest first")


class BoardOut(BaseModel):
    meeting: MeetingOut
    counts: BoardCounts
    attendees: list[BoardRow]


class ChangeOut(BaseModel):
    meeting: MeetingDetail
    told: int = Field(description="Attendees a change or cancellation notice was queued for")


class CancelOut(ChangeOut):
    already_cancelled: bool


class ScheduleItemOut(BaseModel):
    id: int
    kind: Literal["reminder", "memo"]
    name: str
    mobile: str
    title: str
    text: str
    remind_at: datetime | None
    sent_at: datetime | None
    message_id: int | None = Field(description="The SMS that carried it, once sent")
    refusal: Refusal | None = Field(description="Why it was not sent, if the app's limits refused it")
    created_at: datetime


class ScheduleList(BaseModel):
    items: list[ScheduleItemOut]


# ----- converting --------------------------------------------------------------------------------------


def _epoch(value: datetime, field: str) -> float:
    try:
        # astimezone() on a naive datetime takes it as the server's local time.
        t = value.astimezone().timestamp()
    except (OverflowError, OSError, ValueError):
        t = LATEST
    if t >= LATEST:
        raise ApiError(
            422,
            "invalid",
            "is out of range; give a time before the year 3000",
            field=field,
            value=value.isoformat(),
        )
    return t


def _minutes_to_seconds(body: BaseModel, name: str) -> float | None:
    # Left out: the configured default (the service's -1); null: off.
    if name not in body.model_fields_set:
        return -1.0
    value = getattr(body, name)
    return None if value is None else float(value) * 60


def _minutes(seconds: int | None) -> float | None:
    return None if seconds is None else seconds / 60


def _meeting_json(m: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    mid = int(m["id"])
    return {
        "id": mid,
        "code": f"#{mid}",
        "title": m["title"],
        "starts_at": utc_iso(m["starts_at"]),
        "ends_at": utc_iso(m["ends_at"]),
        "place": m["place"],
        "agenda": m["agenda"],
        "organiser": m["organiser"],
        "attachments": m["attachments"],
        "template": m["template"],
        "mode": m["mode"],
        "send_at": utc_iso(m["send_at"]),
        "reply_deadline": utc_iso(m["reply_deadline"]),
        "second_sms_after_minutes": _minutes(m["second_sms_after"]),
        "call_after_minutes": _minutes(m["call_after"]),
        "remind_before_minutes": _minutes(m["remind_before"]),
        "checkin_code": m["checkin_code"],
        "app": m.get("app"),
        "state": m["state"],
        "revision": m["revision"],
        "created_at": utc_iso(m["created_at"]),
        "updated_at": utc_iso(m["updated_at"]),
        "notified_at": utc_iso(m["notified_at"]),
        "cancelled_at": utc_iso(m["cancelled_at"]),
        "counts": counts,
        "links": {"self": f"/v1/meetings/{mid}", "board": f"/v1/meetings/{mid}/board"},
    }


def _row_json(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "name": r["name"],
        "department": r["department"],
        "mobile": r["mobile"],
        "notified_at": utc_iso(r["notified"]),
        "notice_state": r["notice_state"],
        "delivered_at": utc_iso(r["delivered"]),
        "response": r["response"],
        "reason": r["reason"],
        "late": r["late"],
        "response_via": r["response_via"],
        "responded_at": utc_iso(r["responded"]),
        "second_sms_at": utc_iso(r["second_sms"]),
        "called_at": utc_iso(r["called"]),
        "call_outcome": r["call_outcome"],
        "reminded_at": utc_iso(r["reminded"]),
        "checked_in_at": utc_iso(r["checked_in"]),
        "comment": r["comment"],
        "pending_reply": (
            {"text": r["pending_reply"]["text"], "at": utc_iso(r["pending_reply"]["at"])}
            if r.get("pending_reply")
            else None
        ),
        "ask_backs": r.get("ask_backs", 0),
        "answers": [{**x, "at": utc_iso(x["at"])} for x in r.get("answers", ())],
        "refusals": [_refusal_json(x) for x in r.get("refusals", ())],
    }


def _refusal_json(x: dict[str, Any]) -> dict[str, Any]:
    return {"send": x["send"], "limit": x["limit"], "reason": x["reason"], "at": utc_iso(x["at"])}


def _item_json(it: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": it["id"],
        "kind": it["kind"],
        "name": it["name"],
        "mobile": it["mobile"],
        "title": it["title"],
        "text": it["text"],
        "remind_at": utc_iso(it["remind_at"]),
        "sent_at": utc_iso(it["sent_at"]),
        "message_id": it["message_id"],
        "refusal": _refusal_json(it["refusal"]) if it.get("refusal") else None,
        "created_at": utc_iso(it["created_at"]),
    }


def _invalid(e: Rejected | ContactError) -> ApiError:
    """The service's or the address book's refusal in the house shape (422, the field named)."""
    # The address book names a list item "departments[2]"; the house shape says field and index apart.
    field, _, rest = e.field.partition("[")
    index = int(rest[:-1]) if rest.endswith("]") and rest[:-1].isdigit() else None
    if isinstance(e, Rejected) and e.index is not None:
        index = e.index
    code = "invalid" if isinstance(e, Rejected) else e.code
    return ApiError(
        422, code, e.reason, field=field if index is not None else e.field, index=index, value=echo(e.value)
    )


def _attendees(given: Sequence[AttendeeIn]) -> list[dict[str, Any]]:
    # Normalised here so that a bad one is named as attendees[i], and a name given with a number written
    # "+86 139-…" stays with it.
    out: list[dict[str, Any]] = []
    for i, a in enumerate(given):
        try:
            mobile = rcpt.normalize(a.mobile)
        except rcpt.InvalidRecipient as e:
            raise ApiError(
                422, "invalid", e.reason, field="attendees.mobile", index=i, value=echo(a.mobile)
            ) from None
        out.append({**a.model_dump(), "mobile": mobile})
    return out


async def _board(db: Database, meeting_id: int, app: App) -> dict[str, Any]:
    """The meeting's board, if the calling app made the meeting; 404 otherwise."""
    board: dict[str, Any] | None = await db.read(functools.partial(store.board, meeting_id=meeting_id))
    if board is None or board["meeting"]["app_id"] != app.id:
        raise ApiError(404, "not_found", f"no meeting {meeting_id} for this app", value=meeting_id)
    return board


def _detail_json(board: dict[str, Any]) -> dict[str, Any]:
    return _meeting_json(board["meeting"], board["counts"])


# ----- meetings ------------------------------------------------------------------------------------------


@router.post(
    "/v1/meetings",
    tags=["meetings"],
    summary="Create a meeting and notify its attendees",
    status_code=201,
    response_model=MeetingDetail,
    responses=error_responses(400, 401, 403, 413, 422, 429, 503),
)
async def create_meeting(
    body: Annotated[
        MeetingIn,
        Body(openapi_examples={"weekly": {"summary": "A weekly meeting", "value": _MEETING_EXAMPLE}}),
    ],
    caller: Caller,
    service: Service,
    db: Db,
) -> Response:
    """Store the meeting with its attendees; the notice goes out at ``send_at`` (now when left out), each
    attendee's with the meeting's own extension so that a reply matches exactly. Refused whole, with the
    field named, when a field is invalid, a person/department/group is not in the address book or there
    is nobody to notify; refused as a direct send would be, with nothing kept, when the app may not use
    the mode's channel kinds (403) or its rate or quota has no room for a notice due now (429)."""
    if body.people or body.departments or body.groups:
        _may_read_address_book(
            caller, "people" if body.people else "departments" if body.departments else "groups"
        )
    spec = MeetingSpec(
        title=body.title,
        starts_at=_epoch(body.starts_at, "starts_at"),
        ends_at=_epoch(body.ends_at, "ends_at") if body.ends_at is not None else None,
        place=body.place,
        agenda=body.agenda,
        organiser=body.organiser,
        attachments=body.attachments,
        template=body.template,
        mode=body.mode,
        send_at=_epoch(body.send_at, "send_at") if body.send_at is not None else None,
        reply_deadline=_epoch(body.reply_deadline, "reply_deadline")
        if body.reply_deadline is not None
        else None,
        second_sms_after=_minutes_to_seconds(body, "second_sms_after_minutes"),
        call_after=_minutes_to_seconds(body, "call_after_minutes"),
        remind_before=_minutes_to_seconds(body, "remind_before_minutes"),
        checkin_code=body.checkin_code,
        people=body.people,
        departments=body.departments,
        groups=body.groups,
        numbers=body.numbers,
        attendees=_attendees(body.attendees),
    )
    try:
        meeting_id = await service.create(spec, app=caller)
    except (Rejected, ContactError) as e:
        raise _invalid(e) from None
    board = await _board(db, meeting_id, caller)
    return JSONResponse(
        _detail_json(board), status_code=201, headers={"Location": f"/v1/meetings/{meeting_id}"}
    )


@router.get(
    "/v1/meetings",
    tags=["meetings"],
    summary="Search the app's meetings: date range, text, attendee",
    response_model=MeetingList,
    responses=error_responses(401, 422, 503),
)
async def list_meetings(
    caller: Caller,
    db: Db,
    from_: Annotated[
        When | None,
        Query(alias="from", description="Meetings starting at or after this time (ISO 8601, or a date)"),
    ] = None,
    to: Annotated[
        When | None,
        Query(
            description="Meetings starting before this time (a date is its midnight: to=2030-05-21 "
            "ends with the 20th)"
        ),
    ] = None,
    text: Annotated[
        Text | None, Query(max_length=200, description="The title, place or agenda contains this")
    ] = None,
    attendee: Annotated[
        Text | None, Query(max_length=100, description="An attendee's name or mobile contains this")
    ] = None,
    upcoming: Annotated[bool, Query(description="Only meetings not yet over, soonest first")] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST, description=f"At most this many (1 to {MAX_LIST})")] = 200,
) -> Response:
    """The app's meetings starting in [from, to), newest first (or, with ``upcoming``, those not yet over,
    soonest first), each with how many attendees answered what."""
    start = _epoch(from_, "from") if from_ is not None else None
    end = _epoch(to, "to") if to is not None else None

    def read(conn: Any) -> tuple[list[dict[str, Any]], dict[int, dict[str, int]]]:
        rows = store.find_meetings(
            conn,
            start=start,
            end=end,
            ends_after=time.time() if upcoming else None,
            text=text,
            attendee=attendee,
            app_id=caller.id,
            soonest_first=upcoming,
            limit=limit,
        )
        return rows, store.attendee_counts(conn, [int(r["id"]) for r in rows])

    rows, counts = await db.read(read)
    return JSONResponse({"meetings": [_meeting_json(r, counts[int(r["id"])]) for r in rows]})


@router.get(
    "/v1/meetings/{id}",
    tags=["meetings"],
    summary="A meeting and its counts",
    response_model=MeetingDetail,
    responses=error_responses(401, 404, 422, 503),
)
async def get_meeting(meeting_id: MeetingId, caller: Caller, db: Db) -> Response:
    return JSONResponse(_detail_json(await _board(db, meeting_id, caller)))


@router.get(
    "/v1/meetings/{id}/board",
    tags=["meetings"],
    summary="The organiser's board: counts and one row per attendee",
    response_model=BoardOut,
    responses=error_responses(401, 404, 422, 503),
)
async def get_board(meeting_id: MeetingId, caller: Caller, db: Db) -> Response:
    """Who was notified, whose notice was delivered, who answered what (and when, and whether late),
    every answer they gave (``answers``), whose last reply awaits an answer after an ask-back
    (``pending_reply``), who got the second SMS, was called (and how the call went), was reminded,
    checked in."""
    board = await _board(db, meeting_id, caller)
    return JSONResponse(
        {
            "meeting": _meeting_json(board["meeting"], _reply_counts(board["counts"])),
            "counts": board["counts"],
            "attendees": [_row_json(r) for r in board["attendees"]],
        }
    )


def _reply_counts(counts: dict[str, int]) -> dict[str, int]:
    return {k: counts[k] for k in ReplyCounts.model_fields}


Lang = Annotated[Literal["zh", "en"], Query(description="Language of the headers and answers")]


def _download(data: bytes, media_type: str, filename: str) -> Response:
    return Response(
        data, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


@router.get(
    "/v1/meetings/{id}/board.xlsx",
    tags=["meetings"],
    summary="The board as an XLSX spreadsheet",
    response_class=Response,
    responses={
        200: {
            "content": {export.XLSX_TYPE: {}},
            "description": "Sheet 1: one row per attendee; sheet 2: summary",
        },
        **error_responses(401, 404, 422, 503),
    },
)
async def board_xlsx(meeting_id: MeetingId, caller: Caller, db: Db, lang: Lang = "zh") -> Response:
    board = await _board(db, meeting_id, caller)
    return _download(
        export.board_xlsx(board, lang=lang), export.XLSX_TYPE, f"meeting-{meeting_id}-board.xlsx"
    )


@router.get(
    "/v1/meetings/{id}/board.csv",
    tags=["meetings"],
    summary="The board as CSV (UTF-8 with a byte-order mark)",
    response_class=Response,
    responses={
        200: {"content": {export.CSV_TYPE: {}}, "description": "One row per attendee"},
        **error_responses(401, 404, 422, 503),
    },
)
async def board_csv(meeting_id: MeetingId, caller: Caller, db: Db, lang: Lang = "zh") -> Response:
    board = await _board(db, meeting_id, caller)
    return _download(export.board_csv(board, lang=lang), export.CSV_TYPE, f"meeting-{meeting_id}-board.csv")


async def _notify(action: Callable[[], Awaitable[int]], what: str) -> int:
    """Store a change or cancellation; the scheduler sends its notices (and retries them)."""
    try:
        return await action()
    except Rejected as e:
        raise _invalid(e) from None


@router.patch(
    "/v1/meetings/{id}",
    tags=["meetings"],
    summary="Change a meeting; notified attendees get a change notice",
    response_model=ChangeOut,
    responses=error_responses(400, 401, 404, 409, 413, 422, 503, e409="The meeting is cancelled"),
)
async def change_meeting(
    meeting_id: MeetingId, body: MeetingChange, caller: Caller, service: Service, db: Db
) -> Response:
    """Change the title, time, place or agenda. Everyone already notified is sent a change notice (and,
    if they said they would come, a fresh reminder before the new start)."""
    before = await _board(db, meeting_id, caller)
    changes: dict[str, Any] = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    if not changes:
        raise ApiError(
            422, "invalid", "nothing to change; give title, starts_at, ends_at, place or agenda", field="body"
        )
    for key in ("starts_at", "ends_at"):
        if key in changes:
            changes[key] = _epoch(changes[key], key)
    if "title" in changes and not changes["title"].strip():
        raise ApiError(422, "invalid", "must not be empty", field="title")
    if "starts_at" in changes and changes["starts_at"] <= time.time():
        raise ApiError(422, "invalid", "is in the past", field="starts_at")
    if before["meeting"]["state"] == store.CANCELLED:
        raise ApiError(409, "cancelled", f"meeting {meeting_id} is cancelled", value=meeting_id)
    told = await _notify(lambda: service.change(meeting_id, **changes), "change")
    board = await _board(db, meeting_id, caller)
    return JSONResponse({"meeting": _detail_json(board), "told": told})


@router.post(
    "/v1/meetings/{id}/cancel",
    tags=["meetings"],
    summary="Cancel a meeting; notified attendees are told",
    response_model=CancelOut,
    responses=error_responses(401, 404, 422, 503),
)
async def cancel_meeting(meeting_id: MeetingId, caller: Caller, service: Service, db: Db) -> Response:
    """Cancelling twice is harmless: the second answers ``already_cancelled`` and tells nobody."""
    before = await _board(db, meeting_id, caller)
    already = before["meeting"]["state"] == store.CANCELLED
    told = await _notify(lambda: service.cancel(meeting_id), "cancellation")
    board = await _board(db, meeting_id, caller)
    return JSONResponse({"meeting": _detail_json(board), "told": told, "already_cancelled": already})


# ----- schedule reminders and memos ------------------------------------------------------------------------


def _may_read_address_book(app: App, field: str) -> None:
    """Naming people, departments or groups reads the address book (their names and numbers come back on
    the board): the app needs contacts:read for that, as on /v1/contacts. Numbers given as such need none."""
    try:
        app.require("contacts:read")
    except Forbidden as e:
        raise ApiError(
            403,
            "forbidden",
            f"{field} names the address book: {e.reason}",
            field="scope",
            value="contacts:read",
        ) from None


async def _person(db: Database, ref: int | str) -> tuple[str, str]:
    from masd.modules.contacts import store as book

    def read(conn: Any) -> Sequence[Any]:
        return book.resolve(conn, people=[ref])

    try:
        found = await db.read(read)
    except ContactError as e:
        raise ApiError(422, e.code, e.reason, field="person", value=echo(ref)) from None
    return found[0].mobile, found[0].name


@router.post(
    "/v1/schedule",
    tags=["schedule"],
    summary="Add a schedule reminder (日程提醒) or memo (备忘录)",
    status_code=201,
    response_model=ScheduleItemOut,
    responses=error_responses(400, 401, 403, 413, 422, 429, 503),
)
async def add_schedule_item(body: ScheduleIn, service: Service, db: Db, caller: Caller) -> Response:
    """A reminder is sent by SMS at ``remind_at`` by the meeting module's scheduler; a memo is kept, and
    sent too if it has a time. Its SMS counts against the app's limits: refused whole (403, 429) if the
    app may not send SMS, or if one due now finds no room in its rate or quota."""
    if (body.mobile is None) == (body.person is None):
        raise ApiError(422, "invalid", "give either mobile or person", field="mobile")
    remind_at = _epoch(body.remind_at, "remind_at") if body.remind_at is not None else None
    if remind_at is not None and remind_at < time.time() - 60:
        raise ApiError(422, "invalid", "is in the past", field="remind_at", value=utc_iso(remind_at))
    name = ""
    mobile = body.mobile
    if body.person is not None:
        _may_read_address_book(caller, "person")
        mobile, name = await _person(db, body.person)
    assert mobile is not None
    try:
        item_id = await service.add_schedule_item(
            kind=body.kind,
            mobile=mobile,
            title=body.title,
            text=body.text,
            remind_at=remind_at,
            name=name,
            app=caller,
        )
    except Rejected as e:
        raise _invalid(e) from None
    item = await db.read(functools.partial(store.get_schedule_item, item_id=item_id))
    assert item is not None
    return JSONResponse(_item_json(item), status_code=201)


@router.get(
    "/v1/schedule",
    tags=["schedule"],
    summary="Schedule reminders and memos, by time",
    response_model=ScheduleList,
    responses=error_responses(401, 422, 503),
)
async def list_schedule_items(
    caller: Caller,
    db: Db,
    kind: Annotated[Literal["reminder", "memo"] | None, Query(description="Only this kind")] = None,
    mobile: Annotated[Text | None, Query(max_length=32, description="Only this person's")] = None,
    pending: Annotated[
        bool | None, Query(description="true: only those still to send; false: only those sent")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 200,
) -> Response:
    number = None
    if mobile is not None:
        try:
            number = rcpt.normalize(mobile)
        except rcpt.InvalidRecipient as e:
            raise ApiError(422, "invalid", e.reason, field="mobile", value=echo(mobile)) from None

    def read(conn: Any) -> list[dict[str, Any]]:
        return store.list_schedule_items(
            conn, kind=kind, mobile=number, pending=pending, limit=limit, app_id=caller.id
        )

    items = await db.read(read)
    return JSONResponse({"items": [_item_json(it) for it in items]})
