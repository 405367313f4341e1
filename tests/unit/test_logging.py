"""The log stream: masd's structlog events and the standard-library records of third-party libraries
(httpx, httpcore, alembic, SQLAlchemy, asyncio) come out alike, one line each, as JSON when JSON logging
is on and in the console format otherwise."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from masd.logging import configure_logging

KEYS = {"timestamp", "level", "logger", "event"}
THIRD_PARTY = ["httpx", "httpcore.http11", "alembic.runtime.migration", "sqlalchemy.engine", "asyncio"]


class Writes(io.StringIO):
    """A stream that remembers each write, to check that a line is written whole."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)

    def isatty(self) -> bool:
        return False


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logging.captureWarnings(False)  # an earlier test's configure_logging may have left it on
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    assert lines, "nothing was logged"
    parsed = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    for record in parsed:
        assert record.keys() >= KEYS, record
    return parsed


def test_third_party_records_and_masd_events_are_json_lines_with_the_same_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json")
    logging.getLogger("httpx").info('HTTP Request: %s %s "%s"', "POST", "http://oa.example/masd", "200 OK")
    structlog.get_logger("masd.webhooks").info("webhook delivered", app_id=3)
    lines = _json_lines(capsys.readouterr().err)
    assert lines[0]["event"] == 'HTTP Request: POST http://oa.example/masd "200 OK"'
    assert (lines[0]["logger"], lines[0]["level"]) == ("httpx", "info")
    assert (lines[1]["logger"], lines[1]["level"], lines[1]["app_id"]) == ("masd.webhooks", "info", 3)


@pytest.mark.parametrize("name", THIRD_PARTY)
def test_every_library_logger_writes_json(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    logging.getLogger(name).warning("something %d", 1)
    [line] = _json_lines(capsys.readouterr().err)
    assert (line["logger"], line["level"], line["event"]) == (name, "warning", "something 1")


def test_a_library_exception_is_one_json_line_with_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    try:
        raise ValueError("bad frame")
    except ValueError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    [line] = _json_lines(capsys.readouterr().err)
    assert line["level"] == "error"
    assert "ValueError: bad frame" in line["exception"]


def test_extra_fields_and_bound_context_reach_library_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    structlog.contextvars.bind_contextvars(send_worker=2)
    try:
        logging.getLogger("httpx").info("request", extra={"url": "http://oa.example/"})
    finally:
        structlog.contextvars.clear_contextvars()
    [line] = _json_lines(capsys.readouterr().err)
    assert (line["send_worker"], line["url"]) == (2, "http://oa.example/")


def test_python_warnings_become_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():  # puts back the test runner's own warning capture afterwards
        warnings.simplefilter("always")
        configure_logging("info", "json")
        warnings.warn("old option", UserWarning, stacklevel=1)
    [line] = _json_lines(capsys.readouterr().err)
    assert (line["logger"], line["level"]) == ("py.warnings", "warning")
    assert "old option" in line["event"]


def test_each_line_is_one_write_for_masd_and_library_records() -> None:
    stream = Writes()
    configure_logging("info", "json", stream=stream)
    logging.getLogger("httpx").info("one")
    structlog.get_logger("masd.http").info("two")
    assert len(stream.writes) == 2
    assert all(w.endswith("\n") and w.count("\n") == 1 for w in stream.writes)


def test_configuring_again_replaces_the_stream_without_doubling_lines() -> None:
    first, second = Writes(), Writes()
    configure_logging("info", "json", stream=first)
    configure_logging("info", "json", stream=second)
    logging.getLogger("httpx").info("once")
    assert first.getvalue() == ""
    assert [json.loads(x)["event"] for x in second.getvalue().splitlines()] == ["once"]


def test_library_debug_lines_stay_out_even_at_debug_level() -> None:
    stream = Writes()
    configure_logging("debug", "json", stream=stream)
    logging.getLogger("httpcore.connection").debug("receive_response_body.started")
    structlog.get_logger("masd.dispatch").debug("claimed")
    assert [json.loads(x)["logger"] for x in stream.getvalue().splitlines()] == ["masd.dispatch"]


def test_console_format_renders_library_records_for_a_person() -> None:
    stream = Writes()
    configure_logging("info", "console", stream=stream)
    logging.getLogger("httpx").info("HTTP Request: POST")
    [line] = stream.getvalue().splitlines()
    assert not line.lstrip().startswith("{")
    assert "HTTP Request: POST" in line and "httpx" in line and "info" in line
