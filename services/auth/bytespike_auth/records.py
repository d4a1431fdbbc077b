"""What the key store hands out: account and key records, pages, and the store's errors.

Errors (each maps to one gRPC code in the servicer, and to one HTTP status at the admin API):

    StoreError
    ├── Invalid    INVALID_ARGUMENT     malformed input (names, patterns, limits, status)
    ├── Missing    NOT_FOUND            no such account, or no such key *in that account*
    ├── Conflict   ALREADY_EXISTS       a unique name is taken
    ├── Stale      FAILED_PRECONDITION  the key cannot be rotated (revoked, expired, rotated)
    └── Refused    UNAUTHENTICATED      the key may not be used (revoked, expired, disabled)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

ACTIVE, REVOKED, EXPIRED, DISABLED = "active", "revoked", "expired", "disabled"
ACCOUNT_STATUSES = (ACTIVE, DISABLED)
KEY_STATUSES = (ACTIVE, EXPIRED, REVOKED)

T = TypeVar("T")


class StoreError(Exception):
    """Base of the store's refusals."""


class Invalid(StoreError):
    """The input is malformed."""


class Conflict(StoreError):
    """A unique name is taken."""


class Missing(StoreError):
    """No such account or key (a key of another account is missing too)."""


class Stale(StoreError):
    """The key is in a state the operation does not apply to."""


class Refused(StoreError):
    """The key exists but may not be used (revoked, expired, account disabled)."""


@dataclass(frozen=True)
class KeyLimits:
    rpm: int = 0
    tpm: int = 0
    concurrency: int = 0


@dataclass(frozen=True)
class AccountRecord:
    id: str
    name: str
    status: str
    default_group: str
    allowed_models: list[str]
    created_at: dt.datetime


@dataclass(frozen=True)
class KeyRecord:
    id: str
    account_id: str
    name: str
    group: str
    prefix: str
    # As the caller sees it: active, expired or revoked (a passed revoke_at is revoked).
    status: str
    allowed_models: list[str]
    limits: KeyLimits
    created_at: dt.datetime
    expires_at: dt.datetime | None
    key_hash: str = field(repr=False)
    revoke_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    replaced_by: str = ""
    rotated_from: str = ""


@dataclass(frozen=True)
class PrincipalRecord:
    account: AccountRecord
    key: KeyRecord


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


@dataclass(frozen=True)
class AccountChange:
    """An updated account and the key hashes whose cached principals are now stale."""

    account: AccountRecord
    stale_key_hashes: list[str]


@dataclass(frozen=True)
class Rotation:
    key: KeyRecord
    plaintext: str = field(repr=False)
    previous: KeyRecord


def aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def account_from_row(row: Any, prefix: str = "") -> AccountRecord:
    """`prefix` reads the account columns of a join, labelled `<prefix><column>`."""
    mapping = row._mapping
    created = aware(mapping[f"{prefix}created_at"])
    assert created is not None
    return AccountRecord(
        id=mapping[f"{prefix}id"],
        name=mapping[f"{prefix}name"],
        status=mapping[f"{prefix}status"],
        default_group=mapping[f"{prefix}default_group"],
        allowed_models=list(mapping[f"{prefix}allowed_models"] or []),
        created_at=created,
    )


def key_status(row: Any, now: dt.datetime) -> str:
    if row.status != ACTIVE:
        return REVOKED
    revoke_at, expires_at = aware(row.revoke_at), aware(row.expires_at)
    if revoke_at is not None and revoke_at <= now:
        return REVOKED
    if expires_at is not None and expires_at <= now:
        return EXPIRED
    return ACTIVE


def key_from_row(row: Any, now: dt.datetime) -> KeyRecord:
    created = aware(row.created_at)
    assert created is not None
    return KeyRecord(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        group=row.group_name,
        prefix=row.prefix,
        status=key_status(row, now),
        allowed_models=list(row.allowed_models or []),
        limits=KeyLimits(rpm=row.rpm, tpm=row.tpm, concurrency=row.concurrency),
        created_at=created,
        expires_at=aware(row.expires_at),
        key_hash=row.key_hash,
        revoke_at=aware(row.revoke_at),
        revoked_at=aware(row.revoked_at),
        replaced_by=row.replaced_by or "",
        rotated_from=row.rotated_from or "",
    )
