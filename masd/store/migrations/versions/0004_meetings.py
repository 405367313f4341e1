"""Meeting module (会信通): meetings, attendees, their log, schedule reminders and memos.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "meetings",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("starts_at", sa.Double(), nullable=False),
        sa.Column("ends_at", sa.Double(), nullable=False),
        sa.Column("place", sa.String(length=200), server_default="", nullable=False),
        sa.Column("agenda", sa.Text(), server_default="", nullable=False),
        sa.Column("organiser", sa.String(length=100), server_default="", nullable=False),
        sa.Column("attachments", sa.Text(), server_default="[]", nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("send_at", sa.Double(), nullable=False),
        sa.Column("reply_deadline", sa.Double(), nullable=True),
        sa.Column("second_sms_after", sa.Integer(), nullable=True),
        sa.Column("call_after", sa.Integer(), nullable=True),
        sa.Column("remind_before", sa.Integer(), nullable=True),
        sa.Column("checkin_code", sa.String(length=12), server_default="", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.Integer(), server_default="0", nullable=False),
        sa.Column("app_id", Id, nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("notified_at", sa.Double(), nullable=True),
        sa.Column("cancelled_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meetings")),
    )
    op.create_index("ix_meetings_starts_at", "meetings", ["starts_at"], unique=False)
    op.create_index("ix_meetings_state", "meetings", ["state", "send_at"], unique=False)
    op.create_table(
        "meeting_attendees",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("meeting_id", Id, nullable=False),
        sa.Column("person_id", Id, nullable=True),
        sa.Column("name", sa.String(length=100), server_default="", nullable=False),
        sa.Column("mobile", sa.String(length=24), nullable=False),
        sa.Column("department", sa.String(length=255), server_default="", nullable=False),
        sa.Column("notice_message_id", Id, nullable=True),
        sa.Column("notified_at", sa.Double(), nullable=True),
        sa.Column("notice_state", sa.String(length=16), nullable=True),
        sa.Column("delivered_at", sa.Double(), nullable=True),
        sa.Column("response", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.String(length=500), server_default="", nullable=False),
        sa.Column("responded_at", sa.Double(), nullable=True),
        sa.Column("response_late", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("response_via", sa.String(length=8), nullable=True),
        sa.Column("comment", sa.String(length=500), server_default="", nullable=False),
        sa.Column("second_sms_at", sa.Double(), nullable=True),
        sa.Column("call_message_id", Id, nullable=True),
        sa.Column("called_at", sa.Double(), nullable=True),
        sa.Column("call_outcome", sa.String(length=32), nullable=True),
        sa.Column("reminded_at", sa.Double(), nullable=True),
        sa.Column("checked_in_at", sa.Double(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name=op.f("fk_meeting_attendees_meeting_id_meetings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meeting_attendees")),
        sa.UniqueConstraint("meeting_id", "mobile", name=op.f("uq_meeting_attendees_meeting_id_mobile")),
    )
    op.create_index(
        "ix_meeting_attendees_mobile", "meeting_attendees", ["mobile", "meeting_id"], unique=False
    )
    op.create_index("ix_meeting_attendees_notice", "meeting_attendees", ["notice_message_id"], unique=False)
    op.create_index("ix_meeting_attendees_call", "meeting_attendees", ["call_message_id"], unique=False)
    op.create_table(
        "meeting_log",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("meeting_id", Id, nullable=True),
        sa.Column("attendee_id", Id, nullable=True),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meeting_log")),
    )
    op.create_index("ix_meeting_log_meeting_id", "meeting_log", ["meeting_id", "id"], unique=False)
    op.create_table(
        "schedule_items",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("person_id", Id, nullable=True),
        sa.Column("name", sa.String(length=100), server_default="", nullable=False),
        sa.Column("mobile", sa.String(length=24), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), server_default="", nullable=False),
        sa.Column("remind_at", sa.Double(), nullable=True),
        sa.Column("sent_at", sa.Double(), nullable=True),
        sa.Column("message_id", Id, nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_items")),
    )
    op.create_index("ix_schedule_items_due", "schedule_items", ["sent_at", "remind_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_schedule_items_due", table_name="schedule_items")
    op.drop_table("schedule_items")
    op.drop_index("ix_meeting_log_meeting_id", table_name="meeting_log")
    op.drop_table("meeting_log")
    op.drop_index("ix_meeting_attendees_call", table_name="meeting_attendees")
    op.drop_index("ix_meeting_attendees_notice", table_name="meeting_attendees")
    op.drop_index("ix_meeting_attendees_mobile", table_name="meeting_attendees")
    op.drop_table("meeting_attendees")
    op.drop_index("ix_meetings_state", table_name="meetings")
    op.drop_index("ix_meetings_starts_at", table_name="meetings")
    op.drop_table("meetings")
