"""The edge application: `create_app(settings)` wires the control plane, upstreams and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from bytespike_common import messaging
from bytespike_common.errors import GatewayError, InternalError, InvalidRequest, NotFound
from bytespike_common.ids import request_id as new_request_id
from bytespike_edge import observability
from bytespike_edge.control.auth import Authenticator, BadKeyGuard, ClientAddressMiddleware
from bytespike_edge.control.channels import open_channel
from bytespike_edge.control.metering import Admitter
from bytespike_edge.control.routes import RouteWatcher
from bytespike_edge.control.usage import UsagePublisher
from bytespike_edge.fastlane import EdgeApp
from bytespike_edge.gateway import Gateway
from bytespike_edge.protocols import anthropic, gemini, models, openai
from bytespike_edge.protocols.errors import protocol_for_path, render
from bytespike_edge.settings import Settings
from bytespike_edge.upstream.client import Upstream
from bytespike_edge.upstream.dispatch import UpstreamDispatcher

log = logging.getLogger(__name__)


async def _within(seconds: float, step: Callable[[], Awaitable[object]]) -> None:
    """One shutdown step, bounded: a stuck peer must not keep the process from exiting."""
    try:
        await asyncio.wait_for(step(), seconds)
    except TimeoutError:
        log.warning("shutdown step %s took over %.0fs; moving on", step, seconds)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def _gateway(settings: Settings, upstream: Upstream | None) -> AsyncIterator[Gateway]:
    async with contextlib.AsyncExitStack() as stack:
        channels = [
            open_channel(t)
            for t in (settings.auth_target, settings.router_target, settings.metering_target)
        ]
        for channel in channels:
            stack.push_async_callback(_within, 2.0, channel.close)
        auth_channel, router_channel, metering_channel = channels
        nc = await messaging.connect(settings.nats_url, "bytespike-edge")
        stack.push_async_callback(_within, 5.0, nc.drain)
        js = nc.jetstream()
        await messaging.ensure_usage_stream(
            js, settings.usage_stream, settings.usage_subject_prefix
        )
        usage = UsagePublisher(
            nc,
            stream=settings.usage_stream,
            subject_prefix=settings.usage_subject_prefix,
            max_pending=settings.usage_queue_size,
        )
        usage.start()
        stack.push_async_callback(usage.drain, settings.shutdown_grace)
        authenticator = Authenticator(
            auth_channel,
            settings.key_hash_secret_bytes,
            cache_size=settings.principal_cache_size,
            cache_ttl=settings.principal_cache_ttl,
            negative_ttl=settings.negative_cache_ttl,
            timeout=settings.auth_timeout,
            guard=BadKeyGuard(
                burst=settings.bad_key_burst,
                refill_seconds=settings.bad_key_refill_seconds,
                max_clients=settings.bad_key_clients,
            ),
        )
        await authenticator.subscribe_revocations(nc)
        routes = RouteWatcher(router_channel)
        stack.push_async_callback(_cancel, asyncio.create_task(routes.run(), name="route-watch"))
        admitter = Admitter(
            metering_channel,
            timeout=settings.metering_timeout,
            fail_open=settings.metering_fail_mode == "open",
            routes=routes,
            lease_requests=settings.lease_requests,
        )
        await admitter.start(nc)
        # Before the channels close (the exit stack unwinds in reverse): leases go back first.
        stack.push_async_callback(_within, 2.0, admitter.aclose)
        client = observability.TimedUpstream(
            upstream
            or UpstreamDispatcher.default(
                settings.upstream_max_connections, settings.upstream_client
            )
        )
        stack.push_async_callback(_within, 2.0, client.aclose)
        gateway = Gateway(
            settings,
            authenticator=authenticator,
            routes=routes,
            admitter=admitter,
            upstream=client,
            usage=usage,
            nats=nc,
        )
        stack.push_async_callback(_within, 2.0, gateway.media.aclose)
        yield gateway


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or new_request_id()


def _install_error_handlers(app: FastAPI) -> None:
    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return render(protocol_for_path(request.url.path), exc, _request_id(request))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        err: GatewayError
        if exc.status_code == 404:
            err = NotFound(f"No route for {request.method} {request.url.path}.", code="unknown_url")
        else:
            err = InvalidRequest(str(exc.detail), status=exc.status_code)
        return await gateway_error(request, err)

    async def validation_error(request: Request, exc: Exception) -> Response:
        return await gateway_error(request, InvalidRequest(f"Invalid request: {exc}"))

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return await gateway_error(request, InternalError("Internal gateway error."))

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)


def create_app(settings: Settings, upstream: Upstream | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _gateway(settings, upstream) as gateway:
            app.state.gateway = gateway
            yield

    app = EdgeApp(
        title="ByteSpike Gateway", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    _install_error_handlers(app)
    observability.install(app)
    app.trace_lane()
    app.add_middleware(ClientAddressMiddleware)
    app.include_router(openai.router)
    app.include_router(anthropic.router)
    app.include_router(gemini.router)
    app.include_router(models.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        ready = gateway.ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    return app
