"""The client protocols the benchmark drives, as data: one entry per protocol.

Each entry says how a client of that protocol calls a generate endpoint (path, auth header,
body) and which catalog provider serves the bench model over the same protocol, so the
gateway run is a passthrough compared with a direct call to a vendor of that protocol.
A protocol whose route the gateway does not serve yet is probed, skipped and noted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson

PROMPT = "Summarise the plot of Hamlet in two sentences, for a reader who has not seen it."
MAX_TOKENS = 64


@dataclass(frozen=True, slots=True)
class ClientProtocol:
    name: str
    # The catalog provider (same wire protocol) that serves this protocol's bench model.
    provider: str
    # The provider's base URL given the fake vendor's root URL (catalog conventions).
    provider_base: Callable[[str], str]
    path: Callable[[str, bool], str]
    headers: Callable[[str], dict[str, str]]
    body: Callable[[str, bool], bytes]

    @property
    def model(self) -> str:
        """The public model id in the bench catalog."""
        return f"bench-{self.name}"

    @property
    def upstream_model(self) -> str:
        return f"bench-upstream-{self.name}"


def _openai_body(model: str, stream: bool) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": PROMPT},
        ],
        "max_tokens": MAX_TOKENS,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def _anthropic_body(model: str, stream: bool) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "system": "You are a concise assistant.",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def _gemini_body(model: str, stream: bool) -> bytes:
    return orjson.dumps(
        {
            "systemInstruction": {"parts": [{"text": "You are a concise assistant."}]},
            "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
            "generationConfig": {"maxOutputTokens": MAX_TOKENS, "temperature": 0.2},
        }
    )


def _gemini_path(model: str, stream: bool) -> str:
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"/v1beta/models/{model}:{method}"


JSON = {"content-type": "application/json"}

OPENAI = ClientProtocol(
    name="openai",
    provider="openai",
    provider_base=lambda root: f"{root}/v1",
    path=lambda model, stream: "/v1/chat/completions",
    headers=lambda key: {**JSON, "authorization": f"Bearer {key}"},
    body=_openai_body,
)
ANTHROPIC = ClientProtocol(
    name="anthropic",
    provider="anthropic",
    provider_base=lambda root: root,
    path=lambda model, stream: "/v1/messages",
    headers=lambda key: {**JSON, "x-api-key": key, "anthropic-version": "2023-06-01"},
    body=_anthropic_body,
)
GEMINI = ClientProtocol(
    name="gemini",
    provider="gemini",
    provider_base=lambda root: root,
    path=_gemini_path,
    headers=lambda key: {**JSON, "x-goog-api-key": key},
    body=_gemini_body,
)

# A protocol joins the benchmark by being listed here; the gateway is probed for each.
PROTOCOLS: tuple[ClientProtocol, ...] = (OPENAI, ANTHROPIC, GEMINI)
BY_NAME = {protocol.name: protocol for protocol in PROTOCOLS}
