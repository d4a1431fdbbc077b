"""The admin application: `create_admin_app(settings, catalog)`.

Served by the edge process on its own port (`BYTESPIKE_EDGE_ADMIN_PORT`, never the public
one), next to the public app. It calls auth's `AuthAdminService` and metering's
`MeteringAdminService` over channels of its own and reads the catalog from the public app's
route table (`public_catalog`). OpenAPI at `/openapi.json`, interactive docs at `/docs`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

from bytespike.router.v1 import router_pb2
from bytespike_common.routing import RouteIndex
from bytespike_edge.admin import accounts, catalog, credits, keys
from bytespike_edge.admin.deps import AuthAdmin, CatalogSource, MeteringAdmin
from bytespike_edge.admin.security import AdminTokens
from bytespike_edge.control.auth import BadKeyGuard
from bytespike_edge.control.channels import open_channel
from bytespike_edge.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """
Accounts, API keys, policies, credits and usage of a ByteSpike Gateway.

**Authentication**: `Authorization: Bearer <token>`. The operator token
(`BYTESPIKE_EDGE_ADMIN_TOKEN`) reaches every account; an account-scoped token
(`BYTESPIKE_EDGE_ADMIN_ACCOUNT_TOKENS`) reaches only its own account's keys, and reads
its own balance, ledger and usage.

**Errors**: `{"detail": "..."}`; malformed requests are 422 with one entry per field
(`{"detail": [{"loc": ["body", "group"], "msg": "...", "type": "..."}]}`), taken names 409,
unknown accounts and keys 404, a service (auth, metering) unreachable 503.
"""

TAGS = [
    {"name": "accounts", "description": "Organisations: status, default group, model cap."},
    {"name": "keys", "description": "API keys of one account: create, revoke, rotate."},
    {"name": "catalog", "description": "Routing groups and models keys can be given."},
    {
        "name": "credits",
        "description": "Top-ups, adjustments, balances, the ledger and usage (metering).",
    },
]


def public_catalog(public: FastAPI) -> CatalogSource:
    """The route table and credential check of the public app in the same process."""

    def index() -> RouteIndex | None:
        gateway = getattr(public.state, "gateway", None)
        return gateway.routes.index if gateway is not None else None

    def provider_available(provider: router_pb2.Provider) -> bool:
        return bool(public.state.gateway.provider_available(provider))

    return CatalogSource(index=index, provider_available=provider_available)


def create_admin_app(
    settings: Settings, catalog_source: CatalogSource, auth_channel: grpc.aio.Channel | None = None
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            channel = auth_channel
            if channel is None:
                channel = open_channel(settings.auth_target)
                stack.push_async_callback(channel.close)
            app.state.auth_admin = AuthAdmin(channel, settings.admin_rpc_timeout)
            metering = open_channel(settings.metering_target)
            stack.push_async_callback(metering.close)
            app.state.metering_admin = MeteringAdmin(metering, settings.admin_rpc_timeout)
            yield

    app = FastAPI(
        title="ByteSpike Gateway admin API",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.catalog = catalog_source
    app.state.admin_tokens = tokens = AdminTokens(
        settings.admin_token,
        settings.admin_account_tokens,
        BadKeyGuard(
            burst=settings.bad_key_burst,
            refill_seconds=settings.bad_key_refill_seconds,
            max_clients=settings.bad_key_clients,
        ),
    )
    if tokens.open:
        log.warning("admin API without an operator token: anyone who reaches its port is admin")
    for module in (accounts, keys, credits, catalog):
        app.include_router(module.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    return app
