"""Cost from canonical usage, against hand-computed figures, per upstream protocol."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from bytespike.router.v1 import router_pb2
from bytespike.usage.v1 import usage_pb2
from bytespike_common.pricing import (
    Prices,
    Rate,
    RateCard,
    cost,
    max_cost,
    round_half_up,
    total_tokens,
)
from bytespike_edge.translate import usage as edge_usage
from bytespike_edge.translate.ir import Usage

# Catalog prices (credits per 1M tokens) as integer micro-credits per 1M tokens.
SONNET = Prices(
    input_per_mtok=3_000_000,
    output_per_mtok=15_000_000,
    cache_read_per_mtok=300_000,
    cache_write_per_mtok=3_750_000,
)
GPT = Prices(input_per_mtok=1_250_000, output_per_mtok=10_000_000, cache_read_per_mtok=125_000)


def canonical(usage: Usage) -> usage_pb2.Usage:
    """The edge's normalised usage as the usage event carries it."""
    return usage_pb2.Usage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def test_anthropic_input_excludes_cache_reads_and_writes() -> None:
    usage = canonical(
        edge_usage.from_anthropic(
            {
                "input_tokens": 1_000,
                "cache_read_input_tokens": 20_000,
                "cache_creation_input_tokens": 3_000,
                "output_tokens": 500,
            }
        )
    )
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        1_000,
        20_000,
        3_000,
    )
    # 1000 x 3 + 20000 x 0.3 + 3000 x 3.75 + 500 x 15 = 3000 + 6000 + 11250 + 7500
    assert cost(usage, Rate(SONNET)) == 27_750


def test_openai_prompt_tokens_include_cache_reads() -> None:
    usage = canonical(
        edge_usage.from_openai(
            {
                "prompt_tokens": 2_000,
                "completion_tokens": 800,
                "prompt_tokens_details": {"cached_tokens": 1_500},
                "completion_tokens_details": {"reasoning_tokens": 300},
            }
        )
    )
    assert (usage.input_tokens, usage.cache_read_tokens) == (500, 1_500)
    # 500 x 1.25 + 1500 x 0.125 + 800 x 10 = 625 + 187.5 + 8000 = 8812.5 -> 8813 (half up).
    # Reasoning is inside completion_tokens and is not charged a second time.
    assert cost(usage, Rate(GPT)) == 8_813
    # The same request in a group at x0.8: 8812.5 x 0.8 = 7050 exactly.
    assert cost(usage, Rate(GPT, multiplier_ppm=800_000)) == 7_050


def test_openai_cache_writes_are_priced_as_writes() -> None:
    usage = canonical(
        edge_usage.from_openai(
            {
                "prompt_tokens": 10_000,
                "completion_tokens": 100,
                "prompt_tokens_details": {"cached_tokens": 4_000, "cache_write_tokens": 5_000},
            }
        )
    )
    assert (usage.input_tokens, usage.cache_write_tokens) == (1_000, 5_000)
    # On Sonnet prices: 1000 x 3 + 4000 x 0.3 + 5000 x 3.75 + 100 x 15
    assert cost(usage, Rate(SONNET)) == 3_000 + 1_200 + 18_750 + 1_500


def test_gemini_prompt_includes_cache_and_thoughts_count_as_output() -> None:
    usage = canonical(
        edge_usage.from_gemini(
            {
                "promptTokenCount": 1_200,
                "cachedContentTokenCount": 200,
                "candidatesTokenCount": 300,
                "thoughtsTokenCount": 700,
            }
        )
    )
    assert (usage.input_tokens, usage.cache_read_tokens) == (1_000, 200)
    assert (usage.output_tokens, usage.reasoning_tokens) == (1_000, 700)
    gemini_pro = Prices(2_000_000, 12_000_000, 200_000)
    # 1000 x 2 + 200 x 0.2 + (300 + 700) x 12 = 2000 + 40 + 12000
    assert cost(usage, Rate(gemini_pro)) == 14_040


def test_images_and_video_seconds() -> None:
    prices = Prices(per_image=40_000, per_video_second=100_000)
    usage = usage_pb2.Usage(images=3, video_seconds=2.5)
    # (3 x 40000 + 2.5 x 100000) x 1.5
    assert cost(usage, Rate(prices, multiplier_ppm=1_500_000)) == 555_000


def test_rounding_is_half_up_once_per_request() -> None:
    half = Prices(input_per_mtok=500_000)  # 0.5 micro-credits per token
    assert cost(usage_pb2.Usage(input_tokens=1), Rate(half)) == 1
    assert cost(usage_pb2.Usage(input_tokens=3), Rate(half)) == 2  # 1.5 -> 2
    below = Prices(input_per_mtok=499_999)
    assert cost(usage_pb2.Usage(input_tokens=1), Rate(below)) == 0
    # Rounded once on the sum, not per token kind: 0.4 + 0.4 = 0.8 -> 1.
    split = Prices(input_per_mtok=400_000, output_per_mtok=400_000)
    assert cost(usage_pb2.Usage(input_tokens=1, output_tokens=1), Rate(split)) == 1
    assert round_half_up(-3, 2) == -2


def test_free_models_cost_nothing() -> None:
    usage = usage_pb2.Usage(input_tokens=10**9, output_tokens=10**9, images=5)
    assert cost(usage, Rate(Prices())) == 0
    assert max_cost(10**6, 10**6, Rate(Prices())) == 0


def test_max_cost_is_an_upper_bound() -> None:
    # 100 x 1.25 + 1000 x 10
    assert max_cost(100, 1_000, Rate(GPT)) == 10_125
    # Input at the dearer cache-write price: 100 x 3.75 + 1000 x 15
    assert max_cost(100, 1_000, Rate(SONNET)) == 15_375
    worst = usage_pb2.Usage(cache_write_tokens=100, output_tokens=1_000)
    assert cost(worst, Rate(SONNET)) <= max_cost(100, 1_000, Rate(SONNET))


def test_total_tokens_counts_every_input_kind() -> None:
    usage = usage_pb2.Usage(
        input_tokens=1, cache_read_tokens=2, cache_write_tokens=3, output_tokens=4
    )
    assert total_tokens(usage) == 10


def test_rate_card_resolves_aliases_and_group_multipliers() -> None:
    table = router_pb2.RouteTable(
        version="v1",
        models=[
            router_pb2.Model(
                id="m-1",
                aliases=["m-one"],
                prices=router_pb2.Prices(input_per_mtok=7, output_per_mtok=9),
            )
        ],
        groups=[router_pb2.Group(name="vip", price_multiplier_ppm=500_000)],
    )
    card = RateCard(table)
    rate = card.rate("m-one", "vip")
    assert rate == Rate(Prices(input_per_mtok=7, output_per_mtok=9), 500_000)
    assert card.rate("m-1", "unknown-group") == Rate(rate.prices, 1_000_000)
    assert card.rate("nope", "vip") is None


TOKENS = st.integers(min_value=0, max_value=10**9)
PRICE = st.integers(min_value=0, max_value=10**9)


@given(
    tokens=st.tuples(TOKENS, TOKENS, TOKENS, TOKENS),
    prices=st.tuples(PRICE, PRICE, PRICE, PRICE),
    multiplier=st.integers(min_value=0, max_value=10 * 1_000_000),
)
def test_cost_matches_exact_rational_arithmetic(
    tokens: tuple[int, int, int, int], prices: tuple[int, int, int, int], multiplier: int
) -> None:
    usage = usage_pb2.Usage(
        input_tokens=tokens[0],
        cache_read_tokens=tokens[1],
        cache_write_tokens=tokens[2],
        output_tokens=tokens[3],
    )
    rate = Rate(Prices(prices[0], prices[3], prices[1], prices[2]), multiplier)
    exact = Fraction(
        tokens[0] * prices[0]
        + tokens[1] * prices[1]
        + tokens[2] * prices[2]
        + tokens[3] * prices[3],
        10**6,
    ) * Fraction(multiplier, 10**6)
    expected = int(exact) + (1 if exact - int(exact) >= Fraction(1, 2) else 0)
    assert cost(usage, rate) == expected
