"""The data directory and the SQLite database are their owner's alone: created 0700 and 0600 whatever
the umask, and tightened at start if an earlier version (or a hand) left them readable by others."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from masd.config import load_config
from masd.logging import configure_logging
from masd.store.db import Database, database_from_config


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _open(data: Path) -> Database:
    db = database_from_config(load_config(None, env={"MASD_NODE__DATA_DIR": str(data)}))
    db.upgrade()
    db.write_sync(lambda c: c.execute(sa.text("SELECT 1")))  # takes the advisory write lock
    return db


def test_a_fresh_data_directory_and_database_are_readable_by_their_owner_only(
    tmp_path: Path, umask_022: None
) -> None:
    data = tmp_path / "data"
    db = _open(data)
    try:
        with db.read_engine.connect() as conn:  # a reader keeps the -wal and -shm files in place
            conn.execute(sa.text("SELECT count(*) FROM sqlite_master")).scalar()
            assert _mode(data) == 0o700
            for name in ("masd.db", "masd.db-wal", "masd.db-shm", "masd.db-writelock"):
                assert _mode(data / name) == 0o600, name
    finally:
        db.dispose()


def test_a_database_in_a_directory_of_its_own_creates_that_directory_private(
    tmp_path: Path, umask_022: None
) -> None:
    path = tmp_path / "elsewhere" / "store.db"
    db = Database(f"sqlite:///{path}")
    try:
        db.upgrade()
        assert _mode(path.parent) == 0o700
        assert _mode(path) == 0o600
    finally:
        db.dispose()


def test_an_existing_readable_data_directory_and_database_are_tightened_and_that_is_logged(
    tmp_path: Path, umask_022: None, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    _open(data).dispose()
    os.chmod(data, 0o755)
    for name in ("masd.db", "masd.db-writelock"):
        os.chmod(data / name, 0o644)
    configure_logging("info", "json")
    capsys.readouterr()

    _open(data).dispose()
    assert _mode(data) == 0o700
    assert _mode(data / "masd.db") == _mode(data / "masd.db-writelock") == 0o600
    warnings = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    tightened = [w for w in warnings if w["event"] == "made readable by their owner only"]
    assert sum(len(w["paths"]) for w in tightened) == 3

    _open(data).dispose()  # nothing left to tighten: nothing more said
    assert "made readable by their owner only" not in capsys.readouterr().err
