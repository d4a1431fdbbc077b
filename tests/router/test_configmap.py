"""The catalog ConfigMap watched through a (fake) Kubernetes API: changes pushed at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from bytespike.router.v1 import router_pb2, router_pb2_grpc
from bytespike_router.server import create_server
from bytespike_router.settings import Settings
from tests.fakes.kube_api import FakeKubeAPI, serve
from tests.router.test_server import CATALOG


async def test_configmap_changes_become_route_tables(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    api = FakeKubeAPI(
        "gw", "bytespike-catalog", {"catalog.yaml": CATALOG.replace("m-1", "from-api")}
    )
    async with serve(api) as url:
        settings = Settings(
            port=0,
            catalog_path=str(path),
            watch_catalog=False,
            catalog_configmap="gw/bytespike-catalog",
            kube_api_url=url,
            shutdown_grace=0.2,
        )
        async with (
            create_server(settings) as server,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            stream = router_pb2_grpc.RouterServiceStub(channel).WatchRoutes(
                router_pb2.WatchRoutesRequest(client_id="test")
            )
            tables = [await stream.read()]
            while [m.id for m in tables[-1].models] != ["from-api"]:
                tables.append(await asyncio.wait_for(stream.read(), timeout=2))

            api.update({"catalog.yaml": "providers: [not valid"})
            await asyncio.sleep(0.3)
            api.update({"catalog.yaml": CATALOG.replace("m-1", "edited")})
            changed = await asyncio.wait_for(stream.read(), timeout=1.0)
            assert [m.id for m in changed.models] == ["edited"]
            stream.cancel()
