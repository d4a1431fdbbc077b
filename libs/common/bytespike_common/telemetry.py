"""Telemetry, named once: Prometheus metrics, span names and attributes, and the OTel set-up.

Every metric the suite exports is defined here, with the `bytespike_` prefix, its unit in
the name and a closed label set. Label values are bounded by construction: route templates
(never raw paths), catalog model/provider/deployment ids (never a client's raw model name),
status codes, and the closed cause sets below. Key ids and account ids never become labels.

    metric                                      type       labels                       where
    bytespike_requests_total                    counter    protocol route model status  edge
    bytespike_request_duration_seconds          histogram  protocol model stream        edge
    bytespike_gateway_overhead_seconds          histogram  protocol stream              edge
    bytespike_upstream_duration_seconds         histogram  provider stream              edge
    bytespike_time_to_first_token_seconds       histogram  protocol model               edge
    bytespike_tokens_total                      counter    model provider type          edge
    bytespike_upstream_errors_total             counter    provider deployment cause status  edge
    bytespike_admission_denials_total           counter    reason                       edge
    bytespike_unmetered_requests_total          counter    -                            edge
    bytespike_circuit_state                     gauge      deployment                   edge
    bytespike_usage_publish_pending             gauge      -                            edge
    bytespike_usage_published_total             counter    -                            edge
    bytespike_grpc_server_handled_total         counter    grpc_service grpc_method grpc_code  gRPC
    bytespike_grpc_server_handling_seconds      histogram  grpc_service grpc_method     gRPC
    bytespike_credits_charged_total             counter    model                        metering
    bytespike_settlement_lag_seconds            histogram  -                            metering

Traces use OpenTelemetry, configured by the standard `OTEL_*` variables: nothing is set up
(the API's no-op provider, and no instrumentation installed) unless
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. W3C trace
context crosses NATS in message headers (`publish_span` / `consume_spans`).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_NAMESPACE, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Histogram, disable_created_metrics
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

PREFIX = "bytespike"
NAMESPACE = "bytespike"

# ---- label values from closed sets ----
TOKEN_TYPES = ("input", "cache_read", "cache_write", "output", "reasoning")
# Attempt causes (usage.proto `Attempt.cause`) and the in-stream upstream failures.
UPSTREAM_ERROR_CAUSES = frozenset(
    {
        "connect",
        "timeout",
        "http_status",
        "misconfigured",
        "protocol",
        "cancelled",
        "upstream_stream_broken",
        "upstream_stream_error",
        "upstream_malformed",
    }
)
OTHER = "other"
UNMATCHED_ROUTE = "unmatched"

# ---- buckets (seconds) ----
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
# The gateway's own cost per request is budgeted well under a millisecond (DESIGN §9).
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60)
GRPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
SETTLEMENT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


# ---- metrics updated on the event loop ----
class LoopCounter(Counter):
    """A `Counter` whose series are only ever moved from one thread (a service's event
    loop): each series a plain float, where prometheus_client keeps a value behind a lock
    (~80 ns an increment here against ~340). Scrapes may read from another thread: a read
    of a float is atomic under the GIL, and prometheus_client's own histograms are not
    read atomically across buckets either. No exemplars, no multiprocess mode."""

    _total: float

    def _metric_init(self) -> None:
        self._total = 0.0
        self._created = time.time()

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self._total += amount

    def reset(self) -> None:
        self._total = 0.0
        self._created = time.time()

    def _child_samples(self) -> Iterable[Sample]:
        total = Sample("_total", {}, self._total, None, None)
        if prometheus_metrics._use_created:
            return (total, Sample("_created", {}, self._created, None, None))
        return (total,)


class LoopHistogram(Histogram):
    """A `Histogram` moved only from one thread, as `LoopCounter`: one list of bucket counts
    and a float sum per series, the bucket found by bisection (~190 ns an observation
    against ~700). Observations are finite numbers (durations)."""

    _counts: list[float]
    _total: float

    def _metric_init(self) -> None:
        self._counts = [0.0] * len(self._upper_bounds)
        self._total = 0.0
        self._created = time.time()

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        self._total += amount
        # The first bucket whose upper bound is >= amount (the last one is +Inf).
        self._counts[bisect.bisect_left(self._upper_bounds, amount)] += 1

    def _child_samples(self) -> Iterable[Sample]:
        samples = []
        cumulative = 0.0
        for bound, count in zip(self._upper_bounds, list(self._counts), strict=True):
            cumulative += count
            le = floatToGoString(bound)  # type: ignore[no-untyped-call]
            samples.append(Sample("_bucket", {"le": le}, cumulative, None, None))
        samples.append(Sample("_count", {}, cumulative, None, None))
        if self._upper_bounds[0] >= 0:  # as prometheus_client: no sum with negative buckets
            samples.append(Sample("_sum", {}, self._total, None, None))
        if prometheus_metrics._use_created:
            samples.append(Sample("_created", {}, self._created, None, None))
        return tuple(samples)


# ---- edge ----
REQUESTS = LoopCounter(
    f"{PREFIX}_requests",
    "API requests by protocol, route template, catalog model and HTTP status.",
    ["protocol", "route", "model", "status"],
)
REQUEST_DURATION = LoopHistogram(
    f"{PREFIX}_request_duration_seconds",
    "From request arrival to the last byte of the response.",
    ["protocol", "model", "stream"],
    buckets=REQUEST_BUCKETS,
)
GATEWAY_OVERHEAD = LoopHistogram(
    f"{PREFIX}_gateway_overhead_seconds",
    "Edge time per request excluding the time spent waiting on the upstream.",
    ["protocol", "stream"],
    buckets=OVERHEAD_BUCKETS,
)
UPSTREAM_DURATION = LoopHistogram(
    f"{PREFIX}_upstream_duration_seconds",
    "Time per request spent waiting on upstreams (every attempt, headers and body).",
    ["provider", "stream"],
    buckets=REQUEST_BUCKETS,
)
TIME_TO_FIRST_TOKEN = LoopHistogram(
    f"{PREFIX}_time_to_first_token_seconds",
    "Streams: from request arrival to the first frame relayed to the client.",
    ["protocol", "model"],
    buckets=TTFT_BUCKETS,
)
TOKENS = LoopCounter(
    f"{PREFIX}_tokens",
    "Tokens by type (input excludes cache; output includes reasoning, also counted alone).",
    ["model", "provider", "type"],
)
UPSTREAM_ERRORS = LoopCounter(
    f"{PREFIX}_upstream_errors",
    "Failed upstream attempts and broken upstream streams, by cause.",
    ["provider", "deployment", "cause", "status"],
)
ADMISSION_DENIALS = Counter(
    f"{PREFIX}_admission_denials",
    "Requests metering refused (or could not admit: metering_unavailable).",
    ["reason"],
)
UNMETERED_REQUESTS = LoopCounter(
    f"{PREFIX}_unmetered_requests",
    "Requests served without a hold because metering was unreachable (fail mode open).",
)
# Collected at scrape time from the live edge (see bytespike_edge.observability).
CIRCUIT_STATE = f"{PREFIX}_circuit_state"
USAGE_PUBLISH_PENDING = f"{PREFIX}_usage_publish_pending"
USAGE_PUBLISHED = f"{PREFIX}_usage_published"

# ---- gRPC services ----
GRPC_HANDLED = Counter(
    f"{PREFIX}_grpc_server_handled",
    "RPCs completed, by method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_HANDLING = Histogram(
    f"{PREFIX}_grpc_server_handling_seconds",
    "Unary RPC handling time.",
    ["grpc_service", "grpc_method"],
    buckets=GRPC_BUCKETS,
)

# ---- metering ----
CREDITS_CHARGED = Counter(
    f"{PREFIX}_credits_charged",
    "Micro-credits charged at settlement (1 credit = 1,000,000).",
    ["model"],
)
SETTLEMENT_LAG = LoopHistogram(
    f"{PREFIX}_settlement_lag_seconds",
    "From the end of a request to its usage being settled (new events only).",
    buckets=SETTLEMENT_BUCKETS,
)

# ---- span names and attributes (OTel GenAI and messaging semantic conventions) ----
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING = "gen_ai.usage.reasoning.output_tokens"
ERROR_TYPE = "error.type"
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_DESTINATION_NAME = "messaging.destination.name"
MESSAGING_MESSAGE_ID = "messaging.message.id"
MESSAGING_CONSUMER_GROUP = "messaging.consumer.group.name"
REQUEST_ID = f"{PREFIX}.request_id"
MODEL = f"{PREFIX}.model"
DEPLOYMENT = f"{PREFIX}.deployment"
ATTEMPTS = f"{PREFIX}.attempts"
# Provider ids (catalog) whose well-known gen_ai.provider.name differs from the id.
GEN_AI_PROVIDERS = {"gemini": "gcp.gemini", "deepseek-anthropic": "deepseek"}


def gen_ai_provider(provider_id: str) -> str:
    return GEN_AI_PROVIDERS.get(provider_id, provider_id)


# ---- cached label children ----
C = TypeVar("C")
C_co = TypeVar("C_co", covariant=True)


class _Labelled(Protocol[C_co]):
    def labels(self, *values: str) -> C_co: ...


class Children(Generic[C]):
    """`.labels()` children by label values, cached: every label value here is bounded."""

    __slots__ = ("_cache", "_metric")

    def __init__(self, metric: _Labelled[C]) -> None:
        self._metric = metric
        self._cache: dict[tuple[str, ...], C] = {}

    def __call__(self, *values: str) -> C:
        child = self._cache.get(values)
        if child is None:
            child = self._cache[values] = self._metric.labels(*values)
        return child


_credits_charged = Children(CREDITS_CHARGED)


def record_settlement(model: str, cost: int, finished_at: Timestamp) -> None:
    """Metering committed a new charge (call once per settled event, after the commit).

    Only a priced charge labels by model: a price exists only for catalog models, so an
    event naming anything else cannot add a label value.
    """
    if cost > 0:
        _credits_charged(model).inc(cost)
    if finished_at.seconds:
        lag = time.time() - (finished_at.seconds + finished_at.nanos / 1e9)
        SETTLEMENT_LAG.observe(max(0.0, lag))


# ---- OpenTelemetry set-up ----
def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _exporter(environ: Mapping[str, str]) -> SpanExporter | None:
    """The span exporter the standard variables ask for, or None for no tracing."""
    if _truthy(environ.get("OTEL_SDK_DISABLED")):
        return None
    kind = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if kind == "console":
        return ConsoleSpanExporter()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if kind != "otlp" or not endpoint:
        return None
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    if protocol != "grpc":
        log.error(
            "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported (only grpc): no tracing", protocol
        )
        return None
    # Imported here: the exporter pulls in its gRPC stubs, which untraced processes never need.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    # Reads OTEL_EXPORTER_OTLP_{ENDPOINT,HEADERS,INSECURE,CERTIFICATE,TIMEOUT,COMPRESSION}.
    return OTLPSpanExporter()


def configure(
    service: str, environ: Mapping[str, str] = os.environ, version: str = "0.1.0"
) -> bool:
    """Process start-up: tracing from `OTEL_*` (True if enabled); Prometheus without `_created`.

    With no OTLP endpoint nothing is installed: the OTel API stays a no-op and the
    instrumentation hooks check `tracing_enabled()` before wrapping anything.
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]
    exporter = _exporter(environ)
    if exporter is None:
        return False
    attributes: dict[str, Any] = {SERVICE_NAMESPACE: NAMESPACE, "service.version": version}
    if not environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = f"{PREFIX}-{service}"
    # The sampler comes from OTEL_TRACES_SAMPLER(_ARG), the batching from OTEL_BSP_*.
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    install_log_correlation()
    log.info("tracing enabled for %s", service)
    return True


def tracing_enabled() -> bool:
    """True once an SDK tracer provider is installed (by `configure` or a test)."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


class TraceContextFilter(logging.Filter):
    """Adds `trace_id`/`span_id` to log records made inside a span (JSON logs show them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


def install_log_correlation() -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, TraceContextFilter) for f in handler.filters):
            handler.addFilter(TraceContextFilter())


# ---- W3C trace context across NATS ----
def trace_headers() -> dict[str, str]:
    """The current trace context as message headers ({} outside a recorded span)."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(carrier)
    return carrier


@contextlib.contextmanager
def publish_span(
    subject: str, destination: str, message_id: str, parent: Mapping[str, str]
) -> Iterator[dict[str, str]]:
    """A PRODUCER span under `parent` (headers captured with `trace_headers`).

    Yields the headers to publish with, carrying this span's context so the consumer's
    span is its child. Outside a trace it yields {} and records nothing.
    """
    if not parent or not tracing_enabled():
        yield {}
        return
    span = tracer("bytespike.messaging").start_span(
        f"send {destination}",
        context=propagate.extract(parent),
        kind=SpanKind.PRODUCER,
        attributes={
            MESSAGING_SYSTEM: "nats",
            MESSAGING_OPERATION_TYPE: "send",
            MESSAGING_OPERATION_NAME: "publish",
            MESSAGING_DESTINATION_NAME: subject,
            MESSAGING_MESSAGE_ID: message_id,
        },
    )
    with trace.use_span(span, end_on_exit=True):
        headers: dict[str, str] = {}
        propagate.inject(headers)
        yield headers


class _Message(Protocol):
    @property
    def headers(self) -> dict[str, str] | None: ...

    @property
    def subject(self) -> str: ...


@contextlib.contextmanager
def consume_spans(
    messages: Sequence[_Message], destination: str, consumer: str
) -> Iterator[list[trace.Span]]:
    """One CONSUMER span per message, each a child of its publisher's context.

    A batch is processed together, so every span covers the whole batch; an exception
    marks them all failed. No-op (an empty list) when tracing is off.
    """
    if not tracing_enabled():
        yield []
        return
    spans = [
        tracer("bytespike.messaging").start_span(
            f"process {destination}",
            context=propagate.extract(message.headers or {}),
            kind=SpanKind.CONSUMER,
            attributes={
                MESSAGING_SYSTEM: "nats",
                MESSAGING_OPERATION_TYPE: "process",
                MESSAGING_OPERATION_NAME: "process",
                MESSAGING_DESTINATION_NAME: message.subject,
                MESSAGING_CONSUMER_GROUP: consumer,
            },
        )
        for message in messages
    ]
    try:
        yield spans
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        for span in spans:
            span.end()
