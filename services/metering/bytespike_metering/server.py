"""Builds the metering service: database, migrations, NATS consumer, hold sweeper, gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from bytespike.metering.v1 import metering_pb2, metering_pb2_grpc
from bytespike_common import db, messaging
from bytespike_common.grpc_server import GrpcServer
from bytespike_metering.consumer import UsageConsumer
from bytespike_metering.servicer import MeteringServicer
from bytespike_metering.settings import Settings
from bytespike_metering.store import MeteringStore

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_metering"
SWEEP_INTERVAL = 60.0
log = logging.getLogger(__name__)


async def _sweep_holds(store: MeteringStore) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL)
        try:
            if expired := await store.expire_holds():
                log.info("expired %d holds no usage event settled", expired)
        except Exception:
            log.exception("hold sweep failed")


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def create_server(settings: Settings) -> AsyncIterator[GrpcServer]:
    async with contextlib.AsyncExitStack() as stack:
        engine = db.create_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
        store = MeteringStore(engine)
        nc = await messaging.connect(settings.nats_url, "bytespike-metering")
        stack.push_async_callback(nc.drain)
        js = nc.jetstream()
        await messaging.ensure_usage_stream(
            js, settings.usage_stream, settings.usage_subject_prefix
        )
        consumer = UsageConsumer(
            js,
            store,
            stream=settings.usage_stream,
            subject_prefix=settings.usage_subject_prefix,
            durable=settings.consumer_name,
            batch_size=settings.batch_size,
        )
        consumer_task = asyncio.create_task(consumer.run(), name="usage-consumer")
        stack.push_async_callback(_cancel, consumer_task)
        sweeper = asyncio.create_task(_sweep_holds(store), name="hold-sweeper")
        stack.push_async_callback(_cancel, sweeper)

        async def database_up() -> bool:
            return await db.ping(engine)

        async def consuming() -> bool:
            return nc.is_connected and consumer.running and not consumer_task.done()

        server = GrpcServer(
            name="metering",
            host=settings.host,
            port=settings.port,
            service_names=[metering_pb2.DESCRIPTOR.services_by_name["MeteringService"].full_name],
            checks=[database_up, consuming],
            grace=settings.shutdown_grace,
        )
        servicer = MeteringServicer(store, dt.timedelta(seconds=settings.hold_ttl_seconds))
        server.add(metering_pb2_grpc.add_MeteringServiceServicer_to_server, servicer)
        await server.start()
        stack.push_async_callback(server.stop)
        yield server
