"""Trying a model's deployments in order until one answers (DESIGN §3 step 5).

The edge moves to the next deployment only on a retryable failure **before the first byte
reaches the client**: connect errors, timeouts (connect, time to first byte / first stream
frame), 408, 429, 500, 502, 503, 504, 529; an upstream 401/403 means the deployment is
misconfigured and also fails over. Other errors (400, 404, 413, 422, …) are the request's
fault and go straight back, translated. Attempts are capped in number and total time and
all recorded on the call (they travel in the usage event); outcomes feed the breakers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from bytespike.usage.v1 import usage_pb2
from bytespike_common.errors import (
    ErrorKind,
    GatewayError,
    UpstreamHTTPError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from bytespike_edge.call import CallContext
from bytespike_edge.gateway import Gateway, Target
from bytespike_edge.translate.errors import retry_after
from bytespike_edge.upstream.client import Timeouts, UpstreamResponse

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504, 529})
MISCONFIGURED_STATUS = frozenset({401, 403})
MISCONFIGURED_KINDS = frozenset({ErrorKind.AUTHENTICATION, ErrorKind.PERMISSION})


@dataclass(slots=True)  # not frozen: made per request, and a frozen one costs 3x to make
class Prepared:
    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(slots=True)
class Opened:
    """The answering upstream; for streams the first chunk has been read already."""

    target: Target
    response: UpstreamResponse
    chunks: AsyncIterator[bytes]


Prepare = Callable[[Target], Prepared]
DecodeError = Callable[[Target, int, bytes, Mapping[str, str]], GatewayError]


def _deployment_id(target: Target) -> str:
    return target.deployment.id


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


class Attempts:
    def __init__(self, gateway: Gateway, call: CallContext) -> None:
        self._gateway = gateway
        self._call = call
        self._deadline = time.monotonic() + gateway.settings.failover_budget

    def _record(self, target: Target, started: float, status: int, cause: str) -> None:
        self._call.attempts.append(
            usage_pb2.Attempt(
                deployment_id=target.deployment.id,
                provider_id=target.provider.id,
                status_code=status,
                cause=cause,
                latency_ms=int((time.perf_counter() - started) * 1000),
            )
        )

    def _timeouts(self, target: Target) -> Timeouts:
        limits = target.timeouts
        remaining = max(0.001, self._deadline - time.monotonic())
        if remaining >= limits.connect and remaining >= limits.first_byte:
            # The budget cuts neither (nearly always on a first attempt).
            return limits
        return Timeouts(
            connect=min(limits.connect, remaining),
            first_byte=min(limits.first_byte, remaining),
            total=limits.total,
        )

    async def open(
        self, targets: Sequence[Target], prepare: Prepare, decode: DecodeError, *, stream: bool
    ) -> Opened:
        board = self._gateway.health
        plan = board.healthy_first(targets, _deployment_id)
        last: GatewayError | None = None
        for target in plan[: self._gateway.settings.max_attempts]:
            if time.monotonic() >= self._deadline:
                break
            breaker = board.breaker(target.deployment.id)
            breaker.begin()
            started = time.perf_counter()
            try:
                opened = await self._try(target, prepare(target), decode, stream)
            except _Retryable as retry:
                self._record(target, started, retry.error.status, retry.cause)
                breaker.record(False, retry.error.retry_after)
                last = retry.error
                continue
            except GatewayError as error:
                self._record(target, started, error.status, error.cause)
                breaker.record(True)
                raise
            self._record(target, started, 200, "")
            breaker.record(True)
            self._call.deployment, self._call.provider = target.deployment, target.provider
            return opened
        raise last or UpstreamUnavailable("No upstream deployment could be reached.")

    async def _try(
        self, target: Target, prepared: Prepared, decode: DecodeError, stream: bool
    ) -> Opened:
        timeouts = self._timeouts(target)
        try:
            response = await self._gateway.upstream.send(
                prepared.url, prepared.headers, prepared.body, timeouts
            )
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            raise _Retryable(
                exc, "timeout" if isinstance(exc, UpstreamTimeout) else "connect"
            ) from exc
        if response.status_code >= 400:
            try:
                body = await response.aread()
            finally:
                await response.aclose()
            error = decode(target, response.status_code, body, response.headers)
            if error.retry_after is None:
                error.retry_after = retry_after(response.headers)
            # A vendor refusing *our* credential (Gemini says so with a 400) is a
            # misconfigured deployment, never the caller's fault.
            if response.status_code in MISCONFIGURED_STATUS or error.kind in MISCONFIGURED_KINDS:
                raise _Retryable(
                    UpstreamHTTPError(
                        "The upstream provider rejected the gateway's credential.", status=502
                    ),
                    "misconfigured",
                )
            if response.status_code in RETRYABLE_STATUS:
                raise _Retryable(error, "http_status")
            raise error
        if not stream:
            return Opened(target, response, _empty())
        return await self._first_chunk(target, response, timeouts.first_byte)

    async def _first_chunk(
        self, target: Target, response: UpstreamResponse, timeout: float
    ) -> Opened:
        """Waits for the first stream bytes: until then a slow or dead upstream can be left."""
        chunks = response.aiter_bytes()
        try:
            # A timeout scope, not `wait_for`: no task per stream.
            async with asyncio.timeout(timeout):
                first = await anext(chunks)
        except (TimeoutError, UpstreamTimeout) as exc:  # ours, or the client's read timeout
            await response.aclose()
            raise _Retryable(
                UpstreamTimeout("The upstream sent no first token in time."), "timeout"
            ) from exc
        except StopAsyncIteration as exc:
            await response.aclose()
            raise _Retryable(
                UpstreamUnavailable("The upstream closed an empty stream."), "protocol"
            ) from exc
        except Exception as exc:
            await response.aclose()
            failure = UpstreamUnavailable(f"The upstream stream failed: {type(exc).__name__}.")
            raise _Retryable(failure, "connect") from exc
        return Opened(target, response, _prepend(first, chunks))


class _Retryable(Exception):
    def __init__(self, error: GatewayError, cause: str) -> None:
        super().__init__(error.message)
        self.error = error
        self.cause = cause
