"""The whole suite as processes: nats-server, auth, router, metering, edge, a fake vendor."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bytespike_common.devstack import SERVICES, Stack, free_port
from tests.fakes.process import FakeVendorProcess, fake_vendor

REPO = Path(__file__).resolve().parents[2]
UPSTREAM_KEY = "upstream-test-credential"


@pytest.fixture(scope="package")
def vendor() -> Iterator[FakeVendorProcess]:
    with fake_vendor() as running:
        yield running


@pytest.fixture(scope="package")
async def stack(
    vendor: FakeVendorProcess, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    suite = Stack(
        data_dir=tmp_path_factory.mktemp("stack"),
        catalog_path=REPO / "catalog" / "catalog.yaml",
        edge_port=free_port(),
        service_ports={name: free_port() for name in SERVICES},
        # The shipped catalog's real OpenAI, Anthropic and Gemini providers, pointed at the
        # fake vendor (which speaks all three).
        env={
            "BYTESPIKE_PROVIDER_OPENAI_BASE_URL": f"{vendor.url}/v1",
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "BYTESPIKE_PROVIDER_ANTHROPIC_BASE_URL": vendor.url,
            "ANTHROPIC_API_KEY": UPSTREAM_KEY,
            "BYTESPIKE_PROVIDER_GEMINI_BASE_URL": vendor.url,
            "GEMINI_API_KEY": UPSTREAM_KEY,
            "BYTESPIKE_EDGE_LOG_LEVEL": "INFO",
            "BYTESPIKE_EDGE_STREAM_KEEPALIVE": "0.3",
        },
    )
    try:
        await suite.start()
        yield suite
    finally:
        suite.stop()
