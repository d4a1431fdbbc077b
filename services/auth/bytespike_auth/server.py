"""Builds the auth service: database, migrations, NATS, the revocation sweep, gRPC."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from bytespike.auth.v1 import auth_pb2, auth_pb2_grpc
from bytespike_auth.revocations import RevocationPublisher, RevocationScheduler
from bytespike_auth.servicer import AuthAdminServicer, AuthServicer
from bytespike_auth.settings import Settings
from bytespike_auth.store import KeyStore
from bytespike_common import db, messaging
from bytespike_common.grpc_server import GrpcServer

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_auth"


async def migrate(settings: Settings) -> None:
    """`bytespike-auth migrate`: brings the schema to head and returns."""
    engine = db.create_engine(settings.database_url)
    try:
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
        log.info("auth schema is at head")
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def create_server(settings: Settings) -> AsyncIterator[GrpcServer]:
    async with contextlib.AsyncExitStack() as stack:
        engine = db.create_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        if settings.migrate_on_start:
            await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
        nc = await messaging.connect(settings.nats_url, "bytespike-auth")
        stack.push_async_callback(nc.drain)
        store = KeyStore(engine, settings.key_hash_secret_bytes)
        publisher = RevocationPublisher(nc)

        async def database_up() -> bool:
            return await db.ping(engine)

        async def nats_up() -> bool:
            return bool(nc.is_connected)

        service_names = [
            auth_pb2.DESCRIPTOR.services_by_name[name].full_name
            for name in ("AuthService", "AuthAdminService")
        ]
        server = GrpcServer(
            name="auth",
            host=settings.host,
            port=settings.port,
            service_names=service_names,
            checks=[database_up, nats_up],
            grace=settings.shutdown_grace,
        )
        server.add(auth_pb2_grpc.add_AuthServiceServicer_to_server, AuthServicer(store))
        server.add(
            auth_pb2_grpc.add_AuthAdminServiceServicer_to_server,
            AuthAdminServicer(store, publisher),
        )
        scheduler = RevocationScheduler(store, publisher, settings.revocation_sweep_interval)
        scheduler.start()
        stack.push_async_callback(scheduler.stop)
        await server.start()
        stack.push_async_callback(server.stop)
        yield server
