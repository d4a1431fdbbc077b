"""The metering tables (SQLAlchemy Core). Changes go through a new Alembic migration."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

# One per admitted request; settled by the request's usage event.
holds = Table(
    "holds",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("account_id", String(64), nullable=False, index=True),
    Column("key_id", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("amount", BigInteger, nullable=False, default=0),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("settled_at", DateTime(timezone=True), nullable=True),
)

# The durable usage of every request, keyed by request id (a replayed event changes nothing).
usage_records = Table(
    "usage_records",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("account_id", String(64), nullable=False, index=True),
    Column("key_id", String(64), nullable=False, index=True),
    Column("group_name", String(128), nullable=False),
    Column("model", String(128), nullable=False),
    Column("provider_id", String(128), nullable=False),
    Column("deployment_id", String(256), nullable=False),
    Column("client_protocol", String(16), nullable=False),
    Column("upstream_protocol", String(16), nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("estimated", Boolean, nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("finish_reason", String(64), nullable=False),
    Column("error_cause", String(64), nullable=False),
    Column("client_disconnected", Boolean, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)
