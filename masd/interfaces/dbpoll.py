"""DB polling, dialect ``mas``: an OA system's MAS tables as an interface to masd.

For each configured interface code one :class:`MasPoller` runs as the daemon's job ``dbpoll:<code>``
(on one node at a time when several share the database: masd.jobs) with two tasks:

- **intake** reads ``api_mt_<code>`` in batches (oldest ``AUTO_SN`` first), accepts each good row
  through the gateway as the configured app, notes it in masd's ``dbpoll_messages`` and then deletes it
  from ``api_mt``. A bad row is reported in ``api_rpt_<code>`` and deleted in the same OA transaction.
  Intake is idempotent: each row is accepted with a ``client_ref`` derived from its ``AUTO_SN`` and
  content, so a row read again after a crash or an OA outage (accepted, not yet deleted) returns the
  stored message instead of sending twice. A future ``SEND_TIME`` is accepted at once as a scheduled
  message; the row leaves ``api_mt`` and the core sends it when due.
- **reports** follows the app's event outbox (cursor ``dbpoll:<code>``): receipts of this code's
  messages with a non-zero SM_ID become ``api_rpt`` rows, replies become ``api_mo`` rows. The cursor
  moves only after the OA transaction has committed (at least once).

The OA database is reached through its own SQLAlchemy engine on worker threads. When it cannot be
reached, both tasks wait and try again with backoff (logged once per outage, gauge
``masd_dbpoll_up{code}``); nothing is removed from ``api_mt`` before masd has stored it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
import structlog
import trio
from prometheus_client import Gauge
from sqlalchemy import ColumnElement

from masd.config import ConfigError, DbPollConfig
from masd.core.apps import Forbidden, QuotaExceeded, RateLimited
from masd.core.gateway import App, Gateway, QueueFull, Rejected, SubmitRequest
from masd.interfaces import mas_rows as mas
from masd.store import mas as mas_store
from masd.store import mas_messages
from masd.store.db import Database, StoreUnavailable
from masd.store.jobs import Fence

if TYPE_CHECKING:
    from masd.node import Node

__all__ = ["MasPoller", "OaDatabase", "dbpoll_jobs", "oa_engine"]

T = TypeVar("T")
log = structlog.get_logger("masd.dbpoll")

INTERFACE = "dbpoll"
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
APP_MISSING_WAIT = 30.0
QUOTA_WAIT = 60.0  # a full quota is checked again this often (it may be raised meanwhile)
CONNECT_TIMEOUT = 5
CONTENT_RECHECK = 300.0  # seconds: how often to look again at the CONTENT column's character set


# ----- the OA's database ---------------------------------------------------------------------------------


def oa_engine(url: str, *, polling: bool = False, field: str = "url") -> sa.Engine:
    """An engine for an OA database URL. ``polling``: the engine the poller uses — on SQLite it never
    creates a missing file (a wrong path or a file moved away is an outage, not an empty database) and
    hands text over as bytes, so that GBK written into a TEXT column can be decoded instead of failing
    the whole batch."""
    try:
        u = sa.make_url(url)
    except sa.exc.ArgumentError as e:
        raise ConfigError(f"{field} = {url!r}: not a SQLAlchemy URL ({e})") from None
    backend = u.get_backend_name()
    if backend == "postgresql" and u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    if backend in ("mysql", "mariadb") and "+" not in u.drivername:
        u = u.set(drivername=f"{backend}+pymysql")
    try:
        if backend == "sqlite":
            path = u.database or ""
            if not path or path == ":memory:":
                raise ConfigError(f"{field} = {url!r}: an OA database on SQLite must be a file")
            full = str(Path(path).expanduser().resolve())

            def connect() -> sqlite3.Connection:
                if polling:
                    conn = sqlite3.connect(
                        Path(full).as_uri() + "?mode=rw",
                        uri=True,
                        timeout=CONNECT_TIMEOUT,
                        check_same_thread=False,
                    )
                    conn.text_factory = bytes
                else:
                    conn = sqlite3.connect(full, timeout=CONNECT_TIMEOUT, check_same_thread=False)
                return conn

            return sa.create_engine(
                "sqlite://", creator=connect, poolclass=sa.pool.QueuePool, pool_size=2, max_overflow=2
            )
        kwargs: dict[str, Any] = {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True}
        if backend in ("mysql", "mariadb"):
            kwargs["isolation_level"] = "READ COMMITTED"
            kwargs["pool_recycle"] = 3600
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
        elif backend == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
        return sa.create_engine(u, **kwargs)
    except (sa.exc.NoSuchModuleError, ImportError) as e:
        raise ConfigError(f"{field} = {url!r}: no database driver for it ({e})") from None


def describe(url: str) -> str:
    """A database URL fit for logs: without its password."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


class OaDatabase:
    """The OA's database, driven from trio: one transaction per call, on a worker thread."""

    def __init__(self, url: str, *, field: str = "url") -> None:
        self.engine = oa_engine(url, polling=True, field=field)
        self.dialect = self.engine.dialect.name
        self._limiter = trio.CapacityLimiter(2)

    def _tx(self, fn: Callable[[sa.Connection], T]) -> T:
        with self.engine.begin() as conn:
            return fn(conn)

    async def run(self, fn: Callable[[sa.Connection], T]) -> T:
        # An unreachable server may keep a thread in connect() for seconds: let shutdown leave it behind.
        return await trio.to_thread.run_sync(self._tx, fn, limiter=self._limiter, abandon_on_cancel=True)

    def dispose(self) -> None:
        self.engine.dispose()


# ----- outages -------------------------------------------------------------------------------------------


class _Link:
    """Whether a database is reachable, logged once per outage however many tasks hit it."""

    def __init__(self, code: str, what: str, gauge: Gauge | None) -> None:
        self.code = code
        self.what = what
        self.gauge = gauge
        self.down_since: float | None = None

    def failed(self, error: BaseException, hint: str = "") -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            detail = str(getattr(error, "orig", None) or error).strip().splitlines()
            log.warning(
                f"{self.what} unavailable; retrying with backoff{hint}",
                code=self.code,
                error=detail[0] if detail else type(error).__name__,
            )
            if self.gauge is not None:
                self.gauge.labels(self.code).set(0)

    def ok(self) -> None:
        if self.down_since is not None:
            log.info(
                f"{self.what} available again",
                code=self.code,
                down_seconds=round(time.monotonic() - self.down_since, 1),
            )
            self.down_since = None
        if self.gauge is not None:
            self.gauge.labels(self.code).set(1)


class _Backoff:
    def __init__(self) -> None:
        self.delay = BACKOFF_FIRST

    def next(self) -> float:
        d = self.delay
        self.delay = min(self.delay * 2, BACKOFF_MAX)
        return d

    def reset(self) -> None:
        self.delay = BACKOFF_FIRST


_OA_ERRORS = (sa.exc.SQLAlchemyError, OSError, sqlite3.Error)
_MISSING_HINT = "; if its tables are missing, run: masd dbpoll init {code}"


# ----- the poller ----------------------------------------------------------------------------------------


class MasPoller:
    """One interface code: intake from ``api_mt_<code>``, reports into ``api_rpt``/``api_mo``."""

    def __init__(
        self,
        code: str,
        cfg: DbPollConfig,
        gateway: Gateway,
        db: Database,
        app: App,
        *,
        home: bool = True,
        gauge: Gauge | None = None,
    ) -> None:
        self.code = code
        self.cfg = cfg
        self.gateway = gateway
        self.db = db
        self.app = app
        self.home = home  # replies to this app that belong to no code land here
        self.oa = OaDatabase(cfg.url, field=f"dbpoll.{code}.url")
        self.tables = mas_store.mas_tables(code, self.oa.dialect)
        self.consumer = mas_messages.consumer(code)
        # One per task: a table only one of them uses may be missing while the other works, and each
        # outage should be logged once, not once per flip between them.
        self.links = {
            task: (_Link(code, f"OA database ({task})", gauge), _Link(code, f"masd store ({task})", None))
            for task in ("intake", "reports")
        }
        self._content: ColumnElement[Any] | None = None  # how CONTENT is selected (store.mas)
        self._content_checked = 0.0
        self._stall: str | None = None  # why intake is waiting (app, rate, quota, queue), logged once

    async def run(self) -> None:
        log.info(
            "dbpoll started",
            code=self.code,
            app=self.app.name,
            oa=describe(self.cfg.url),
            tables=[t.name for t in self.tables],
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._intake_loop)
                nursery.start_soon(self._report_loop)
        finally:
            self.oa.dispose()

    def _failed(self, task: str, e: BaseException) -> None:
        oa, store = self.links[task]
        if isinstance(e, StoreUnavailable):
            store.failed(e)
        else:
            oa.failed(e, _MISSING_HINT.format(code=self.code))

    # ----- intake --------------------------------------------------------------------------------------

    async def _intake_loop(self) -> None:
        backoff = _Backoff()
        while True:
            try:
                handled, wait = await self.intake_once()
            except (*_OA_ERRORS, StoreUnavailable) as e:
                self._failed("intake", e)
                self._content = None
                await trio.sleep(backoff.next())
                continue
            backoff.reset()
            if wait is not None:
                await trio.sleep(wait)
            elif handled < self.cfg.batch:
                await trio.sleep(self.cfg.interval)

    async def intake_once(self) -> tuple[int, float | None]:
        """One poll: read a batch, accept what can be, report and remove what cannot. Returns (rows
        done, seconds to wait before the next poll when intake is stalled by the app's limits)."""
        app = await self.gateway.app_named(self.cfg.app)
        self.links["intake"][1].ok()
        if app is None:
            if self._stall != "app":
                self._stall = "app"
                log.error(
                    "dbpoll app no longer exists or was revoked; api_mt rows wait",
                    code=self.code,
                    app=self.cfg.app,
                )
            return 0, APP_MISSING_WAIT
        if self._stall == "app":
            log.info("dbpoll app exists again; intake resumed", code=self.code, app=self.cfg.app)
            self._stall = None
        self.app = app
        raw = await self.oa.run(self._read_batch)
        self.links["intake"][0].ok()
        if not raw:
            return 0, None
        now = mas.local_time(None)
        rows: list[mas.MtRow] = []
        bad: list[mas.BadRow] = []
        for r in raw:
            decided = mas.read_mt_row(r, code=self.code, encoding=self.cfg.encoding)
            (rows if isinstance(decided, mas.MtRow) else bad).append(decided)  # type: ignore[arg-type]
        accepted, refused, wait = await self._accept(app, rows)
        bad += refused
        if accepted:
            await self._record(accepted)
        reports: list[mas.RptRow] = []
        for b in bad:
            log.warning(
                "dbpoll row refused", code=self.code, auto_sn=b.auto_sn, sm_id=b.sm_id, reason=b.reason
            )
            if b.sm_id != 0:
                reports += b.reports(now)
        for row, _ in accepted:
            if row.sm_id != 0:
                reports += [
                    mas.RptRow(row.sm_id, entry, mas.CODES["bad_mobile"], f"{entry}: {why}", now)
                    for entry, why in row.invalid
                ]
        done = [row.auto_sn for row, _ in accepted] + [b.auto_sn for b in bad]
        if done:
            await self.oa.run(lambda c: self._finish(c, done, reports))
        return len(done), wait

    def _read_batch(self, conn: sa.Connection) -> list[dict[str, Any]]:
        if self._content is None or time.monotonic() >= self._content_checked + CONTENT_RECHECK:
            self._content = mas_store.content_column(conn, self.tables.mt)
            self._content_checked = time.monotonic()
        return mas_store.read_mt_rows(conn, self.tables.mt, self._content, limit=self.cfg.batch)

    def _finish(self, conn: sa.Connection, done: Sequence[int], reports: Sequence[mas.RptRow]) -> None:
        mas_store.finish_intake(conn, self.tables, done, [r.values() for r in reports])

    async def _accept(
        self, app: App, rows: list[mas.MtRow]
    ) -> tuple[list[tuple[mas.MtRow, int]], list[mas.BadRow], float | None]:
        """Accept rows in order; stop at the first that the app's rate, quota or the queue defers (it and
        the rest stay in api_mt). A refused row is reported with its own SM_ID and reason; the others of
        the batch go on. Returns (accepted rows with message ids, refused rows, wait)."""
        accepted: list[tuple[mas.MtRow, int]] = []
        refused: list[mas.BadRow] = []
        # notify is per call: rows wanting receipts (SM_ID ≠ 0) and rows that do not go separately.
        for notify in (True, False):
            group = [r for r in rows if (r.sm_id != 0) is notify]
            while group:
                try:
                    results = await self.gateway.accept(
                        [self._request(r) for r in group], interface=INTERFACE, app=app, notify=notify
                    )
                except (Rejected, Forbidden) as e:
                    i = e.message_index if len(group) > 1 else 0
                    if i is None:
                        # A refusal of the whole batch (the app may not send SMS at all): every row.
                        if isinstance(e, Forbidden):
                            refused += [self._refused(r, mas.CODES["forbidden"], e) for r in group]
                            break
                        i = 0
                    refused.append(self._refused(group.pop(i), self._code(e), e))
                    continue
                except (RateLimited, QuotaExceeded, QueueFull) as e:
                    if len(group) > 1:
                        # A batch may be over a limit that single rows are not: go one by one.
                        more, bad, wait = await self._accept_singly(app, group, notify)
                        accepted += more
                        refused += bad
                        if wait is not None:
                            return accepted, refused, wait
                        break
                    if isinstance(e, RateLimited) and e.retry_after is None:
                        refused.append(self._refused(group.pop(), mas.CODES["over_rate"], e))
                        continue
                    return accepted, refused, self._deferred(e)
                accepted += [(r, a.message_id) for r, a in zip(group, results, strict=True)]
                break
        if self._stall in ("rate", "quota", "queue"):
            log.info("dbpoll intake resumed", code=self.code)
            self._stall = None
        return accepted, refused, None

    async def _accept_singly(
        self, app: App, group: list[mas.MtRow], notify: bool
    ) -> tuple[list[tuple[mas.MtRow, int]], list[mas.BadRow], float | None]:
        accepted: list[tuple[mas.MtRow, int]] = []
        refused: list[mas.BadRow] = []
        for r in group:
            try:
                a = await self.gateway.send(self._request(r), interface=INTERFACE, app=app, notify=notify)
            except (Rejected, Forbidden) as e:
                refused.append(self._refused(r, self._code(e), e))
            except RateLimited as e:
                if e.retry_after is not None:
                    return accepted, refused, self._deferred(e)
                refused.append(self._refused(r, mas.CODES["over_rate"], e))  # it never fits the rate
            except (QuotaExceeded, QueueFull) as e:
                return accepted, refused, self._deferred(e)
            else:
                accepted.append((r, a.message_id))
        return accepted, refused, None

    @staticmethod
    def _code(e: Rejected | Forbidden) -> int:
        return mas.CODES["forbidden"] if isinstance(e, Forbidden) else mas.rejected_code(e.field)

    def _request(self, r: mas.MtRow) -> SubmitRequest:
        return SubmitRequest(
            text=r.text, recipients=r.recipients, send_at=r.send_at, client_ref=r.ref, extension=r.src_id
        )

    @staticmethod
    def _refused(r: mas.MtRow, code: int, e: Rejected | Forbidden | RateLimited) -> mas.BadRow:
        field = e.field.rsplit(".", 1)[-1]
        return mas.BadRow(r.auto_sn, r.sm_id, r.recipients, code, f"{field}: {e.reason}")

    def _deferred(self, e: Exception) -> float:
        """How long to leave api_mt alone after the app's rate, quota or the queue's limit said no.
        Such rows are not bad: they stay and go out once the limit allows."""
        kind = "rate" if isinstance(e, RateLimited) else "quota" if isinstance(e, QuotaExceeded) else "queue"
        if self._stall != kind:
            self._stall = kind
            log.warning("dbpoll intake waiting; rows stay in api_mt", code=self.code, why=str(e))
        if isinstance(e, RateLimited):
            return max(0.05, min(e.retry_after or 1.0, BACKOFF_MAX))
        if isinstance(e, QuotaExceeded):
            return QUOTA_WAIT
        return max(self.cfg.interval, 5.0)

    async def _record(self, accepted: list[tuple[mas.MtRow, int]]) -> None:
        """Note in masd's store which messages came from which row (upsert: a repeat is harmless)."""
        now = time.time()
        rows = {mid: (row.sm_id, row.src_id) for row, mid in accepted}
        await self.db.write(lambda c: mas_messages.note(c, self.code, rows, now=now))

    # ----- reports: receipts and replies into the OA's tables ---------------------------------------

    async def _report_loop(self) -> None:
        backoff = _Backoff()
        cursor: int | None = None
        maybe_written = True  # the OA may already hold rows of the events after the cursor
        while True:
            changed = self.gateway.events_changed()
            try:
                if cursor is None:
                    cursor = await self.gateway.get_cursor(self.app.id, self.consumer)
                events = await self.gateway.read_events(self.app.id, after=cursor, limit=self.cfg.batch)
                self.links["reports"][1].ok()
                if not events:
                    with trio.move_on_after(min(self.cfg.interval, 1.0)):
                        await changed.wait()
                    continue
                rpt, mo = await self._translate(events)
                if rpt or mo:
                    dedupe = maybe_written
                    maybe_written = True
                    await self.oa.run(lambda c: self._write_reports(c, rpt, mo, dedupe=dedupe))
                    self.links["reports"][0].ok()
                last = int(events[-1]["event"])
                maybe_written = True
                await self.gateway.set_cursor(self.app.id, self.consumer, last)
                maybe_written = False
                cursor = last
                backoff.reset()
            except (*_OA_ERRORS, StoreUnavailable) as e:
                self._failed("reports", e)
                await trio.sleep(backoff.next())

    async def _translate(self, events: list[dict[str, Any]]) -> tuple[list[mas.RptRow], list[mas.MoRow]]:
        message_ids = {int(e["message_id"]) for e in events if e.get("message_id") is not None}
        extensions = {str(e.get("extension") or "") for e in events if e["type"] == "reply"}
        code = self.code

        def lookup(conn: sa.Connection) -> tuple[dict[int, tuple[str, int]], set[str]]:
            # Where each message came from, and which SRC_IDs this code has sent with (replies to them
            # are its own).
            return mas_messages.origins(conn, message_ids), mas_messages.sent_with(conn, code, extensions)

        known, sent_with = await self.db.read(lookup)
        rpt: list[mas.RptRow] = []
        mo: list[mas.MoRow] = []
        for e in events:
            mid = e.get("message_id")
            owner: str | None = None
            sm_id: int | None = None
            if mid is not None and int(mid) in known:
                owner, sm_id = known[int(mid)]
            elif (sm_id := mas.sm_id_from_ref(e.get("client_ref"), code)) is not None:
                owner = code  # accepted a moment ago, not yet noted in dbpoll_messages
            elif str(e.get("client_ref") or "").startswith("mas:"):
                owner = str(e["client_ref"]).split(":")[1]
            if e["type"] == "receipt":
                if owner != code or not sm_id:
                    continue  # another interface's message, or SM_ID 0: no receipt wanted
                rpt.append(
                    mas.RptRow(
                        sm_id,
                        str(e["recipient"]),
                        mas.receipt_code(str(e["state"]), e.get("error_code")),
                        mas.receipt_desc(str(e["state"]), e.get("reason")),
                        mas.local_time(e.get("done_at")),
                    )
                )
            elif e["type"] == "reply":
                ext = str(e.get("extension") or "")
                if ext not in sent_with and owner != code and not (owner is None and self.home):
                    continue  # it answers another code's message
                # As a MAS writes it: SM_ID is the SRC_ID the reply was sent to (what the handset
                # showed after the service number and the app's extension), 0 for the bare extension.
                sm = mas.sm_id_of_reply(ext)
                text = str(e.get("text") or "")
                mo.append(
                    mas.MoRow(
                        sm,
                        str(e["sender"]),
                        text,
                        mas.local_time(e.get("received_at")),
                        mas.mo_msg_fmt(text),
                    )
                )
        return rpt, mo

    def _write_reports(
        self, conn: sa.Connection, rpt: list[mas.RptRow], mo: list[mas.MoRow], *, dedupe: bool
    ) -> None:
        # dedupe: after a restart or a failure the OA may already hold these (written, cursor not moved).
        mas_store.write_reports(
            conn, self.tables, [r.values() for r in rpt], [r.values() for r in mo], dedupe=dedupe
        )


# ----- the daemon's part ---------------------------------------------------------------------------------


async def dbpoll_jobs(node: Node) -> dict[str, Callable[[Fence], Awaitable[None]]]:
    """One job per ``[dbpoll.CODE]``, named ``dbpoll:CODE``: its poller, which the daemon runs on one node
    at a time (masd.jobs). Refuses to start when a code's app does not exist, on every node."""
    cfg = node.cfg
    gauge = Gauge(
        "masd_dbpoll_up",
        "1 while the OA database of an interface code is reachable, 0 during an outage",
        ["code"],
        registry=node.metrics.registry,
    )
    homes: dict[str, str] = {}
    for code in sorted(cfg.dbpoll):
        homes.setdefault(cfg.dbpoll[code].app, code)
    pollers: list[MasPoller] = []
    for code, c in cfg.dbpoll.items():
        app = await node.gateway.app_named(c.app)
        if app is None:
            raise ConfigError(
                f"dbpoll.{code}.app = {c.app!r}: no such app (or it was revoked); create it with "
                f"'masd apps create {c.app}' or name an existing app"
            )
        pollers.append(MasPoller(code, c, node.gateway, node.db, app, home=homes[c.app] == code, gauge=gauge))
    return {f"dbpoll:{p.code}": _job(p) for p in pollers}


def _job(poller: MasPoller) -> Callable[[Fence], Awaitable[None]]:
    async def run(fence: Fence) -> None:
        await poller.run()

    return run
