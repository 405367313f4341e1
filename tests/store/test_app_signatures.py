"""Apps' carrier signatures in the store, on SQLite, PostgreSQL and MariaDB: set, shown by the key lookup
and the list, cleared, absent for apps from before migration 0012; and what the queue does when a
channel's signature changed between accept and send, so that the text goes out in more segments than
were counted: the delivery rolls up over the segments actually sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

from masd.core.apps import App
from masd.store import apps as app_store
from masd.store.db import MIGRATIONS, Database
from tests.store.test_resends import claim, receipt, row, send, submitted

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


def test_an_apps_signature_is_stored_and_the_key_lookup_carries_it(db: Database) -> None:
    _, key = db.write_sync(lambda c: app_store.create_app(c, "oa", now=NOW, signature="【市政府办公室】"))
    found = db.read_sync(lambda c: app_store.find_by_key(c, key))
    assert found is not None and App.from_row(found).signature == "【市政府办公室】"


def test_an_app_made_without_a_signature_uses_its_channels(db: Database) -> None:
    _, key = db.write_sync(lambda c: app_store.create_app(c, "oa", now=NOW))
    found = db.read_sync(lambda c: app_store.find_by_key(c, key))
    assert found is not None and App.from_row(found).signature is None


def test_a_signature_is_changed_listed_and_cleared(db: Database) -> None:
    db.write_sync(lambda c: app_store.create_app(c, "oa", now=NOW, signature="【市政府】"))
    assert db.write_sync(lambda c: app_store.update_app(c, "oa", signature="【会务组】"))
    (listed,) = db.read_sync(app_store.list_apps)
    assert listed["signature"] == "【会务组】"
    assert db.write_sync(lambda c: app_store.update_app(c, "oa", signature=None))
    found = db.read_sync(lambda c: app_store.get_app(c, "oa"))
    assert found is not None and found["signature"] is None


def test_apps_from_before_signatures_have_none_and_the_migration_can_be_undone(store_url: str) -> None:
    database = Database(store_url, group_commit_ms=1)
    try:
        _migrate(database, "upgrade", "0011")
        with database.write_engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO apps (name, key_hash, key_prefix, created_at) "
                    "VALUES ('oa', 'hash-of-a-key', 'masd_abcdefg', 1)"
                )
            )
        database.upgrade()
        found = database.read_sync(lambda c: app_store.get_app(c, "oa"))
        assert found is not None and App.from_row(found).signature is None
        _migrate(database, "downgrade", "0011")
        columns = database.read_sync(lambda c: {x["name"] for x in sa.inspect(c).get_columns("apps")})
        assert "signature" not in columns and "resend" in columns
    finally:
        database.dispose()


def test_a_delivery_sent_in_more_segments_than_counted_rolls_up_over_those_sent(db: Database) -> None:
    send(db, "13800138000", segments_each=1)  # counted at accept without the channel's new signature
    (cl,) = claim(db)
    submitted(db, cl, "a", total=2)  # the dispatcher signed it with the signature configured since
    assert row(db, cl.delivery_id)["segments"] == 2
    assert receipt(db, "a-1", "delivered").delivery_state is None  # one of two is not all
    assert row(db, cl.delivery_id)["state"] == "submitted"
    assert receipt(db, "a-2", "delivered").delivery_state == "delivered"


def test_a_delivery_sent_in_fewer_segments_than_counted_is_delivered_with_them(db: Database) -> None:
    send(db, "13800138000", segments_each=2)  # the channel's signature was removed since
    (cl,) = claim(db)
    submitted(db, cl, "a", total=1)
    assert receipt(db, "a-1", "delivered").delivery_state == "delivered"
