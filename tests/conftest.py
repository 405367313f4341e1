"""Shared fixtures and the test tiers: markers set by path, and the database engines a run uses.

Markers come from where a test lives, never by hand: tests/unit → ``unit``, tests/store → ``db``,
tests/e2e → ``e2e``, tests/interop → ``interop``; a hypothesis test anywhere also gets ``property``, and
any test that takes ``store_url`` gets ``db``. ``./scripts/test --fast`` runs ``not e2e and not interop``
on SQLite only; ``./scripts/test`` runs everything.

``store_url`` is parametrised over the engines masd supports. ``MASD_TEST_ENGINES`` (comma-separated,
default ``sqlite,postgresql,mariadb``) picks the ones this run uses; a test of an engine not picked is
deselected (pytest counts it so), neither failed nor passed. Each test gets a database of its own,
created for it and dropped after, so no test sees another's rows. If PostgreSQL or MariaDB is picked but
not running, the fixture starts it with the command this machine kind documents; if that fails the test
fails (it is not skipped: an engine that was picked must be tested).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import is_hypothesis_test

PG_ADMIN = os.environ.get("MASD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MY_ADMIN = os.environ.get("MASD_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")

ENGINES = ("sqlite", "postgresql", "mariadb")
TESTS = Path(__file__).resolve().parent
# The first directory under tests/ names a test's tier.
TIER_BY_DIRECTORY = {"unit": "unit", "store": "db", "e2e": "e2e", "interop": "interop"}

_START = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "mariadb": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
}


def engines_picked() -> tuple[str, ...]:
    """The engines of ``MASD_TEST_ENGINES`` (all three when unset); a name masd does not know is an error."""
    raw = os.environ.get("MASD_TEST_ENGINES", "")
    picked = tuple(e.strip().lower() for e in raw.split(",") if e.strip()) or ENGINES
    unknown = [e for e in picked if e not in ENGINES]
    if unknown:
        raise pytest.UsageError(
            f"MASD_TEST_ENGINES names {', '.join(unknown)}; the engines are {', '.join(ENGINES)}"
        )
    return picked


# First, before pytest's own -m and -k selection reads the markers.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by its directory (and hypothesis tests as ``property``); deselect the tests of
    database engines this run did not pick."""
    picked = engines_picked()
    kept: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        try:
            tier = TIER_BY_DIRECTORY.get(item.path.resolve().relative_to(TESTS).parts[0])
        except ValueError:
            tier = None
        if tier is not None:
            item.add_marker(tier)
        if isinstance(item, pytest.Function) and is_hypothesis_test(item.obj):
            item.add_marker("property")
        callspec = getattr(item, "callspec", None)
        if "store_url" in getattr(item, "fixturenames", ()):
            item.add_marker("db")
            engine = callspec.params.get("store_url") if callspec is not None else None
            if engine is not None and engine not in picked:
                deselected.append(item)
                continue
        kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def _reachable(url: str) -> bool:
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 3})
    try:
        with eng.connect():
            return True
    except Exception:
        return False
    finally:
        eng.dispose()


def _ensure(kind: str, url: str) -> None:
    if _reachable(url):
        return
    cmd = _START[kind]
    if shutil.which(cmd.split()[0]) is None:
        pytest.fail(f"{kind} is not reachable at {url} and {cmd.split()[0]} is not installed")
    subprocess.run(cmd, shell=True, check=False, capture_output=True)
    for _ in range(60):
        if _reachable(url):
            return
        time.sleep(0.5)
    pytest.fail(f"{kind} is not reachable at {url}, and starting it with `{cmd}` did not help")


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    kind = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'masd.db'}"
        return
    name = f"masd_t_{uuid.uuid4().hex[:12]}"
    admin_url = PG_ADMIN if kind == "postgresql" else MY_ADMIN
    _ensure(kind, admin_url)
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as c:
        if kind == "postgresql":
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        else:
            c.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as c:
            if kind == "postgresql":
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                c.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()
