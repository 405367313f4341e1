"""Hot statements without SQLAlchemy's per-execution work, for the few every message passes through.

SQLAlchemy Core spends tens of microseconds per execution (cache key, parameter processing, expanding
IN lists, Row objects) and about ten per executemany row; at thousands of messages a second that was
most of the store's time. Here a statement is built with SQLAlchemy once per dialect — so quoting,
placeholders and ``FOR UPDATE SKIP LOCKED`` stay the dialect's business — and its SQL then goes straight
to the driver's cursor. Only plain values (int, float, str, bytes, None) may be passed: no type
processing happens, and rows come back as plain tuples.

An ``IN`` list is a fixed number of placeholders (``in_0`` … ``in_{n-1}``), n padded up to a power of
two by repeating the last value, so that a handful of statements per kind cover every batch size.
Driver errors are re-raised as SQLAlchemy's (``sa.exc.OperationalError`` …), and a connection the
driver reports as lost is invalidated, exactly as for statements SQLAlchemy runs itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

__all__ = ["MAX_IN", "change_in", "executemany", "in_params", "select", "select_in"]

MAX_IN = 512  # values per IN list; longer lists run in chunks

# (key, dialect, IN size) -> (sql, positional names or None, constants bound in the statement)
_Compiled = tuple[str, tuple[str, ...] | None, dict[str, Any]]
_compiled: dict[tuple[str, str, int], _Compiled] = {}


def _statement(conn: sa.Connection, key: str, build: Callable[[], sa.ClauseElement], size: int) -> _Compiled:
    dialect = conn.dialect
    cached = _compiled.get((key, dialect.name, size))
    if cached is None:
        compiled: Any = build().compile(dialect=dialect)
        names = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
        # Constants in the statement (e.g. state='submitted') are bound parameters with a value.
        fixed = {name: bp.value for bp, name in compiled.bind_names.items() if not bp.required}
        cached = (str(compiled), names, fixed)
        _compiled[(key, dialect.name, size)] = cached
    return cached


def _params(cached: _Compiled, rows: Sequence[dict[str, Any]]) -> list[Any]:
    _, names, fixed = cached
    if fixed:
        rows = [{**fixed, **row} for row in rows]
    if names is None:
        return list(rows)
    if len(names) == 1:
        name = names[0]
        return [(row[name],) for row in rows]
    get = itemgetter(*names)
    return [get(row) for row in rows]


def _run(conn: sa.Connection, sql: str, params: Any, *, many: bool) -> list[Any] | int:
    """Execute on the transaction's own driver connection; fetched rows, or the row count."""
    dbapi_conn: Any = conn.connection.dbapi_connection
    cur = dbapi_conn.cursor()
    try:
        if many:
            cur.executemany(sql, params)
        else:
            cur.execute(sql, params)
        if cur.description is None:
            return int(cur.rowcount or 0)
        rows = cur.fetchall()
        return rows if isinstance(rows, list) else list(rows)  # PyMySQL answers a tuple
    except conn.dialect.loaded_dbapi.Error as e:
        lost = conn.dialect.is_disconnect(e, dbapi_conn, cur)
        if lost:
            conn.invalidate(e)
        raise sa.exc.DBAPIError.instance(
            sql,
            params,
            e,
            conn.dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=conn.dialect,
            ismulti=many,
        ) from e
    finally:
        cur.close()


def executemany(
    conn: sa.Connection, key: str, build: Callable[[], sa.ClauseElement], rows: Sequence[dict[str, Any]]
) -> None:
    """Run the statement ``build()`` makes (cached under ``key``) once per row of ``rows``."""
    if not rows:
        return
    cached = _statement(conn, key, build, 0)
    _run(conn, cached[0], _params(cached, rows), many=True)


def in_params(n: int) -> list[sa.BindParameter[Any]]:
    """The placeholders of an IN list of ``n`` values, for a statement builder of :func:`fetch_in`."""
    return [sa.bindparam(f"in_{i}") for i in range(n)]


def _chunks(values: Sequence[Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    for start in range(0, len(values), MAX_IN):
        chunk = list(values[start : start + MAX_IN])
        size = 1
        while size < len(chunk):
            size *= 2
        chunk += [chunk[-1]] * (size - len(chunk))
        yield size, {f"in_{i}": v for i, v in enumerate(chunk)}


def select(
    conn: sa.Connection, key: str, build: Callable[[], sa.ClauseElement], params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """The rows of the SELECT ``build()`` makes (cached under ``key``), as tuples."""
    cached = _statement(conn, key, build, 0)
    out = _run(conn, cached[0], _params(cached, [params])[0], many=False)
    assert isinstance(out, list)
    return out


def _each_chunk(
    conn: sa.Connection,
    key: str,
    build: Callable[[int], sa.ClauseElement],
    values: Sequence[Any],
    params: dict[str, Any] | None,
) -> Iterator[list[Any] | int]:
    for size, bound in _chunks(values):
        cached = _statement(conn, key, lambda: build(size), size)
        yield _run(conn, cached[0], _params(cached, [{**(params or {}), **bound}])[0], many=False)


def select_in(
    conn: sa.Connection,
    key: str,
    build: Callable[[int], sa.ClauseElement],
    values: Sequence[Any],
    params: dict[str, Any] | None = None,
) -> list[tuple[Any, ...]]:
    """The rows of the SELECT ``build(n)`` makes — its IN list being ``in_params(n)`` — for ``values``,
    in chunks of at most :data:`MAX_IN` (so ORDER BY holds within a chunk)."""
    rows: list[tuple[Any, ...]] = []
    for out in _each_chunk(conn, key, build, values, params):
        assert isinstance(out, list)
        rows.extend(out)
    return rows


def change_in(
    conn: sa.Connection,
    key: str,
    build: Callable[[int], sa.ClauseElement],
    values: Sequence[Any],
    params: dict[str, Any] | None = None,
) -> int:
    """Run the UPDATE / DELETE / INSERT … SELECT ``build(n)`` makes for ``values`` (IN list as in
    :func:`select_in`); the number of rows it changed."""
    changed = 0
    for out in _each_chunk(conn, key, build, values, params):
        assert isinstance(out, int)
        changed += out
    return changed
