"""Media fetching: public addresses only, capped, typed — against a real local server."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bytespike_common.errors import InvalidRequest
from bytespike_edge.media import MediaFetcher
from bytespike_edge.translate.ir import ImagePart

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def png(_: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html/>", content_type="text/html")

    async def huge(_: web.Request) -> web.Response:
        return web.Response(body=b"\0" * 4096, content_type="image/png")

    async def hop(_: web.Request) -> web.Response:
        raise web.HTTPFound("/img.png")

    app = web.Application()
    app.add_routes(
        [
            web.get("/img.png", png),
            web.get("/page", html),
            web.get("/huge.png", huge),
            web.get("/hop", hop),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_private_and_odd_urls_are_refused(server: str) -> None:
    fetcher = MediaFetcher(max_bytes=1024, timeout=5)
    try:
        for url in (
            f"{server}/img.png",
            "http://localhost/x.png",
            "ftp://example.com/a.png",
            "http://[::1]/a.png",
            "http://10.1.2.3/a.png",
        ):
            with pytest.raises(InvalidRequest):
                await fetcher.fetch(url)
    finally:
        await fetcher.aclose()


async def test_fetch_inlines_follows_redirects_and_caps(server: str) -> None:
    fetcher = MediaFetcher(max_bytes=1024, timeout=5, allow_private=True)
    try:
        part = ImagePart(url=f"{server}/hop")
        await fetcher.inline([part])
        assert part.media_type == "image/png"
        assert base64.b64decode(part.data or "") == PNG
        with pytest.raises(InvalidRequest, match="media type"):
            await fetcher.fetch(f"{server}/page")
        with pytest.raises(InvalidRequest, match="size limit"):
            await fetcher.fetch(f"{server}/huge.png")
    finally:
        await fetcher.aclose()
