"""The suite in one event loop, traced into memory: router, auth, metering and the edge built
by their real factories, a real nats-server, and the fake vendor served over real HTTP.

Tracing is switched on for this package only: an SDK tracer provider with an in-memory
exporter is installed as the global provider before any service is built (so the
factories install their instrumentation, exactly as `telemetry.configure` would make them
in production) and removed afterwards, so other test packages run untraced.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from bytespike.auth.v1 import auth_pb2, auth_pb2_grpc
from bytespike_auth.server import create_server as create_auth
from bytespike_auth.settings import Settings as AuthSettings
from bytespike_common import metrics_server
from bytespike_common.devstack import free_port
from bytespike_common.grpc_server import GrpcServer
from bytespike_edge.app import create_app
from bytespike_edge.settings import Settings as EdgeSettings
from bytespike_metering.server import create_server as create_metering
from bytespike_metering.settings import Settings as MeteringSettings
from bytespike_router.server import create_server as create_router
from bytespike_router.settings import Settings as RouterSettings
from tests.fakes.upstream import create_app as create_vendor

MODEL = "obs-chat"
UPSTREAM_MODEL = "fake-large"
CATALOG = """
providers:
  fakeai: {{protocol: openai, base_url: "http://127.0.0.1:{port}/v1"}}
models:
  - id: {model}
    max_output_tokens: 1024
    prices: {{input: 1, output: 2, cache_read: 0.5, cache_write: 1.25}}
    deployments: [{{provider: fakeai, upstream_model: {upstream}}}]
groups:
  default: {{models: ["*"]}}
"""


def _install_global_provider(provider: TracerProvider | None) -> None:
    # The API sets its global provider once per process; tests reset it the way
    # opentelemetry-test-utils does, so only this package runs traced.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    if provider is not None:
        trace.set_tracer_provider(provider)


@pytest.fixture(scope="package")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bytespike-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _install_global_provider(provider)
    try:
        yield exporter
    finally:
        _install_global_provider(None)
        provider.shutdown()


@contextlib.asynccontextmanager
async def serve_http(app: Any, port: int) -> AsyncIterator[None]:
    """An ASGI app under uvicorn on 127.0.0.1:port, in this event loop (lifespan included)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            raise RuntimeError(f"uvicorn on {port} did not start") from task.exception()
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        await task


async def _wait_ready(url: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{url} not ready")
            await asyncio.sleep(0.05)


@dataclass
class Suite:
    edge_url: str
    vendor_url: str
    metrics_url: str
    auth_target: str
    usage_stream: str
    key: str

    async def create_key(self, name: str, account: str = "observability", **limits: int) -> str:
        async with grpc.aio.insecure_channel(self.auth_target) as channel:
            admin = auth_pb2_grpc.AuthAdminServiceStub(channel)
            if account != "observability":
                await admin.CreateAccount(auth_pb2.CreateAccountRequest(name=account))
            reply = await admin.CreateKey(
                auth_pb2.CreateKeyRequest(
                    account=account, name=name, limits=auth_pb2.Limits(**limits)
                )
            )
        return reply.plaintext

    async def chat(
        self, key: str | None = None, *, model: str = MODEL, stream: bool = False, **extra: Any
    ) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
        if stream:
            body |= {"stream": True}
        async with httpx.AsyncClient(base_url=self.edge_url, timeout=10) as client:
            response = await client.post(
                "/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {key or self.key}"},
            )
            await response.aread()
            return response

    async def scrape(self) -> str:
        async with httpx.AsyncClient() as client:
            response = await client.get(self.metrics_url)
            response.raise_for_status()
            return response.text


@pytest.fixture(scope="package")
async def suite(
    spans: InMemorySpanExporter, nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Suite]:
    data = tmp_path_factory.mktemp("observability")
    suffix = secrets.token_hex(4)
    stream, prefix = f"USAGE_OBS_{suffix}", f"usage.obs{suffix}"
    vendor_port, edge_port = free_port(), free_port()
    catalog = data / "catalog.yaml"
    await asyncio.to_thread(
        catalog.write_text, CATALOG.format(port=vendor_port, model=MODEL, upstream=UPSTREAM_MODEL)
    )
    async with contextlib.AsyncExitStack() as stack:
        # The vendor is traced too: its server span proves W3C context reached upstream HTTP.
        await stack.enter_async_context(
            serve_http(OpenTelemetryMiddleware(create_vendor()), vendor_port)
        )
        router: GrpcServer = await stack.enter_async_context(
            create_router(
                RouterSettings(
                    port=0, catalog_path=str(catalog), watch_catalog=False, shutdown_grace=0.2
                )
            )
        )
        auth: GrpcServer = await stack.enter_async_context(
            create_auth(
                AuthSettings(
                    port=0,
                    database_url=f"sqlite:///{data / 'auth.db'}",
                    nats_url=nats_url,
                    shutdown_grace=0.2,
                )
            )
        )
        metering: GrpcServer = await stack.enter_async_context(
            create_metering(
                MeteringSettings(
                    port=0,
                    database_url=f"sqlite:///{data / 'metering.db'}",
                    nats_url=nats_url,
                    usage_stream=stream,
                    usage_subject_prefix=prefix,
                    consumer_name=f"metering_{suffix}",
                    router_target=f"127.0.0.1:{router.port}",
                    initial_credit=10**12,
                    shutdown_grace=0.2,
                )
            )
        )
        edge = EdgeSettings(
            port=edge_port,
            metrics_port=0,
            auth_target=f"127.0.0.1:{auth.port}",
            router_target=f"127.0.0.1:{router.port}",
            metering_target=f"127.0.0.1:{metering.port}",
            nats_url=nats_url,
            usage_stream=stream,
            usage_subject_prefix=prefix,
            shutdown_grace=1.0,
        )
        await stack.enter_async_context(serve_http(create_app(edge), edge_port))
        edge_url = f"http://127.0.0.1:{edge_port}"
        await _wait_ready(edge_url)
        scrape = metrics_server.start("127.0.0.1", 0, ephemeral=True)
        assert scrape is not None
        stack.callback(scrape.stop)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{auth.port}") as channel:
            admin = auth_pb2_grpc.AuthAdminServiceStub(channel)
            await admin.CreateAccount(auth_pb2.CreateAccountRequest(name="observability"))
            key = await admin.CreateKey(
                auth_pb2.CreateKeyRequest(account="observability", name="main")
            )
        yield Suite(
            edge_url=edge_url,
            vendor_url=f"http://127.0.0.1:{vendor_port}",
            metrics_url=f"http://127.0.0.1:{scrape.port}/metrics",
            auth_target=f"127.0.0.1:{auth.port}",
            usage_stream=stream,
            key=key.plaintext,
        )
