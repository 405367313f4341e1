"""Shared fixtures: a fresh database per test on each engine masd supports.

``store_url`` is parametrised over SQLite, PostgreSQL and MariaDB. Each test gets a database of its own,
created for it and dropped after, so no test sees another's rows. If PostgreSQL or MariaDB is not
running, the fixture starts it with the command this machine kind documents; if that fails the test
fails (it is not skipped: the store must be tested on all three).
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

PG_ADMIN = os.environ.get("MASD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MY_ADMIN = os.environ.get("MASD_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")

_START = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "mariadb": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
}


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


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
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
