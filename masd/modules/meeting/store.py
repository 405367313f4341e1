"""Reading and writing the meeting module's tables. Synchronous functions of a connection, run through
the core's :class:`~masd.store.db.Database` like the core's own store code."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from masd.modules.meeting.tables import answers as an
from masd.modules.meeting.tables import attendees as a
from masd.modules.meeting.tables import meeting_log as lg
from masd.modules.meeting.tables import meetings as m
from masd.modules.meeting.tables import schedule_items as si
from masd.store import apps as app_store

__all__ = [
    "BOARD_COLUMNS",
    "add_schedule_item",
    "already_recorded",
    "answers_in",
    "app_names",
    "attendee_by_message",
    "await_answer",
    "board",
    "count_ask_backs",
    "delete_meeting",
    "delete_schedule_item",
    "due_calls",
    "due_notices",
    "due_reminders",
    "due_schedule_items",
    "due_second_sms",
    "get_meeting",
    "insert_meeting",
    "item_refusals",
    "log",
    "log_item_refusal",
    "log_refusal",
    "mark_schedule_item_sent",
    "open_meetings_of",
    "record_answer",
    "refusals_in",
    "search_meetings",
    "update_attendee",
]

NOTIFIED = "notified"
SCHEDULED = "scheduled"
CANCELLED = "cancelled"


def insert_meeting(
    conn: sa.Connection,
    meeting: dict[str, Any],
    people: Sequence[dict[str, Any]],
    *,
    now: float,
    by: str | None = None,
) -> int:
    """Store a meeting with its attendees (each: person_id, name, mobile, department); ``by``: the name
    of the app that made it, for the log (None: the command line)."""
    mid = conn.execute(
        sa.insert(m)
        .values(**meeting, state=SCHEDULED, revision=0, created_at=now, updated_at=now)
        .returning(m.c.id)
    ).scalar_one()
    conn.execute(
        sa.insert(a),
        [
            {
                "meeting_id": mid,
                "person_id": p.get("person_id"),
                "name": p.get("name") or "",
                "mobile": p["mobile"],
                "department": p.get("department") or "",
                "updated_at": now,
            }
            for p in people
        ],
    )
    maker = f"app {by}" if by is not None else "the command line"
    log(conn, int(mid), None, "created", f"{len(people)} attendees, by {maker}", now=now)
    return int(mid)


def delete_meeting(conn: sa.Connection, meeting_id: int) -> None:
    """Take back a meeting just made whose request was refused: it, its attendees and its log."""
    conn.execute(sa.delete(lg).where(lg.c.meeting_id == meeting_id))
    conn.execute(sa.delete(an).where(an.c.meeting_id == meeting_id))
    conn.execute(sa.delete(a).where(a.c.meeting_id == meeting_id))
    conn.execute(sa.delete(m).where(m.c.id == meeting_id))


def get_meeting(conn: sa.Connection, meeting_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(m).where(m.c.id == meeting_id)).mappings().first()
    if row is None:
        return None
    out = dict(row)
    out["attachments"] = json.loads(out["attachments"] or "[]")
    return out


def attendees_of(conn: sa.Connection, meeting_id: int) -> list[dict[str, Any]]:
    q = sa.select(a).where(a.c.meeting_id == meeting_id).order_by(a.c.department, a.c.name, a.c.id)
    return [dict(x) for x in conn.execute(q).mappings()]


def update_attendee(conn: sa.Connection, attendee_id: int, *, now: float, **values: Any) -> None:
    conn.execute(sa.update(a).where(a.c.id == attendee_id).values(**values, updated_at=now))


def log(
    conn: sa.Connection,
    meeting_id: int | None,
    attendee_id: int | None,
    kind: str,
    detail: str,
    *,
    now: float,
) -> None:
    conn.execute(
        sa.insert(lg).values(meeting_id=meeting_id, attendee_id=attendee_id, at=now, kind=kind, detail=detail)
    )


# ----- what the scheduler does next -----------------------------------------------------------------


def due_notices(conn: sa.Connection, *, now: float) -> list[dict[str, Any]]:
    """Meetings whose notice time has come, and notified meetings not yet started with attendees still
    to send it to (their app's rate held them back)."""
    unsent = (
        sa.select(a.c.id)
        .where(a.c.meeting_id == m.c.id, a.c.notified_at.is_(None), a.c.notice_state.is_(None))
        .exists()
    )
    q = (
        sa.select(m)
        .where(
            m.c.send_at <= now,
            sa.or_(m.c.state == SCHEDULED, sa.and_(m.c.state == NOTIFIED, m.c.starts_at > now, unsent)),
        )
        .order_by(m.c.send_at)
    )
    return [dict(x) for x in conn.execute(q).mappings()]


def _silent(now: float) -> sa.ColumnElement[bool]:
    return sa.and_(
        m.c.state == NOTIFIED,
        a.c.response.is_(None),
        a.c.checked_in_at.is_(None),  # someone who checked in is there: no need to chase them
        a.c.notified_at.is_not(None),
        m.c.starts_at > now,
    )


def _joined(*cols: Any) -> sa.Select[Any]:
    return sa.select(a, *cols).select_from(a.join(m, m.c.id == a.c.meeting_id))


def due_second_sms(conn: sa.Connection, *, now: float) -> list[dict[str, Any]]:
    """Attendees who have not answered a notice sent ``second_sms_after`` ago (modes with SMS)."""
    q = _joined().where(
        _silent(now),
        m.c.mode.in_(("sms", "sms+voice")),
        m.c.second_sms_after.is_not(None),
        a.c.second_sms_at.is_(None),
        a.c.notified_at + m.c.second_sms_after <= now,
    )
    return [dict(x) for x in conn.execute(q.order_by(a.c.id)).mappings()]


def due_calls(conn: sa.Connection, *, now: float) -> list[dict[str, Any]]:
    """Attendees still silent ``call_after`` after the second SMS (or the notice, if there was none)."""
    since = sa.case((m.c.second_sms_after.is_not(None), a.c.second_sms_at), else_=a.c.notified_at)
    q = _joined().where(
        _silent(now),
        m.c.mode == "sms+voice",
        m.c.call_after.is_not(None),
        a.c.called_at.is_(None),
        since.is_not(None),
        since + m.c.call_after <= now,
    )
    return [dict(x) for x in conn.execute(q.order_by(a.c.id)).mappings()]


def due_reminders(conn: sa.Connection, *, now: float) -> list[dict[str, Any]]:
    """Attendees who said they would come, when the meeting is ``remind_before`` away."""
    q = _joined().where(
        m.c.state == NOTIFIED,
        m.c.remind_before.is_not(None),
        a.c.response == "attend",
        a.c.reminded_at.is_(None),
        m.c.starts_at - m.c.remind_before <= now,
        m.c.starts_at > now,
    )
    return [dict(x) for x in conn.execute(q.order_by(a.c.id)).mappings()]


def due_change_notices(conn: sa.Connection, *, now: float) -> list[dict[str, Any]]:
    """Attendees told of an older revision of a meeting that has changed since (not yet started)."""
    q = _joined(m.c.revision.label("meeting_revision")).where(
        m.c.state == NOTIFIED,
        a.c.notified_at.is_not(None),
        a.c.notice_revision < m.c.revision,
        m.c.starts_at > now,
    )
    return [dict(x) for x in conn.execute(q.order_by(a.c.id)).mappings()]


def due_cancel_notices(conn: sa.Connection, *, now: float) -> list[dict[str, Any]]:
    """Attendees notified of a meeting since cancelled who have not been told (until its start)."""
    q = _joined().where(
        m.c.state == CANCELLED,
        a.c.notified_at.is_not(None),
        a.c.cancel_sent_at.is_(None),
        m.c.starts_at > now,
    )
    return [dict(x) for x in conn.execute(q.order_by(a.c.id)).mappings()]


def due_schedule_items(conn: sa.Connection, *, now: float) -> list[dict[str, Any]]:
    q = sa.select(si).where(si.c.sent_at.is_(None), si.c.remind_at.is_not(None), si.c.remind_at <= now)
    return [dict(x) for x in conn.execute(q.order_by(si.c.remind_at)).mappings()]


def add_schedule_item(conn: sa.Connection, item: dict[str, Any], *, now: float) -> int:
    return int(conn.execute(sa.insert(si).values(**item, created_at=now).returning(si.c.id)).scalar_one())


def delete_schedule_item(conn: sa.Connection, item_id: int) -> None:
    """Take back a reminder just made whose request was refused."""
    conn.execute(sa.delete(si).where(si.c.id == item_id))


def mark_schedule_item_sent(conn: sa.Connection, item_id: int, message_id: int | None, *, now: float) -> None:
    """Done with: sent as ``message_id``, or (None) refused — :func:`log_item_refusal` says why."""
    conn.execute(sa.update(si).where(si.c.id == item_id).values(sent_at=now, message_id=message_id))


# ----- refusals: what an app's limits kept from going out ------------------------------------------
#
# Kept in the meeting log, a JSON detail each: an attendee's under the meeting ("refused"), a schedule
# item's under no meeting ("item refused", the item's id first so that it can be found).

REFUSED = "refused"
ITEM_REFUSED = "item refused"


def log_refusal(
    conn: sa.Connection,
    meeting_id: int,
    attendee_id: int,
    send: str,
    limit: str,
    reason: str,
    *,
    now: float,
) -> None:
    """``send`` (notice, second_sms, call, reminder, change, cancel, answer) to the attendee was refused
    by ``limit`` (channel, quota, rate, app, invalid) for ``reason``."""
    detail = json.dumps({"send": send, "limit": limit, "reason": reason}, ensure_ascii=False)
    log(conn, meeting_id, attendee_id, REFUSED, detail, now=now)


def log_item_refusal(
    conn: sa.Connection, item_id: int, send: str, limit: str, reason: str, *, now: float
) -> None:
    detail = json.dumps({"item": item_id, "send": send, "limit": limit, "reason": reason}, ensure_ascii=False)
    log(conn, None, None, ITEM_REFUSED, detail, now=now)


def _refusal(detail: str, at: float) -> dict[str, Any]:
    try:
        d = json.loads(detail)
    except ValueError:
        d = {}
    if not isinstance(d, dict):
        d = {}
    return {
        "send": str(d.get("send", "")),
        "limit": str(d.get("limit", "")),
        "reason": str(d.get("reason", "")),
        "at": at,
    }


def refusals_in(conn: sa.Connection, meeting_id: int) -> dict[int, list[dict[str, Any]]]:
    """The meeting's refused sends by attendee id, oldest first: send, limit, reason, at."""
    q = (
        sa.select(lg.c.attendee_id, lg.c.at, lg.c.detail)
        .where(lg.c.meeting_id == meeting_id, lg.c.kind == REFUSED)
        .order_by(lg.c.id)
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for attendee_id, at, detail in conn.execute(q):
        if attendee_id is not None:
            out.setdefault(int(attendee_id), []).append(_refusal(detail, at))
    return out


def item_refusals(conn: sa.Connection, item_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Why these schedule items were not sent (the latest refusal of each that has one)."""
    if not item_ids:
        return {}
    match = sa.or_(*(lg.c.detail.like(f'{{"item": {int(i)},%') for i in item_ids))
    q = sa.select(lg.c.at, lg.c.detail).where(lg.c.meeting_id.is_(None), lg.c.kind == ITEM_REFUSED, match)
    out: dict[int, dict[str, Any]] = {}
    for at, detail in conn.execute(q.order_by(lg.c.id)):
        item = json.loads(detail).get("item")
        out[int(item)] = _refusal(detail, at)
    return out


# ----- matching what comes back ---------------------------------------------------------------------


def attendee_by_message(conn: sa.Connection, message_id: int) -> tuple[dict[str, Any], str] | None:
    """The attendee whose notice or call this message was: (attendee, "notice" | "call")."""
    row = (
        conn.execute(
            sa.select(a).where(sa.or_(a.c.notice_message_id == message_id, a.c.call_message_id == message_id))
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    what = (
        "call"
        if row["call_message_id"] == message_id and row["notice_message_id"] != message_id
        else "notice"
    )
    return dict(row), what


def open_meetings_of(conn: sa.Connection, mobile: str, *, now: float) -> list[dict[str, Any]]:
    """Meetings this number was notified of that have not ended or been cancelled, newest first, each
    with the attendee's id (``attendee_id``) and how often they were asked back (``ask_backs``)."""
    q = (
        sa.select(m, a.c.id.label("attendee_id"), a.c.ask_backs)
        .select_from(a.join(m, m.c.id == a.c.meeting_id))
        .where(a.c.mobile == mobile, m.c.state == NOTIFIED, m.c.ends_at > now)
        .order_by(m.c.starts_at.desc())
    )
    return [dict(x) for x in conn.execute(q).mappings()]


def attendee_in(conn: sa.Connection, meeting_id: int, mobile: str) -> dict[str, Any] | None:
    row = (
        conn.execute(sa.select(a).where(a.c.meeting_id == meeting_id, a.c.mobile == mobile))
        .mappings()
        .first()
    )
    return dict(row) if row else None


# ----- answers: what each attendee answered, oldest first ---------------------------------------------


def record_answer(
    conn: sa.Connection,
    meeting_id: int,
    attendee_id: int,
    *,
    kind: str,
    text: str,
    reply: str,
    reply_id: int | None,
    via: str,
    late: bool,
    now: float,
) -> None:
    """One answer recorded (attend, decline, leave, checkin) with the reply it was read from: the
    attendee's row says the latest, this the history. ``reply`` must already be cleaned."""
    conn.execute(
        sa.insert(an).values(
            meeting_id=meeting_id,
            attendee_id=attendee_id,
            at=now,
            kind=kind,
            text=text[:500],
            reply=reply,
            reply_id=reply_id,
            via=via,
            late=1 if late else 0,
        )
    )


def already_recorded(conn: sa.Connection, attendee_id: int, reply_id: int | None) -> bool:
    """Whether an answer was recorded from this reply already (it is read again after a crash)."""
    if reply_id is None:
        return False
    q = sa.select(an.c.id).where(an.c.attendee_id == attendee_id, an.c.reply_id == reply_id).limit(1)
    return conn.execute(q).first() is not None


def await_answer(conn: sa.Connection, attendee_id: int, reply: str, *, asked: bool, now: float) -> None:
    """A reply that answers nothing for sure: kept as the attendee's comment and as the reply awaiting
    an answer; ``asked``: an ask-back was sent for it (counted against the limit)."""
    values: dict[str, Any] = {"pending_reply": reply, "pending_at": now, "comment": reply[:500]}
    if asked:
        values["ask_backs"] = a.c.ask_backs + 1
    update_attendee(conn, attendee_id, now=now, **values)


def count_ask_backs(conn: sa.Connection, attendee_ids: Sequence[int], *, now: float) -> None:
    """One more ask-back for each of these attendees (the question which meeting a reply is about)."""
    if attendee_ids:
        conn.execute(
            sa.update(a)
            .where(a.c.id.in_(list(attendee_ids)))
            .values(ask_backs=a.c.ask_backs + 1, updated_at=now)
        )


def answers_in(conn: sa.Connection, meeting_id: int) -> dict[int, list[dict[str, Any]]]:
    """The meeting's answers by attendee id, oldest first: kind, text, reply, reply_id, via, late, at."""
    q = (
        sa.select(
            an.c.attendee_id, an.c.at, an.c.kind, an.c.text, an.c.reply, an.c.reply_id, an.c.via, an.c.late
        )
        .where(an.c.meeting_id == meeting_id)
        .order_by(an.c.id)
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for r in conn.execute(q).mappings():
        out.setdefault(int(r["attendee_id"]), []).append(
            {
                "kind": r["kind"],
                "text": r["text"],
                "reply": r["reply"],
                "reply_id": r["reply_id"],
                "via": r["via"],
                "late": bool(r["late"]),
                "at": r["at"],
            }
        )
    return out


# ----- the organiser's board and the history --------------------------------------------------------

BOARD_COLUMNS = (
    "name",
    "department",
    "mobile",
    "notified",
    "delivered",
    "response",
    "reason",
    "late",
    "second_sms",
    "called",
    "call_outcome",
    "reminded",
    "checked_in",
    "comment",
    "pending_reply",
    "answers",
)


# A refused step shows on the board as not done, with the refusal beside it: (the send as the log names
# it, the board's column, the attendee column the scheduler set when it was refused).
_REFUSED_STEPS = (
    ("second_sms", "second_sms", "second_sms_at"),
    ("call", "called", "called_at"),
    ("reminder", "reminded", "reminded_at"),
)


def app_names(conn: sa.Connection, app_ids: Sequence[int | None]) -> dict[int, str]:
    """The names of the apps that made meetings (revoked ones too: the history keeps them)."""
    out: dict[int, str] = {}
    for app_id in {int(x) for x in app_ids if x is not None}:
        row = app_store.get_app_by_id(conn, app_id)
        out[app_id] = str(row["name"]) if row is not None else f"#{app_id}"
    return out


def board(conn: sa.Connection, meeting_id: int) -> dict[str, Any] | None:
    """Counts and one row per attendee: who was notified, delivered, answered what, reminded, called,
    checked in — and what the meeting's app's limits refused to send (``refusals``), every answer given
    (``answers``, oldest first) and the reply that awaits an answer after an ask-back
    (``pending_reply``: text, at; None if none). The meeting has the name of the app that made it as
    ``app`` (None: the command line)."""
    meeting = get_meeting(conn, meeting_id)
    if meeting is None:
        return None
    meeting["app"] = app_names(conn, [meeting["app_id"]]).get(meeting["app_id"] or 0)
    refusals = refusals_in(conn, meeting_id)
    given = answers_in(conn, meeting_id)
    rows = []
    for r in attendees_of(conn, meeting_id):
        mine = refusals.get(int(r["id"]), [])
        row = {
            "id": r["id"],
            "name": r["name"],
            "department": r["department"],
            "mobile": r["mobile"],
            "notified": r["notified_at"],
            "delivered": r["delivered_at"],
            "notice_state": r["notice_state"],
            "response": r["response"],
            "reason": r["reason"],
            "late": bool(r["response_late"]),
            "response_via": r["response_via"],
            "responded": r["responded_at"],
            "second_sms": r["second_sms_at"],
            "called": r["called_at"],
            "call_outcome": r["call_outcome"],
            "reminded": r["reminded_at"],
            "checked_in": r["checked_in_at"],
            "comment": r["comment"],
            "pending_reply": (
                {"text": r["pending_reply"], "at": r["pending_at"]}
                if r["pending_reply"] is not None
                else None
            ),
            "ask_backs": r["ask_backs"],
            "answers": given.get(int(r["id"]), []),
            "refusals": mine,
        }
        for send, shown, column in _REFUSED_STEPS:
            # Refused when the scheduler last did it (a change sends a reminder again): not done.
            if r[column] is not None and any(x["send"] == send and x["at"] == r[column] for x in mine):
                row[shown] = None
        rows.append(row)
    counts = {
        "attendees": len(rows),
        "notified": sum(1 for r in rows if r["notified"] is not None),
        "delivered": sum(1 for r in rows if r["notice_state"] == "delivered"),
        "undelivered": sum(1 for r in rows if r["notice_state"] not in (None, "delivered", "refused")),
        "refused": sum(1 for r in rows if r["refusals"]),
        "attend": sum(1 for r in rows if r["response"] == "attend"),
        "decline": sum(1 for r in rows if r["response"] == "decline"),
        "leave": sum(1 for r in rows if r["response"] == "leave"),
        "no_reply": sum(1 for r in rows if r["response"] is None),
        "awaiting": sum(1 for r in rows if r["pending_reply"] is not None),
        "late": sum(1 for r in rows if r["late"]),
        "second_sms": sum(1 for r in rows if r["second_sms"] is not None),
        "called": sum(1 for r in rows if r["called"] is not None),
        "reminded": sum(1 for r in rows if r["reminded"] is not None),
        "checked_in": sum(1 for r in rows if r["checked_in"] is not None),
    }
    return {"meeting": meeting, "counts": counts, "attendees": rows}


def search_meetings(
    conn: sa.Connection,
    *,
    start: float | None = None,
    end: float | None = None,
    text: str | None = None,
    attendee: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """The history: meetings starting in [start, end), whose title, place or agenda contains ``text``,
    attended by someone whose name or mobile contains ``attendee``; newest first."""
    q = sa.select(m).order_by(m.c.starts_at.desc()).limit(limit)
    if start is not None:
        q = q.where(m.c.starts_at >= start)
    if end is not None:
        q = q.where(m.c.starts_at < end)
    if text:
        like = f"%{text}%"
        q = q.where(sa.or_(m.c.title.like(like), m.c.place.like(like), m.c.agenda.like(like)))
    if attendee:
        like = f"%{attendee}%"
        who = sa.select(a.c.meeting_id).where(sa.or_(a.c.name.like(like), a.c.mobile.like(like)))
        q = q.where(m.c.id.in_(who))
    return [dict(x) for x in conn.execute(q).mappings()]


# ----- reads for the organiser's surfaces: CLI, HTTP and exports -------------------------------------


def _contains(column: Any, text: str) -> sa.ColumnElement[bool]:
    # The organiser's text is literal: a "%" or "_" in a title must not act as a wildcard.
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like: sa.ColumnElement[bool] = column.like(f"%{escaped}%", escape="\\")
    return like


def find_meetings(
    conn: sa.Connection,
    *,
    start: float | None = None,
    end: float | None = None,
    ends_after: float | None = None,
    text: str | None = None,
    attendee: str | None = None,
    app_id: int | None = None,
    soonest_first: bool = False,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Meetings starting in [start, end) (and, with ``ends_after``, not over by then) whose title, place
    or agenda contains ``text`` and with an attendee whose name or mobile contains ``attendee``; only
    those created by the app ``app_id`` when it is given. Newest first, or soonest first for a list of
    what is coming. Each row has its attachments as a list."""
    q = sa.select(m)
    if start is not None:
        q = q.where(m.c.starts_at >= start)
    if end is not None:
        q = q.where(m.c.starts_at < end)
    if ends_after is not None:
        q = q.where(m.c.ends_at > ends_after)
    if text:
        q = q.where(
            sa.or_(_contains(m.c.title, text), _contains(m.c.place, text), _contains(m.c.agenda, text))
        )
    if attendee:
        who = sa.select(a.c.meeting_id).where(
            sa.or_(_contains(a.c.name, attendee), _contains(a.c.mobile, attendee))
        )
        q = q.where(m.c.id.in_(who))
    if app_id is not None:
        q = q.where(m.c.app_id == app_id)
    order = (m.c.starts_at.asc(), m.c.id.asc()) if soonest_first else (m.c.starts_at.desc(), m.c.id.desc())
    rows = [dict(x) for x in conn.execute(q.order_by(*order).limit(limit)).mappings()]
    names = app_names(conn, [r["app_id"] for r in rows])
    for row in rows:
        row["attachments"] = json.loads(row["attachments"] or "[]")
        row["app"] = names.get(row["app_id"] or 0)
    return rows


def attendee_counts(conn: sa.Connection, meeting_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per meeting: attendees, and how many answered attend, decline, leave, or not at all."""
    if not meeting_ids:
        return {}
    q = (
        sa.select(a.c.meeting_id, a.c.response, sa.func.count())
        .where(a.c.meeting_id.in_(list(meeting_ids)))
        .group_by(a.c.meeting_id, a.c.response)
    )
    out: dict[int, dict[str, int]] = {
        int(i): {"attendees": 0, "attend": 0, "decline": 0, "leave": 0, "no_reply": 0} for i in meeting_ids
    }
    for mid, response, n in conn.execute(q):
        counts = out[int(mid)]
        counts["attendees"] += int(n)
        counts[response if response in ("attend", "decline", "leave") else "no_reply"] += int(n)
    return out


def meeting_events(conn: sa.Connection, meeting_id: int, *, limit: int = 100) -> list[dict[str, Any]]:
    """The meeting's log, latest ``limit`` entries, oldest first, each with the attendee's name and mobile
    when it concerns one."""
    q = (
        sa.select(lg.c.id, lg.c.at, lg.c.kind, lg.c.detail, lg.c.attendee_id, a.c.name, a.c.mobile)
        .select_from(lg.outerjoin(a, a.c.id == lg.c.attendee_id))
        .where(lg.c.meeting_id == meeting_id)
        .order_by(lg.c.id.desc())
        .limit(limit)
    )
    return [dict(x) for x in reversed(conn.execute(q).mappings().all())]


def _with_refusals(conn: sa.Connection, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Done with but no message: refused, and the log says why.
    refused = [int(it["id"]) for it in items if it["sent_at"] is not None and it["message_id"] is None]
    found = item_refusals(conn, refused)
    for it in items:
        it["refusal"] = found.get(int(it["id"]))
    return items


def get_schedule_item(conn: sa.Connection, item_id: int) -> dict[str, Any] | None:
    """A schedule item, with ``refusal`` (send, limit, reason, at) if its app's limits refused it."""
    row = conn.execute(sa.select(si).where(si.c.id == item_id)).mappings().first()
    return _with_refusals(conn, [dict(row)])[0] if row else None


def list_schedule_items(
    conn: sa.Connection,
    *,
    kind: str | None = None,
    mobile: str | None = None,
    pending: bool | None = None,
    limit: int = 200,
    app_id: int | None = None,
) -> list[dict[str, Any]]:
    """Schedule reminders and memos, by time (those without one last), then by id; ``pending``: only
    those still to be sent (True) or only those done with, sent or refused (False); ``app_id``: only
    that app's. Each has ``refusal`` as :func:`get_schedule_item`."""
    q = sa.select(si)
    if app_id is not None:
        q = q.where(si.c.app_id == app_id)
    if kind is not None:
        q = q.where(si.c.kind == kind)
    if mobile is not None:
        q = q.where(si.c.mobile == mobile)
    if pending is True:
        q = q.where(si.c.sent_at.is_(None), si.c.remind_at.is_not(None))
    elif pending is False:
        q = q.where(si.c.sent_at.is_not(None))
    no_time_last = sa.case((si.c.remind_at.is_(None), 1), else_=0)
    q = q.order_by(no_time_last, si.c.remind_at, si.c.id).limit(limit)
    return _with_refusals(conn, [dict(x) for x in conn.execute(q).mappings()])
