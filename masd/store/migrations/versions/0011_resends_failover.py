"""Resends after a failed receipt and channel failover: deliveries.resends, max_resends and home_channel,
apps.resend, and delivery_history (what happened to a delivery before its current attempt).

The new delivery columns have defaults (0, 0, NULL), so existing rows read as "never resent, no resends
allowed, on their own channel" and no table is rewritten.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 15:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("resends", sa.Integer(), server_default="0", nullable=False))
    op.add_column("deliveries", sa.Column("max_resends", sa.Integer(), server_default="0", nullable=False))
    op.add_column("deliveries", sa.Column("home_channel", sa.String(length=64), nullable=True))
    op.create_index("ix_deliveries_home_channel", "deliveries", ["home_channel", "state"], unique=False)
    op.add_column("apps", sa.Column("resend", sa.Integer(), nullable=True))
    op.create_table(
        "delivery_history",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("delivery_id", Id, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("next_channel", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_delivery_history_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_history")),
    )
    op.create_index(
        "ix_delivery_history_delivery_id", "delivery_history", ["delivery_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("delivery_history")  # with its index (MariaDB will not drop one its foreign key uses)
    with op.batch_alter_table("apps") as batch_op:
        batch_op.drop_column("resend")
    op.drop_index("ix_deliveries_home_channel", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("home_channel")
        batch_op.drop_column("max_resends")
        batch_op.drop_column("resends")
