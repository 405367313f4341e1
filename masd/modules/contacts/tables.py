"""The address book's tables (通讯录). Only :mod:`masd.modules.contacts` writes them.

They live on the core's metadata so that one Alembic chain (revision 0003) migrates everything. Times are
epoch seconds, like the core's. Names that must be unique (a department's path, a group's name, a
mobile, a tag) compare byte for byte on every engine: MariaDB's default collation would otherwise call
"IT" and "it" the same group while SQLite and PostgreSQL would not.

A department stores its whole path ("市政府/办公室/秘书科") beside its parent, so a department and all
below it are found with one prefix comparison, and people name departments the way they say them.
"""

from __future__ import annotations

import sqlalchemy as sa

from masd.store.tables import CaseSensitive, Id, Time, metadata

__all__ = ["departments", "group_members", "groups", "people", "person_tags"]

# Longest department path, group name and tag; the meeting module copies a department path into
# meeting_attendees.department (255 characters).
PATH_LENGTH = 255
NAME_LENGTH = 100
TAG_LENGTH = 50
TITLE_LENGTH = 100

departments = sa.Table(
    "contact_departments",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("parent_id", Id, sa.ForeignKey("contact_departments.id"), nullable=True),
    sa.Column("path", CaseSensitive(PATH_LENGTH), nullable=False, unique=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Index("ix_contact_departments_parent_id", "parent_id"),
)

people = sa.Table(
    "contact_people",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(NAME_LENGTH), nullable=False),
    # Normalised by masd.core.recipients.normalize: the form replies arrive from.
    sa.Column("mobile", CaseSensitive(24), nullable=False, unique=True),
    sa.Column("department_id", Id, sa.ForeignKey("contact_departments.id"), nullable=True),
    sa.Column("title", sa.String(TITLE_LENGTH), nullable=False, server_default=""),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Index("ix_contact_people_department_id", "department_id"),
    sa.Index("ix_contact_people_name", "name"),
)

person_tags = sa.Table(
    "contact_person_tags",
    metadata,
    sa.Column("person_id", Id, sa.ForeignKey("contact_people.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", CaseSensitive(TAG_LENGTH), primary_key=True),
    sa.Index("ix_contact_person_tags_tag", "tag"),
)

groups = sa.Table(
    "contact_groups",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", CaseSensitive(NAME_LENGTH), nullable=False, unique=True),
    sa.Column("created_at", Time, nullable=False),
)

group_members = sa.Table(
    "contact_group_members",
    metadata,
    sa.Column("group_id", Id, sa.ForeignKey("contact_groups.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("person_id", Id, sa.ForeignKey("contact_people.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("added_at", Time, nullable=False),
    sa.Index("ix_contact_group_members_person_id", "person_id"),
)
