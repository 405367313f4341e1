"""Who is calling: bearer API keys, checked against the store once and then cached in-process.

Keys are cached for ``KEY_TTL`` (a hit) or ``MISS_TTL`` (an unknown key), so the hot path costs no
database read for authentication; a revoked key keeps working until its entry expires. Every
authenticated route, the modules' included, depends on :func:`calling_app`; an app's scopes and
channel kinds are checked by the core (:meth:`masd.core.apps.App.require`) where the route needs them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import trio
from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from masd.core.gateway import App
from masd.interfaces.http.errors import ApiError

__all__ = ["GET_KEY", "KEY_CACHE_MAX", "KEY_TTL", "MISS_TTL", "KeyCache", "bearer", "calling_app"]

KEY_TTL = 5.0  # seconds a valid key is trusted without asking the store again (a revoke takes this long)
MISS_TTL = 5.0  # seconds an unknown key is refused without asking again (a new key waits at most this)
KEY_CACHE_MAX = 10_000  # entries; random keys from a scanner must not grow the cache without bound

GET_KEY = "create one with 'masd apps create NAME' (or 'masd apps rotate NAME' for a new key)"


class KeyCache:
    """API key → app, asking the store at most once per key per TTL.

    Concurrent requests with the same uncached key share one lookup, so a burst at start-up (or after
    expiry) costs one read, not one per request."""

    def __init__(
        self,
        lookup: Callable[[str], Awaitable[App | None]],
        *,
        ttl: float = KEY_TTL,
        miss_ttl: float = MISS_TTL,
        max_entries: int = KEY_CACHE_MAX,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._miss_ttl = miss_ttl
        self._max = max_entries
        self._entries: dict[str, tuple[float, App | None]] = {}
        self._inflight: dict[str, trio.Event] = {}

    async def get(self, key: str) -> App | None:
        while True:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > time.monotonic():
                return entry[1]
            pending = self._inflight.get(key)
            if pending is None:
                break
            # Someone is asking already; if their lookup fails we come round and ask ourselves.
            await pending.wait()
        done = self._inflight[key] = trio.Event()
        try:
            app = await self._lookup(key)
        finally:
            del self._inflight[key]
            done.set()
        now = time.monotonic()
        if len(self._entries) >= self._max:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self._max:
                self._entries.clear()
        self._entries[key] = (now + (self._ttl if app is not None else self._miss_ttl), app)
        return app


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="masd API key",
    description="An app's API key, sent as 'Authorization: Bearer <key>'; " + GET_KEY + ".",
)


async def calling_app(request: Request, creds: HTTPAuthorizationCredentials | None = Security(bearer)) -> App:
    """The app whose key the request carries, through the application's key cache
    (``app.state.keys``); 401 naming what is wrong otherwise. Every authenticated route, the modules'
    included, depends on this one function."""
    if creds is None:
        given = request.headers.get("authorization")
        reason = (
            "no API key; send 'Authorization: Bearer <key>'"
            if not given
            else "the Authorization header must be 'Bearer <key>'"
        )
        raise ApiError(401, "unauthorized", f"{reason}; {GET_KEY}", headers={"WWW-Authenticate": "Bearer"})
    found: App | None = await request.app.state.keys.get(creds.credentials)
    if found is None:
        raise ApiError(
            401,
            "unauthorized",
            f"the API key is not valid or was revoked; {GET_KEY}",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return found
