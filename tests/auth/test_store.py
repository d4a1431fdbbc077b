"""The key store on SQLite and PostgreSQL: hashing at rest, scoping, rotation, policies."""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from bytespike_auth.records import Conflict, Invalid, KeyLimits, Missing, Refused, Stale
from bytespike_auth.schema import api_keys
from bytespike_auth.server import MIGRATIONS, VERSION_TABLE
from bytespike_auth.store import KeyStore
from bytespike_common import db, keys

SECRET = b"test-secret-0123456789"


class Clock:
    """A settable UTC clock, so grace periods pass without sleeping."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(database_url: str, clock: Clock) -> AsyncIterator[KeyStore]:
    engine = db.create_engine(database_url)
    await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
    try:
        yield KeyStore(engine, SECRET, clock=clock)
    finally:
        await engine.dispose()


def _hash(plaintext: str) -> str:
    return keys.hash_key(SECRET, plaintext)


async def test_key_is_stored_only_as_keyed_hash(store: KeyStore) -> None:
    await store.create_account("acme")
    record, plaintext = await store.create_key("acme", "ci", limits=KeyLimits(rpm=60))
    assert keys.is_well_formed(plaintext)
    assert len(plaintext) >= len("sk-byts-") + 43  # 32 random bytes, url-safe
    assert record.prefix == plaintext[:12]
    engine = store._engine
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(api_keys))).mappings().all()
    stored = " ".join(str(v) for row in rows for v in row.values())
    assert plaintext not in stored
    assert plaintext[12:] not in stored
    assert hmac.compare_digest(rows[0]["key_hash"], _hash(plaintext))


async def test_principal_resolves_account_group_and_limits(store: KeyStore) -> None:
    await store.create_account("acme", default_group="claude-default", allowed_models=["claude-*"])
    record, plaintext = await store.create_key(
        "acme", "ci", allowed_models=["claude-haiku-4-5"], limits=KeyLimits(10, 1000, 2)
    )
    principal = await store.principal(_hash(plaintext))
    assert principal.key.id == record.id
    assert principal.key.group == "claude-default"
    assert principal.key.limits == KeyLimits(10, 1000, 2)
    assert principal.account.name == "acme"
    assert principal.account.allowed_models == ["claude-*"]
    assert principal.key.allowed_models == ["claude-haiku-4-5"]


async def test_unknown_revoked_and_expired_keys_are_refused(store: KeyStore, clock: Clock) -> None:
    await store.create_account("acme")
    with pytest.raises(Missing):
        await store.principal(_hash(keys.generate_key()))
    record, plaintext = await store.create_key("acme", "revoked")
    revoked, changed = await store.revoke_key("acme", record.id)
    assert changed and revoked.status == "revoked" and revoked.revoked_at == clock.now
    assert (await store.revoke_key("acme", record.id))[1] is False  # idempotent
    with pytest.raises(Refused, match="revoked"):
        await store.principal(_hash(plaintext))
    soon = clock.now + dt.timedelta(seconds=5)
    expiring, expired = await store.create_key("acme", "expiring", expires_at=soon)
    await store.principal(_hash(expired))
    clock.advance(5)
    with pytest.raises(Refused, match="expired"):
        await store.principal(_hash(expired))
    assert (await store.get_key("acme", expiring.id)).status == "expired"


async def test_disabled_account_refuses_its_keys_and_reports_them_stale(
    store: KeyStore,
) -> None:
    await store.create_account("acme")
    first, plaintext = await store.create_key("acme", "a")
    second, _ = await store.create_key("acme", "b")
    gone, _ = await store.create_key("acme", "c")
    await store.revoke_key("acme", gone.id)
    change = await store.update_account("acme", status="disabled")
    assert change.account.status == "disabled"
    assert sorted(change.stale_key_hashes) == sorted([first.key_hash, second.key_hash])
    with pytest.raises(Refused, match="account disabled"):
        await store.principal(_hash(plaintext))
    await store.update_account("acme", status="active")
    assert (await store.principal(_hash(plaintext))).key.id == first.id


async def test_account_policy_update_and_rename(store: KeyStore) -> None:
    created = await store.create_account("acme")
    assert (created.default_group, created.allowed_models) == ("default", [])
    await store.create_account("globex")
    change = await store.update_account(
        created.id, default_group="claude-default", allowed_models=["claude-*", "gpt-5-5"]
    )
    assert change.account.default_group == "claude-default"
    assert change.account.allowed_models == ["claude-*", "gpt-5-5"]
    assert (await store.create_key("acme", "k"))[0].group == "claude-default"
    renamed = await store.update_account("acme", name="acme-corp")
    assert renamed.account.id == created.id and renamed.account.name == "acme-corp"
    with pytest.raises(Conflict):
        await store.update_account("acme-corp", name="globex")
    with pytest.raises(Invalid):
        await store.update_account("acme-corp", status="deleted")
    with pytest.raises(Missing):
        await store.update_account("nobody", status="disabled")
    nothing = await store.update_account("acme-corp")
    assert nothing.stale_key_hashes == []


async def test_keys_of_one_account_are_invisible_through_another(store: KeyStore) -> None:
    await store.create_account("acme")
    await store.create_account("globex")
    acme_key, plaintext = await store.create_key("acme", "secret")
    await store.create_key("globex", "own")
    with pytest.raises(Missing) as missing:
        await store.get_key("globex", acme_key.id)
    assert "acme" not in str(missing.value)
    with pytest.raises(Missing):
        await store.revoke_key("globex", acme_key.id)
    with pytest.raises(Missing):
        await store.rotate_key("globex", acme_key.id)
    listed = await store.list_keys("globex")
    assert [k.name for k in listed.items] == ["own"]
    # acme's key is untouched by all of it.
    assert (await store.principal(_hash(plaintext))).key.status == "active"


async def test_rotation_with_grace_revokes_the_old_key_when_it_passes(
    store: KeyStore, clock: Clock
) -> None:
    await store.create_account("acme")
    old, old_plaintext = await store.create_key(
        "acme", "ci", group="claude-default", allowed_models=["claude-*"], limits=KeyLimits(7)
    )
    rotation = await store.rotate_key("acme", old.id, grace=dt.timedelta(minutes=10))
    new = rotation.key
    assert rotation.plaintext != old_plaintext and keys.is_well_formed(rotation.plaintext)
    assert (new.name, new.group, new.allowed_models, new.limits) == (
        "ci",
        "claude-default",
        ["claude-*"],
        KeyLimits(7),
    )
    assert new.rotated_from == old.id
    assert rotation.previous.replaced_by == new.id
    assert rotation.previous.revoke_at == clock.now + dt.timedelta(minutes=10)
    # Both work during the grace period; nothing is due yet.
    await store.principal(_hash(old_plaintext))
    await store.principal(_hash(rotation.plaintext))
    assert await store.apply_due_revocations() == []
    with pytest.raises(Stale):
        await store.rotate_key("acme", old.id)

    clock.advance(600)
    # Authenticate refuses at once, before any sweep has run...
    with pytest.raises(Refused, match="revoked"):
        await store.principal(_hash(old_plaintext))
    # ...and the sweep makes it durable exactly once.
    assert await store.apply_due_revocations() == [old.key_hash]
    assert await store.apply_due_revocations() == []
    previous = await store.get_key("acme", old.id)
    assert previous.status == "revoked" and previous.revoked_at == previous.revoke_at
    await store.principal(_hash(rotation.plaintext))


async def test_rotation_without_grace_and_of_inactive_keys(store: KeyStore) -> None:
    await store.create_account("acme")
    old, plaintext = await store.create_key("acme", "ci")
    rotation = await store.rotate_key("acme", old.id)
    assert rotation.previous.status == "revoked" and rotation.previous.revoke_at is None
    with pytest.raises(Refused):
        await store.principal(_hash(plaintext))
    with pytest.raises(Stale):
        await store.rotate_key("acme", old.id)
    with pytest.raises(Invalid):
        await store.rotate_key("acme", rotation.key.id, grace=dt.timedelta(seconds=-1))


async def test_names_are_unique_among_live_keys_only(store: KeyStore) -> None:
    await store.create_account("acme")
    with pytest.raises(Conflict):
        await store.create_account("acme")
    first, _ = await store.create_key("acme", "ci")
    with pytest.raises(Conflict):
        await store.create_key("acme", "ci")
    await store.create_account("globex")
    await store.create_key("globex", "ci")  # names are per account
    await store.revoke_key("acme", first.id)
    reused, _ = await store.create_key("acme", "ci")
    assert reused.id != first.id
    with pytest.raises(Missing):
        await store.create_key("nobody", "ci")
    generated, _ = await store.create_key("acme")
    assert generated.name.startswith("key-")


async def test_input_is_validated(store: KeyStore) -> None:
    with pytest.raises(Invalid):
        await store.create_account("")
    with pytest.raises(Invalid):
        await store.create_account("x" * 129)
    with pytest.raises(Invalid):
        await store.create_account("bad\nname")
    await store.create_account("acme")
    with pytest.raises(Invalid):
        await store.create_key("acme", "k", allowed_models=["gpt 5"])
    with pytest.raises(Invalid):
        await store.create_key("acme", "k", limits=KeyLimits(rpm=-1))
    with pytest.raises(Invalid):
        await store.list_keys("acme", status="weird")
    with pytest.raises(Invalid):
        await store.list_accounts(limit=5000)


async def test_lists_page_and_filter(store: KeyStore, clock: Clock) -> None:
    for name in ("a", "b", "c"):
        await store.create_account(name)
    await store.update_account("b", status="disabled")
    first = await store.list_accounts(limit=2)
    assert [a.name for a in first.items] == ["a", "b"] and first.has_more
    rest = await store.list_accounts(limit=2, after=first.items[-1].id)
    assert [a.name for a in rest.items] == ["c"] and not rest.has_more
    assert [a.name for a in (await store.list_accounts(status="disabled")).items] == ["b"]

    live, _ = await store.create_key("a", "live")
    dead, _ = await store.create_key("a", "dead")
    await store.revoke_key("a", dead.id)
    await store.create_key("a", "old", expires_at=clock.now + dt.timedelta(seconds=1))
    graced, _ = await store.create_key("a", "graced")
    await store.rotate_key("a", graced.id, grace=dt.timedelta(seconds=1))
    clock.advance(2)

    async def names(status: str) -> list[str]:
        return [k.name for k in (await store.list_keys("a", status=status)).items]

    assert await names("active") == ["live", "graced"]
    assert await names("expired") == ["old"]
    assert await names("revoked") == ["dead", "graced"]
    assert len((await store.list_keys("a")).items) == 5
    page = await store.list_keys("a", limit=2)
    assert page.has_more and page.items[0].id == live.id


async def test_migrations_are_idempotent(database_url: str) -> None:
    engine = db.create_engine(database_url)
    try:
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
        async with engine.connect() as conn:
            version = await conn.scalar(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
        assert version == "0002"
    finally:
        await engine.dispose()


async def test_upgrade_from_0001_keeps_existing_keys(database_url: str) -> None:
    """A database created by the first release upgrades in place: its keys keep working."""
    engine = db.create_engine(database_url)
    try:
        await _migrate_to(engine, "0001")
        old_store = KeyStore(engine, SECRET)
        async with engine.begin() as conn:
            now = dt.datetime.now(dt.UTC)
            await conn.execute(
                sa.text(
                    "INSERT INTO accounts (id, name, status, default_group, allowed_models,"
                    " created_at) VALUES ('acct_1', 'acme', 'active', 'default', '[]', :now)"
                ),
                {"now": now},
            )
            plaintext = keys.generate_key()
            await conn.execute(
                sa.text(
                    "INSERT INTO api_keys (id, account_id, name, key_hash, prefix, group_name,"
                    " allowed_models, rpm, tpm, concurrency, status, created_at)"
                    " VALUES ('key_1', 'acct_1', 'ci', :hash, 'sk-byts-xxxx', 'default', '[]',"
                    " 0, 0, 0, 'active', :now)"
                ),
                {"hash": _hash(plaintext), "now": now},
            )
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
        assert (await old_store.principal(_hash(plaintext))).key.id == "key_1"
        rotation = await old_store.rotate_key("acme", "key_1")
        assert rotation.key.name == "ci"
    finally:
        await engine.dispose()


async def _migrate_to(engine: AsyncEngine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["version_table"] = VERSION_TABLE

    def upgrade(connection: sa.Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(upgrade)


async def test_lookup_is_an_indexed_hash_equality_never_a_plaintext_compare(
    store: KeyStore,
) -> None:
    """Authenticate sends SQL `key_hash = :hash` (a unique index lookup); the plaintext never
    reaches the database and no secret is compared in Python, so no timing depends on it."""
    await store.create_account("acme")
    _, plaintext = await store.create_key("acme", "ci")
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append((statement, params))

    engine = store._engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        await store.principal(_hash(plaintext))
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    [(statement, params)] = statements
    assert "api_keys.key_hash = " in statement
    assert _hash(plaintext) in str(params) and plaintext not in str(params)
    async with store._engine.connect() as conn:
        indexes = await conn.run_sync(lambda c: sa.inspect(c).get_indexes("api_keys"))
        uniques = await conn.run_sync(lambda c: sa.inspect(c).get_unique_constraints("api_keys"))
    unique_columns: list[list[str | None]] = [i["column_names"] for i in indexes if i["unique"]]
    unique_columns += [list(u["column_names"]) for u in uniques]
    assert ["key_hash"] in unique_columns
