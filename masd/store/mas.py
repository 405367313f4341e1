"""The China Mobile MAS "DB interface" tables in an OA's database, and every statement masd runs on them.

An OA system that integrates with a MAS writes what it wants sent into ``api_mt_<code>``, and reads
receipts from ``api_rpt_<code>`` and replies from ``api_mo_<code>``. This module owns the layout of
those three tables (what ``masd dbpoll init`` creates) and the reads and writes of the DB poller
(:mod:`masd.interfaces.dbpoll`) and of ``masd dbpoll``: a batch of api_mt rows, their removal with the
reports of rows refused, receipts and replies written once. What a row means is decided elsewhere
(:mod:`masd.interfaces.mas_rows`). The functions take a connection of the OA's database (not masd's
store) inside a transaction the caller opened.

Column names are lower case in the metadata so that no dialect quotes them: the OA's plain SQL may then
write ``SM_ID`` or ``sm_id`` alike (PostgreSQL folds unquoted names to lower case, MySQL and SQLite
ignore case).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from masd.core.times import local_text

__all__ = [
    "DESC_LENGTH",
    "MAX_CONTENT",
    "MOBILE_LENGTH",
    "MasTables",
    "content_column",
    "create_missing",
    "finish_intake",
    "mas_tables",
    "read_mt_rows",
    "row_counts",
    "table_name",
    "unseen_rows",
    "write_reports",
]

MAX_CONTENT = 2000  # characters of CONTENT, as the MAS interface allows
MOBILE_LENGTH = 32
DESC_LENGTH = 255

# The columns that tell a report or a reply already written from a new one (see write_reports).
RPT_KEY = ("sm_id", "mobile", "rpt_code", "rpt_time")
MO_KEY = ("sm_id", "mobile", "content", "mo_time")

R = TypeVar("R", bound=Mapping[str, Any])


# ----- the tables -------------------------------------------------------------------------------------

_Key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite only autoincrements INTEGER keys
# Times an OA reads: DATETIME (TIMESTAMP on PostgreSQL), local time, whole seconds. SQLAlchemy's SQLite
# DATETIME would append microseconds; the OA expects 'yyyy-MM-dd HH:mm:ss'.
_MasTime = sa.DateTime().with_variant(
    sqlite.DATETIME(
        storage_format="%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d",
        regexp=r"(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)",
    ),
    "sqlite",
)


# utf8mb4 on MySQL/MariaDB whatever the database's default: CONTENT holds Chinese text. AUTOINCREMENT on
# SQLite: without it a key freed by a deleted row is handed out again, and a new row would then look like
# one masd has already taken.
_TABLE_OPTIONS: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mariadb_charset": "utf8mb4",
    "sqlite_autoincrement": True,
}


class MasTables(NamedTuple):
    mt: sa.Table
    mo: sa.Table
    rpt: sa.Table


def table_name(kind: str, code: str, dialect: str) -> str:
    """``api_mt_<code>`` etc. On PostgreSQL the name is lower case, as the OA's unquoted SQL folds it."""
    name = f"api_{kind}_{code}"
    return name.lower() if dialect == "postgresql" else name


def mas_tables(code: str, dialect: str, metadata: sa.MetaData | None = None) -> MasTables:
    """The three tables of one interface code, as ``masd dbpoll init`` creates them."""
    md = metadata if metadata is not None else sa.MetaData()
    mt = sa.Table(
        table_name("mt", code, dialect),
        md,
        # Not in the MAS layout: masd's key for idempotent intake. The OA's INSERTs need not name it.
        sa.Column("auto_sn", _Key, primary_key=True, autoincrement=True),
        sa.Column("sm_id", sa.BigInteger, nullable=True, server_default=sa.text("0")),
        sa.Column("src_id", sa.BigInteger, nullable=True, server_default=sa.text("0")),
        sa.Column("mobiles", sa.Text, nullable=False),
        sa.Column("content", sa.String(MAX_CONTENT), nullable=True),
        # Text, not DATETIME: an unreadable time must reach masd (and come back as a report), not fail
        # the OA's INSERT on one database and pass on another.
        sa.Column("send_time", sa.String(32), nullable=True),
        sa.Column("is_wap", sa.SmallInteger, nullable=True, server_default=sa.text("0")),
        sa.Column("url", sa.String(255), nullable=True),
        sa.Column("sm_type", sa.SmallInteger, nullable=True, server_default=sa.text("0")),
        sa.Column("msg_fmt", sa.SmallInteger, nullable=True, server_default=sa.text("15")),
        sa.Column("tp_pid", sa.SmallInteger, nullable=True, server_default=sa.text("0")),
        sa.Column("tp_udhi", sa.SmallInteger, nullable=True, server_default=sa.text("0")),
        sa.Column("fee_terminal_id", sa.String(32), nullable=True),
        sa.Column("fee_type", sa.String(2), nullable=True),
        sa.Column("fee_code", sa.String(6), nullable=True),
        sa.Column("fee_user_type", sa.SmallInteger, nullable=True),
        **_TABLE_OPTIONS,
    )
    mo = sa.Table(
        table_name("mo", code, dialect),
        md,
        sa.Column("auto_sn", _Key, primary_key=True, autoincrement=True),
        sa.Column("sm_id", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("mobile", sa.String(MOBILE_LENGTH), nullable=False),
        sa.Column("content", sa.String(MAX_CONTENT), nullable=True),
        sa.Column("mo_time", _MasTime, nullable=True),
        sa.Column("msg_fmt", sa.SmallInteger, nullable=True),
        **_TABLE_OPTIONS,
    )
    rpt = sa.Table(
        table_name("rpt", code, dialect),
        md,
        sa.Column("auto_sn", _Key, primary_key=True, autoincrement=True),
        sa.Column("sm_id", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("mobile", sa.String(MOBILE_LENGTH), nullable=False),
        sa.Column("rpt_code", sa.Integer, nullable=False),
        sa.Column("rpt_desc", sa.String(DESC_LENGTH), nullable=True),
        sa.Column("rpt_time", _MasTime, nullable=True),
        **_TABLE_OPTIONS,
    )
    return MasTables(mt, mo, rpt)


# ----- intake: reading api_mt and removing what was taken ------------------------------------------------


def content_column(conn: sa.Connection, table: sa.Table) -> sa.ColumnElement[Any]:
    """How to select CONTENT so that GBK bytes arrive as bytes: on MySQL/MariaDB a latin1 or ascii
    column (where legacy OA code stores GBK bytes unconverted) is read as BINARY; elsewhere the driver
    already gives bytes for BLOB/bytea columns and (on the polling SQLite engine) for text."""
    col = table.c.content
    if conn.dialect.name not in ("mysql", "mariadb"):
        return col
    charset = conn.execute(
        sa.text(
            "SELECT CHARACTER_SET_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND COLUMN_NAME = 'content'"
        ),
        {"t": table.name},
    ).scalar()
    if charset is None or str(charset).lower() in ("latin1", "ascii", "binary"):
        return sa.cast(col, sa.LargeBinary).label("content")
    return col


def read_mt_rows(
    conn: sa.Connection, mt: sa.Table, content: sa.ColumnElement[Any], *, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` api_mt rows, oldest ``AUTO_SN`` first, with the columns intake reads; CONTENT
    selected as ``content`` says (see :func:`content_column`)."""
    q = (
        sa.select(
            mt.c.auto_sn,
            mt.c.sm_id,
            mt.c.src_id,
            mt.c.mobiles,
            content,
            mt.c.send_time,
            mt.c.is_wap,
            mt.c.url,
        )
        .order_by(mt.c.auto_sn)
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(q)]


def finish_intake(
    conn: sa.Connection, tables: MasTables, done: Sequence[int], reports: Sequence[Mapping[str, Any]]
) -> None:
    """Write the reports of a batch (rows and numbers refused) into api_rpt and delete the batch's rows
    that masd has taken or refused (``done``: their AUTO_SN) from api_mt, in the caller's transaction."""
    if reports:
        conn.execute(sa.insert(tables.rpt), list(reports))
    conn.execute(sa.delete(tables.mt).where(tables.mt.c.auto_sn.in_(list(done))))


# ----- reports: receipts into api_rpt, replies into api_mo ------------------------------------------------


def write_reports(
    conn: sa.Connection,
    tables: MasTables,
    rpt: Sequence[Mapping[str, Any]],
    mo: Sequence[Mapping[str, Any]],
    *,
    dedupe: bool,
) -> None:
    """Write receipts into api_rpt and replies into api_mo. ``dedupe``: the OA may already hold some of
    them (after a restart or a failure they were written and the cursor did not move), so leave out
    those it holds."""
    rpt_rows = list(rpt)
    mo_rows = list(mo)
    if dedupe:
        rpt_rows = unseen_rows(conn, tables.rpt, rpt_rows, RPT_KEY, "sm_id")
        mo_rows = unseen_rows(conn, tables.mo, mo_rows, MO_KEY, "mobile")
    if rpt_rows:
        conn.execute(sa.insert(tables.rpt), rpt_rows)
    if mo_rows:
        conn.execute(sa.insert(tables.mo), mo_rows)


def _key_part(v: Any) -> str:
    """One column of a row written and of a row read back, in the same form (SQLite gives bytes)."""
    if isinstance(v, dt.datetime):
        return local_text(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).decode("utf-8", errors="replace")
    return str(v)


def unseen_rows(
    conn: sa.Connection, table: sa.Table, rows: Sequence[R], key: tuple[str, ...], by: str
) -> list[R]:
    """The rows that the table does not already hold (compared on ``key``; looked up by ``by``)."""
    if not rows:
        return []
    wanted = list({r[by] for r in rows})
    # Read as they come from the driver: the polling engine hands SQLite's text over as bytes, which the
    # columns' own types (a DATETIME) would fail to parse; _key_part makes both sides comparable.
    columns = [sa.type_coerce(table.c[k], sa.String()) for k in key]
    held = {
        tuple(_key_part(x) for x in r)
        for r in conn.execute(sa.select(*columns).where(table.c[by].in_(wanted)))
    }
    return [r for r in rows if tuple(_key_part(r[k]) for k in key) not in held]


# ----- masd dbpoll: creating and counting -----------------------------------------------------------------


def create_missing(conn: sa.Connection, tables: MasTables) -> tuple[list[str], list[str], list[str]]:
    """Create those of the tables that do not exist; leave the others as they are. Returns (created,
    existing, existing without the ``AUTO_SN`` key masd reads rows by)."""
    created: list[str] = []
    existing: list[str] = []
    missing_key: list[str] = []
    inspector = sa.inspect(conn)
    for t in tables:
        if inspector.has_table(t.name):
            existing.append(t.name)
            columns = {c["name"].lower() for c in inspector.get_columns(t.name)}
            if "auto_sn" not in columns:
                missing_key.append(t.name)
        else:
            t.create(conn)
            created.append(t.name)
    return created, existing, missing_key


def row_counts(conn: sa.Connection, tables: MasTables) -> dict[str, int]:
    """How many rows each table holds, by kind: ``{"mt": …, "mo": …, "rpt": …}``."""
    return {
        kind: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
        for kind, t in zip(("mt", "mo", "rpt"), tables, strict=True)
    }
