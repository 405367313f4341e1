"""``masd replies``: the replies (上行短信) masd received, where routing sent them, and the ones nobody
owned (``--unmatched``), which an operator can hand to an app (``masd replies assign``)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from masd.cli.common import (
    ConfigOption,
    JsonOption,
    fail,
    jsonable,
    open_store,
    out,
    print_json,
    read_config,
    run_async,
)
from masd.core.times import local_text
from masd.store import apps as app_store
from masd.store import replies as reply_store

__all__ = ["replies_app"]

replies_app = typer.Typer(
    help="Replies from handsets (上行短信): list them, see unmatched ones, hand one to an app.",
    invoke_without_command=True,
)

MATCHED_STYLE = {
    "extension": "green",
    "keyword": "cyan",
    "recent": "yellow",
    "manual": "magenta",
    "none": "red",
}


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value.strip().replace("/", "-")).astimezone().timestamp()
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date; use e.g. 2026-11-23 or '2026-11-23 09:00'", param_hint="--since"
        ) from None


@replies_app.callback()
def replies_list(
    ctx: typer.Context,
    unmatched: Annotated[
        bool, typer.Option("--unmatched", help="Only replies no app owns (未匹配的回复).")
    ] = False,
    app: Annotated[str | None, typer.Option("--app", help="Only replies routed to this app.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only replies received since this local time.")
    ] = None,
    after: Annotated[int, typer.Option("--after", help="Only replies with a larger id (a cursor).")] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="At most this many.")] = 200,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List replies, oldest first (回复列表)."""
    if ctx.invoked_subcommand is not None:
        return
    if unmatched and app:
        raise typer.BadParameter("give --unmatched or --app, not both", param_hint="--app")
    since_ts = _since(since)
    cfg = read_config(config)
    with open_store(cfg) as db:
        names = {r["id"]: r["name"] for r in run_async(lambda: db.read(app_store.list_apps))}
        app_id = None
        if app is not None:
            app_id = next((i for i, n in names.items() if n == app), None)
            if app_id is None:
                fail(f"no app named {app!r}; 'masd apps list' shows them")
        rows = run_async(
            lambda: db.read(
                lambda c: reply_store.list_replies(
                    c, app_id=app_id, unmatched=unmatched, after=after, limit=limit, since=since_ts
                )
            )
        )
    for r in rows:
        r["app"] = names.get(r["app_id"]) if r["app_id"] is not None else None
    if as_json:
        print_json(jsonable(rows))
        return
    if not rows:
        what = "unmatched replies" if unmatched else "replies"
        out.print(f"no {what}" + (f" for app {app!r}" if app else ""), markup=False)
        return
    table = Table(show_edge=False)
    for col in ("id", "received", "from", "to", "app", "matched by", "text"):
        table.add_column(col, no_wrap=col != "text")
    for r in rows:
        table.add_row(
            str(r["id"]),
            local_text(r["received_at"]),
            r["sender"],
            r["destination"],
            Text(r["app"] or "-"),
            Text(r["matched_by"], style=MATCHED_STYLE.get(r["matched_by"], "")),
            Text(r["text"]),
        )
    out.print(table)


@replies_app.command("assign")
def replies_assign(
    reply_id: Annotated[
        int, typer.Argument(help="The unmatched reply's id (from 'masd replies --unmatched').")
    ],
    app: Annotated[str, typer.Argument(help="The app that should have it.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Hand an unmatched reply to an app (指定回复归属); the app is told as if it had been routed."""
    cfg = read_config(config)
    with open_store(cfg) as db:
        row = run_async(lambda: db.read(lambda c: app_store.get_app(c, app)))
        if row is None:
            fail(f"no active app named {app!r}")
        app_id = int(row["id"])
        ok = run_async(
            lambda: db.write(lambda c: reply_store.reroute(c, reply_id, app_id=app_id, now=time.time()))
        )
    if not ok:
        fail(f"reply {reply_id} does not exist or already belongs to an app")
    result: dict[str, Any] = {"reply_id": reply_id, "app": app}
    if as_json:
        print_json(result)
    else:
        out.print(f"reply {reply_id} now belongs to {app!r}", markup=False)
