"""In-process pieces the edge's model-discovery and admin tests share: a real auth service
on a loopback port, the shipped catalog as a route table, and any ASGI app served by a real
uvicorn server (SDKs and the CLI talk HTTP to it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import uvicorn
from fastapi import FastAPI

from bytespike.auth.v1 import auth_pb2, auth_pb2_grpc
from bytespike_auth.server import create_server
from bytespike_auth.settings import Settings as AuthSettings
from bytespike_common.routing import RouteIndex
from bytespike_edge.admin.app import create_admin_app
from bytespike_edge.admin.deps import CatalogSource
from bytespike_edge.settings import Settings
from bytespike_router.catalog import load_catalog
from bytespike_router.routes import build_route_table

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret-0123456789"


def shipped_index(environ: Mapping[str, str] | None = None) -> RouteIndex:
    catalog = load_catalog(REPO / "catalog" / "catalog.yaml", environ or {})
    return RouteIndex(build_route_table(catalog))


@contextlib.asynccontextmanager
async def auth_service(database_url: str, nats_url: str) -> AsyncIterator[grpc.aio.Channel]:
    """The real auth service (SQLite, NATS), and a channel to it."""
    settings = AuthSettings(
        port=0,
        database_url=database_url,
        nats_url=nats_url,
        key_hash_secret=SECRET,
        shutdown_grace=0.2,
        revocation_sweep_interval=0.2,
    )
    async with (
        create_server(settings) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield channel


async def make_key(
    channel: grpc.aio.Channel, account: str, **fields: Any
) -> auth_pb2.CreateKeyResponse:
    """Creates the account if needed (with `account_*` fields), then a key."""
    admin = auth_pb2_grpc.AuthAdminServiceStub(channel)
    account_fields = {
        k.removeprefix("account_"): v for k, v in fields.items() if k.startswith("account_")
    }
    with contextlib.suppress(grpc.aio.AioRpcError):
        await admin.CreateAccount(auth_pb2.CreateAccountRequest(name=account, **account_fields))
    key_fields = {k: v for k, v in fields.items() if not k.startswith("account_")}
    return await admin.CreateKey(auth_pb2.CreateKeyRequest(account=account, **key_fields))


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serves `app` (with its lifespan) on a free loopback port; yields the base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


OPERATOR_TOKEN = "operator-token-0123456789"
ACME_TOKEN = "acme-admin-token-0123456789"
# The OpenAI provider has a credential in the gateways these tests build; the others not.
ENVIRON = {"OPENAI_API_KEY": "upstream-credential"}


def admin_app(channel: grpc.aio.Channel, **overrides: Any) -> FastAPI:
    """The edge's admin app over the given auth channel and the shipped catalog, with the
    operator token and an account-scoped token for account "acme"."""
    settings = Settings(
        key_hash_secret=SECRET,
        admin_token=OPERATOR_TOKEN,
        admin_account_tokens={"acme": ACME_TOKEN},
        **overrides,
    )
    index = shipped_index()
    source = CatalogSource(
        index=lambda: index,
        provider_available=lambda p: not p.credential_env or p.credential_env in ENVIRON,
    )
    return create_admin_app(settings, source, auth_channel=channel)
