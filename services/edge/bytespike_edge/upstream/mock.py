"""The offline `mock` provider: an OpenAI Chat Completions upstream answered in-process.

It echoes the last user message, streams word by word and reports usage, so `make run`
works with no network and every layer above the socket (passthrough, usage sniffing,
metering) runs exactly as for a real vendor.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from bytespike_common.ids import new_id
from bytespike_edge.upstream.client import Timeouts, UpstreamResponse


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _last_user_text(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    str(part.get("text", ""))
                    for part in content
                    if isinstance(part, dict) and part.get("type") == "text"
                )
            return ""
    return ""


class MockResponse:
    def __init__(self, status_code: int, chunks: list[bytes], content_type: str) -> None:
        self.status_code = status_code
        self.headers = {"content-type": content_type, "x-request-id": new_id("mock")}
        self._chunks = chunks

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk

    async def aread(self) -> bytes:
        return b"".join(self._chunks)

    async def aclose(self) -> None:
        self._chunks = []


class MockUpstream:
    async def send(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> UpstreamResponse:
        if not url.endswith("/chat/completions"):
            error = {"error": {"message": f"mock: no route {url}", "type": "invalid_request_error"}}
            return MockResponse(404, [orjson.dumps(error)], "application/json")
        request = orjson.loads(body)
        messages = request.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            error = {
                "error": {
                    "message": "messages must be a list of objects",
                    "type": "invalid_request_error",
                }
            }
            return MockResponse(400, [orjson.dumps(error)], "application/json")
        text = _last_user_text(request)
        answer = f"echo: {text}" if text else "echo: (no user text)"
        prompt_text = " ".join(str(m.get("content", "")) for m in messages)
        usage = {
            "prompt_tokens": _estimate_tokens(prompt_text),
            "completion_tokens": _estimate_tokens(answer),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        base = {"id": new_id("chatcmpl"), "created": int(time.time()), "model": request["model"]}
        if request.get("stream"):
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            return MockResponse(
                200, _stream(base, answer, usage, include_usage), "text/event-stream"
            )
        completion = {
            **base,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        return MockResponse(200, [orjson.dumps(completion)], "application/json")

    async def aclose(self) -> None:
        return None


def _stream(
    base: dict[str, Any], answer: str, usage: dict[str, int], include_usage: bool
) -> list[bytes]:
    def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    frames = [frame([{"index": 0, "delta": {"role": "assistant", "content": ""}}])]
    words = answer.split(" ")
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        frames.append(frame([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
    frames.append(frame([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if include_usage:
        frames.append(frame([], usage=usage))
    frames.append(b"data: [DONE]\n\n")
    return frames
