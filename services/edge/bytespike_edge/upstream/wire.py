"""Where and how to call a provider: URL paths and credential headers per upstream protocol."""

from __future__ import annotations

from bytespike.router.v1 import router_pb2
from bytespike_edge.translate.ir import WireProtocol

CHAT_PATH = "/chat/completions"
MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"


# Per (provider message, credential): the headers every request to it starts from. Keyed
# by identity, as route tables are snapshots; cleared when full (a few reloads' worth).
_HEADERS_CACHE_SIZE = 256
_headers: dict[tuple[int, str], tuple[router_pb2.Provider, dict[str, str]]] = {}


def request_headers(provider: router_pb2.Provider, credential: str) -> dict[str, str]:
    """A new dict each call: callers add the request's own headers to it."""
    key = (id(provider), credential)
    cached = _headers.get(key)
    if cached is None or cached[0] is not provider:
        if len(_headers) >= _HEADERS_CACHE_SIZE:
            _headers.clear()
        cached = _headers[key] = (provider, _build_headers(provider, credential))
    return cached[1].copy()


def _build_headers(provider: router_pb2.Provider, credential: str) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept-encoding": "identity"}
    headers.update(provider.headers)
    if credential:
        if provider.protocol == router_pb2.PROTOCOL_ANTHROPIC:
            headers["x-api-key"] = credential
        elif provider.protocol == router_pb2.PROTOCOL_GEMINI:
            headers["x-goog-api-key"] = credential
        else:
            headers["authorization"] = f"Bearer {credential}"
    return headers


def gemini_path(upstream_model: str, method: str) -> str:
    return f"/v1beta/models/{upstream_model}:{method}"


def upstream_url(
    provider: router_pb2.Provider, protocol: WireProtocol, upstream_model: str, stream: bool
) -> str:
    """Where a generation request goes; Gemini streams are always asked for as SSE."""
    if protocol == WireProtocol.OPENAI:
        return provider.base_url + CHAT_PATH
    if protocol == WireProtocol.ANTHROPIC:
        return provider.base_url + MESSAGES_PATH
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return provider.base_url + gemini_path(upstream_model, method)
