"""Accounts and keys in SQL. Keys are found by their keyed hash only."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bytespike_auth.schema import accounts, api_keys
from bytespike_common import keys
from bytespike_common.ids import new_id

ACTIVE, REVOKED, DISABLED = "active", "revoked", "disabled"


class Conflict(Exception):
    """A unique name is taken."""


class Missing(Exception):
    """No such account or key."""


class Refused(Exception):
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
    status: str
    allowed_models: list[str]
    limits: KeyLimits
    created_at: dt.datetime
    expires_at: dt.datetime | None
    key_hash: str = field(repr=False)


@dataclass(frozen=True)
class PrincipalRecord:
    account: AccountRecord
    key: KeyRecord


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _account(row: Any) -> AccountRecord:
    return AccountRecord(
        id=row.id,
        name=row.name,
        status=row.status,
        default_group=row.default_group,
        allowed_models=list(row.allowed_models or []),
        created_at=_aware(row.created_at) or _now(),
    )


def _key(row: Any) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        group=row.group_name,
        prefix=row.prefix,
        status=row.status,
        allowed_models=list(row.allowed_models or []),
        limits=KeyLimits(rpm=row.rpm, tpm=row.tpm, concurrency=row.concurrency),
        created_at=_aware(row.created_at) or _now(),
        expires_at=_aware(row.expires_at),
        key_hash=row.key_hash,
    )


class KeyStore:
    def __init__(self, engine: AsyncEngine, secret: bytes) -> None:
        self._engine = engine
        self._secret = secret

    async def create_account(
        self, name: str, default_group: str = "default", allowed_models: list[str] | None = None
    ) -> AccountRecord:
        values = {
            "id": new_id("acct"),
            "name": name,
            "status": ACTIVE,
            "default_group": default_group or "default",
            "allowed_models": list(allowed_models or []),
            "created_at": _now(),
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(accounts.insert().values(**values))
        except IntegrityError as exc:
            raise Conflict(f"account {name!r} already exists") from exc
        return AccountRecord(**values)

    async def find_account(self, id_or_name: str) -> AccountRecord:
        query = accounts.select().where(
            sa.or_(accounts.c.id == id_or_name, accounts.c.name == id_or_name)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise Missing(f"no account {id_or_name!r}")
        return _account(row)

    async def create_key(
        self,
        account: str,
        name: str,
        *,
        group: str = "",
        allowed_models: list[str] | None = None,
        limits: KeyLimits = KeyLimits(),
        expires_at: dt.datetime | None = None,
    ) -> tuple[KeyRecord, str]:
        """Returns the record and the plaintext, which is not kept anywhere."""
        owner = await self.find_account(account)
        plaintext = keys.generate_key()
        values = {
            "id": new_id("key"),
            "account_id": owner.id,
            "name": name,
            "key_hash": keys.hash_key(self._secret, plaintext),
            "prefix": keys.display_prefix(plaintext),
            "group_name": group or owner.default_group,
            "allowed_models": list(allowed_models or []),
            "rpm": limits.rpm,
            "tpm": limits.tpm,
            "concurrency": limits.concurrency,
            "status": ACTIVE,
            "created_at": _now(),
            "expires_at": expires_at,
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(api_keys.insert().values(**values))
        except IntegrityError as exc:
            raise Conflict(f"key {name!r} already exists in account {owner.name!r}") from exc
        async with self._engine.connect() as conn:
            row = (await conn.execute(api_keys.select().where(api_keys.c.id == values["id"]))).one()
        return _key(row), plaintext

    async def revoke_key(self, key_id: str) -> KeyRecord:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id)
                .values(status=REVOKED, revoked_at=_now())
            )
            if result.rowcount == 0:
                raise Missing(f"no key {key_id!r}")
            row = (await conn.execute(api_keys.select().where(api_keys.c.id == key_id))).one()
        return _key(row)

    async def principal(self, key_hash: str) -> PrincipalRecord:
        """Looks a key up by its hash (an indexed equality: no plaintext comparison happens)."""
        query = (
            sa.select(api_keys, accounts.c.name.label("account_name"))
            .join(accounts, accounts.c.id == api_keys.c.account_id)
            .where(api_keys.c.key_hash == key_hash)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                raise Missing("unknown key")
            account_row = (
                await conn.execute(accounts.select().where(accounts.c.id == row.account_id))
            ).one()
        key, account = _key(row), _account(account_row)
        if key.status != ACTIVE:
            raise Refused("key revoked")
        if key.expires_at is not None and key.expires_at <= _now():
            raise Refused("key expired")
        if account.status != ACTIVE:
            raise Refused("account disabled")
        return PrincipalRecord(account=account, key=key)
