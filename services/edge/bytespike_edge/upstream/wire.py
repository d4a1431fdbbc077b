"""Where and how to call a provider: URL paths and credential headers per upstream protocol."""

from __future__ import annotations

from bytespike.router.v1 import router_pb2
from bytespike_edge.translate.ir import WireProtocol

CHAT_PATH = "/chat/completions"
MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"


def request_headers(provider: router_pb2.Provider, credential: str) -> dict[str, str]:
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
