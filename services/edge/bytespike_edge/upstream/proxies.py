"""Which upstream origins go through an HTTP(S) proxy: `*_PROXY` / `NO_PROXY`, read once.

Shared by the upstream clients: `Http1Upstream` sends proxied origins to `AiohttpUpstream`,
which tunnels through the proxy. aiohttp's own `trust_env` would look the variables up in a
worker thread on every request (a thread hop per call, measured in bench/).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

# Upstream origins whose proxy decision is remembered (providers are a handful).
MAX_ORIGINS = 1024


class EnvProxies:
    """The proxy for an upstream URL from `*_PROXY` / `NO_PROXY`, decided once per origin."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        if environ is None:
            self._proxies = urllib.request.getproxies_environment()
        else:
            self._proxies = {
                name[:-6].lower(): value
                for name, value in environ.items()
                if name.lower().endswith("_proxy") and value
            }
        self._by_origin: dict[tuple[str, str], str | None] = {}

    def for_url(self, url: str) -> str | None:
        if not self._proxies:
            return None
        parts = urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        if origin in self._by_origin:
            return self._by_origin[origin]
        proxy = self._proxies.get(parts.scheme)
        if proxy and self._bypassed(parts.hostname or ""):
            proxy = None
        if len(self._by_origin) < MAX_ORIGINS:
            self._by_origin[origin] = proxy
        return proxy

    def _bypassed(self, host: str) -> bool:
        """`NO_PROXY`: `*`, exact hosts, and domain suffixes (`example.com`, `.example.com`)."""
        for raw in self._proxies.get("no", "").split(","):
            entry = raw.strip().lower().lstrip(".")
            if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
                return True
        return False
