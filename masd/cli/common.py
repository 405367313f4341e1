"""Plumbing shared by the ``masd`` command line's modules: consoles, common options, loading the
configuration, opening the store, printing JSON, times and delivery states. The root command lives in
:mod:`masd.cli`; the commands live in its other modules and the modules' own ``cli`` modules.

SQLAlchemy, Alembic, trio and the configuration's models are imported inside the functions that use
them: whatever this module imports at its top, every command pays for, and ``masd --help``, ``masd sim``
and ``masd bench`` never open the store.
"""

from __future__ import annotations

import contextlib
import datetime as dt
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

if TYPE_CHECKING:
    from masd.config import Config
    from masd.store.db import Database

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


def _fail(message: str, code: int = 1) -> NoReturn:
    # soft_wrap: rich would otherwise break long lines at 80 columns when stderr is not a terminal,
    # which splits messages that people grep for.
    err.print(message, style="red", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def _note(message: str, style: str = "yellow") -> None:
    err.print(message, style=style, markup=False, soft_wrap=True)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def _load(path: Path | None, *, daemon: bool = False) -> Config:
    from masd.config import ConfigError, load_config
    from masd.logging import configure_logging

    try:
        cfg = load_config(path)
    except ConfigError as e:
        _fail(str(e), 2)
    if daemon:
        configure_logging(cfg.log.level, cfg.log.format)
    else:
        # A one-shot command reports its result itself; the core's info lines ("message accepted") would
        # only repeat it, so show warnings and worse unless the configuration asks for debug.
        configure_logging("warning" if cfg.log.level == "info" else cfg.log.level, cfg.log.format)
    return cfg


@contextlib.contextmanager
def _store(cfg: Config, *, upgrade: bool = True) -> Iterator[Database]:
    """Open the configured database (migrated to head unless ``upgrade`` is false); turn store failures
    into a message and exit code 1 instead of a traceback."""
    import sqlalchemy as sa
    from alembic.util.exc import CommandError

    from masd.store.db import StoreUnavailable, database_from_config

    try:
        db = database_from_config(cfg)
    except OSError as e:
        _fail(f"cannot create the data directory {cfg.data_path}: {e.strerror or e}")
    try:
        # Only migrate when behind: upgrade() takes the write lock, which a read-only command should not
        # contend for with a busy daemon.
        if upgrade and db.current_revision() != db.head_revision():
            db.upgrade()
        yield db
    except (sa.exc.SQLAlchemyError, StoreUnavailable, CommandError) as e:
        detail = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        _fail(f"database {db.describe()}: {detail}")
    finally:
        db.dispose()


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    import trio

    return trio.run(fn)


def _state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def _plural(n: int, word: str, many: str = "") -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


def _local(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


def _is_time_key(key: str) -> bool:
    return key.endswith("_at") or key in TIME_KEYS


def _jsonable(value: Any) -> Any:
    """Store rows for JSON: epoch-second columns become ISO 8601 with the local offset."""
    if isinstance(value, dict):
        return {
            k: _iso(v) if _is_time_key(k) and isinstance(v, int | float) else _jsonable(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
