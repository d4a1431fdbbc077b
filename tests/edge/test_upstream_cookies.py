"""No upstream client carries a vendor's cookie from one request (tenant) to the next."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bytespike_edge.upstream.aiohttp_client import AiohttpUpstream
from bytespike_edge.upstream.client import HttpxUpstream, Timeouts, Upstream
from bytespike_edge.upstream.http1 import Http1Upstream

TIMEOUTS = Timeouts(connect=2, first_byte=5, total=None)


@pytest.fixture
async def vendor() -> AsyncIterator[tuple[str, list[str | None]]]:
    seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("__cf_bm", "tenant-a-session")
        return response

    app = web.Application()
    app.add_routes([web.post("/v1/chat/completions", answer)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1/chat/completions", seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "make", [Http1Upstream, AiohttpUpstream, HttpxUpstream], ids=["http1", "aiohttp", "httpx"]
)
async def test_no_cookie_is_carried_between_requests(
    make: type[Upstream], vendor: tuple[str, list[str | None]]
) -> None:
    url, seen = vendor
    client = make(10)  # type: ignore[call-arg]
    try:
        for _ in range(2):
            response = await client.send(url, {"content-type": "application/json"}, b"{}", TIMEOUTS)
            assert response.status_code == 200
            await response.aread()
            await response.aclose()
    finally:
        await client.aclose()
    assert seen == [None, None]
