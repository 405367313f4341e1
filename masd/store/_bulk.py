"""Executemany without SQLAlchemy's per-row work, for the few statements every message passes through.

SQLAlchemy Core spends about ten microseconds building each row's parameters; at thousands of rows a
second that is most of the store's time. For the hot statements the compiled SQL is cached per dialect
and the rows go straight to the driver's ``executemany``. Only plain values (int, float, str, None) may
be passed: no type processing happens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

__all__ = ["executemany"]

_compiled: dict[tuple[str, str], tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}


def executemany(
    conn: sa.Connection, key: str, build: Callable[[], sa.ClauseElement], rows: Sequence[dict[str, Any]]
) -> None:
    """Run the statement ``build()`` makes (cached under ``key``) once per row of ``rows``."""
    if not rows:
        return
    dialect = conn.dialect
    cached = _compiled.get((key, dialect.name))
    if cached is None:
        compiled: Any = build().compile(dialect=dialect)
        names = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
        # Constants in the statement (e.g. state='submitted') are bound parameters with a value.
        fixed = {name: bp.value for bp, name in compiled.bind_names.items() if not bp.required}
        cached = (str(compiled), names, fixed)
        _compiled[(key, dialect.name)] = cached
    sql, names, fixed = cached
    if names is not None:
        params: Any = [tuple(row[n] if n in row else fixed.get(n) for n in names) for row in rows]
    else:
        params = [{**fixed, **row} for row in rows] if fixed else list(rows)
    conn.exec_driver_sql(sql, params)
