"""The address book (通讯录): people, a department tree, groups, tags.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 09:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _exact(length: int) -> sa.types.TypeEngine[str]:
    # Compared byte for byte on MariaDB too (its default collation ignores case).
    return sa.String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "contact_departments",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("parent_id", Id, nullable=True),
        sa.Column("path", _exact(255), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["contact_departments.id"],
            name=op.f("fk_contact_departments_parent_id_contact_departments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_departments")),
        sa.UniqueConstraint("path", name=op.f("uq_contact_departments_path")),
    )
    op.create_index("ix_contact_departments_parent_id", "contact_departments", ["parent_id"], unique=False)
    op.create_table(
        "contact_people",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("mobile", _exact(24), nullable=False),
        sa.Column("department_id", Id, nullable=True),
        sa.Column("title", sa.String(length=100), server_default="", nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["contact_departments.id"],
            name=op.f("fk_contact_people_department_id_contact_departments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_people")),
        sa.UniqueConstraint("mobile", name=op.f("uq_contact_people_mobile")),
    )
    op.create_index("ix_contact_people_department_id", "contact_people", ["department_id"], unique=False)
    op.create_index("ix_contact_people_name", "contact_people", ["name"], unique=False)
    op.create_table(
        "contact_person_tags",
        sa.Column("person_id", Id, nullable=False),
        sa.Column("tag", _exact(50), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["contact_people.id"],
            name=op.f("fk_contact_person_tags_person_id_contact_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("person_id", "tag", name=op.f("pk_contact_person_tags")),
    )
    op.create_index("ix_contact_person_tags_tag", "contact_person_tags", ["tag"], unique=False)
    op.create_table(
        "contact_groups",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("name", _exact(100), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_groups")),
        sa.UniqueConstraint("name", name=op.f("uq_contact_groups_name")),
    )
    op.create_table(
        "contact_group_members",
        sa.Column("group_id", Id, nullable=False),
        sa.Column("person_id", Id, nullable=False),
        sa.Column("added_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["contact_groups.id"],
            name=op.f("fk_contact_group_members_group_id_contact_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["contact_people.id"],
            name=op.f("fk_contact_group_members_person_id_contact_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "person_id", name=op.f("pk_contact_group_members")),
    )
    op.create_index(
        "ix_contact_group_members_person_id", "contact_group_members", ["person_id"], unique=False
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; MariaDB refuses to drop an index a foreign key still uses.
    for table in (
        "contact_group_members",
        "contact_groups",
        "contact_person_tags",
        "contact_people",
        "contact_departments",
    ):
        op.drop_table(table)
