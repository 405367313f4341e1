"""The core's tables, as SQLAlchemy Core metadata; Alembic migrations create them.

Times are stored as seconds since the Unix epoch in double-precision columns: every dialect compares
them the same way, and there is no time-zone handling to get wrong between SQLite, PostgreSQL and
MariaDB. The CLI and the HTTP API render them as ISO 8601.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

__all__ = [
    "app_events",
    "app_rates",
    "app_usage",
    "apps",
    "dbpoll_messages",
    "deliveries",
    "delivery_history",
    "event_cursors",
    "job_leases",
    "messages",
    "metadata",
    "receipts",
    "replies",
    "reply_assemblies",
    "reply_parts",
    "segments",
    "webhook_parked",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only autoincrements INTEGER PRIMARY KEY; BigInteger elsewhere.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time: sa.types.TypeEngine[float] = sa.Double()


def WrittenAt() -> sa.Column[float]:
    """When the row was inserted, by the database server's own clock (migration 0009 gives the column a
    default on PostgreSQL and MariaDB; SQLite, with one writer, leaves it NULL). Readers by id cursor
    use it to tell an id that may still commit from one rolled back (see masd.store.settled)."""
    return sa.Column("written_at", Time, nullable=True)


def CaseSensitive(length: int) -> sa.types.TypeEngine[str]:
    """Carrier ids and client references differ by case alone; MySQL's default collations would not
    tell them apart."""
    return sa.String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb")


apps = sa.Table(
    "apps",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("key_hash", CaseSensitive(64), nullable=False, unique=True),
    sa.Column("key_prefix", sa.String(16), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("revoked_at", Time, nullable=True),
    # What the app may do. NULL channels = every kind; NULL rate/quota = unlimited.
    sa.Column("channels", sa.String(64), nullable=True),
    sa.Column("rate", Time, nullable=True),  # recipients per second
    sa.Column("quota_per_day", sa.Integer, nullable=True),  # recipients per local calendar day
    # Replies to the service number followed by this extension belong to the app.
    sa.Column("extension", sa.String(12), nullable=True, unique=True),
    sa.Column("webhook_url", sa.String(512), nullable=True),
    sa.Column("webhook_secret", sa.String(96), nullable=True),
    # The parts of the API the app may use (masd.core.apps.SCOPES), sorted and comma-separated; NULL is
    # the default set (every scope but the address book's).
    sa.Column("scopes", sa.String(255), nullable=True),
    # Resends after a failed receipt for the app's messages, instead of their channel's
    # resend_undelivered; NULL: the channel's.
    sa.Column("resend", sa.Integer, nullable=True),
    # The carrier signature (【单位名】) the app's SMS texts carry, instead of their channel's; NULL: the
    # channel's.
    sa.Column("signature", sa.String(64), nullable=True),
)

# Recipients accepted per app per day, for the quota; the day is the node's local date, as office staff
# read "10000/day".
app_usage = sa.Table(
    "app_usage",
    metadata,
    sa.Column("app_id", Id, primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("recipients", sa.BigInteger, nullable=False),
)

# Each rate-limited app's token bucket (see masd/store/limits.py): what it may send now, as of ``at``.
app_rates = sa.Table(
    "app_rates",
    metadata,
    sa.Column("app_id", Id, primary_key=True, autoincrement=False),
    sa.Column("tokens", sa.Double, nullable=False),
    sa.Column("at", Time, nullable=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("app_id", Id, nullable=True),
    sa.Column("interface", sa.String(16), nullable=False),
    sa.Column("client_ref", CaseSensitive(128), nullable=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("encoding", sa.String(8), nullable=False),
    sa.Column("priority", sa.SmallInteger, nullable=False),
    sa.Column("send_at", Time, nullable=True),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    # 1: the app wants an event for each delivery's final state (socket, webhooks, DB polling).
    sa.Column("notify", sa.SmallInteger, nullable=False, server_default="0"),
    sa.UniqueConstraint("app_id", "client_ref"),
)

# One row per (message, recipient). The claim index leads with the columns the dispatcher filters on.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("message_id", Id, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    sa.Column("recipient", sa.String(24), nullable=False),
    sa.Column("extension", sa.String(12), nullable=False, server_default=""),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(255), nullable=True),
    sa.Column("error_code", sa.Integer, nullable=True),  # the carrier's code when it ended unsuccessfully
    sa.Column("priority", sa.SmallInteger, nullable=False),
    sa.Column("not_before", Time, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("segments", sa.Integer, nullable=False),
    sa.Column("seg_delivered", sa.Integer, nullable=False, server_default="0"),
    sa.Column("concat_ref", sa.Integer, nullable=False),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("lease_until", Time, nullable=True),
    sa.Column("recovered", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("submitted_at", Time, nullable=True),
    sa.Column("done_at", Time, nullable=True),
    # Resends after a failed receipt (masd.store.resends): how many were made, how many are allowed
    # (the app's or the channel's count when the delivery was accepted).
    sa.Column("resends", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_resends", sa.Integer, nullable=False, server_default="0"),
    # While a failover has it on a backup channel: the channel it goes back to. NULL: it is at home.
    sa.Column("home_channel", sa.String(64), nullable=True),
    sa.Index("ix_deliveries_message_id", "message_id"),
    sa.Index("ix_deliveries_state_lease", "state", "lease_until"),
    # Reply routing looks up the latest delivery to the number a reply came from.
    sa.Index("ix_deliveries_recipient", "recipient", "id"),
    # Failing back looks up the queued deliveries away from home; nearly every row has NULL here.
    sa.Index("ix_deliveries_home_channel", "home_channel", "state"),
)

# What happened to a delivery before its current attempt: a failed receipt it was resent after
# (event "resend"), a move to a backup channel and back ("failover", "failback"), an operator's or the
# app's retry ("retry"). Each row names the channel of that attempt and, for a receipt, its outcome.
delivery_history = sa.Table(
    "delivery_history",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", Id, sa.ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=True),  # the outcome the attempt ended with
    sa.Column("reason", sa.String(255), nullable=True),
    sa.Column("error_code", sa.Integer, nullable=True),
    sa.Column("next_channel", sa.String(64), nullable=True),  # where the delivery went on
    sa.Index("ix_delivery_history_delivery_id", "delivery_id", "id"),
)

# The dispatcher's claim walks this index in priority order (highest first, then oldest) and stops after
# one batch, so a million queued rows cost no more to claim from than a hundred.
sa.Index(
    "ix_deliveries_claim",
    deliveries.c.channel,
    deliveries.c.state,
    deliveries.c.priority.desc(),
    deliveries.c.id,
)

segments = sa.Table(
    "segments",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", Id, sa.ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("carrier_id", CaseSensitive(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("error_code", sa.Integer, nullable=True),
    sa.Column("submitted_at", Time, nullable=False),
    sa.Column("receipt_at", Time, nullable=True),
    sa.Index("ix_segments_carrier", "channel", "carrier_id"),
    sa.Index("ix_segments_delivery_id", "delivery_id"),
)

# Every receipt received is kept. segment_id stays NULL while the receipt is held: it arrived before
# the submit response that tells us which segment the carrier id belongs to.
receipts = sa.Table(
    "receipts",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("carrier_id", CaseSensitive(64), nullable=False),
    sa.Column("segment_id", Id, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error_code", sa.Integer, nullable=True),
    sa.Column("raw", sa.Text, nullable=True),
    sa.Column("received_at", Time, nullable=False),
    sa.Index("ix_receipts_held", "channel", "carrier_id", "segment_id"),
)

replies = sa.Table(
    "replies",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("sender", sa.String(24), nullable=False),
    sa.Column("destination", sa.String(32), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("received_at", Time, nullable=False),
    # Where routing sent it: the owning app (NULL = unmatched), how, and what it answers.
    sa.Column("app_id", Id, nullable=True),
    sa.Column("matched_by", sa.String(16), nullable=False, server_default="none"),
    sa.Column("extension", sa.String(21), nullable=False, server_default=""),  # after the app's own
    sa.Column("delivery_id", Id, nullable=True),
    WrittenAt(),
    sa.Index("ix_replies_app_id", "app_id", "id"),
)

# A long reply (a concatenated MO) while its parts come in, one row per (channel, sender, destination,
# concatenation reference); the row is what concurrent parts of one reply lock, so that exactly one of
# them completes it. After the reply is handed over (complete, or with gaps after the channel's timeout)
# the row stays, with handed_over_at set and each part's digest, for as long again: a part the SMSC
# sends once more (it missed our deliver_sm_resp) is then recognised and dropped.
reply_assemblies = sa.Table(
    "reply_assemblies",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("sender", CaseSensitive(32), nullable=False),
    sa.Column("destination", CaseSensitive(32), nullable=False),
    sa.Column("reference", sa.String(24), nullable=False),  # scheme and number, e.g. "udh8:42"
    sa.Column("total", sa.SmallInteger, nullable=False),
    sa.Column("first_seen", Time, nullable=False),  # the missing-part timeout runs from here
    sa.Column("handed_over_at", Time, nullable=True),  # NULL while parts are awaited
    sa.Column("digests", sa.Text, nullable=True),  # after hand-over: per seq, comma-separated
    sa.UniqueConstraint("channel", "sender", "destination", "reference"),
    sa.Index("ix_reply_assemblies_channel_first_seen", "channel", "first_seen"),
)

# The parts of a long reply that have arrived, as raw user data (UDH removed) with the codec that reads
# them: the parts are joined as bytes before decoding, as a character may straddle two parts.
reply_parts = sa.Table(
    "reply_parts",
    metadata,
    sa.Column(
        "assembly_id",
        Id,
        sa.ForeignKey("reply_assemblies.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("seq", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("codec", sa.String(16), nullable=False),  # see masd.core.reply_parts.decode
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("received_at", Time, nullable=False),
)

# The outbox of what an app is told: a delivery reached its final state (kind "receipt"), or a reply
# was routed to it ("reply"). Written in the same transaction as the change itself, so a consumer
# (socket, webhooks, DB polling) that reads past its cursor misses nothing, even after a crash.
app_events = sa.Table(
    "app_events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("app_id", Id, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("delivery_id", Id, nullable=True),
    sa.Column("reply_id", Id, nullable=True),
    sa.Column("created_at", Time, nullable=False),
    WrittenAt(),
    sa.Index("ix_app_events_app_id", "app_id", "id"),
)

# How far each consumer of an app's events has got (consumer: "socket", "webhook", "dbpoll:CODE", …).
event_cursors = sa.Table(
    "event_cursors",
    metadata,
    sa.Column("app_id", Id, primary_key=True),
    sa.Column("consumer", sa.String(64), primary_key=True),
    sa.Column("last_event_id", Id, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

# Webhook calls that failed every attempt: kept, listed by `masd webhooks`, and retried on demand.
webhook_parked = sa.Table(
    "webhook_parked",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("app_id", Id, nullable=False),
    sa.Column("event_id", Id, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.String(512), nullable=False),
    sa.Column("parked_at", Time, nullable=False),
    sa.Index("ix_webhook_parked_app_id", "app_id", "id"),
)

# Messages that came from an OA's api_mt_<code> table: which row, so that receipts go to
# api_rpt_<code> with the OA's SM_ID and replies to extension SRC_ID to api_mo_<code>.
dbpoll_messages = sa.Table(
    "dbpoll_messages",
    metadata,
    sa.Column("message_id", Id, primary_key=True),
    sa.Column("code", sa.String(32), nullable=False),
    sa.Column("sm_id", sa.BigInteger, nullable=False),
    sa.Column("src_id", sa.String(12), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Index("ix_dbpoll_messages_src", "code", "src_id", "message_id"),
)

# Background jobs that run on one node at a time (webhooks, each DB-polling code, the meeting
# scheduler, housekeeping): who holds each, until when, and a generation that grows at every change of
# hands, so a job's writes can check they still hold it (see masd.store.jobs).
job_leases = sa.Table(
    "job_leases",
    metadata,
    sa.Column("job", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=True),
    sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("lease_until", Time, nullable=False),
    sa.Column("taken_at", Time, nullable=True),
    sa.Column("renewed_at", Time, nullable=True),
)
