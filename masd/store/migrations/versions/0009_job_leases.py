"""Several nodes: job_leases (one holder per background job), and written_at on app_events and replies.

written_at is the database server's clock when a row is inserted. PostgreSQL and MariaDB give it as a
default, set after the column is added so existing rows keep NULL (read as long settled) and no table
is rewritten; SQLite, with one writer whose ids commit in order, leaves it NULL.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The server's clock in epoch seconds, as a column default.
_NOW = {
    "postgresql": "extract(epoch from clock_timestamp())",
    "mysql": "(unix_timestamp(now(6)))",
    "mariadb": "(unix_timestamp(now(6)))",
}


def upgrade() -> None:
    op.create_table(
        "job_leases",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("epoch", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("lease_until", sa.Double(), nullable=False),
        sa.Column("taken_at", sa.Double(), nullable=True),
        sa.Column("renewed_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_job_leases")),
    )
    now = _NOW.get(op.get_bind().dialect.name)
    for table in ("app_events", "replies"):
        op.add_column(table, sa.Column("written_at", sa.Double(), nullable=True))
        if now is not None:
            op.alter_column(table, "written_at", server_default=sa.text(now), existing_type=sa.Double())


def downgrade() -> None:
    for table in ("replies", "app_events"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("written_at")
    op.drop_table("job_leases")
