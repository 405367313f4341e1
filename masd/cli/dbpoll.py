"""``masd dbpoll``: the MAS database interface's tables in an OA database (数据库接口).

``masd dbpoll init CODE`` creates ``api_mt_<CODE>``, ``api_mo_<CODE>`` and ``api_rpt_<CODE>`` in the OA
database that ``[dbpoll.CODE] url`` names (tables that exist are left alone, and checked for the
``AUTO_SN`` key masd needs). ``masd dbpoll status`` shows, per code, whether the OA database answers,
how many rows wait in each table and how many of the app's events the poller has yet to write.
"""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.table import Table

from masd.cli.common import ConfigOption, JsonOption, fail, note, open_store, out, print_json, read_config
from masd.config import Config, ConfigError
from masd.interfaces.dbpoll import describe, oa_engine
from masd.store import apps as app_store
from masd.store import mas, mas_messages

__all__ = ["dbpoll_app"]

dbpoll_app = typer.Typer(
    help="MAS database interface for OA systems (数据库接口): create and inspect the api_* tables.",
    no_args_is_help=True,
)

CodeArgument = Annotated[str, typer.Argument(help=r"Interface code (接口编码), as in \[dbpoll.CODE].")]


def _url_of(cfg: Config, code: str, url: str | None) -> str:
    if url:
        return url
    if code not in cfg.dbpoll:
        known = ", ".join(sorted(cfg.dbpoll)) or "none"
        fail(
            f"no [dbpoll.{code}] section in {cfg.source} (configured codes: {known}); add one with "
            f"url and app, or give --url",
            2,
        )
    return cfg.dbpoll[code].url


def add_key_sql(table: str, dialect: str) -> str:
    """How to give a pre-existing MAS table the AUTO_SN key masd reads rows by."""
    if dialect in ("mysql", "mariadb"):
        return f"ALTER TABLE {table} ADD COLUMN AUTO_SN BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY FIRST;"
    if dialect == "postgresql":
        return f"ALTER TABLE {table} ADD COLUMN auto_sn BIGSERIAL PRIMARY KEY;"
    if dialect == "sqlite":
        return (
            f"ALTER TABLE {table} RENAME TO {table}_old; -- then run masd dbpoll init again, and:\n"
            f"INSERT INTO {table} (sm_id, src_id, mobiles, content, send_time) "
            f"SELECT sm_id, src_id, mobiles, content, send_time FROM {table}_old; DROP TABLE {table}_old;"
        )
    return f"add an auto-increment integer primary key column AUTO_SN to {table}"


@dbpoll_app.command("init")
def init(
    code: CodeArgument,
    url: Annotated[
        str | None, typer.Option("--url", help=r"OA database URL; default: \[dbpoll.CODE] url.")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create api_mt_CODE, api_mo_CODE and api_rpt_CODE in the OA database (建表); safe to run again.

    Example: masd dbpoll init oa1
    """
    cfg = read_config(config)
    url = _url_of(cfg, code, url)
    try:
        engine = oa_engine(url, field=f"dbpoll.{code}.url")
    except ConfigError as e:
        fail(str(e), 2)
    tables = mas.mas_tables(code, engine.dialect.name)
    result: dict[str, Any] = {"database": describe(url), "created": [], "existing": [], "missing_key": []}
    try:
        with engine.begin() as conn:
            result["created"], result["existing"], result["missing_key"] = mas.create_missing(conn, tables)
    except sa.exc.SQLAlchemyError as e:
        detail = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        fail(f"OA database {describe(url)}: {detail}")
    finally:
        engine.dispose()
    if as_json:
        print_json(result)
    else:
        for name in result["created"]:
            out.print(f"created {name} (已创建)", markup=False)
        for name in result["existing"]:
            out.print(f"{name} exists; left as it is (已存在)", markup=False)
    for name in result["missing_key"]:
        note(
            f"{name} has no AUTO_SN column, which masd needs to read rows exactly once. Add it with:\n"
            f"  {add_key_sql(name, engine.dialect.name)}"
        )
    if result["missing_key"]:
        raise typer.Exit(1)


def _oa_counts(url: str, code: str) -> dict[str, Any]:
    engine = oa_engine(url, polling=True)
    tables = mas.mas_tables(code, engine.dialect.name)
    try:
        with engine.connect() as conn:
            counts = mas.row_counts(conn, tables)
            return {"reachable": True, **{f"{kind}_rows": n for kind, n in counts.items()}}
    except sa.exc.SQLAlchemyError as e:
        return {"reachable": False, "error": str(getattr(e, "orig", None) or e).strip().splitlines()[0]}
    finally:
        engine.dispose()


@dbpoll_app.command("status")
def status(
    code: Annotated[str | None, typer.Argument(help="One interface code; default: every one.")] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Per interface code: OA database reachable, rows waiting, events not yet written (状态).

    mt_rows: rows the OA wrote that masd has not taken yet. mo_rows / rpt_rows: replies and receipts
    masd wrote that the OA has not deleted yet. events_pending: receipts and replies of the app that
    the poller has still to write (a running daemon writes them within a second).
    """
    cfg = read_config(config)
    codes = [code] if code else sorted(cfg.dbpoll)
    for c in codes:
        if c not in cfg.dbpoll:
            fail(f"no [dbpoll.{c}] section in {cfg.source}", 2)
    rows: list[dict[str, Any]] = []
    with open_store(cfg) as db:
        for c in codes:
            pc = cfg.dbpoll[c]

            def masd_side(conn: sa.Connection) -> dict[str, Any]:
                app = app_store.get_app(conn, pc.app)
                if app is None:
                    return {"app_exists": False}
                pending = mas_messages.events_pending(conn, int(app["id"]), c)
                sent = mas_messages.count(conn, c)
                return {"app_exists": True, "events_pending": pending, "messages": sent}

            try:
                oa = _oa_counts(pc.url, c)
            except ConfigError as e:
                oa = {"reachable": False, "error": str(e)}
            rows.append({"code": c, "app": pc.app, "oa": describe(pc.url), **oa, **db.read_sync(masd_side)})
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no [dbpoll.CODE] sections are configured (未配置数据库接口)", markup=False)
        return
    table = Table("code", "app", "OA database", "reachable", "mt", "rpt", "mo", "events pending", "messages")
    for r in rows:
        table.add_row(
            r["code"],
            r["app"] if r.get("app_exists") else f"{r['app']} (missing!)",
            r["oa"],
            "yes" if r["reachable"] else f"no: {r.get('error', '')}",
            *(str(r.get(k, "-")) for k in ("mt_rows", "rpt_rows", "mo_rows", "events_pending", "messages")),
        )
    out.print(table)
