"""``masd send`` and ``masd status``: put a message in the queue (发送短信) and look at one (消息状态).

``send`` works directly against the store through the core's :class:`Gateway`, the same API every
interface uses: the message is stored as queued, and a running daemon (on this node or any other sharing
the database) picks it up from there. A list of recipients is normalised and checked as a whole first,
so a command sends its whole list or nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.table import Table
from rich.text import Text

from masd.cli.common import (
    STORED_STATES,
    ConfigOption,
    JsonOption,
    err,
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
from masd.core import recipients as rcpt
from masd.core.gateway import Accepted, App, Gateway, QueueFull, Refused, Rejected, SubmitRequest
from masd.core.times import local_iso, local_text
from masd.store.db import StoreUnavailable

__all__ = ["messages_app"]

# `masd send` and `masd status` are commands of the root itself; masd.cli takes them from here by name.
messages_app = typer.Typer()

# One message carries at most this many recipients: a bigger list becomes several messages with the
# same text, so that no single transaction (or status page) grows without bound.
CHUNK = 1000
# How many bad recipients to list before summarising; a file with thousands of bad lines is otherwise
# unreadable on a terminal.
MAX_LISTED_ERRORS = 20


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
            f"{local_text(ts)} is in the past; leave out --at to send now", param_hint="--at"
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
        "send_at": local_iso(send_at),
    }


@messages_app.command()
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
    cfg = read_config(config)
    if text == "-":
        text = sys.stdin.read().rstrip("\n")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Python maps undecodable argv bytes to lone surrogates; say so rather than fail deep in the splitter.
        fail("TEXT is not valid UTF-8; check the terminal's encoding (e.g. LANG=zh_CN.UTF-8)")
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
        fail("\n".join([*lines, "nothing was sent"]))
    dropped = len(entries) - len(unique)
    if dropped:
        note(f"{plural(dropped, 'duplicate number')} left out")

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

    with open_store(cfg) as db:
        gateway = Gateway(cfg, db)
        sender: App | None = None
        if app_name is not None:
            sender = run_async(lambda: gateway.app_named(app_name))
            if sender is None:
                fail(f"no active app named {app_name!r}; 'masd apps list' shows them")
        # Validate every message before the first is stored: a command either sends its whole list or
        # nothing (short of the store failing half-way, which is reported below).
        for i, req in enumerate(requests):
            try:
                if sender is not None:
                    sender.check_kind(req.kind)
                gateway.prepare(req, interface="cli", app_id=None, app=sender)
            except Refused as e:
                fail(f"{e.reason}\nnothing was sent")
            except Rejected as e:
                fail(_rejected_message(e, kept[i * CHUNK : (i + 1) * CHUNK]) + "\nnothing was sent")

        # Imported here: only a long send shows a bar, and `masd status` has no use for it.
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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

        accepted, error = run_async(accept_all)
    if error is not None:
        if isinstance(error, Rejected):
            reason = _rejected_message(error, ())
        else:
            reason = error.reason if isinstance(error, Refused) else str(error)
        if accepted:
            ids = ", ".join(str(a.message_id) for a in accepted)
            fail(
                f"{reason}\nstored before the failure: messages {ids} "
                f"({sum(len(a.recipients) for a in accepted)} of {len(numbers)} recipients); "
                "'masd queue cancel --message ID' withdraws them"
            )
        fail(f"{reason}\nnothing was sent")

    if as_json:
        print_json([_accepted_json(a, send_at) for a in accepted])
        return
    for a in accepted:
        line = (
            f"message {a.message_id}: {plural(len(a.recipients), 'recipient')}, "
            f"{plural(a.segments, 'segment')} each, {a.encoding}"
        )
        if not a.created:
            line += " (already stored with this --client-ref; not sent again)"
        out.print(line, markup=False, soft_wrap=True)
    when = f"scheduled for {local_text(send_at)}" if send_at is not None else "queued"
    if len(accepted) > 1:
        out.print(f"{len(numbers)} recipients in {len(accepted)} messages, {when}", markup=False)
    else:
        out.print(when, markup=False)


# ----- masd status ---------------------------------------------------------------------------------------


@messages_app.command()
def status(
    message_id: Annotated[int, typer.Argument(metavar="ID", help="Message id, as printed by 'masd send'.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a message and each delivery (消息状态): state, attempts, segments, carrier ids and history."""
    cfg = read_config(config)
    with open_store(cfg) as db:
        gateway = Gateway(cfg, db)
        msg = run_async(lambda: gateway.get_message(message_id))
    if msg is None:
        fail(f"no message with id {message_id}")
    if as_json:
        print_json(jsonable(msg))
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
    head.add_row("created", f"{local_text(msg['created_at'])} via {msg['interface']}")
    if msg.get("send_at"):
        head.add_row("send at", local_text(msg["send_at"]))
    head.add_row("expires", local_text(msg["expires_at"]))
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
            state_text(d["state"]),
            f"{d['attempts']}/{d['max_attempts']}",
            f"{d['seg_delivered']}/{d['segments']}",
            Text(segs or "-"),
            Text(d.get("reason") or ""),
            local_text(d["updated_at"]),
        )
    out.print(table)
    _print_history(dels)


def _print_history(dels: list[dict[str, Any]]) -> None:
    """Each delivery's earlier attempts (重发记录): when, what, on which channel, how it ended."""
    rows = [(d, h) for d in dels for h in d.get("history", ())]
    if not rows:
        return
    table = Table(show_edge=False, title="history (重发记录)", title_justify="left")
    for name in ("delivery", "at", "event", "channel", "outcome", "reason"):
        table.add_column(name, no_wrap=name in ("delivery", "event"))
    for d, h in rows:
        channel = h["channel"] + (f" → {h['next_channel']}" if h.get("next_channel") else "")
        outcome = h.get("state") or "-"
        if h.get("error_code") is not None:
            outcome += f" ({h['error_code']})"
        table.add_row(
            str(d["id"]), local_text(h["at"]), h["event"], Text(channel), outcome, Text(h.get("reason") or "")
        )
    out.print(table)
