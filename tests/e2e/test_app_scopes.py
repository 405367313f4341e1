"""Apps' scopes from end to end: ``masd apps create|set|list --scope`` run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

DEFAULT = "meetings,messages,replies"


def _masd(data_dir: Path, *args: str, rc: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASD_")}
    env.update(MASD_NODE__DATA_DIR=str(data_dir), PYTHONIOENCODING="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "masd.cli", "apps", *args],
        env=env,
        cwd=data_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = f"{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == rc, f"masd apps {' '.join(args)} -> {proc.returncode}\n{said}"
    return proc


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


# ----- the command line ---------------------------------------------------------------------------------


def test_an_app_created_without_scope_has_the_default_which_leaves_out_the_address_book(
    tmp_path: Path,
) -> None:
    made = _masd(tmp_path, "create", "oa")
    assert "scopes     meetings, messages, replies" in made.stdout
    (row,) = _json(_masd(tmp_path, "list", "--json"))
    assert row["scopes"] == DEFAULT


def test_an_app_created_with_scope_has_those_and_contacts_write_brings_read(tmp_path: Path) -> None:
    made = _json(_masd(tmp_path, "create", "oa", "--scope", "messages, contacts:write", "--json"))
    assert made["scopes"] == "contacts:read,contacts:write,messages"


def test_set_scope_replaces_the_set(tmp_path: Path) -> None:
    _masd(tmp_path, "create", "oa")
    changed = _json(_masd(tmp_path, "set", "oa", "--scope", "contacts:read", "--json"))
    assert changed["scopes"] == "contacts:read"


def test_set_scope_with_plus_and_minus_changes_what_the_app_has(tmp_path: Path) -> None:
    _masd(tmp_path, "create", "oa")
    changed = _masd(tmp_path, "set", "oa", "--scope", "+contacts:write,-meetings")
    assert "scopes     contacts:read, contacts:write, messages, replies" in changed.stdout
    again = _json(_masd(tmp_path, "set", "oa", "--scope", "-contacts:read", "--json"))
    assert again["scopes"] == "messages,replies"


def test_the_list_shows_each_apps_scopes(tmp_path: Path) -> None:
    _masd(tmp_path, "create", "oa", "--scope", "contacts:read")
    _masd(tmp_path, "create", "crm", "--scope", "none")
    listed = _masd(tmp_path, "list").stdout
    assert "scopes" in listed and "contacts:read" in listed and "none" in listed
    assert {r["name"]: r["scopes"] for r in _json(_masd(tmp_path, "list", "--json"))} == {
        "oa": "contacts:read",
        "crm": "",
    }


def test_an_unknown_scope_is_a_usage_error_naming_it_and_the_valid_ones(tmp_path: Path) -> None:
    bad = _masd(tmp_path, "create", "oa", "--scope", "contacts", rc=2)
    assert "'contacts' is not a scope" in bad.stderr and "contacts:read" in bad.stderr
    assert _json(_masd(tmp_path, "list", "--json")) == []
    _masd(tmp_path, "create", "oa")
    bad = _masd(tmp_path, "set", "oa", "--scope", "+adressbook", rc=2)
    assert "'adressbook' is not a scope" in bad.stderr
    assert _json(_masd(tmp_path, "list", "--json"))[0]["scopes"] == DEFAULT


def test_set_scope_on_an_unknown_app_fails(tmp_path: Path) -> None:
    _masd(tmp_path, "create", "oa")
    failed = _masd(tmp_path, "set", "crm", "--scope", "+contacts:read", rc=1)
    assert "no active app named 'crm'" in failed.stderr
