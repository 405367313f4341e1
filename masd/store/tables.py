"""The core's tables, as SQLAlchemy Core metadata; Alembic migrations create them.

Times are stored as seconds since the Unix epoch in double-precision columns: every dialect compares
them the same way, and there is no time-zone handling to get wrong between SQLite, PostgreSQL and
MariaDB. The CLI and the HTTP API render them as ISO 8601.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

__all__ = ["apps", "deliveries", "messages", "metadata", "receipts", "replies", "segments"]

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
    sa.Index("ix_deliveries_message_id", "message_id"),
    sa.Index("ix_deliveries_state_lease", "state", "lease_until"),
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
)
