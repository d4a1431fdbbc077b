"""Chooses the upstream implementation by URL scheme."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import Any

from bytespike_edge.upstream.aiohttp_client import AiohttpUpstream
from bytespike_edge.upstream.client import HttpxUpstream, Timeouts, Upstream, UpstreamResponse
from bytespike_edge.upstream.http1 import Http1Upstream
from bytespike_edge.upstream.mock import MockUpstream


class UpstreamDispatcher:
    def __init__(self, http: Upstream, mock: Upstream | None = None) -> None:
        self._http = http
        self._mock = mock or MockUpstream()

    @classmethod
    def default(cls, max_connections: int, client: str = "http1") -> UpstreamDispatcher:
        http: Upstream
        if client == "httpx":
            http = HttpxUpstream(max_connections)
        elif client == "aiohttp":
            http = AiohttpUpstream(max_connections)
        else:
            http = Http1Upstream(max_connections)
        return cls(http)

    def send(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> Coroutine[Any, Any, UpstreamResponse]:
        # The chosen client's coroutine itself, not one more awaiting it: every request.
        target = self._mock if url.startswith("mock://") else self._http
        return target.send(url, headers, body, timeouts)

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._mock.aclose()
