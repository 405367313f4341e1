"""The socket interface end to end: a real daemon with the sim channel, NDJSON frames over real TCP.

Each test starts its own daemon (socket on a free port, HTTP off) in a temporary data directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio
import trio.testing

from masd.client import Client, ServerError
from masd.config import load_config
from masd.daemon import Daemon
from masd.interfaces import socket as socket_interface
from masd.interfaces.socket import Connection
from masd.store import apps as app_store
from masd.store.tables import messages as messages_table
from masd_adapters.base import InboundReply

SERVICE = "106570001"  # the sim channel's default service number
PUSHES = ("receipt", "reply")


class Peer:
    """A test's end of one connection: raw frames in and out, nothing hidden."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buf = bytearray()
        self.pushes: list[dict[str, Any]] = []  # pushes seen while waiting for an answer

    async def send(self, frame: dict[str, Any] | bytes) -> None:
        data = frame if isinstance(frame, bytes) else json.dumps(frame).encode() + b"\n"
        await self.stream.send_all(data)

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while b"\n" not in self._buf:
                data = await self.stream.receive_some(65536)
                assert data, "masd closed the connection"
                self._buf += data
        end = self._buf.index(b"\n")
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        frame: dict[str, Any] = json.loads(line)
        return frame

    async def answer(self, timeout: float = 10) -> dict[str, Any]:
        """The next frame that is not a push (pushes are kept in ``self.pushes``)."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] not in PUSHES:
                return frame
            self.pushes.append(frame)

    async def request(self, frame: dict[str, Any] | bytes) -> dict[str, Any]:
        await self.send(frame)
        return await self.answer()

    async def push(self, timeout: float = 10) -> dict[str, Any]:
        if self.pushes:
            return self.pushes.pop(0)
        frame = await self.recv(timeout)
        assert frame["type"] in PUSHES, frame
        return frame

    async def closed(self, timeout: float = 10) -> bool:
        """Read until masd closes the connection."""
        with trio.fail_after(timeout):
            while await self.stream.receive_some(65536):
                pass
        return True


@dataclasses.dataclass
class Env:
    daemon: Daemon
    port: int
    keys: dict[str, str]

    async def connect(self, app: str | None = None) -> Peer:
        peer = Peer(await trio.open_tcp_stream("127.0.0.1", self.port))
        if app is not None:
            ok = await peer.request({"type": "login", "key": self.keys[app]})
            assert ok["type"] == "login_ok", ok
        return peer

    async def add_app(self, name: str, **settings: Any) -> str:
        _, key = await self.daemon.db.write(
            lambda c: app_store.create_app(c, name, now=time.time(), **settings)
        )
        self.keys[name] = key
        return key

    async def reply(self, destination: str, text: str, sender: str = "13800138000") -> None:
        await self.daemon.gateway.reply(
            "sim", InboundReply(sender=sender, destination=destination, text=text)
        )

    def connections_of(self, app: str) -> list[Connection]:
        return [c for c in self.daemon.socket_server.connections if c.app is not None and c.app.name == app]


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **extra_env: str) -> AsyncIterator[Env]:
    env = {
        "MASD_NODE__DATA_DIR": str(tmp_path),
        "MASD_HTTP__ENABLED": "false",
        "MASD_WEBHOOKS__ENABLED": "false",
        "MASD_SOCKET__LISTEN": "127.0.0.1:0",
        "MASD_CHANNELS__SIM__OPTIONS": "{receipt_delay = 0.01}",
        **extra_env,
    }
    daemon = Daemon(load_config(None, env=env))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        port = daemon.socket_server.port
        assert port
        e = Env(daemon, port, {})
        await e.add_app("t")
        await e.add_app("other")
        yield e
        daemon.stop()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with running(tmp_path) as e:
        yield e


def submit(
    ref: str, to: Any = "13800138000", text: str = "Your code is 482913.", **more: Any
) -> dict[str, Any]:
    return {"type": "submit", "ref": ref, "to": to, "text": text, **more}


# ----- login ---------------------------------------------------------------------------------------------


async def test_login_with_a_valid_key_answers_login_ok(env: Env) -> None:
    peer = await env.connect()
    ok = await peer.request({"type": "login", "key": env.keys["t"]})
    assert ok["type"] == "login_ok"
    assert ok["app"] == "t"
    assert ok["max_unacked"] == env.daemon.cfg.socket.max_unacked


async def test_login_with_an_unknown_key_is_refused_and_the_connection_goes_on(env: Env) -> None:
    peer = await env.connect()
    err = await peer.request({"type": "login", "key": "masd_not-a-key"})
    assert (err["type"], err["code"], err["field"]) == ("error", "unauthorized", "key")
    ok = await peer.request({"type": "login", "key": env.keys["t"]})
    assert ok["type"] == "login_ok"


async def test_login_with_a_revoked_key_is_refused(env: Env) -> None:
    await env.daemon.db.write(lambda c: app_store.revoke_app(c, "t", now=time.time()))
    peer = await env.connect()
    err = await peer.request({"type": "login", "key": env.keys["t"]})
    assert (err["type"], err["code"]) == ("error", "unauthorized")
    assert "revoked" in err["reason"]


async def test_frames_before_login_are_refused_with_log_in_first(env: Env) -> None:
    peer = await env.connect()
    err = await peer.request(submit("a1"))
    assert (err["type"], err["code"], err["ref"]) == ("error", "unauthorized", "a1")
    assert "log in first" in err["reason"]
    assert (await peer.request({"type": "ack", "event": 1}))["code"] == "unauthorized"


async def test_a_connection_that_never_logs_in_is_told_and_closed(tmp_path: Path) -> None:
    async with running(tmp_path, MASD_SOCKET__LOGIN_TIMEOUT="0.2") as env:
        peer = await env.connect()
        err = await peer.recv()
        assert (err["type"], err["code"]) == ("error", "unauthorized")
        assert "no login within" in err["reason"]
        assert await peer.closed()


async def test_revoking_the_key_ends_the_apps_connection(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket_interface, "APP_CHECK_SECONDS", 0.05)
    peer = await env.connect("t")
    await env.daemon.db.write(lambda c: app_store.revoke_app(c, "t", now=time.time()))
    err = await peer.recv()
    assert (err["type"], err["code"], err["field"]) == ("error", "unauthorized", "key")
    assert "revoked" in err["reason"]
    assert await peer.closed()


# ----- ping ----------------------------------------------------------------------------------------------


async def test_ping_is_answered_with_a_pong_echoing_its_id(env: Env) -> None:
    peer = await env.connect()
    assert await peer.request({"type": "ping", "id": "abc"}) == {"type": "pong", "id": "abc"}
    assert await peer.request({"type": "ping"}) == {"type": "pong"}


# ----- submit and receipts -------------------------------------------------------------------------------


async def test_submit_is_acknowledged_and_its_receipt_pushed(env: Env) -> None:
    peer = await env.connect("t")
    ack = await peer.request(submit("order-17", to=["+86 138-0013-8000"]))
    assert ack["type"] == "submit_ack"
    assert ack["ref"] == "order-17"
    assert ack["recipients"] == ["13800138000"]
    assert (ack["segments"], ack["encoding"], ack["duplicate"]) == (1, "gsm7", False)
    receipt = await peer.push()
    assert receipt["type"] == "receipt"
    assert (receipt["id"], receipt["ref"]) == (ack["id"], "order-17")
    assert (receipt["recipient"], receipt["state"]) == ("13800138000", "delivered")
    assert receipt["done_at"].endswith("Z")
    assert isinstance(receipt["event"], int)


async def test_submitting_the_same_ref_again_returns_the_stored_message(env: Env) -> None:
    peer = await env.connect("t")
    first = await peer.request(submit("once"))
    again = await peer.request(submit("once"))
    assert again["type"] == "submit_ack"
    assert again["id"] == first["id"]
    assert again["duplicate"] is True


async def test_to_may_be_a_comma_separated_string(env: Env) -> None:
    peer = await env.connect("t")
    ack = await peer.request(submit("many", to="13800138000, 13900139000"))
    assert ack["recipients"] == ["13800138000", "13900139000"]


async def test_submit_options_are_applied(env: Env) -> None:
    peer = await env.connect("t")
    ack = await peer.request(
        submit("later", send_at="2031-05-20T08:30:00+08:00", priority=9, validity_seconds=600, extension="17")
    )
    msg = await env.daemon.gateway.get_message(ack["id"])
    assert msg is not None
    assert msg["priority"] == 9
    assert msg["send_at"] == datetime(2031, 5, 20, 0, 30, tzinfo=UTC).timestamp()
    assert msg["client_ref"] == "later"
    assert msg["deliveries"][0]["state"] == "queued"


async def test_an_app_cancels_its_queued_message_and_is_pushed_the_cancelled_receipt(env: Env) -> None:
    peer = await env.connect("t")
    ack = await peer.request(submit("later", send_at="2031-05-20T08:30:00+08:00"))
    done = await peer.request({"type": "cancel", "id": ack["id"]})
    assert done == {"type": "cancel_ack", "id": ack["id"], "cancelled": 1, "counts": {"cancelled": 1}}
    receipt = await peer.push()
    assert (receipt["id"], receipt["state"], receipt["reason"]) == (
        ack["id"],
        "cancelled",
        "cancelled by the app",
    )
    assert receipt["resends"] == 0
    again = await peer.request({"type": "cancel", "id": ack["id"]})
    assert (again["cancelled"], again["counts"]) == (0, {"cancelled": 1})


async def test_an_app_retries_its_undelivered_message(tmp_path: Path) -> None:
    options = "{receipt_delay = 0.01, outcomes = {undelivered = 1.0}}"
    async with running(tmp_path, MASD_CHANNELS__SIM__OPTIONS=options) as env:
        peer = await env.connect("t")
        ack = await peer.request(submit("fails"))
        assert (await peer.push())["state"] == "undelivered"
        done = await peer.request({"type": "retry", "id": ack["id"]})
        assert (done["type"], done["id"], done["retried"]) == ("retry_ack", ack["id"], 1)
        assert sum(done["counts"].values()) == 1 and "undelivered" not in done["counts"]
        assert (await peer.push())["state"] == "undelivered"  # sent again, and failed again
        msg = await env.daemon.gateway.get_message(ack["id"])
        assert msg is not None
        (history,) = msg["deliveries"][0]["history"]
        assert (history["event"], history["state"]) == ("retry", "undelivered")


async def test_cancel_and_retry_of_another_apps_message_are_not_found(env: Env) -> None:
    mine = await env.connect("t")
    ack = await mine.request(submit("mine", send_at="2031-05-20T08:30:00+08:00"))
    theirs = await env.connect("other")
    for kind in ("cancel", "retry"):
        err = await theirs.request({"type": kind, "id": ack["id"]})
        assert (err["type"], err["code"], err["field"]) == ("error", "not_found", "id")
        missing = await theirs.request({"type": kind, "id": ack["id"] + 1000})
        assert missing["code"] == "not_found"
    bad = await theirs.request({"type": "cancel", "id": "one"})
    assert (bad["code"], bad["field"]) == ("invalid", "id")
    msg = await env.daemon.gateway.get_message(ack["id"])
    assert msg is not None and msg["deliveries"][0]["state"] == "queued"


async def test_an_invalid_recipient_is_refused_naming_the_to_field(env: Env) -> None:
    peer = await env.connect("t")
    err = await peer.request(submit("bad-number", to=["12345"]))
    assert (err["type"], err["code"], err["field"], err["ref"]) == ("error", "invalid", "to", "bad-number")


async def test_pipelined_submits_are_answered_in_order(env: Env) -> None:
    peer = await env.connect("t")
    await peer.send(b"".join(json.dumps(submit(f"p{i}")).encode() + b"\n" for i in range(50)))
    refs = [(await peer.answer())["ref"] for _ in range(50)]
    assert refs == [f"p{i}" for i in range(50)]


async def test_a_half_closed_connection_still_gets_its_answers(env: Env) -> None:
    # What `printf '…' | nc -N 127.0.0.1 9700` does: send every frame, then shut down the write side.
    peer = await env.connect()
    login = json.dumps({"type": "login", "key": env.keys["t"]})
    await peer.send(f"{login}\n{json.dumps(submit('nc-1'))}\n".encode())
    await peer.stream.send_eof()
    assert (await peer.answer())["type"] == "login_ok"
    assert (await peer.answer())["ref"] == "nc-1"
    assert await peer.closed()


# ----- refusals by the app's limits ----------------------------------------------------------------------


async def test_a_submit_over_the_rate_gets_rate_limited_with_retry_after(env: Env) -> None:
    await env.add_app("slowpoke", rate=1 / 60)  # one recipient a minute
    peer = await env.connect("slowpoke")
    assert (await peer.request(submit("r1")))["type"] == "submit_ack"
    err = await peer.request(submit("r2"))
    assert (err["type"], err["code"], err["field"], err["ref"]) == ("error", "rate_limited", "rate", "r2")
    assert err["retry_after"] > 30


async def test_a_submit_over_the_daily_quota_gets_quota_exceeded(env: Env) -> None:
    await env.add_app("frugal", quota_per_day=1)
    peer = await env.connect("frugal")
    assert (await peer.request(submit("q1")))["type"] == "submit_ack"
    err = await peer.request(submit("q2"))
    assert (err["code"], err["field"], err["ref"]) == ("quota_exceeded", "quota", "q2")


async def test_a_kind_the_app_may_not_use_gets_forbidden(env: Env) -> None:
    await env.add_app("voiceonly", channels="voice")
    peer = await env.connect("voiceonly")
    err = await peer.request(submit("f1"))
    assert (err["type"], err["code"], err["field"], err["ref"]) == ("error", "forbidden", "channel", "f1")
    assert "may not send sms" in err["reason"]


# ----- malformed frames ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"this is not json\n", None),
        (b'["an", "array"]\n', None),
        (b'{"no": "type"}\n', "type"),
        (b'{"type": "dance"}\n', "type"),
        (b'{"type": "submit", "ref": "m1", "to": "13800138000"}\n', "text"),
        (b'{"type": "submit", "to": "13800138000", "text": "hi"}\n', "ref"),
        (b'{"type": "submit", "ref": "m2", "to": "13800138000", "text": "hi", "sendat": "x"}\n', "sendat"),
        (
            b'{"type": "submit", "ref": "m3", "to": "13800138000", "text": "hi", "send_at": "noon"}\n',
            "send_at",
        ),
        (b'{"type": "ack", "event": "seven"}\n', "event"),
        (b"\xff\xfe\n", None),
    ],
)
async def test_a_malformed_frame_gets_an_error_and_the_connection_goes_on(
    env: Env, raw: bytes, field: str | None
) -> None:
    peer = await env.connect("t")
    err = await peer.request(raw)
    assert (err["type"], err["code"]) == ("error", "invalid")
    assert err.get("field") == field
    assert err["reason"]
    assert (await peer.request(submit("after")))["type"] == "submit_ack"


async def test_a_frame_over_the_size_limit_is_skipped_and_the_next_one_read(env: Env) -> None:
    peer = await env.connect("t")
    huge = json.dumps(submit("huge", text="x" * (env.daemon.cfg.socket.max_frame_bytes + 10))).encode()
    err = await peer.request(huge + b"\n")
    assert (err["type"], err["code"]) == ("error", "too_large")
    assert (await peer.request({"type": "ping", "id": 1}))["type"] == "pong"


async def test_an_ack_for_an_event_never_pushed_is_refused(env: Env) -> None:
    peer = await env.connect("t")
    err = await peer.request({"type": "ack", "event": 999})
    assert (err["code"], err["field"]) == ("invalid", "event")


# ----- replies -------------------------------------------------------------------------------------------


async def test_a_reply_is_pushed_only_to_the_app_owning_its_extension(env: Env) -> None:
    await env.add_app("oa", extension="77")
    oa = await env.connect("oa")
    t = await env.connect("t")
    await env.reply(SERVICE + "775", "1 确认参加")
    reply = await oa.push()
    assert reply["type"] == "reply"
    assert (reply["sender"], reply["text"], reply["extension"]) == ("13800138000", "1 确认参加", "5")
    assert (reply["destination"], reply["matched_by"], reply["channel"]) == (
        SERVICE + "775",
        "extension",
        "sim",
    )
    assert reply["received_at"].endswith("Z")
    # The other app hears nothing: its next frame is the answer to its own ping.
    assert await t.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}
    assert t.pushes == []


async def test_a_reply_names_the_message_it_answers(env: Env) -> None:
    await env.add_app("oa", extension="77")
    oa = await env.connect("oa")
    ack = await oa.request(submit("meeting-9", extension="3"))
    receipt = await oa.push()
    assert receipt["type"] == "receipt"
    await oa.send({"type": "ack", "event": receipt["event"]})
    await env.reply(SERVICE + "773", "2")
    reply = await oa.push()
    assert (reply["type"], reply["id"], reply["ref"], reply["extension"]) == (
        "reply",
        ack["id"],
        "meeting-9",
        "3",
    )


# ----- acknowledgements and replay -----------------------------------------------------------------------


async def _three_replies(env: Env) -> Peer:
    await env.add_app("oa", extension="77")
    peer = await env.connect("oa")
    for text in ("one", "two", "three"):
        await env.reply(SERVICE + "77", text)
    return peer


async def test_unacknowledged_pushes_are_pushed_again_after_logging_in_again(env: Env) -> None:
    first = await _three_replies(env)
    seen = [(await first.push())["text"] for _ in range(3)]
    assert seen == ["one", "two", "three"]
    await first.stream.aclose()
    again = await env.connect("oa")
    assert [(await again.push())["text"] for _ in range(3)] == ["one", "two", "three"]


async def test_acknowledged_pushes_are_not_pushed_again(env: Env) -> None:
    first = await _three_replies(env)
    pushes = [await first.push() for _ in range(3)]
    await first.send({"type": "ack", "event": pushes[1]["event"]})  # cumulative: one and two
    assert (await first.request({"type": "ping"}))["type"] == "pong"  # the ack is stored
    await first.stream.aclose()
    again = await env.connect("oa")
    replay = await again.push()
    assert (replay["text"], replay["event"]) == ("three", pushes[2]["event"])
    assert await again.request({"type": "ping", "id": 2}) == {"type": "pong", "id": 2}
    assert again.pushes == []


async def test_at_most_max_unacked_pushes_are_in_flight(tmp_path: Path) -> None:
    async with running(tmp_path, MASD_SOCKET__MAX_UNACKED="2") as env:
        await env.add_app("oa", extension="77")
        peer = await env.connect("oa")
        for i in range(5):
            await env.reply(SERVICE + "77", f"r{i}")
        got = [await peer.push() for _ in range(2)]
        assert await peer.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}
        assert peer.pushes == []  # nothing more until an ack
        (conn,) = env.connections_of("oa")
        assert len(conn.unacked) == 2
        await peer.send({"type": "ack", "event": got[1]["event"]})
        assert [(await peer.push())["text"] for _ in range(2)] == ["r2", "r3"]


async def test_pushes_go_to_the_app_connection_that_logged_in_last(env: Env) -> None:
    await env.add_app("oa", extension="77")
    old = await env.connect("oa")
    new = await env.connect("oa")
    await env.reply(SERVICE + "77", "to the newest")
    assert (await new.push())["text"] == "to the newest"
    assert await old.request({"type": "ping", "id": 1}) == {"type": "pong", "id": 1}
    assert old.pushes == []
    # The old connection still submits; and when the new one closes, it takes the pushes over.
    assert (await old.request(submit("from-old")))["type"] == "submit_ack"
    await new.stream.aclose()
    frames = [await old.push(), await old.push()]
    assert {f["type"] for f in frames} == {"reply", "receipt"}
    assert next(f for f in frames if f["type"] == "reply")["text"] == "to the newest"


# ----- a slow reader -------------------------------------------------------------------------------------


async def test_a_slow_reader_holds_a_bounded_buffer_and_does_not_delay_other_apps(tmp_path: Path) -> None:
    async with running(tmp_path, MASD_SOCKET__SEND_BUFFER="8") as env:
        await env.add_app("slow", extension="55")
        # A client that logs in and then reads nothing, with a tiny receive window.
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", env.port))
        slow = Peer(trio.SocketStream(sock))
        assert (await slow.request({"type": "login", "key": env.keys["slow"]}))["type"] == "login_ok"
        (conn,) = env.connections_of("slow")

        # Many large replies for it, until its connection can take no more.
        text = "回复" * 1000
        n = 0
        with trio.fail_after(30):
            while len(conn.outbox) < conn.outbox.limit:
                async with trio.open_nursery() as nursery:
                    for _ in range(50):
                        nursery.start_soon(env.reply, SERVICE + "55", text)
                n += 50
                await trio.sleep(0.05)
        for _ in range(50):
            await env.reply(SERVICE + "55", text)
        n += 50

        # Another app is served meanwhile, and the slow connection's buffer stays within its bound.
        fast = await env.connect("t")
        for i in range(20):
            ack = await fast.request(submit(f"fast-{i}"))
            assert ack["type"] == "submit_ack"
            assert len(conn.outbox) <= 8
        assert len(conn.unacked) < n  # the rest waits in the database, not in memory

        # Once the slow client reads, it gets every reply, in order, none lost.
        texts = 0
        last = 0
        while texts < n:
            push = await slow.push(timeout=30)
            assert push["event"] > last
            last = push["event"]
            texts += 1
            await slow.send({"type": "ack", "event": push["event"]})
        assert texts == n


async def test_a_client_that_sends_without_reading_is_paused_not_buffered(tmp_path: Path) -> None:
    async with running(tmp_path, MASD_SOCKET__SEND_BUFFER="8") as env:
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", env.port))
        peer = Peer(trio.SocketStream(sock))
        assert (await peer.request({"type": "login", "key": env.keys["t"]}))["type"] == "login_ok"
        (conn,) = env.connections_of("t")
        frames = b"".join(json.dumps(submit(f"b{i}")).encode() + b"\n" for i in range(300))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.stream.send_all, frames)
            with trio.fail_after(30):
                while len(conn.outbox) < conn.outbox.limit:
                    await trio.sleep(0.01)
            await trio.testing.wait_all_tasks_blocked(0.1)
            # masd stopped reading this client: the answers it owes stay within the outbox's bound.
            assert len(conn.outbox) <= 8
            accepted = await env.daemon.db.read(
                lambda c: c.execute(sa.select(sa.func.count()).select_from(messages_table)).scalar_one()
            )
            assert accepted < 300
            refs = [(await peer.answer(timeout=30))["ref"] for _ in range(300)]
        assert refs == [f"b{i}" for i in range(300)]


# ----- the Python client ---------------------------------------------------------------------------------


async def test_the_python_client_submits_and_hears_receipts_and_replies(env: Env) -> None:
    await env.add_app("oa", extension="77")

    def app_side() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        with Client("127.0.0.1", env.port, env.keys["oa"], timeout=10) as c:
            assert c.ping()["type"] == "pong"
            ack = c.submit(["13800138000"], "会议改到下午三点", ref="py-1")
            got = []
            for push in c.pushes(timeout=10):
                got.append(push)
                if push["type"] == "receipt":
                    trio.from_thread.run(env.reply, SERVICE + "77", "收到")
                if push["type"] == "reply":
                    break
            return ack, got

    ack, got = await trio.to_thread.run_sync(app_side)
    assert (ack["ref"], ack["encoding"], ack["duplicate"]) == ("py-1", "ucs2", False)
    assert [p["type"] for p in got] == ["receipt", "reply"]
    assert (got[0]["ref"], got[0]["state"]) == ("py-1", "delivered")
    assert (got[1]["text"], got[1]["ref"]) == ("收到", "py-1")


async def test_the_python_client_raises_the_error_frame(env: Env) -> None:
    def app_side() -> ServerError:
        with Client("127.0.0.1", env.port, env.keys["t"], timeout=10) as c:
            with pytest.raises(ServerError) as info:
                c.submit("12345", "hi", ref="py-bad")
            return info.value

    err = await trio.to_thread.run_sync(app_side)
    assert (err.code, err.field, err.ref) == ("invalid", "to", "py-bad")


async def test_the_python_client_keeps_pushes_that_arrive_while_it_waits_for_an_answer(env: Env) -> None:
    await env.add_app("oa", extension="77")
    await env.reply(SERVICE + "77", "early")

    def app_side() -> list[str]:
        with Client("127.0.0.1", env.port, env.keys["oa"], timeout=10) as c:
            c.submit("13800138000", "hello", ref="k1")  # the pushed reply arrives before this ack
            c.ping()
            return [p["text"] for p in c.pushes(timeout=0.5) if p["type"] == "reply"]

    assert await trio.to_thread.run_sync(app_side) == ["early"]


async def test_the_python_client_acknowledges_what_its_loop_handled(env: Env) -> None:
    await env.add_app("oa", extension="77")
    for text in ("a", "b"):
        await env.reply(SERVICE + "77", text)

    def handle_first_then_fail() -> None:
        with Client("127.0.0.1", env.port, env.keys["oa"], timeout=10) as c:
            for push in c.pushes(timeout=10):
                if push["text"] == "b":
                    break  # not handled: not acknowledged

    def read_again() -> list[str]:
        with Client("127.0.0.1", env.port, env.keys["oa"], timeout=10) as c:
            return [p["text"] for p in c.pushes(timeout=0.5)]

    await trio.to_thread.run_sync(handle_first_then_fail)
    assert await trio.to_thread.run_sync(read_again) == ["b"]
