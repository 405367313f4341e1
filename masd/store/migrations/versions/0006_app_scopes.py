"""Apps: scopes, the parts of the API an app may use; existing apps get the default set, which leaves
out the address book (contacts:read, contacts:write).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# masd.core.apps.DEFAULT_SCOPES as it was when this ran; a migration does not follow later changes.
DEFAULT = "meetings,messages,replies"


def upgrade() -> None:
    with op.batch_alter_table("apps", schema=None) as b:
        b.add_column(sa.Column("scopes", sa.String(length=255), nullable=True))
    apps = sa.table("apps", sa.column("scopes", sa.String))
    op.execute(apps.update().where(apps.c.scopes.is_(None)).values(scopes=DEFAULT))


def downgrade() -> None:
    with op.batch_alter_table("apps", schema=None) as b:
        b.drop_column("scopes")
