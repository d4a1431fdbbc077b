"""`bytespike-edge`: the public app and the admin app, two uvicorn servers on one event loop.

The admin API listens on its own port (`BYTESPIKE_EDGE_ADMIN_PORT`) and reads the route
table the public app holds. Signals are handled here once for both servers: SIGTERM stops
both gracefully; if either server ends on its own (a port taken, a failed start-up), the
other is stopped too and the process exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

import uvicorn
import uvloop
from fastapi import FastAPI

from bytespike_common import heap, logs, metrics_server, telemetry
from bytespike_edge.admin.app import create_admin_app, public_catalog
from bytespike_edge.app import create_app
from bytespike_edge.http_server import EdgeHttpProtocol
from bytespike_edge.settings import Settings


class Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _server(app: FastAPI, host: str, port: int, settings: Settings) -> Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=EdgeHttpProtocol,
        lifespan="on",
        access_log=False,
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=int(settings.shutdown_grace),
    )
    return Server(config)


async def _serve_until_done(server: Server) -> None:
    # uvicorn ends a failed start-up (a port taken) with sys.exit. Raised inside a task,
    # SystemExit escapes the event loop, skipping the shutdown below and its watchdog, and
    # asyncio then waits, unbounded, for the other server's tasks to cancel.
    with contextlib.suppress(SystemExit):
        await server.serve()


async def serve(settings: Settings) -> int:
    public = create_app(settings)
    admin = create_admin_app(settings, public_catalog(public))
    # Modules and apps live as long as the process: out of the collector's sight, a full
    # collection walks thousands of objects, not ~150,000 (~80 ms); and a young collection
    # every 20,000 allocations, not every request or two (`bytespike_common.heap`).
    heap.settle()
    servers = [
        _server(public, settings.host, settings.port, settings),
        _server(admin, settings.admin_bind_host, settings.admin_port, settings),
    ]
    signalled = asyncio.Event()

    def stop() -> None:
        signalled.set()
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(_serve_until_done(server)) for server in servers]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    if not signalled.is_set():
        # One server failed: the process must exit non-zero even if the other, stopped
        # mid-start-up, never finishes its shutdown (a watchdog, not a wait).
        watchdog = threading.Timer(settings.shutdown_grace + 5, os._exit, args=(1,))
        watchdog.daemon = True
        watchdog.start()
    await asyncio.wait(tasks, timeout=settings.shutdown_grace + 5)
    return 0 if signalled.is_set() else 1


def main() -> None:
    settings = Settings()
    logs.configure("edge", settings.log_level, settings.log_json)
    telemetry.configure("edge")
    metrics_server.start(settings.host, settings.metrics_port)
    sys.exit(uvloop.run(serve(settings)))


if __name__ == "__main__":
    main()
