"""Apps' scopes in the store, on SQLite, PostgreSQL and MariaDB: what a new app is given, what a change
writes, what the key lookup carries, and what migration 0006 gives the apps that existed before it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

from masd.core.apps import DEFAULT_SCOPES, App
from masd.store import apps as app_store
from masd.store.db import MIGRATIONS, Database
from masd.store.tables import apps

NOW = 1_800_000_000.0


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url, group_commit_ms=1)
    database.upgrade()
    yield database
    database.dispose()


def _migrate(database: Database, how: str, revision: str) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with database.write_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, how)(cfg, revision)


def _stored_scopes(database: Database, name: str) -> str | None:
    return database.read_sync(
        lambda c: c.execute(sa.select(apps.c.scopes).where(apps.c.name == name)).scalar_one()
    )


def test_an_app_made_without_scopes_has_the_default_written_into_its_row(db: Database) -> None:
    _, key = db.write_sync(lambda c: app_store.create_app(c, "oa", now=NOW))
    assert _stored_scopes(db, "oa") == "meetings,messages,replies"
    found = db.read_sync(lambda c: app_store.find_by_key(c, key))
    assert found is not None and App.from_row(found).scopes == DEFAULT_SCOPES


def test_an_app_made_with_scopes_has_those_and_the_key_lookup_carries_them(db: Database) -> None:
    _, key = db.write_sync(
        lambda c: app_store.create_app(c, "oa", now=NOW, scopes="contacts:read,contacts:write")
    )
    found = db.read_sync(lambda c: app_store.find_by_key(c, key))
    assert found is not None and found["scopes"] == "contacts:read,contacts:write"


def test_a_change_of_scopes_replaces_them_and_is_listed(db: Database) -> None:
    db.write_sync(lambda c: app_store.create_app(c, "oa", now=NOW))
    assert db.write_sync(lambda c: app_store.update_app(c, "oa", scopes="contacts:read,messages"))
    (listed,) = db.read_sync(app_store.list_apps)
    assert listed["scopes"] == "contacts:read,messages"


def test_apps_from_before_scopes_get_the_default_set_without_the_address_book(store_url: str) -> None:
    database = Database(store_url, group_commit_ms=1)
    try:
        _migrate(database, "upgrade", "0005")
        with database.write_engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO apps (name, key_hash, key_prefix, created_at) "
                    "VALUES ('oa', 'hash-of-a-key', 'masd_abcdefg', 1)"
                )
            )
        database.upgrade()
        assert _stored_scopes(database, "oa") == "meetings,messages,replies"
        row = database.read_sync(lambda c: app_store.get_app(c, "oa"))
        assert row is not None and "contacts:read" not in App.from_row(row).scopes
    finally:
        database.dispose()


def test_the_scopes_migration_can_be_undone(db: Database) -> None:
    db.write_sync(lambda c: app_store.create_app(c, "oa", now=NOW))
    _migrate(db, "downgrade", "0005")
    columns = db.read_sync(lambda c: {x["name"] for x in sa.inspect(c).get_columns("apps")})
    assert "scopes" not in columns and "name" in columns
