"""The metering tables (SQLAlchemy Core). Changes go through a new Alembic migration.

Invariants the store keeps, each in the one transaction that changes them:
`balances.balance` = Σ `ledger.amount` of the account, and `balances.held` = Σ `holds.amount`
of the account's open holds.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
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
    # Micro-credits reserved: the request's maximum cost.
    Column("amount", BigInteger, nullable=False, default=0),
    # Tokens counted against the key's TPM window at admission (corrected at settlement).
    Column("estimated_tokens", BigInteger, nullable=False, default=0),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Index("ix_holds_status_expires_at", "status", "expires_at"),
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
    Column("images", BigInteger, nullable=False, default=0),
    Column("video_ms", BigInteger, nullable=False, default=0),
    Column("estimated", Boolean, nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("finish_reason", String(64), nullable=False),
    Column("error_cause", String(64), nullable=False),
    Column("client_disconnected", Boolean, nullable=False),
    # Micro-credits charged (the ledger row's amount, negated).
    Column("cost", BigInteger, nullable=False, default=0),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("ix_usage_records_account_started", "account_id", "started_at"),
)

# One row per account metering has seen: the running balance and the sum of open holds.
balances = Table(
    "balances",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("balance", BigInteger, nullable=False),
    Column("held", BigInteger, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Append-only: every change of a balance, keyed by the request it charges or the
# idempotency key of the admin operation (or initial grant) that made it.
ledger = Table(
    "ledger",
    metadata,
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("account_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("request_id", String(64), nullable=True, unique=True),
    Column("idempotency_key", String(128), nullable=True, unique=True),
    Column("reason", String(512), nullable=False, default=""),
    Column("actor", String(128), nullable=False, default=""),
    Column("key_id", String(64), nullable=False, default=""),
    Column("model", String(128), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_ledger_account_id", "account_id", "id"),
)
