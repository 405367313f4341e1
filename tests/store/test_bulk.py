"""The raw-execution helpers behind the hot statements: IN lists of any length, counts, driver errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from masd.store import _bulk
from masd.store.db import Database
from masd.store.tables import apps


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url)
    database.upgrade()
    yield database
    database.dispose()


def _make_apps(db: Database, n: int) -> list[int]:
    with db.write_engine.begin() as conn:
        conn.execute(
            sa.insert(apps),
            [
                {"name": f"bulk-{i}", "key_hash": f"h{i}", "key_prefix": "p", "created_at": 0.0}
                for i in range(n)
            ],
        )
        rows = conn.execute(sa.select(apps.c.id).where(apps.c.name.like("bulk-%")).order_by(apps.c.id))
        return [row[0] for row in rows]


def _names(n: int) -> sa.ClauseElement:
    return sa.select(apps.c.id, apps.c.name).where(apps.c.id.in_(_bulk.in_params(n))).order_by(apps.c.id)


@pytest.mark.parametrize("count", [1, 3, 64, 65, _bulk.MAX_IN + 37])
def test_an_in_list_of_any_length_finds_each_row_once(db: Database, count: int) -> None:
    ids = _make_apps(db, count)
    with db.write_engine.begin() as conn:
        rows = _bulk.select_in(conn, "test_names", _names, ids)
    assert sorted(rows) == [(i, f"bulk-{k}") for k, i in enumerate(ids)]


def test_a_padded_in_list_changes_each_row_once(db: Database) -> None:
    ids = _make_apps(db, 5)  # padded to 8 by repeating the last id
    with db.write_engine.begin() as conn:
        changed = _bulk.change_in(
            conn,
            "test_rename",
            lambda n: sa.update(apps).where(apps.c.id.in_(_bulk.in_params(n))).values(name=apps.c.name + "x"),
            ids,
        )
        names = sorted(r[0] for r in conn.execute(sa.select(apps.c.name).where(apps.c.id.in_(ids))))
    assert changed == 5
    assert names == sorted(f"bulk-{k}x" for k in range(5))


def test_a_driver_error_is_raised_as_sqlalchemys(db: Database) -> None:
    ids = _make_apps(db, 2)
    with pytest.raises(sa.exc.DBAPIError), db.write_engine.begin() as conn:
        # Both rows take one name: the unique constraint on apps.name refuses it.
        _bulk.change_in(
            conn,
            "test_clash",
            lambda n: sa.update(apps).where(apps.c.id.in_(_bulk.in_params(n))).values(name="same"),
            ids,
        )
