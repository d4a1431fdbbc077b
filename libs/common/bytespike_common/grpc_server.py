"""The one gRPC bootstrap every service uses.

`GrpcServer` owns a `grpc.aio` server with the standard health service (SERVING only while
the service's own dependency checks pass, re-evaluated every second), server reflection and
a graceful stop (health NOT_SERVING, then `server.stop(grace)`). Services add their
servicers and checks; `run_until_signal` is their process entry point.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from bytespike_common import grpc_telemetry, heap, logs, metrics_server, telemetry

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[bool]]
HEALTH_INTERVAL = 1.0


class GrpcServer:
    def __init__(
        self,
        *,
        name: str,
        host: str,
        port: int,
        service_names: Sequence[str],
        checks: Sequence[HealthCheck] = (),
        grace: float = 10.0,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self.name = name
        self._address = f"{host}:{port}"
        self._service_names = list(service_names)
        self._checks = list(checks)
        self._grace = grace
        self.server = grpc.aio.server(
            interceptors=[*grpc_telemetry.server_interceptors(), *interceptors],
            options=[("grpc.so_reuseport", 0)],
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = 0
        self._monitor: asyncio.Task[None] | None = None
        self.serving = False

    def add(self, register: Callable[[Any, grpc.aio.Server], None], servicer: Any) -> None:
        register(servicer, self.server)

    async def start(self) -> None:
        reflection.enable_server_reflection(
            [*self._service_names, reflection.SERVICE_NAME, health.SERVICE_NAME], self.server
        )
        self.port = self.server.add_insecure_port(self._address)
        if self.port == 0:
            raise RuntimeError(f"{self.name}: cannot bind {self._address}")
        await self.server.start()
        await self._evaluate()
        self._monitor = asyncio.create_task(self._watch_health(), name=f"{self.name}-health")
        log.info("%s serving gRPC on port %d", self.name, self.port)

    async def stop(self) -> None:
        if self._monitor:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await self._set_status(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(self._grace)
        log.info("%s stopped", self.name)

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_INTERVAL)
            await self._evaluate()

    async def _evaluate(self) -> None:
        ok = True
        for check in self._checks:
            try:
                ok = await asyncio.wait_for(check(), timeout=HEALTH_INTERVAL) and ok
            except Exception:
                log.warning("%s health check %s failed", self.name, check, exc_info=True)
                ok = False
        if ok != self.serving:
            log.info("%s health -> %s", self.name, "SERVING" if ok else "NOT_SERVING")
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ok
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._set_status(status)
        self.serving = ok

    async def _set_status(self, status: Any) -> None:
        for service in ["", *self._service_names]:
            await self.health.set(service, status)


async def wait_for_signal() -> None:
    """Returns on the first SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)


async def wait_until_serving(target: str, service: str = "", timeout: float = 20.0) -> None:
    """Polls a gRPC health endpoint until it answers SERVING (tests, the dev launcher)."""
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target} not SERVING after {timeout}s")
            await asyncio.sleep(0.1)


def run_service(
    name: str,
    settings: Any,
    create_server: Callable[[Any], contextlib.AbstractAsyncContextManager[Any]],
) -> None:
    """Process entry point of a gRPC service: logging, telemetry, uvloop, serve until SIGTERM."""
    logs.configure(name, settings.log_level, settings.log_json)
    telemetry.configure(name)
    metrics_server.start(settings.host, settings.metrics_port)

    async def serve() -> None:
        async with create_server(settings):
            # Start-up objects frozen out of the collector's sight (in metering a full
            # collection took ~90 ms every ~20 s under load), and fewer young collections.
            heap.settle()
            await wait_for_signal()

    uvloop.run(serve())
