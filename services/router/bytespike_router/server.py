"""Builds the router: catalog, hub, file watcher, gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from bytespike.router.v1 import router_pb2, router_pb2_grpc
from bytespike_common.grpc_server import GrpcServer
from bytespike_router.catalog import load_catalog
from bytespike_router.configmap import ConfigMapWatcher, api_client
from bytespike_router.hub import RouteTableHub
from bytespike_router.reloader import CatalogReloader
from bytespike_router.routes import build_route_table
from bytespike_router.servicer import RouterServicer
from bytespike_router.settings import Settings


@contextlib.asynccontextmanager
async def create_server(settings: Settings) -> AsyncIterator[GrpcServer]:
    path = Path(settings.catalog_path)
    # A catalog that does not load at start-up is fatal: there is nothing to serve.
    hub = RouteTableHub(build_route_table(load_catalog(path, os.environ)))
    reloader = CatalogReloader(path, hub)
    async with contextlib.AsyncExitStack() as stack:
        if settings.watch_catalog:
            task = asyncio.create_task(reloader.run(), name="catalog-watch")
            stack.callback(task.cancel)
        if settings.catalog_configmap:
            namespace, _, name = settings.catalog_configmap.rpartition("/")
            watcher = ConfigMapWatcher(
                api_client(settings.kube_api_url),
                namespace or "default",
                name,
                settings.catalog_configmap_key,
            )
            watcher.start(asyncio.get_running_loop(), reloader.reload_text)
            stack.callback(watcher.stop)

        async def catalog_loaded() -> bool:
            return bool(hub.current.models)

        server = GrpcServer(
            name="router",
            host=settings.host,
            port=settings.port,
            service_names=[router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name],
            checks=[catalog_loaded],
            grace=settings.shutdown_grace,
        )
        server.add(router_pb2_grpc.add_RouterServiceServicer_to_server, RouterServicer(hub))
        await server.start()
        stack.push_async_callback(server.stop)
        yield server
