"""Property-based fuzzing of every public endpoint: whatever arrives, never a 5xx.

Bodies are arbitrary JSON (and arbitrary bytes), and valid-looking requests with one field
replaced by arbitrary JSON, sent with a real key so they reach the codecs, the routing and
the vendor. The fake vendor answers nonsense with a 400, as a real one would.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bytespike_common.devstack import Stack

pytestmark = pytest.mark.integration

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
MODELS = st.sampled_from(["mock-echo", "gpt-5-5", "claude-haiku-4-5", "gemini-2-5-flash", "nope"])

BASES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "mock-echo", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/messages": {
        "model": "claude-haiku-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/v1/messages/count_tokens": {
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/v1beta/models/{model}:generateContent": {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}]
    },
    "/v1beta/models/{model}:countTokens": {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}]
    },
}
FIELDS = [
    "model",
    "messages",
    "max_tokens",
    "stream",
    "tools",
    "tool_choice",
    "system",
    "contents",
    "generationConfig",
    "systemInstruction",
    "response_format",
    "thinking",
    "temperature",
    "stop",
    "stop_sequences",
    "stream_options",
    "reasoning_effort",
    "metadata",
    "n",
]


@pytest.fixture(scope="module")
async def key(stack: Stack) -> str:
    return (await stack.create_key("fuzz", "k"))[1]


def _post(stack: Stack, key: str, path: str, model: str, **kwargs: Any) -> httpx.Response:
    url = stack.edge_url + path.replace("{model}", model)
    headers = {"authorization": f"Bearer {key}", "x-api-key": key, "x-goog-api-key": key}
    return httpx.post(url, headers=headers, timeout=30, **kwargs)


def _assert_not_5xx(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(list(BASES)), model=MODELS, field=st.sampled_from(FIELDS), value=JSON)
def test_one_field_replaced(
    stack: Stack, key: str, path: str, model: str, field: str, value: Any
) -> None:
    body = {**BASES[path], field: value}
    if "model" in body and field != "model":
        body["model"] = model
    _assert_not_5xx(_post(stack, key, path, model, json=body))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(list(BASES)), model=MODELS, body=JSON | st.binary(max_size=64))
def test_arbitrary_bodies(stack: Stack, key: str, path: str, model: str, body: Any) -> None:
    if isinstance(body, bytes):
        response = _post(stack, key, path, model, content=body)
    else:
        response = _post(stack, key, path, model, json=body)
    _assert_not_5xx(response)
