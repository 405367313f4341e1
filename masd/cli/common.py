"""Plumbing shared by the ``masd`` command line's modules: consoles, common options, loading the
configuration, opening the store, printing JSON and delivery states. The root command lives in
:mod:`masd.cli`; the commands live in its other modules and the modules' own ``cli`` modules, which import
what they share from here. Times are written by :mod:`masd.core.times` (``local_text`` for tables,
``local_iso`` for JSON), as everywhere else in masd.

SQLAlchemy, Alembic, trio and the configuration's models are imported inside the functions that use
them: whatever this module imports at its top, every command pays for, and ``masd --help`` and
``masd sim`` never open the store.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from masd.core.states import DeliveryState
from masd.core.times import local_iso

if TYPE_CHECKING:
    from masd.config import Config
    from masd.store.db import Database

__all__ = [
    "STATE_STYLE",
    "STORED_STATES",
    "TIME_KEYS",
    "ConfigOption",
    "JsonOption",
    "err",
    "fail",
    "jsonable",
    "note",
    "open_store",
    "out",
    "plural",
    "print_json",
    "read_config",
    "run_async",
    "state_text",
]

T = TypeVar("T")

# Store columns holding epoch seconds; they are shown as local time and written to JSON as ISO 8601.
TIME_KEYS = frozenset({"not_before", "lease_until"})
# Every state a stored delivery can have, in lifecycle order ("accepted" is only an instant, never stored).
STORED_STATES = tuple(s.value for s in DeliveryState if s is not DeliveryState.ACCEPTED)
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
# Piped output keeps the tables' natural width: rich would otherwise assume 80 columns and cut numbers
# short with an ellipsis, which breaks `masd queue list | grep`. A terminal (or $COLUMNS) sets its own.
out = Console(highlight=False, width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 250)
err = Console(stderr=True, highlight=False)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="MASD_CONFIG",
        help="Configuration file (配置文件, TOML). Without it: built-in defaults plus MASD_* variables.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (机器可读输出).")]


# ----- shared plumbing ----------------------------------------------------------------------------------


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` on stderr in red and exit with ``code`` (1: the request failed, 2: usage)."""
    # soft_wrap: rich would otherwise break long lines at 80 columns when stderr is not a terminal,
    # which splits messages that people grep for.
    err.print(message, style="red", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def note(message: str, style: str = "yellow") -> None:
    """Print a note (a warning, a hint, progress) on stderr, leaving stdout to the result."""
    err.print(message, style=style, markup=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """Print ``data`` on stdout as the one JSON document of a ``--json`` command."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def read_config(path: Path | None, *, daemon: bool = False) -> Config:
    """Load the configuration (exit 2 with its message when it is invalid) and set up logging: the
    daemon's level for ``masd run``, warnings and worse for a one-shot command."""
    from masd.config import ConfigError, load_config
    from masd.logging import configure_logging

    try:
        cfg = load_config(path)
    except ConfigError as e:
        fail(str(e), 2)
    if daemon:
        configure_logging(cfg.log.level, cfg.log.format)
    else:
        # A one-shot command reports its result itself; the core's info lines ("message accepted") would
        # only repeat it, so show warnings and worse unless the configuration asks for debug.
        configure_logging("warning" if cfg.log.level == "info" else cfg.log.level, cfg.log.format)
    return cfg


@contextlib.contextmanager
def open_store(cfg: Config, *, upgrade: bool = True) -> Iterator[Database]:
    """Open the configured database (migrated to head unless ``upgrade`` is false); turn store failures
    into a message and exit code 1 instead of a traceback."""
    import sqlalchemy as sa
    from alembic.util.exc import CommandError

    from masd.store.db import StoreUnavailable, database_from_config

    try:
        db = database_from_config(cfg)
    except OSError as e:
        fail(f"cannot create the data directory {cfg.data_path}: {e.strerror or e}")
    try:
        # Only migrate when behind: upgrade() takes the write lock, which a read-only command should not
        # contend for with a busy daemon.
        if upgrade and db.current_revision() != db.head_revision():
            db.upgrade()
        yield db
    except (sa.exc.SQLAlchemyError, StoreUnavailable, CommandError) as e:
        detail = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        fail(f"database {db.describe()}: {detail}")
    finally:
        db.dispose()


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async function of the core under trio and return its result."""
    import trio

    return trio.run(fn)


def state_text(state: str) -> Text:
    """A delivery state coloured as the tables show it."""
    return Text(state, style=STATE_STYLE.get(state, ""))


def plural(n: int, word: str, many: str = "") -> str:
    """``1 delivery``, ``2 deliveries``: ``many`` when the plural is not ``word`` + s."""
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


def _is_time_key(key: str) -> bool:
    return key.endswith("_at") or key in TIME_KEYS


def jsonable(value: Any) -> Any:
    """Store rows for JSON: epoch-second columns become ISO 8601 with the local offset."""
    if isinstance(value, dict):
        return {
            k: local_iso(v) if _is_time_key(k) and isinstance(v, int | float) else jsonable(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
