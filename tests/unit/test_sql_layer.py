"""SQL is written only in masd/store/ and in each module's own store and tables modules.

Elsewhere a file may hold a connection, an engine or a column expression it was handed, and catch
SQLAlchemy's errors, but it builds no statement: no select/insert/update/delete, no text(), no table.
That keeps every statement where a reader looks for it and where the tests run it on SQLite, PostgreSQL
and MariaDB.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What code outside the store may name of SQLAlchemy: handles and errors, nothing that builds SQL.
HANDLES = {"Connection", "Engine", "URL", "create_engine", "make_url", "exc", "pool", "ColumnElement"}


def _sql_home(path: Path) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return rel.startswith("masd/store/") or (
        rel.startswith("masd/modules/") and path.name in ("store.py", "tables.py")
    )


def _statements_built(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases = {"sqlalchemy"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "sqlalchemy"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sqlalchemy"):
            found += [
                f"{path.name}:{node.lineno} from {node.module} import {a.name}"
                for a in node.names
                if a.name not in HANDLES
            ]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr not in HANDLES
        ):
            found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_no_sql_outside_the_store_and_the_modules_store_modules() -> None:
    offenders = {
        str(path.relative_to(ROOT)): built
        for top in ("masd", "adapters")
        for path in sorted((ROOT / top).rglob("*.py"))
        if not _sql_home(path) and (built := _statements_built(path))
    }
    assert offenders == {}


def test_the_check_sees_a_statement(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sqlalchemy as sa\n\ndef f(c: sa.Connection):\n    return c.execute(sa.select(1))\n"
    )
    assert _statements_built(probe) == ["probe.py:4 sa.select"]
