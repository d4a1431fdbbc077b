"""Catalog hot reload as every edge sees it, and an edge outliving its router."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bytespike_common.devstack import SERVICES, Stack, free_port

pytestmark = pytest.mark.integration

CATALOG = """
providers:
  mock: {protocol: openai, base_url: "mock://echo"}
models:
  - id: mock-echo
    deployments: [{provider: mock, upstream_model: echo}]
groups:
  default: {models: ["*"]}
"""


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    data = tmp_path_factory.mktemp("reload")
    catalog = data / "catalog" / "catalog.yaml"
    catalog.parent.mkdir()
    catalog.write_text(CATALOG)
    suite = Stack(
        data_dir=data,
        catalog_path=catalog,
        edge_port=free_port(),
        service_ports={name: free_port() for name in SERVICES},
    )
    try:
        await suite.start()
        yield suite
    finally:
        suite.stop()


@pytest.fixture(scope="module")
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    _, key = await stack.create_key("reload", "k")
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=stack.edge_url, headers=headers, timeout=10) as client:
        yield client


async def _ask(http: httpx.AsyncClient, model: str) -> int:
    response = await http.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "x"}]},
    )
    return response.status_code


async def _until_served(http: httpx.AsyncClient, model: str, limit: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if await _ask(http, model) == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"{model} not served within {limit}s")


async def test_reload_under_load_reaches_the_edge_within_a_second(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    statuses: list[int] = []
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            statuses.append(await _ask(http, "mock-echo"))

    workers = [asyncio.create_task(load()) for _ in range(6)]
    await asyncio.sleep(0.5)
    stack.catalog_path.write_text(
        CATALOG.replace("id: mock-echo", "id: mock-echo\n    aliases: [fresh]")
    )
    elapsed = await _until_served(http, "fresh", limit=3.0)
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*workers)
    assert elapsed < 1.0, f"reload took {elapsed:.2f}s"
    assert len(statuses) > 20
    assert set(statuses) == {200}, "a request failed during the reload"


async def test_edge_keeps_its_table_without_the_router_and_reconnects(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    stack.stop_process("router")
    for _ in range(5):
        assert await _ask(http, "mock-echo") == 200
    Path(stack.catalog_path).write_text(
        CATALOG.replace("id: mock-echo", "id: mock-echo\n    aliases: [after-restart]")
    )
    stack.start_service("router")
    await stack.wait_serving("router")
    await _until_served(http, "after-restart", limit=5.0)
