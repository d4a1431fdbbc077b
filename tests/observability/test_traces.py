"""One request, one connected trace: edge → auth, metering (gRPC) → upstream HTTP → NATS →
the metering consumer, with the GenAI semantic-convention attributes on the upstream span."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.observability.conftest import MODEL, UPSTREAM_MODEL, Suite


def _trace_of(spans: Sequence[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def _one(spans: Sequence[ReadableSpan], name: str, kind: SpanKind) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.kind == kind]
    assert len(found) == 1, (name, kind, [(s.name, s.kind) for s in spans])
    return found[0]


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


async def _request_trace(
    spans: InMemorySpanExporter, request_id: str, stream_name: str, timeout: float = 10.0
) -> list[ReadableSpan]:
    """Every span of the request's trace, once the metering consumer has processed it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        finished = spans.get_finished_spans()
        genai = [
            s for s in finished if (s.attributes or {}).get("bytespike.request_id") == request_id
        ]
        if genai:
            assert genai[0].context is not None
            in_trace = _trace_of(finished, genai[0].context.trace_id)
            if any(s.name == f"process {stream_name}" for s in in_trace):
                return in_trace
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no complete trace for {request_id}")
        await asyncio.sleep(0.05)


async def test_one_request_is_one_connected_trace(
    suite: Suite, spans: InMemorySpanExporter
) -> None:
    # A key (and account) the edge has not seen yet, so the request calls auth, and metering
    # for an admission lease.
    response = await suite.chat(await suite.create_key("trace-test", account="trace-test"))
    assert response.status_code == 200, response.text
    trace = await _request_trace(spans, response.headers["x-request-id"], suite.usage_stream)

    by_id = {_span_id(s): s for s in trace}
    (root,) = [s for s in trace if s.parent is None]
    assert (root.name, root.kind) == ("POST /v1/chat/completions", SpanKind.SERVER)
    # Connected: every other span's parent is in the same trace.
    assert all(_parent_id(s) in by_id for s in trace if s is not root)

    root_id = _span_id(root)
    for method in ("auth.v1.AuthService/Authenticate", "metering.v1.MeteringService/Lease"):
        name = f"/bytespike.{method}"
        client = _one(trace, name, SpanKind.CLIENT)
        server = _one(trace, name, SpanKind.SERVER)
        assert _parent_id(client) == root_id
        assert _parent_id(server) == _span_id(client)

    genai = _one(trace, f"chat {UPSTREAM_MODEL}", SpanKind.CLIENT)
    assert _parent_id(genai) == root_id
    http_client = [s for s in trace if _parent_id(s) == _span_id(genai)]
    assert [(s.kind, s.name) for s in http_client] == [(SpanKind.CLIENT, "POST")]
    vendor = [s for s in trace if _parent_id(s) == _span_id(http_client[0])]
    assert [(s.kind, s.name) for s in vendor] == [(SpanKind.SERVER, "POST /v1/chat/completions")]

    send = _one(trace, f"send {suite.usage_stream}", SpanKind.PRODUCER)
    assert _parent_id(send) == root_id
    process = _one(trace, f"process {suite.usage_stream}", SpanKind.CONSUMER)
    assert _parent_id(process) == _span_id(send)
    assert (process.attributes or {})["messaging.system"] == "nats"


async def test_upstream_span_carries_gen_ai_attributes(
    suite: Suite, spans: InMemorySpanExporter
) -> None:
    response = await suite.chat(stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200, response.text
    trace = await _request_trace(spans, response.headers["x-request-id"], suite.usage_stream)
    genai = _one(trace, f"chat {UPSTREAM_MODEL}", SpanKind.CLIENT)
    attributes = dict(genai.attributes or {})
    # The fake vendor reports 17 prompt tokens of which 5 cached, 9 output of which 3 reasoning.
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"] == "fakeai"
    assert attributes["gen_ai.request.model"] == UPSTREAM_MODEL
    assert attributes["gen_ai.response.model"] == UPSTREAM_MODEL
    assert attributes["gen_ai.usage.input_tokens"] == 17
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 5
    assert attributes["gen_ai.usage.output_tokens"] == 9
    assert attributes["gen_ai.usage.reasoning.output_tokens"] == 3
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["bytespike.model"] == MODEL
    assert "error.type" not in attributes


async def test_no_api_key_reaches_a_span(suite: Suite, spans: InMemorySpanExporter) -> None:
    # Gemini clients may pass the key as ?key=; the edge's server span must not keep it.
    async with httpx.AsyncClient(base_url=suite.edge_url) as client:
        await client.get("/v1/models", params={"key": suite.key})
    await suite.chat()
    assert suite.key.startswith("sk-byts-")
    leaked = [
        (s.name, name)
        for s in spans.get_finished_spans()
        for name, value in (s.attributes or {}).items()
        if suite.key in str(value)
    ]
    assert leaked == []
    urls = [
        str(value)
        for s in spans.get_finished_spans()
        for name, value in (s.attributes or {}).items()
        if name in {"http.url", "http.target", "url.query"} and "key=" in str(value)
    ]
    assert urls and all("key=REDACTED" in url for url in urls)
