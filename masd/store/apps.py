"""Apps: who may submit. A key is shown once when made; only its SHA-256 is stored.

Keys are 32 random bytes, so a fast hash is enough: there is nothing to brute-force that a slow hash
would protect.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import sqlalchemy as sa

from masd.core.apps import DEFAULT_SCOPES
from masd.store.tables import apps

__all__ = [
    "AppExists",
    "create_app",
    "find_by_key",
    "get_app",
    "hash_key",
    "list_apps",
    "owners_of_extensions",
    "revoke_app",
    "rotate_key",
    "update_app",
]

# What an app row carries besides its key: the settings `masd apps create/set` manage.
SETTINGS = (
    "channels",
    "rate",
    "quota_per_day",
    "extension",
    "webhook_url",
    "webhook_secret",
    "scopes",
    "resend",
    "signature",
)

KEY_PREFIX = "masd_"


class AppExists(ValueError):
    pass


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _check_extension(conn: sa.Connection, name: str, extension: str | None) -> None:
    if not extension:
        return
    if not extension.isdigit() or len(extension) > 12:
        raise ValueError(f"extension {extension!r} must be 1 to 12 digits")
    # One app's extension may not be a prefix of another's, or a reply could belong to both.
    for other, ext in conn.execute(
        sa.select(apps.c.name, apps.c.extension).where(apps.c.extension.is_not(None))
    ):
        if other != name and ext and (ext.startswith(extension) or extension.startswith(ext)):
            raise ValueError(f"extension {extension!r} overlaps app {other!r}'s extension {ext!r}")


def create_app(conn: sa.Connection, name: str, *, now: float, **settings: Any) -> tuple[int, str]:
    """Make an app and its key. ``settings``: any of :data:`SETTINGS`; without ``scopes`` the app has
    the default scopes, written into its row."""
    if conn.execute(sa.select(apps.c.id).where(apps.c.name == name)).first() is not None:
        raise AppExists(f"an app named {name!r} already exists; use 'masd apps rotate {name}' for a new key")
    bad = set(settings) - set(SETTINGS)
    if bad:
        raise TypeError(f"unknown app settings: {', '.join(sorted(bad))}")
    _check_extension(conn, name, settings.get("extension"))
    settings.setdefault("scopes", ",".join(sorted(DEFAULT_SCOPES)))
    key = _new_key()
    app_id = conn.execute(
        sa.insert(apps)
        .values(name=name, key_hash=hash_key(key), key_prefix=key[:12], created_at=now, **settings)
        .returning(apps.c.id)
    ).scalar_one()
    return int(app_id), key


def update_app(conn: sa.Connection, name: str, **settings: Any) -> bool:
    """Change settings of a live app (a value of None clears that limit)."""
    bad = set(settings) - set(SETTINGS)
    if bad:
        raise TypeError(f"unknown app settings: {', '.join(sorted(bad))}")
    if "extension" in settings:
        _check_extension(conn, name, settings["extension"])
    if not settings:
        return get_app(conn, name) is not None
    res = conn.execute(
        sa.update(apps).where(apps.c.name == name, apps.c.revoked_at.is_(None)).values(**settings)
    )
    return bool(res.rowcount)


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


_PUBLIC = (apps.c.id, apps.c.name, *(apps.c[x] for x in SETTINGS))


def find_by_key(conn: sa.Connection, key: str) -> dict[str, Any] | None:
    """The live app this key belongs to, with its settings; None for an unknown or revoked key."""
    row = (
        conn.execute(sa.select(*_PUBLIC).where(apps.c.key_hash == hash_key(key), apps.c.revoked_at.is_(None)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def get_app(conn: sa.Connection, name: str) -> dict[str, Any] | None:
    """A live app by name, with its settings."""
    row = (
        conn.execute(sa.select(*_PUBLIC).where(apps.c.name == name, apps.c.revoked_at.is_(None)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def get_app_by_id(conn: sa.Connection, app_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(*_PUBLIC).where(apps.c.id == app_id)).mappings().first()
    return dict(row) if row else None


def owners_of_extensions(conn: sa.Connection) -> dict[str, int]:
    """Extension → app id, for the live apps that own one."""
    return {
        ext: int(app_id)
        for app_id, ext in conn.execute(
            sa.select(apps.c.id, apps.c.extension).where(
                apps.c.extension.is_not(None), apps.c.revoked_at.is_(None)
            )
        )
        if ext
    }


def list_apps(conn: sa.Connection) -> list[dict[str, Any]]:
    return [
        dict(x)
        for x in conn.execute(
            sa.select(
                apps.c.id,
                apps.c.name,
                apps.c.key_prefix,
                apps.c.created_at,
                apps.c.revoked_at,
                *(apps.c[x] for x in SETTINGS if x != "webhook_secret"),
            ).order_by(apps.c.id)
        ).mappings()
    ]


def ids_by_name(conn: sa.Connection, names: list[str]) -> dict[str, int]:
    """Live apps' ids by name (for keyword rules, which name apps)."""
    if not names:
        return {}
    return {
        name: int(app_id)
        for app_id, name in conn.execute(
            sa.select(apps.c.id, apps.c.name).where(apps.c.name.in_(names), apps.c.revoked_at.is_(None))
        )
    }
