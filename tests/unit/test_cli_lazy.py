"""The root of the ``masd`` command line imports a sub-command's module only when that sub-command is
invoked, while ``masd --help`` still lists every sub-command with its own help."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

from masd.cli import SUBCOMMANDS, Unloaded, app, entry_point_commands, load_subcommand

LAZY = [name for name, lazy in SUBCOMMANDS.items() if lazy is not None]


def test_root_lists_every_subcommand_in_table_order() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    # Then the commands other installed distributions add (none in a plain install of masd).
    assert root.list_commands(typer.Context(root)) == [*SUBCOMMANDS, *entry_point_commands()]


@pytest.mark.parametrize("name", LAZY)
def test_table_help_is_the_subcommands_own_help(name: str) -> None:
    lazy = SUBCOMMANDS[name]
    assert lazy is not None
    command = load_subcommand(name)
    assert not isinstance(command, Unloaded)
    assert command.name == name
    assert command.help == lazy.help


def test_root_help_shows_each_subcommands_help() -> None:
    result = CliRunner().invoke(app, ["--help"], prog_name="masd", env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for name, lazy in SUBCOMMANDS.items():
        assert name in result.output
        if lazy is not None:
            assert lazy.help in result.output


def test_lazy_subcommand_runs_when_invoked() -> None:
    result = CliRunner().invoke(app, ["queue", "--help"], prog_name="masd")
    assert result.exit_code == 0
    assert "retry" in result.output


def test_typo_suggests_a_subcommand_not_imported_yet() -> None:
    result = CliRunner().invoke(app, ["contact"], prog_name="masd")
    assert result.exit_code == 2
    assert "Did you mean 'contacts'?" in result.output


def test_run_imports_no_other_subcommand() -> None:
    # A fresh interpreter: this test process has imported the sub-commands above.
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from masd.cli import SUBCOMMANDS, app\n"
        "result = CliRunner().invoke(app, ['run', '--help'], prog_name='masd')\n"
        "assert result.exit_code == 0, result.output\n"
        "modules = {lazy.module for lazy in SUBCOMMANDS.values() if lazy is not None}\n"
        "print(sorted(m for m in modules if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
