"""The storage facade: a synchronous SQLAlchemy engine driven from trio, with group commit.

aiosqlite cannot serve under trio (it is an asyncio bridge, and runs sqlite3 on a thread anyway), so
masd runs SQLAlchemy's sync engine on worker threads through ``trio.to_thread`` with capacity limiters:
one writer at a time, a few readers. Writes go through a group committer: every write waiting while a
transaction runs joins the next one, so a thousand state changes cost one commit (one fsync) instead
of a thousand. A write that finds the committer idle waits for company until the trio thread has
nothing else to run (or ``group_commit_ms`` at most). Each write is a function of a connection; its
result is handed back only after the transaction holding it has committed, so a caller that was
answered knows its change is durable.

With ``intake_rows_per_commit`` set, intake (new messages, marked with ``bulk_rows``) goes into each
transaction only up to that many rows, after every other write that waits: a burst of batch requests
otherwise makes transactions of thousands of rows, and the dispatcher's outcomes, claims and receipts,
each a small write, wait behind every one of them — the queue nearly stops draining while it fills.
Writes not yet committed have not been answered, so none can depend on another; running a waiting
intake write in a later transaction than a write queued after it changes nothing a caller could see.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
import trio

__all__ = ["Database", "StoreUnavailable", "ping"]

T = TypeVar("T")
log = structlog.get_logger("masd.store")
MIGRATIONS = Path(__file__).with_name("migrations")


try:
    # Public as trio.testing.wait_all_tasks_blocked, but trio.testing imports pytest (a tenth of a
    # second at start-up); tests/store/test_store.py fails should this import stop working.
    from trio._core import wait_all_tasks_blocked as _trio_thread_idle
except ImportError:  # pragma: no cover - a trio without it: wait the whole group_commit_ms

    async def _trio_thread_idle(cushion: float = 0.0) -> None:
        await trio.sleep_forever()


class StoreUnavailable(RuntimeError):
    """The database could not be reached or refused the transaction."""


class _CommitterGone(Exception):
    """The group committer stopped before it ran this write."""


# A handler for writes of one kind: it takes many items and answers one result per item, in order.
BatchHandler = Callable[[sa.Connection, list[Any]], list[Any]]


@dataclasses.dataclass(eq=False)
class _Op:
    fn: Callable[[sa.Connection], Any] | None
    done: trio.Event = dataclasses.field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None
    handler: BatchHandler | None = None  # set for a mergeable write: `items` join others of its kind
    items: list[Any] = dataclasses.field(default_factory=list)
    bulk_rows: int = 0  # intake: rows it adds, which the committer spreads over transactions

    def run_alone(self, conn: sa.Connection) -> Any:
        if self.handler is not None:
            return self.handler(conn, self.items)
        assert self.fn is not None
        return self.fn(conn)


class _WriteLock:
    """Writers of one SQLite file, in this process and others (intake workers, the CLI), take turns on
    an advisory lock beside it before BEGIN IMMEDIATE. SQLite's own wait for a busy database polls,
    sleeping up to 100 ms between tries, which left requests waiting half a second while a transaction
    of a millisecond or two ran elsewhere; a blocked flock wakes as soon as the holder lets go."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._guard = threading.Lock()  # flock does not exclude threads sharing one descriptor

    @contextlib.contextmanager
    def held(self) -> Any:
        with self._guard:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._guard:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


# The data directory and the SQLite files hold messages, phone numbers and webhook signing secrets: they
# are the owner's alone, whatever the umask.
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal", "-writelock")


def _owner_only(paths: list[Path]) -> None:
    """Take group and other permissions off each of ``paths`` that exists and has any; say so once."""
    tightened: list[str] = []
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if not mode & 0o077:
            continue
        try:
            os.chmod(path, mode & ~0o077)
        except OSError as e:  # not ours to change (a shared directory owned by someone else)
            log.warning(
                "cannot make readable by its owner only", path=str(path), mode=f"{mode:o}", error=str(e)
            )
            continue
        tightened.append(f"{path} ({mode:o} -> {mode & ~0o077:o})")
    if tightened:
        log.warning("made readable by their owner only", paths=tightened)


def _private_directory(path: Path) -> None:
    """Create ``path`` (and any missing parents) with mode 0700, or tighten it if it exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)  # the umask can only take bits away
    _owner_only([path])


def _create_sqlite_file(database: str) -> None:
    """Create an empty database file with mode 0600 before SQLite does (it would use 0644 less the
    umask); SQLite gives its -wal and -shm files the database file's mode. An existing database and its
    side files are tightened."""
    path = Path(database)
    if not path.parent.exists():
        _private_directory(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass
    _owner_only([path, *(Path(database + side) for side in _SQLITE_SIDE_FILES)])


def _sqlite_engine(url: sa.URL, *, immediate: bool, pool_size: int) -> sa.Engine:
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=False)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transactions into our own hands so that writers can BEGIN IMMEDIATE: a deferred
        # transaction that later upgrades to a write fails at once with SQLITE_BUSY under concurrency.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """One database: engines, migrations, reads and group-committed writes."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        readers: int = 4,
        group_commit_ms: float = 2.0,
        group_commit_max: int = 1000,
        intake_rows_per_commit: int = 0,
    ) -> None:
        self.url = sa.make_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect == "postgresql" and self.url.drivername == "postgresql":
            self.url = self.url.set(drivername="postgresql+psycopg")
        if self.dialect in ("mysql", "mariadb") and "+" not in self.url.drivername:
            self.url = self.url.set(drivername=f"{self.dialect}+pymysql")
        self._write_lock: _WriteLock | None = None
        if self.dialect == "sqlite":
            if self.url.database and self.url.database != ":memory:":
                _create_sqlite_file(self.url.database)
                self._write_lock = _WriteLock(Path(self.url.database + "-writelock"))
            self.write_engine = _sqlite_engine(self.url, immediate=True, pool_size=1)
            self.read_engine = _sqlite_engine(self.url, immediate=False, pool_size=readers)
        else:
            kwargs: dict[str, Any] = {"pool_size": pool_size + readers, "pool_pre_ping": True}
            if self.dialect in ("mysql", "mariadb"):
                kwargs["isolation_level"] = "READ COMMITTED"
                kwargs["pool_recycle"] = 3600
            self.write_engine = sa.create_engine(self.url, **kwargs)
            self.read_engine = self.write_engine
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(readers)
        self._group_commit_s = group_commit_ms / 1000.0
        self._group_commit_max = group_commit_max
        self._intake_rows = intake_rows_per_commit
        self._send: trio.MemorySendChannel[_Op] | None = None
        self.batches = 0  # how many transactions the committer ran, for tests and metrics
        self.batched_ops = 0
        self.on_batch: Callable[[int], None] | None = None  # e.g. a histogram's observe

    # ----- lifecycle -------------------------------------------------------------------------------

    def upgrade(self) -> str:
        """Apply every pending migration; return the revision now current."""
        head = _newest_migration()
        if head is not None and self._stored_revision() == head:
            return head  # up to date: no need to import Alembic (a tenth of a second at every start)
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self._transaction() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return self.current_revision() or ""

    def _stored_revision(self) -> str | None:
        try:
            with self.read_engine.connect() as conn:
                return conn.execute(sa.text("SELECT version_num FROM masd_alembic_version")).scalar()
        except sa.exc.DBAPIError:
            return None  # a new database: no version table yet

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.read_engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": "masd_alembic_version"})
            return ctx.get_current_revision()

    def head_revision(self) -> str | None:
        from alembic.config import Config as AlembicConfig
        from alembic.script import ScriptDirectory

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        return ScriptDirectory.from_config(cfg).get_current_head()

    def dispose(self) -> None:
        if self._write_lock is not None:
            self._write_lock.close()
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()

    def describe(self) -> str:
        return self.url.render_as_string(hide_password=True)

    # ----- reads -------------------------------------------------------------------------------------

    def read_sync(self, fn: Callable[[sa.Connection], T]) -> T:
        with self.read_engine.connect() as conn:
            result = fn(conn)
            conn.rollback()
            return result

    async def read(self, fn: Callable[[sa.Connection], T]) -> T:
        return await trio.to_thread.run_sync(self.read_sync, fn, limiter=self._read_limiter)

    # ----- writes ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """A write transaction: BEGIN IMMEDIATE … COMMIT on SQLite, under the write lock."""
        if self._write_lock is None:
            with self.write_engine.begin() as conn:
                yield conn
            return
        with self._write_lock.held(), self.write_engine.begin() as conn:
            yield conn

    def write_sync(self, fn: Callable[[sa.Connection], T]) -> T:
        with self._transaction() as conn:
            return fn(conn)

    async def write(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn`` in a transaction; return its result once that transaction has committed."""
        if self._send is None:
            return await trio.to_thread.run_sync(self.write_sync, fn, limiter=self._write_limiter)
        return await self._enqueue(_Op(fn), lambda c: fn(c))

    async def write_item(self, handler: BatchHandler, item: Any, *, bulk_rows: int = 0) -> Any:
        """A write that may be merged with others of the same ``handler``: one call of the handler with
        every such item waiting, so that a thousand receipts cost a few statements, not thousands.
        ``bulk_rows``: the write is intake of about that many rows (see the module's docstring)."""
        return (await self.write_items(handler, [item], bulk_rows=bulk_rows))[0]

    async def write_items(self, handler: BatchHandler, items: list[Any], *, bulk_rows: int = 0) -> list[Any]:
        """:meth:`write_item` for several items at once (one per receipt of a batch, say); their results,
        in order, once the transaction holding them has committed."""
        if self._send is None:
            return await trio.to_thread.run_sync(
                self.write_sync, lambda c: handler(c, items), limiter=self._write_limiter
            )
        result: list[Any] = await self._enqueue(
            _Op(None, handler=handler, items=items, bulk_rows=bulk_rows), lambda c: handler(c, items)
        )
        return result

    async def _enqueue(self, op: _Op, alone: Callable[[sa.Connection], T]) -> T:
        assert self._send is not None
        try:
            await self._send.send(op)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            op.error = _CommitterGone()
        else:
            await op.done.wait()
        if isinstance(op.error, _CommitterGone):
            # The committer stopped before taking this write (shutdown): run it on its own.
            return await trio.to_thread.run_sync(self.write_sync, alone, limiter=self._write_limiter)
        if op.error is not None:
            raise op.error
        return op.result  # type: ignore[no-any-return]

    async def run_committer(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The group committer; lives in the daemon's nursery. Writes made before it starts, or after it
        stops, run one transaction each."""
        send, recv = trio.open_memory_channel[_Op](self._group_commit_max * 4)
        self._send = send
        task_status.started()
        pending: list[_Op] = []
        intake: collections.deque[_Op] = collections.deque()  # intake writes left for later transactions
        try:
            while True:
                if not intake:
                    pending = [await recv.receive()]
                    if self._group_commit_s:
                        # Company for this write comes from the trio thread: once it has nothing left to
                        # run, every write it could add now is queued, so waiting longer only adds latency.
                        with trio.move_on_after(self._group_commit_s):
                            await _trio_thread_idle()
                while len(pending) < self._group_commit_max:
                    try:
                        pending.append(recv.receive_nowait())
                    except trio.WouldBlock:
                        break
                pending = self._take_intake(pending, intake)
                await trio.to_thread.run_sync(self._commit_batch, pending, limiter=self._write_limiter)
                for op in pending:
                    op.done.set()
                pending = []
        finally:
            self._send = None
            pending.extend(intake)
            # Writes not yet committed go back to their callers, who run them on their own.
            while True:
                try:
                    pending.append(recv.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
            recv.close()
            for op in pending:
                if not op.done.is_set():
                    op.error = _CommitterGone()
                    op.done.set()

    def _take_intake(self, ops: list[_Op], intake: collections.deque[_Op]) -> list[_Op]:
        """The next transaction: every waiting write that is not intake, then intake in the order it
        came, up to ``intake_rows_per_commit`` rows (always at least one intake write, so that intake
        moves on however busy the rest is). The intake left over waits in ``intake``. With no limit
        (0), every waiting write goes, in the order it came."""
        if self._intake_rows <= 0:
            return ops
        batch: list[_Op] = []
        for op in ops:
            (intake if op.bulk_rows else batch).append(op)
        rows = 0
        while intake and (rows == 0 or rows + intake[0].bulk_rows <= self._intake_rows):
            op = intake.popleft()
            rows += op.bulk_rows
            batch.append(op)
        return batch

    def _commit_batch(self, ops: list[_Op]) -> None:
        self.batches += 1
        self.batched_ops += len(ops)
        if self.on_batch is not None:
            self.on_batch(len(ops))
        try:
            with self._transaction() as conn:
                results = self._run_ops(conn, ops)
        except Exception:
            if len(ops) == 1:
                self._commit_one(ops[0])
                return
            # One write failed and took its companions down with it: run each on its own so that
            # only the one at fault reports the error.
            for op in ops:
                self._commit_one(op)
            return
        for op, result in zip(ops, results, strict=True):
            op.result = result

    @staticmethod
    def _run_ops(conn: sa.Connection, ops: list[_Op]) -> list[Any]:
        """Plain writes run one by one; mergeable ones run as one handler call per kind, at the place of
        the last of their kind. Nothing queued in the same batch can depend on an item's write (its
        writer learns of it only at the commit), but a late item may depend on an earlier plain write:
        a receipt queued once its submit outcome's write was queued finds that segment."""
        results: list[Any] = [None] * len(ops)
        groups: dict[BatchHandler, list[int]] = {}
        for i, op in enumerate(ops):
            if op.handler is not None:
                groups.setdefault(op.handler, []).append(i)
        order: list[BatchHandler | int] = []
        for i, op in enumerate(ops):
            if op.handler is None:
                order.append(i)
            elif groups[op.handler][-1] == i:
                order.append(op.handler)
        for step in order:
            if isinstance(step, int):
                fn = ops[step].fn
                assert fn is not None
                results[step] = fn(conn)
            else:
                idx = groups[step]
                out = step(conn, [item for i in idx for item in ops[i].items])
                if len(out) != sum(len(ops[i].items) for i in idx):
                    raise ValueError(
                        f"{step.__qualname__} answered {len(out)} results for another number of items"
                    )
                start = 0
                for i in idx:
                    end = start + len(ops[i].items)
                    results[i] = out[start:end]
                    start = end
        return results

    def _commit_one(self, op: _Op) -> None:
        try:
            with self._transaction() as conn:
                op.result = op.run_alone(conn)
        except sa.exc.OperationalError as e:
            op.error = StoreUnavailable(f"database unavailable: {e.orig or e}")
        except Exception as e:
            op.error = e


def ping(conn: sa.Connection) -> None:
    """The cheapest statement the database must answer (readiness probes). Compiled per dialect, unlike
    a literal "SELECT 1" (Oracle needs FROM DUAL)."""
    conn.execute(sa.select(sa.literal(1)))


def _newest_migration() -> str | None:
    """The head revision, read from the migration files' ``revision``/``down_revision`` lines; None if
    they do not form one simple chain (then Alembic decides)."""
    revs: dict[str, str | None] = {}
    pattern = re.compile(r'^(down_revision|revision)\s*=\s*(None|"([^"]*)")\s*$', re.M)
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = {m[1]: m[3] for m in pattern.finditer(path.read_text(encoding="utf-8"))}
        if found.get("revision"):
            revs[found["revision"]] = found.get("down_revision") or None
    parents = set(revs.values())
    heads = [r for r in revs if r not in parents]
    return heads[0] if len(heads) == 1 else None


def database_from_config(cfg: Any) -> Database:
    """Build the Database a :class:`masd.config.Config` describes."""
    _private_directory(cfg.data_path)
    return Database(
        cfg.store_url,
        pool_size=cfg.store.pool_size,
        readers=cfg.store.readers,
        group_commit_ms=cfg.store.group_commit_ms,
        group_commit_max=cfg.store.group_commit_max,
        intake_rows_per_commit=cfg.store.intake_rows_per_commit,
    )
