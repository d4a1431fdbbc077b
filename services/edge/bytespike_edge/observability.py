"""Edge observability: request metrics, gateway overhead, and the GenAI upstream span.

Each HTTP request gets a `RequestRecord` in a context variable, set by
`ObservabilityMiddleware`. The gateway's steps fill it in — `note_model` once the model
resolves to a catalog id, `record_call` when an admitted call finishes — and
`TimedUpstream` adds every second spent waiting on an upstream (sending, response
headers, each body chunk). When the last byte has gone out the middleware records:

- requests by protocol / route template / catalog model / status, and their duration;
- gateway overhead = duration minus upstream waiting (parsing, auth, admission,
  planning, translation, relaying); upstream waiting itself, by provider;
- at `record_call`: tokens by type, time to first token (streams), upstream errors by
  cause (from the call's attempts and in-stream failures).

A model name a client made up never becomes a label (`model` stays "" until the catalog
resolves it); neither does a raw path (`route` is the template, or "unmatched").

Tracing, only when enabled (`bytespike_common.telemetry`): FastAPI server spans with the
Gemini `?key=` redacted, and one GenAI span (`chat <model>`, OTel GenAI semantic
conventions) per call, parenting one HTTP client span per upstream attempt (W3C context
sent upstream), ended with usage, finish reason and response model when the call finishes.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE
from opentelemetry.util.http import redact_url
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bytespike.metering.v1 import metering_pb2
from bytespike.usage.v1 import usage_pb2
from bytespike_common import keys, telemetry
from bytespike_edge import gauges
from bytespike_edge.protocols.errors import protocol_for_path

if TYPE_CHECKING:
    from bytespike_edge.call import CallContext
    from bytespike_edge.upstream.client import Timeouts, Upstream, UpstreamResponse

log = logging.getLogger(__name__)
# Probes are not traffic.
UNMEASURED_PATHS = frozenset({"/healthz", "/readyz"})
_STREAM_FAILURES = frozenset(
    {"upstream_stream_broken", "upstream_stream_error", "upstream_malformed"}
)
_MODEL_FIELD = re.compile(rb'"model(?:Version)?"\s*:\s*"([^"\\]{1,200})"')
_KEY_PARAM = re.compile(r"(^|[?&])key=[^&]*")
_URL_ATTRIBUTES = ("http.url", "http.target", "url.query", "url.full")

_requests = telemetry.Children(telemetry.REQUESTS)
_duration = telemetry.Children(telemetry.REQUEST_DURATION)
_overhead = telemetry.Children(telemetry.GATEWAY_OVERHEAD)
_upstream = telemetry.Children(telemetry.UPSTREAM_DURATION)
_ttft = telemetry.Children(telemetry.TIME_TO_FIRST_TOKEN)
_tokens = telemetry.Children(telemetry.TOKENS)
_upstream_errors = telemetry.Children(telemetry.UPSTREAM_ERRORS)
_denials = telemetry.Children(telemetry.ADMISSION_DENIALS)
_route_protocols: dict[str, str] = {}


# (protocol, route, model, status, stream, provider: None when no upstream was called)
_RequestShape = tuple[str, str, str, int, str, str | None]


class _RequestSeries:
    """The series one finished request moves, found with one lookup of its labels (rather
    than one per metric): every label is bounded, so their combinations are too."""

    __slots__ = ("duration", "overhead", "requests", "upstream")

    def __init__(self, shape: _RequestShape) -> None:
        protocol, route, model, status, stream, provider = shape
        self.requests = _requests(protocol, route, model, str(status))
        self.duration = _duration(protocol, model, stream)
        # None when no upstream was called: no upstream series is made for such requests.
        self.overhead = None if provider is None else _overhead(protocol, stream)
        self.upstream = None if provider is None else _upstream(provider, stream)


_request_series: dict[_RequestShape, _RequestSeries] = {}


@dataclass(slots=True)
class RequestRecord:
    started: float
    model: str = ""
    stream: str = ""
    provider: str = ""
    upstream_seconds: float = 0.0
    upstream_calls: int = 0
    response_model: str = ""
    genai: trace.Span | None = None


_current: ContextVar[RequestRecord | None] = ContextVar("bytespike_request", default=None)


# ---- hooks the gateway calls ----
def note_model(model_id: str) -> None:
    """The request's model resolved to this catalog id (only then does it label metrics)."""
    record = _current.get()
    if record is not None:
        record.model = model_id


def admission_denied(denial: metering_pb2.Denial.ValueType) -> None:
    """Metering refused the request."""
    name = metering_pb2.Denial.Name(denial) if denial in metering_pb2.Denial.values() else ""
    _denials(name.removeprefix("DENIAL_").lower() or telemetry.OTHER).inc()


def metering_unavailable(served_unmetered: bool) -> None:
    if served_unmetered:
        telemetry.UNMETERED_REQUESTS.inc()
    else:
        _denials("metering_unavailable").inc()


def record_call(call: CallContext, usage: usage_pb2.Usage) -> None:
    """An admitted call finished (`Gateway.finish`): tokens, TTFT, upstream errors, span.

    `usage` is what the usage event carries (the upstream's, or the edge's estimate), so
    the token counters match what metering bills.
    """
    try:
        _record_call(call, usage)
    except Exception:
        # Telemetry must never fail a request (the usage event is already queued).
        log.exception("recording telemetry for %s failed", call.request_id)


def _record_call(call: CallContext, usage: usage_pb2.Usage) -> None:
    model, provider = call.model.id, call.provider.id
    record = _current.get()
    started = call.started
    if record is not None:
        record.model, record.provider = model, provider
        record.stream = "true" if call.stream else "false"
        started = record.started
    counts = (
        usage.input_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.output_tokens,
        usage.reasoning_tokens,
    )
    for kind, count in zip(telemetry.TOKEN_TYPES, counts, strict=True):
        if count > 0:
            _tokens(model, provider, kind).inc(count)
    if call.stream and call.first_byte_at is not None:
        _ttft(call.client_protocol, model).observe(max(0.0, call.first_byte_at - started))
    for attempt in call.attempts:
        if attempt.cause:
            _upstream_error(
                attempt.provider_id, attempt.deployment_id, attempt.cause, attempt.status_code
            )
    if call.error_cause in _STREAM_FAILURES:
        _upstream_error(provider, call.deployment.id, call.error_cause, call.status_code)
    if record is not None and record.genai is not None:
        _end_genai(record, call)
        record.genai = None


def _upstream_error(provider: str, deployment: str, cause: str, status: int) -> None:
    label = cause if cause in telemetry.UPSTREAM_ERROR_CAUSES else telemetry.OTHER
    _upstream_errors(provider, deployment, label, str(status)).inc()


# ---- per request ----
def start_request() -> tuple[RequestRecord, Token[RequestRecord | None]]:
    """A request arrived: its record becomes current until `finish_request`."""
    record = RequestRecord(time.perf_counter())
    return record, _current.set(record)


def finish_request(
    token: Token[RequestRecord | None],
    record: RequestRecord,
    protocol: str,
    route: str,
    status: int,
) -> None:
    """The last byte went out (or the request failed): request metrics, labelled."""
    _current.reset(token)
    try:
        _observe(protocol, route, record, status)
    except Exception:
        log.exception("recording request metrics failed")


async def observe_request(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    labels: Callable[[Scope], tuple[str, str]],
) -> None:
    """Runs `app` for one request with its record current, then records the request's
    metrics labelled `labels(scope)` = (protocol, route template): the middleware's and the
    fast lane's one way of measuring a request."""
    record, token = start_request()
    status = 0

    async def send_and_note_status(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    # 499 (client closed the request) when no status line went out.
    failed_status = 499
    try:
        await app(scope, receive, send_and_note_status)
    except Exception:
        failed_status = 500
        raise
    finally:
        protocol, route = labels(scope)
        finish_request(token, record, protocol, route, status or failed_status)


class ObservabilityMiddleware:
    """Pure ASGI (no per-request task or body buffering); see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNMEASURED_PATHS:
            await self.app(scope, receive, send)
            return
        await observe_request(self.app, scope, receive, send, _route_labels)


def _route_labels(scope: Scope) -> tuple[str, str]:
    """(protocol, route template) for a request FastAPI routed (or could not)."""
    route = getattr(scope.get("route"), "path", None)
    if route is None:
        return str(protocol_for_path(scope["path"])), telemetry.UNMATCHED_ROUTE
    protocol = _route_protocols.get(route)
    if protocol is None:
        protocol = _route_protocols[route] = str(protocol_for_path(route))
    return protocol, route


def _observe(protocol: str, route: str, record: RequestRecord, status: int) -> None:
    elapsed = time.perf_counter() - record.started
    upstream = record.provider if record.upstream_calls else None
    key = (protocol, route, record.model, status, record.stream, upstream)
    series = _request_series.get(key)
    if series is None:
        series = _request_series[key] = _RequestSeries(key)
    series.requests.inc()
    series.duration.observe(elapsed)
    if series.overhead is not None and series.upstream is not None:
        series.overhead.observe(max(0.0, elapsed - record.upstream_seconds))
        series.upstream.observe(record.upstream_seconds)
    if record.genai is not None:
        # The call never finished (a bug upstream of `finish`): do not leak the span.
        record.genai.end()


# ---- the timed, traced upstream ----
class TimedUpstream:
    """Wraps the edge's upstream client: time spent waiting on it, and the GenAI span."""

    def __init__(self, inner: Upstream) -> None:
        self._inner = inner
        # Decided once, as for the server spans (`install`): asking the OTel API costs an
        # environment lookup per call.
        self._tracing = telemetry.tracing_enabled()

    async def send(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> UpstreamResponse:
        record = _current.get()
        if record is None:
            return await self._inner.send(url, headers, body, timeouts)
        if record.genai is None and self._tracing:
            record.genai = _start_genai(record)
        record.upstream_calls += 1
        started = time.perf_counter()
        try:
            if record.genai is None or not url.startswith(("http://", "https://")):
                response = await self._inner.send(url, headers, body, timeouts)
            else:
                response = await self._traced_send(record.genai, url, headers, body, timeouts)
        finally:
            record.upstream_seconds += time.perf_counter() - started
        return TimedResponse(response, record)

    async def _traced_send(
        self,
        parent: trace.Span,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        """One HTTP client span per attempt (HTTP semantic conventions), W3C context sent.

        Written here rather than by a transport's instrumentation so it is the same
        whichever client the edge uses (httpx, raw aiohttp): none has a package
        compatible with the pinned OTel release for both.
        """
        where = urlsplit(url)
        span = telemetry.tracer("bytespike.edge").start_span(
            "POST",
            context=trace.set_span_in_context(parent),
            kind=trace.SpanKind.CLIENT,
            attributes={
                "http.request.method": "POST",
                "url.full": redact_url(url),
                "server.address": where.hostname or "",
                "server.port": where.port or (443 if where.scheme == "https" else 80),
            },
        )
        with trace.use_span(span, end_on_exit=True):
            carrier = dict(headers)
            propagate.inject(carrier)
            response = await self._inner.send(url, carrier, body, timeouts)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_attribute(telemetry.ERROR_TYPE, str(response.status_code))
                span.set_status(trace.StatusCode.ERROR)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class TimedResponse:
    def __init__(self, inner: UpstreamResponse, record: RequestRecord) -> None:
        self._inner = inner
        self._record = record
        self.status_code = inner.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._inner.headers  # as late as the inner response decodes them

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        record = self._record
        chunks = aiter(self._inner.aiter_bytes())
        while True:
            started = time.perf_counter()
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            finally:
                record.upstream_seconds += time.perf_counter() - started
            if record.genai is not None and not record.response_model:
                _sniff_model(record, chunk)
            yield chunk

    async def aread(self) -> bytes:
        started = time.perf_counter()
        try:
            body = await self._inner.aread()
        finally:
            self._record.upstream_seconds += time.perf_counter() - started
        if self._record.genai is not None:
            _sniff_model(self._record, body)
        return body

    async def aclose(self) -> None:
        await self._inner.aclose()


def _sniff_model(record: RequestRecord, data: bytes) -> None:
    if record.genai is not None and record.genai.is_recording():
        found = _MODEL_FIELD.search(data)
        if found:
            record.response_model = found.group(1).decode(errors="replace")


def _start_genai(record: RequestRecord) -> trace.Span:
    return telemetry.tracer("bytespike.edge").start_span(
        f"chat {record.model}",
        kind=trace.SpanKind.CLIENT,
        attributes={telemetry.GEN_AI_OPERATION_NAME: "chat", telemetry.MODEL: record.model},
    )


def _end_genai(record: RequestRecord, call: CallContext) -> None:
    span = record.genai
    assert span is not None
    if span.is_recording():
        provider = telemetry.gen_ai_provider(call.provider.id)
        upstream_model = call.deployment.upstream_model
        attributes: dict[str, Any] = {
            telemetry.GEN_AI_PROVIDER_NAME: provider,
            telemetry.GEN_AI_SYSTEM: provider,
            telemetry.GEN_AI_REQUEST_MODEL: upstream_model,
            telemetry.GEN_AI_RESPONSE_MODEL: record.response_model or upstream_model,
            telemetry.REQUEST_ID: call.request_id,
            telemetry.DEPLOYMENT: call.deployment.id,
            telemetry.ATTEMPTS: len(call.attempts),
        }
        if usage := call.usage:
            attributes |= {
                # GenAI semconv: input tokens include cached ones.
                telemetry.GEN_AI_USAGE_INPUT_TOKENS: usage.input_tokens
                + usage.cache_read_tokens
                + usage.cache_write_tokens,
                telemetry.GEN_AI_USAGE_OUTPUT_TOKENS: usage.output_tokens,
                telemetry.GEN_AI_USAGE_CACHE_READ: usage.cache_read_tokens,
                telemetry.GEN_AI_USAGE_CACHE_CREATION: usage.cache_write_tokens,
                telemetry.GEN_AI_USAGE_REASONING: usage.reasoning_tokens,
            }
        if call.finish_reason:
            attributes[telemetry.GEN_AI_RESPONSE_FINISH_REASONS] = [call.finish_reason]
        if call.error_cause:
            attributes[telemetry.ERROR_TYPE] = call.error_cause
            span.set_status(trace.Status(trace.StatusCode.ERROR, call.error_cause))
        span.set_attributes(attributes)
        span.update_name(f"chat {upstream_model}")
    span.end()


# ---- installation ----
def install(app: FastAPI) -> None:
    """From `create_app`: metrics middleware, scrape-time gauges, and (if on) tracing."""
    app.add_middleware(ObservabilityMiddleware)
    gauges.watch(app)
    if telemetry.tracing_enabled():
        FastAPIInstrumentor.instrument_app(
            app,
            excluded_urls=",".join(UNMEASURED_PATHS),
            exclude_spans=["receive", "send"],
            server_request_hook=_redact_key_param,
        )


def trace_server_spans(app: ASGIApp, route_of: Callable[[Scope], str]) -> ASGIApp:
    """For the fast lane (which FastAPI's instrumentation never sees): `app` inside the
    same server span FastAPI's would open (`POST <route template>`, `?key=` redacted),
    when tracing is on; otherwise `app` itself, at no cost per request."""
    if not telemetry.tracing_enabled():
        return app

    def span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
        route = route_of(scope)
        return f"{scope['method']} {route}", {HTTP_ROUTE: route}

    traced: ASGIApp = OpenTelemetryMiddleware(
        app,
        default_span_details=span_details,
        server_request_hook=_redact_key_param,
        exclude_spans=["receive", "send"],
    )
    return traced


def record_exception(exc: Exception) -> None:
    """An unexpected error answered as a 500: on the server span, as FastAPI's would be."""
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def _redact_key_param(span: trace.Span, scope: dict[str, Any]) -> None:
    """Gemini clients may send the API key as `?key=`: it never reaches a span."""
    if not span.is_recording() or b"key=" not in (scope.get("query_string") or b""):
        return
    attributes = getattr(span, "attributes", None) or {}
    for name in _URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str):
            span.set_attribute(name, _KEY_PARAM.sub(r"\1key=REDACTED", keys.redact(value)))
