"""The shared telemetry pieces on their own: OTel set-up from OTEL_*, W3C context across
NATS headers, log correlation, gRPC server metrics, the metrics server."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import metrics as prometheus_metrics

from bytespike_common import metrics_server, telemetry
from bytespike_common.grpc_server import GrpcServer
from bytespike_edge import observability


@pytest.mark.parametrize(
    ("environ", "kind"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, OTLPSpanExporter),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, OTLPSpanExporter),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}, None),
        ({"OTEL_TRACES_EXPORTER": "console"}, ConsoleSpanExporter),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            None,
        ),
    ],
)
def test_exporter_follows_the_standard_variables(
    environ: dict[str, str], kind: type | None
) -> None:
    exporter = telemetry._exporter(environ)
    if kind is None:
        assert exporter is None
    else:
        assert isinstance(exporter, kind)
        exporter.shutdown()


def test_nothing_is_configured_without_an_endpoint() -> None:
    before = trace.get_tracer_provider()
    assert telemetry.configure("test", environ={}) is False
    assert trace.get_tracer_provider() is before


def test_no_trace_context_outside_a_span() -> None:
    assert telemetry.trace_headers() == {}
    with telemetry.publish_span("usage.v1.a", "USAGE", "req_1", {}) as headers:
        assert headers == {}


@dataclass
class _Message:
    subject: str
    headers: dict[str, str] | None = field(default_factory=dict)


def test_trace_context_crosses_nats_headers(spans: InMemorySpanExporter) -> None:
    with telemetry.tracer("test").start_as_current_span("request") as request:
        captured = telemetry.trace_headers()
    assert "traceparent" in captured
    # Published later, from another task: the captured context is the parent.
    with telemetry.publish_span("usage.v1.acct", "USAGE", "req_9", captured) as headers:
        message_headers = {"Nats-Msg-Id": "req_9", **headers}
    with telemetry.consume_spans(
        [_Message("usage.v1.acct", message_headers), _Message("usage.v1.b", None)], "USAGE", "m"
    ) as consumed:
        assert len(consumed) == 2
    *_, send, process, orphan = spans.get_finished_spans()
    assert (send.name, send.kind) == ("send USAGE", SpanKind.PRODUCER)
    assert (process.name, process.kind) == ("process USAGE", SpanKind.CONSUMER)
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert send.context is not None and process.parent is not None
    assert process.parent.span_id == send.context.span_id
    # A message published outside any trace starts a trace of its own.
    assert orphan.parent is None
    assert (send.attributes or {})["messaging.message.id"] == "req_9"


def test_a_failed_batch_marks_its_spans(spans: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError), telemetry.consume_spans([_Message("s")], "USAGE", "m"):
        raise RuntimeError("database down")
    (span,) = spans.get_finished_spans()[-1:]
    assert span.status.status_code == StatusCode.ERROR


def test_log_records_carry_the_trace_id(spans: InMemorySpanExporter) -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", (), None)
    with telemetry.tracer("test").start_as_current_span("logging") as span:
        assert telemetry.TraceContextFilter().filter(record)
    assert record.trace_id == format(span.get_span_context().trace_id, "032x")


def test_children_are_cached_per_label_values() -> None:
    children = telemetry.Children(telemetry.ADMISSION_DENIALS)
    assert children("test_reason") is children("test_reason")
    assert children("test_reason") is not children("other_reason")


async def test_grpc_servers_count_rpcs_by_method_and_code(spans: InMemorySpanExporter) -> None:
    def handled(code: str) -> float:
        labels = {"grpc_service": "grpc.health.v1.Health", "grpc_method": "Check"}
        value = REGISTRY.get_sample_value(
            "bytespike_grpc_server_handled_total", {**labels, "grpc_code": code}
        )
        return value or 0.0

    before = handled("OK"), handled("NOT_FOUND")
    server = GrpcServer(name="t", host="127.0.0.1", port=0, service_names=["t.v1.T"], grace=0)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest(service="t.v1.T"))
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Check(health_pb2.HealthCheckRequest(service="nope"))
    finally:
        await server.stop()
    assert (handled("OK") - before[0], handled("NOT_FOUND") - before[1]) == (1, 1)
    # Probes are counted but never traced.
    assert not [s for s in spans.get_finished_spans() if "grpc.health" in s.name]


async def test_metrics_server_serves_the_registry() -> None:
    assert metrics_server.start("127.0.0.1", 0) is None
    server = metrics_server.start("127.0.0.1", 0, ephemeral=True)
    assert server is not None
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{server.port}/metrics")
        assert response.status_code == 200
        assert "# TYPE bytespike_requests_total counter" in response.text
    finally:
        server.stop()
    with pytest.raises(RuntimeError, match="cannot serve metrics"):
        taken = metrics_server.start("127.0.0.1", 0, ephemeral=True)
        assert taken is not None
        try:
            metrics_server.start("127.0.0.1", taken.port)
        finally:
            taken.stop()


@pytest.mark.parametrize("use_created", [False, True])
def test_loop_metrics_expose_what_prometheus_client_would(
    monkeypatch: pytest.MonkeyPatch, use_created: bool
) -> None:
    """The lock-free counter and histogram are drop-in: the same exposition, byte for byte
    (timestamps aside), as prometheus_client's own classes fed the same values."""
    monkeypatch.setattr(prometheus_metrics, "_use_created", use_created)
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    buckets = (0.001, 0.01, 0.1, 1.0)
    for registry, counter, histogram in (
        (ours, telemetry.LoopCounter, telemetry.LoopHistogram),
        (theirs, Counter, Histogram),
    ):
        requests = counter("t_requests", "Requests.", ["route"], registry=registry)
        plain = counter("t_plain", "Unlabelled.", registry=registry)
        duration = histogram(
            "t_seconds", "Duration.", ["route"], buckets=buckets, registry=registry
        )
        for route, value in [("a", 0.0005), ("a", 0.001), ("b", 0.05), ("a", 7.0), ("b", 0.1)]:
            requests.labels(route).inc()
            requests.labels(route).inc(2.5)
            duration.labels(route).observe(value)
        plain.inc()
    # Same series, same values; `_created` differs only by when each was made.
    created = re.compile(rb"(_created\{?[^ ]*) [0-9.e+]+")
    assert created.sub(rb"\1 T", generate_latest(ours)) == created.sub(
        rb"\1 T", generate_latest(theirs)
    )
    assert (b"_created" in generate_latest(ours)) is use_created


def test_loop_metrics_refuse_what_prometheus_client_refuses() -> None:
    registry = CollectorRegistry()
    counter = telemetry.LoopCounter("t_refused", "Refused.", ["route"], registry=registry)
    with pytest.raises(ValueError, match="non-negative"):
        counter.labels("a").inc(-1)
    with pytest.raises(ValueError, match="label"):
        counter.labels()
    counter.labels("a").inc(3)
    counter.labels("a").reset()
    assert registry.get_sample_value("t_refused_total", {"route": "a"}) == 0.0


def test_request_series_are_found_per_request_shape(edge_metrics: CollectorRegistry) -> None:
    """The edge's cached series per request shape: counted under the right labels, and a
    request that never reached an upstream makes no upstream series."""
    sample = edge_metrics.get_sample_value
    requests = {
        "protocol": "openai",
        "route": "/v1/chat/completions",
        "model": "unit-model",
        "status": "401",
    }
    overhead = {"protocol": "openai", "stream": "false"}
    upstream = {"provider": "unit-provider", "stream": "false"}
    for _ in range(2):
        record, token = observability.start_request()
        record.model = "unit-model"
        observability.finish_request(token, record, "openai", "/v1/chat/completions", 401)
    assert sample("bytespike_requests_total", requests) == 2
    assert sample("bytespike_upstream_duration_seconds_count", {**upstream, "stream": ""}) is None
    assert sample("bytespike_gateway_overhead_seconds_count", overhead) is None

    record, token = observability.start_request()
    record.model, record.provider, record.stream = "unit-model", "unit-provider", "false"
    record.upstream_calls, record.upstream_seconds = 1, 0.25
    observability.finish_request(token, record, "openai", "/v1/chat/completions", 200)
    assert sample("bytespike_requests_total", {**requests, "status": "200"}) == 1
    assert sample("bytespike_upstream_duration_seconds_sum", upstream) == 0.25
    assert sample("bytespike_gateway_overhead_seconds_count", overhead) == 1
