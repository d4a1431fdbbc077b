"""gRPC interceptors: Prometheus metrics for every server, OTel spans when tracing is on.

`GrpcServer` puts `server_interceptors()` in front of a service's own; channels the edge
dials get `client_interceptors()`. Both come from the official OTel gRPC instrumentation
and are only installed when tracing is enabled, so an untraced process pays nothing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.instrumentation.grpc.filters import any_of, negate, service_name

from bytespike_common import telemetry

# Probes and tooling, not traffic: never traced (still counted).
_UNTRACED = negate(
    any_of(
        service_name("grpc.health.v1.Health"),
        service_name("grpc.reflection.v1alpha.ServerReflection"),
    )
)
_Req = TypeVar("_Req")
_Res = TypeVar("_Res")
_handled = telemetry.Children(telemetry.GRPC_HANDLED)
_handling = telemetry.Children(telemetry.GRPC_HANDLING)


def _split(full_method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def _code_name(context: Any, error: BaseException | None) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if error is None:
        return grpc.StatusCode.OK.name
    # An exception the servicer did not turn into a status: gRPC answers UNKNOWN.
    return grpc.StatusCode.UNKNOWN.name


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts RPCs by method and status code and times unary ones.

    Only methods the server registered are counted (unknown ones never reach a handler),
    so the label values are the proto's method names.
    """

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Res] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Res] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, method = _split(handler_call_details.method)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _timed_unary(handler.unary_unary, service, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _counted_stream(handler.unary_stream, service, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        # Client- and bidi-streaming RPCs: none in the suite's contracts; left unwrapped.
        return handler


def _timed_unary(behavior: Any, service: str, method: str) -> Any:
    async def wrapper(request: Any, context: Any) -> Any:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            return await behavior(request, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _handling(service, method).observe(time.perf_counter() - started)
            _handled(service, method, _code_name(context, error)).inc()

    return wrapper


def _counted_stream(behavior: Any, service: str, method: str) -> Any:
    # Server streams (WatchRoutes) live for hours: counted when they end, never timed.
    async def wrapper(request: Any, context: Any) -> AsyncIterator[Any]:
        error: BaseException | None = None
        try:
            async for response in behavior(request, context):
                yield response
        except BaseException as exc:
            error = exc
            raise
        finally:
            _handled(service, method, _code_name(context, error)).inc()

    return wrapper


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    interceptors: list[grpc.aio.ServerInterceptor] = [MetricsInterceptor()]
    if telemetry.tracing_enabled():
        interceptors.append(aio_server_interceptor(filter_=_UNTRACED))  # type: ignore[no-untyped-call]
    return interceptors


def client_interceptors() -> list[grpc.aio.ClientInterceptor] | None:
    """OTel client interceptors (W3C context in the call metadata) when tracing is on."""
    if not telemetry.tracing_enabled():
        return None
    interceptors: list[grpc.aio.ClientInterceptor] = aio_client_interceptors()  # type: ignore[no-untyped-call]
    return interceptors
