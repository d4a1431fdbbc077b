"""Admission through metering, with the configured behaviour when metering is unreachable.

Metering decides; the edge turns its answer into the gateway error each protocol's codec
renders: RATE_LIMITED -> RateLimited (429 + retry-after), INSUFFICIENT_CREDIT ->
InsufficientCredit (402 or the protocol's quota convention, see docs/metering.md),
ACCOUNT_DISABLED -> PermissionDenied (403). An unreachable metering (or one that cannot
price the model yet) is refused with 503, or served unmetered when the fail mode is "open".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from bytespike.auth.v1 import auth_pb2
from bytespike.metering.v1 import metering_pb2, metering_pb2_grpc
from bytespike_common.errors import (
    DependencyUnavailable,
    GatewayError,
    InsufficientCredit,
    PermissionDenied,
    RateLimited,
)
from bytespike_edge import observability

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Admission:
    hold_id: str
    metered: bool


class Admitter:
    def __init__(self, channel: grpc.aio.Channel, *, timeout: float, fail_open: bool) -> None:
        self._stub = metering_pb2_grpc.MeteringServiceStub(channel)
        self._timeout = timeout
        self._fail_open = fail_open

    async def admit(
        self,
        request_id: str,
        principal: auth_pb2.Principal,
        model: str,
        estimated_input_tokens: int,
        max_output_tokens: int,
    ) -> Admission:
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
            observability.metering_unavailable(served_unmetered=self._fail_open)
            if self._fail_open:
                log.warning("metering unreachable (%s); admitting unmetered", exc.code().name)
                return Admission(hold_id="", metered=False)
            raise DependencyUnavailable("Metering is temporarily unavailable.") from exc
        if reply.admitted:
            return Admission(hold_id=reply.hold_id, metered=True)
        observability.admission_denied(reply.denial)
        raise denial_error(reply)


def denial_error(reply: metering_pb2.AdmitResponse) -> GatewayError:
    if reply.denial == metering_pb2.DENIAL_INSUFFICIENT_CREDIT:
        # OpenAI's own code for an exhausted balance, so OpenAI clients recognise it.
        return InsufficientCredit(
            reply.message or "Insufficient credit.", code="insufficient_quota"
        )
    if reply.denial == metering_pb2.DENIAL_ACCOUNT_DISABLED:
        return PermissionDenied(
            reply.message or "This account is disabled.", code="account_disabled"
        )
    retry_after = reply.retry_after_ms / 1000 if reply.retry_after_ms else None
    return RateLimited(
        reply.message or "Rate limit exceeded.", code="rate_limit_exceeded", retry_after=retry_after
    )
