"""Authentication at the edge: keyed hash → principal, cached, with pushed invalidations.

- Principals are cached per edge (bounded, TTL). A cached principal is re-checked against
  its own `expires_at` and `revoke_at` on every hit, so an expiry or the end of a rotation
  grace period is enforced on time even if a push is lost.
- Auth publishes a key hash on `auth.v1.key_revoked` whenever a cached principal goes stale
  (revocation, rotation, account disabled or re-policied); every edge forgets it at once.
- Lookups compare nothing secret in Python: the key is hashed (HMAC-SHA256) and auth finds
  the hash by an indexed SQL equality.
- Bad keys are budgeted per client address (`BadKeyGuard`): a client that keeps presenting
  unknown keys gets 429 for keys not already cached as good, while every other client, and
  its own known-good keys, are served as usual.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

import grpc
from cachetools import LRUCache, TTLCache
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from starlette.types import ASGIApp, Receive, Scope, Send

from bytespike.auth.v1 import auth_pb2, auth_pb2_grpc
from bytespike_common import keys
from bytespike_common.errors import AuthenticationFailed, DependencyUnavailable, RateLimited
from bytespike_common.messaging import KEY_REVOKED_SUBJECT

log = logging.getLogger(__name__)

Principal = auth_pb2.Principal

# The calling client's address, set per request by `ClientAddressMiddleware`. A context
# variable, so every protocol module's `authenticate(key)` is budgeted without having to
# pass the request along.
client_address: ContextVar[str | None] = ContextVar("bytespike_client_address", default=None)


class ClientAddressMiddleware:
    """Pure ASGI: publishes the client address (after uvicorn's trusted-proxy rewrite)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        token = client_address.set(client[0] if client else None)
        try:
            await self.app(scope, receive, send)
        finally:
            client_address.reset(token)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class BadKeyGuard:
    """A token bucket per client address, spent by failed authentications only.

    Memory is bounded by `max_clients` (least recently seen dropped). A client behind a
    shared address (NAT) shares the budget; its cached good keys are never refused.
    """

    def __init__(
        self,
        *,
        burst: int,
        refill_seconds: float,
        max_clients: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._refill = refill_seconds
        self._buckets: LRUCache[str, _Bucket] = LRUCache(max(1, max_clients))
        self._clock = clock

    def _current(self, client: str) -> _Bucket | None:
        bucket = self._buckets.get(client)
        if bucket is not None:
            now = self._clock()
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) / self._refill)
            bucket.stamp = now
        return bucket

    def check(self, client: str | None) -> None:
        """Raises RateLimited while the client's budget of failures is spent."""
        if client is None or self._burst <= 0:
            return
        bucket = self._current(client)
        if bucket is not None and bucket.tokens < 1:
            raise RateLimited(
                "Too many requests with invalid credentials from this client; retry later.",
                code="too_many_invalid_keys",
                retry_after=(1 - bucket.tokens) * self._refill,
            )

    def failed(self, client: str | None) -> None:
        if client is None or self._burst <= 0:
            return
        bucket = self._current(client) or _Bucket(float(self._burst), self._clock())
        bucket.tokens -= 1
        self._buckets[client] = bucket


def _usable_until(principal: Principal) -> float:
    """The wall-clock second from which the principal's key is refused (expiry, rotation)."""
    until = float("inf")
    for field in ("expires_at", "revoke_at"):
        if principal.HasField(field):
            stamp = getattr(principal, field)
            until = min(until, stamp.seconds + stamp.nanos / 1e9)
    return until


class PrincipalCache:
    """Principals by key hash, each with its deadlines worked out once, when cached.

    A hit is one dict lookup and two comparisons: the entry's freshness (`ttl`, monotonic)
    and the key's own expiry or end of rotation grace (wall clock, from the principal), so
    either is enforced on time even if an invalidation push is lost. Full, it drops its
    oldest entry (insertion order), which a busy key simply re-fetches.
    """

    def __init__(
        self,
        size: int,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._size = max(1, size)
        self._ttl = ttl
        self._clock = clock
        self._wall = wall
        # Insertion-ordered, so the oldest entry goes first in O(1).
        self._entries: OrderedDict[str, tuple[Principal, float, float]] = OrderedDict()

    def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        principal, fresh_until, usable_until = entry
        if self._clock() < fresh_until and self._wall() < usable_until:
            return principal
        del self._entries[key_hash]
        return None

    def put(self, key_hash: str, principal: Principal) -> None:
        entries = self._entries
        entries.pop(key_hash, None)
        while len(entries) >= self._size:
            entries.popitem(last=False)
        entries[key_hash] = (principal, self._clock() + self._ttl, _usable_until(principal))

    def pop(self, key_hash: str) -> None:
        self._entries.pop(key_hash, None)

    def __len__(self) -> int:
        return len(self._entries)


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
        guard: BadKeyGuard | None = None,
    ) -> None:
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)
        self._secret = secret
        self._cache = PrincipalCache(cache_size, cache_ttl)
        self._refused: TTLCache[str, str] = TTLCache(min(cache_size, 10_000), negative_ttl)
        self._timeout = timeout
        self._guard = guard

    async def authenticate(self, key: str | None) -> Principal:
        if not key:
            raise AuthenticationFailed("Missing API key.", code="missing_api_key")
        key_hash = keys.hash_key(self._secret, key) if keys.is_well_formed(key) else None
        if key_hash is not None:
            principal = self._cache.get(key_hash)
            if principal is not None:
                return principal
        client = client_address.get()
        if self._guard is not None:
            self._guard.check(client)
        try:
            if key_hash is None:
                raise AuthenticationFailed("Invalid API key.", code="invalid_api_key")
            return await self._lookup(key_hash)
        except AuthenticationFailed:
            if self._guard is not None:
                self._guard.failed(client)
            raise

    async def _lookup(self, key_hash: str) -> Principal:
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
        self._cache.put(key_hash, reply.principal)
        return reply.principal

    def forget(self, key_hash: str) -> None:
        """Drops what this edge remembers about a key, good or bad (it changed in auth)."""
        self._cache.pop(key_hash)
        self._refused.pop(key_hash, None)

    async def subscribe_revocations(self, nc: NATS) -> None:
        async def on_revoked(message: Msg) -> None:
            self.forget(message.data.decode())

        await nc.subscribe(KEY_REVOKED_SUBJECT, cb=on_revoked)
