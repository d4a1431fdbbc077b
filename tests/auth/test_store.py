from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from bytespike_auth.schema import api_keys
from bytespike_auth.server import MIGRATIONS, VERSION_TABLE
from bytespike_auth.store import Conflict, KeyLimits, KeyStore, Missing, Refused
from bytespike_common import db, keys

SECRET = b"test-secret-0123456789"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[KeyStore]:
    engine = db.create_engine(database_url)
    await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
    try:
        yield KeyStore(engine, SECRET)
    finally:
        await engine.dispose()


async def test_key_is_stored_only_as_keyed_hash(store: KeyStore) -> None:
    await store.create_account("acme")
    record, plaintext = await store.create_key("acme", "ci", limits=KeyLimits(rpm=60))
    assert keys.is_well_formed(plaintext)
    assert record.prefix == plaintext[:12]
    engine = store._engine
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(api_keys))).mappings().all()
    stored = " ".join(str(v) for row in rows for v in row.values())
    assert plaintext not in stored
    assert plaintext[12:] not in stored
    assert hmac.compare_digest(rows[0]["key_hash"], keys.hash_key(SECRET, plaintext))


async def test_principal_resolves_account_group_and_limits(store: KeyStore) -> None:
    await store.create_account("acme", default_group="claude-default", allowed_models=["claude-*"])
    record, plaintext = await store.create_key(
        "acme", "ci", allowed_models=["claude-haiku-4-5"], limits=KeyLimits(10, 1000, 2)
    )
    principal = await store.principal(keys.hash_key(SECRET, plaintext))
    assert principal.key.id == record.id
    assert principal.key.group == "claude-default"
    assert principal.key.limits == KeyLimits(10, 1000, 2)
    assert principal.account.allowed_models == ["claude-*"]
    assert principal.key.allowed_models == ["claude-haiku-4-5"]


async def test_unknown_revoked_and_expired_keys_are_refused(store: KeyStore) -> None:
    await store.create_account("acme")
    with pytest.raises(Missing):
        await store.principal(keys.hash_key(SECRET, keys.generate_key()))
    record, plaintext = await store.create_key("acme", "revoked")
    await store.revoke_key(record.id)
    with pytest.raises(Refused, match="revoked"):
        await store.principal(keys.hash_key(SECRET, plaintext))
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    _, expired = await store.create_key("acme", "expired", expires_at=past)
    with pytest.raises(Refused, match="expired"):
        await store.principal(keys.hash_key(SECRET, expired))


async def test_duplicate_names_conflict(store: KeyStore) -> None:
    await store.create_account("acme")
    with pytest.raises(Conflict):
        await store.create_account("acme")
    await store.create_key("acme", "ci")
    with pytest.raises(Conflict):
        await store.create_key("acme", "ci")
    with pytest.raises(Missing):
        await store.create_key("nobody", "ci")


async def test_migrations_are_idempotent(database_url: str) -> None:
    engine = db.create_engine(database_url)
    try:
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
        async with engine.connect() as conn:
            version = await conn.scalar(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
        assert version == "0001"
    finally:
        await engine.dispose()
