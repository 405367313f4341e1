"""Apps' scopes from end to end: ``masd apps create|set|list --scope`` run as real subprocesses, and the
address book over real HTTP against an in-process daemon, refused without ``contacts:read`` /
``contacts:write`` and answered once ``masd apps set NAME --scope …`` grants them."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import trio

from masd.config import load_config
from masd.daemon import Daemon
from masd.store import apps as app_store

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


# ----- the address book over HTTP, against the daemon ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def daemon_at(tmp_path: Path) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient]]:
    port = _free_port()
    env = {
        "MASD_NODE__DATA_DIR": str(tmp_path),
        "MASD_HTTP__LISTEN": f"127.0.0.1:{port}",
        "MASD_SOCKET__ENABLED": "false",
        "MASD_CHANNELS__SIM__OPTIONS": "{receipt_delay = 0.01}",
    }
    daemon = Daemon(load_config(None, env=env))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield daemon, client
        daemon.stop()


async def _app(daemon: Daemon, name: str) -> dict[str, str]:
    """A new app with the default scopes, as ``masd apps create NAME`` makes it; its auth header."""
    _, key = await daemon.db.write(lambda c: app_store.create_app(c, name, now=time.time()))
    return {"Authorization": f"Bearer {key}"}


def _refused_for(r: httpx.Response, scope: str) -> bool:
    if r.status_code != 403:
        return False
    error = r.json()["error"]
    return (error["code"], error["field"], error["value"]) == ("forbidden", "scope", scope) and (
        f"lacks the scope '{scope}'" in error["reason"]
    )


async def test_an_app_without_the_grant_may_not_read_or_change_the_address_book(tmp_path: Path) -> None:
    async with daemon_at(tmp_path) as (daemon, client):
        auth = await _app(daemon, "oa")
        person = {"name": "张三", "mobile": "13800138000"}
        assert _refused_for(await client.get("/v1/contacts/people", headers=auth), "contacts:read")
        assert _refused_for(await client.get("/v1/contacts/export", headers=auth), "contacts:read")
        made = await client.post("/v1/contacts/people", json=person, headers=auth)
        assert _refused_for(made, "contacts:write")
        assert _refused_for(await client.delete("/v1/contacts/people/1", headers=auth), "contacts:write")
        # The app's other work goes on: only the address book is scoped so far.
        sent = await client.post("/v1/messages", json={"to": "13800138000", "text": "通知"}, headers=auth)
        assert sent.status_code == 201, sent.text


async def test_a_grant_from_the_command_line_opens_the_address_book_on_the_running_daemon(
    tmp_path: Path,
) -> None:
    async with daemon_at(tmp_path) as (daemon, client):
        auth = await _app(daemon, "oa")
        assert (await client.get("/v1/contacts/people", headers=auth)).status_code == 403
        await trio.to_thread.run_sync(lambda: _masd(tmp_path, "set", "oa", "--scope", "+contacts:read"))
        with trio.fail_after(15):  # the daemon caches keys for a few seconds
            while (await client.get("/v1/contacts/people", headers=auth)).status_code != 200:
                await trio.sleep(0.5)
        person = {"name": "张三", "mobile": "13800138000"}
        made = await client.post("/v1/contacts/people", json=person, headers=auth)
        assert _refused_for(made, "contacts:write")

        await trio.to_thread.run_sync(lambda: _masd(tmp_path, "set", "oa", "--scope", "+contacts:write"))
        with trio.fail_after(15):
            while _refused_for(made, "contacts:write"):
                await trio.sleep(0.5)
                made = await client.post("/v1/contacts/people", json=person, headers=auth)
        assert made.status_code == 201, made.text
        assert (await client.get("/v1/contacts/people", headers=auth)).json()["total"] == 1
        exported = await client.get("/v1/contacts/export", headers=auth)
        assert exported.status_code == 200 and "13800138000" in exported.content.decode("utf-8-sig")
        deleted = await client.delete(f"/v1/contacts/people/{made.json()['id']}", headers=auth)
        assert deleted.status_code == 204
