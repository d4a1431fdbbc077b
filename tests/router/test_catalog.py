from __future__ import annotations

from pathlib import Path

import pytest

from bytespike_router.catalog import CatalogError, load_catalog, parse_catalog
from bytespike_router.routes import build_route_table

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
providers:
  up: {protocol: openai, base_url: "https://vendor.example/v1", credential_env: UP_KEY}
models:
  - id: m-1
    aliases: [m-one]
    prices: {input: 3, output: "15", cache_read: 0.3}
    deployments: [{provider: up, upstream_model: vendor-m1, priority: 1, weight: 2}]
groups:
  default: {models: ["*"], price_multiplier: 1.25}
"""


def test_shipped_catalog_loads_with_every_family() -> None:
    catalog = load_catalog(REPO / "catalog" / "catalog.yaml", {})
    ids = {model.id for model in catalog.models}
    expected = {
        "mock-echo",
        "claude-opus-4-8",
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
        "gpt-5-5",
        "gpt-5-4",
        "gpt-5-4-mini",
        "gpt-5-4-nano",
        "gpt-5-2",
        "gemini-3-1-pro",
        "gemini-3-5-flash",
        "gemini-2-5-flash",
        "deepseek-v4-pro",
        "deepseek-v4-flash",
        "deepseek-v3-2",
        "deepseek-v3-anthropic",
        "kimi-k2-6",
        "glm-5-1",
        "minimax-m2-7",
        "doubao-seed-2-0-pro",
    }
    assert expected <= ids
    assert {"default", "claude-default", "gemini-default"} <= set(catalog.groups)


def test_prices_become_integer_micro_credits_exactly() -> None:
    table = build_route_table(parse_catalog(MINIMAL, "t.yaml", {}))
    prices = table.models[0].prices
    assert (prices.input_per_mtok, prices.output_per_mtok) == (3_000_000, 15_000_000)
    assert prices.cache_read_per_mtok == 300_000
    assert table.groups[0].price_multiplier_ppm == 1_250_000
    assert table.models[0].deployments[0].id == "m-1/up/0"


def test_base_url_override_from_env() -> None:
    catalog = parse_catalog(
        MINIMAL, "t.yaml", {"BYTESPIKE_PROVIDER_UP_BASE_URL": "http://127.0.0.1:9/v1"}
    )
    assert catalog.providers["up"].base_url == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("providers: [", "not valid YAML"),
        (MINIMAL.replace("protocol: openai", "protocol: grpc"), "providers.up.protocol"),
        (MINIMAL.replace("provider: up", "provider: nowhere"), "models.0.deployments.0.provider"),
        (MINIMAL.replace("  default:", "  other:"), "groups.default"),
        (MINIMAL.replace("input: 3", "input: -1"), "models.0.prices.input"),
        (MINIMAL.replace("aliases: [m-one]", "aliases: [m-1]"), "already used"),
    ],
)
def test_invalid_catalog_errors_name_path_and_field(text: str, message: str) -> None:
    with pytest.raises(CatalogError) as error:
        parse_catalog(text, "bad.yaml", {})
    assert "bad.yaml" in str(error.value)
    assert message in str(error.value)
