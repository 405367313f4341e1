"""Alembic environment for masd's own tables.

masd runs migrations in-process (``masd db upgrade`` and at start), handing Alembic an open connection
through ``config.attributes["connection"]``; the ``alembic`` command line works too, with ``-x url=…``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

# The modules' tables live on the same metadata; importing them registers them for autogenerate.
import masd.modules.contacts.tables
import masd.modules.meeting.tables  # noqa: F401
from masd.store.tables import metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        version_table="masd_alembic_version",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = sa.create_engine(str(url))
    with engine.connect() as conn:
        _run(conn)
