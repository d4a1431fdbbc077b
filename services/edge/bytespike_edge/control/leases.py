"""Admission leases on the edge: reserve each request's maximum cost from a local budget.

Metering grants an account a budget (`MeteringService.Lease`, see the metering service's
`leases` module); the edge reserves each request's maximum cost from it in memory — no
call, no commit — and names the lease and the amount in the usage event, by which
settlement draws the lease down. A lease is used for `ttl` at most. Renewal:

- in the background when a lease runs low, so a busy account never waits on metering;
  the old lease's unreserved rest is handed back right after the new one arrives;
- inline when a request finds no lease, an expired one or too little in it: that call
  hands back the old rest and asks for at least this request's cost, and is made once per
  account however many requests wait for it (they share the answer);
- a sweep hands back the rest of leases that expired unused, and a metering push
  (`metering.v1.account_status`) drops a disabled account's lease at once.

A renewal asks for `lease_requests` requests like the waiting one, or, when more, about
`LEASE_HORIZON` of what the account spent from its last lease on this edge (never more than
a lease's ttl): under load a lease of 200 requests lasted tens of milliseconds, a Lease
call and a hand-back each time. Metering still grants at most its share of the available
credit, so near the end of the credit leases shrink exactly as before.

Metering answers `leasable=false` when its limits need a count per request; the account is
then admitted request by request (`Admit`) until the answer is asked for again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from bytespike.metering.v1 import metering_pb2, metering_pb2_grpc
from bytespike_common.ids import new_id

log = logging.getLogger(__name__)
# A lease asked for inline covers this many requests like the one waiting for it.
DEFAULT_LEASE_REQUESTS = 200
# How long "admit this account request by request" is remembered.
PER_REQUEST_SECONDS = 10.0
# How long a request keeps trying for a place in a lease others keep draining.
ACQUIRE_PATIENCE = 10.0
# Renew in the background once a lease is down to this fraction of what it was granted.
LOW_WATER_FRACTION = 4
# A renewal asks for about this many seconds of the account's recent spending (at least
# `lease_requests` requests' worth), measured over at least MIN_RATE_WINDOW seconds.
LEASE_HORIZON = 1.0
MIN_RATE_WINDOW = 0.1


class LeaseDenied(Exception):
    """Metering refused a lease for the request waiting on it (credit, disabled account)."""

    def __init__(self, response: metering_pb2.LeaseResponse) -> None:
        super().__init__(response.message)
        self.response = response


@dataclass(slots=True)
class Lease:
    lease_id: str
    remaining: int
    # time.monotonic() after which nothing more is reserved from it.
    until: float
    low_water: int
    # What metering granted, when (time.monotonic()) and for how long (seconds): the rate
    # the account spends it at sizes the next lease.
    granted: int = 0
    started: float = 0.0
    ttl: float = 0.0


class LeaseBook:
    def __init__(
        self,
        stub: metering_pb2_grpc.MeteringServiceAsyncStub,
        *,
        timeout: float,
        lease_requests: int = DEFAULT_LEASE_REQUESTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = stub
        self._clock = clock
        self._timeout = timeout
        self._lease_requests = lease_requests
        self._leases: dict[str, Lease] = {}
        # Accounts metering wants admitted request by request, until when.
        self._per_request: dict[str, float] = {}
        # One inline or background renewal per account at a time.
        self._renewals: dict[str, asyncio.Task[Lease | None]] = {}
        self._background: set[asyncio.Task[object]] = set()
        # Hand-backs metering was not there to take, by lease id: retried by the sweep.
        self._unreturned: dict[str, int] = {}

    def leasable(self, account_id: str) -> bool:
        until = self._per_request.get(account_id)
        if until is None:
            return True
        if self._clock() < until:
            return False
        del self._per_request[account_id]
        return True

    def reserve(self, account_id: str, key_id: str, cost: int) -> str | None:
        """The lease id `cost` was reserved from, or None when the edge has no room for it."""
        lease = self._leases.get(account_id)
        if lease is None or lease.remaining < cost or self._clock() >= lease.until:
            return None
        lease.remaining -= cost
        if lease.remaining < lease.low_water and account_id not in self._renewals:
            self._start_renewal(account_id, key_id, cost, inline=False)
        return lease.lease_id

    async def acquire(self, account_id: str, key_id: str, cost: int) -> str | None:
        """Reserves `cost` from a fresh lease; None if the account is admitted per request.

        Raises LeaseDenied when metering refuses (the caller renders the denial) and
        grpc.aio.AioRpcError when metering cannot be reached.
        """
        # Every renewal admits at least one request (it grants at least the need), so
        # waiting goes on until this request is admitted or metering refuses; the deadline
        # only guards against a pathological storm of ever-cheaper leases.
        deadline = self._clock() + ACQUIRE_PATIENCE
        while True:
            running = self._renewals.get(account_id)
            if running is None:
                running = self._start_renewal(account_id, key_id, cost, inline=True)
            lease = await asyncio.shield(running)
            if lease is None:
                return None
            if (lease_id := self.reserve(account_id, key_id, cost)) is not None:
                return lease_id
            # Others drained the new lease first, or it was sized for a cheaper request.
            if self._clock() > deadline:
                raise LeaseDenied(
                    metering_pb2.LeaseResponse(
                        denial=metering_pb2.DENIAL_RATE_LIMITED,
                        message="Too many concurrent requests for this account's remaining "
                        "credit; retry shortly.",
                    )
                )

    def _start_renewal(
        self, account_id: str, key_id: str, need: int, *, inline: bool
    ) -> asyncio.Task[Lease | None]:
        renewal = (
            self._renew(account_id, key_id, need, inline=True)
            if inline
            else self._renew_early(account_id, key_id, need)
        )
        task = asyncio.create_task(renewal, name=f"lease-renewal-{account_id}")
        self._renewals[account_id] = task
        task.add_done_callback(lambda _: self._renewals.pop(account_id, None))
        return task

    async def _renew_early(self, account_id: str, key_id: str, need: int) -> Lease | None:
        """A background renewal never fails a request: on any refusal the old lease stays,
        and a request that finds it too small renews inline (handing its rest back first),
        which gives the real answer."""
        try:
            return await self._renew(account_id, key_id, need, inline=False)
        except LeaseDenied:
            pass
        except grpc.aio.AioRpcError as exc:
            log.warning("background lease renewal failed (%s)", exc.code().name)
        return self._leases.get(account_id)

    async def _renew(
        self, account_id: str, key_id: str, need: int, *, inline: bool
    ) -> Lease | None:
        old = self._leases.get(account_id)
        want = self._want(old, need)
        release: metering_pb2.LeaseRelease | None = None
        if inline and old is not None:
            # The caller waits for this lease: hand the old rest back in the same call.
            release = metering_pb2.LeaseRelease(lease_id=old.lease_id, unused=old.remaining)
            old.remaining = 0
            del self._leases[account_id]
        request = metering_pb2.LeaseRequest(
            lease_id=new_id("lease"),
            account_id=account_id,
            key_id=key_id,
            want=want,
            need=need,
            release=release,
        )
        try:
            response: metering_pb2.LeaseResponse = await self._stub.Lease(
                request, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            unreachable = exc.code() == grpc.StatusCode.UNAVAILABLE
            if release is not None and release.unused > 0 and unreachable:
                # Not delivered: the old rest goes back with the sweep's retries, like a
                # hand-back of its own (see `_release`), not when its hold expires.
                self._unreturned[release.lease_id] = release.unused
            raise
        if not response.leasable:
            self._per_request[account_id] = self._clock() + PER_REQUEST_SECONDS
            self._drop(account_id)
            return None
        if not response.granted:
            if inline:
                self._drop(account_id)
            raise LeaseDenied(response)
        now, ttl = self._clock(), response.ttl_ms / 1000
        lease = Lease(
            lease_id=response.lease_id,
            remaining=response.amount,
            until=now + ttl,
            low_water=response.amount // LOW_WATER_FRACTION,
            granted=response.amount,
            started=now,
            ttl=ttl,
        )
        previous = self._leases.get(account_id)
        self._leases[account_id] = lease
        if previous is not None:
            self._hand_back(previous)
        return lease

    def _want(self, old: Lease | None, need: int) -> int:
        """What to ask for: `lease_requests` requests costing `need`, or about LEASE_HORIZON
        (at most the ttl) of what the account spent from its current lease, if more."""
        want = max(need, need * self._lease_requests)
        if old is not None and old.granted and need > 0:
            elapsed = max(self._clock() - old.started, MIN_RATE_WINDOW)
            rate = (old.granted - old.remaining) / elapsed
            by_rate = int(rate * min(LEASE_HORIZON, old.ttl))
            # Whole requests like this one, so that they use the lease up exactly and leave
            # no rest too small for any of them.
            want = max(want, by_rate - by_rate % need)
        return want

    def _drop(self, account_id: str) -> None:
        lease = self._leases.pop(account_id, None)
        if lease is not None:
            self._hand_back(lease)

    def _hand_back(self, lease: Lease) -> None:
        """Returns what no request reserved, off the request path."""
        unused, lease.remaining = lease.remaining, 0
        if unused > 0:
            self._start_release(lease.lease_id, unused)

    def _start_release(self, lease_id: str, unused: int) -> None:
        task = asyncio.create_task(self._release(lease_id, unused))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release(self, lease_id: str, unused: int) -> None:
        request = metering_pb2.LeaseRequest(
            release=metering_pb2.LeaseRelease(lease_id=lease_id, unused=unused),
            release_only=True,
        )
        try:
            await self._stub.Lease(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                # Not delivered (metering restarting): the sweep tries again, so the credit
                # is not locked until the hold expires. Anything else may have been applied
                # and must not be repeated (a hand-back is not idempotent); then the hold
                # expires on its own (metering's lease hold TTL).
                self._unreturned[lease_id] = unused
            log.warning("handing back lease %s failed (%s)", lease_id, exc.code().name)

    def revoke(self, account_id: str) -> None:
        """The account changed status: nothing more is admitted from its lease."""
        self._drop(account_id)

    def sweep(self) -> None:
        """Hands back leases whose time is up (their accounts went quiet), and retries the
        hand-backs metering could not take."""
        now = self._clock()
        for account_id in [a for a, lease in self._leases.items() if lease.until <= now]:
            if account_id not in self._renewals:
                self._drop(account_id)
        for account_id in [a for a, until in self._per_request.items() if until <= now]:
            del self._per_request[account_id]
        unreturned, self._unreturned = self._unreturned, {}
        for lease_id, unused in unreturned.items():
            self._start_release(lease_id, unused)

    async def run_sweeper(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    async def aclose(self) -> None:
        """Hands every lease back (shutdown)."""
        for account_id in list(self._leases):
            self._drop(account_id)
        if self._background:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*self._background, return_exceptions=True), self._timeout
                )
