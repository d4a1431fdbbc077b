"""Mid-stream failures, cut streams and keepalives (reference §8, §11 cases 23, 24)."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import orjson
import pytest
from google.genai import errors as gerrors

from bytespike_common.errors import UpstreamTimeout
from bytespike_edge.translate.context import TranslationContext
from bytespike_edge.translate.ir import IRRequest, WireProtocol
from bytespike_edge.translate.registry import codec_for
from tests.edge.translate import sdk
from tests.edge.translate.fixtures import ANTHROPIC_STREAM, GEMINI_STREAM, OPENAI_STREAM, Frames
from tests.edge.translate.helpers import relay, sse_events

OVERLOAD: dict[str, Frames] = {
    "anthropic": [
        *ANTHROPIC_STREAM[:8],
        ("error", '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'),
    ],
    "openai": [
        *OPENAI_STREAM[:2],
        (None, '{"error":{"message":"Overloaded","type":"server_error","param":null,"code":null}}'),
    ],
    "gemini": [
        *GEMINI_STREAM[:2],
        (None, '{"error":{"code":503,"message":"Overloaded","status":"UNAVAILABLE"}}'),
    ],
}
UPSTREAMS = list(OVERLOAD)


def run(upstream: str, client: str, frames: Frames) -> tuple[bytes, list[tuple[str | None, Any]]]:
    ctx = TranslationContext(client=WireProtocol(client))
    ctx.include_usage = True
    raw = relay(upstream, client, frames, IRRequest("m", [], ctx))
    return raw, [(e, d if d == "[DONE]" else orjson.loads(d)) for e, d in sse_events(raw)]


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_case_23_anthropic_client_gets_an_error_event(upstream: str) -> None:
    raw, frames = run(upstream, "anthropic", OVERLOAD[upstream])
    assert frames[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    assert "message_stop" not in [e for e, _ in frames]
    assert "message_delta" not in [e for e, _ in frames]
    err = sdk.sdk_error(lambda: sdk.anthropic_stream(raw))
    assert isinstance(err, anthropic.APIStatusError)
    assert err.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_case_23_openai_client_gets_an_error_chunk_and_no_done(upstream: str) -> None:
    raw, frames = run(upstream, "openai", OVERLOAD[upstream])
    assert frames[-1] == (
        None,
        {
            "error": {
                "message": "Overloaded",
                "type": "server_error",
                "param": None,
                "code": "overloaded",
            }
        },
    )
    assert (None, "[DONE]") not in frames
    err = sdk.sdk_error(lambda: sdk.openai_chunks(raw))
    assert isinstance(err, openai.APIError)
    assert err.message == "Overloaded"


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_case_23_gemini_client_gets_a_503_error_frame(upstream: str) -> None:
    raw, frames = run(upstream, "gemini", OVERLOAD[upstream])
    assert frames[-1] == (
        None,
        {"error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}},
    )
    err = sdk.sdk_error(lambda: sdk.gemini_chunks(raw))
    assert isinstance(err, gerrors.APIError)
    assert (err.code, err.status) == (503, "UNAVAILABLE")


@pytest.mark.parametrize(
    ("upstream", "frames"),
    [
        ("anthropic", ANTHROPIC_STREAM[:-1]),  # no message_stop
        ("openai", OPENAI_STREAM[:3]),  # no finish_reason, no [DONE]
        ("gemini", GEMINI_STREAM[:-1]),  # no finishReason (§8.3 step 4)
    ],
)
def test_cut_upstream_stream_is_an_error_not_a_success(upstream: str, frames: Frames) -> None:
    _, out = run(upstream, "anthropic", frames)
    event, body = out[-1]
    assert event == "error"
    assert body["error"]["type"] == "api_error"
    assert "message_stop" not in [e for e, _ in out]


def test_openai_stream_without_done_but_finished_is_a_success() -> None:
    _, out = run("openai", "anthropic", OPENAI_STREAM[:-1])
    assert out[-1] == ("message_stop", {"type": "message_stop"})


def test_malformed_upstream_json_is_an_error() -> None:
    _, out = run("openai", "gemini", [*OPENAI_STREAM[:2], (None, "{not json")])
    assert out[-1] == (
        None,
        {
            "error": {
                "code": 502,
                "message": "malformed chunk from the OpenAI upstream",
                "status": "INTERNAL",
            }
        },
    )


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (
            "anthropic",
            b'event: error\ndata: {"type":"error","error":{"type":"timeout_error","message":"slow"}}\n\n',
        ),
        (
            "openai",
            b'data: {"error":{"message":"slow","type":"server_error","param":null,"code":"timeout"}}\n\n',
        ),
        (
            "gemini",
            b'data: {"error":{"code":504,"message":"slow","status":"DEADLINE_EXCEEDED"}}\n\n',
        ),
    ],
)
def test_gateway_side_error_frames(client: str, expected: bytes) -> None:
    encoder = codec_for(client).stream_encoder("m", TranslationContext(client=WireProtocol(client)))
    assert encoder.error(UpstreamTimeout("slow")) == expected
    assert encoder.error(UpstreamTimeout("again")) == b""  # closed after the first error


@pytest.mark.parametrize("client", ["anthropic", "openai", "gemini"])
def test_case_24_keepalives_are_ignored_by_the_sdks(client: str) -> None:
    ctx = TranslationContext(client=WireProtocol(client))
    decoder = codec_for("openai").stream_decoder(ctx)
    encoder = codec_for(client).stream_encoder("m", ctx)
    raw = encoder.keepalive()
    for event, data in OPENAI_STREAM:
        for ir in decoder.feed(event, data):
            raw += encoder.encode(ir) + encoder.keepalive()
    expected = {
        "anthropic": b'event: ping\ndata: {"type":"ping"}\n\n',
        "openai": b": keepalive\n\n",
        "gemini": b"\n",
    }
    assert encoder.keepalive() == expected[client]
    if client == "anthropic":
        assert [b.type for b in sdk.anthropic_stream(raw).content] == [
            "text",
            "tool_use",
            "tool_use",
        ]
    elif client == "openai":
        assert sdk.openai_chunks(raw)[1].choices[0].delta.content == "Checking"
    else:
        assert sdk.gemini_chunks(raw)[0].text == "Checking"


def test_empty_upstream_answer_still_gives_anthropic_a_block() -> None:
    frames: Frames = [
        (
            None,
            '{"id":"c","choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}',
        ),
        (None, '{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'),
        (None, "[DONE]"),
    ]
    raw, out = run("openai", "anthropic", frames)
    assert [e for e, _ in out] == [
        "message_start",
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert sdk.anthropic_stream(raw).content[0].text == ""  # type: ignore[union-attr]


def test_blocked_prompt_stream_is_a_refusal() -> None:
    frames: Frames = [
        (
            None,
            '{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":9},"responseId":"r"}',
        )
    ]
    _, out = run("gemini", "anthropic", frames)
    assert out[-2][1]["delta"] == {"stop_reason": "refusal", "stop_sequence": None}
    _, chunks = run("gemini", "openai", frames)
    assert chunks[-3][1]["choices"][0]["finish_reason"] == "content_filter"


def test_usage_is_tracked_for_billing_even_when_cut() -> None:
    decoder = codec_for("gemini").stream_decoder(TranslationContext(client=WireProtocol.ANTHROPIC))
    for event, data in GEMINI_STREAM[:2]:
        decoder.feed(event, data)
    assert decoder.usage is not None and decoder.usage.input_tokens == 1831
    decoder.close()
    assert decoder.usage.input_tokens == 1831
