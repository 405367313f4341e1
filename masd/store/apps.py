"""Apps: who may submit. A key is shown once when made; only its SHA-256 is stored.

Keys are 32 random bytes, so a fast hash is enough: there is nothing to brute-force that a slow hash
would protect.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import sqlalchemy as sa

from masd.store.tables import apps

__all__ = ["AppExists", "create_app", "find_by_key", "hash_key", "list_apps", "revoke_app", "rotate_key"]

KEY_PREFIX = "masd_"


class AppExists(ValueError):
    pass


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_app(conn: sa.Connection, name: str, *, now: float) -> tuple[int, str]:
    if conn.execute(sa.select(apps.c.id).where(apps.c.name == name)).first() is not None:
        raise AppExists(f"an app named {name!r} already exists; use 'masd apps rotate {name}' for a new key")
    key = _new_key()
    app_id = conn.execute(
        sa.insert(apps)
        .values(name=name, key_hash=hash_key(key), key_prefix=key[:12], created_at=now)
        .returning(apps.c.id)
    ).scalar_one()
    return int(app_id), key


def rotate_key(conn: sa.Connection, name: str) -> str | None:
    key = _new_key()
    res = conn.execute(
        sa.update(apps)
        .where(apps.c.name == name, apps.c.revoked_at.is_(None))
        .values(key_hash=hash_key(key), key_prefix=key[:12])
    )
    return key if res.rowcount else None


def revoke_app(conn: sa.Connection, name: str, *, now: float) -> bool:
    res = conn.execute(
        sa.update(apps).where(apps.c.name == name, apps.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    return bool(res.rowcount)


def find_by_key(conn: sa.Connection, key: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            sa.select(apps.c.id, apps.c.name).where(
                apps.c.key_hash == hash_key(key), apps.c.revoked_at.is_(None)
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def list_apps(conn: sa.Connection) -> list[dict[str, Any]]:
    return [
        dict(x)
        for x in conn.execute(
            sa.select(
                apps.c.id, apps.c.name, apps.c.key_prefix, apps.c.created_at, apps.c.revoked_at
            ).order_by(apps.c.id)
        ).mappings()
    ]
