"""Logging: structlog, JSON lines by default, a readable console renderer on a terminal.

Every line has ``timestamp``, ``level``, ``logger`` and ``event``, whether it comes from masd's own
structlog loggers or from a library that uses the standard ``logging`` module (httpx, httpcore, hypercorn,
alembic, SQLAlchemy, asyncio): the standard root logger writes through the same renderer, so a JSON log
stays one JSON document a line. Log events carry ``message_id`` and ``delivery_id`` where they concern one,
so an operator can follow one message from acceptance to its receipt with a grep.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["configure_logging"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _Stderr:
    """Whatever sys.stderr is at the moment of writing (tests and embedders replace it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger that knows the name it was asked for (``structlog.get_logger("masd.http")``)."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        return _NamedWriteLogger(self._file, str(args[0]) if args else "masd")


class _LineHandler(logging.Handler):
    """Writes each standard-library record as one line, through a WriteLogger: the same one write a
    line, under the same lock, as masd's own log lines."""

    def __init__(self, file: TextIO) -> None:
        super().__init__()
        self._out = structlog.WriteLogger(file)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._out.msg(self.format(record))
        except Exception:
            self.handleError(record)


def _add_logger_name(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    event_dict["logger"] = record.name if record is not None else getattr(logger, "name", "masd")
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog and the standard root logger to write to ``stream`` (stderr by default) at
    ``level``, as JSON lines (``fmt="json"``), for a person (``"console"``), or console on a terminal and
    JSON otherwise (``"auto"``). Calling it again replaces the previous configuration."""
    stream = stream or _Stderr()
    console = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=True)
        if console
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    # The same steps for masd's events and for the standard library's records.
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        # One write a line (PrintLogger writes the newline separately): the daemon and its worker
        # processes share one stderr, and their lines must not run into each other.
        logger_factory=_NamedWriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )

    handler = _LineHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    # Replace the handler of an earlier call, and only that one (a test runner may have its own).
    for old in [h for h in root.handlers if isinstance(h, _LineHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries' debug lines (httpcore's every socket read) would drown masd's own.
    root.setLevel(max(_LEVELS[level], logging.INFO))
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Python's warnings would otherwise be printed as bare lines in the middle of the log.
    logging.captureWarnings(True)
