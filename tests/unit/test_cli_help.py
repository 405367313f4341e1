"""Every ``masd … --help`` renders, and says what its help text says: Typer renders help with Rich
markup, which takes a lowercase ``[name]`` for a style tag and drops it, so configuration names such as
``[dbpoll.CODE]`` must be written ``\\[dbpoll.CODE]`` in help strings to reach the reader."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
import typer.main
from rich.markup import RE_TAGS
from typer.testing import CliRunner

from masd.cli import Unloaded, app, load_subcommand

BRACKETED = re.compile(r"\\?\[[^\[\]]+\]")
FRAME = re.compile(r"[│╭╮╰╯─\s]+")  # Rich's panel borders and line wrapping


def _tree(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    yield path, command
    for name in command.list_commands(typer.Context(command)) if hasattr(command, "commands") else ():
        sub = command.commands[name]
        if isinstance(sub, Unloaded):
            sub = load_subcommand(name)
        yield from _tree(sub, [*path, name])


COMMANDS = list(_tree(typer.main.get_command(app), []))


def _help_texts(command: Any) -> list[str]:
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    return [command.help or "", *(getattr(p, "help", None) or "" for p in params)]


def _flat(text: str) -> str:
    return FRAME.sub(" ", text)


def _help(path: list[str]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="masd", env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.output


def test_the_walk_finds_nested_subcommands() -> None:
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "run", "dbpoll init", "sim smsc", "contacts dept list"} <= paths


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "masd" for p, _ in COMMANDS])
def test_help_renders_with_every_bracketed_name_of_its_help_text(path: list[str], command: Any) -> None:
    output = _flat(_help(path))
    assert "usage:" in output.lower()  # a masd.commands entry point (masd bench) hands --help to its argparse
    for text in _help_texts(command):
        for found in BRACKETED.findall(text):
            assert _flat(found.removeprefix("\\")) in output, f"{found!r} of {text!r} is not in the help"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "masd" for p, _ in COMMANDS])
def test_help_texts_escape_what_rich_would_take_for_markup(path: list[str], command: Any) -> None:
    for text in _help_texts(command):
        eaten = [m.group(0) for m in RE_TAGS.finditer(text) if not m.group(2)]
        assert not eaten, f"write {eaten} as \\[…] in {text!r}"


def test_dbpoll_init_help_names_the_configuration_section() -> None:
    output = _flat(_help(["dbpoll", "init"]))
    assert "as in [dbpoll.CODE]." in output
    assert "default: [dbpoll.CODE] url." in output
