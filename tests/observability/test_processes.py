"""The real process entry points switch telemetry on: each of the four processes serves
/metrics on its port, and with `OTEL_TRACES_EXPORTER=console` they emit their spans."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bytespike_common.devstack import SERVICES, Stack

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    suite = Stack(
        data_dir=tmp_path_factory.mktemp("processes"),
        catalog_path=REPO / "catalog" / "catalog.yaml",
        # Console spans in each process's log, exported every 100 ms.
        env={"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "100"},
    )
    try:
        await suite.start()
        yield suite
    finally:
        suite.stop()


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_every_process_serves_metrics_and_traces(stack: Stack) -> None:
    _, key = await stack.create_key("processes", "k")
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.post(
            f"{stack.edge_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "mock-echo", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert reply.status_code == 200, reply.text
        scraped = {}
        for name in ("edge", *SERVICES):
            response = await client.get(f"http://127.0.0.1:{stack.metrics_ports[name]}/metrics")
            assert response.status_code == 200, name
            scraped[name] = response.text

    requests = _samples(scraped["edge"], "bytespike_requests_total")
    ok = (("model", "mock-echo"), ("protocol", "openai"), ("route", "/v1/chat/completions"))
    assert requests[(*ok, ("status", "200"))] == 1
    handled = {
        name: _samples(scraped[name], "bytespike_grpc_server_handled_total") for name in SERVICES
    }
    assert any(("grpc_method", "Authenticate") in labels for labels in handled["auth"])
    # A new account: its first request asks metering for an admission lease.
    assert any(("grpc_method", "Lease") in labels for labels in handled["metering"])
    assert any(("grpc_method", "Check") in labels for labels in handled["router"])

    for process, span in (
        ("edge", "POST /v1/chat/completions"),
        ("auth", "/bytespike.auth.v1.AuthService/Authenticate"),
        ("metering", "/bytespike.metering.v1.MeteringService/Lease"),
    ):
        await _logged(stack, process, f'"name": "{span}"')


async def _logged(stack: Stack, process: str, text: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while text not in await asyncio.to_thread(stack.log_path(process).read_text):
        assert asyncio.get_running_loop().time() < deadline, f"{process} never logged {text}"
        await asyncio.sleep(0.1)
