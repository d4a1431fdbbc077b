"""Rate cards and the cost of a request, in integer micro-credits.

A rate card is the catalog's prices as the router pushes them: per model, integer
micro-credits per 1M tokens (input, output, cache read, cache write), per image and per
second of video; per routing group, a price multiplier in parts per million.

    cost = round_half_up( (sum(tokens * price_per_mtok) / 10^6 + images * per_image
                           + video_ms * per_video_second / 10^3) * multiplier_ppm / 10^6 )

The whole sum is kept as one exact integer numerator over a fixed denominator and rounded
once per request, so a request's cost never depends on how its usage was split, and no
float ever touches money. Canonical usage is already normalised by the edge: input excludes
cache reads and writes (each priced separately), output includes reasoning (so reasoning is
not added again).
"""

from __future__ import annotations

from dataclasses import dataclass

from bytespike.router.v1 import router_pb2
from bytespike.usage.v1 import usage_pb2

PPM = 1_000_000
PER_MTOK = 1_000_000
MS_PER_SECOND = 1_000
# Denominator of the exact numerator: tokens are per 1M, multipliers per 1M.
DENOMINATOR = PER_MTOK * PPM
# A group the card does not know is billed at list price.
DEFAULT_MULTIPLIER_PPM = PPM


@dataclass(frozen=True, slots=True)
class Prices:
    input_per_mtok: int = 0
    output_per_mtok: int = 0
    cache_read_per_mtok: int = 0
    cache_write_per_mtok: int = 0
    per_image: int = 0
    per_video_second: int = 0

    @classmethod
    def from_proto(cls, prices: router_pb2.Prices) -> Prices:
        return cls(
            input_per_mtok=prices.input_per_mtok,
            output_per_mtok=prices.output_per_mtok,
            cache_read_per_mtok=prices.cache_read_per_mtok,
            cache_write_per_mtok=prices.cache_write_per_mtok,
            per_image=prices.per_image,
            per_video_second=prices.per_video_second,
        )


@dataclass(frozen=True, slots=True)
class Rate:
    """What one request of a model in a group is priced at."""

    prices: Prices
    multiplier_ppm: int = DEFAULT_MULTIPLIER_PPM


def round_half_up(numerator: int, denominator: int = DENOMINATOR) -> int:
    """numerator / denominator rounded to the nearest integer, halves away from zero."""
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def video_milliseconds(seconds: float) -> int:
    # The event carries seconds as a double; bill whole milliseconds, rounded once here.
    return max(0, round(seconds * MS_PER_SECOND))


def cost(usage: usage_pb2.Usage, rate: Rate) -> int:
    """Micro-credits charged for one request's canonical usage."""
    p = rate.prices
    tokens = (
        usage.input_tokens * p.input_per_mtok
        + usage.cache_read_tokens * p.cache_read_per_mtok
        + usage.cache_write_tokens * p.cache_write_per_mtok
        + usage.output_tokens * p.output_per_mtok
    )
    units = usage.images * p.per_image * PER_MTOK + video_milliseconds(
        usage.video_seconds
    ) * p.per_video_second * (PER_MTOK // MS_PER_SECOND)
    return max(0, round_half_up((tokens + units) * rate.multiplier_ppm))


def max_cost(estimated_input_tokens: int, max_output_tokens: int, rate: Rate) -> int:
    """The hold for a request: the most it can cost before its usage is known.

    The estimated input is priced at the dearer of the input and cache-write prices: the
    request may turn out to write its whole prompt to the cache, and a hold must be an
    upper bound.
    """
    p = rate.prices
    input_price = max(p.input_per_mtok, p.cache_write_per_mtok)
    tokens = max(0, estimated_input_tokens) * input_price + max(0, max_output_tokens) * (
        p.output_per_mtok
    )
    return round_half_up(tokens * rate.multiplier_ppm)


def total_tokens(usage: usage_pb2.Usage) -> int:
    """Tokens a request counts against a TPM limit (every kind of input, plus output)."""
    return (
        usage.input_tokens
        + usage.cache_read_tokens
        + usage.cache_write_tokens
        + usage.output_tokens
    )


class RateCard:
    """Lookups over one route-table snapshot: model (by id or alias) → prices, group → ppm."""

    def __init__(self, table: router_pb2.RouteTable) -> None:
        self.version = table.version
        self._prices: dict[str, Prices] = {}
        for model in table.models:
            prices = Prices.from_proto(model.prices)
            for name in (model.id, *model.aliases):
                self._prices[name] = prices
        self._multipliers = {g.name: g.price_multiplier_ppm for g in table.groups}

    def rate(self, model: str, group: str) -> Rate | None:
        """None when the card has no such model (the caller decides what that means)."""
        prices = self._prices.get(model)
        if prices is None:
            return None
        return Rate(prices, self._multipliers.get(group, DEFAULT_MULTIPLIER_PPM))

    def __len__(self) -> int:
        return len(self._prices)
