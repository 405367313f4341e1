"""Meetings: change and cancellation notices go out from the scheduler (durable, retried); schedule
items belong to the app that made them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 02:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("meeting_attendees", schema=None) as b:
        b.add_column(sa.Column("notice_revision", sa.Integer(), server_default="0", nullable=False))
        b.add_column(sa.Column("cancel_sent_at", sa.Double(), nullable=True))
    with op.batch_alter_table("schedule_items", schema=None) as b:
        b.add_column(sa.Column("app_id", Id, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("schedule_items", schema=None) as b:
        b.drop_column("app_id")
    with op.batch_alter_table("meeting_attendees", schema=None) as b:
        b.drop_column("cancel_sent_at")
        b.drop_column("notice_revision")
