"""DB polling writes a report or a reply once: after a restart, or when its job moves to another node, the
rows it may already have written are looked up first — on every OA engine, SQLite's polling engine (which
hands text back as bytes) included."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from masd.interfaces import mas_rows as mas
from masd.interfaces.dbpoll import oa_engine
from masd.store import mas as mas_store


def test_reports_already_in_a_sqlite_api_rpt_are_not_written_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'oa.db'}"
    tables = mas_store.mas_tables("oa1", "sqlite")
    setup = sa.create_engine(url)
    tables.rpt.metadata.create_all(setup)
    at = dt.datetime(2030, 5, 20, 9, 30, 0)
    written = mas.RptRow(11, "13800138000", 0, "DELIVRD", at).values()
    with setup.begin() as c:
        c.execute(sa.insert(tables.rpt), [written])
    setup.dispose()
    polling = oa_engine(url, polling=True)
    new = mas.RptRow(12, "13800138000", 0, "DELIVRD", at).values()
    with polling.connect() as c:
        left = mas_store.unseen_rows(
            c, tables.rpt, [written, new], ("sm_id", "mobile", "rpt_code", "rpt_time"), "sm_id"
        )
    polling.dispose()
    assert left == [new]
