"""Translation cost per protocol pair: `python -m bench.codecs` (or `make bench-codecs`).

For each of the nine client→upstream pairs it times, in-process and single-threaded:
request translation (client decode + upstream encode + serialisation) of a typical
request, response translation of a typical answer, and a 200-chunk stream (upstream frames
→ IR events → client frames). Same-protocol pairs are measured the way the edge serves
them — passthrough: the model rewritten in the request, frames sniffed for usage — and the
run counts JSON serialisations during passthrough streaming, which must be zero.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from bytespike_edge import relay
from bytespike_edge.translate.ir import WireProtocol
from bytespike_edge.translate.registry import codec_for
from bytespike_edge.translate.sse import SSEParser

P = WireProtocol
TOOLS_O = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
REQUESTS: dict[WireProtocol, dict[str, Any]] = {
    P.OPENAI: {
        "model": "m",
        "max_tokens": 512,
        "temperature": 0.3,
        "tools": TOOLS_O,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the weather in Oslo? " * 20},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21C"},
            {"role": "user", "content": "And tomorrow?"},
        ],
    },
    P.ANTHROPIC: {
        "model": "m",
        "max_tokens": 512,
        "system": "You are terse.",
        "temperature": 0.3,
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather",
                "input_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            }
        ],
        "messages": [
            {"role": "user", "content": "What is the weather in Oslo? " * 20},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny, 21C"},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
    },
    P.GEMINI: {
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "generationConfig": {"maxOutputTokens": 512, "temperature": 0.3},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"city": {"type": "STRING"}},
                            "required": ["city"],
                        },
                    }
                ]
            }
        ],
        "contents": [
            {"role": "user", "parts": [{"text": "What is the weather in Oslo? " * 20}]},
            {
                "role": "model",
                "parts": [
                    {"text": "Let me check."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "name": "get_weather",
                            "response": {"output": "Sunny, 21C"},
                        }
                    },
                    {"text": "And tomorrow?"},
                ],
            },
        ],
    },
}
TEXT = "Tomorrow looks sunny with light wind and a high of twenty-three degrees."
RESPONSES: dict[WireProtocol, dict[str, Any]] = {
    P.OPENAI: {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": 300,
            "completion_tokens": 20,
            "total_tokens": 320,
            "prompt_tokens_details": {"cached_tokens": 100},
        },
    },
    P.ANTHROPIC: {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 200, "cache_read_input_tokens": 100, "output_tokens": 20},
    },
    P.GEMINI: {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": TEXT}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 300,
            "cachedContentTokenCount": 100,
            "candidatesTokenCount": 20,
            "totalTokenCount": 320,
        },
        "modelVersion": "m",
        "responseId": "r1",
    },
}
CHUNKS = 200


def stream_frames(protocol: WireProtocol) -> list[bytes]:
    def sse(data: Any, event: str | None = None) -> bytes:
        head = f"event: {event}\n".encode() if event else b""
        return head + b"data: " + orjson.dumps(data) + b"\n\n"

    if protocol == P.OPENAI:
        base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        frames = [
            sse(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                    "usage": None,
                }
            )
        ]
        frames += [
            sse({**base, "choices": [{"index": 0, "delta": {"content": f"w{i} "}}], "usage": None})
            for i in range(CHUNKS)
        ]
        frames += [
            sse(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    "usage": None,
                }
            ),
            sse(
                {
                    **base,
                    "choices": [],
                    "usage": {"prompt_tokens": 300, "completion_tokens": 200, "total_tokens": 500},
                }
            ),
            b"data: [DONE]\n\n",
        ]
        return frames
    if protocol == P.ANTHROPIC:
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "m",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 300, "output_tokens": 1},
            },
        }
        frames = [
            sse(start, "message_start"),
            sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
        ]
        frames += [
            sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": f"w{i} "},
                },
                "content_block_delta",
            )
            for i in range(CHUNKS)
        ]
        frames += [
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 200},
                },
                "message_delta",
            ),
            sse({"type": "message_stop"}, "message_stop"),
        ]
        return frames
    frames = [
        sse(
            {
                "candidates": [
                    {"content": {"role": "model", "parts": [{"text": f"w{i} "}]}, "index": 0}
                ],
                "modelVersion": "m",
            }
        )
        for i in range(CHUNKS)
    ]
    frames.append(
        sse(
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": ""}]},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 300,
                    "candidatesTokenCount": 200,
                    "totalTokenCount": 500,
                },
                "modelVersion": "m",
            }
        )
    )
    return frames


def timed(fn: Callable[[], object], seconds: float) -> float:
    """Median microseconds per call over repeated batches."""
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        started = time.perf_counter()
        for _ in range(20):
            fn()
        samples.append((time.perf_counter() - started) / 20 * 1e6)
    return statistics.median(samples)


def pair_costs(client: WireProtocol, upstream: WireProtocol, seconds: float) -> dict[str, float]:
    ccodec, ucodec = codec_for(client), codec_for(upstream)
    body, answer, frames = REQUESTS[client], RESPONSES[upstream], stream_frames(upstream)
    if client == upstream:

        def request() -> object:
            return orjson.dumps(ccodec.rewrite_model(body, "up"))

        def response() -> object:
            return ccodec.sniff_usage(orjson.loads(orjson.dumps(answer)))

        def stream() -> object:
            sniffer = ccodec.usage_sniffer(body)
            for frame in frames:
                event, data = relay.frame_fields(frame)
                if data is not None:
                    sniffer.feed(event, data)
            return sniffer.usage
    else:

        def request() -> object:
            ir = ccodec.decode_request(body)
            ir.model = "m"
            return orjson.dumps(ucodec.encode_request(ir, "up"))

        def response() -> object:
            ir = ccodec.decode_request(body)
            decoded = ucodec.decode_response(answer, ir.ctx)
            return orjson.dumps(ccodec.encode_response(decoded, "m", ir.ctx))

        def stream() -> object:
            ir = ccodec.decode_request(body)
            parser, decoder = SSEParser(), ucodec.stream_decoder(ir.ctx)
            encoder = ccodec.stream_encoder("m", ir.ctx)
            out = 0
            for frame in frames:
                for event in parser.feed(frame):
                    for item in decoder.feed(event.event, event.data):
                        out += len(encoder.encode(item))
            for item in decoder.close():
                out += len(encoder.encode(item))
            return out

    return {
        "request_us": timed(request, seconds),
        "response_us": timed(response, seconds),
        "stream_us": timed(stream, seconds),
    }


def passthrough_serialisations() -> int:
    """JSON serialisations while sniffing passthrough streams of every protocol: must be 0."""
    calls = 0
    real = orjson.dumps

    def counting(*args: Any, **kwargs: Any) -> bytes:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    frames = {p: stream_frames(p) for p in P}
    orjson.dumps = counting  # type: ignore[assignment]
    try:
        for protocol, items in frames.items():
            sniffer = codec_for(protocol).usage_sniffer(REQUESTS[protocol])
            for frame in items:
                event, data = relay.frame_fields(frame)
                if data is not None:
                    sniffer.feed(event, data)
    finally:
        orjson.dumps = real  # type: ignore[assignment]
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.3, help="time budget per measurement")
    args = parser.parse_args()
    header = ("client→upstream", "request µs", "response µs", "200-chunk stream µs", "per chunk µs")
    print(f"{header[0]:<34}{header[1]:>12}{header[2]:>13}{header[3]:>21}{header[4]:>14}")
    for client in P:
        for upstream in P:
            costs = pair_costs(client, upstream, args.seconds)
            label = f"{client.value}→{upstream.value}" + (
                " (passthrough)" if client == upstream else ""
            )
            print(
                f"{label:<34}{costs['request_us']:>12.1f}{costs['response_us']:>13.1f}"
                f"{costs['stream_us']:>21.0f}{costs['stream_us'] / CHUNKS:>14.2f}"
            )
    print(f"JSON serialisations while relaying passthrough streams: {passthrough_serialisations()}")


if __name__ == "__main__":
    main()
