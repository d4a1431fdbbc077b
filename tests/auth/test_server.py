"""The auth service over real gRPC, with a real NATS for revocation pushes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import nats
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bytespike.auth.v1 import auth_pb2, auth_pb2_grpc
from bytespike_auth.server import create_server
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
    )
    async with (
        create_server(settings) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield channel


async def test_health_is_serving_with_dependencies_up(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "bytespike.auth.v1.AuthService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_authenticate_and_revoke_pushes_invalidation(
    channel: grpc.aio.Channel, nats_url: str
) -> None:
    admin = auth_pb2_grpc.AuthAdminServiceStub(channel)
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    await admin.CreateAccount(auth_pb2.CreateAccountRequest(name="acme"))
    created = await admin.CreateKey(
        auth_pb2.CreateKeyRequest(account="acme", name="ci", limits=auth_pb2.Limits(rpm=5))
    )
    key_hash = keys.hash_key(SECRET.encode(), created.plaintext)
    reply = await auth.Authenticate(auth_pb2.AuthenticateRequest(key_hash=key_hash))
    assert reply.principal.key_id == created.key.id
    assert reply.principal.account_name == "acme"
    assert reply.principal.group == "default"
    assert reply.principal.limits.rpm == 5

    nc = await nats.connect(nats_url)
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_message(msg: nats.aio.msg.Msg) -> None:
        await received.put(msg.data)

    await nc.subscribe(KEY_REVOKED_SUBJECT, cb=on_message)
    await nc.flush()
    await admin.RevokeKey(auth_pb2.RevokeKeyRequest(key_id=created.key.id))
    assert await asyncio.wait_for(received.get(), 2) == key_hash.encode()
    await nc.close()

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await auth.Authenticate(auth_pb2.AuthenticateRequest(key_hash=key_hash))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_admin_errors_map_to_grpc_codes(channel: grpc.aio.Channel) -> None:
    admin = auth_pb2_grpc.AuthAdminServiceStub(channel)
    await admin.CreateAccount(auth_pb2.CreateAccountRequest(name="dup"))
    with pytest.raises(grpc.aio.AioRpcError) as dup:
        await admin.CreateAccount(auth_pb2.CreateAccountRequest(name="dup"))
    assert dup.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await admin.CreateKey(auth_pb2.CreateKeyRequest(account="ghost", name="k"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await auth_pb2_grpc.AuthServiceStub(channel).Authenticate(
            auth_pb2.AuthenticateRequest(key_hash="short")
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
