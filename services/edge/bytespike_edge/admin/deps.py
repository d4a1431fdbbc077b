"""The admin API's dependencies as `Annotated` aliases: the caller, the auth and metering
services, the route table, and the account a request addresses (resolved and scope-checked
once)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import grpc
from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bytespike.auth.v1 import auth_pb2, auth_pb2_grpc
from bytespike.metering.v1 import metering_pb2_grpc
from bytespike.router.v1 import router_pb2
from bytespike_common.errors import AuthenticationFailed, RateLimited
from bytespike_common.routing import RouteIndex
from bytespike_edge.admin.security import AdminTokens, Caller

T = TypeVar("T")

# gRPC status from auth or metering → HTTP status of the admin API.
_HTTP_STATUS = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
}


async def _call(
    service: str, method: Callable[..., Awaitable[T]], request: Any, timeout: float
) -> T:
    try:
        return await method(request, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        status = _HTTP_STATUS.get(exc.code(), 502)
        detail = exc.details() or exc.code().name
        if status >= 500:
            detail = f"The {service} service failed: {detail}"
        raise HTTPException(status, detail) from exc


class AuthAdmin:
    """The auth service's admin RPCs with a deadline and HTTP errors."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float) -> None:
        self.stub = auth_pb2_grpc.AuthAdminServiceStub(channel)
        self._timeout = timeout

    async def call(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        return await _call("auth", method, request, self._timeout)


class MeteringAdmin:
    """Metering's admin RPCs (credits, balances, ledger, usage) with a deadline and HTTP
    errors: unreachable is 503, a reused idempotency key 409."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float) -> None:
        self.stub = metering_pb2_grpc.MeteringAdminServiceStub(channel)
        self._timeout = timeout

    async def call(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        return await _call("metering", method, request, self._timeout)


def get_auth(request: Request) -> AuthAdmin:
    auth: AuthAdmin = request.app.state.auth_admin
    return auth


def get_metering(request: Request) -> MeteringAdmin:
    metering: MeteringAdmin = request.app.state.metering_admin
    return metering


@dataclass(frozen=True, slots=True)
class CatalogSource:
    """Where the admin API reads the catalog: the route table the public app's watcher holds
    (the admin API never watches on its own) and the edge's credential check."""

    index: Callable[[], RouteIndex | None]
    provider_available: Callable[[router_pb2.Provider], bool]


def get_catalog(request: Request) -> CatalogSource:
    catalog: CatalogSource = request.app.state.catalog
    return catalog


def get_index(request: Request) -> RouteIndex:
    index = get_catalog(request).index()
    if index is None:
        raise HTTPException(503, "The edge has no route table yet; retry shortly.")
    return index


_bearer = HTTPBearer(
    auto_error=False,
    description="The operator token, or an account-scoped admin token.",
)


def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    tokens: AdminTokens = request.app.state.admin_tokens
    client = request.client.host if request.client else None
    try:
        return tokens.identify(credentials.credentials if credentials else None, client)
    except RateLimited as exc:
        retry = str(max(1, round(exc.retry_after or 1)))
        raise HTTPException(429, exc.message, headers={"Retry-After": retry}) from exc
    except AuthenticationFailed as exc:
        raise HTTPException(401, exc.message, headers={"WWW-Authenticate": "Bearer"}) from exc


AuthDep = Annotated[AuthAdmin, Depends(get_auth)]
MeteringDep = Annotated[MeteringAdmin, Depends(get_metering)]
IndexDep = Annotated[RouteIndex, Depends(get_index)]
CatalogDep = Annotated[CatalogSource, Depends(get_catalog)]
CallerDep = Annotated[Caller, Depends(get_caller)]


def require_operator(caller: CallerDep) -> Caller:
    if not caller.is_operator:
        raise HTTPException(403, "This operation needs the operator token.")
    return caller


async def get_account(
    account: Annotated[str, Path(description="Account id or name.")],
    caller: CallerDep,
    auth: AuthDep,
) -> auth_pb2.Account:
    """The addressed account, if the caller may manage it (403 otherwise, whether or not it
    exists: a scoped token learns nothing about other accounts)."""
    try:
        found = await auth.call(auth.stub.GetAccount, auth_pb2.GetAccountRequest(account=account))
    except HTTPException as exc:
        if exc.status_code == 404 and not caller.is_operator:
            raise HTTPException(403, "This token may not manage that account.") from exc
        raise
    if not caller.may_manage(found.id, found.name):
        raise HTTPException(403, "This token may not manage that account.")
    return found


OperatorDep = Annotated[Caller, Depends(require_operator)]
AccountDep = Annotated[auth_pb2.Account, Depends(get_account)]
