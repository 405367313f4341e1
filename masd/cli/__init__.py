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

This module is the root: ``run`` and the table of every other command. Those live in their own
modules (``masd.cli.*``, ``masd.modules.*.cli``) and are imported only when they are invoked, so that
``masd run`` does not import, build or (without cached bytecode) compile the rest of the command line;
``masd --help`` lists them from the table.

Other distributions add commands through the ``masd.commands`` entry-point group (the benchmark's
``masd bench`` is one): the entry point names the command and a ``main(argv: list[str]) -> int`` that gets
every argument after the command's name, ``--help`` included, and whose result is the exit code. They are
looked up only when the root lists its commands or meets a name not in the table, and imported only when
invoked.
"""

from __future__ import annotations

import dataclasses
import importlib
import signal
from typing import TYPE_CHECKING, Annotated, Any

import trio
import typer
import typer.main
from typer.core import TyperGroup

from masd import __version__
from masd.cli.common import ConfigOption, fail, note, read_config

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from typer import _click as click

    from masd.daemon import Daemon

__all__ = [
    "COMMANDS_GROUP",
    "SUBCOMMANDS",
    "Unloaded",
    "app",
    "entry_point_command",
    "entry_point_commands",
    "load_subcommand",
    "main",
]

# The entry-point group through which other distributions add a command to `masd`.
COMMANDS_GROUP = "masd.commands"


@dataclasses.dataclass(frozen=True, slots=True)
class _Lazy:
    """A sub-command that is imported when it is invoked."""

    module: str
    attribute: str  # a typer.Typer in that module
    # What `masd --help` lists: the sub-command's own help, which tests/unit/test_cli_lazy.py holds this to.
    help: str
    # False: the Typer is the sub-command group. True: the sub-command is the Typer's command of that name.
    command: bool = False


# Every sub-command, in the order `masd --help` lists them; None marks those defined in this module.
SUBCOMMANDS: dict[str, _Lazy | None] = {
    "run": None,
    "send": _Lazy(
        "masd.cli.messages",
        "messages_app",
        "Send an SMS (发送短信) to one or many recipients; it is queued for the daemon to deliver.",
        command=True,
    ),
    "status": _Lazy(
        "masd.cli.messages",
        "messages_app",
        "Show a message and each delivery (消息状态): state, attempts, segments, carrier ids and history.",
        command=True,
    ),
    "db": _Lazy("masd.cli.db", "db_app", "Database schema (数据库): apply migrations, show the revision."),
    "queue": _Lazy(
        "masd.cli.queue",
        "queue_app",
        "The delivery queue (发送队列): list, count, retry and cancel deliveries.",
    ),
    "apps": _Lazy("masd.cli.apps", "apps_app", "Applications and their API keys (应用与密钥)."),
    "sim": _Lazy(
        "masd.cli.sim",
        "sim_app",
        "Simulators (模拟器): a simulated SMPP SMSC, and mobile-originated messages sent through it.",
    ),
    "replies": _Lazy(
        "masd.cli.replies",
        "replies_app",
        "Replies from handsets (上行短信): list them, see unmatched ones, hand one to an app.",
    ),
    "contacts": _Lazy(
        "masd.modules.contacts.cli",
        "contacts_app",
        "The address book (通讯录): people, departments and groups; import and export CSV or XLSX.",
    ),
    "meeting": _Lazy(
        "masd.modules.meeting.cli",
        "meeting_app",
        "Meetings (会议通知, 会信通): notify attendees, follow who is coming on the board, export it.",
    ),
    "schedule": _Lazy(
        "masd.modules.meeting.cli",
        "schedule_app",
        "Schedule reminders and memos (日程提醒与备忘录): sent to a person by SMS at their time.",
    ),
    "channels": _Lazy(
        "masd.cli.channels",
        "channels_app",
        "List the channels (通道列表): driver, kind, configured and current rate, window, link.",
        command=True,
    ),
    "webhooks": _Lazy(
        "masd.cli.webhooks",
        "webhooks_app",
        "Webhooks (回调通知): each app's progress, parked events, and sending them again. "
        "Without a command: the status of every app's webhook.",
    ),
    "dbpoll": _Lazy(
        "masd.cli.dbpoll",
        "dbpoll_app",
        "MAS database interface for OA systems (数据库接口): create and inspect the api_* tables.",
    ),
}


class Unloaded(TyperGroup):
    """Stands for a sub-command not imported yet: its name and help, for `masd --help` and for the
    suggestions after a typo. A tool that walks the command tree finds it empty; `load_subcommand`
    builds the real one."""


def load_subcommand(name: str) -> click.Command:
    """Import the sub-command ``name`` and build it as ``app.add_typer``/``app.command`` would have."""
    lazy = SUBCOMMANDS[name]
    if lazy is None:
        raise LookupError(f"{name!r} is defined in masd.cli itself")
    sub: typer.Typer = getattr(importlib.import_module(lazy.module), lazy.attribute)
    if lazy.command:
        for info in sub.registered_commands:
            if info.callback and (info.name or typer.main.get_command_name(info.callback.__name__)) == name:
                return typer.main.get_command_from_info(
                    info,
                    pretty_exceptions_short=app.pretty_exceptions_short,
                    rich_markup_mode=app.rich_markup_mode,
                )
        raise LookupError(f"{lazy.module}.{lazy.attribute} has no command {name!r}")
    holder = typer.Typer()
    holder.add_typer(sub, name=name)
    return typer.main.get_group_from_info(
        holder.registered_groups[0],
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
        suggest_commands=app.suggest_commands,
    )


def entry_point_commands() -> dict[str, EntryPoint]:
    """The installed entry points of the ``masd.commands`` group by command name, less those naming a
    command masd has itself."""
    from importlib.metadata import entry_points

    return {e.name: e for e in entry_points(group=COMMANDS_GROUP) if e.name not in SUBCOMMANDS}


def _entry_point_help(entry: EntryPoint) -> str:
    from rich.markup import escape

    dist = entry.dist
    summary = dist.metadata["Summary"] if dist is not None else None
    origin = f"{dist.name} {dist.version}" if dist is not None else entry.value
    # Escaped: the help is rendered as Rich markup, which would drop a "[name]" of the summary.
    return escape(f"{summary} (from {origin})" if summary else f"From {origin}.")


def entry_point_command(entry: EntryPoint) -> click.Command:
    """The command for an entry point of ``masd.commands``: it imports the entry point's ``main`` only when
    invoked, hands it every argument after its name and exits with what it returns."""
    holder = typer.Typer()

    @holder.command(
        entry.name,
        help=_entry_point_help(entry),
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )
    def invoke(ctx: typer.Context) -> None:
        try:
            command_main = entry.load()
        except (ImportError, AttributeError) as e:
            fail(f"masd {entry.name}: cannot load {entry.value}: {e}")
        raise typer.Exit(command_main(list(ctx.args)))

    return typer.main.get_command_from_info(
        holder.registered_commands[0],
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
    )


class _LazyGroup(TyperGroup):
    """The root command: lists every sub-command and builds a lazy one when it is invoked."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        built = dict(self.commands)
        self.commands = {}
        for name, lazy in SUBCOMMANDS.items():
            if name in built:
                self.commands[name] = built.pop(name)
            elif lazy is not None:
                self.commands[name] = Unloaded(name=name, help=lazy.help)
        # Whatever else was added to the app (after this table's commands, as add_typer would place it).
        self.commands.update(built)
        self._entry_points_added = False

    def _add_entry_points(self) -> None:
        # Last, and never in place of a command masd has: reading every installed distribution's metadata
        # costs tens of milliseconds, which `masd run` and every known command skip.
        if not self._entry_points_added:
            self._entry_points_added = True
            for name, entry in entry_point_commands().items():
                self.commands.setdefault(name, entry_point_command(entry))

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_entry_points()
        return super().list_commands(ctx)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands:
            self._add_entry_points()
        if args and isinstance(self.commands.get(args[0]), Unloaded):
            self.commands[args[0]] = load_subcommand(args[0])
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="masd",
    cls=_LazyGroup,
    help="masd — SMS gateway daemon (短信网关): run it, send messages and look after the queue.",
    no_args_is_help=True,
    add_completion=False,
    # Locals of a failing frame can hold API keys or message text; never print them.
    pretty_exceptions_show_locals=False,
)


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
                        note(f"{signal.Signals(signum).name}: stopping; send it again to stop at once", "dim")
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
    cfg = read_config(config, daemon=True)
    # Imported here: the daemon pulls in every driver and the dispatcher, which the one-shot commands
    # never need.
    import sqlalchemy as sa

    from masd.config import ConfigError
    from masd.daemon import Daemon
    from masd.store.db import StoreUnavailable

    try:
        daemon = Daemon(cfg)
    except ConfigError as e:
        fail(str(e), 2)
    try:
        forced = trio.run(_serve, daemon)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        leaves = _leaves(e)
        for leaf in leaves:
            if isinstance(leaf, ConfigError):
                fail(str(leaf), 2)
        for leaf in leaves:
            if isinstance(leaf, StoreUnavailable | sa.exc.OperationalError):
                fail(f"masd stopped: database {daemon.db.describe()}: {leaf}")
        raise
    if forced:
        fail("masd stopped before the drain finished; claims left behind return to the queue on expiry")


def main() -> None:
    # prog_name: under "python -m masd.cli" click would otherwise call itself "__main__.py" in usage lines.
    app(prog_name="masd")
