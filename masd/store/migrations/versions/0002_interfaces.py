"""Interfaces: app permissions and extensions, reply routing, the app event outbox, webhooks, DB polling.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 01:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("apps", schema=None) as b:
        b.add_column(sa.Column("channels", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("rate", sa.Double(), nullable=True))
        b.add_column(sa.Column("quota_per_day", sa.Integer(), nullable=True))
        b.add_column(sa.Column("extension", sa.String(length=12), nullable=True))
        b.add_column(sa.Column("webhook_url", sa.String(length=512), nullable=True))
        b.add_column(sa.Column("webhook_secret", sa.String(length=96), nullable=True))
        b.create_unique_constraint(op.f("uq_apps_extension"), ["extension"])
    with op.batch_alter_table("messages", schema=None) as b:
        b.add_column(sa.Column("notify", sa.SmallInteger(), server_default="0", nullable=False))
    with op.batch_alter_table("deliveries", schema=None) as b:
        b.add_column(sa.Column("error_code", sa.Integer(), nullable=True))
        b.create_index("ix_deliveries_recipient", ["recipient", "id"], unique=False)
    with op.batch_alter_table("replies", schema=None) as b:
        b.add_column(sa.Column("app_id", Id, nullable=True))
        b.add_column(sa.Column("matched_by", sa.String(length=16), server_default="none", nullable=False))
        b.add_column(sa.Column("extension", sa.String(length=21), server_default="", nullable=False))
        b.add_column(sa.Column("delivery_id", Id, nullable=True))
        b.create_index("ix_replies_app_id", ["app_id", "id"], unique=False)
    op.create_table(
        "app_usage",
        sa.Column("app_id", Id, nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("recipients", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "day", name=op.f("pk_app_usage")),
    )
    op.create_table(
        "app_events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("app_id", Id, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("delivery_id", Id, nullable=True),
        sa.Column("reply_id", Id, nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_events")),
    )
    op.create_index("ix_app_events_app_id", "app_events", ["app_id", "id"], unique=False)
    op.create_table(
        "event_cursors",
        sa.Column("app_id", Id, nullable=False),
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("last_event_id", Id, nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", "consumer", name=op.f("pk_event_cursors")),
    )
    op.create_table(
        "webhook_parked",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("app_id", Id, nullable=False),
        sa.Column("event_id", Id, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=512), nullable=False),
        sa.Column("parked_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_parked")),
    )
    op.create_index("ix_webhook_parked_app_id", "webhook_parked", ["app_id", "id"], unique=False)
    op.create_table(
        "dbpoll_messages",
        sa.Column("message_id", Id, nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("sm_id", sa.BigInteger(), nullable=False),
        sa.Column("src_id", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_dbpoll_messages")),
    )
    op.create_index(
        "ix_dbpoll_messages_src", "dbpoll_messages", ["code", "src_id", "message_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_dbpoll_messages_src", table_name="dbpoll_messages")
    op.drop_table("dbpoll_messages")
    op.drop_index("ix_webhook_parked_app_id", table_name="webhook_parked")
    op.drop_table("webhook_parked")
    op.drop_table("event_cursors")
    op.drop_index("ix_app_events_app_id", table_name="app_events")
    op.drop_table("app_events")
    op.drop_table("app_usage")
    with op.batch_alter_table("replies", schema=None) as b:
        b.drop_index("ix_replies_app_id")
        b.drop_column("delivery_id")
        b.drop_column("extension")
        b.drop_column("matched_by")
        b.drop_column("app_id")
    with op.batch_alter_table("deliveries", schema=None) as b:
        b.drop_index("ix_deliveries_recipient")
        b.drop_column("error_code")
    with op.batch_alter_table("messages", schema=None) as b:
        b.drop_column("notify")
    with op.batch_alter_table("apps", schema=None) as b:
        b.drop_constraint(op.f("uq_apps_extension"), type_="unique")
        b.drop_column("webhook_secret")
        b.drop_column("webhook_url")
        b.drop_column("extension")
        b.drop_column("quota_per_day")
        b.drop_column("rate")
        b.drop_column("channels")
