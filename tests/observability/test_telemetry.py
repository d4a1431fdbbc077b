"""The shared telemetry pieces on their own: OTel set-up from OTEL_*, W3C context across
NATS headers, log correlation, gRPC server metrics, the metrics server."""

from __future__ import annotations

import logging
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
from prometheus_client import REGISTRY

from bytespike_common import metrics_server, telemetry
from bytespike_common.grpc_server import GrpcServer


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
