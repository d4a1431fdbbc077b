"""A fake LLM vendor: a real HTTP server that records every request and replays scripts.

Run as its own process (`python tests/fakes/upstream.py --port N`) and drive it over HTTP:

- `POST /_control/script` with `[{"status": 200, "json": {...}, "headers": {...}},
  {"sse": ["data: …", …], "delay": 0.1, "chunk_delay": 0.0, "abort_after": 2}, …]` queues
  answers; each vendor request pops the next. `delay` holds the response headers back
  (a hang before the first byte), `chunk_delay` paces frames (a slow first token),
  `abort_after` kills the connection after that many frames (a stream dying midway).
  With an empty queue the vendor's default answer is produced.
- `GET /_control/requests` returns every recorded request (method, path, query, headers,
  JSON body); `DELETE /_control/requests` clears them.

Default answers, streaming and not, for OpenAI Chat Completions (`/v1/chat/completions`),
Anthropic Messages (`/v1/messages`, `/v1/messages/count_tokens`) and Gemini
(`/v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`,
`:countTokens`): the text `fake: <last user text>` and the same usage in each vendor's
convention — canonically 12 uncached input, 5 cache-read, 9 output of which 3 reasoning —
so tests can assert exact numbers whichever protocol served them.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DEFAULT_USAGE = {
    "prompt_tokens": 17,
    "completion_tokens": 9,
    "total_tokens": 26,
    "prompt_tokens_details": {"cached_tokens": 5},
    "completion_tokens_details": {"reasoning_tokens": 3},
}


class FakeVendor:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[dict[str, Any]] = []
        self.cancelled = 0

    async def record(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw.decode(errors="replace")
        entry = {
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "headers": dict(request.headers),
            "body": body,
            "at": time.time(),
        }
        self.requests.append(entry)
        return entry

    async def scripted(self, step: dict[str, Any]) -> Response:
        await asyncio.sleep(float(step.get("delay", 0)))
        status = int(step.get("status", 200))
        headers = dict(step.get("headers") or {})
        if "sse" in step:
            return StreamingResponse(
                self._frames(
                    step["sse"], float(step.get("chunk_delay", 0)), step.get("abort_after")
                ),
                status_code=status,
                media_type="text/event-stream",
                headers=headers,
            )
        return Response(
            orjson.dumps(step.get("json")), status, headers, media_type="application/json"
        )

    async def _frames(
        self, frames: list[str], delay: float, abort_after: int | None = None
    ) -> AsyncIterator[bytes]:
        try:
            for index, frame in enumerate(frames):
                if abort_after is not None and index == abort_after:
                    # Dies mid-body: the server drops the connection without finishing it.
                    raise ConnectionAbortedError("scripted stream death")
                if delay:
                    await asyncio.sleep(delay)
                yield frame.encode() if frame.endswith("\n\n") else (frame + "\n\n").encode()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def openai_chat(self, request: Request) -> Response:
        entry = await self.record(request)
        if self.script:
            return await self.scripted(self.script.pop(0))
        body = entry["body"] or {}
        text = ""
        for message in body.get("messages", []):
            if message.get("role") == "user" and isinstance(message.get("content"), str):
                text = message["content"]
        answer = f"fake: {text}"
        base = {"id": "chatcmpl-fake1", "created": 1761000000, "model": body.get("model")}
        if not body.get("stream"):
            return JSONResponse(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": DEFAULT_USAGE,
                }
            )
        chunk = {**base, "object": "chat.completion.chunk"}
        frames = [
            {
                **chunk,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ],
            }
        ]
        for word in answer.split(" "):
            frames.append(
                {
                    **chunk,
                    "choices": [
                        {"index": 0, "delta": {"content": word + " "}, "finish_reason": None}
                    ],
                }
            )
        frames.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            frames.append({**chunk, "choices": [], "usage": DEFAULT_USAGE})
        lines = [f"data: {orjson.dumps(f).decode()}" for f in frames] + ["data: [DONE]"]
        return await self.scripted({"sse": lines})

    async def anthropic_messages(self, request: Request) -> Response:
        entry = await self.record(request)
        if self.script:
            return await self.scripted(self.script.pop(0))
        body = entry["body"] or {}
        answer = f"fake: {_last_user_text(body.get('messages') or [], 'content')}"
        usage = {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 5,
            "output_tokens": 9,
            "output_tokens_details": {"thinking_tokens": 3},
        }
        message = {
            "id": "msg_fake1",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [{"type": "text", "text": answer}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return JSONResponse(message)
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 1},
        }
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            ("ping", {"type": "ping"}),
        ]
        for word in answer.split(" "):
            delta = {"type": "text_delta", "text": word + " "}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            )
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 9},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        frames = [f"event: {name}\ndata: {orjson.dumps(data).decode()}" for name, data in events]
        return await self.scripted({"sse": frames})

    async def anthropic_count_tokens(self, request: Request) -> Response:
        await self.record(request)
        if self.script:
            return await self.scripted(self.script.pop(0))
        return JSONResponse({"input_tokens": 42})

    async def gemini(self, request: Request) -> Response:
        entry = await self.record(request)
        if self.script:
            return await self.scripted(self.script.pop(0))
        model, _, method = request.path_params["target"].partition(":")
        body = entry["body"] or {}
        if method == "countTokens":
            return JSONResponse({"totalTokens": 42})
        if method not in ("generateContent", "streamGenerateContent"):
            return JSONResponse(
                {"error": {"code": 404, "message": "no such method", "status": "NOT_FOUND"}}, 404
            )
        answer = f"fake: {_last_user_text(body.get('contents') or [], 'parts')}"
        usage = {
            "promptTokenCount": 17,
            "cachedContentTokenCount": 5,
            "candidatesTokenCount": 6,
            "thoughtsTokenCount": 3,
            "totalTokenCount": 26,
        }
        base = {"modelVersion": model, "responseId": "fake-response-1"}
        if method == "generateContent":
            return JSONResponse(
                {
                    "candidates": [
                        {
                            "content": {"role": "model", "parts": [{"text": answer}]},
                            "finishReason": "STOP",
                            "index": 0,
                        }
                    ],
                    "usageMetadata": usage,
                    **base,
                }
            )
        words = answer.split(" ")
        chunks = [
            {
                "candidates": [
                    {"content": {"role": "model", "parts": [{"text": w + " "}]}, "index": 0}
                ],
                **base,
            }
            for w in words
        ]
        chunks[-1]["candidates"][0]["finishReason"] = "STOP"
        chunks[-1]["usageMetadata"] = usage
        return await self.scripted({"sse": [f"data: {orjson.dumps(c).decode()}" for c in chunks]})

    async def set_script(self, request: Request) -> Response:
        self.script.extend(orjson.loads(await request.body()))
        return JSONResponse({"queued": len(self.script)})

    async def get_requests(self, request: Request) -> Response:
        return JSONResponse({"requests": self.requests, "cancelled": self.cancelled})

    async def clear(self, request: Request) -> Response:
        self.requests.clear()
        self.script.clear()
        self.cancelled = 0
        return JSONResponse({})


def _last_user_text(turns: list[dict[str, Any]], field: str) -> str:
    """The last user turn's text, whether content is a string or a list of parts/blocks."""
    for turn in reversed(turns):
        if turn.get("role", "user") != "user":
            continue
        content = turn.get(field)
        if isinstance(content, str):
            return content
        texts = [p.get("text", "") for p in content or [] if isinstance(p, dict) and "text" in p]
        if texts:
            return " ".join(texts)
    return ""


def _guarded(handler: Any) -> Any:
    """A vendor answers nonsense with a 400, never by crashing (fuzz tests send nonsense)."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            error = {
                "message": f"fake vendor: bad request ({type(exc).__name__})",
                "type": "invalid_request_error",
            }
            return JSONResponse({"error": error}, 400)

    return guarded


def create_app() -> Starlette:
    vendor = FakeVendor()
    return Starlette(
        routes=[
            Route("/v1/chat/completions", _guarded(vendor.openai_chat), methods=["POST"]),
            Route("/v1/messages", _guarded(vendor.anthropic_messages), methods=["POST"]),
            Route(
                "/v1/messages/count_tokens",
                _guarded(vendor.anthropic_count_tokens),
                methods=["POST"],
            ),
            Route("/v1beta/models/{target}", _guarded(vendor.gemini), methods=["POST"]),
            Route("/_control/script", vendor.set_script, methods=["POST"]),
            Route("/_control/requests", vendor.get_requests, methods=["GET"]),
            Route("/_control/requests", vendor.clear, methods=["DELETE"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="warning", loop="uvloop")


if __name__ == "__main__":
    main()
