"""``masd queue``: the delivery queue (发送队列) — list deliveries, count them per state, put failed
ones back (retry) and cancel those still waiting.

The commands work directly against the store through the core's :class:`Gateway`; a running daemon sees
the changes at its next claim.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from masd.cli.common import (
    STORED_STATES,
    ConfigOption,
    JsonOption,
    fail,
    jsonable,
    note,
    open_store,
    out,
    plural,
    print_json,
    read_config,
    run_async,
    state_text,
)
from masd.core.gateway import Gateway
from masd.core.states import FINAL_VALUES, DeliveryState
from masd.core.times import local_text

__all__ = ["queue_app"]

queue_app = typer.Typer(
    help="The delivery queue (发送队列): list, count, retry and cancel deliveries.", no_args_is_help=True
)

# Deliveries in these states can be put back in the queue (msg_store.retry applies the same rule).
RETRIABLE = tuple(
    s
    for s in STORED_STATES
    if s in FINAL_VALUES and s not in (DeliveryState.DELIVERED.value, DeliveryState.CANCELLED.value)
)
HANDED_OVER = (DeliveryState.SUBMITTING.value, DeliveryState.SUBMITTED.value)


def _split_states(
    values: Sequence[str] | None, *, allowed: Sequence[str], option: str = "--state"
) -> list[str]:
    states: list[str] = []
    for v in values or ():
        for part in v.split(","):
            s = part.strip().lower()
            if not s:
                continue
            if s not in allowed:
                raise typer.BadParameter(f"{s!r} is not one of: {', '.join(allowed)}", param_hint=option)
            states.append(s)
    return states


def _counts_table(counts: dict[str, int]) -> Table:
    table = Table(show_edge=False)
    table.add_column("state")
    table.add_column("deliveries", justify="right")
    for s in STORED_STATES:
        table.add_row(state_text(s), str(counts.get(s, 0)))
    table.add_row(Text("total", style="bold"), str(sum(counts.values())))
    return table


def _all_counts(raw: dict[str, int]) -> dict[str, int]:
    # Every state, zeros included, so that monitoring scripts need not guess which keys exist.
    return {s: raw.get(s, 0) for s in STORED_STATES} | {
        k: v for k, v in raw.items() if k not in STORED_STATES
    }


@queue_app.command("list")
def queue_list(
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            "-s",
            help=f"Only these states (状态); repeat or comma-separate: {', '.join(STORED_STATES)}.",
        ),
    ] = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel (通道).", show_default=False)] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Show at most this many.")] = 50,
    after: Annotated[int, typer.Option(min=0, help="Start after this delivery id (翻页).")] = 0,
    summary: Annotated[bool, typer.Option("--summary", help="Also show counts per state.")] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List deliveries in the queue (队列), oldest first."""
    states = _split_states(state, allowed=STORED_STATES)
    cfg = read_config(config)
    with open_store(cfg) as db:
        gateway = Gateway(cfg, db)

        async def fetch() -> tuple[list[dict[str, Any]], dict[str, int] | None]:
            rows = await gateway.list_deliveries(states=states, channel=channel, limit=limit, after_id=after)
            return rows, (await gateway.state_counts() if summary else None)

        rows, counts = run_async(fetch)
    more = len(rows) == limit
    if as_json:
        doc: dict[str, Any] = {"deliveries": jsonable(rows), "next_after": rows[-1]["id"] if more else None}
        if counts is not None:
            doc["counts"] = _all_counts(counts)
        print_json(doc)
        return
    if counts is not None:
        out.print(_counts_table(counts))
    if not rows:
        out.print("no deliveries match" if states or channel or after else "no deliveries")
        return
    # Waiting for a scheduled time or a retry back-off is worth a column only when some row does.
    waiting = any(r["not_before"] > time.time() + 1 for r in rows if r["state"] == DeliveryState.QUEUED.value)
    table = Table(show_edge=False)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("msg", justify="right", no_wrap=True)
    # Numbers and states stay whole on a narrow terminal; times fold at the space, the rest wraps.
    table.add_column("recipient", no_wrap=True, min_width=11)
    table.add_column("channel")
    table.add_column("state", no_wrap=True, min_width=11)
    table.add_column("pri", justify="right")
    table.add_column("tries", justify="right")
    if waiting:
        table.add_column("not before", min_width=10)
    table.add_column("updated", min_width=10)
    table.add_column("reason")
    for r in rows:
        cells: list[str | Text] = [
            str(r["id"]),
            str(r["message_id"]),
            r["recipient"],
            r["channel"],
            state_text(r["state"]),
            str(r["priority"]),
            str(r["attempts"]),
        ]
        if waiting:
            cells.append(local_text(r["not_before"]))
        cells += [local_text(r["updated_at"]), Text(r.get("reason") or "")]
        table.add_row(*cells)
    out.print(table)
    if more:
        note(f"more may follow: --after {rows[-1]['id']}", "dim")


@queue_app.command("counts")
def queue_counts(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Count deliveries per state (各状态数量)."""
    cfg = read_config(config)
    with open_store(cfg) as db:
        gateway = Gateway(cfg, db)
        counts = run_async(gateway.state_counts)
    if as_json:
        print_json(_all_counts(counts))
    else:
        out.print(_counts_table(counts))


async def _states_of(gateway: Gateway, ids: Sequence[int]) -> dict[int, str]:
    """The current state of each existing delivery among ``ids``."""
    found: dict[int, str] = {}
    for i in ids:
        # The gateway has no look-up by delivery id; the first delivery after i - 1 is i when it exists.
        rows = await gateway.list_deliveries(after_id=i - 1, limit=1)
        if rows and rows[0]["id"] == i:
            found[i] = rows[0]["state"]
    return found


@queue_app.command("retry")
def queue_retry(
    ids: Annotated[
        list[int] | None, typer.Argument(metavar="IDS", help="Delivery ids.", show_default=False)
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", "-s", help=f"Retry every delivery in these states: {', '.join(RETRIABLE)}."),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Put failed deliveries back in the queue (重发) with fresh attempts and validity."""
    states = _split_states(state, allowed=RETRIABLE)
    if not ids and not states:
        raise typer.BadParameter(
            "give delivery ids or --state (e.g. --state failed)", param_hint="IDS/--state"
        )
    cfg = read_config(config)
    with open_store(cfg) as db:
        gateway = Gateway(cfg, db)
        n = run_async(lambda: gateway.retry(delivery_ids=ids or (), states=states))
    if as_json:
        print_json({"requeued": n})
        return
    out.print(f"requeued {plural(n, 'delivery', 'deliveries')}")
    wanted = len(set(ids or ()))
    if wanted and n < wanted:
        note(
            f"{wanted - n} of the given ids were not requeued: they do not exist or are not "
            f"{'/'.join(states or RETRIABLE)}"
        )


@queue_app.command("cancel")
def queue_cancel(
    ids: Annotated[
        list[int] | None, typer.Argument(metavar="IDS", help="Delivery ids.", show_default=False)
    ] = None,
    message: Annotated[
        int | None,
        typer.Option(
            "--message", "-m", help="Cancel every queued delivery of this message.", show_default=False
        ),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel deliveries still waiting in the queue (取消发送); submitted ones cannot be called back."""
    if not ids and message is None:
        raise typer.BadParameter("give delivery ids or --message ID", param_hint="IDS/--message")
    cfg = read_config(config)
    with open_store(cfg) as db:
        gateway = Gateway(cfg, db)

        async def do() -> tuple[int, dict[int, str], list[int], bool]:
            # States before cancelling, to explain afterwards what could not be cancelled and why.
            before: dict[int, str] = {}
            missing: list[int] = []
            message_found = True
            n = 0
            if ids:
                wanted = list(dict.fromkeys(ids))
                before.update(await _states_of(gateway, wanted))
                missing = [i for i in wanted if i not in before]
                n += await gateway.cancel(delivery_ids=list(before))
            if message is not None:
                msg = await gateway.get_message(message)
                message_found = msg is not None
                if msg is not None:
                    before.update({d["id"]: d["state"] for d in msg["deliveries"]})
                    # The store ignores delivery ids when a message id is given: a second call.
                    n += await gateway.cancel(message_id=message)
            return n, before, missing, message_found

        n, before, missing, message_found = run_async(do)
    not_cancelled: dict[str, int] = {}
    for s in before.values():
        if s != DeliveryState.QUEUED.value:
            not_cancelled[s] = not_cancelled.get(s, 0) + 1
    # Queued when looked at but not cancelled: a dispatcher claimed them in between.
    claimed = max(0, sum(1 for s in before.values() if s == DeliveryState.QUEUED.value) - n)
    if claimed:
        not_cancelled["claimed meanwhile"] = claimed
    if as_json:
        print_json({"cancelled": n, "not_cancelled": not_cancelled, "unknown_ids": missing})
    else:
        out.print(f"cancelled {plural(n, 'delivery', 'deliveries')}")
        handed = sum(v for k, v in not_cancelled.items() if k in HANDED_OVER or k == "claimed meanwhile")
        if handed:
            note(f"{handed} could not be cancelled: already handed to the carrier (submitting/submitted)")
        final = {k: v for k, v in not_cancelled.items() if k in FINAL_VALUES}
        if final:
            detail = ", ".join(f"{v} {k}" for k, v in final.items())
            note(f"{sum(final.values())} could not be cancelled: already finished ({detail})")
    if missing:
        fail(f"no deliveries with ids {', '.join(map(str, missing))}")
    if not message_found:
        fail(f"no message with id {message}")
