"""Webhook progress in the store (masd.store.webhooks), specified once for SQLite, PostgreSQL and MariaDB:
parked events and requests to send them again, the webhook cursor and which apps have a webhook."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from masd.store import apps as app_store
from masd.store import events as event_store
from masd.store import webhooks as hooks
from masd.store.db import Database

from .test_store import NOW


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = Database(store_url, group_commit_ms=1)
    database.upgrade()
    yield database
    database.dispose()


def make_app(db: Database, name: str, **settings: object) -> int:
    app_id, _ = db.write_sync(lambda c: app_store.create_app(c, name, now=NOW, **settings))
    return app_id


def park(db: Database, app_id: int, event_id: int, error: str = "HTTP 500") -> int:
    return db.write_sync(
        lambda c: hooks.park(c, app_id=app_id, event_id=event_id, attempts=3, error=error, now=NOW)
    )


def test_a_parked_event_is_listed_with_its_app_and_no_retry_requested(db: Database) -> None:
    app_id = make_app(db, "crm")
    parked_id = park(db, app_id, 41)
    (row,) = db.read_sync(lambda c: hooks.list_parked(c))
    assert row["id"] == parked_id
    assert (row["app"], row["event_id"], row["attempts"], row["last_error"]) == ("crm", 41, 3, "HTTP 500")
    assert row["type"] is None  # the event itself is not (or no longer) in app_events
    assert row["retry_requested"] is False


def test_a_parked_event_keeps_the_first_512_characters_of_its_error(db: Database) -> None:
    app_id = make_app(db, "crm")
    park(db, app_id, 1, error="x" * 600)
    (row,) = db.read_sync(lambda c: hooks.list_parked(c))
    assert row["last_error"] == "x" * 512


def test_a_retry_request_marks_only_the_named_events_and_counts_them(db: Database) -> None:
    app_id = make_app(db, "crm")
    first, second = park(db, app_id, 10), park(db, app_id, 11)
    assert db.write_sync(lambda c: hooks.request_retry(c, ids=[second])) == 1
    assert db.read_sync(lambda c: hooks.retries_requested(c, app_id)) == [(second, 11)]
    listed = {r["id"]: r["retry_requested"] for r in db.read_sync(lambda c: hooks.list_parked(c))}
    assert listed == {first: False, second: True}
    # Asking again for one already marked changes nothing.
    assert db.write_sync(lambda c: hooks.request_retry(c, ids=[second])) == 0


def test_a_retry_request_for_an_app_marks_its_events_and_no_other_apps(db: Database) -> None:
    crm, hr = make_app(db, "crm"), make_app(db, "hr")
    park(db, crm, 5)
    other = park(db, hr, 6)
    assert db.write_sync(lambda c: hooks.request_retry(c, app_id=crm)) == 1
    assert db.read_sync(lambda c: hooks.retries_requested(c, hr)) == []
    assert [r["id"] for r in db.read_sync(lambda c: hooks.list_parked(c, app_id=hr))] == [other]


def test_a_retry_request_must_name_events_or_an_app(db: Database) -> None:
    with pytest.raises(ValueError):
        db.write_sync(lambda c: hooks.request_retry(c))


def test_ids_that_name_no_parked_event_of_the_app_are_reported_in_the_order_given(db: Database) -> None:
    crm, hr = make_app(db, "crm"), make_app(db, "hr")
    mine, theirs = park(db, crm, 1), park(db, hr, 2)
    wanted = [theirs + 100, mine, theirs]
    assert db.read_sync(lambda c: hooks.not_parked(c, wanted)) == [theirs + 100]
    assert db.read_sync(lambda c: hooks.not_parked(c, wanted, app_id=crm)) == [theirs + 100, theirs]
    assert db.read_sync(lambda c: hooks.not_parked(c, [])) == []


def test_a_retried_event_that_fails_again_is_parked_again_and_one_that_succeeds_is_forgotten(
    db: Database,
) -> None:
    app_id = make_app(db, "crm")
    again, done = park(db, app_id, 1), park(db, app_id, 2)
    db.write_sync(lambda c: hooks.request_retry(c, app_id=app_id))
    db.write_sync(lambda c: hooks.repark(c, again, attempts=3, error="timeout", now=NOW + 5))
    db.write_sync(lambda c: hooks.unpark(c, done))
    (row,) = db.read_sync(lambda c: hooks.list_parked(c))
    assert (row["id"], row["attempts"], row["last_error"], row["parked_at"]) == (again, 3, "timeout", NOW + 5)
    assert row["retry_requested"] is False


def test_the_cursor_moves_forward_only_and_skip_goes_past_every_event(db: Database) -> None:
    app_id = make_app(db, "crm")
    for reply_id in (1, 2, 3):
        db.write_sync(lambda c, r=reply_id: event_store.record_reply(c, app_id=app_id, reply_id=r, now=NOW))
    latest = db.read_sync(lambda c: event_store.latest_event_id(c, app_id))
    db.write_sync(lambda c: hooks.move_cursor(c, app_id, latest - 1, now=NOW, fence=None))
    db.write_sync(lambda c: hooks.move_cursor(c, app_id, latest - 2, now=NOW, fence=None))
    assert db.read_sync(lambda c: event_store.get_cursor(c, app_id, hooks.CONSUMER)) == latest - 1
    assert db.write_sync(lambda c: hooks.skip_to_latest(c, app_id, now=NOW)) == latest
    retries, cursor, batch = db.read_sync(lambda c: hooks.pending(c, app_id, limit=10))
    assert (retries, cursor, batch) == ([], latest, [])


def test_status_lists_apps_with_a_webhook_or_parked_events(db: Database) -> None:
    make_app(db, "quiet")
    hooked = make_app(db, "crm", webhook_url="https://oa.example/hook")
    parked_only = make_app(db, "hr")
    park(db, parked_only, 9)
    db.write_sync(lambda c: event_store.record_reply(c, app_id=hooked, reply_id=1, now=NOW))
    rows = {r["app"]: r for r in db.read_sync(hooks.webhook_status)}
    assert set(rows) == {"crm", "hr"}
    assert rows["crm"]["active"] is True
    assert (rows["crm"]["cursor"], rows["crm"]["behind"], rows["crm"]["parked"]) == (0, 1, 0)
    assert rows["hr"]["webhook_url"] is None
    assert (rows["hr"]["active"], rows["hr"]["parked"]) == (False, 1)


def test_only_live_apps_with_a_webhook_url_are_served(db: Database) -> None:
    make_app(db, "quiet")
    make_app(db, "crm", webhook_url="https://oa.example/hook", webhook_secret="s3cret")
    make_app(db, "gone", webhook_url="https://gone.example/hook")
    db.write_sync(lambda c: app_store.revoke_app(c, "gone", now=NOW))
    (row,) = db.read_sync(hooks.apps_with_webhooks)
    assert (row["name"], row["webhook_url"], row["webhook_secret"]) == (
        "crm",
        "https://oa.example/hook",
        "s3cret",
    )
