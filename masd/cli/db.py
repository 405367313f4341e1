"""``masd db``: the store's schema (数据库结构) — apply Alembic migrations and show the revision.

Every command that opens the store brings the schema up to date first, so a fresh data directory needs
no ``masd db upgrade``; this command does it on purpose (before starting daemons after an upgrade, say)
and shows where a database stands.
"""

from __future__ import annotations

import typer

from masd.cli.common import ConfigOption, JsonOption, open_store, out, print_json, read_config

__all__ = ["db_app"]

db_app = typer.Typer(
    help="Database schema (数据库): apply migrations, show the revision.", no_args_is_help=True
)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Apply pending migrations (升级数据库结构); safe to run again."""
    cfg = read_config(config)
    with open_store(cfg, upgrade=False) as db:
        rev = db.upgrade()
        if as_json:
            print_json({"database": db.describe(), "revision": rev})
        else:
            out.print(f"database {db.describe()} at revision {rev}", markup=False, soft_wrap=True)


@db_app.command("status")
def db_status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Show the schema revision against the newest this masd knows (数据库状态)."""
    cfg = read_config(config)
    with open_store(cfg, upgrade=False) as db:
        current, head = db.current_revision(), db.head_revision()
        if as_json:
            print_json(
                {"database": db.describe(), "current": current, "head": head, "up_to_date": current == head}
            )
            return
        state = "up to date" if current == head else "behind; run 'masd db upgrade' (any command also does)"
        out.print(
            f"database {db.describe()}: revision {current or 'none'}, head {head}: {state}",
            markup=False,
            soft_wrap=True,
        )
