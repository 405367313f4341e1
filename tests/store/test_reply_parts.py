"""Long replies kept part by part, specified once for SQLite, PostgreSQL and MariaDB: parts held until
the last arrives, repeats ignored, each reply handed over exactly once, the missing-part timeout."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masd.config import Config
from masd.core.gateway import Gateway
from masd.core.reply_parts import MISSING
from masd.store import apps as app_store
from masd.store import reply_parts as store
from masd.store.db import Database
from masd.store.tables import replies, reply_assemblies, reply_parts
from masd_adapters.base import InboundReply, InboundReplyPart

NOW = 1_800_000_000.0
TIMEOUT = 60.0


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url, group_commit_ms=1)
    database.upgrade()
    yield database
    database.dispose()


def add(
    db: Database,
    seq: int,
    body: bytes,
    *,
    total: int = 3,
    ref: str = "udh8:42",
    sender: str = "13800138000",
    destination: str = "1065700012345",
    channel: str = "smpp",
    codec: str = "latin-1",
    at: float = NOW,
) -> list[store.HandedOver]:
    return db.write_sync(
        lambda c: store.add_part(
            c,
            channel=channel,
            sender=sender,
            destination=destination,
            reference=ref,
            total=total,
            seq=seq,
            codec=codec,
            body=body,
            received_at=at,
            now=at,
        )
    )


def expire(db: Database, now: float, channel: str = "smpp") -> list[store.HandedOver]:
    return db.write_sync(lambda c: store.take_expired(c, channel=channel, older_than=now - TIMEOUT, now=now))


def held_parts(db: Database) -> list[tuple[int, bytes]]:
    rows = db.read_sync(lambda c: c.execute(sa.select(reply_parts.c.seq, reply_parts.c.body)).all())
    return sorted((int(r.seq), bytes(r.body)) for r in rows)


def assemblies(db: Database) -> int:
    return int(
        db.read_sync(lambda c: c.execute(sa.select(sa.func.count()).select_from(reply_assemblies)).scalar())
    )


def texts(handed: list[store.HandedOver]) -> list[bytes]:
    return [b"".join(body for _, (_, body) in sorted(h.parts.items())) for h in handed]


# -- assembling -------------------------------------------------------------------------------------


def test_parts_are_held_until_the_last_one_arrives_in_any_order(db: Database) -> None:
    assert add(db, 3, b"three") == []
    assert add(db, 1, b"one-") == []
    assert held_parts(db) == [(1, b"one-"), (3, b"three")]
    [whole] = add(db, 2, b"two-", at=NOW + 1)
    assert whole.complete and texts([whole]) == [b"one-two-three"]
    assert (whole.channel, whole.sender, whole.destination, whole.total) == (
        "smpp",
        "13800138000",
        "1065700012345",
        3,
    )
    assert whole.first_seen == NOW
    assert held_parts(db) == []  # the parts leave with the reply


def test_a_part_keeps_its_codec(db: Database) -> None:
    add(db, 1, b"\x00A", total=2, codec="ucs2")
    [whole] = add(db, 2, b"hi", total=2, codec="gsm7")
    assert whole.parts == {1: ("ucs2", b"\x00A"), 2: ("gsm7", b"hi")}


def test_a_repeated_part_is_held_once_and_the_first_copy_stands(db: Database) -> None:
    add(db, 1, b"one-")
    assert add(db, 1, b"one-") == []
    assert add(db, 1, b"ONE-") == []
    assert held_parts(db) == [(1, b"one-")]
    add(db, 2, b"two-")
    assert texts(add(db, 3, b"three")) == [b"one-two-three"]


def test_the_last_part_delivered_twice_hands_the_reply_over_once(db: Database) -> None:
    # The SMSC missed our deliver_sm_resp for the last part and sends it again.
    add(db, 1, b"one-")
    add(db, 2, b"two-")
    assert len(add(db, 3, b"three")) == 1
    assert add(db, 3, b"three", at=NOW + 5) == []
    assert add(db, 1, b"one-", at=NOW + 6) == []  # any late copy of a part handed over
    assert held_parts(db) == []


def test_a_reference_reused_for_a_new_text_after_completion_starts_a_new_reply(db: Database) -> None:
    add(db, 1, b"aaaa", total=2)
    assert texts(add(db, 2, b"bbbb", total=2)) == [b"aaaabbbb"]
    # Some handsets use reference 0 for every message: same reference, same total, other bytes.
    assert add(db, 2, b"dddd", total=2, at=NOW + 2) == []
    assert texts(add(db, 1, b"cccc", total=2, at=NOW + 3)) == [b"ccccdddd"]


def test_a_reference_reused_with_another_total_hands_over_the_old_reply_with_its_gaps(db: Database) -> None:
    add(db, 1, b"aa", total=2)
    [old] = add(db, 1, b"cc", total=3, at=NOW + 1)
    assert not old.complete and old.total == 2 and old.parts == {1: ("latin-1", b"aa")}
    add(db, 3, b"ee", total=3)
    [new] = add(db, 2, b"dd", total=3)
    assert new.complete and texts([new]) == [b"ccddee"] and new.first_seen == NOW + 1


def test_senders_destinations_references_and_channels_do_not_mix(db: Database) -> None:
    add(db, 1, b"A1", total=2)
    assert add(db, 2, b"B2", total=2, sender="13900139000") == []
    assert add(db, 2, b"C2", total=2, destination="1065700012399") == []
    assert add(db, 2, b"D2", total=2, ref="udh16:42") == []
    assert add(db, 2, b"E2", total=2, channel="other") == []
    assert texts(add(db, 2, b"A2", total=2)) == [b"A1A2"]
    assert assemblies(db) == 5


def test_a_sender_differing_only_by_case_is_another_sender(db: Database) -> None:
    add(db, 1, b"a", total=2, sender="BANK")
    assert add(db, 2, b"b", total=2, sender="bank") == []
    assert texts(add(db, 2, b"c", total=2, sender="BANK")) == [b"ac"]


def test_seq_outside_the_total_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="seq"):
        add(db, 4, b"x", total=3)


_refs = itertools.count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(total=st.integers(2, 6), seed=st.integers(0, 2**32 - 1), dupes=st.integers(0, 4))
def test_any_order_with_any_repeats_hands_the_reply_over_exactly_once(
    db: Database, total: int, seed: int, dupes: int
) -> None:
    ref = f"udh16:{next(_refs)}"
    rng = random.Random(seed)
    order = list(range(1, total + 1)) + [rng.randint(1, total) for _ in range(dupes)]
    rng.shuffle(order)
    handed = [h for s in order for h in add(db, s, f"<{s}>".encode(), total=total, ref=ref)]
    assert texts(handed) == [b"".join(f"<{s}>".encode() for s in range(1, total + 1))]
    assert held_parts(db) == []


# -- the missing-part timeout -----------------------------------------------------------------------


def test_incomplete_replies_are_handed_over_after_the_timeout_with_what_arrived(db: Database) -> None:
    add(db, 1, b"one-", total=4)
    add(db, 3, b"three-", total=4, at=NOW + 30)
    assert not db.read_sync(lambda c: store.has_expired(c, channel="smpp", older_than=NOW - 1 + 0))
    assert expire(db, NOW + TIMEOUT - 1) == []  # the timeout runs from the first part
    assert db.read_sync(lambda c: store.has_expired(c, channel="smpp", older_than=NOW + 1))
    [partial] = expire(db, NOW + TIMEOUT + 1)
    assert not partial.complete and sorted(partial.parts) == [1, 3] and partial.total == 4
    assert held_parts(db) == []
    assert expire(db, NOW + TIMEOUT + 2) == []  # handed over once


def test_after_the_timeout_a_late_copy_is_dropped_and_a_late_missing_part_opens_a_new_reply(
    db: Database,
) -> None:
    add(db, 1, b"one-")
    add(db, 3, b"three")
    expire(db, NOW + TIMEOUT + 1)
    assert add(db, 3, b"three", at=NOW + TIMEOUT + 2) == []  # a resend of a part handed over
    assert held_parts(db) == []
    assert add(db, 2, b"two-", at=NOW + TIMEOUT + 3) == []  # the part that was missing, late
    assert held_parts(db) == [(2, b"two-")]
    [late] = expire(db, NOW + 2 * TIMEOUT + 4)
    assert late.parts == {2: ("latin-1", b"two-")}


def test_what_is_remembered_of_handed_over_replies_is_forgotten_after_the_timeout(db: Database) -> None:
    add(db, 1, b"a", total=2)
    add(db, 2, b"b", total=2)
    assert assemblies(db) == 1
    assert not db.read_sync(lambda c: store.has_expired(c, channel="smpp", older_than=NOW))
    assert db.read_sync(lambda c: store.has_expired(c, channel="smpp", older_than=NOW + 1))
    assert expire(db, NOW + TIMEOUT + 1) == []
    assert assemblies(db) == 0
    # Forgotten: the same part now starts a new reply.
    assert add(db, 2, b"b", total=2, at=NOW + TIMEOUT + 2) == []
    assert held_parts(db) == [(2, b"b")]


def test_expiry_is_per_channel(db: Database) -> None:
    add(db, 1, b"a", total=2, channel="other")
    assert expire(db, NOW + TIMEOUT + 1) == []
    assert len(expire(db, NOW + TIMEOUT + 1, channel="other")) == 1


# -- concurrency: each part its own transaction, from many threads ----------------------------------


def test_parts_stored_concurrently_complete_each_reply_exactly_once(db: Database) -> None:
    n_replies, total = 20, 3
    jobs = [(r, s) for s in range(1, total + 1) for r in range(n_replies)]
    jobs += [(r, total) for r in range(0, n_replies, 2)]  # resends of some last parts
    handed: list[store.HandedOver] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(mine: list[tuple[int, int]]) -> None:
        for r, s in mine:
            for _attempt in range(20):
                try:
                    got = add(db, s, f"{r}.{s};".encode(), total=total, ref=f"udh8:{r}")
                    break
                except sa.exc.DBAPIError:
                    continue  # a deadlock victim: the SMSC would send the part again
            else:
                errors.append(RuntimeError(f"part {s} of reply {r} never stored"))
                return
            with lock:
                handed.extend(got)

    threads = [threading.Thread(target=worker, args=(jobs[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(h.complete for h in handed)
    assert sorted(texts(handed)) == sorted(
        b"".join(f"{r}.{s};".encode() for s in (1, 2, 3)) for r in range(20)
    )
    assert held_parts(db) == []


# -- through the gateway: stored as a reply, routed, in the same transaction ------------------------


@pytest.fixture
def gateway(db: Database) -> Gateway:
    cfg = Config.model_validate({"channels": {"smpp": {"driver": "smpp", "service_number": "1065700012345"}}})
    return Gateway(cfg, db)


def part(seq: int, body: bytes, total: int = 3, at: float = NOW) -> InboundReplyPart:
    return InboundReplyPart("13800138000", "106570001234542", "udh8:9", total, seq, "ucs2", body, at)


def stored_replies(db: Database) -> list[dict[str, Any]]:
    return db.read_sync(lambda c: [dict(r) for r in c.execute(sa.select(replies)).mappings()])


async def test_the_last_part_stores_the_reply_once_routed_by_its_extension(
    db: Database, gateway: Gateway
) -> None:
    app_id, _ = db.write_sync(lambda c: app_store.create_app(c, "oa", now=NOW, extension="42"))
    body = "请假：明天的会议无法参加".encode("utf-16-be")
    assert await gateway.reply_part("smpp", part(2, body[8:16])) is None
    assert await gateway.reply_part("smpp", part(1, body[:8])) is None
    whole = await gateway.reply_part("smpp", part(3, body[16:]))
    assert whole == InboundReply("13800138000", "106570001234542", "请假：明天的会议无法参加")
    assert await gateway.reply_part("smpp", part(3, body[16:])) is None  # resent after a lost resp
    [row] = stored_replies(db)
    assert row["text"] == "请假：明天的会议无法参加" and row["app_id"] == app_id
    assert (row["matched_by"], row["channel"]) == ("extension", "smpp")


async def test_expiry_stores_what_arrived_with_the_gap_marked(db: Database, gateway: Gateway) -> None:
    body = "一二三四五六".encode("utf-16-be")
    await gateway.reply_part("smpp", part(1, body[:4]))
    await gateway.reply_part("smpp", part(3, body[8:]))
    assert await gateway.expire_reply_parts("smpp", NOW - 1) == []
    [partial] = await gateway.expire_reply_parts("smpp", NOW + 1)
    assert partial.text == f"一二{MISSING}五六"
    assert partial.raw == "incomplete: parts 1,3 of 3 (missing 2)"
    assert await gateway.expire_reply_parts("smpp", NOW + 1) == []
    [row] = stored_replies(db)
    assert row["text"] == f"一二{MISSING}五六"
