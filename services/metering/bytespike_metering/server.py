"""Builds the metering service: database, rate card, limiter, NATS consumer, sweeper, gRPC.

Health is SERVING only while the database answers, the rate card has arrived from the
router, the usage consumer runs and (when configured) Redis answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc

from bytespike.metering.v1 import metering_pb2, metering_pb2_grpc
from bytespike_common import db, messaging
from bytespike_common.grpc_server import GrpcServer
from bytespike_metering.admin import MeteringAdminServicer
from bytespike_metering.admission import Admitter, Policy
from bytespike_metering.consumer import UsageConsumer
from bytespike_metering.holds import HoldWriter
from bytespike_metering.leases import LeaseGranter, LeasePolicy
from bytespike_metering.limits import Limiter, MemoryLimiter
from bytespike_metering.limits_redis import RedisLimiter
from bytespike_metering.ratecard import RateCardWatcher
from bytespike_metering.servicer import MeteringServicer
from bytespike_metering.settings import Settings
from bytespike_metering.settlement import Settler, slot_names
from bytespike_metering.store import MeteringStore

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_metering"
log = logging.getLogger(__name__)
HealthCheck = Callable[[], Awaitable[bool]]


async def _sweep_holds(store: MeteringStore, limiter: Limiter, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            expired = await store.expire_holds()
            for hold in expired:
                await limiter.release(hold.account_id, slot_names(hold.key_id), hold.request_id)
            if expired:
                log.info("expired %d holds no usage event settled", len(expired))
        except Exception:
            log.exception("hold sweep failed")


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _spawn(
    stack: contextlib.AsyncExitStack, coro: Awaitable[None], name: str
) -> asyncio.Task[None]:
    task: asyncio.Task[None] = asyncio.ensure_future(coro)
    task.set_name(name)
    stack.push_async_callback(_cancel, task)
    return task


def _limiter(settings: Settings) -> tuple[Limiter, list[HealthCheck]]:
    window_ms = settings.window_seconds * 1000
    if not settings.redis_url:
        return MemoryLimiter(window_ms), []
    limiter = RedisLimiter.from_url(
        settings.redis_url, prefix=settings.redis_prefix, window_ms=window_ms
    )
    return limiter, [limiter.ping]


async def _consume_when_priced(watcher: RateCardWatcher, consumer: UsageConsumer) -> None:
    # Nothing can be priced before the first rate card; JetStream keeps the events meanwhile.
    await watcher.ready.wait()
    await consumer.run()


@contextlib.asynccontextmanager
async def create_server(settings: Settings) -> AsyncIterator[GrpcServer]:
    async with contextlib.AsyncExitStack() as stack:
        engine = db.create_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
        store = MeteringStore(engine, initial_credit=settings.initial_credit)
        limiter, limiter_checks = _limiter(settings)
        stack.push_async_callback(limiter.aclose)

        router_channel = grpc.aio.insecure_channel(settings.router_target)
        stack.push_async_callback(router_channel.close)
        watcher = RateCardWatcher(router_channel)
        _spawn(stack, watcher.run(), "rate-card-watch")

        nc = await messaging.connect(settings.nats_url, "bytespike-metering")
        stack.push_async_callback(nc.drain)
        js = nc.jetstream()
        await messaging.ensure_usage_stream(
            js, settings.usage_stream, settings.usage_subject_prefix
        )
        settler = Settler(store, limiter, lambda: watcher.card)
        consumer = UsageConsumer(
            js,
            settler.settle,
            stream=settings.usage_stream,
            subject_prefix=settings.usage_subject_prefix,
            durable=settings.consumer_name,
            batch_size=settings.batch_size,
        )
        consumer_task = _spawn(stack, _consume_when_priced(watcher, consumer), "usage-consumer")
        _spawn(
            stack,
            _sweep_holds(store, limiter, settings.sweep_interval_seconds),
            "hold-sweeper",
        )

        async def database_up() -> bool:
            return await db.ping(engine)

        async def priced() -> bool:
            return watcher.card is not None

        async def consuming() -> bool:
            return nc.is_connected and consumer.running and not consumer_task.done()

        server = GrpcServer(
            name="metering",
            host=settings.host,
            port=settings.port,
            service_names=[
                metering_pb2.DESCRIPTOR.services_by_name["MeteringService"].full_name,
                metering_pb2.DESCRIPTOR.services_by_name["MeteringAdminService"].full_name,
            ],
            checks=[database_up, priced, consuming, *limiter_checks],
            grace=settings.shutdown_grace,
        )
        policy = Policy(
            hold_ttl=dt.timedelta(seconds=settings.hold_ttl_seconds),
            account_concurrency=settings.account_concurrency,
        )
        writer = HoldWriter(store)
        admitter = Admitter(writer, limiter, lambda: watcher.card, policy)
        leases = LeaseGranter(
            store,
            writer,
            LeasePolicy(
                ttl=dt.timedelta(seconds=settings.lease_seconds),
                hold_ttl=dt.timedelta(seconds=settings.lease_hold_ttl_seconds),
                share=settings.lease_share,
                # A concurrency count per account needs every request to come through Admit.
                disabled=settings.account_concurrency > 0,
            ),
        )
        server.add(
            metering_pb2_grpc.add_MeteringServiceServicer_to_server,
            MeteringServicer(admitter, leases),
        )
        server.add(
            metering_pb2_grpc.add_MeteringAdminServiceServicer_to_server,
            MeteringAdminServicer(store, nc),
        )
        await server.start()
        stack.push_async_callback(server.stop)
        yield server
