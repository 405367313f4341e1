"""DB polling (MAS tables) end to end: the test plays the OA with plain SQL against a real database.

Each test gets a fresh OA database on SQLite, PostgreSQL and MariaDB (``store_url`` from conftest), makes
the three tables with ``masd dbpoll init``, and runs a real daemon (sim channel, masd's own store on
SQLite) that polls it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
import trio
from typer.testing import CliRunner

from masd.cli import app as cli_app
from masd.config import ConfigError, load_config
from masd.daemon import Daemon
from masd.store import apps as app_store
from masd.store import mas
from masd.store.db import Database
from masd.store.tables import event_cursors, messages
from masd_adapters.base import InboundReply

T = TypeVar("T")
CODE = "oa1"
MT, MO, RPT = f"api_mt_{CODE}", f"api_mo_{CODE}", f"api_rpt_{CODE}"
SERVICE_NUMBER = "106570001"  # the sim channel's default service number
GBK_TEXT = "你好，会议改到三点"


@dataclasses.dataclass
class Oa:
    """The OA system: plain SQL against its database, run off the trio thread."""

    kind: str
    url: str  # what masd is configured with
    engine: sa.Engine  # the OA's own connection

    def _exec(self, sql: str, params: dict[str, Any] | None) -> list[dict[str, Any]]:
        with self.engine.begin() as c:
            res = c.execute(sa.text(sql), params or {})
            return [dict(r._mapping) for r in res] if res.returns_rows else []

    async def sql(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        return await trio.to_thread.run_sync(self._exec, sql, params)

    async def insert(self, **values: Any) -> None:
        cols = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        await self.sql(f"INSERT INTO {MT} ({cols}) VALUES ({marks})", **values)

    async def insert_many(self, rows: list[dict[str, Any]]) -> None:
        """Several rows in one OA transaction, so that one poll reads them as one batch."""
        cols = list(rows[0])
        sql = f"INSERT INTO {MT} ({', '.join(cols)}) VALUES ({', '.join(f':{k}' for k in cols)})"

        def run() -> None:
            with self.engine.begin() as c:
                c.execute(sa.text(sql), rows)

        await trio.to_thread.run_sync(run)

    async def count(self, table: str) -> int:
        return int((await self.sql(f"SELECT COUNT(*) AS n FROM {table}"))[0]["n"])

    async def rpt(self) -> list[dict[str, Any]]:
        return await self.sql(
            f"SELECT sm_id, mobile, rpt_code, rpt_desc, rpt_time FROM {RPT} ORDER BY auto_sn"
        )


@dataclasses.dataclass
class Env:
    oa: Oa
    daemon: Daemon

    async def masd(self, fn: Callable[[sa.Connection], T]) -> T:
        return await self.daemon.db.read(fn)

    def oa_up(self) -> float | None:
        """The gauge masd_dbpoll_up for the code: 1 while the OA database answers, 0 in an outage."""
        return self.daemon.metrics.registry.get_sample_value("masd_dbpoll_up", {"code": CODE})

    def submits(self) -> list[str]:
        """Destinations of every segment the simulated carrier accepted (duplicates included)."""
        return [r.destination for r in self.daemon.drivers["sim"].received]  # type: ignore[attr-defined]

    async def messages(self) -> list[dict[str, Any]]:
        return await self.masd(
            lambda c: [
                dict(r._mapping)
                for r in c.execute(
                    sa.select(messages.c.id, messages.c.text, messages.c.client_ref, messages.c.send_at)
                    .where(messages.c.client_ref.like(f"mas:{CODE}:%"))
                    .order_by(messages.c.id)
                )
            ]
        )

    async def reports_caught_up(self) -> None:
        """Wait until the poller has written every event of the app so far."""
        app_id = (await self.masd(lambda c: app_store.get_app(c, "oa")) or {})["id"]

        def lag(c: sa.Connection) -> bool:
            last = c.execute(
                sa.text("SELECT MAX(id) FROM app_events WHERE app_id = :a"), {"a": app_id}
            ).scalar()
            cur = c.execute(
                sa.select(event_cursors.c.last_event_id).where(
                    event_cursors.c.app_id == app_id, event_cursors.c.consumer == f"dbpoll:{CODE}"
                )
            ).scalar()
            return (last or 0) > (cur or 0)

        await until(lambda: self.masd(lag), want=False)


async def until(probe: Callable[[], Any], *, want: Any = True, timeout: float = 20.0) -> Any:
    """Poll ``probe`` (sync or async) until it returns ``want`` (or, with want=True, anything truthy)."""
    with trio.fail_after(timeout):
        while True:
            v = probe()
            if hasattr(v, "__await__"):
                v = await v
            if bool(v) if want is True else v == want:
                return v
            await trio.sleep(0.05)


async def rpt_rows(env: Env, n: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        rows = await env.oa.rpt()
        return rows if len(rows) >= n else None

    rows: list[dict[str, Any]] = await until(enough)
    return rows


# ----- the OA database, on each engine ----------------------------------------------------------------------


@pytest.fixture
def oa(store_url: str, tmp_path: Path) -> Iterator[Oa]:
    """A fresh OA database with the MAS tables made by `masd dbpoll init`, reached as its own user."""
    kind = sa.make_url(store_url).get_backend_name()
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'oa.db'}"
        cleanup: Callable[[], None] = lambda: None  # noqa: E731
    else:
        url, cleanup = _own_user(kind, store_url)
    result = CliRunner().invoke(
        cli_app, ["dbpoll", "init", CODE, "--url", url], env={"MASD_NODE__DATA_DIR": str(tmp_path / "cli")}
    )
    assert result.exit_code == 0, result.output
    engine = sa.create_engine(store_url if kind != "sqlite" else url, poolclass=sa.pool.NullPool)
    try:
        yield Oa(kind, url, engine)
    finally:
        engine.dispose()
        cleanup()


def _own_user(kind: str, admin_db_url: str) -> tuple[str, Callable[[], None]]:
    """A user of its own for masd (so that the outage test can lock it out), with rights on the test DB."""
    user = f"oa_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_db_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    db = sa.make_url(admin_db_url).database
    with admin.connect() as c:
        if kind == "postgresql":
            c.exec_driver_sql(f"CREATE ROLE {user} LOGIN PASSWORD 'pw'")
            c.exec_driver_sql(f"GRANT ALL ON SCHEMA public TO {user}")
        else:
            c.execute(sa.text(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'"))
            c.execute(sa.text(f"GRANT ALL ON `{db}`.* TO '{user}'@'%'"))
    url = sa.make_url(admin_db_url).set(username=user, password="pw").render_as_string(hide_password=False)

    def cleanup() -> None:
        with admin.connect() as c:
            if kind == "postgresql":
                c.exec_driver_sql(f"ALTER ROLE {user} LOGIN")
                c.exec_driver_sql(
                    f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{user}'"
                )
                c.exec_driver_sql(f"DROP OWNED BY {user}")
                c.exec_driver_sql(f"DROP ROLE {user}")
            else:
                c.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'%'"))
        admin.dispose()

    return url, cleanup


# ----- the daemon -------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(
    oa: Oa,
    tmp_path: Path,
    *,
    extension: str | None = None,
    quota: int | None = None,
    rate: float | None = None,
    sim: str = "{receipt_delay = 0.01}",
    make_app: bool = True,
    resend: int | None = None,
) -> AsyncIterator[Env]:
    env = {
        "MASD_NODE__DATA_DIR": str(tmp_path / "masd"),
        "MASD_HTTP__ENABLED": "false",
        "MASD_SOCKET__ENABLED": "false",
        "MASD_CHANNELS__SIM__OPTIONS": sim,
        "MASD_DBPOLL__OA1__URL": oa.url,
        "MASD_DBPOLL__OA1__APP": "oa",
        "MASD_DBPOLL__OA1__INTERVAL": "0.05",
        "MASD_CHANNELS__SIM__RESEND_DELAY_SECONDS": "0",  # for an app with resends
    }
    cfg = load_config(None, env=env)
    db = Database(cfg.store_url)
    db.upgrade()
    if make_app:
        db.write_sync(
            lambda c: app_store.create_app(
                c, "oa", now=time.time(), extension=extension, quota_per_day=quota, rate=rate, resend=resend
            )
        )
    daemon = Daemon(cfg, db=db)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        try:
            yield Env(oa, daemon)
        finally:
            daemon.stop()


@pytest.fixture
async def env(oa: Oa, tmp_path: Path) -> AsyncIterator[Env]:
    async with running(oa, tmp_path) as e:
        yield e


# ----- sending ----------------------------------------------------------------------------------------------


async def test_row_is_sent_to_every_number_and_reported_per_recipient(env: Env) -> None:
    await env.oa.insert(
        sm_id=11, src_id=0, mobiles="13800138000，13900139000; 13700137000", content="会议通知"
    )
    rows = await rpt_rows(env, 3)
    assert sorted(r["mobile"] for r in rows) == ["13700137000", "13800138000", "13900139000"]
    assert {(r["sm_id"], r["rpt_code"], r["rpt_desc"]) for r in rows} == {(11, 0, "DELIVRD")}
    assert await env.oa.count(MT) == 0
    assert sorted(env.submits()) == ["13700137000", "13800138000", "13900139000"]


async def test_receipt_time_is_the_local_time_of_the_outcome(env: Env) -> None:
    before = dt.datetime.now().replace(microsecond=0)
    await env.oa.insert(sm_id=12, mobiles="13800138000", content="hi")
    (row,) = await rpt_rows(env, 1)
    t = row["rpt_time"]
    t = t if isinstance(t, dt.datetime) else dt.datetime.fromisoformat(str(t))
    assert before <= t <= dt.datetime.now()


async def test_future_send_time_is_accepted_as_a_scheduled_send(env: Env) -> None:
    due = (dt.datetime.now() + dt.timedelta(hours=2)).replace(microsecond=0)
    await env.oa.insert(
        sm_id=13, mobiles="13800138000", content="later", send_time=f"{due:%Y-%m-%d %H:%M:%S}"
    )
    await until(lambda: env.oa.count(MT), want=0)
    (msg,) = await env.messages()
    assert msg["send_at"] == due.timestamp()
    await trio.sleep(0.3)
    assert env.submits() == []


async def test_gbk_content_is_read_as_chinese_text(oa: Oa, tmp_path: Path) -> None:
    gbk = GBK_TEXT.encode("gbk").hex()
    if oa.kind == "sqlite":  # GBK bytes as a BLOB value
        value = f"X'{gbk}'"
    elif oa.kind == "postgresql":  # a bytea column, as a legacy OA might have made it
        await oa.sql(f"ALTER TABLE {MT} ALTER COLUMN content TYPE bytea USING convert_to(content, 'UTF8')")
        value = f"decode('{gbk}', 'hex')"
    else:  # a latin1 column holding GBK bytes unconverted, the classic MySQL OA setup
        await oa.sql(f"ALTER TABLE {MT} MODIFY content VARCHAR(2000) CHARACTER SET latin1")
        value = f"X'{gbk}'"
    async with running(oa, tmp_path) as env:
        await oa.sql(f"INSERT INTO {MT} (sm_id, mobiles, content) VALUES (14, '13800138000', {value})")
        await until(lambda: oa.count(MT), want=0)
        (msg,) = await env.messages()
    assert msg["text"] == GBK_TEXT


async def test_sm_id_zero_gets_no_receipt_row(env: Env) -> None:
    await env.oa.insert(sm_id=0, mobiles="13800138000", content="no receipt wanted")
    await until(lambda: len(env.submits()) == 1)
    await until(
        lambda: env.masd(
            lambda c: c.execute(sa.text("SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'")).scalar()
        ),
        want=1,
    )
    await env.reports_caught_up()
    assert await env.oa.count(RPT) == 0


async def test_receipts_of_the_apps_other_interfaces_are_not_written(env: Env) -> None:
    app = await env.daemon.gateway.app_named("oa")
    from masd.core.gateway import SubmitRequest

    await env.daemon.gateway.send(
        SubmitRequest(text="via http", recipients=["13800138000"]), interface="http", app=app, notify=True
    )
    await env.oa.insert(sm_id=15, mobiles="13900139000", content="via the OA")
    rows = await rpt_rows(env, 1)
    await env.reports_caught_up()
    assert [(r["sm_id"], r["mobile"]) for r in await env.oa.rpt()] == [(15, "13900139000")]
    assert rows


async def test_failed_delivery_is_reported_with_the_carriers_code(oa: Oa, tmp_path: Path) -> None:
    async with running(oa, tmp_path, sim="{receipt_delay = 0.01, outcomes = {undelivered = 1}}") as env:
        await oa.insert(sm_id=16, mobiles="13800138000", content="will fail")
        (row,) = await rpt_rows(env, 1)
    assert row["sm_id"] == 16
    assert row["rpt_code"] == 1  # the sim's err:001 for UNDELIV
    assert row["rpt_desc"].startswith("UNDELIVERED")


async def test_a_resent_delivery_is_reported_once_with_its_final_outcome(oa: Oa, tmp_path: Path) -> None:
    sim = "{receipt_delay = 0.01, outcomes = {undelivered = 1}}"
    async with running(oa, tmp_path, sim=sim, resend=2) as env:
        await oa.insert(sm_id=17, mobiles="13800138000", content="tried three times")
        (row,) = await rpt_rows(env, 1)
        assert (row["sm_id"], row["rpt_code"]) == (17, 1)
        assert len(env.submits()) == 3  # the first attempt and two resends
        await env.reports_caught_up()
        assert len(await oa.rpt()) == 1


# ----- bad rows ---------------------------------------------------------------------------------------------

BAD_ROWS = {
    "no_valid_number": ({"sm_id": 21, "mobiles": "12345, abc", "content": "x"}, 9001, "no valid number"),
    "empty_content": ({"sm_id": 22, "mobiles": "13800138000", "content": ""}, 9002, "CONTENT is empty"),
    "content_too_long": ({"sm_id": 23, "mobiles": "13800138000", "content": "长" * 2001}, 9003, "2001"),
    "too_many_segments": ({"sm_id": 24, "mobiles": "13800138000", "content": "长" * 1000}, 9003, "text:"),
    "unreadable_send_time": (
        {"sm_id": 25, "mobiles": "13800138000", "content": "x", "send_time": "next monday"},
        9004,
        "SEND_TIME",
    ),
    "sm_id_out_of_range": ({"sm_id": 100_000_000, "mobiles": "13800138000", "content": "x"}, 9005, "SM_ID"),
    "src_id_out_of_range": (
        {"sm_id": 27, "src_id": -5, "mobiles": "13800138000", "content": "x"},
        9006,
        "SRC_ID",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_ROWS))
async def test_bad_row_is_reported_with_its_reason_and_removed(env: Env, kind: str) -> None:
    values, code, words = BAD_ROWS[kind]
    if kind == "content_too_long" and env.oa.kind != "sqlite":
        # PostgreSQL and MariaDB enforce VARCHAR(2000); an older table may have a wider CONTENT.
        widen = "ALTER COLUMN content TYPE text" if env.oa.kind == "postgresql" else "MODIFY content TEXT"
        await env.oa.sql(f"ALTER TABLE {MT} {widen}")
    await env.oa.insert(**values)
    rows = await rpt_rows(env, 1)
    assert {(r["sm_id"], r["rpt_code"]) for r in rows} == {(values["sm_id"], code)}
    assert all(words in r["rpt_desc"] for r in rows)
    assert await env.oa.count(MT) == 0
    assert env.submits() == []


async def test_bad_row_does_not_hold_up_the_rows_after_it(env: Env) -> None:
    await env.oa.insert(sm_id=31, mobiles="nobody", content="x")
    await env.oa.insert(sm_id=32, mobiles="13800138000", content="fine")
    rows = await rpt_rows(env, 2)
    assert sorted((r["sm_id"], r["rpt_code"]) for r in rows) == [(31, 9001), (32, 0)]


@pytest.mark.parametrize("where", [0, 2, 3])
async def test_a_refused_row_is_blamed_alone_and_the_rest_of_its_batch_is_sent(env: Env, where: int) -> None:
    due = (dt.datetime.now() + dt.timedelta(hours=2)).replace(microsecond=0)
    good = [
        {"sm_id": 101, "mobiles": "13800138000,13900139000", "content": "第一条", "send_time": None},
        {"sm_id": 102, "mobiles": "13700137000", "content": "定时", "send_time": f"{due:%Y-%m-%d %H:%M:%S}"},
        {"sm_id": 103, "mobiles": "13600136000", "content": "第三条", "send_time": None},
    ]
    bad = {"sm_id": 104, "mobiles": "13500135000", "content": "长" * 1000, "send_time": None}
    await env.oa.insert_many([*good[:where], bad, *good[where:]])
    rows = await rpt_rows(env, 4)
    assert sorted((r["sm_id"], r["mobile"], r["rpt_code"]) for r in rows) == [
        (101, "13800138000", 0),
        (101, "13900139000", 0),
        (103, "13600136000", 0),
        (104, "13500135000", 9003),
    ]
    (blamed,) = [r for r in rows if r["sm_id"] == 104]
    assert "segments" in blamed["rpt_desc"]
    assert await env.oa.count(MT) == 0
    assert sorted(env.submits()) == ["13600136000", "13800138000", "13900139000"]
    scheduled = [m for m in await env.messages() if m["text"] == "定时"]
    assert [m["send_at"] for m in scheduled] == [due.timestamp()]


async def test_a_row_with_more_numbers_than_the_rate_admits_at_once_is_reported(
    oa: Oa, tmp_path: Path
) -> None:
    async with running(oa, tmp_path, rate=2.0) as env:
        await oa.insert_many(
            [
                {"sm_id": 111, "mobiles": "13800138000,13900139000,13700137000", "content": "three"},
                {"sm_id": 112, "mobiles": "13600136000", "content": "one"},
            ]
        )
        rows = await rpt_rows(env, 4)
    assert sorted((r["sm_id"], r["rpt_code"]) for r in rows) == [(111, 9010)] * 3 + [(112, 0)]
    assert all("at most 2 at once" in r["rpt_desc"] for r in rows if r["sm_id"] == 111)
    assert env.submits() == ["13600136000"]


async def test_rows_beyond_the_rate_wait_in_api_mt_and_go_out_at_the_rate(oa: Oa, tmp_path: Path) -> None:
    async with running(oa, tmp_path, rate=5.0) as env:
        started = time.monotonic()
        await oa.insert_many(
            [{"sm_id": 120 + i, "mobiles": f"1380013{i:04d}", "content": f"n{i}"} for i in range(15)]
        )
        await trio.sleep(0.3)
        assert len(env.submits()) <= 5 + 0.3 * 5 + 1  # a burst of one second's worth, then the rate
        await rpt_rows(env, 15)
        assert time.monotonic() - started >= (15 - 5) / 5 - 0.1
        assert sorted(r["sm_id"] for r in await oa.rpt()) == list(range(120, 135))


async def test_row_over_the_apps_quota_stays_for_later_without_a_report(oa: Oa, tmp_path: Path) -> None:
    async with running(oa, tmp_path, quota=1) as env:
        await oa.insert(sm_id=41, mobiles="13800138000", content="first")
        await oa.insert(sm_id=42, mobiles="13900139000", content="second")
        await rpt_rows(env, 1)
        await trio.sleep(0.5)
        assert [r["sm_id"] for r in await oa.rpt()] == [41]
        assert [r["sm_id"] for r in await oa.sql(f"SELECT sm_id FROM {MT}")] == [42]
        assert env.submits() == ["13800138000"]


# ----- replies ----------------------------------------------------------------------------------------------


async def test_reply_to_src_id_arrives_in_api_mo_with_that_sm_id(oa: Oa, tmp_path: Path) -> None:
    async with running(oa, tmp_path, extension="01") as env:
        await oa.insert(sm_id=51, src_id=123, mobiles="13800138000", content="明天开会，回复1确认")
        await oa.insert(sm_id=52, src_id=456, mobiles="13800138000", content="另一条通知")
        await rpt_rows(env, 2)
        assert {r.source for r in env.daemon.drivers["sim"].received} == {  # type: ignore[attr-defined]
            SERVICE_NUMBER + "01123",
            SERVICE_NUMBER + "01456",
        }
        await env.daemon.gateway.reply(
            "sim", InboundReply(sender="13800138000", destination=SERVICE_NUMBER + "01123", text="1 收到")
        )

        async def mo() -> list[dict[str, Any]]:
            return await oa.sql(f"SELECT sm_id, mobile, content, mo_time, msg_fmt FROM {MO}")

        (row,) = await until(mo)
        # As a MAS writes it: SM_ID is the SRC_ID the reply was sent to, not the SM_ID of the message.
        assert (row["sm_id"], row["mobile"], row["content"], row["msg_fmt"]) == (
            123,
            "13800138000",
            "1 收到",
            15,
        )
        assert row["mo_time"] is not None
        # The OA reads its replies as the MAS API client does: by SM_ID = srcID.
        (mine,) = await oa.sql(f"SELECT content FROM {MO} WHERE sm_id = :src", src=123)
        assert mine["content"] == "1 收到"
        await env.daemon.gateway.reply(
            "sim", InboundReply(sender="13900139000", destination=SERVICE_NUMBER + "01", text="bare")
        )
        bare = await until(lambda: oa.sql(f"SELECT sm_id FROM {MO} WHERE mobile = '13900139000'"))
        assert bare == [{"sm_id": 0}]


# ----- failures ---------------------------------------------------------------------------------------------


async def test_daemon_refuses_to_start_when_the_app_does_not_exist(oa: Oa, tmp_path: Path) -> None:
    if oa.kind != "sqlite":
        pytest.skip("the check is the same whatever the OA database")
    with pytest.raises(BaseException) as caught:  # a nursery wraps it in a group
        async with running(oa, tmp_path, make_app=False):
            pass
    leaves: list[BaseException] = [caught.value]
    flat: list[BaseException] = []
    while leaves:
        e = leaves.pop()
        if isinstance(e, BaseExceptionGroup):
            leaves.extend(e.exceptions)
        else:
            flat.append(e)
    (err,) = [e for e in flat if isinstance(e, ConfigError)]
    assert "dbpoll.oa1.app" in str(err)
    assert "masd apps create oa" in str(err)


class _Outage:
    """Make the OA database unreachable for masd's user, and bring it back."""

    def __init__(self, oa: Oa) -> None:
        self.oa = oa
        self.user = sa.make_url(oa.url).username
        self.lock: sqlite3.Connection | None = None

    async def begin(self) -> None:
        if self.oa.kind == "sqlite":
            # An exclusive lock held past the poller's busy timeout: every attempt fails meanwhile.
            path = sa.make_url(self.oa.url).database
            assert path
            self.lock = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.lock.execute("BEGIN EXCLUSIVE")
        elif self.oa.kind == "postgresql":
            await self.oa.sql(f"ALTER ROLE {self.user} NOLOGIN")
            await self.oa.sql(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{self.user}'"
            )
        else:
            await self.oa.sql(f"ALTER USER '{self.user}'@'%' ACCOUNT LOCK")
            for row in await self.oa.sql(
                "SELECT id FROM information_schema.PROCESSLIST WHERE USER = :u", u=self.user
            ):
                with contextlib.suppress(sa.exc.DBAPIError):
                    await self.oa.sql(f"KILL {int(row['id'])}")

    async def insert_during(self, **values: Any) -> None:
        if self.lock is not None:
            cols = ", ".join(values)
            self.lock.execute(
                f"INSERT INTO {MT} ({cols}) VALUES ({', '.join('?' for _ in values)})", list(values.values())
            )
        else:
            await self.oa.insert(**values)

    async def end(self) -> None:
        if self.lock is not None:
            self.lock.execute("COMMIT")
            self.lock.close()
        elif self.oa.kind == "postgresql":
            await self.oa.sql(f"ALTER ROLE {self.user} LOGIN")
        else:
            await self.oa.sql(f"ALTER USER '{self.user}'@'%' ACCOUNT UNLOCK")


async def test_oa_outage_loses_nothing_and_sends_nothing_twice(env: Env) -> None:
    oa = env.oa
    await oa.insert(sm_id=61, mobiles="13800138001", content="before")
    await rpt_rows(env, 1)
    outage = _Outage(oa)
    await outage.begin()
    await outage.insert_during(sm_id=62, mobiles="13800138002", content="during")
    # The poller notices (SQLite: once its 5-second busy timeout has passed) and keeps trying.
    await until(lambda: env.oa_up(), want=0.0)
    await trio.sleep(1.0)
    assert env.submits() == ["13800138001"]
    await outage.end()
    await oa.insert(sm_id=63, mobiles="13800138003", content="after")
    rows = await rpt_rows(env, 3)
    assert env.oa_up() == 1.0
    await env.reports_caught_up()
    assert sorted(env.submits()) == ["13800138001", "13800138002", "13800138003"]
    assert sorted((r["sm_id"], r["rpt_code"]) for r in await oa.rpt()) == [(61, 0), (62, 0), (63, 0)]
    assert await oa.count(MT) == 0
    assert rows


async def test_row_accepted_but_not_yet_removed_is_not_sent_again(env: Env) -> None:
    """The OA refuses the DELETE (as if it went away right after masd stored the row): masd reads the row
    again on every poll, and each time finds it already accepted."""
    oa = env.oa
    if oa.kind == "sqlite":
        await oa.sql(
            f"CREATE TRIGGER keep BEFORE DELETE ON {MT} BEGIN SELECT RAISE(ABORT, 'OA says no'); END"
        )
    elif oa.kind == "postgresql":
        await oa.sql(
            "CREATE FUNCTION keep() RETURNS trigger AS $$ BEGIN RAISE 'OA says no'; END $$ LANGUAGE plpgsql"
        )
        await oa.sql(f"CREATE TRIGGER keep BEFORE DELETE ON {MT} FOR EACH ROW EXECUTE FUNCTION keep()")
    else:
        await oa.sql(
            f"CREATE TRIGGER keep BEFORE DELETE ON {MT} FOR EACH ROW "
            "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'OA says no'"
        )
    await oa.insert(sm_id=71, mobiles="13800138000", content="exactly once")
    await until(lambda: len(env.submits()) == 1)
    await trio.sleep(1.5)  # the poller meanwhile reads the row again and again
    assert await oa.count(MT) == 1
    await oa.sql("DROP TRIGGER keep" if oa.kind != "postgresql" else f"DROP TRIGGER keep ON {MT}")
    await until(lambda: oa.count(MT), want=0)
    await rpt_rows(env, 1)
    assert env.submits() == ["13800138000"]
    assert len(await env.messages()) == 1


def test_init_creates_the_three_tables_and_is_safe_to_repeat(oa: Oa, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli_app,
        ["dbpoll", "init", CODE, "--url", oa.url, "--json"],
        env={"MASD_NODE__DATA_DIR": str(tmp_path / "cli")},
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["created"] == []
    assert sorted(body["existing"]) == sorted([MT, MO, RPT])
    names = set(sa.inspect(oa.engine).get_table_names())
    assert {MT, MO, RPT} <= names


def test_init_explains_how_to_add_auto_sn_to_an_older_table(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    with sqlite3.connect(path) as c:
        c.execute(
            f"CREATE TABLE {MT} (SM_ID INTEGER, SRC_ID INTEGER, MOBILES TEXT, CONTENT TEXT, SEND_TIME TEXT)"
        )
    result = CliRunner().invoke(
        cli_app,
        ["dbpoll", "init", CODE, "--url", f"sqlite:///{path}"],
        env={"MASD_NODE__DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 1
    assert "has no AUTO_SN column" in result.output
    assert mas.table_name("mt", CODE, "sqlite") in result.output
