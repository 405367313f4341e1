"""The ``masd`` command line (命令行): run the daemon, send messages, look at and act on the queue.

Every command reads the configuration from ``--config``/``-c`` or ``$MASD_CONFIG`` (built-in defaults
when neither is given, ``MASD_*`` variables on top); an invalid configuration prints what
:func:`masd.config.load_config` says and exits with code 2. Commands that print data take ``--json`` and
then print exactly one JSON document on stdout. The result always goes to stdout; errors, notes and
progress bars go to stderr, so that scripts can parse stdout safely.

Apart from ``run``, commands work directly against the store through the core's :class:`Gateway`, the
same API every interface uses: a message sent with ``masd send`` is stored as queued, and a running daemon
(on this node or any other sharing the database) picks it up from there. Each command brings the schema up
to date first, so a fresh data directory works without a separate ``masd db upgrade``.

Exit codes: 0 success, 1 the request failed (bad recipient, unknown id, store error), 2 usage or
configuration error.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import importlib.util
import io
import re
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import sqlalchemy as sa
import trio
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from masd import __version__
from masd._cli import (
    ConfigOption,
    JsonOption,
    _fail,
    _iso,
    _jsonable,
    _load,
    _local,
    _note,
    _print_json,
    _run,
    _store,
    err,
    out,
)
from masd.cli_dbpoll import dbpoll_app
from masd.cli_replies import replies_app
from masd.cli_webhooks import webhooks_app
from masd.config import ConfigError
from masd.core import apps as app_policy
from masd.core import recipients as rcpt
from masd.core.gateway import Accepted, App, Gateway, QueueFull, Refused, Rejected, SubmitRequest
from masd.core.states import FINAL_VALUES, DeliveryState
from masd.modules.contacts.cli import contacts_app
from masd.modules.meeting.cli import meeting_app, schedule_app
from masd.sim_cli import sim_app
from masd.store import apps as app_store
from masd.store.db import StoreUnavailable

if TYPE_CHECKING:
    from masd.daemon import Daemon

__all__ = ["app", "main"]

T = TypeVar("T")

# One message carries at most this many recipients: a bigger list becomes several messages with the
# same text, so that no single transaction (or status page) grows without bound.
CHUNK = 1000
# How many bad recipients to list before summarising; a file with thousands of bad lines is otherwise
# unreadable on a terminal.
MAX_LISTED_ERRORS = 20
# Every state a stored delivery can have, in lifecycle order ("accepted" is only an instant, never stored).
STORED_STATES = tuple(s.value for s in DeliveryState if s is not DeliveryState.ACCEPTED)
# Deliveries in these states can be put back in the queue (msg_store.retry applies the same rule).
RETRIABLE = tuple(
    s
    for s in STORED_STATES
    if s in FINAL_VALUES and s not in (DeliveryState.DELIVERED.value, DeliveryState.CANCELLED.value)
)
HANDED_OVER = (DeliveryState.SUBMITTING.value, DeliveryState.SUBMITTED.value)

STATE_STYLE = {
    "queued": "cyan",
    "submitting": "yellow",
    "submitted": "yellow",
    "delivered": "green",
    "undelivered": "red",
    "expired": "red",
    "rejected": "red",
    "failed": "red",
    "cancelled": "dim",
}
app = typer.Typer(
    name="masd",
    help="masd — SMS gateway daemon (短信网关): run it, send messages and look after the queue.",
    no_args_is_help=True,
    add_completion=False,
    # Locals of a failing frame can hold API keys or message text; never print them.
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(
    help="Database schema (数据库): apply migrations, show the revision.", no_args_is_help=True
)
queue_app = typer.Typer(
    help="The delivery queue (发送队列): list, count, retry and cancel deliveries.", no_args_is_help=True
)
apps_app = typer.Typer(help="Applications and their API keys (应用与密钥).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(queue_app, name="queue")
app.add_typer(apps_app, name="apps")
app.add_typer(sim_app, name="sim")
app.add_typer(replies_app, name="replies")
app.add_typer(contacts_app, name="contacts")
app.add_typer(meeting_app, name="meeting")
app.add_typer(schedule_app, name="schedule")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(dbpoll_app, name="dbpoll")


def _state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def _plural(n: int, word: str, many: str = "") -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


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


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Show the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(f"masd {__version__}")
        raise typer.Exit(0)


# ----- masd run -------------------------------------------------------------------------------------------


async def _serve(daemon: Daemon) -> bool:
    """Run the daemon until a signal; return True when a second signal cut the drain short."""
    forced = False
    async with trio.open_nursery() as nursery:
        # The daemon watches signals itself once it is up. This receiver covers the time before that (a
        # SIGTERM during migrations or start-up still drains cleanly: stop() is seen as soon as it is
        # ready) and, after the daemon's watcher has taken its one signal, makes a second one force exit.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def watch() -> None:
                nonlocal forced
                stopping = False
                async for signum in signals:
                    if not stopping:
                        stopping = True
                        _note(
                            f"{signal.Signals(signum).name}: stopping; send it again to stop at once", "dim"
                        )
                        daemon.stop()
                    else:
                        forced = True
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(watch)
            await daemon.run()
            nursery.cancel_scope.cancel()
    return forced


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the daemon (运行守护进程) until SIGTERM or Ctrl-C; then drain and exit 0."""
    cfg = _load(config, daemon=True)
    # Imported here: the daemon pulls in every driver and the dispatcher, which the one-shot commands
    # never need.
    from masd.daemon import Daemon

    try:
        daemon = Daemon(cfg)
    except ConfigError as e:
        _fail(str(e), 2)
    try:
        forced = trio.run(_serve, daemon)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        leaves = _leaves(e)
        for leaf in leaves:
            if isinstance(leaf, ConfigError):
                _fail(str(leaf), 2)
        for leaf in leaves:
            if isinstance(leaf, StoreUnavailable | sa.exc.OperationalError):
                _fail(f"masd stopped: database {daemon.db.describe()}: {leaf}")
        raise
    if forced:
        _fail("masd stopped before the drain finished; claims left behind return to the queue on expiry")


# ----- masd db ---------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Apply pending migrations (升级数据库结构); safe to run again."""
    cfg = _load(config)
    with _store(cfg, upgrade=False) as db:
        rev = db.upgrade()
        if as_json:
            _print_json({"database": db.describe(), "revision": rev})
        else:
            out.print(f"database {db.describe()} at revision {rev}", markup=False, soft_wrap=True)


@db_app.command("status")
def db_status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Show the schema revision against the newest this masd knows (数据库状态)."""
    cfg = _load(config)
    with _store(cfg, upgrade=False) as db:
        current, head = db.current_revision(), db.head_revision()
        if as_json:
            _print_json(
                {"database": db.describe(), "current": current, "head": head, "up_to_date": current == head}
            )
            return
        state = "up to date" if current == head else "behind; run 'masd db upgrade' (any command also does)"
        out.print(
            f"database {db.describe()}: revision {current or 'none'}, head {head}: {state}",
            markup=False,
            soft_wrap=True,
        )


# ----- masd send -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Entry:
    value: str  # as given
    number: int  # 1-based: position among the --to values, or line in a file
    file: str = ""

    def describe(self, reason: str) -> str:
        where = f" (line {self.number} of {self.file})" if self.file else ""
        return f"recipient #{self.number} '{self.value}'{where}: {reason}"


def _decode(raw: bytes) -> str:
    # Number lists come out of OA systems and Excel on Chinese Windows as often as not in GBK; GB18030 is
    # its superset and decodes any byte string that is not UTF-8.
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("gb18030", errors="replace")


def _read_numbers(path: Path) -> list[_Entry]:
    try:
        text = _decode(path.read_bytes())
    except OSError as e:
        raise typer.BadParameter(f"cannot read {path}: {e.strerror}", param_hint="--file") from None
    entries: list[_Entry] = []
    if path.suffix.lower() == ".csv":
        reader = csv.reader(io.StringIO(text))
        first = True
        for row in reader:
            cell = row[0].strip() if row else ""
            if not cell or cell.startswith("#"):
                continue
            # A header row ("mobile", "手机号") has no digits; a number always has.
            if first and not any(ch.isdigit() for ch in cell):
                first = False
                continue
            first = False
            entries.append(_Entry(cell, reader.line_num, path.name))
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if s and not s.startswith("#"):
                entries.append(_Entry(s, lineno, path.name))
    return entries


def _parse_at(value: str) -> float:
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("/", "-"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a time; use local time like '2026-12-01 09:00' (or ISO 8601 with an offset)",
            param_hint="--at",
        ) from None
    # A time without an offset is local time: astimezone() on a naive datetime assumes the local zone.
    ts = when.astimezone().timestamp()
    if ts < time.time() - 60:
        raise typer.BadParameter(
            f"{_local(ts)} is in the past; leave out --at to send now", param_hint="--at"
        )
    return ts


_OPTION_FOR_FIELD = {
    "text": "TEXT",
    "priority": "--priority",
    "validity_seconds": "--validity",
    "extension": "--extension",
    "client_ref": "--client-ref",
    "channel": "--channel",
}


def _rejected_message(e: Rejected, entries: Sequence[_Entry]) -> str:
    if e.field.endswith("recipients") and e.index is not None and e.index < len(entries):
        return entries[e.index].describe(e.reason)
    name = _OPTION_FOR_FIELD.get(e.field, e.field)
    value = f" {e.value!r}" if e.value is not None else ""
    return f"{name}{value}: {e.reason}"


def _accepted_json(a: Accepted, send_at: float | None) -> dict[str, Any]:
    return {
        "message_id": a.message_id,
        "recipient_count": len(a.recipients),
        "recipients": a.recipients,
        "segments": a.segments,
        "encoding": a.encoding,
        "created": a.created,
        "send_at": _iso(send_at),
    }


@app.command()
def send(
    text: Annotated[str, typer.Argument(help="Message text (短信内容); '-' reads it from standard input.")],
    to: Annotated[
        list[str] | None,
        typer.Option(
            "--to",
            "-t",
            help="Recipient (收件人); repeat it or separate numbers with commas.",
            show_default=False,
        ),
    ] = None,
    files: Annotated[
        list[Path] | None,
        typer.Option(
            "--file",
            "-f",
            help="File of recipients (号码文件): one per line, # comments; .csv uses the first column.",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    priority: Annotated[
        int | None, typer.Option(help="0 (lowest) to 9 (highest) (优先级); default from the configuration.")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="Send later (定时发送), local time: '2026-12-01 09:00'.", show_default=False
        ),
    ] = None,
    validity: Annotated[
        int | None,
        typer.Option(
            help="Seconds the message stays worth sending (有效期); default from the configuration."
        ),
    ] = None,
    client_ref: Annotated[
        str | None,
        typer.Option(
            help="Your reference (业务流水号); sending the same one again returns the stored message. "
            "Split lists get '#1', '#2'… appended.",
            show_default=False,
        ),
    ] = None,
    extension: Annotated[
        str, typer.Option(help="Extension (扩展码) appended to the service number, up to 12 digits.")
    ] = "",
    channel: Annotated[
        str | None,
        typer.Option(help="Channel (通道) to use instead of routing by prefix.", show_default=False),
    ] = None,
    app_name: Annotated[
        str | None,
        typer.Option(
            "--app",
            help="Send as this app (以应用身份): its limits and extension apply, replies go to it.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send an SMS (发送短信) to one or many recipients; it is queued for the daemon to deliver."""
    cfg = _load(config)
    if text == "-":
        text = sys.stdin.read().rstrip("\n")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Python maps undecodable argv bytes to lone surrogates; say so rather than fail deep in the splitter.
        _fail("TEXT is not valid UTF-8; check the terminal's encoding (e.g. LANG=zh_CN.UTF-8)")
    send_at = _parse_at(at) if at is not None else None

    entries: list[_Entry] = []
    n_given = 0
    for value in to or ():
        # Full-width commas and semicolons come from Chinese input methods.
        for part in re.split(r"[,，;；]", value):
            if part.strip():
                n_given += 1
                entries.append(_Entry(part.strip(), n_given))
    for path in files or ():
        entries.extend(_read_numbers(path))
    if not entries:
        raise typer.BadParameter("no recipients; give --to NUMBER or --file FILE", param_hint="--to/--file")

    # Normalise everything first, so that a bad number anywhere fails the command before anything is
    # stored and duplicates are dropped across the whole list, not only within one message.
    unique: dict[str, _Entry] = {}
    bad: list[str] = []
    for entry in entries:
        try:
            unique.setdefault(rcpt.normalize(entry.value), entry)
        except rcpt.InvalidRecipient as e:
            bad.append(entry.describe(e.reason))
    if bad:
        more = len(bad) - MAX_LISTED_ERRORS
        lines = bad[:MAX_LISTED_ERRORS] + ([f"… and {more} more"] if more > 0 else [])
        _fail("\n".join([*lines, "nothing was sent"]))
    dropped = len(entries) - len(unique)
    if dropped:
        _note(f"{_plural(dropped, 'duplicate number')} left out")

    numbers = list(unique)
    kept = list(unique.values())
    chunks = [numbers[i : i + CHUNK] for i in range(0, len(numbers), CHUNK)]
    requests = [
        SubmitRequest(
            text=text,
            recipients=chunk,
            priority=priority,
            send_at=send_at,
            validity_seconds=validity,
            client_ref=(f"{client_ref}#{i + 1}" if client_ref and len(chunks) > 1 else client_ref),
            extension=extension,
            channel=channel,
        )
        for i, chunk in enumerate(chunks)
    ]

    with _store(cfg) as db:
        gateway = Gateway(cfg, db)
        sender: App | None = None
        if app_name is not None:
            sender = _run(lambda: gateway.app_named(app_name))
            if sender is None:
                _fail(f"no active app named {app_name!r}; 'masd apps list' shows them")
        # Validate every message before the first is stored: a command either sends its whole list or
        # nothing (short of the store failing half-way, which is reported below).
        for i, req in enumerate(requests):
            try:
                if sender is not None:
                    sender.check_kind(req.kind)
                gateway.prepare(req, interface="cli", app_id=None, app=sender)
            except Refused as e:
                _fail(f"{e.reason}\nnothing was sent")
            except Rejected as e:
                _fail(_rejected_message(e, kept[i * CHUNK : (i + 1) * CHUNK]) + "\nnothing was sent")

        progress = Progress(
            TextColumn("accepting"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("numbers"),
            TimeElapsedColumn(),
            console=err,
            # One transaction needs no bar; a bar written to a pipe or file is only noise.
            disable=len(requests) == 1 or not err.is_terminal,
        )

        async def accept_all() -> tuple[list[Accepted], BaseException | None]:
            pending = await gateway.refresh_pending()
            if pending + len(numbers) > cfg.queue.max_pending:
                return [], QueueFull(
                    f"the queue holds {pending} unfinished deliveries and its limit is "
                    f"{cfg.queue.max_pending}; {len(numbers)} more do not fit (queue.max_pending raises it)"
                )
            done: list[Accepted] = []
            with progress:
                task = progress.add_task("accepting", total=len(numbers))
                for req in requests:
                    try:
                        done.extend(await gateway.accept([req], interface="cli", app=sender))
                    except (QueueFull, Rejected, Refused, StoreUnavailable, sa.exc.SQLAlchemyError) as e:
                        return done, e
                    progress.advance(task, len(req.recipients))
            return done, None

        accepted, error = _run(accept_all)
    if error is not None:
        if isinstance(error, Rejected):
            reason = _rejected_message(error, ())
        else:
            reason = error.reason if isinstance(error, Refused) else str(error)
        if accepted:
            ids = ", ".join(str(a.message_id) for a in accepted)
            _fail(
                f"{reason}\nstored before the failure: messages {ids} "
                f"({sum(len(a.recipients) for a in accepted)} of {len(numbers)} recipients); "
                "'masd queue cancel --message ID' withdraws them"
            )
        _fail(f"{reason}\nnothing was sent")

    if as_json:
        _print_json([_accepted_json(a, send_at) for a in accepted])
        return
    for a in accepted:
        line = (
            f"message {a.message_id}: {_plural(len(a.recipients), 'recipient')}, "
            f"{_plural(a.segments, 'segment')} each, {a.encoding}"
        )
        if not a.created:
            line += " (already stored with this --client-ref; not sent again)"
        out.print(line, markup=False, soft_wrap=True)
    when = f"scheduled for {_local(send_at)}" if send_at is not None else "queued"
    if len(accepted) > 1:
        out.print(f"{len(numbers)} recipients in {len(accepted)} messages, {when}", markup=False)
    else:
        out.print(when, markup=False)


# ----- masd status ---------------------------------------------------------------------------------------


@app.command()
def status(
    message_id: Annotated[int, typer.Argument(metavar="ID", help="Message id, as printed by 'masd send'.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a message and each delivery (消息状态): state, attempts, segments and carrier ids."""
    cfg = _load(config)
    with _store(cfg) as db:
        gateway = Gateway(cfg, db)
        msg = _run(lambda: gateway.get_message(message_id))
    if msg is None:
        _fail(f"no message with id {message_id}")
    if as_json:
        _print_json(_jsonable(msg))
        return
    dels: list[dict[str, Any]] = msg["deliveries"]
    counts: dict[str, int] = {}
    for d in dels:
        counts[d["state"]] = counts.get(d["state"], 0) + 1
    summary = ", ".join(
        f"{n} {s}" for s, n in sorted(counts.items(), key=lambda x: STORED_STATES.index(x[0]))
    )
    out.print(Text(f"message {msg['id']}", style="bold"), Text(f"({summary})"))
    head = Table.grid(padding=(0, 2))
    head.add_column(style="dim")
    head.add_column()
    head.add_row("text", Text(msg["text"]))
    head.add_row("encoding", msg["encoding"])
    head.add_row("created", f"{_local(msg['created_at'])} via {msg['interface']}")
    if msg.get("send_at"):
        head.add_row("send at", _local(msg["send_at"]))
    head.add_row("expires", _local(msg["expires_at"]))
    head.add_row("priority", str(msg["priority"]))
    if msg.get("client_ref"):
        head.add_row("client ref", Text(msg["client_ref"]))
    out.print(head)
    table = Table(show_edge=False)
    for name in ("id", "recipient", "channel", "state", "tries", "segs", "carrier ids", "reason"):
        # Numbers and states stay whole on a narrow terminal; the other cells may wrap instead.
        whole = name in ("recipient", "state")
        table.add_column(name, no_wrap=whole, min_width=11 if whole else None)
    table.add_column("updated", min_width=10)
    for d in dels:
        segs = "\n".join(
            f"{s['seq']}/{s['total']} {s['carrier_id']} {s['state']}" for s in d.get("segment_list", [])
        )
        table.add_row(
            str(d["id"]),
            d["recipient"] + (f" ext {d['extension']}" if d.get("extension") else ""),
            d["channel"],
            _state_text(d["state"]),
            f"{d['attempts']}/{d['max_attempts']}",
            f"{d['seg_delivered']}/{d['segments']}",
            Text(segs or "-"),
            Text(d.get("reason") or ""),
            _local(d["updated_at"]),
        )
    out.print(table)


# ----- masd queue ----------------------------------------------------------------------------------------


def _counts_table(counts: dict[str, int]) -> Table:
    table = Table(show_edge=False)
    table.add_column("state")
    table.add_column("deliveries", justify="right")
    for s in STORED_STATES:
        table.add_row(_state_text(s), str(counts.get(s, 0)))
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
    cfg = _load(config)
    with _store(cfg) as db:
        gateway = Gateway(cfg, db)

        async def fetch() -> tuple[list[dict[str, Any]], dict[str, int] | None]:
            rows = await gateway.list_deliveries(states=states, channel=channel, limit=limit, after_id=after)
            return rows, (await gateway.state_counts() if summary else None)

        rows, counts = _run(fetch)
    more = len(rows) == limit
    if as_json:
        doc: dict[str, Any] = {"deliveries": _jsonable(rows), "next_after": rows[-1]["id"] if more else None}
        if counts is not None:
            doc["counts"] = _all_counts(counts)
        _print_json(doc)
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
            _state_text(r["state"]),
            str(r["priority"]),
            str(r["attempts"]),
        ]
        if waiting:
            cells.append(_local(r["not_before"]))
        cells += [_local(r["updated_at"]), Text(r.get("reason") or "")]
        table.add_row(*cells)
    out.print(table)
    if more:
        _note(f"more may follow: --after {rows[-1]['id']}", "dim")


@queue_app.command("counts")
def queue_counts(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Count deliveries per state (各状态数量)."""
    cfg = _load(config)
    with _store(cfg) as db:
        gateway = Gateway(cfg, db)
        counts = _run(gateway.state_counts)
    if as_json:
        _print_json(_all_counts(counts))
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
    cfg = _load(config)
    with _store(cfg) as db:
        gateway = Gateway(cfg, db)
        n = _run(lambda: gateway.retry(delivery_ids=ids or (), states=states))
    if as_json:
        _print_json({"requeued": n})
        return
    out.print(f"requeued {_plural(n, 'delivery', 'deliveries')}")
    wanted = len(set(ids or ()))
    if wanted and n < wanted:
        _note(
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
    cfg = _load(config)
    with _store(cfg) as db:
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

        n, before, missing, message_found = _run(do)
    not_cancelled: dict[str, int] = {}
    for s in before.values():
        if s != DeliveryState.QUEUED.value:
            not_cancelled[s] = not_cancelled.get(s, 0) + 1
    # Queued when looked at but not cancelled: a dispatcher claimed them in between.
    claimed = max(0, sum(1 for s in before.values() if s == DeliveryState.QUEUED.value) - n)
    if claimed:
        not_cancelled["claimed meanwhile"] = claimed
    if as_json:
        _print_json({"cancelled": n, "not_cancelled": not_cancelled, "unknown_ids": missing})
    else:
        out.print(f"cancelled {_plural(n, 'delivery', 'deliveries')}")
        handed = sum(v for k, v in not_cancelled.items() if k in HANDED_OVER or k == "claimed meanwhile")
        if handed:
            _note(f"{handed} could not be cancelled: already handed to the carrier (submitting/submitted)")
        final = {k: v for k, v in not_cancelled.items() if k in FINAL_VALUES}
        if final:
            detail = ", ".join(f"{v} {k}" for k, v in final.items())
            _note(f"{sum(final.values())} could not be cancelled: already finished ({detail})")
    if missing:
        _fail(f"no deliveries with ids {', '.join(map(str, missing))}")
    if not message_found:
        _fail(f"no message with id {message}")


# ----- masd apps -----------------------------------------------------------------------------------------

KEY_NOTE = "store it now; masd keeps only its hash and cannot show it again"


def _check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 64:
        raise typer.BadParameter("must be 1 to 64 characters", param_hint="NAME")
    return name


ChannelsOption = Annotated[
    str | None,
    typer.Option(
        "--channels",
        help="Kinds of channel the app may use (允许的通道), comma-separated: sms, voice. Default: all.",
        show_default=False,
    ),
]
RateOption = Annotated[
    str | None,
    typer.Option(
        "--rate",
        help="Most recipients per second (发送速率), e.g. 50/s, 600/min. Default: unlimited.",
        show_default=False,
    ),
]
QuotaOption = Annotated[
    str | None,
    typer.Option(
        "--quota",
        help="Most recipients per day (每日配额), e.g. 10000/day. Default: unlimited.",
        show_default=False,
    ),
]
ExtensionOption = Annotated[
    str | None,
    typer.Option(
        "--extension",
        help="Extension digits after the service number (扩展码); replies to it belong to this app.",
        show_default=False,
    ),
]
WebhookOption = Annotated[
    str | None,
    typer.Option(
        "--webhook",
        help="URL that receives the app's receipts and replies (回调地址), signed; '' removes it.",
        show_default=False,
    ),
]


def _app_settings(
    channels: str | None,
    rate: str | None,
    quota: str | None,
    extension: str | None,
    webhook: str | None,
) -> dict[str, Any]:
    """Options → stored settings. An empty value ('' or 'none') clears that limit."""
    settings: dict[str, Any] = {}

    def cleared(v: str) -> bool:
        return v.strip().lower() in ("", "none", "unlimited", "all")

    try:
        if channels is not None:
            settings["channels"] = None if cleared(channels) else app_policy.parse_channels(channels)
        if rate is not None:
            settings["rate"] = None if cleared(rate) else app_policy.parse_rate(rate)
        if quota is not None:
            settings["quota_per_day"] = None if cleared(quota) else app_policy.parse_quota(quota)
    except ValueError as e:
        opt = "--channels" if "channel" in str(e) else "--rate" if "rate" in str(e) else "--quota"
        raise typer.BadParameter(str(e), param_hint=opt) from None
    if extension is not None:
        ext = extension.strip()
        if ext and (not ext.isdigit() or len(ext) > 12):
            raise typer.BadParameter("must be 1 to 12 digits", param_hint="--extension")
        settings["extension"] = ext or None
    if webhook is not None:
        url = webhook.strip()
        if url and not re.match(r"^https?://[^\s/]+", url):
            raise typer.BadParameter("must be an http:// or https:// URL", param_hint="--webhook")
        settings["webhook_url"] = url or None
        settings["webhook_secret"] = secrets.token_hex(32) if url else None
    return settings


def _describe_app(r: dict[str, Any]) -> dict[str, str]:
    ch = r.get("channels")
    quota = r.get("quota_per_day")
    return {
        "channels": ch.replace(",", ", ") if ch else "all",
        "rate": app_policy.format_rate(r.get("rate")),
        "quota": f"{quota}/day" if quota else "unlimited",
        "extension": r.get("extension") or "-",
        "webhook": r.get("webhook_url") or "-",
    }


def _print_settings(name: str, settings: dict[str, Any], as_json: bool, extra: dict[str, Any]) -> None:
    shown = _describe_app(settings)
    if as_json:
        data = {**extra, "name": name, **{k: settings.get(k) for k in app_store.SETTINGS}}
        _print_json(data)
        return
    for k, v in shown.items():
        out.print(f"  {k:<10} {v}", markup=False, soft_wrap=True)
    if settings.get("webhook_secret"):
        out.print("webhook signing secret (签名密钥), shown once:", markup=False)
        out.print(settings["webhook_secret"], markup=False, soft_wrap=True)


@apps_app.command("create")
def apps_create(
    name: Annotated[str, typer.Argument(help="A name for the application (应用名称), e.g. oa.")],
    channels: ChannelsOption = None,
    rate: RateOption = None,
    quota: QuotaOption = None,
    extension: ExtensionOption = None,
    webhook: WebhookOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an application and print its API key once (创建应用).

    Example: masd apps create oa --channels sms,voice --rate 50/s --quota 10000/day --extension 01
    """
    name = _check_name(name)
    settings = _app_settings(channels, rate, quota, extension, webhook)
    cfg = _load(config)
    with _store(cfg) as db:
        try:
            app_id, key = _run(
                lambda: db.write(lambda c: app_store.create_app(c, name, now=time.time(), **settings))
            )
        except (app_store.AppExists, ValueError) as e:
            _fail(str(e))
    if as_json:
        _print_settings(name, settings, True, {"id": app_id, "key": key})
        return
    out.print(f"created app {name!r} (id {app_id}); its API key (密钥):", markup=False, soft_wrap=True)
    out.print(key, markup=False, soft_wrap=True)
    out.print(KEY_NOTE, style="yellow", markup=False)
    _print_settings(name, settings, False, {})


@apps_app.command("set")
def apps_set(
    name: Annotated[str, typer.Argument(help="Application name.")],
    channels: ChannelsOption = None,
    rate: RateOption = None,
    quota: QuotaOption = None,
    extension: ExtensionOption = None,
    webhook: WebhookOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change an application's limits, extension or webhook (修改应用设置); 'none' clears a limit.

    A running daemon applies the change within a few seconds (it caches keys briefly)."""
    name = _check_name(name)
    settings = _app_settings(channels, rate, quota, extension, webhook)
    if not settings:
        _fail("nothing to change: give --channels, --rate, --quota, --extension or --webhook", 2)
    cfg = _load(config)
    with _store(cfg) as db:
        try:
            ok = _run(lambda: db.write(lambda c: app_store.update_app(c, name, **settings)))
        except ValueError as e:
            _fail(str(e))
        row = _run(lambda: db.read(lambda c: app_store.get_app(c, name))) if ok else None
    if not ok or row is None:
        _fail(f"no active app named {name!r}")
    if not as_json:
        out.print(f"app {name!r} now:", markup=False, soft_wrap=True)
    # The secret is shown only when this command made it.
    row["webhook_secret"] = settings.get("webhook_secret")
    _print_settings(name, row, as_json, {"id": row["id"]})


@apps_app.command("list")
def apps_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List applications (应用列表) with their limits; keys are never shown, only their first characters."""
    cfg = _load(config)
    with _store(cfg) as db:
        rows = _run(lambda: db.read(app_store.list_apps))
    if as_json:
        _print_json(_jsonable(rows))
        return
    if not rows:
        out.print("no apps; 'masd apps create NAME' makes one")
        return
    table = Table(show_edge=False)
    cols = (
        "id",
        "name",
        "key starts",
        "channels",
        "rate",
        "quota",
        "extension",
        "webhook",
        "created",
        "status",
    )
    for col in cols:
        table.add_column(col, no_wrap=col not in ("name", "webhook"))
    for r in rows:
        revoked = r.get("revoked_at")
        d = _describe_app(r)
        table.add_row(
            str(r["id"]),
            Text(r["name"]),
            r["key_prefix"] + "…",
            d["channels"],
            d["rate"],
            d["quota"],
            d["extension"],
            Text(d["webhook"]),
            _local(r["created_at"]),
            Text(f"revoked {_local(revoked)}", style="dim") if revoked else Text("active", style="green"),
        )
    out.print(table)


@apps_app.command("revoke")
def apps_revoke(
    name: Annotated[str, typer.Argument(help="Application name.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke an application's key (吊销); requests with it are refused from now on."""
    name = _check_name(name)
    cfg = _load(config)
    with _store(cfg) as db:
        ok = _run(lambda: db.write(lambda c: app_store.revoke_app(c, name, now=time.time())))
    if not ok:
        _fail(f"no active app named {name!r}")
    if as_json:
        _print_json({"name": name, "revoked": True})
    else:
        out.print(f"revoked app {name!r}; its key no longer works", markup=False, soft_wrap=True)


@apps_app.command("rotate")
def apps_rotate(
    name: Annotated[str, typer.Argument(help="Application name.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give an application a new key (更换密钥); the old one stops working at once."""
    name = _check_name(name)
    cfg = _load(config)
    with _store(cfg) as db:
        key = _run(lambda: db.write(lambda c: app_store.rotate_key(c, name)))
    if key is None:
        _fail(f"no active app named {name!r}")
    if as_json:
        _print_json({"name": name, "key": key})
        return
    out.print(f"new API key for {name!r} (the old one no longer works):", markup=False, soft_wrap=True)
    out.print(key, markup=False, soft_wrap=True)
    out.print(KEY_NOTE, style="yellow", markup=False)


@app.command(
    "bench",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def bench(ctx: typer.Context) -> None:
    """Benchmark end to end against the simulated SMSC and Kannel (性能测试); see scripts/bench --help."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"
    if not script.is_file():
        _fail(
            "masd bench runs scripts/bench.py from a source checkout of masd; "
            "none was found beside this install"
        )
    spec = importlib.util.spec_from_file_location("masd_bench", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there while the module loads
    spec.loader.exec_module(module)
    raise typer.Exit(module.main(list(ctx.args)))


def main() -> None:
    # prog_name: under "python -m masd.cli" click would otherwise call itself "cli.py" in usage lines.
    app(prog_name="masd")


if __name__ == "__main__":
    main()
