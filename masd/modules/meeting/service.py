"""The meeting module's behaviour (会信通): creating meetings, sending notices, escalating to those who stay
silent, matching replies and keypresses to attendees, reminders, changes and cancellations.

It is a client of the core like any app: it sends through :meth:`Gateway.accept` as its own app (created
at start, owning the extension ``[meeting] extension``; each meeting's id follows it, so a reply to
service number + 9 + 42 is a reply about meeting 42), and it learns what happened from its app events
(receipts of its messages, replies routed to it) read after its own cursor. Every send has a client
reference derived from (meeting, attendee, kind, revision), so a crash between sending and recording
never sends twice: the repeated accept returns the message already stored.

A meeting or schedule item made by an app (over HTTP) is sent *on behalf of* that app: the core checks
and charges that app's channel kinds, rate and daily quota as if it had sent the messages itself, while
they stay the module's messages, so receipts and replies still come here. What the app's rate has no
room for now is sent at a later pass; what its quota or kinds refuse is recorded on the attendee's row,
with the reason, and not tried again. The request that creates a meeting or reminder due now sends it
itself, and is refused — with nothing of it kept — when the app's limits refuse the first messages.

A reply is read by the meeting grammar, sure or unsure. A sure answer is recorded on the attendee's row
(a later one replaces it), kept in their answers (``meeting_answers``) and confirmed with how to correct
it; an unsure one records nothing: it is kept as the reply awaiting an answer and asked back with the
choices, at most ``[meeting] ask_back_limit`` times per attendee and meeting.

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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
import trio

from masd.config import Config
from masd.core import reading
from masd.core.apps import App, Forbidden, QuotaExceeded, RateLimited, burst_of
from masd.core.gateway import Gateway, QueueFull, Refused, Rejected, SubmitRequest
from masd.modules.meeting import store
from masd.modules.meeting.grammar import Grammar, Intent, Kind
from masd.store import apps as app_store
from masd_adapters.voice import call_outcome

__all__ = [
    "MODES",
    "MeetingService",
    "MeetingSpec",
    "Outcome",
    "batches",
    "confirmation",
    "kinds_of",
    "render",
    "waits",
]

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
# What is said back to a reply. A reply read for sure is recorded and confirmed with how to correct it;
# one that is not is recorded as nothing and asked back with the exact choices.
CHOICES = "请回复1参加、2不参加、3请假+原因"
ASK_BACK = "未能确认您对「{title}」的回复，尚未登记。" + CHOICES + "（会议编号#{code}）"
ASK_BACK_CHECKIN = "；到场后回复“签到”签到"  # added on the day of the meeting
CHECKIN_CLOSED = "签到仅在会议当天有效，尚未登记。" + CHOICES + "（会议编号#{code}）"
ASK_WHICH = "您有{n}个会议待回复：{listing}。" + CHOICES + "，并注明会议编号，如“{example} #{first}”。"
ANSWER_NAMES = {Kind.ATTEND: "参加", Kind.DECLINE: "不参加", Kind.LEAVE: "请假", Kind.CHECKIN: "签到"}
ANSWER_DIGITS = {Kind.ATTEND: "1", Kind.DECLINE: "2", Kind.LEAVE: "3"}
CORRECTIONS = {
    Kind.ATTEND: "如有误请回复2不参加、3请假+原因",
    Kind.DECLINE: "如有误请回复1参加、3请假+原因",
    Kind.LEAVE: "如有误请回复1参加、2不参加",
}
# A reason or note repeated in a confirmation is cut to this many characters (the board keeps it whole).
QUOTED = 40


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


# ----- sending for the app that asked: pure decisions -----------------------------------------------------

# Seconds an app's limits are trusted without reading them again, as the HTTP API trusts a key: a change
# with 'masd apps set' (or a revoke) reaches the meetings' sends this long after.
APP_TTL = 5.0

_MODE_KINDS = {"sms": ("sms",), "sms+voice": ("sms", "voice"), "voice": ("voice",)}


def kinds_of(mode: str) -> tuple[str, ...]:
    """The channel kinds a meeting in this mode sends, each of which its app must be allowed."""
    return _MODE_KINDS[mode]


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message the module tried to send: stored (``message_id``), refused for good
    (``refused``: the row records why), or not now (``later``: the next pass tries again)."""

    message_id: int | None = None
    refused: Rejected | Refused | None = None
    later: Refused | QueueFull | None = None

    @property
    def settled(self) -> bool:
        """Stored or refused: the attendee's row is written either way."""
        return self.later is None

    def limit(self) -> str:
        """The limit that refused it as the log names it: channel, quota, rate, app; invalid."""
        e = self.refused or self.later
        if isinstance(e, Refused):
            return e.field.rsplit(".", 1)[-1]
        return "queue" if isinstance(e, QueueFull) else "invalid"

    def reason(self) -> str:
        e = self.refused or self.later
        if isinstance(e, Rejected):
            return f"{e.field.rsplit('.', 1)[-1]}: {e.reason}"
        return e.reason if isinstance(e, Refused) else str(e)


def waits(e: Exception) -> bool:
    """Whether a send refused with ``e`` is tried again at a later pass — the app's rate has no room
    now, or the queue is full — rather than recorded as refused: the app's quota is used up, it may not
    use the kind, it was revoked, or the request is one the rate never admits."""
    if isinstance(e, QueueFull):
        return True
    return isinstance(e, RateLimited) and e.retry_after is not None


def batches(reqs: Sequence[SubmitRequest], rate: float | None) -> list[list[int]]:
    """Positions of ``reqs`` grouped into batches an app with this rate may send at once — its burst,
    one second's worth of recipients — in order; without a rate, one batch. A request larger than the
    burst is a batch of its own (the core refuses it)."""
    if rate is None:
        return [list(range(len(reqs)))] if reqs else []
    room = int(burst_of(rate))
    out: list[list[int]] = []
    size = 0
    for i, r in enumerate(reqs):
        n = len(r.recipients)
        if out and size + n <= room:
            out[-1].append(i)
            size += n
        else:
            out.append([i])
            size = n
    return out


class MeetingService:
    def __init__(self, gateway: Gateway, cfg: Config) -> None:
        self.gw = gateway
        self.cfg = cfg
        self.mc = cfg.meeting
        kinds = {"attend": Kind.ATTEND, "decline": Kind.DECLINE, "leave": Kind.LEAVE, "checkin": Kind.CHECKIN}
        self.grammar = Grammar({kinds[k]: v for k, v in self.mc.words.items()} if self.mc.words else None)
        self.app: App | None = None
        # The apps meetings were made by, as last read: id → (until when, the app or None if revoked,
        # its name).
        self._makers: dict[int, tuple[float, App | None, str]] = {}
        # One sender of due work at a time: the scheduler's passes and the requests that create a
        # meeting or reminder due now. A request's meeting is then never seen by a pass before the
        # request has sent its notices (or been refused and taken it back).
        self._sending = trio.Lock()

    # ----- the module's app -------------------------------------------------------------------------

    async def ensure_app(self) -> App:
        """The app the module sends as, made on first start with the configured extension."""
        self.app = await self.gw.ensure_app(self.mc.app, extension=self.mc.extension)
        return self.app

    # ----- organiser's actions ----------------------------------------------------------------------

    async def create(self, spec: MeetingSpec, *, app: App | None = None) -> int:
        """Validate and store a meeting with its attendees; the scheduler sends at ``send_at``.

        ``app``: the app asking (over HTTP), whose limits every send for the meeting is charged to. It
        must be allowed the kinds of the meeting's mode (:class:`Forbidden` otherwise). A notice due now
        is sent before this returns; if the app's limits refuse it (:class:`Refused`, or
        :class:`QueueFull`), that is raised and the meeting is taken back: nothing of it is kept."""
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
            "app_id": app.id if app is not None else None,
        }
        if app is not None:
            for kind in kinds_of(spec.mode):
                app.check_kind(kind)  # before anything is stored, as a direct send would be refused

        def write(conn: Any) -> int:
            people = resolve_attendees(conn, spec)
            if not people:
                raise Rejected("attendees", "no attendees: give people, departments, groups or numbers")
            return store.insert_meeting(conn, row, people, now=now, by=app.name if app else None)

        if app is None or send_at > now:
            mid = await self.gw.db.write(write)
        else:
            async with self._sending:
                mid = await self.gw.db.write(write)
                await self._take_back_if_refused(
                    functools.partial(self._notify_now, mid, app), store.delete_meeting, mid, what="meeting"
                )
        log.info(
            "meeting created", meeting_id=mid, title=title, mode=spec.mode, app=app.name if app else None
        )
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
        app: App | None = None,
    ) -> int:
        """A schedule reminder (sent by SMS at ``remind_at``) or a memo (kept; sent too if it has a time).

        ``app``: the app asking, as for :meth:`create`: it must be allowed SMS if the item has a time, and
        one due now is sent before this returns, or refused with nothing kept."""
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
        if app is not None and remind_at is not None:
            app.check_kind("sms")
        item = {
            "kind": kind,
            "app_id": app.id if app is not None else None,
            "mobile": number,
            "name": name,
            "title": title.strip(),
            "text": text,
            "remind_at": remind_at,
        }
        now = time.time()

        def write(conn: Any) -> int:
            return store.add_schedule_item(conn, item, now=now)

        if app is None or remind_at is None or remind_at > now:
            iid = await self.gw.db.write(write)
        else:
            async with self._sending:
                iid = await self.gw.db.write(write)
                await self._take_back_if_refused(
                    functools.partial(self._remind_now, iid, app),
                    store.delete_schedule_item,
                    iid,
                    what="schedule item",
                )
        self.gw.signal_events()
        return iid

    async def _take_back_if_refused(
        self,
        send: Callable[[], Awaitable[None]],
        delete: Callable[[Any, int], None],
        row_id: int,
        *,
        what: str,
    ) -> None:
        """Run the request's own send; if the app's limits (or a full queue) refused it, delete what was
        just stored and raise the refusal for the request to answer with."""
        try:
            await send()
        except (Refused, QueueFull) as e:
            with trio.CancelScope(shield=True):  # a client that hung up must not leave half a meeting
                await self.gw.db.write(lambda c: delete(c, row_id))
            log.info(f"{what} refused by the app's limits; not kept", id=row_id, error=str(e))
            raise

    # ----- the loop ---------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """:meth:`start`, then :meth:`schedule` for good (a node alone)."""
        await self.start()
        task_status.started()
        await self.schedule()

    async def start(self) -> App:
        """Make the module's app; every node does this, since the HTTP routes need it."""
        app = await self.ensure_app()
        log.info("meeting module ready", app=app.name, extension=app.extension)
        return app

    async def schedule(self) -> None:
        """The scheduler: due work sent, receipts and replies applied, until cancelled. With several
        nodes on one database it runs on one of them (the daemon's job ``meeting``)."""
        if self.app is None:
            await self.start()
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
                async with self._sending:
                    await step(now)
            except (QueueFull, Refused) as e:
                log.warning("meeting module could not send; will try again", step=step.__name__, error=str(e))
            except Exception:
                log.exception("meeting module step failed; will try again", step=step.__name__)
        await self.consume_events()

    # ----- sending ----------------------------------------------------------------------------------

    def _sign(self, text: str) -> str:
        return text + self.mc.signature if self.mc.signature else text

    async def _maker(self, app_id: int | None) -> App | None:
        """The app a meeting or schedule item was made by, whose limits its sends are charged to (read
        at most every :data:`APP_TTL` seconds); None for one made with the CLI. :class:`Forbidden`
        (field ``app``) if that app has been revoked."""
        if app_id is None:
            return None
        now = trio.current_time()
        known = self._makers.get(app_id)
        if known is None or known[0] <= now:

            def read(conn: Any) -> tuple[App | None, str]:
                row = app_store.get_app_by_id(conn, app_id)
                if row is None:
                    return None, f"#{app_id}"
                live = app_store.get_app(conn, row["name"])  # None once revoked
                ok = live is not None and int(live["id"]) == app_id
                return (App.from_row(live) if ok and live is not None else None), str(row["name"])

            app, name = await self.gw.db.read(read)
            known = (now + APP_TTL, app, name)
            self._makers[app_id] = known
        if known[1] is None:
            raise Forbidden(
                "app",
                f"app {known[2]!r}, which made this, has been revoked; nothing more is sent for it",
            )
        return known[1]

    async def _send_for(self, reqs: Sequence[SubmitRequest], app_id: int | None) -> list[Outcome]:
        """Send on behalf of the app that made the meeting or item (the module alone for the CLI's)."""
        try:
            maker = await self._maker(app_id)
        except Forbidden as e:
            return [Outcome(refused=e) for _ in reqs]
        return await self._send(reqs, maker)

    async def _send_grouped(
        self, reqs: Sequence[SubmitRequest], app_ids: Sequence[int | None]
    ) -> list[Outcome]:
        """Each request on behalf of its own app (``app_ids``, in the same order): one send per app."""
        out: list[Outcome | None] = [None] * len(reqs)
        groups: dict[int | None, list[int]] = {}
        for i, app_id in enumerate(app_ids):
            groups.setdefault(app_id, []).append(i)
        for app_id, positions in groups.items():
            sent = await self._send_for([reqs[i] for i in positions], app_id)
            for i, o in zip(positions, sent, strict=True):
                out[i] = o
        return [o for o in out if o is not None]

    async def _send(
        self, reqs: Sequence[SubmitRequest], maker: App | None, *, all_or_raise: bool = False
    ) -> list[Outcome]:
        """Send as the module, on behalf of ``maker`` (its kinds, rate and quota), in batches its rate
        admits at once. After a batch the rate or a full queue holds back, the rest wait for a later
        pass; a batch its quota refuses is refused (a smaller one after it may still fit); a kind it
        may not use refuses the rest too.

        ``all_or_raise``: a request's own send. If the first batch is refused or held back, that is
        raised (nothing was stored); what later batches meet is answered as above."""
        out: list[Outcome | None] = [None] * len(reqs)
        stop: Outcome | None = None  # what every batch after the one that met it gets
        for n, batch in enumerate(batches(reqs, maker.rate if maker is not None else None)):
            if stop is not None:
                for i in batch:
                    out[i] = stop
                continue
            try:
                for i, o in zip(batch, await self._store([reqs[i] for i in batch], maker), strict=True):
                    out[i] = o
            except (Refused, QueueFull) as e:
                if all_or_raise and n == 0:
                    # The kinds were checked before: this is the rate, the quota or a full queue, as a
                    # direct send of this batch would have been answered.
                    raise
                got = Outcome(refused=e) if isinstance(e, Refused) and not waits(e) else Outcome(later=e)
                for i in batch:
                    out[i] = got
                if got.later is not None or isinstance(e, Forbidden):
                    stop = got
        return [o for o in out if o is not None]

    async def _store(self, reqs: Sequence[SubmitRequest], maker: App | None) -> list[Outcome]:
        """One batch in one accept. If the core finds a request invalid, the others go without it and
        it is refused (the row says failed, as for a notice the carrier rejects)."""
        assert self.app is not None
        module = self.app

        async def accept(some: Sequence[SubmitRequest]) -> list[Outcome]:
            got = await self.gw.accept(some, interface="meeting", app=module, on_behalf_of=maker, notify=True)
            return [Outcome(message_id=a.message_id) for a in got]

        try:
            return await accept(reqs)
        except Rejected:
            pass
        # Which ones, validated one by one as the core does (rare: a text too long with one name).
        out: dict[int, Outcome] = {}
        for i, r in enumerate(reqs):
            try:
                self.gw.prepare(r, interface="meeting", app_id=module.id, app=module)
            except Rejected as e:
                log.warning("meeting message refused", recipient=r.recipients, error=str(e))
                out[i] = Outcome(refused=e)
        rest = [i for i in range(len(reqs)) if i not in out]
        if rest:
            out.update(zip(rest, await accept([reqs[i] for i in rest]), strict=True))
        return [out[i] for i in range(len(reqs))]

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
            await self._notify(meeting, now)

    async def _notify_now(self, meeting_id: int, caller: App) -> None:
        """The notice of a meeting just made by ``caller``'s request, due now: raises the refusal of the
        first messages (see :meth:`_send`)."""
        meeting = await self.gw.db.read(functools.partial(store.get_meeting, meeting_id=meeting_id))
        assert meeting is not None
        await self._notify(meeting, time.time(), caller=caller)

    async def _notify(self, meeting: dict[str, Any], now: float, *, caller: App | None = None) -> None:
        """Send the notice to each attendee of the meeting not yet sent one (nor refused)."""
        mid = meeting["id"]
        people = await self.gw.db.read(lambda c: store.attendees_of(c, mid))
        pending = [p for p in people if p["notified_at"] is None and p["notice_state"] is None]
        if not pending:
            return
        voice = meeting["mode"] == "voice"
        template = CALL_TEXT if voice else meeting["template"]
        reqs = [
            self._request(
                meeting, p, render(template, meeting, p), f"notice{meeting['revision']}", voice=voice
            )
            for p in pending
        ]
        if caller is not None:
            if caller.quota_per_day is not None and len(batches(reqs, caller.rate)) > 1:
                await self._check_quota(caller, len(reqs))
            outcomes = await self._send(reqs, caller, all_or_raise=True)
        else:
            outcomes = await self._send_for(reqs, meeting["app_id"])
        done = [(p, o) for p, o in zip(pending, outcomes, strict=True) if o.settled]
        waiting = len(pending) - len(done)
        if not done:
            log.info("meeting notices wait for the app's limits", meeting_id=mid, attendees=waiting)
            return
        sent = sum(1 for _, o in done if o.message_id is not None)

        def record(conn: Any) -> None:
            for p, o in done:
                if isinstance(o.refused, Refused):
                    # Never notified: not chased, not told of changes; the row says why.
                    store.update_attendee(conn, p["id"], now=now, notice_state="refused")
                    store.log_refusal(conn, mid, p["id"], "notice", o.limit(), o.reason(), now=now)
                    continue
                vals: dict[str, Any] = {
                    "notice_message_id": o.message_id,
                    "notified_at": now,
                    "notice_revision": meeting["revision"],
                }
                if voice:
                    vals |= {"call_message_id": o.message_id, "called_at": now}
                if o.message_id is None:
                    vals["notice_state"] = "failed"
                store.update_attendee(conn, p["id"], now=now, **vals)
            conn.execute(
                store.m.update()
                .where(store.m.c.id == mid, store.m.c.state == store.SCHEDULED)
                .values(state=store.NOTIFIED, notified_at=now, updated_at=now)
            )
            detail = f"{sent} attendees by {meeting['mode']}"
            if len(done) > sent:
                detail += f"; {len(done) - sent} refused"
            if waiting:
                detail += f"; {waiting} wait for the app's rate"
            store.log(conn, mid, None, "notified", detail, now=now)

        await self.gw.db.write(record)
        log.info(
            "meeting notices sent", meeting_id=mid, attendees=sent, waiting=waiting, mode=meeting["mode"]
        )

    async def _check_quota(self, app: App, n: int) -> None:
        """Refuse up front a notice the app's quota cannot carry whole, when its rate makes the core take
        it in several batches (each checked alone): none goes rather than the first few."""
        assert app.quota_per_day is not None
        used = await self.gw.usage_today(app)
        if used + n > app.quota_per_day:
            raise QuotaExceeded(
                "quota",
                f"app {app.name!r} has used {used} of its {app.quota_per_day} recipients for "
                f"{time.strftime('%Y-%m-%d')}; this request needs {n}. The quota starts again at midnight "
                f"(or raise it: masd apps set {app.name} --quota N/day)",
            )

    async def _meetings_of(self, rows: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
        meetings: dict[int, dict[str, Any]] = {}
        for r in rows:
            if r["meeting_id"] not in meetings:
                mt = await self.gw.db.read(functools.partial(store.get_meeting, meeting_id=r["meeting_id"]))
                assert mt is not None
                meetings[r["meeting_id"]] = mt
        return meetings

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
            meetings = await self._meetings_of(rows)
            reqs = []
            for r in rows:
                mt = meetings[r["meeting_id"]]
                tag = f"change{mt['revision']}" if what == "change" else "cancel"
                reqs.append(self._request(mt, r, render(template, mt, r), tag))
            outcomes = await self._send_grouped(reqs, [meetings[r["meeting_id"]]["app_id"] for r in rows])

            def record(
                conn: Any,
                rows: list[dict[str, Any]] = rows,
                what: str = what,
                outcomes: list[Outcome] = outcomes,
            ) -> None:
                for r, o in zip(rows, outcomes, strict=True):
                    if not o.settled:
                        continue
                    if what == "change":
                        vals: dict[str, Any] = {"notice_revision": meetings[r["meeting_id"]]["revision"]}
                    else:
                        vals = {"cancel_sent_at": now}
                    store.update_attendee(conn, r["id"], now=now, **vals)
                    if isinstance(o.refused, Refused):
                        store.log_refusal(
                            conn, r["meeting_id"], r["id"], what, o.limit(), o.reason(), now=now
                        )
                    else:
                        store.log(
                            conn, r["meeting_id"], r["id"], f"{what} notice", str(o.message_id), now=now
                        )

            await db.write(record)
            log.info("meeting notices", kind=what, attendees=sum(1 for o in outcomes if o.settled))

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
            meetings = await self._meetings_of(rows)
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
            outcomes = await self._send_grouped(reqs, [meetings[r["meeting_id"]]["app_id"] for r in rows])

            def record(
                conn: Any,
                rows: list[dict[str, Any]] = rows,
                column: str = column,
                kind: str = kind,
                outcomes: list[Outcome] = outcomes,
            ) -> None:
                for r, o in zip(rows, outcomes, strict=True):
                    if not o.settled:
                        continue
                    vals: dict[str, Any] = {column: now}
                    refused = isinstance(o.refused, Refused)
                    if kind == "call":
                        vals["call_message_id"] = o.message_id
                        if o.message_id is None:
                            vals["call_outcome"] = "refused" if refused else "failed"
                    store.update_attendee(conn, r["id"], now=now, **vals)
                    if refused:
                        store.log_refusal(
                            conn, r["meeting_id"], r["id"], kind, o.limit(), o.reason(), now=now
                        )
                    else:
                        store.log(conn, r["meeting_id"], r["id"], kind, r["mobile"], now=now)

            await db.write(record)
            log.info("meeting escalation", kind=kind, attendees=sum(1 for o in outcomes if o.settled))

    def _item_request(self, item: dict[str, Any]) -> SubmitRequest:
        word = "日程提醒" if item["kind"] == "reminder" else "备忘"
        return SubmitRequest(
            text=self._sign(f"【{word}】{item['title']}" + (f"：{item['text']}" if item["text"] else "")),
            recipients=[item["mobile"]],
            client_ref=f"schedule:{item['id']}",
        )

    async def _schedule_items(self, now: float) -> None:
        items = await self.gw.db.read(lambda c: store.due_schedule_items(c, now=now))
        if items:
            outcomes = await self._send_grouped(
                [self._item_request(it) for it in items], [it["app_id"] for it in items]
            )
            await self._record_items(items, outcomes, now)

    async def _remind_now(self, item_id: int, caller: App) -> None:
        """A reminder just made by ``caller``'s request, due now: raises the refusal (see :meth:`_send`)."""
        item = await self.gw.db.read(functools.partial(store.get_schedule_item, item_id=item_id))
        assert item is not None
        now = time.time()
        outcomes = await self._send([self._item_request(item)], caller, all_or_raise=True)
        await self._record_items([item], outcomes, now)

    async def _record_items(
        self, items: Sequence[dict[str, Any]], outcomes: Sequence[Outcome], now: float
    ) -> None:
        def record(conn: Any) -> None:
            for it, o in zip(items, outcomes, strict=True):
                if not o.settled:
                    continue
                store.mark_schedule_item_sent(conn, it["id"], o.message_id, now=now)
                if isinstance(o.refused, Refused):
                    store.log_item_refusal(conn, it["id"], it["kind"], o.limit(), o.reason(), now=now)

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
            vals["call_outcome"] = call_outcome(state, ev.get("error_code")).value
        if vals:
            await self.gw.db.write(lambda c: store.update_attendee(c, attendee["id"], now=now, **vals))

    async def _on_reply(self, ev: dict[str, Any]) -> None:
        now = time.time()
        sender, ext = ev["sender"], ev.get("extension") or ""
        # The reply is read as it came (the reader is unsure of one that lost characters on the way);
        # what is kept and logged of it never holds a lone surrogate or a control character.
        came = ev.get("text") or ""
        text = reading.clean(came)
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
                await self._stranger(ev, text, f"not invited to meeting {meeting['id']}")
                return
            intent = self.grammar.read(came, checkin_codes=[meeting["checkin_code"]])
            if intent.meeting_code in (None, mid):
                await self._apply(meeting, attendee, intent, ev, text, via, now)
                return
            # Sent to one meeting's number, naming another (#42): the code the sender wrote decides.
        # No usable extension (the carrier dropped it): the sender's open meetings decide.
        open_ = await db.read(lambda c: store.open_meetings_of(c, sender, now=now))
        if not open_:
            await self._stranger(ev, text, "no open meeting for this number")
            return
        intent = self.grammar.read(
            came, checkin_codes=[x["checkin_code"] for x in open_ if x["checkin_code"]]
        )
        chosen = self._meeting_meant(open_, intent, came, now)
        if chosen is None:
            await self._ask_which(sender, open_, intent, ev, text, now)
            return
        attendee = await db.read(lambda c: store.attendee_in(c, chosen["id"], sender))
        assert attendee is not None
        await self._apply(chosen, attendee, intent, ev, text, via, now)

    def _meeting_meant(
        self, open_: list[dict[str, Any]], intent: Intent, text: str, now: float
    ) -> dict[str, Any] | None:
        """The one open meeting a reply without an extension answers, or None: ask which, never guess.
        The code it names (``1 #42``) decides; else a sender with one open meeting means that one;
        else a check-in code (or 签到 on the day of only one of them) picks the meeting."""
        if intent.meeting_code is not None:
            named = [x for x in open_ if x["id"] == intent.meeting_code]
            return named[0] if named else None
        if len(open_) == 1:
            return open_[0]
        if intent.sure and intent.kind is Kind.CHECKIN:
            today = [x for x in open_ if _checkin_open(x, now)]
            coded = [x for x in today if self._checks_in(text, x)]
            if len(coded) == 1:
                return coded[0]
        return None

    def _checks_in(self, text: str, meeting: dict[str, Any]) -> bool:
        got = self.grammar.read(text, checkin_codes=[meeting["checkin_code"]])
        return got.sure and got.kind is Kind.CHECKIN

    async def _apply(
        self,
        meeting: dict[str, Any],
        attendee: dict[str, Any],
        intent: Intent,
        ev: dict[str, Any],
        text: str,
        via: str,
        now: float,
    ) -> None:
        """What a reply (``text``, already cleaned) read as ``intent`` does to the attendee's row: a sure
        answer is recorded, added to their answers and confirmed; anything else is asked back."""
        db = self.gw.db
        mid, aid = meeting["id"], attendee["id"]
        what = "reply" if via == "sms" else "keypress"
        detail = f"{intent.kind}{'' if intent.sure else ' (unsure)'}: {text}"
        if meeting["state"] == store.CANCELLED:
            await db.write(lambda c: store.log(c, mid, aid, what, detail + " (cancelled meeting)", now=now))
            return
        if via == "voice" and not (intent.sure and intent.kind in (Kind.ATTEND, Kind.DECLINE)):
            # A keypress other than 1 or 2: nothing to record, and no SMS answer to a call.
            await db.write(lambda c: store.log(c, mid, aid, what, text, now=now))
            return
        if not intent.sure:
            question = render(ASK_BACK, meeting, attendee)
            if _checkin_open(meeting, now):
                question += ASK_BACK_CHECKIN
            await self._ask_back(meeting, attendee, question + "。", ev, text, detail, now)
            return
        if intent.kind is Kind.CHECKIN and not _checkin_open(meeting, now):
            question = render(CHECKIN_CLOSED, meeting, attendee) + "。"
            await self._ask_back(meeting, attendee, question, ev, text, detail + " (not the day)", now)
            return
        late = False
        if intent.kind is Kind.CHECKIN:
            vals: dict[str, Any] = {"checked_in_at": now}
        else:
            deadline = meeting["reply_deadline"] or meeting["starts_at"]
            late = now > deadline
            vals = {
                "response": intent.kind.value,
                "reason": intent.text[:500] if intent.kind is Kind.LEAVE else "",
                "responded_at": now,
                "response_late": 1 if late else 0,
                "response_via": via,
            }
            if intent.kind is not Kind.LEAVE and intent.text:
                vals["comment"] = intent.text[:500]
        vals |= {"pending_reply": None, "pending_at": None}
        if self.mc.confirm_replies and via == "sms":
            # Before the row is written: a full queue raises here and the reply is read again, so it
            # is recorded once, with its confirmation (sent once: its client reference is the reply's).
            await self._tell(meeting, attendee, confirmation(meeting, intent, late=late), f"r{ev['event']}")
        reply_id = ev.get("reply_id")

        def write(conn: Any) -> None:
            if store.already_recorded(conn, aid, reply_id):
                return  # read again after a crash between recording and moving the cursor
            store.update_attendee(conn, aid, now=now, **vals)
            store.record_answer(
                conn,
                mid,
                aid,
                kind=intent.kind.value,
                text=intent.text,
                reply=text,
                reply_id=reply_id,
                via=via,
                late=late,
                now=now,
            )
            store.log(conn, mid, aid, what, detail, now=now)

        await db.write(write)

    async def _ask_back(
        self,
        meeting: dict[str, Any],
        attendee: dict[str, Any],
        question: str,
        ev: dict[str, Any],
        text: str,
        detail: str,
        now: float,
    ) -> None:
        """A reply that records nothing: kept as the attendee's comment and shown as awaiting an answer;
        the attendee is asked ``question`` — once per reply, and at most ``ask_back_limit`` times per
        meeting, so that someone who keeps writing unclear replies is not answered forever."""
        ask = int(attendee["ask_backs"]) < self.mc.ask_back_limit
        if ask:
            await self._tell(meeting, attendee, question, f"r{ev['event']}")
        mid, aid = meeting["id"], attendee["id"]
        detail += "; asked back" if ask else f"; not asked back (asked {attendee['ask_backs']} times)"

        def write(conn: Any) -> None:
            store.await_answer(conn, aid, text, asked=ask, now=now)
            store.log(conn, mid, aid, "reply", detail, now=now)

        await self.gw.db.write(write)

    async def _tell(self, meeting: dict[str, Any], attendee: dict[str, Any], text: str, what: str) -> None:
        """An answer to an attendee's reply (a confirmation, an ask-back): ``text`` as it is sent (it may
        quote the reply, so it is not a template). Sent for the meeting's app; one its limits refuse —
        its rate included: an answer late is no answer — is not sent, and the row says why."""
        req = self._request(meeting, attendee, text, what)
        (o,) = await self._send_for([req], meeting["app_id"])
        if isinstance(o.later, QueueFull):
            raise o.later  # the reply is read again once the queue drains
        if o.message_id is None and (isinstance(o.refused, Refused) or o.later is not None):
            now = time.time()
            await self.gw.db.write(
                lambda c: store.log_refusal(
                    c, meeting["id"], attendee["id"], "answer", o.limit(), o.reason(), now=now
                )
            )

    async def _ask_which(
        self,
        sender: str,
        open_: list[dict[str, Any]],
        intent: Intent,
        ev: dict[str, Any],
        text: str,
        now: float,
    ) -> None:
        """A reply that does not say which of the sender's open meetings it answers: nothing recorded,
        and the sender asked to name the meeting — unless that would ask them back more than the limit
        about one of those meetings. It is kept in the log, on no meeting's board: it may be about any
        of them, and each board is its organiser's."""
        asked = max(int(x["ask_backs"]) for x in open_)
        ask = asked < self.mc.ask_back_limit
        if ask:
            listing = "；".join(f"#{x['id']} {x['title']}（{local_time(x['starts_at'])}）" for x in open_[:5])
            example = ANSWER_DIGITS.get(intent.kind, "1") if intent.sure else "1"
            question = ASK_WHICH.format(n=len(open_), listing=listing, example=example, first=open_[0]["id"])
            (o,) = await self._send(
                [SubmitRequest(self._sign(question), [sender], client_ref=f"meeting:ask:{ev['event']}")], None
            )
            if o.later is not None:
                raise o.later  # the queue is full: the reply is read again once it drains
        detail = f"{sender}: {text}" + ("" if ask else f" (not asked back: asked {asked} times)")

        def write(conn: Any) -> None:
            if ask:
                store.count_ask_backs(conn, [int(x["attendee_id"]) for x in open_], now=now)
            store.log(conn, None, None, "ask-back", detail, now=now)

        await self.gw.db.write(write)

    async def _stranger(self, ev: dict[str, Any], text: str, why: str) -> None:
        assert self.app is not None
        await self.gw.disown_reply(int(ev["reply_id"]), self.app.id)
        now = time.time()
        await self.gw.db.write(
            lambda c: store.log(c, None, None, "unmatched", f"{ev['sender']}: {text} ({why})", now=now)
        )
        log.info("meeting reply from a stranger", sender=ev["sender"], why=why, reply_id=ev["reply_id"])


def _quoted(text: str) -> str:
    return text if len(text) <= QUOTED else text[: QUOTED - 1] + "…"


def confirmation(meeting: dict[str, Any], intent: Intent, *, late: bool = False) -> str:
    """The SMS confirming an answer recorded: what was recorded, for which meeting, and how to correct
    it (``已记录：参加「周一例会」。如有误请回复2不参加、3请假+原因。``)."""
    title = meeting["title"]
    if intent.kind is Kind.CHECKIN:
        return f"已签到「{title}」。如有误请联系{meeting.get('organiser') or '会议组织者'}。"
    answer = ANSWER_NAMES[intent.kind] + (f"（{_quoted(intent.text)}）" if intent.text else "")
    after = "（已过回复截止时间）" if late else ""
    return f"已记录：{answer}「{title}」{after}。{CORRECTIONS[intent.kind]}。"


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
