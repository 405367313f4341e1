"""Row helpers shared by store modules: inserting a row unless another transaction just did."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["insert_missing"]


def insert_missing(conn: sa.Connection, table: sa.Table, row: dict[str, object]) -> None:
    """Insert ``row`` unless one with its key exists; a concurrent insert of the same key waits for the
    other transaction and then does nothing, instead of failing on the unique key."""
    name = conn.dialect.name
    stmt: sa.Executable
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table).values(row).on_conflict_do_nothing()
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).values(row).on_conflict_do_nothing()
    elif name in ("mysql", "mariadb"):
        stmt = sa.insert(table).values(row).prefix_with("IGNORE")
    else:
        stmt = sa.insert(table).values(row)
    conn.execute(stmt)
