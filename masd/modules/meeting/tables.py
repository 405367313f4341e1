"""The meeting module's own tables (会信通). Only this module writes them; it reaches the core through the
:class:`~masd.core.gateway.Gateway` and never writes the core's tables.

They live on the core's metadata so that one Alembic chain migrates everything. Times are epoch seconds.
"""

from __future__ import annotations

import sqlalchemy as sa

from masd.store.tables import Id, Time, metadata

__all__ = ["answers", "attendees", "meeting_log", "meetings", "schedule_items"]

meetings = sa.Table(
    "meetings",
    metadata,
    # The id is also the meeting code shown in notices ("#42") and the extension after the module's own.
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("starts_at", Time, nullable=False),
    sa.Column("ends_at", Time, nullable=False),
    sa.Column("place", sa.String(200), nullable=False, server_default=""),
    sa.Column("agenda", sa.Text, nullable=False, server_default=""),
    sa.Column("organiser", sa.String(100), nullable=False, server_default=""),
    sa.Column("attachments", sa.Text, nullable=False, server_default="[]"),  # JSON list of file names
    sa.Column("template", sa.Text, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),  # sms | sms+voice | voice
    sa.Column("send_at", Time, nullable=False),
    sa.Column("reply_deadline", Time, nullable=True),
    sa.Column("second_sms_after", sa.Integer, nullable=True),  # seconds after the notice
    sa.Column("call_after", sa.Integer, nullable=True),  # seconds after the second SMS (or the notice)
    sa.Column("remind_before", sa.Integer, nullable=True),  # seconds before the start
    sa.Column("checkin_code", sa.String(12), nullable=False, server_default=""),
    sa.Column("state", sa.String(16), nullable=False),  # scheduled | notified | cancelled
    sa.Column("revision", sa.Integer, nullable=False, server_default="0"),  # bumped by each change notice
    sa.Column("app_id", Id, nullable=True),  # the app that created it (HTTP), if any
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("notified_at", Time, nullable=True),
    sa.Column("cancelled_at", Time, nullable=True),
    sa.Index("ix_meetings_starts_at", "starts_at"),
    sa.Index("ix_meetings_state", "state", "send_at"),
)

attendees = sa.Table(
    "meeting_attendees",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("meeting_id", Id, sa.ForeignKey("meetings.id", ondelete="CASCADE"), nullable=False),
    sa.Column("person_id", Id, nullable=True),  # from the address book; NULL for a bare number
    sa.Column("name", sa.String(100), nullable=False, server_default=""),
    sa.Column("mobile", sa.String(24), nullable=False),
    sa.Column("department", sa.String(255), nullable=False, server_default=""),
    # The notice: the core message that carried it, and what became of it.
    sa.Column("notice_message_id", Id, nullable=True),
    sa.Column("notified_at", Time, nullable=True),
    # The meeting's revision the attendee was last told (the notice, then each change notice), and
    # when they were told of a cancellation: the scheduler sends what is missing, so none is lost.
    sa.Column("notice_revision", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cancel_sent_at", Time, nullable=True),
    sa.Column("notice_state", sa.String(16), nullable=True),  # the delivery's final state
    sa.Column("delivered_at", Time, nullable=True),
    # The answer: attend | decline | leave, from an SMS or a keypress.
    sa.Column("response", sa.String(16), nullable=True),
    sa.Column("reason", sa.String(500), nullable=False, server_default=""),
    sa.Column("responded_at", Time, nullable=True),
    sa.Column("response_late", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("response_via", sa.String(8), nullable=True),  # sms | voice
    sa.Column("comment", sa.String(500), nullable=False, server_default=""),
    # A reply that could not be read for sure: nothing was recorded from it and the attendee was asked
    # back (at most ``[meeting] ask_back_limit`` times per meeting, counted in ask_backs). Cleared by
    # the next answer recorded.
    sa.Column("pending_reply", sa.Text, nullable=True),
    sa.Column("pending_at", Time, nullable=True),
    sa.Column("ask_backs", sa.SmallInteger, nullable=False, server_default="0"),
    # Escalation: the second SMS, then the call.
    sa.Column("second_sms_at", Time, nullable=True),
    sa.Column("call_message_id", Id, nullable=True),
    sa.Column("called_at", Time, nullable=True),
    sa.Column("call_outcome", sa.String(32), nullable=True),  # answered | no-answer | … from the receipt
    sa.Column("reminded_at", Time, nullable=True),  # the reminder before the start (attending only)
    sa.Column("checked_in_at", Time, nullable=True),
    sa.Column("updated_at", Time, nullable=False),
    sa.UniqueConstraint("meeting_id", "mobile"),
    sa.Index("ix_meeting_attendees_mobile", "mobile", "meeting_id"),
    sa.Index("ix_meeting_attendees_notice", "notice_message_id"),
    sa.Index("ix_meeting_attendees_call", "call_message_id"),
)

# Every answer recorded for an attendee, oldest first: the attendee's row holds the latest (a later reply
# replaces an earlier answer), this keeps how it came to be. kind: attend | decline | leave | checkin;
# text: the leave's reason or the note after another answer; reply: the reply as it came (cleaned of
# what cannot be stored), reply_id: the core's reply it came from (NULL for a keypress).
answers = sa.Table(
    "meeting_answers",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("meeting_id", Id, sa.ForeignKey("meetings.id", ondelete="CASCADE"), nullable=False),
    sa.Column("attendee_id", Id, sa.ForeignKey("meeting_attendees.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("text", sa.String(500), nullable=False, server_default=""),
    sa.Column("reply", sa.Text, nullable=False, server_default=""),
    sa.Column("reply_id", Id, nullable=True),
    sa.Column("via", sa.String(8), nullable=False),  # sms | voice
    sa.Column("late", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Index("ix_meeting_answers_meeting_id", "meeting_id", "attendee_id", "id"),
)

# What happened, for the history and for anyone asking "why was this person not called?".
meeting_log = sa.Table(
    "meeting_log",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("meeting_id", Id, nullable=True),
    sa.Column("attendee_id", Id, nullable=True),
    sa.Column("at", Time, nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_meeting_log_meeting_id", "meeting_id", "id"),
)

# Schedule reminders (日程提醒) and memos (备忘录): a person's note, sent by SMS at its time if it has one.
schedule_items = sa.Table(
    "schedule_items",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(8), nullable=False),  # reminder | memo
    sa.Column("app_id", Id, nullable=True),  # the app that made it (HTTP); NULL from the CLI
    sa.Column("person_id", Id, nullable=True),
    sa.Column("name", sa.String(100), nullable=False, server_default=""),
    sa.Column("mobile", sa.String(24), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("text", sa.Text, nullable=False, server_default=""),
    sa.Column("remind_at", Time, nullable=True),
    sa.Column("sent_at", Time, nullable=True),
    sa.Column("message_id", Id, nullable=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Index("ix_schedule_items_due", "sent_at", "remind_at"),
)
