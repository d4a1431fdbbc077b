"""Admission through metering, with the configured behaviour when metering is unreachable.

Most requests are admitted from an admission lease (`leases`): the request's maximum cost,
priced here from the route table's rate card exactly as metering prices holds, is reserved
from a budget metering granted this edge, with no call. Keys with their own RPM/TPM/
concurrency limits, accounts metering will not lease to, and models without a price on the
edge's card take one `Admit` call per request, which counts them centrally.

Metering decides; the edge turns its answer into the gateway error each protocol's codec
renders: RATE_LIMITED -> RateLimited (429 + retry-after), INSUFFICIENT_CREDIT ->
InsufficientCredit (402 or the protocol's quota convention, see docs/metering.md),
ACCOUNT_DISABLED -> PermissionDenied (403). An unreachable metering (or one that cannot
price the model yet) is refused with 503, or served unmetered when the fail mode is "open".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bytespike.auth.v1 import auth_pb2
from bytespike.metering.v1 import metering_pb2, metering_pb2_grpc
from bytespike_common.errors import (
    DependencyUnavailable,
    GatewayError,
    InsufficientCredit,
    PermissionDenied,
    RateLimited,
)
from bytespike_common.messaging import ACCOUNT_STATUS_SUBJECT
from bytespike_common.pricing import RateCard, max_cost
from bytespike_edge import observability
from bytespike_edge.control.leases import DEFAULT_LEASE_REQUESTS, LeaseBook, LeaseDenied
from bytespike_edge.control.routes import RouteWatcher

log = logging.getLogger(__name__)


@dataclass(slots=True)  # not frozen: made per request, and a frozen one costs 3x to make
class Admission:
    hold_id: str
    metered: bool
    # Admitted from an admission lease: which, and the micro-credits reserved from it.
    lease_id: str = ""
    reserved: int = 0


def _own_limits(principal: auth_pb2.Principal) -> bool:
    limits = principal.limits
    return limits.rpm > 0 or limits.tpm > 0 or limits.concurrency > 0


class Admitter:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float,
        fail_open: bool,
        routes: RouteWatcher | None = None,
        lease_requests: int = DEFAULT_LEASE_REQUESTS,
    ) -> None:
        self._stub = metering_pb2_grpc.MeteringServiceStub(channel)
        self._timeout = timeout
        self._fail_open = fail_open
        # Without a route table to price from (or with leases off), every request calls Admit.
        self._routes = routes
        self.leases = (
            LeaseBook(self._stub, timeout=timeout, lease_requests=lease_requests)
            if routes is not None and lease_requests > 0
            else None
        )
        self._card: RateCard | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def _max_cost(
        self, principal: auth_pb2.Principal, model: str, input_tokens: int, output_tokens: int
    ) -> int | None:
        index = self._routes.index if self._routes is not None else None
        if index is None:
            return None
        if self._card is None or self._card.version != index.version:
            self._card = RateCard(index.table)
        rate = self._card.rate(model, principal.group)
        return None if rate is None else max_cost(input_tokens, output_tokens, rate)

    async def _from_lease(self, principal: auth_pb2.Principal, cost: int) -> Admission | None:
        """Admission from this edge's lease; None when the account must call Admit."""
        assert self.leases is not None
        account, key = principal.account_id, principal.key_id
        lease_id = self.leases.reserve(account, key, cost)
        if lease_id is None:
            try:
                lease_id = await self.leases.acquire(account, key, cost)
            except LeaseDenied as denied:
                observability.admission_denied(denied.response.denial)
                raise denial_error(denied.response.denial, denied.response.message) from None
            except grpc.aio.AioRpcError as exc:
                return self._unreachable(exc)
            if lease_id is None:
                return None
        return Admission(hold_id="", metered=True, lease_id=lease_id, reserved=cost)

    def _unreachable(self, exc: grpc.aio.AioRpcError) -> Admission:
        observability.metering_unavailable(served_unmetered=self._fail_open)
        if self._fail_open:
            log.warning("metering unreachable (%s); admitting unmetered", exc.code().name)
            return Admission(hold_id="", metered=False)
        raise DependencyUnavailable("Metering is temporarily unavailable.") from exc

    async def admit(
        self,
        request_id: str,
        principal: auth_pb2.Principal,
        model: str,
        estimated_input_tokens: int,
        max_output_tokens: int,
    ) -> Admission:
        if (
            self.leases is not None
            and not _own_limits(principal)
            and self.leases.leasable(principal.account_id)
        ):
            cost = self._max_cost(principal, model, estimated_input_tokens, max_output_tokens)
            if cost is not None and (admission := await self._from_lease(principal, cost)):
                return admission
        request = metering_pb2.AdmitRequest(
            request_id=request_id,
            account_id=principal.account_id,
            key_id=principal.key_id,
            group=principal.group,
            model=model,
            estimated_input_tokens=estimated_input_tokens,
            max_output_tokens=max_output_tokens,
            key_rpm=principal.limits.rpm,
            key_tpm=principal.limits.tpm,
            key_concurrency=principal.limits.concurrency,
        )
        try:
            reply = await self._stub.Admit(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            return self._unreachable(exc)
        if reply.admitted:
            return Admission(hold_id=reply.hold_id, metered=True)
        observability.admission_denied(reply.denial)
        raise denial_error(reply.denial, reply.message, reply.retry_after_ms)

    async def start(self, nc: NATS | None) -> None:
        """Listens for metering's account-status pushes and sweeps expired leases."""
        if self.leases is None:
            return
        if nc is not None:
            await nc.subscribe(ACCOUNT_STATUS_SUBJECT, cb=self._account_changed)
        self._sweeper = asyncio.create_task(self.leases.run_sweeper(), name="lease-sweeper")

    async def _account_changed(self, msg: Msg) -> None:
        balance = metering_pb2.Balance()
        try:
            balance.ParseFromString(msg.data)
        except DecodeError:
            log.warning("undecodable account status push on %s", msg.subject)
            return
        if balance.disabled and self.leases is not None:
            # Nothing more is admitted from the account's lease; Admit/Lease refuse it next.
            self.leases.revoke(balance.account_id)

    async def aclose(self) -> None:
        """Hands this edge's leases back, so a restart does not lock credit until expiry."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self.leases is not None:
            await self.leases.aclose()


def denial_error(
    denial: metering_pb2.Denial.ValueType, message: str, retry_after_ms: int = 0
) -> GatewayError:
    if denial == metering_pb2.DENIAL_INSUFFICIENT_CREDIT:
        # OpenAI's own code for an exhausted balance, so OpenAI clients recognise it.
        return InsufficientCredit(message or "Insufficient credit.", code="insufficient_quota")
    if denial == metering_pb2.DENIAL_ACCOUNT_DISABLED:
        return PermissionDenied(message or "This account is disabled.", code="account_disabled")
    retry_after = retry_after_ms / 1000 if retry_after_ms else None
    return RateLimited(
        message or "Rate limit exceeded.", code="rate_limit_exceeded", retry_after=retry_after
    )
