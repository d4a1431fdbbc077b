"""Accounts and keys in SQL. Keys are found by their keyed hash only.

Every key operation is scoped to an account: a key id that belongs to another account is
`Missing`, exactly like one that does not exist, so no caller can reach or probe a key
through the wrong account.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bytespike_auth import validation
from bytespike_auth.records import (
    ACCOUNT_STATUSES,
    ACTIVE,
    EXPIRED,
    KEY_STATUSES,
    REVOKED,
    AccountChange,
    AccountRecord,
    Conflict,
    Invalid,
    KeyLimits,
    KeyRecord,
    Missing,
    Page,
    PrincipalRecord,
    Refused,
    Rotation,
    Stale,
    account_from_row,
    key_from_row,
)
from bytespike_auth.schema import accounts, api_keys
from bytespike_common import keys
from bytespike_common.ids import new_id

Clock = Callable[[], dt.datetime]
_ACCOUNT_LABEL = "acct_"
# Rotation defaults to the old key's expiry; a sentinel tells "not given" from "no expiry".
KEEP: Any = object()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_status_filter(status: str, now: dt.datetime) -> sa.ColumnElement[bool]:
    revoke_passed = sa.and_(api_keys.c.revoke_at.is_not(None), api_keys.c.revoke_at <= now)
    expired = sa.and_(api_keys.c.expires_at.is_not(None), api_keys.c.expires_at <= now)
    live = sa.and_(api_keys.c.status == ACTIVE, sa.not_(revoke_passed))
    if status == REVOKED:
        return sa.not_(live)
    if status == EXPIRED:
        return sa.and_(live, expired)
    return sa.and_(live, sa.not_(expired))


class KeyStore:
    def __init__(self, engine: AsyncEngine, secret: bytes, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._secret = secret
        self._clock = clock

    # -- accounts ---------------------------------------------------------------------------

    async def create_account(
        self, name: str, default_group: str = "default", allowed_models: list[str] | None = None
    ) -> AccountRecord:
        record = AccountRecord(
            id=new_id("acct"),
            name=validation.account_name(name),
            status=ACTIVE,
            default_group=validation.name(default_group or "default", "default_group"),
            allowed_models=validation.patterns(allowed_models or []),
            created_at=self._clock(),
        )
        try:
            async with self._engine.begin() as conn:
                await conn.execute(accounts.insert().values(**dataclasses.asdict(record)))
        except IntegrityError as exc:
            raise Conflict(f"account {record.name!r} already exists") from exc
        return record

    async def find_account(self, id_or_name: str) -> AccountRecord:
        async with self._engine.connect() as conn:
            return await self._find_account(conn, id_or_name)

    async def _find_account(self, conn: AsyncConnection, id_or_name: str) -> AccountRecord:
        # An id wins over a name that happens to equal it.
        query = (
            accounts.select()
            .where(sa.or_(accounts.c.id == id_or_name, accounts.c.name == id_or_name))
            .order_by(sa.case((accounts.c.id == id_or_name, 0), else_=1))
            .limit(1)
        )
        row = (await conn.execute(query)).first()
        if row is None:
            raise Missing(f"no account {id_or_name!r}")
        return account_from_row(row)

    async def list_accounts(
        self, status: str = "", limit: int = 0, after: str = ""
    ) -> Page[AccountRecord]:
        size = validation.page_size(limit)
        query = accounts.select().order_by(accounts.c.id).limit(size + 1)
        if status:
            query = query.where(
                accounts.c.status == validation.choice(status, ACCOUNT_STATUSES, "status")
            )
        if after:
            query = query.where(accounts.c.id > after)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return Page([account_from_row(r) for r in rows[:size]], has_more=len(rows) > size)

    async def update_account(
        self,
        id_or_name: str,
        *,
        name: str | None = None,
        default_group: str | None = None,
        allowed_models: list[str] | None = None,
        status: str | None = None,
    ) -> AccountChange:
        """Any change can alter cached principals (name, cap, status): all live keys go stale."""
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = validation.account_name(name)
        if default_group is not None:
            values["default_group"] = validation.name(default_group, "default_group")
        if allowed_models is not None:
            values["allowed_models"] = validation.patterns(allowed_models)
        if status is not None:
            values["status"] = validation.choice(status, ACCOUNT_STATUSES, "status")
        try:
            async with self._engine.begin() as conn:
                owner = await self._find_account(conn, id_or_name)
                if values:
                    await conn.execute(
                        accounts.update().where(accounts.c.id == owner.id).values(**values)
                    )
                row = (await conn.execute(accounts.select().where(accounts.c.id == owner.id))).one()
                hashes = await conn.scalars(
                    sa.select(api_keys.c.key_hash).where(
                        api_keys.c.account_id == owner.id, api_keys.c.status == ACTIVE
                    )
                )
                stale = list(hashes) if values else []
        except IntegrityError as exc:
            raise Conflict(f"account {values.get('name')!r} already exists") from exc
        return AccountChange(account_from_row(row), stale)

    # -- keys -------------------------------------------------------------------------------

    def _new_key_values(
        self, owner: AccountRecord, name: str, group: str, allowed: list[str], limits: KeyLimits
    ) -> tuple[dict[str, Any], str]:
        plaintext = keys.generate_key()
        values = {
            "id": new_id("key"),
            "account_id": owner.id,
            "name": validation.name(name or f"key-{secrets.token_hex(4)}"),
            "key_hash": keys.hash_key(self._secret, plaintext),
            "prefix": keys.display_prefix(plaintext),
            "group_name": validation.name(group or owner.default_group, "group"),
            "allowed_models": validation.patterns(allowed),
            "rpm": limits.rpm,
            "tpm": limits.tpm,
            "concurrency": limits.concurrency,
            "status": ACTIVE,
            "created_at": self._clock(),
        }
        return values, plaintext

    async def create_key(
        self,
        account: str,
        name: str = "",
        *,
        group: str = "",
        allowed_models: list[str] | None = None,
        limits: KeyLimits | None = None,
        expires_at: dt.datetime | None = None,
    ) -> tuple[KeyRecord, str]:
        """Returns the record and the plaintext, which is not kept anywhere."""
        owner = await self.find_account(account)
        values, plaintext = self._new_key_values(
            owner, name, group, allowed_models or [], validation.limits(limits or KeyLimits())
        )
        values["expires_at"] = expires_at
        try:
            async with self._engine.begin() as conn:
                await conn.execute(api_keys.insert().values(**values))
                record = await self._key(conn, owner.id, values["id"])
        except IntegrityError as exc:
            raise Conflict(
                f"key {values['name']!r} already exists in account {owner.name!r}"
            ) from exc
        return record, plaintext

    async def _key(self, conn: AsyncConnection, account_id: str, key_id: str) -> KeyRecord:
        query = api_keys.select().where(
            api_keys.c.id == key_id, api_keys.c.account_id == account_id
        )
        row = (await conn.execute(query)).first()
        if row is None:
            # Same answer whether the key is absent or another account's.
            raise Missing(f"no key {key_id!r} in this account")
        return key_from_row(row, self._clock())

    async def get_key(self, account: str, key_id: str) -> KeyRecord:
        async with self._engine.connect() as conn:
            owner = await self._find_account(conn, account)
            return await self._key(conn, owner.id, key_id)

    async def list_keys(
        self, account: str, status: str = "", limit: int = 0, after: str = ""
    ) -> Page[KeyRecord]:
        size = validation.page_size(limit)
        now = self._clock()
        async with self._engine.connect() as conn:
            owner = await self._find_account(conn, account)
            query = (
                api_keys.select()
                .where(api_keys.c.account_id == owner.id)
                .order_by(api_keys.c.id)
                .limit(size + 1)
            )
            if status:
                validation.choice(status, KEY_STATUSES, "status")
                query = query.where(_key_status_filter(status, now))
            if after:
                query = query.where(api_keys.c.id > after)
            rows = (await conn.execute(query)).all()
        return Page([key_from_row(r, now) for r in rows[:size]], has_more=len(rows) > size)

    async def revoke_key(self, account: str, key_id: str) -> tuple[KeyRecord, bool]:
        """Revokes at once; returns the record and whether this call changed it."""
        now = self._clock()
        async with self._engine.begin() as conn:
            owner = await self._find_account(conn, account)
            result = await conn.execute(
                api_keys.update()
                .where(
                    api_keys.c.id == key_id,
                    api_keys.c.account_id == owner.id,
                    api_keys.c.status == ACTIVE,
                )
                .values(status=REVOKED, revoked_at=now)
            )
            record = await self._key(conn, owner.id, key_id)
        return record, result.rowcount == 1

    async def rotate_key(
        self,
        account: str,
        key_id: str,
        *,
        grace: dt.timedelta = dt.timedelta(0),
        expires_at: dt.datetime | None = KEEP,
    ) -> Rotation:
        """A new key with the old one's name and settings; the old one revoked now or at
        `now + grace` (stored, so the revocation survives restarts)."""
        if grace < dt.timedelta(0):
            raise Invalid("grace must not be negative")
        now = self._clock()
        async with self._engine.begin() as conn:
            owner = await self._find_account(conn, account)
            old = await self._key(conn, owner.id, key_id)
            if old.status != ACTIVE or old.replaced_by:
                state = "already rotated" if old.replaced_by else old.status
                raise Stale(f"key {key_id!r} is {state}; only an active key can be rotated")
            values, plaintext = self._new_key_values(
                owner, old.name, old.group, old.allowed_models, old.limits
            )
            values["expires_at"] = old.expires_at if expires_at is KEEP else expires_at
            values["rotated_from"] = old.id
            # The old key first: it frees its name (replaced_by set) for the new one.
            await self._retire(conn, old, values["id"], now, grace)
            await conn.execute(api_keys.insert().values(**values))
            new = await self._key(conn, owner.id, values["id"])
            previous = await self._key(conn, owner.id, old.id)
        return Rotation(key=new, plaintext=plaintext, previous=previous)

    @staticmethod
    async def _retire(
        conn: AsyncConnection, old: KeyRecord, new_id: str, now: dt.datetime, grace: dt.timedelta
    ) -> None:
        ending = {"revoke_at": now + grace} if grace else {"status": REVOKED, "revoked_at": now}
        # Conditional on the old key still being live: of two concurrent rotations, the
        # loser sees rowcount 0.
        result = await conn.execute(
            api_keys.update()
            .where(
                api_keys.c.id == old.id,
                api_keys.c.status == ACTIVE,
                api_keys.c.replaced_by.is_(None),
            )
            .values(replaced_by=new_id, **ending)
        )
        if result.rowcount != 1:
            raise Stale(f"key {old.id!r} was rotated or revoked concurrently")

    async def apply_due_revocations(self) -> list[str]:
        """Turns every passed `revoke_at` into a revocation; returns the hashes this call
        revoked (with several auth replicas, each row is flipped by exactly one)."""
        statement = (
            api_keys.update()
            .where(
                api_keys.c.status == ACTIVE,
                api_keys.c.revoke_at.is_not(None),
                api_keys.c.revoke_at <= self._clock(),
            )
            .values(status=REVOKED, revoked_at=api_keys.c.revoke_at)
            .returning(api_keys.c.key_hash)
        )
        async with self._engine.begin() as conn:
            return list(await conn.scalars(statement))

    # -- the hot path -----------------------------------------------------------------------

    async def principal(self, key_hash: str) -> PrincipalRecord:
        """Looks a key up by its hash: an indexed equality in SQL, so no plaintext and no
        secret is ever compared in Python (nothing here can leak timing about a key)."""
        account_columns = [c.label(f"{_ACCOUNT_LABEL}{c.name}") for c in accounts.c]
        query = (
            sa.select(api_keys, *account_columns)
            .join(accounts, accounts.c.id == api_keys.c.account_id)
            .where(api_keys.c.key_hash == key_hash)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise Missing("unknown key")
        key, account = key_from_row(row, self._clock()), account_from_row(row, _ACCOUNT_LABEL)
        if key.status != ACTIVE:
            raise Refused(f"key {key.status}")
        if account.status != ACTIVE:
            raise Refused("account disabled")
        return PrincipalRecord(account=account, key=key)
