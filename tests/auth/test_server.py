"""The auth service over real gRPC, with a real NATS for revocation pushes."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import nats
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NATS

from bytespike.auth.v1 import auth_pb2, auth_pb2_grpc
from bytespike_auth.server import VERSION_TABLE, create_server
from bytespike_auth.settings import Settings
from bytespike_common import keys
from bytespike_common.messaging import KEY_REVOKED_SUBJECT

SECRET = "test-secret-0123456789"


@pytest.fixture
async def channel(sqlite_url: str, nats_url: str) -> AsyncIterator[grpc.aio.Channel]:
    settings = Settings(
        port=0,
        database_url=sqlite_url,
        nats_url=nats_url,
        key_hash_secret=SECRET,
        shutdown_grace=0.5,
        revocation_sweep_interval=0.1,
    )
    async with (
        create_server(settings) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield channel


class Revocations:
    """Collects what auth publishes on the revocation subject."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    async def next(self, timeout: float = 2.0) -> str:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def take(self, count: int, timeout: float = 2.0) -> set[str]:
        return {await self.next(timeout) for _ in range(count)}


@pytest.fixture
async def revocations(nats_url: str) -> AsyncIterator[Revocations]:
    nc = await nats.connect(nats_url)
    collector = Revocations(nc)

    async def on_message(msg: nats.aio.msg.Msg) -> None:
        await collector.queue.put(msg.data.decode())

    await nc.subscribe(KEY_REVOKED_SUBJECT, cb=on_message)
    await nc.flush()
    yield collector
    await nc.close()


def _admin(channel: grpc.aio.Channel) -> auth_pb2_grpc.AuthAdminServiceStub:
    return auth_pb2_grpc.AuthAdminServiceStub(channel)


def _hash(plaintext: str) -> str:
    return keys.hash_key(SECRET.encode(), plaintext)


async def _authenticate(channel: grpc.aio.Channel, plaintext: str) -> auth_pb2.Principal:
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    reply = await auth.Authenticate(auth_pb2.AuthenticateRequest(key_hash=_hash(plaintext)))
    return reply.principal


async def _refused(channel: grpc.aio.Channel, plaintext: str) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _authenticate(channel, plaintext)
    return refused.value.code()


async def test_health_is_serving_with_dependencies_up(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "bytespike.auth.v1.AuthService", "bytespike.auth.v1.AuthAdminService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_authenticate_and_revoke_pushes_invalidation(
    channel: grpc.aio.Channel, revocations: Revocations
) -> None:
    admin = _admin(channel)
    await admin.CreateAccount(auth_pb2.CreateAccountRequest(name="acme"))
    created = await admin.CreateKey(
        auth_pb2.CreateKeyRequest(account="acme", name="ci", limits=auth_pb2.Limits(rpm=5))
    )
    principal = await _authenticate(channel, created.plaintext)
    assert principal.key_id == created.key.id
    assert principal.account_name == "acme"
    assert principal.group == "default"
    assert principal.limits.rpm == 5
    assert not principal.HasField("revoke_at")

    revoked = await admin.RevokeKey(
        auth_pb2.RevokeKeyRequest(account="acme", key_id=created.key.id)
    )
    assert revoked.status == "revoked" and revoked.HasField("revoked_at")
    assert await revocations.next() == _hash(created.plaintext)
    assert await _refused(channel, created.plaintext) == grpc.StatusCode.UNAUTHENTICATED


async def test_rotation_grace_fires_from_the_sweep_and_is_pushed(
    channel: grpc.aio.Channel, revocations: Revocations
) -> None:
    admin = _admin(channel)
    await admin.CreateAccount(auth_pb2.CreateAccountRequest(name="acme"))
    old = await admin.CreateKey(auth_pb2.CreateKeyRequest(account="acme", name="ci"))
    rotated = await admin.RotateKey(
        auth_pb2.RotateKeyRequest(account="acme", key_id=old.key.id, grace_seconds=1)
    )
    assert rotated.key.name == "ci" and rotated.key.rotated_from == old.key.id
    assert rotated.previous.replaced_by == rotated.key.id
    assert rotated.previous.HasField("revoke_at")
    # The rotation itself invalidates the edges' cached copy of the old key at once, so they
    # re-fetch it with its revoke_at (the sweep's push below is the second one).
    assert await revocations.next(timeout=1) == _hash(old.plaintext)
    # During the grace period both keys authenticate; the old principal carries revoke_at so
    # an edge can stop serving it on time from its cache.
    old_principal = await _authenticate(channel, old.plaintext)
    assert old_principal.revoke_at == rotated.previous.revoke_at
    await _authenticate(channel, rotated.plaintext)
    assert await revocations.next(timeout=3) == _hash(old.plaintext)
    assert await _refused(channel, old.plaintext) == grpc.StatusCode.UNAUTHENTICATED
    shown = await admin.GetKey(auth_pb2.GetKeyRequest(account="acme", key_id=old.key.id))
    assert shown.status == "revoked"
    await _authenticate(channel, rotated.plaintext)


async def test_rotation_without_grace_is_pushed_at_once(
    channel: grpc.aio.Channel, revocations: Revocations
) -> None:
    admin = _admin(channel)
    await admin.CreateAccount(auth_pb2.CreateAccountRequest(name="acme"))
    old = await admin.CreateKey(auth_pb2.CreateKeyRequest(account="acme"))
    await admin.RotateKey(auth_pb2.RotateKeyRequest(account="acme", key_id=old.key.id))
    assert await revocations.next() == _hash(old.plaintext)
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await admin.RotateKey(auth_pb2.RotateKeyRequest(account="acme", key_id=old.key.id))
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_disabling_an_account_invalidates_every_live_key(
    channel: grpc.aio.Channel, revocations: Revocations
) -> None:
    admin = _admin(channel)
    await admin.CreateAccount(auth_pb2.CreateAccountRequest(name="acme"))
    made = [
        await admin.CreateKey(auth_pb2.CreateKeyRequest(account="acme", name=f"k{i}"))
        for i in range(3)
    ]
    disabled = await admin.UpdateAccount(
        auth_pb2.UpdateAccountRequest(account="acme", status="disabled")
    )
    assert disabled.status == "disabled"
    assert await revocations.take(3) == {_hash(k.plaintext) for k in made}
    for key in made:
        assert await _refused(channel, key.plaintext) == grpc.StatusCode.UNAUTHENTICATED
    capped = await admin.UpdateAccount(
        auth_pb2.UpdateAccountRequest(
            account="acme", status="active", allowed_models=auth_pb2.ModelList(models=["gpt-*"])
        )
    )
    assert list(capped.allowed_models) == ["gpt-*"]
    assert await revocations.take(3) == {_hash(k.plaintext) for k in made}
    principal = await _authenticate(channel, made[0].plaintext)
    assert list(principal.account_allowed_models) == ["gpt-*"]
    cleared = await admin.UpdateAccount(
        auth_pb2.UpdateAccountRequest(account="acme", allowed_models=auth_pb2.ModelList())
    )
    assert list(cleared.allowed_models) == []


async def test_lists_and_lookups(channel: grpc.aio.Channel) -> None:
    admin = _admin(channel)
    acme = await admin.CreateAccount(
        auth_pb2.CreateAccountRequest(name="acme", default_group="claude-default")
    )
    await admin.CreateAccount(auth_pb2.CreateAccountRequest(name="globex"))
    assert (await admin.GetAccount(auth_pb2.GetAccountRequest(account=acme.id))).name == "acme"
    accounts = await admin.ListAccounts(auth_pb2.ListAccountsRequest(limit=1))
    assert [a.name for a in accounts.accounts] == ["acme"] and accounts.has_more
    key = await admin.CreateKey(auth_pb2.CreateKeyRequest(account="acme", name="k"))
    assert key.key.group == "claude-default"
    listed = await admin.ListKeys(auth_pb2.ListKeysRequest(account="acme"))
    assert [k.id for k in listed.keys] == [key.key.id]
    assert not any(k.prefix != key.key.prefix for k in listed.keys)
    other = await admin.ListKeys(auth_pb2.ListKeysRequest(account="globex"))
    assert list(other.keys) == []


async def test_admin_errors_map_to_grpc_codes(channel: grpc.aio.Channel) -> None:
    admin = _admin(channel)
    await admin.CreateAccount(auth_pb2.CreateAccountRequest(name="dup"))
    await admin.CreateAccount(auth_pb2.CreateAccountRequest(name="other"))
    theirs = await admin.CreateKey(auth_pb2.CreateKeyRequest(account="other", name="k"))
    past = Timestamp()
    past.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    cases = [
        (admin.CreateAccount(auth_pb2.CreateAccountRequest(name="dup")), "ALREADY_EXISTS"),
        (admin.CreateAccount(auth_pb2.CreateAccountRequest()), "INVALID_ARGUMENT"),
        (admin.CreateKey(auth_pb2.CreateKeyRequest(account="ghost")), "NOT_FOUND"),
        (
            admin.CreateKey(auth_pb2.CreateKeyRequest(account="dup", expires_at=past)),
            "INVALID_ARGUMENT",
        ),
        (admin.RevokeKey(auth_pb2.RevokeKeyRequest(key_id=theirs.key.id)), "INVALID_ARGUMENT"),
        (
            admin.RevokeKey(auth_pb2.RevokeKeyRequest(account="dup", key_id=theirs.key.id)),
            "NOT_FOUND",
        ),
        (admin.GetKey(auth_pb2.GetKeyRequest(account="dup", key_id=theirs.key.id)), "NOT_FOUND"),
        (
            admin.RotateKey(
                auth_pb2.RotateKeyRequest(account="other", key_id=theirs.key.id, grace_seconds=-1)
            ),
            "INVALID_ARGUMENT",
        ),
        (admin.ListKeys(auth_pb2.ListKeysRequest(account="dup", status="x")), "INVALID_ARGUMENT"),
        (
            auth_pb2_grpc.AuthServiceStub(channel).Authenticate(
                auth_pb2.AuthenticateRequest(key_hash="short")
            ),
            "INVALID_ARGUMENT",
        ),
    ]
    for call, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call
        assert failed.value.code().name == code, failed.value.details()
    # The key of "other" survived every attempt made through "dup".
    shown = await admin.GetKey(auth_pb2.GetKeyRequest(account="other", key_id=theirs.key.id))
    assert shown.status == "active"


def test_migrate_command_applies_the_schema_and_exits(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYTESPIKE_")}
    env["BYTESPIKE_AUTH_DATABASE_URL"] = f"sqlite:///{tmp_path / 'auth.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "bytespike_auth", "migrate"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    with sqlite3.connect(tmp_path / "auth.db") as conn:
        (version,) = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
    assert version == "0002"
