"""Carrier signatures per app: apps.signature, the 【单位名】 the app's SMS texts carry instead of their
channel's signature.

The column is nullable and NULL means "the channel's", so existing apps keep sending as before and no
table is rewritten.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-20 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("apps", sa.Column("signature", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("apps") as batch_op:
        batch_op.drop_column("signature")
