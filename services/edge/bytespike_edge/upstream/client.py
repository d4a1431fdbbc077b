"""The upstream HTTP client.

httpx's API over aiohttp's transport (`httpx-aiohttp`): on this kind of machine the default
httpx transport tops out near 300 req/s through a proxy, the aiohttp one several times that
(DESIGN §9). `mock://` URLs are answered in-process by the offline mock provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx
from httpx_aiohttp import AiohttpTransport

from bytespike_common.errors import UpstreamTimeout, UpstreamUnavailable


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    first_byte: float
    total: float | None


class UpstreamResponse(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aread(self) -> bytes: ...

    async def aclose(self) -> None: ...


class Upstream(Protocol):
    async def send(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> UpstreamResponse:
        """POSTs and returns once the response headers arrived; the body is streamed."""

    async def aclose(self) -> None: ...


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class HttpxUpstream:
    def __init__(self, max_connections: int) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=None)
        self._client = httpx.AsyncClient(
            transport=AiohttpTransport(limits=limits, trust_env=True), timeout=None
        )
        # A client keeps Set-Cookie answers and sends them on later requests: one tenant's
        # upstream cookie must never reach another's. (httpx has no public switch.)
        self._client._cookies = _NoCookies()

    async def send(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> UpstreamResponse:
        timeout = httpx.Timeout(
            connect=timeouts.connect, read=timeouts.first_byte, write=timeouts.connect, pool=5.0
        )
        request = self._client.build_request(
            "POST", url, headers=dict(headers), content=body, timeout=timeout
        )
        try:
            return await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"upstream timed out: {type(exc).__name__}") from exc
        except (httpx.TransportError, OSError) as exc:
            raise UpstreamUnavailable(f"upstream unreachable: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self._client.aclose()
