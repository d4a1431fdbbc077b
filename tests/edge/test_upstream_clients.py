"""The `Upstream` clients the edge can run on (`upstream_client`): the same cases for each.

`http1` is the default (`upstream/http1.py`), `aiohttp` serves origins behind a proxy and
is selectable. Real sockets on 127.0.0.1, an aiohttp.web vendor in-process. What only the
HTTP/1.1 client has (its pool, retries, framing) is in test_upstream_http1.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bytespike_common.devstack import free_port
from bytespike_common.errors import UpstreamTimeout, UpstreamUnavailable
from bytespike_edge.upstream.aiohttp_client import AiohttpUpstream
from bytespike_edge.upstream.client import Timeouts, Upstream
from bytespike_edge.upstream.http1 import Http1Upstream
from bytespike_edge.upstream.proxies import EnvProxies

FAST = Timeouts(connect=1.0, first_byte=1.0, total=None)


async def _whole(request: web.Request) -> web.Response:
    body = await request.read()
    headers = {
        "set-cookie": "tenant=a",
        "x-echo-auth": request.headers["authorization"],
        "x-saw-cookie": request.headers.get("cookie", "none"),
    }
    return web.Response(body=body, status=201, headers=headers, content_type="application/json")


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for index in range(3):
        await response.write(f"data: {index}\n\n".encode())
        await asyncio.sleep(0.01)
    await response.write_eof()
    return response


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.Response(text="late")


@pytest.fixture
async def vendor() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/whole", _whole)
    app.router.add_post("/stream", _stream)
    app.router.add_post("/slow", _slow)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


@pytest.fixture(params=[Http1Upstream, AiohttpUpstream], ids=["http1", "aiohttp"])
async def upstream(request: pytest.FixtureRequest) -> AsyncIterator[Upstream]:
    client = request.param(8, EnvProxies({}))
    try:
        yield client
    finally:
        await client.aclose()


async def test_whole_body_status_and_headers(vendor: str, upstream: Upstream) -> None:
    headers = {"authorization": "Bearer upstream", "content-type": "application/json"}
    for _ in range(2):  # the second call reuses the pooled connection and sends no cookie
        response = await upstream.send(f"{vendor}/whole", headers, b'{"a":1}', FAST)
        assert response.status_code == 201
        assert response.headers["X-Echo-Auth"] == "Bearer upstream"
        assert response.headers["X-Saw-Cookie"] == "none"
        assert await response.aread() == b'{"a":1}'
        await response.aclose()


async def test_stream_is_relayed_as_it_arrives(vendor: str, upstream: Upstream) -> None:
    response = await upstream.send(f"{vendor}/stream", {}, b"{}", FAST)
    chunks = [chunk async for chunk in response.aiter_bytes()]
    await response.aclose()
    assert b"".join(chunks) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"


async def test_failures_map_to_gateway_errors(vendor: str, upstream: Upstream) -> None:
    quick = Timeouts(connect=1.0, first_byte=0.2, total=None)
    with pytest.raises(UpstreamTimeout):
        await upstream.send(f"{vendor}/slow", {}, b"{}", quick)
    with pytest.raises(UpstreamUnavailable):
        await upstream.send(f"http://127.0.0.1:{free_port()}/x", {}, b"{}", FAST)


def test_env_proxies_are_decided_once_per_origin() -> None:
    proxies = EnvProxies({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "internal.example"})
    assert proxies.for_url("https://api.openai.com/v1/chat/completions") == "http://proxy:3128"
    assert proxies.for_url("https://eu.internal.example/v1") is None
    assert proxies.for_url("http://api.openai.com/v1") is None
    assert EnvProxies({}).for_url("https://api.openai.com") is None
