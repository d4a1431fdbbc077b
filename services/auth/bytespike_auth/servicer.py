"""gRPC faces of the key store: AuthService (hot path) and AuthAdminService.

Store errors become status codes in one place (`_maps_store_errors`); every change that
makes a cached principal stale is published before the RPC answers, so when an admin call
returns, every connected edge has been told.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from bytespike.auth.v1 import auth_pb2, auth_pb2_grpc
from bytespike_auth.messages import (
    account_message,
    key_message,
    limits_from,
    principal_message,
)
from bytespike_auth.records import (
    Conflict,
    Invalid,
    Missing,
    Refused,
    Stale,
    StoreError,
)
from bytespike_auth.revocations import RevocationPublisher
from bytespike_auth.store import KEEP, KeyStore

log = logging.getLogger(__name__)

MAX_GRACE = dt.timedelta(days=30)
_CODES: dict[type[StoreError], grpc.StatusCode] = {
    Invalid: grpc.StatusCode.INVALID_ARGUMENT,
    Missing: grpc.StatusCode.NOT_FOUND,
    Conflict: grpc.StatusCode.ALREADY_EXISTS,
    Stale: grpc.StatusCode.FAILED_PRECONDITION,
    Refused: grpc.StatusCode.UNAUTHENTICATED,
}

S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
# Servicer methods are typed by the generated stubs; the context's own generics add nothing.
Context = grpc.aio.ServicerContext[Any, Any]
Handler = Callable[[S, Req, Context], Awaitable[Resp]]


def _maps_store_errors(method: Handler[S, Req, Resp]) -> Handler[S, Req, Resp]:
    @functools.wraps(method)
    async def handler(self: S, request: Req, context: Context) -> Resp:
        try:
            return await method(self, request, context)
        except StoreError as exc:
            await context.abort(_CODES[type(exc)], str(exc))
            raise  # unreachable: abort raises

    return handler


def _required(value: str, what: str) -> str:
    if not value:
        raise Invalid(f"{what} is required")
    return value


def _future(stamp: Any, what: str) -> dt.datetime:
    value: dt.datetime = stamp.ToDatetime(dt.UTC)
    if value <= dt.datetime.now(dt.UTC):
        raise Invalid(f"{what} must be in the future")
    return value


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, store: KeyStore) -> None:
        self._store = store

    async def Authenticate(
        self, request: auth_pb2.AuthenticateRequest, context: Context
    ) -> auth_pb2.AuthenticateResponse:
        if len(request.key_hash) != 64:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "key_hash must be 64 hex chars")
        try:
            record = await self._store.principal(request.key_hash)
        except (Missing, Refused) as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        return auth_pb2.AuthenticateResponse(principal=principal_message(record))


class AuthAdminServicer(auth_pb2_grpc.AuthAdminServiceServicer):
    def __init__(self, store: KeyStore, revocations: RevocationPublisher) -> None:
        self._store = store
        self._revocations = revocations

    @_maps_store_errors
    async def CreateAccount(
        self, request: auth_pb2.CreateAccountRequest, context: Context
    ) -> auth_pb2.Account:
        record = await self._store.create_account(
            _required(request.name, "name"), request.default_group, list(request.allowed_models)
        )
        log.info("created account %s (%s)", record.id, record.name)
        return account_message(record)

    @_maps_store_errors
    async def GetAccount(
        self, request: auth_pb2.GetAccountRequest, context: Context
    ) -> auth_pb2.Account:
        return account_message(await self._store.find_account(request.account))

    @_maps_store_errors
    async def ListAccounts(
        self, request: auth_pb2.ListAccountsRequest, context: Context
    ) -> auth_pb2.ListAccountsResponse:
        page = await self._store.list_accounts(request.status, request.limit, request.after)
        return auth_pb2.ListAccountsResponse(
            accounts=[account_message(a) for a in page.items], has_more=page.has_more
        )

    @_maps_store_errors
    async def UpdateAccount(
        self, request: auth_pb2.UpdateAccountRequest, context: Context
    ) -> auth_pb2.Account:
        change = await self._store.update_account(
            _required(request.account, "account"),
            name=request.name if request.HasField("name") else None,
            default_group=request.default_group if request.HasField("default_group") else None,
            allowed_models=(
                list(request.allowed_models.models) if request.HasField("allowed_models") else None
            ),
            status=request.status if request.HasField("status") else None,
        )
        await self._revocations.publish_many(change.stale_key_hashes)
        log.info(
            "updated account %s (status %s); %d cached keys invalidated",
            change.account.id,
            change.account.status,
            len(change.stale_key_hashes),
        )
        return account_message(change.account)

    @_maps_store_errors
    async def CreateKey(
        self, request: auth_pb2.CreateKeyRequest, context: Context
    ) -> auth_pb2.CreateKeyResponse:
        expires = (
            _future(request.expires_at, "expires_at") if request.HasField("expires_at") else None
        )
        record, plaintext = await self._store.create_key(
            _required(request.account, "account"),
            request.name,
            group=request.group,
            allowed_models=list(request.allowed_models),
            limits=limits_from(request.limits),
            expires_at=expires,
        )
        log.info("created key %s (%s) for account %s", record.id, record.prefix, record.account_id)
        return auth_pb2.CreateKeyResponse(key=key_message(record), plaintext=plaintext)

    @_maps_store_errors
    async def GetKey(self, request: auth_pb2.GetKeyRequest, context: Context) -> auth_pb2.Key:
        account = _required(request.account, "account")
        return key_message(await self._store.get_key(account, request.key_id))

    @_maps_store_errors
    async def ListKeys(
        self, request: auth_pb2.ListKeysRequest, context: Context
    ) -> auth_pb2.ListKeysResponse:
        page = await self._store.list_keys(
            _required(request.account, "account"), request.status, request.limit, request.after
        )
        return auth_pb2.ListKeysResponse(
            keys=[key_message(k) for k in page.items], has_more=page.has_more
        )

    @_maps_store_errors
    async def RevokeKey(self, request: auth_pb2.RevokeKeyRequest, context: Context) -> auth_pb2.Key:
        account = _required(request.account, "account")
        record, changed = await self._store.revoke_key(account, request.key_id)
        if changed:
            await self._revocations.publish(record.key_hash)
            log.info("revoked key %s", record.id)
        return key_message(record)

    @_maps_store_errors
    async def RotateKey(
        self, request: auth_pb2.RotateKeyRequest, context: Context
    ) -> auth_pb2.RotateKeyResponse:
        grace = dt.timedelta(seconds=request.grace_seconds)
        if not dt.timedelta(0) <= grace <= MAX_GRACE:
            raise Invalid(f"grace_seconds must be between 0 and {int(MAX_GRACE.total_seconds())}")
        rotation = await self._store.rotate_key(
            _required(request.account, "account"),
            request.key_id,
            grace=grace,
            expires_at=(
                _future(request.expires_at, "expires_at")
                if request.HasField("expires_at")
                else KEEP
            ),
        )
        previous = rotation.previous
        # Always: edges drop what they cached of the old key. Revoked now, the next lookup
        # refuses it; with a grace period, the re-fetched principal carries `revoke_at` and
        # each edge refuses the key at that instant itself, rather than up to a sweep
        # interval later when `RevocationScheduler` pushes (that push stays the backstop).
        await self._revocations.publish(previous.key_hash)
        log.info(
            "rotated key %s -> %s (old one revoked %s)",
            previous.id,
            rotation.key.id,
            f"at {previous.revoke_at.isoformat()}" if previous.revoke_at else "now",
        )
        return auth_pb2.RotateKeyResponse(
            key=key_message(rotation.key),
            plaintext=rotation.plaintext,
            previous=key_message(previous),
        )
