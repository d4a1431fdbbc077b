"""A fast fake LLM vendor: the three protocols' generate endpoints, streaming and not.

A raw ASGI app on uvicorn + uvloop + httptools, in its own process
(`python -m bench.fake_upstream --port N`). Answers are built once per (protocol, model,
stream) and cached, so a request costs little more than the HTTP parsing: the fake must
never be what the benchmark measures.

- OpenAI `POST …/chat/completions` (reference/protocols.md §3.3-3.4; usage chunk only
  with `stream_options.include_usage`, then `data: [DONE]`),
- Anthropic `POST /v1/messages` (§2.3-2.4; `event:` + `data:` lines, usage in
  `message_start` and `message_delta`),
- Gemini `POST /v1beta/models/{m}:generateContent` and `:streamGenerateContent?alt=sse`
  (§5.2-5.3; no `[DONE]`, the last chunk's `usageMetadata` is authoritative).

Timing is process-wide and changeable at run time with `PUT /_bench/config` and a JSON
body `{"ttfb": seconds, "chunks": n, "chunk_delay": seconds}`: `ttfb` holds the response
headers back, `chunks` is the number of content deltas a stream carries, `chunk_delay`
paces the frames. `GET /_bench/stats` counts requests and streams cut by the client.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import uvicorn

from bench.asgi import Receive, Scope, Send, read_body, respond

CREATED = 1761000000
PROMPT_TOKENS = 42
CACHED_TOKENS = 8
WORDS = ("The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog.")


@dataclass(slots=True)
class Timing:
    ttfb: float = 0.0
    chunks: int = 16
    chunk_delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Answer:
    """A ready response: the whole body, or the SSE frames of a stream."""

    content_type: bytes
    body: bytes = b""
    frames: tuple[bytes, ...] = ()


def _words(count: int) -> list[str]:
    return [WORDS[i % len(WORDS)] if i == 0 else " " + WORDS[i % len(WORDS)] for i in range(count)]


def _sse(data: Any, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def openai_answer(model: str, stream: bool, chunks: int, include_usage: bool) -> Answer:
    words = _words(chunks)
    usage = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": len(words),
        "total_tokens": PROMPT_TOKENS + len(words),
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    base = {"id": "chatcmpl-bench", "created": CREATED, "model": model}
    if not stream:
        message = {"role": "assistant", "content": "".join(words), "refusal": None}
        body = {
            **base,
            "object": "chat.completion",
            "system_fingerprint": "fp_bench",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            ],
            "usage": usage,
        }
        return Answer(b"application/json", body=orjson.dumps(body))
    chunk = {**base, "object": "chat.completion.chunk", "system_fingerprint": "fp_bench"}
    null_usage = {"usage": None} if include_usage else {}

    def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**chunk, "choices": [choice], **null_usage})

    frames = [frame({"role": "assistant", "content": "", "refusal": None})]
    frames += [frame({"content": word}) for word in words]
    frames.append(frame({}, "stop"))
    if include_usage:
        frames.append(_sse({**chunk, "choices": [], "usage": usage}))
    frames.append(b"data: [DONE]\n\n")
    return Answer(b"text/event-stream", frames=tuple(frames))


def anthropic_answer(model: str, stream: bool, chunks: int) -> Answer:
    words = _words(chunks)
    usage = {
        "input_tokens": PROMPT_TOKENS - CACHED_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": CACHED_TOKENS,
        "output_tokens": len(words),
        "service_tier": "standard",
    }
    message = {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "".join(words)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    if not stream:
        return Answer(b"application/json", body=orjson.dumps(message))
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    frames = [
        _sse({"type": "message_start", "message": start}, "message_start"),
        _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
    ]
    frames += [
        _sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": word},
            },
            "content_block_delta",
        )
        for word in words
    ]
    frames += [
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(words)},
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    return Answer(b"text/event-stream", frames=tuple(frames))


def gemini_answer(model: str, stream: bool, chunks: int) -> Answer:
    words = _words(chunks)
    final_usage = {
        "promptTokenCount": PROMPT_TOKENS,
        "cachedContentTokenCount": CACHED_TOKENS,
        "candidatesTokenCount": len(words),
        "totalTokenCount": PROMPT_TOKENS + len(words),
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": PROMPT_TOKENS}],
    }
    envelope = {"modelVersion": model, "responseId": "bench-gemini"}

    def candidate(text: str, finish: str | None) -> dict[str, Any]:
        found: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
        if finish:
            found["finishReason"] = finish
        found["index"] = 0
        return found

    if not stream:
        body = {
            "candidates": [candidate("".join(words), "STOP")],
            "usageMetadata": final_usage,
            **envelope,
        }
        return Answer(b"application/json", body=orjson.dumps(body))
    early = {"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS}
    frames = [
        _sse({"candidates": [candidate(word, None)], "usageMetadata": early, **envelope})
        for word in words
    ]
    frames.append(
        _sse({"candidates": [candidate("", "STOP")], "usageMetadata": final_usage, **envelope})
    )
    return Answer(b"text/event-stream", frames=tuple(frames))


class FakeVendor:
    """The ASGI app. Answers are cached by (protocol, model, stream, usage, chunks)."""

    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self.requests = 0
        self.cut = 0
        self._answers: dict[tuple[str, str, bool, bool, int], Answer] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        path: str = scope["path"]
        if path.startswith("/_bench/"):
            await self._control(scope["method"], path, body, send)
            return
        answer = self._answer(path, body)
        if answer is None:
            error = {"error": {"message": f"no route {path}", "type": "invalid_request_error"}}
            await respond(send, 404, b"application/json", orjson.dumps(error))
            return
        self.requests += 1
        timing = self.timing
        if timing.ttfb:
            await asyncio.sleep(timing.ttfb)
        if not answer.frames:
            await respond(send, 200, answer.content_type, answer.body)
            return
        await self._stream(send, answer, timing.chunk_delay)

    def _answer(self, path: str, raw: bytes) -> Answer | None:
        if path.endswith("/chat/completions"):
            protocol = "openai"
        elif path.endswith("/v1/messages"):
            protocol = "anthropic"
        elif path.startswith("/v1beta/models/") and ":" in path:
            protocol = "gemini"
        else:
            return None
        try:
            data = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if protocol == "gemini":
            model, _, method = path.removeprefix("/v1beta/models/").partition(":")
            stream = method == "streamGenerateContent"
        else:
            model, stream = str(data.get("model") or ""), data.get("stream") is True
        options = data.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        key = (protocol, model, stream, usage, self.timing.chunks)
        found = self._answers.get(key)
        if found is None:
            chunks = self.timing.chunks
            if protocol == "openai":
                found = openai_answer(model, stream, chunks, usage)
            elif protocol == "anthropic":
                found = anthropic_answer(model, stream, chunks)
            else:
                found = gemini_answer(model, stream, chunks)
            if len(self._answers) < 1024:
                self._answers[key] = found
        return found

    async def _stream(self, send: Send, answer: Answer, delay: float) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", answer.content_type),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        try:
            for frame in answer.frames:
                if delay:
                    await asyncio.sleep(delay)
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (OSError, asyncio.CancelledError):
            self.cut += 1
            raise

    async def _control(self, method: str, path: str, body: bytes, send: Send) -> None:
        if path == "/_bench/config" and method == "PUT":
            values = orjson.loads(body)
            self.timing = Timing(**{**asdict(self.timing), **values})
            self._answers.clear()
        elif path not in ("/_bench/config", "/_bench/stats", "/_bench/health"):
            await respond(send, 404, b"application/json", b"{}")
            return
        state = {**asdict(self.timing), "requests": self.requests, "cut": self.cut}
        await respond(send, 200, b"application/json", orjson.dumps(state))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttfb", type=float, default=0.0, help="seconds before the headers")
    parser.add_argument("--chunks", type=int, default=16, help="content deltas per stream")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between frames")
    args = parser.parse_args()
    vendor = FakeVendor(Timing(args.ttfb, args.chunks, args.chunk_delay))
    uvicorn.run(
        vendor,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
