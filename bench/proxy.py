"""The floor: a bare reverse proxy, the least a Python process can do per proxied request.

A raw ASGI app (no framework) on uvicorn + uvloop + httptools that forwards the POST body
to the same path on one upstream and relays the answer chunk by chunk as it arrives. No
auth, no parsing, no usage: what the gateway adds on top of this is its own cost.

`--client http1` (default) forwards with the edge's own HTTP/1.1 client
(`bytespike_edge.upstream.http1`), the fastest measured here (~40 % less CPU per request
than aiohttp): the floor is the best client there is, not the one the gateway happened to
use. `aiohttp` forwards with one aiohttp ClientSession and a large pool (the floor until
2026-12-07); `httpx-aiohttp` and `httpx` measure httpx's API over aiohttp's transport and
httpx's own transport, the comparison DESIGN §9 records.

    python -m bench.proxy --port 9001 --upstream http://127.0.0.1:9000 [--client http1]
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import aiohttp
import httpx
import uvicorn
from httpx_aiohttp import AiohttpTransport

from bench.asgi import Message, Receive, Scope, Send, read_body
from bytespike_common.errors import GatewayError
from bytespike_edge.upstream.client import Timeouts
from bytespike_edge.upstream.http1 import Http1Upstream
from bytespike_edge.upstream.proxies import EnvProxies

# Hop-by-hop headers are the proxy's own business (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade"}
)
FORWARDED_REQUEST = frozenset(
    {"authorization", "content-type", "x-api-key", "x-goog-api-key", "anthropic-version"}
)
POOL = 1000


class Forwarder(Protocol):
    async def forward(self, url: str, headers: dict[str, str], body: bytes, send: Send) -> None: ...

    async def aclose(self) -> None: ...


def _start(status: int, headers: list[tuple[bytes, bytes]]) -> Message:
    kept = [(k, v) for k, v in headers if k not in HOP_BY_HOP]
    return {"type": "http.response.start", "status": status, "headers": kept}


async def _relay(chunks: AsyncIterator[bytes], send: Send) -> None:
    async for chunk in chunks:
        if chunk:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class AiohttpForwarder:
    def __init__(self) -> None:
        connector = aiohttp.TCPConnector(limit=POOL, limit_per_host=0, ttl_dns_cache=None)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=120),
            auto_decompress=False,
        )

    async def forward(self, url: str, headers: dict[str, str], body: bytes, send: Send) -> None:
        async with self._session.post(url, data=body, headers=headers) as resp:
            raw = [(k.lower(), v) for k, v in resp.raw_headers]
            await send(_start(resp.status, raw))
            await _relay(resp.content.iter_any(), send)

    async def aclose(self) -> None:
        await self._session.close()


class HttpxForwarder:
    def __init__(self, over_aiohttp: bool) -> None:
        limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=None)
        transport: httpx.AsyncBaseTransport
        if over_aiohttp:
            transport = AiohttpTransport(limits=limits)
        else:
            transport = httpx.AsyncHTTPTransport(limits=limits)
        self._client = httpx.AsyncClient(transport=transport, timeout=120)

    async def forward(self, url: str, headers: dict[str, str], body: bytes, send: Send) -> None:
        request = self._client.build_request("POST", url, headers=headers, content=body)
        resp = await self._client.send(request, stream=True)
        try:
            raw = [(k.lower(), v) for k, v in resp.headers.raw]
            await send(_start(resp.status_code, raw))
            await _relay(resp.aiter_raw(), send)
        finally:
            await resp.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()


class Http1Forwarder:
    TIMEOUTS = Timeouts(connect=5, first_byte=120, total=None)

    def __init__(self) -> None:
        self._client = Http1Upstream(POOL, EnvProxies({}))

    async def forward(self, url: str, headers: dict[str, str], body: bytes, send: Send) -> None:
        resp = await self._client.send(url, headers, body, self.TIMEOUTS)
        try:
            raw = [(k.lower().encode(), v.encode()) for k, v in resp.headers.items()]
            await send(_start(resp.status_code, raw))
            await _relay(resp.aiter_bytes(), send)
        finally:
            await resp.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()


FORWARDERS: dict[str, Callable[[], Forwarder]] = {
    "aiohttp": AiohttpForwarder,
    "http1": Http1Forwarder,
    "httpx-aiohttp": lambda: HttpxForwarder(over_aiohttp=True),
    "httpx": lambda: HttpxForwarder(over_aiohttp=False),
}


class BareProxy:
    def __init__(self, upstream: str, client: str) -> None:
        self._upstream = upstream.rstrip("/")
        self._make = FORWARDERS[client]
        self._forwarder: Forwarder | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {
            name.decode(): value.decode()
            for name, value in scope["headers"]
            if name.decode() in FORWARDED_REQUEST
        }
        url = self._upstream + scope["path"]
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode()
        assert self._forwarder is not None
        try:
            await self._forwarder.forward(url, headers, body, send)
        except (aiohttp.ClientError, httpx.HTTPError, OSError, GatewayError) as exc:
            message = f'{{"error":{{"message":"bad gateway: {type(exc).__name__}"}}}}'.encode()
            await send(_start(502, [(b"content-type", b"application/json")]))
            await send({"type": "http.response.body", "body": message})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        handlers: dict[str, Callable[[], Awaitable[Any]]] = {
            "lifespan.startup": self._open,
            "lifespan.shutdown": self._close,
        }
        while True:
            message = await receive()
            kind = message["type"]
            await handlers[kind]()
            await send({"type": f"{kind}.complete"})
            if kind == "lifespan.shutdown":
                return

    async def _open(self) -> None:
        self._forwarder = self._make()

    async def _close(self) -> None:
        if self._forwarder is not None:
            await self._forwarder.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description="bare raw-ASGI reverse proxy (bench floor)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9000")
    parser.add_argument("--client", choices=sorted(FORWARDERS), default="http1")
    args = parser.parse_args()
    uvicorn.run(
        BareProxy(args.upstream, args.client),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
