"""gRPC faces of the key store: AuthService (hot path) and AuthAdminService."""

from __future__ import annotations

import datetime as dt
import logging

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from bytespike.auth.v1 import auth_pb2, auth_pb2_grpc
from bytespike_auth.revocations import RevocationPublisher
from bytespike_auth.store import (
    AccountRecord,
    Conflict,
    KeyLimits,
    KeyRecord,
    KeyStore,
    Missing,
    Refused,
)

log = logging.getLogger(__name__)


def _ts(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _limits(limits: KeyLimits) -> auth_pb2.Limits:
    return auth_pb2.Limits(rpm=limits.rpm, tpm=limits.tpm, concurrency=limits.concurrency)


def account_message(record: AccountRecord) -> auth_pb2.Account:
    return auth_pb2.Account(
        id=record.id,
        name=record.name,
        status=record.status,
        default_group=record.default_group,
        allowed_models=record.allowed_models,
        created_at=_ts(record.created_at),
    )


def key_message(record: KeyRecord) -> auth_pb2.Key:
    return auth_pb2.Key(
        id=record.id,
        account_id=record.account_id,
        name=record.name,
        group=record.group,
        prefix=record.prefix,
        status=record.status,
        allowed_models=record.allowed_models,
        limits=_limits(record.limits),
        created_at=_ts(record.created_at),
        expires_at=_ts(record.expires_at),
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, store: KeyStore) -> None:
        self._store = store

    async def Authenticate(
        self, request: auth_pb2.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.AuthenticateResponse:
        if len(request.key_hash) != 64:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "key_hash must be 64 hex chars")
        try:
            record = await self._store.principal(request.key_hash)
        except (Missing, Refused) as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        key, account = record.key, record.account
        return auth_pb2.AuthenticateResponse(
            principal=auth_pb2.Principal(
                account_id=account.id,
                account_name=account.name,
                key_id=key.id,
                key_name=key.name,
                group=key.group,
                account_allowed_models=account.allowed_models,
                key_allowed_models=key.allowed_models,
                limits=_limits(key.limits),
                expires_at=_ts(key.expires_at),
            )
        )


class AuthAdminServicer(auth_pb2_grpc.AuthAdminServiceServicer):
    def __init__(self, store: KeyStore, revocations: RevocationPublisher) -> None:
        self._store = store
        self._revocations = revocations

    async def CreateAccount(
        self, request: auth_pb2.CreateAccountRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.Account:
        if not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name is required")
        try:
            record = await self._store.create_account(
                request.name, request.default_group, list(request.allowed_models)
            )
        except Conflict as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        return account_message(record)

    async def CreateKey(
        self, request: auth_pb2.CreateKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateKeyResponse:
        if not request.account or not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "account and name are required")
        limits = KeyLimits(
            rpm=request.limits.rpm, tpm=request.limits.tpm, concurrency=request.limits.concurrency
        )
        expires = request.expires_at.ToDatetime(dt.UTC) if request.HasField("expires_at") else None
        try:
            record, plaintext = await self._store.create_key(
                request.account,
                request.name,
                group=request.group,
                allowed_models=list(request.allowed_models),
                limits=limits,
                expires_at=expires,
            )
        except Missing as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except Conflict as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        log.info("created key %s (%s) for account %s", record.id, record.prefix, record.account_id)
        return auth_pb2.CreateKeyResponse(key=key_message(record), plaintext=plaintext)

    async def RevokeKey(
        self, request: auth_pb2.RevokeKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.Key:
        try:
            record = await self._store.revoke_key(request.key_id)
        except Missing as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        await self._revocations.publish(record.key_hash)
        log.info("revoked key %s", record.id)
        return key_message(record)
