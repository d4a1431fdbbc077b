"""The auth tables (SQLAlchemy Core). Changes go through a new Alembic migration."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)

metadata = MetaData()

# A key name is unique among its account's *live* keys: revoked keys and keys being rotated
# out (replaced_by set) free their name, so rotation can hand the name to the new key.
LIVE_KEY_CONDITION = "status = 'active' AND replaced_by IS NULL"

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("status", String(16), nullable=False, default="active"),
    Column("default_group", String(128), nullable=False, default="default"),
    # Operator cap; empty list = no cap.
    Column("allowed_models", JSON, nullable=False, default=list),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    # HMAC-SHA256(secret, key), hex. The plaintext is never stored.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(32), nullable=False),
    Column("group_name", String(128), nullable=False),
    Column("allowed_models", JSON, nullable=False, default=list),
    Column("rpm", Integer, nullable=False, default=0),
    Column("tpm", Integer, nullable=False, default=0),
    Column("concurrency", Integer, nullable=False, default=0),
    # "active" or "revoked"; expiry and a passed revoke_at are read from the timestamps.
    Column("status", String(16), nullable=False, default="active"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # Scheduled revocation (rotation grace): stored, so it fires across restarts.
    Column("revoke_at", DateTime(timezone=True), nullable=True, index=True),
    Column("replaced_by", String(64), nullable=True),
    Column("rotated_from", String(64), nullable=True),
    Index(
        "uq_api_keys_live_name",
        "account_id",
        "name",
        unique=True,
        sqlite_where=text(LIVE_KEY_CONDITION),
        postgresql_where=text(LIVE_KEY_CONDITION),
    ),
)
