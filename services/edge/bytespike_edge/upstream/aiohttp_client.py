"""The upstream client on raw aiohttp: the `Upstream` interface without httpx in between.

Measured on this kind of machine (bench/, docs/performance.md), httpx's API over aiohttp's
transport costs several hundred microseconds of CPU per request that aiohttp alone does
not: URL re-parsing, header and cookie models built twice, a response wrapper per call.
Semantics match `HttpxUpstream`: `connect` bounds the TCP connect (plus up to
`POOL_WAIT` for a free pooled connection), `first_byte` bounds every read (the response
headers first, then each body read), `total` the whole exchange; failures surface as
`UpstreamTimeout` / `UpstreamUnavailable`, before and after the headers alike.
No cookie is kept between requests: one tenant's upstream cookie must never reach another's.
`HTTP(S)_PROXY` / `NO_PROXY` are honoured but read once (`proxies.EnvProxies`): aiohttp's
`trust_env` looks them up in a worker thread on every request (a thread hop per call).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import aiohttp

from bytespike_common.errors import UpstreamTimeout, UpstreamUnavailable
from bytespike_edge.upstream.client import Timeouts, UpstreamResponse
from bytespike_edge.upstream.proxies import EnvProxies

# Seconds a request may wait for a free connection when the pool is exhausted.
POOL_WAIT = 5.0
# Distinct upstream timeout settings whose aiohttp form is kept.
MAX_TIMEOUTS = 256


def _translate(exc: BaseException) -> Exception:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeout(f"upstream timed out: {type(exc).__name__}")
    return UpstreamUnavailable(f"upstream unreachable: {type(exc).__name__}")


class AiohttpResponse:
    """An open upstream response; the body is read as it arrives."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers: Mapping[str, str] = response.headers

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _translate(exc) from exc

    async def aread(self) -> bytes:
        try:
            return await self._response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _translate(exc) from exc

    async def aclose(self) -> None:
        # A body read to the end returns the connection to the pool; a stream left midway
        # must not be reused (its remaining bytes would be read as the next answer).
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpUpstream:
    def __init__(self, max_connections: int, proxies: EnvProxies | None = None) -> None:
        self._proxies = proxies or EnvProxies()
        connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}

    def _client_timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        """aiohttp's form of `timeouts`, built once per distinct value (a handful: one
        per provider, plus the rare attempt cut short by the failover budget)."""
        timeout = self._timeouts.get(timeouts)
        if timeout is None:
            if len(self._timeouts) >= MAX_TIMEOUTS:
                self._timeouts.clear()
            timeout = self._timeouts[timeouts] = aiohttp.ClientTimeout(
                total=timeouts.total,
                connect=timeouts.connect + POOL_WAIT,
                sock_connect=timeouts.connect,
                sock_read=timeouts.first_byte,
            )
        return timeout

    async def send(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> UpstreamResponse:
        try:
            response = await self._session.post(
                url,
                data=body,
                # aiohttp reads a dict's items; any other mapping would yield only its keys.
                headers=headers if isinstance(headers, dict) else dict(headers),
                timeout=self._client_timeout(timeouts),
                allow_redirects=False,
                proxy=self._proxies.for_url(url),
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _translate(exc) from exc
        return AiohttpResponse(response)

    async def aclose(self) -> None:
        await self._session.close()
        # Lets the connector's transports finish closing before the loop goes away.
        await asyncio.sleep(0)
