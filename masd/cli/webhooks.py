"""``masd webhooks``: how far each app's webhook has got, the events parked after every attempt
failed, and sending those again.

The commands read and write the store the daemon uses; the daemon's webhook sender (see
:mod:`masd.interfaces.webhooks`) picks up a retry request within a second or so. Results go to stdout
(one JSON document with ``--json``), notes and errors to stderr; exit codes are 0 success, 1 failure,
2 usage.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.table import Table
from rich.text import Text

from masd.cli.common import (
    ConfigOption,
    JsonOption,
    fail,
    jsonable,
    note,
    open_store,
    out,
    print_json,
    read_config,
    run_async,
)
from masd.core.times import local_text
from masd.store import apps as app_store
from masd.store import webhooks as hooks
from masd.store.db import Database

__all__ = ["webhooks_app"]

webhooks_app = typer.Typer(
    help="Webhooks (回调通知): each app's progress, parked events, and sending them again. "
    "Without a command: the status of every app's webhook.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

AppOption = Annotated[
    str | None, typer.Option("--app", help="Only this application (只看此应用), by name.", show_default=False)
]


def _app_id(db: Database, name: str) -> int:
    row = run_async(lambda: db.read(lambda c: app_store.get_app(c, name)))
    if row is None:
        fail(f"--app: no active app named {name!r}; 'masd apps list' shows them")
    return int(row["id"])


def _print_status(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no app has a webhook; 'masd apps set NAME --webhook URL' gives one a webhook")
        return
    table = Table(show_edge=False)
    for name in ("app", "webhook", "cursor", "latest event", "behind", "parked"):
        table.add_column(
            name, no_wrap=name != "webhook", justify="right" if name not in ("app", "webhook") else "left"
        )
    for r in rows:
        url = Text(r["webhook_url"]) if r["active"] else Text(r["webhook_url"] or "(none)", style="dim")
        table.add_row(
            Text(r["app"]),
            url,
            str(r["cursor"]),
            str(r["latest_event"]),
            Text(str(r["behind"]), style="yellow" if r["behind"] else ""),
            Text(str(r["parked"]), style="red" if r["parked"] else ""),
        )
    out.print(table)


@webhooks_app.callback()
def webhooks_default(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Webhooks (回调通知). Without a command, show each app's webhook status."""
    if ctx.invoked_subcommand is None:
        status(config=config, as_json=as_json)


@webhooks_app.command("status")
def status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Each app's webhook (回调状态): its cursor, the latest event, events not yet sent, parked events."""
    cfg = read_config(config)
    with open_store(cfg) as db:
        rows = run_async(lambda: db.read(hooks.webhook_status))
    _print_status(rows, as_json)


@webhooks_app.command("parked")
def parked(app: AppOption = None, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List events parked after every attempt failed (发送失败、已搁置的事件), oldest first."""
    cfg = read_config(config)
    with open_store(cfg) as db:
        app_id = _app_id(db, app) if app else None
        rows = run_async(lambda: db.read(lambda c: hooks.list_parked(c, app_id=app_id)))
    if as_json:
        print_json(jsonable(rows))
        return
    if not rows:
        out.print("no parked webhook events" + (f" for app {app!r}" if app else ""), markup=False)
        return
    table = Table(show_edge=False)
    for name in ("id", "app", "event", "type", "attempts", "parked", "last error"):
        table.add_column(name, no_wrap=name != "last error")
    for r in rows:
        table.add_row(
            str(r["id"]),
            Text(r["app"]),
            str(r["event_id"]),
            r["type"] or "(gone)",
            Text("retry requested", style="yellow") if r["retry_requested"] else str(r["attempts"]),
            local_text(r["parked_at"]),
            Text(r["last_error"]),
        )
    out.print(table)
    note("'masd webhooks retry ID…' (or --app NAME) sends them again", style="dim")


@webhooks_app.command("retry")
def retry(
    ids: Annotated[
        list[int] | None,
        typer.Argument(
            help="Parked event ids from 'masd webhooks parked' (搁置事件编号).", show_default=False
        ),
    ] = None,
    app: AppOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send parked events again (重新发送), by id or every one of --app.

    The running daemon sends them before that app's next new event, with webhooks.max_attempts
    attempts again."""
    if not ids and not app:
        fail("name the parked events to send again (ids from 'masd webhooks parked') or --app NAME", 2)
    wanted = list(ids or [])
    cfg = read_config(config)
    with open_store(cfg) as db:
        app_id = _app_id(db, app) if app else None

        def mark(conn: sa.Connection) -> tuple[int, list[int]]:
            missing = hooks.not_parked(conn, wanted, app_id=app_id)
            return hooks.request_retry(conn, ids=wanted, app_id=app_id), missing

        count, missing = run_async(lambda: db.write(mark))
    if as_json:
        print_json({"retry_requested": count, "not_parked": missing})
    else:
        out.print(
            f"{count} parked event{'s' if count != 1 else ''} will be sent again by the running daemon",
            markup=False,
        )
    if missing:
        where = f" for app {app!r}" if app else ""
        fail(f"not parked{where}: {', '.join(map(str, missing))} ('masd webhooks parked' lists them)")


@webhooks_app.command("skip")
def skip(
    app: Annotated[str, typer.Argument(help="Application name (应用名称).")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Skip the events not yet sent to an app's webhook (跳过未发送的事件).

    For an app that gets a webhook with a backlog it does not want. Parked events are left as they
    are."""
    cfg = read_config(config)
    with open_store(cfg) as db:
        app_id = _app_id(db, app)
        cursor = run_async(lambda: db.write(lambda c: hooks.skip_to_latest(c, app_id, now=time.time())))
    if as_json:
        print_json({"app": app, "cursor": cursor})
    else:
        out.print(f"app {app!r}: webhook events up to {cursor} skipped", markup=False)
