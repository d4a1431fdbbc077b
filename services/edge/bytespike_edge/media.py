"""Fetching media a vendor cannot take by URL — safely.

Some upstreams take images or PDFs only inline; a client URL is then downloaded by the
gateway and inlined. The download is an SSRF vector, so: only http(s); every address the
host resolves to must be globally routable (no loopback, private, link-local, reserved,
multicast — checked in the resolver itself, so the connection uses exactly the checked
addresses and a DNS rebind between check and connect is impossible); redirects are
followed through the same resolver, at most three; the body is capped in size and time;
the content type must be an image or a PDF.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from bytespike_common.errors import InvalidRequest
from bytespike_edge.translate.ir import DocumentPart, ImagePart

ALLOWED_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf")


class _PublicOnlyResolver(AbstractResolver):
    def __init__(self, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            for result in results:
                if not ipaddress.ip_address(result["host"]).is_global:
                    raise InvalidRequest(
                        f"Media URL host '{host}' resolves to a non-public address; refused.",
                        param="url",
                    )
        return results

    async def close(self) -> None:
        await self._inner.close()


class MediaFetcher:
    def __init__(self, max_bytes: int, timeout: float, allow_private: bool = False) -> None:
        self._max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=_PublicOnlyResolver(self._allow_private))
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def fetch(self, url: str) -> tuple[str, bytes]:
        """(media type, bytes) of `url`, or InvalidRequest saying why not."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest("Media URLs must be http(s) with a host.", param="url")
        # aiohttp does not consult the resolver for IP literals: check those here.
        with contextlib.suppress(ValueError):
            if not self._allow_private and not ipaddress.ip_address(parts.hostname).is_global:
                raise InvalidRequest(
                    "Media URLs may not point at non-public addresses.", param="url"
                )
        try:
            async with self._client().get(url, max_redirects=3) as response:
                if response.status != 200:
                    raise InvalidRequest(
                        f"Fetching media failed: HTTP {response.status}.", param="url"
                    )
                media_type = response.content_type
                if media_type not in ALLOWED_TYPES:
                    raise InvalidRequest(f"Unsupported media type '{media_type}'.", param="url")
                if (response.content_length or 0) > self._max_bytes:
                    raise InvalidRequest("Media exceeds the size limit.", param="url")
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > self._max_bytes:
                        raise InvalidRequest("Media exceeds the size limit.", param="url")
        except InvalidRequest:
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise InvalidRequest(
                f"Fetching media failed: {type(exc).__name__}.", param="url"
            ) from exc
        return media_type, bytes(data)

    async def inline(self, parts: list[Any]) -> None:
        """Downloads each URL part once and fills its inline data."""
        urls = {
            part.url for part in parts if isinstance(part, ImagePart | DocumentPart) and part.url
        }
        fetched = dict(zip(urls, await asyncio.gather(*(self.fetch(u) for u in urls)), strict=True))
        for part in parts:
            media_type, data = fetched[part.url]
            part.media_type = media_type
            part.data = base64.b64encode(data).decode()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
