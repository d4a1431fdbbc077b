"""Authentication at the edge: keyed hash → principal, cached, with pushed revocations."""

from __future__ import annotations

import logging

import grpc
from cachetools import TTLCache
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bytespike.auth.v1 import auth_pb2, auth_pb2_grpc
from bytespike_common import keys
from bytespike_common.errors import AuthenticationFailed, DependencyUnavailable
from bytespike_common.messaging import KEY_REVOKED_SUBJECT

log = logging.getLogger(__name__)

Principal = auth_pb2.Principal


class Authenticator:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        secret: bytes,
        *,
        cache_size: int,
        cache_ttl: float,
        negative_ttl: float,
        timeout: float,
    ) -> None:
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)
        self._secret = secret
        self._cache: TTLCache[str, Principal] = TTLCache(cache_size, cache_ttl)
        self._refused: TTLCache[str, str] = TTLCache(min(cache_size, 10_000), negative_ttl)
        self._timeout = timeout

    async def authenticate(self, key: str | None) -> Principal:
        if not key:
            raise AuthenticationFailed("Missing API key.", code="missing_api_key")
        if not keys.is_well_formed(key):
            raise AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        key_hash = keys.hash_key(self._secret, key)
        principal = self._cache.get(key_hash)
        if principal is not None:
            return principal
        if key_hash in self._refused:
            raise AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        try:
            reply = await self._stub.Authenticate(
                auth_pb2.AuthenticateRequest(key_hash=key_hash), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                self._refused[key_hash] = exc.details() or ""
                raise AuthenticationFailed("Invalid API key.", code="invalid_api_key") from exc
            # Fail closed: no principal, no service.
            raise DependencyUnavailable("Authentication is temporarily unavailable.") from exc
        self._cache[key_hash] = reply.principal
        return reply.principal

    def forget(self, key_hash: str) -> None:
        self._cache.pop(key_hash, None)

    async def subscribe_revocations(self, nc: NATS) -> None:
        async def on_revoked(message: Msg) -> None:
            self.forget(message.data.decode())

        await nc.subscribe(KEY_REVOKED_SUBJECT, cb=on_revoked)
