"""Long replies stored part by part: reply_assemblies (one per concatenated MO) and reply_parts.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 09:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _case_sensitive(length: int) -> sa.types.TypeEngine[str]:
    return (
        sa.String(length=length)
        .with_variant(mysql.VARCHAR(collation="utf8mb4_bin", length=length), "mariadb")
        .with_variant(mysql.VARCHAR(collation="utf8mb4_bin", length=length), "mysql")
    )


def upgrade() -> None:
    op.create_table(
        "reply_assemblies",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("sender", _case_sensitive(32), nullable=False),
        sa.Column("destination", _case_sensitive(32), nullable=False),
        sa.Column("reference", sa.String(length=24), nullable=False),
        sa.Column("total", sa.SmallInteger(), nullable=False),
        sa.Column("first_seen", sa.Double(), nullable=False),
        sa.Column("handed_over_at", sa.Double(), nullable=True),
        sa.Column("digests", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reply_assemblies")),
        sa.UniqueConstraint(
            "channel",
            "sender",
            "destination",
            "reference",
            name=op.f("uq_reply_assemblies_channel_sender_destination_reference"),
        ),
    )
    op.create_index(
        "ix_reply_assemblies_channel_first_seen", "reply_assemblies", ["channel", "first_seen"], unique=False
    )
    op.create_table(
        "reply_parts",
        sa.Column("assembly_id", Id, autoincrement=False, nullable=False),
        sa.Column("seq", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("codec", sa.String(length=16), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["assembly_id"],
            ["reply_assemblies.id"],
            name=op.f("fk_reply_parts_assembly_id_reply_assemblies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("assembly_id", "seq", name=op.f("pk_reply_parts")),
    )


def downgrade() -> None:
    op.drop_table("reply_parts")
    op.drop_index("ix_reply_assemblies_channel_first_seen", table_name="reply_assemblies")
    op.drop_table("reply_assemblies")
