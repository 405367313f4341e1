"""Apps: a token bucket per rate-limited app, charged in the transaction that stores its work.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 04:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "app_rates",
        sa.Column("app_id", Id, autoincrement=False, nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("app_id", name=op.f("pk_app_rates")),
    )


def downgrade() -> None:
    op.drop_table("app_rates")
