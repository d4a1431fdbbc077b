"""The router over real gRPC: snapshots pushed on catalog change, bad files rejected."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from bytespike.router.v1 import router_pb2, router_pb2_grpc
from bytespike_router.server import create_server
from bytespike_router.settings import Settings

CATALOG = """
providers:
  up: {protocol: openai, base_url: "https://vendor.example/v1"}
models:
  - id: m-1
    deployments:
      - {provider: up, upstream_model: a, priority: 0, weight: 1}
      - {provider: up, upstream_model: b, priority: 1, weight: 1}
groups:
  default: {models: ["*"]}
  only-n: {models: ["n-*"]}
"""


async def test_watch_routes_pushes_reloads_and_keeps_last_good(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    async with (
        create_server(Settings(port=0, catalog_path=str(path), shutdown_grace=0.2)) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = router_pb2_grpc.RouterServiceStub(channel)
        stream = stub.WatchRoutes(router_pb2.WatchRoutesRequest(client_id="test"))
        first = await stream.read()
        assert [m.id for m in first.models] == ["m-1"]

        path.write_text(CATALOG.replace("id: m-1", "id: m-2"))
        second = await asyncio.wait_for(stream.read(), timeout=1.0)
        assert [m.id for m in second.models] == ["m-2"]
        assert second.version != first.version

        # An invalid catalog is rejected; the next valid one is the next snapshot.
        path.write_text("providers: {up: {protocol: nope}}")
        await asyncio.sleep(0.4)
        path.write_text(CATALOG.replace("id: m-1", "id: m-3"))
        third = await asyncio.wait_for(stream.read(), timeout=1.0)
        assert [m.id for m in third.models] == ["m-3"]
        stream.cancel()


async def test_plan_orders_by_priority_and_checks_group(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    settings = Settings(port=0, catalog_path=str(path), watch_catalog=False, shutdown_grace=0.2)
    async with (
        create_server(settings) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = router_pb2_grpc.RouterServiceStub(channel)
        plan = await stub.Plan(router_pb2.PlanRequest(model="m-1", group="default"))
        assert [d.upstream_model for d in plan.deployments] == ["a", "b"]
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.Plan(router_pb2.PlanRequest(model="nope"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.Plan(router_pb2.PlanRequest(model="m-1", group="only-n"))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
