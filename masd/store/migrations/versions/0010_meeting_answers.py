"""Meetings: every answer an attendee gave (meeting_answers), and the reply awaiting an answer after an
ask-back (pending_reply, pending_at, ask_backs on meeting_attendees).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "meeting_answers",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("meeting_id", Id, nullable=False),
        sa.Column("attendee_id", Id, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.String(length=500), server_default="", nullable=False),
        sa.Column("reply", sa.Text(), server_default="", nullable=False),
        sa.Column("reply_id", Id, nullable=True),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.Column("late", sa.SmallInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name=op.f("fk_meeting_answers_meeting_id_meetings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["attendee_id"],
            ["meeting_attendees.id"],
            name=op.f("fk_meeting_answers_attendee_id_meeting_attendees"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meeting_answers")),
    )
    op.create_index(
        "ix_meeting_answers_meeting_id", "meeting_answers", ["meeting_id", "attendee_id", "id"], unique=False
    )
    with op.batch_alter_table("meeting_attendees", schema=None) as b:
        b.add_column(sa.Column("pending_reply", sa.Text(), nullable=True))
        b.add_column(sa.Column("pending_at", sa.Double(), nullable=True))
        b.add_column(sa.Column("ask_backs", sa.SmallInteger(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("meeting_attendees", schema=None) as b:
        b.drop_column("ask_backs")
        b.drop_column("pending_at")
        b.drop_column("pending_reply")
    # Dropping the table drops its indexes too; on MariaDB the index cannot go first, since the
    # foreign key on meeting_id needs it.
    op.drop_table("meeting_answers")
