"""Admit: throttling windows, then credit, then the hold — all or nothing.

Order matters for cost, not correctness: the limiter (memory or one Redis script) is
checked and taken first because giving it back is cheap; the credit reservation and the
hold are one SQL transaction (see `holds`). If credit refuses, the limiter is given back,
so a request refused for any reason counts against no limit.

The hold is the request's maximum cost (`pricing.max_cost`); the concurrency slots it
takes are keyed by the request id and freed at settlement or hold expiry. A retried Admit
for a request that already has a hold returns that hold and takes nothing more.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bytespike.metering.v1 import metering_pb2
from bytespike_common import pricing
from bytespike_common.pricing import RateCard
from bytespike_metering.holds import HoldResult, HoldWriter
from bytespike_metering.limits import Limiter, Slot, Window
from bytespike_metering.settlement import tpm_window

log = logging.getLogger(__name__)


class PriceUnknown(Exception):
    """Metering has no rate card yet, or the card has no such model."""


@dataclass(frozen=True, slots=True)
class Policy:
    hold_ttl: dt.timedelta
    # Concurrent requests per account (0 = unlimited).
    account_concurrency: int = 0


def _limits(
    request: metering_pb2.AdmitRequest, estimated_tokens: int, policy: Policy
) -> tuple[list[Window], list[Slot]]:
    windows: list[Window] = []
    if request.key_rpm > 0:
        windows.append(Window(f"rpm:key:{request.key_id}", request.key_rpm, 1, "key RPM"))
    if request.key_tpm > 0:
        windows.append(
            Window(tpm_window(request.key_id), request.key_tpm, estimated_tokens, "key TPM")
        )
    slots: list[Slot] = []
    if request.key_concurrency > 0:
        slots.append(Slot(f"conc:key:{request.key_id}", request.key_concurrency, "key concurrency"))
    if policy.account_concurrency > 0:
        slots.append(Slot("conc:account", policy.account_concurrency, "account concurrency"))
    return windows, slots


def _denied(
    denial: metering_pb2.Denial.ValueType, message: str, retry_after_ms: int = 0
) -> metering_pb2.AdmitResponse:
    return metering_pb2.AdmitResponse(
        admitted=False, denial=denial, message=message, retry_after_ms=retry_after_ms
    )


class Admitter:
    def __init__(
        self,
        holds: HoldWriter,
        limiter: Limiter,
        rate_card: Callable[[], RateCard | None],
        policy: Policy,
    ) -> None:
        self._holds = holds
        self._limiter = limiter
        self._rate_card = rate_card
        self._policy = policy

    def _rate(self, request: metering_pb2.AdmitRequest) -> pricing.Rate:
        card = self._rate_card()
        if card is None:
            raise PriceUnknown("metering has no rate card yet")
        rate = card.rate(request.model, request.group)
        if rate is None:
            raise PriceUnknown(f"metering has no price for model {request.model!r} yet")
        return rate

    async def admit(self, request: metering_pb2.AdmitRequest) -> metering_pb2.AdmitResponse:
        rate = self._rate(request)
        amount = pricing.max_cost(request.estimated_input_tokens, request.max_output_tokens, rate)
        estimated_tokens = max(0, request.estimated_input_tokens) + max(
            0, request.max_output_tokens
        )
        windows, slots = _limits(request, estimated_tokens, self._policy)
        ttl = self._policy.hold_ttl
        decision = await self._limiter.acquire(
            request.account_id,
            windows,
            slots,
            request.request_id,
            int(ttl.total_seconds() * 1000),
        )
        if not decision.admitted:
            return _denied(
                metering_pb2.DENIAL_RATE_LIMITED,
                f"Rate limit exceeded ({decision.refused_by}); retry later.",
                decision.retry_after_ms,
            )
        try:
            outcome = await self._holds.open_hold(
                request_id=request.request_id,
                account_id=request.account_id,
                key_id=request.key_id,
                model=request.model,
                amount=amount,
                estimated_tokens=estimated_tokens if request.key_tpm > 0 else 0,
                ttl=ttl,
            )
        except BaseException:
            await self._give_back(request, windows, slots)
            raise
        if outcome.result is HoldResult.OPENED:
            return metering_pb2.AdmitResponse(
                admitted=True, hold_id=outcome.hold_id, hold_amount=outcome.amount
            )
        if outcome.result is HoldResult.EXISTING:
            # The first Admit holds the slots (same holder id); only the windows doubled.
            await self._give_back(request, windows, [])
            return metering_pb2.AdmitResponse(
                admitted=True, hold_id=outcome.hold_id, hold_amount=outcome.amount
            )
        await self._give_back(request, windows, slots)
        if outcome.result is HoldResult.ACCOUNT_DISABLED:
            return _denied(metering_pb2.DENIAL_ACCOUNT_DISABLED, "This account is disabled.")
        return _denied(
            metering_pb2.DENIAL_INSUFFICIENT_CREDIT,
            f"Insufficient credit: this request may cost up to {amount} micro-credits and "
            f"{max(0, outcome.available)} are available. Top up, or lower max_tokens.",
        )

    async def _give_back(
        self, request: metering_pb2.AdmitRequest, windows: list[Window], slots: list[Slot]
    ) -> None:
        if windows:
            await self._limiter.adjust(request.account_id, [(w.name, -w.amount) for w in windows])
        if slots:
            await self._limiter.release(
                request.account_id, [s.name for s in slots], request.request_id
            )
