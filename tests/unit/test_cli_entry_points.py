"""Other distributions add commands to ``masd`` through the ``masd.commands`` entry-point group (the
benchmark's ``masd bench`` is one): listed by the root, imported only when invoked, handed every argument
after their name, exiting with what their ``main`` returns."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import types
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from masd.cli import COMMANDS_GROUP, SUBCOMMANDS, app

MODULE = "masd_test_command"


def _entry(name: str, value: str = f"{MODULE}:main") -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group=COMMANDS_GROUP)


def _installed(monkeypatch: pytest.MonkeyPatch, *entries: importlib.metadata.EntryPoint) -> list[str]:
    """Make ``entries`` the installed entry points; return the groups they were asked for, in order."""
    asked: list[str] = []

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        asked.append(group)
        return [e for e in entries if e.group == group]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    return asked


def _command_module(monkeypatch: pytest.MonkeyPatch, main: Callable[[list[str]], int]) -> None:
    module = types.ModuleType(MODULE)
    module.main = main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, MODULE, module)


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), prog_name="masd", env={"COLUMNS": "250"})
    return result.exit_code, result.output


def test_without_an_entry_point_there_is_no_bench_command(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(monkeypatch)
    code, output = _invoke("--help")
    assert code == 0
    assert "bench" not in output
    code, output = _invoke("bench")
    assert code == 2
    assert "No such command 'bench'" in output


def test_an_entry_point_is_listed_with_the_root_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(monkeypatch, _entry("bench"))
    code, output = _invoke("--help")
    assert code == 0
    assert re.search(rf"│ bench +From {MODULE}:main\. +│", output)


def test_listing_does_not_import_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(monkeypatch, _entry("bench", "masd_no_such_module:main"))
    code, _ = _invoke("--help")
    assert code == 0
    assert "masd_no_such_module" not in sys.modules


def test_the_command_gets_every_argument_and_exits_with_what_main_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[list[str]] = []

    def main(argv: list[str]) -> int:
        seen.append(argv)
        return 3

    _installed(monkeypatch, _entry("bench"))
    _command_module(monkeypatch, main)
    code, _ = _invoke("bench", "--help", "--duration", "5", "-c", "x.toml", "extra")
    assert code == 3
    assert seen == [["--help", "--duration", "5", "-c", "x.toml", "extra"]]


def test_a_command_that_cannot_be_imported_fails_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(monkeypatch, _entry("bench", "masd_no_such_module:main"))
    code, output = _invoke("bench")
    assert code == 1
    assert "masd bench: cannot load masd_no_such_module:main" in output


def test_an_entry_point_does_not_replace_a_command_of_masd(monkeypatch: pytest.MonkeyPatch) -> None:
    _command_module(monkeypatch, lambda argv: 5)
    _installed(monkeypatch, _entry("run"), _entry("queue"))
    assert "run" in SUBCOMMANDS
    code, output = _invoke("queue", "--help")
    assert code == 0
    assert "retry" in output


def test_known_commands_do_not_read_the_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _installed(monkeypatch, _entry("bench"))
    code, _ = _invoke("run", "--help")
    assert code == 0
    assert asked == []
    _invoke("--help")
    assert asked == [COMMANDS_GROUP]
