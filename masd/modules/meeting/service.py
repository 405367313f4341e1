"""The meeting module's behaviour (会信通): creating meetings, sending notices, escalating to those who stay
silent, matching replies and keypresses to attendees, reminders, changes and cancellations.

It is a client of the core like any app: it sends through :meth:`Gateway.accept` as its own app (created
at start, owning the extension ``[meeting] extension``; each meeting's id follows it, so a reply to
service number + 9 + 42 is a reply about meeting 42), and it learns what happened from its app events
(receipts of its messages, replies routed to it) read after its own cursor. Every send has a client
reference derived from (meeting, attendee, kind, revision), so a crash between sending and recording
never sends twice: the repeated accept returns the message already stored.

    MeetingService.run
    └── every second, or when events arrive: notices due → second SMS → calls → reminders before the
        start → schedule reminders (日程提醒); then receipts and replies
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import secrets
import string
import time
from collections.abc import Sequence
from typing import Any

import structlog
import trio

from masd.config import Config
from masd.core.apps import App
from masd.core.gateway import Gateway, QueueFull, Refused, Rejected, SubmitRequest
from masd.modules.meeting import store
from masd.modules.meeting.grammar import Grammar, Intent, Kind

__all__ = ["MODES", "MeetingService", "MeetingSpec", "render"]

log = structlog.get_logger("masd.meeting")

MODES = ("sms", "sms+voice", "voice")
CURSOR = "meeting"
PLACEHOLDERS = ("name", "title", "time", "end", "place", "code", "reply", "deadline", "agenda", "organiser")

DEFAULT_TEMPLATE = "{name}您好：定于{time}在{place}召开{title}。{reply}"
REPLY_HINT = "请回复：1参加，2不参加，3+原因请假（会议编号#{code}）"
SECOND_SMS = "{name}您好：您尚未回复{time}在{place}召开的{title}的通知。" + REPLY_HINT
CALL_TEXT = "{name}您好，这里是会议通知。定于{time}，在{place}，召开{title}。参加请按1，不参加请按2。"
REMINDER = "{name}您好：{title}将于{time}在{place}召开，请准时参加。到场后回复“签到”即可签到。"
CHANGE = "【会议变更】{name}您好：{title}改为{time}在{place}召开。" + REPLY_HINT
CANCEL = "【会议取消】{name}您好：原定{time}在{place}召开的{title}已取消。"
HELP = "未能识别您的回复。" + REPLY_HINT + "；会议当天回复“签到”签到。"
ANSWER_NAMES = {Kind.ATTEND: "参加", Kind.DECLINE: "不参加", Kind.LEAVE: "请假"}


class _Safe(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


# Times a meeting may have: from now until this many years ahead (a typo like year 9999 is refused, and
# every time can be rendered).
MAX_YEARS_AHEAD = 10


def local_time(t: float) -> str:
    try:
        return dt.datetime.fromtimestamp(t).strftime("%m月%d日%H:%M").lstrip("0")
    except (ValueError, OverflowError, OSError):
        return "?"


def check_time(field: str, t: float, *, now: float) -> None:
    if t <= now:
        raise Rejected(field, "is in the past")
    if t >= now + MAX_YEARS_AHEAD * 366 * 86400:
        raise Rejected(field, f"is more than {MAX_YEARS_AHEAD} years ahead")


def render(template: str, meeting: dict[str, Any], attendee: dict[str, Any] | None = None) -> str:
    """Fill a notice template; unknown placeholders were refused when the meeting was made."""
    values = {
        "name": (attendee or {}).get("name") or "",
        "title": meeting["title"],
        "time": local_time(meeting["starts_at"]),
        "end": local_time(meeting["ends_at"]),
        "place": meeting.get("place") or "",
        "code": str(meeting["id"]),
        "deadline": local_time(meeting["reply_deadline"]) if meeting.get("reply_deadline") else "",
        "agenda": meeting.get("agenda") or "",
        "organiser": meeting.get("organiser") or "",
    }
    values["reply"] = REPLY_HINT.format_map(_Safe(values))
    return template.format_map(_Safe(values))


def check_template(template: str) -> None:
    """Only plain placeholders from :data:`PLACEHOLDERS` (no format specs: ``{name:>9999999}`` would
    render megabytes); a lone brace is written ``{{`` or ``}}``."""
    known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    if len(template) > 2000:
        raise Rejected("template", f"is {len(template)} characters; the maximum is 2000")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise Rejected(
            "template", f"is not a valid template ({e}); write a literal brace as {{{{ or }}}}"
        ) from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            raise Rejected("template", f"unknown placeholder {{{field}}}; use {known}")
        if spec or conversion:
            raise Rejected("template", f"placeholder {{{field}}} takes no format; write it as {{{field}}}")


@dataclasses.dataclass
class MeetingSpec:
    """What an organiser gives. Attendees come from the address book (people by id or mobile,
    departments with their sub-departments, groups) and bare numbers; duplicates are merged."""

    title: str
    starts_at: float
    ends_at: float | None = None
    place: str = ""
    agenda: str = ""
    organiser: str = ""
    attachments: Sequence[str] = ()
    template: str | None = None
    mode: str = "sms"
    send_at: float | None = None  # None: now
    reply_deadline: float | None = None  # None: the start
    second_sms_after: float | None = -1.0  # seconds; -1: the configured default; None: no second SMS
    call_after: float | None = -1.0
    remind_before: float | None = -1.0
    checkin_code: str | None = None  # None: four random digits
    people: Sequence[str | int] = ()
    departments: Sequence[str] = ()
    groups: Sequence[str] = ()
    numbers: Sequence[str] = ()
    attendees: Sequence[dict[str, Any]] = ()  # already resolved: name, mobile, department, person_id


class MeetingService:
    def __init__(self, gateway: Gateway, cfg: Config) -> None:
        self.gw = gateway
        self.cfg = cfg
        self.mc = cfg.meeting
        kinds = {"attend": Kind.ATTEND, "decline": Kind.DECLINE, "leave": Kind.LEAVE, "checkin": Kind.CHECKIN}
        self.grammar = Grammar({kinds[k]: v for k, v in self.mc.words.items()} if self.mc.words else None)
        self.app: App | None = None

    # ----- the module's app -------------------------------------------------------------------------

    async def ensure_app(self) -> App:
        """The app the module sends as, made on first start with the configured extension."""
        self.app = await self.gw.ensure_app(self.mc.app, extension=self.mc.extension)
        return self.app

    # ----- organiser's actions ----------------------------------------------------------------------

    async def create(self, spec: MeetingSpec, *, app_id: int | None = None) -> int:
        """Validate and store a meeting with its attendees; the scheduler sends at ``send_at``."""
        now = time.time()
        title = spec.title.strip()
        if not title:
            raise Rejected("title", "must not be empty")
        ends = spec.ends_at if spec.ends_at is not None else spec.starts_at + 3600
        check_time("starts_at", spec.starts_at, now=now)
        if ends <= spec.starts_at:
            raise Rejected("ends_at", "must be after the start")
        check_time("ends_at", ends, now=now)
        if spec.mode not in MODES:
            raise Rejected("mode", f"must be one of {', '.join(MODES)}", value=spec.mode)
        send_at = spec.send_at if spec.send_at is not None else now
        if send_at >= spec.starts_at:
            raise Rejected("send_at", "must be before the meeting starts")
        deadline = spec.reply_deadline if spec.reply_deadline is not None else spec.starts_at
        template = spec.template or DEFAULT_TEMPLATE
        check_template(template)
        code = spec.checkin_code if spec.checkin_code is not None else f"{secrets.randbelow(9000) + 1000}"
        if code and (not code.isalnum() or len(code) > 12):
            raise Rejected("checkin_code", "must be up to 12 letters or digits", value=code)

        def minutes(v: float | None, default: float | None, field: str) -> int | None:
            if v is not None and v == -1.0:
                return None if default is None else int(default * 60)
            if v is not None and v < 0:
                raise Rejected(field, "must be zero or more seconds", value=v)
            return None if v is None else int(v)

        row = {
            "title": title[:200],
            "starts_at": spec.starts_at,
            "ends_at": ends,
            "place": spec.place[:200],
            "agenda": spec.agenda,
            "organiser": spec.organiser[:100],
            "attachments": json.dumps(list(spec.attachments), ensure_ascii=False),
            "template": template,
            "mode": spec.mode,
            "send_at": send_at,
            "reply_deadline": deadline,
            "second_sms_after": minutes(
                spec.second_sms_after, self.mc.second_sms_after_minutes, "second_sms_after"
            ),
            "call_after": minutes(spec.call_after, self.mc.call_after_minutes, "call_after"),
            "remind_before": minutes(spec.remind_before, self.mc.remind_before_minutes, "remind_before"),
            "checkin_code": code,
            "app_id": app_id,
        }

        def write(conn: Any) -> int:
            people = resolve_attendees(conn, spec)
            if not people:
                raise Rejected("attendees", "no attendees: give people, departments, groups or numbers")
            return store.insert_meeting(conn, row, people, now=now)

        mid = await self.gw.db.write(write)
        log.info("meeting created", meeting_id=mid, title=title, mode=spec.mode)
        self.gw.signal_events()  # wake the scheduler: the notice may be due now
        return mid

    async def change(self, meeting_id: int, **changes: Any) -> int:
        """Change time, place, title or agenda; everyone already notified gets a change notice.
        Returns how many will be told."""
        allowed = {"title", "starts_at", "ends_at", "place", "agenda"}
        bad = set(changes) - allowed
        if bad:
            raise Rejected(sorted(bad)[0], f"cannot be changed; change {', '.join(sorted(allowed))}")
        now = time.time()

        vals = {k: v for k, v in changes.items() if v is not None}
        if "title" in vals:
            vals["title"] = str(vals["title"]).strip()[:200]
            if not vals["title"]:
                raise Rejected("title", "must not be empty")
        if "place" in vals:
            vals["place"] = str(vals["place"])[:200]

        def write(conn: Any) -> int:
            meeting = store.get_meeting(conn, meeting_id)
            if meeting is None:
                raise Rejected("meeting", "no such meeting", value=meeting_id)
            if meeting["state"] == store.CANCELLED:
                raise Rejected("meeting", "is cancelled", value=meeting_id)
            starts = vals.get("starts_at", meeting["starts_at"])
            ends = vals.get("ends_at", meeting["ends_at"])
            if "starts_at" in vals and "ends_at" not in vals:
                ends = starts + (meeting["ends_at"] - meeting["starts_at"])
                vals["ends_at"] = ends
            if "starts_at" in vals:
                check_time("starts_at", starts, now=now)
                if starts <= meeting["send_at"] and meeting["state"] == store.SCHEDULED:
                    raise Rejected("starts_at", "must be after the notice's send time", value=starts)
            if ends <= starts:
                raise Rejected("ends_at", "must be after the start")
            conn.execute(
                store.m.update()
                .where(store.m.c.id == meeting_id)
                .values(**vals, revision=store.m.c.revision + 1, updated_at=now)
            )
            # A changed time needs a new reminder.
            conn.execute(store.a.update().where(store.a.c.meeting_id == meeting_id).values(reminded_at=None))
            store.log(conn, meeting_id, None, "changed", json.dumps(vals, ensure_ascii=False), now=now)
            return sum(1 for x in store.attendees_of(conn, meeting_id) if x["notified_at"] is not None)

        told: int = await self.gw.db.write(write)
        self.gw.signal_events()  # the scheduler sends the change notices (and retries them)
        return told

    async def cancel(self, meeting_id: int) -> int:
        """Cancel a meeting; everyone already notified is told. Returns how many."""
        now = time.time()

        def write(conn: Any) -> int:
            meeting = store.get_meeting(conn, meeting_id)
            if meeting is None:
                raise Rejected("meeting", "no such meeting", value=meeting_id)
            if meeting["state"] == store.CANCELLED:
                return 0
            conn.execute(
                store.m.update()
                .where(store.m.c.id == meeting_id)
                .values(state=store.CANCELLED, cancelled_at=now, updated_at=now)
            )
            store.log(conn, meeting_id, None, "cancelled", "", now=now)
            return sum(1 for x in store.attendees_of(conn, meeting_id) if x["notified_at"] is not None)

        told: int = await self.gw.db.write(write)
        self.gw.signal_events()  # the scheduler tells everyone notified (and retries)
        return told

    async def add_schedule_item(
        self,
        *,
        kind: str,
        mobile: str,
        title: str,
        text: str = "",
        remind_at: float | None = None,
        name: str = "",
        app_id: int | None = None,
    ) -> int:
        """A schedule reminder (sent by SMS at ``remind_at``) or a memo (kept; sent too if it has a time)."""
        from masd.core import recipients as rcpt

        if kind not in ("reminder", "memo"):
            raise Rejected("kind", "must be reminder or memo", value=kind)
        if not title.strip():
            raise Rejected("title", "must not be empty")
        try:
            number = rcpt.normalize(mobile)
        except rcpt.InvalidRecipient as e:
            raise Rejected("mobile", e.reason, value=mobile) from None
        if kind == "reminder" and remind_at is None:
            raise Rejected("remind_at", "a reminder needs a time")
        item = {
            "kind": kind,
            "app_id": app_id,
            "mobile": number,
            "name": name,
            "title": title.strip(),
            "text": text,
            "remind_at": remind_at,
        }
        now = time.time()
        iid = await self.gw.db.write(lambda c: store.add_schedule_item(c, item, now=now))
        self.gw.signal_events()
        return iid

    # ----- the loop ---------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        app = await self.ensure_app()
        log.info("meeting module ready", app=app.name, extension=app.extension)
        task_status.started()
        # The schedule (notices, escalation, reminders) is looked at once a second; what came back is
        # read whenever an event may have been written. Events are signalled for every app's receipts,
        # so under load re-running the schedule's queries on each would cost far more than the events.
        next_tick = 0.0
        while True:
            woken = self.gw.events_changed()
            try:
                if trio.current_time() >= next_tick:
                    next_tick = trio.current_time() + 1.0
                    await self.tick()
                else:
                    await self.consume_events()
            except (QueueFull, Refused) as e:
                log.warning("meeting module could not send; will try again", error=str(e))
            except Exception:
                log.exception("meeting module step failed; will try again")
            with trio.move_on_at(next_tick):
                await woken.wait()

    async def tick(self, now: float | None = None) -> None:
        """One pass: everything due is sent, everything that came back is applied. A step that fails
        (the queue is full, one meeting's data is bad) does not keep the others from running."""
        now = time.time() if now is None else now
        for step in (self._notices, self._changes, self._escalate, self._schedule_items):
            try:
                await step(now)
            except (QueueFull, Refused) as e:
                log.warning("meeting module could not send; will try again", step=step.__name__, error=str(e))
            except Exception:
                log.exception("meeting module step failed; will try again", step=step.__name__)
        await self.consume_events()

    # ----- sending ----------------------------------------------------------------------------------

    def _sign(self, text: str) -> str:
        return text + self.mc.signature if self.mc.signature else text

    async def _accept(self, reqs: list[SubmitRequest]) -> list[int | None]:
        """Accept all; if one is refused as invalid, accept the others one by one. Returns message ids
        (None for a refused one, which is logged)."""
        assert self.app is not None
        if not reqs:
            return []
        try:
            return [
                a.message_id
                for a in await self.gw.accept(reqs, interface="meeting", app=self.app, notify=True)
            ]
        except Rejected:
            pass
        out: list[int | None] = []
        for r in reqs:
            try:
                out.append((await self.gw.send(r, interface="meeting", app=self.app, notify=True)).message_id)
            except Rejected as e:
                log.warning("meeting message refused", recipient=r.recipients, error=str(e))
                out.append(None)
        return out

    def _request(
        self, meeting: dict[str, Any], attendee: dict[str, Any], text: str, what: str, *, voice: bool = False
    ) -> SubmitRequest:
        validity = int(max(300.0, min(self.cfg.queue.validity_seconds, meeting["starts_at"] - time.time())))
        return SubmitRequest(
            text=text if voice else self._sign(text),
            recipients=[attendee["mobile"]],
            client_ref=f"meeting:{meeting['id']}:{attendee['id']}:{what}",
            extension=str(meeting["id"]),
            kind="voice" if voice else "sms",
            validity_seconds=validity,
        )

    async def _notices(self, now: float) -> None:
        for meeting in await self.gw.db.read(lambda c: store.due_notices(c, now=now)):
            mid = meeting["id"]
            people = await self.gw.db.read(lambda c: store.attendees_of(c, mid))
            pending = [p for p in people if p["notified_at"] is None]
            voice = meeting["mode"] == "voice"
            template = CALL_TEXT if voice else meeting["template"]
            reqs = [
                self._request(
                    meeting, p, render(template, meeting, p), f"notice{meeting['revision']}", voice=voice
                )
                for p in pending
            ]
            ids = await self._accept(reqs)

            def record(conn: Any) -> None:
                for p, message_id in zip(pending, ids, strict=True):
                    vals: dict[str, Any] = {
                        "notice_message_id": message_id,
                        "notified_at": now,
                        "notice_revision": meeting["revision"],
                    }
                    if voice:
                        vals |= {"call_message_id": message_id, "called_at": now}
                    if message_id is None:
                        vals["notice_state"] = "failed"
                    store.update_attendee(conn, p["id"], now=now, **vals)
                conn.execute(
                    store.m.update()
                    .where(store.m.c.id == mid, store.m.c.state == store.SCHEDULED)
                    .values(state=store.NOTIFIED, notified_at=now, updated_at=now)
                )
                store.log(
                    conn, mid, None, "notified", f"{len(pending)} attendees by {meeting['mode']}", now=now
                )

            await self.gw.db.write(record)
            log.info("meeting notices sent", meeting_id=mid, attendees=len(pending), mode=meeting["mode"])

    async def _changes(self, now: float) -> None:
        """Change and cancellation notices to everyone notified who has not been told yet."""
        db = self.gw.db
        for find, template, what in (
            (store.due_change_notices, CHANGE, "change"),
            (store.due_cancel_notices, CANCEL, "cancel"),
        ):
            rows: list[dict[str, Any]] = await db.read(functools.partial(find, now=now))
            if not rows:
                continue
            meetings: dict[int, dict[str, Any]] = {}
            for r in rows:
                if r["meeting_id"] not in meetings:
                    mt = await db.read(functools.partial(store.get_meeting, meeting_id=r["meeting_id"]))
                    assert mt is not None
                    meetings[r["meeting_id"]] = mt
            reqs = []
            for r in rows:
                mt = meetings[r["meeting_id"]]
                tag = f"change{mt['revision']}" if what == "change" else "cancel"
                reqs.append(self._request(mt, r, render(template, mt, r), tag))
            ids = await self._accept(reqs)

            def record(
                conn: Any, rows: list[dict[str, Any]] = rows, what: str = what, ids: list[int | None] = ids
            ) -> None:
                for r, message_id in zip(rows, ids, strict=True):
                    if what == "change":
                        vals: dict[str, Any] = {"notice_revision": meetings[r["meeting_id"]]["revision"]}
                    else:
                        vals = {"cancel_sent_at": now}
                    store.update_attendee(conn, r["id"], now=now, **vals)
                    store.log(conn, r["meeting_id"], r["id"], f"{what} notice", str(message_id), now=now)

            await db.write(record)
            log.info("meeting notices", kind=what, attendees=len(rows))

    async def _escalate(self, now: float) -> None:
        db = self.gw.db
        for kind, find, template, voice, column in (
            ("second_sms", store.due_second_sms, SECOND_SMS, False, "second_sms_at"),
            ("call", store.due_calls, CALL_TEXT, True, "called_at"),
            ("reminder", store.due_reminders, REMINDER, False, "reminded_at"),
        ):
            rows: list[dict[str, Any]] = await db.read(functools.partial(find, now=now))
            if not rows:
                continue
            meetings: dict[int, dict[str, Any]] = {}
            for r in rows:
                if r["meeting_id"] not in meetings:
                    mt = await db.read(functools.partial(store.get_meeting, meeting_id=r["meeting_id"]))
                    assert mt is not None
                    meetings[r["meeting_id"]] = mt
            reqs = [
                self._request(
                    meetings[r["meeting_id"]],
                    r,
                    render(template, meetings[r["meeting_id"]], r),
                    f"{kind}{meetings[r['meeting_id']]['revision']}",
                    voice=voice,
                )
                for r in rows
            ]
            ids = await self._accept(reqs)

            def record(
                conn: Any,
                rows: list[dict[str, Any]] = rows,
                column: str = column,
                kind: str = kind,
                ids: list[int | None] = ids,
            ) -> None:
                for r, message_id in zip(rows, ids, strict=True):
                    vals: dict[str, Any] = {column: now}
                    if kind == "call":
                        vals["call_message_id"] = message_id
                        if message_id is None:
                            vals["call_outcome"] = "failed"
                    store.update_attendee(conn, r["id"], now=now, **vals)
                    store.log(conn, r["meeting_id"], r["id"], kind, r["mobile"], now=now)

            await db.write(record)
            log.info("meeting escalation", kind=kind, attendees=len(rows))

    async def _schedule_items(self, now: float) -> None:
        items = await self.gw.db.read(lambda c: store.due_schedule_items(c, now=now))
        if not items:
            return
        assert self.app is not None
        reqs = [
            SubmitRequest(
                text=self._sign(
                    f"【{'日程提醒' if it['kind'] == 'reminder' else '备忘'}】{it['title']}"
                    + (f"：{it['text']}" if it["text"] else "")
                ),
                recipients=[it["mobile"]],
                client_ref=f"schedule:{it['id']}",
            )
            for it in items
        ]
        ids = await self._accept(reqs)

        def record(conn: Any) -> None:
            for it, message_id in zip(items, ids, strict=True):
                conn.execute(
                    store.si.update()
                    .where(store.si.c.id == it["id"])
                    .values(sent_at=now, message_id=message_id)
                )

        await self.gw.db.write(record)

    # ----- what comes back --------------------------------------------------------------------------

    async def consume_events(self) -> int:
        """Apply receipts and replies after the module's cursor; returns how many were read."""
        assert self.app is not None
        app_id = self.app.id
        after = await self.gw.get_cursor(app_id, CURSOR)
        n = 0
        while True:
            events = await self.gw.read_events(app_id, after=after, limit=200)
            if not events:
                return n
            for ev in events:
                if ev["type"] == "receipt":
                    await self._on_receipt(ev)
                else:
                    await self._on_reply(ev)
                after = int(ev["event"])
                await self.gw.set_cursor(app_id, CURSOR, after)
                n += 1

    async def _on_receipt(self, ev: dict[str, Any]) -> None:
        now = time.time()
        found = await self.gw.db.read(lambda c: store.attendee_by_message(c, int(ev["message_id"])))
        if found is None:
            return
        attendee, _ = found
        state = ev["state"]
        vals: dict[str, Any] = {}
        if attendee["notice_message_id"] == ev["message_id"]:
            vals["notice_state"] = state
            if state == "delivered":
                vals["delivered_at"] = ev.get("done_at") or now
        if attendee["call_message_id"] == ev["message_id"]:
            vals["call_outcome"] = call_outcome(state, ev.get("error_code"))
        if vals:
            await self.gw.db.write(lambda c: store.update_attendee(c, attendee["id"], now=now, **vals))

    async def _on_reply(self, ev: dict[str, Any]) -> None:
        now = time.time()
        sender, text, ext = ev["sender"], ev["text"], ev.get("extension") or ""
        channel = self.cfg.channels.get(ev.get("channel") or "")
        via = "voice" if channel is not None and channel.kind == "voice" else "sms"
        db = self.gw.db
        meeting: dict[str, Any] | None = None
        if ext.isdigit():
            meeting = await db.read(lambda c: store.get_meeting(c, int(ext)))
        if meeting is not None and meeting["state"] != store.SCHEDULED:
            mid = int(meeting["id"])
            attendee = await db.read(lambda c: store.attendee_in(c, mid, sender))
            if attendee is None:
                await self._stranger(ev, f"not invited to meeting {meeting['id']}")
                return
            intent = self.grammar.parse(text, checkin_codes=[meeting["checkin_code"]])
            await self._apply(meeting, attendee, intent, ev, via, now)
            return
        # No usable extension (the carrier dropped it): the sender's open meetings decide.
        open_ = await db.read(lambda c: store.open_meetings_of(c, sender, now=now))
        if not open_:
            await self._stranger(ev, "no open meeting for this number")
            return
        intent = self.grammar.parse(
            text, checkin_codes=[x["checkin_code"] for x in open_ if x["checkin_code"]]
        )
        chosen = [x for x in open_ if intent.meeting_code == x["id"]]
        if not chosen and intent.kind is Kind.CHECKIN and len(open_) > 1:
            chosen = [
                x
                for x in open_
                if x["checkin_code"]
                and self.grammar.parse(text, checkin_codes=[x["checkin_code"]]).kind is Kind.CHECKIN
                and _checkin_open(x, now)
            ]
        if not chosen and len(open_) == 1:
            chosen = open_
        if len(chosen) != 1:
            await self._ask_back(sender, open_, ev, now)
            return
        meeting = chosen[0]
        attendee = await db.read(lambda c: store.attendee_in(c, meeting["id"], sender))
        assert attendee is not None
        await self._apply(meeting, attendee, intent, ev, via, now)

    async def _apply(
        self,
        meeting: dict[str, Any],
        attendee: dict[str, Any],
        intent: Intent,
        ev: dict[str, Any],
        via: str,
        now: float,
    ) -> None:
        db = self.gw.db
        mid, aid = meeting["id"], attendee["id"]
        detail = f"{intent.kind}: {ev['text']}"
        if meeting["state"] == store.CANCELLED:
            await db.write(
                lambda c: store.log(c, mid, aid, "reply", detail + " (cancelled meeting)", now=now)
            )
            return
        if via == "voice" and intent.kind not in (Kind.ATTEND, Kind.DECLINE):
            # A keypress other than 1 or 2: nothing to record, and no SMS answer to a call.
            await db.write(lambda c: store.log(c, mid, aid, "keypress", ev["text"], now=now))
            return
        answer: str | None = None
        vals: dict[str, Any] = {}
        if intent.kind in (Kind.ATTEND, Kind.DECLINE, Kind.LEAVE):
            deadline = meeting["reply_deadline"] or meeting["starts_at"]
            vals = {
                "response": intent.kind.value,
                "reason": intent.text[:500] if intent.kind is Kind.LEAVE else "",
                "responded_at": now,
                "response_late": 1 if now > deadline else 0,
                "response_via": via,
            }
            if intent.kind is not Kind.LEAVE and intent.text:
                vals["comment"] = intent.text[:500]
            answer = ANSWER_NAMES[intent.kind] + (
                f"（{intent.text}）" if intent.kind is Kind.LEAVE and intent.text else ""
            )
        elif intent.kind is Kind.CHECKIN:
            if _checkin_open(meeting, now):
                vals = {"checked_in_at": now}
                answer = "签到"
            else:
                vals = {"comment": ev["text"][:500]}
                await self._tell(meeting, attendee, "签到仅在会议当天有效。" + REPLY_HINT, f"r{ev['event']}")
        else:
            vals = {"comment": intent.text[:500]}
            await self._tell(meeting, attendee, HELP, f"r{ev['event']}")

        def write(conn: Any) -> None:
            store.update_attendee(conn, aid, now=now, **vals)
            store.log(conn, mid, aid, "reply" if via == "sms" else "keypress", detail, now=now)

        await db.write(write)
        if answer and self.mc.confirm_replies and via == "sms":
            late = "（已过回复截止时间）" if vals.get("response_late") else ""
            await self._tell(
                meeting, attendee, f"已登记：{answer}「{meeting['title']}」{late}。", f"r{ev['event']}"
            )

    async def _tell(self, meeting: dict[str, Any], attendee: dict[str, Any], text: str, what: str) -> None:
        await self._accept([self._request(meeting, attendee, render(text, meeting, attendee), what)])

    async def _ask_back(
        self, sender: str, open_: list[dict[str, Any]], ev: dict[str, Any], now: float
    ) -> None:
        listing = "；".join(f"#{x['id']} {x['title']}（{local_time(x['starts_at'])}）" for x in open_[:5])
        text = f"您有{len(open_)}个会议待回复：{listing}。请在回复中注明会议编号，如“1 #{open_[0]['id']}”。"
        assert self.app is not None
        await self._accept(
            [SubmitRequest(self._sign(text), [sender], client_ref=f"meeting:ask:{ev['event']}")]
        )
        await self.gw.db.write(
            lambda c: store.log(c, None, None, "ask-back", f"{sender}: {ev['text']}", now=now)
        )

    async def _stranger(self, ev: dict[str, Any], why: str) -> None:
        assert self.app is not None
        await self.gw.disown_reply(int(ev["reply_id"]), self.app.id)
        now = time.time()
        await self.gw.db.write(
            lambda c: store.log(c, None, None, "unmatched", f"{ev['sender']}: {ev['text']} ({why})", now=now)
        )
        log.info("meeting reply from a stranger", sender=ev["sender"], why=why, reply_id=ev["reply_id"])


def call_outcome(state: str, error_code: int | None) -> str:
    """A call delivery's final state as the board shows it."""
    if state == "delivered":
        return "answered"
    # Voice drivers report SIP final response codes (docs/voice.md).
    by_code = {408: "no-answer", 480: "no-answer", 486: "busy", 600: "busy", 603: "declined"}
    if error_code in by_code:
        return by_code[error_code]
    if state == "expired":
        return "no-answer"
    return "failed" if error_code is not None or state != "undelivered" else "no-answer"


CHECKIN_OPENS = 12 * 3600  # check-in ("on the day") is open from 12 hours before the start …
CHECKIN_CLOSES = 3600  # … until an hour after the end


def _checkin_open(meeting: dict[str, Any], now: float) -> bool:
    return meeting["starts_at"] - CHECKIN_OPENS <= now <= meeting["ends_at"] + CHECKIN_CLOSES


def resolve_attendees(conn: Any, spec: MeetingSpec) -> list[dict[str, Any]]:
    """Turn the organiser's choice into attendees (person_id, name, mobile, department) through the
    address book, merged by mobile; a bare number of someone in the book becomes that person."""
    from masd.core import recipients as rcpt
    from masd.modules.contacts import store as contacts
    from masd.modules.contacts.model import ContactError

    given: dict[str, dict[str, Any]] = {}
    for i, x in enumerate(spec.attendees):
        try:
            given.setdefault(rcpt.normalize(str(x.get("mobile", ""))), x)
        except rcpt.InvalidRecipient as e:
            raise Rejected("attendees", e.reason, index=i, value=x.get("mobile")) from None
    out: dict[str, dict[str, Any]] = {}
    try:
        found = contacts.resolve(
            conn,
            people=list(spec.people),
            departments=list(spec.departments),
            groups=list(spec.groups),
            numbers=[*spec.numbers, *given],
        )
    except ContactError as e:
        raise Rejected(e.field, e.reason, value=e.value) from None
    for p in found:
        row = dataclasses.asdict(p)
        extra = given.get(row["mobile"])
        if extra is not None and row["person_id"] is None:
            # A number given with a name (e.g. an outside guest) keeps that name.
            row["name"] = extra.get("name") or ""
            row["department"] = extra.get("department") or ""
        out.setdefault(row["mobile"], row)
    return list(out.values())
