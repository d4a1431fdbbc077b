"""Fixtures shared by every test layer: a real nats-server, SQLite and PostgreSQL databases,
the edge's request metrics kept apart."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry, Histogram

from bytespike_common import telemetry
from bytespike_common.devstack import _wait_for_port, free_port, nats_server_binary
from bytespike_edge import observability

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server with JetStream of our own, on a free port, for the whole session."""
    port = free_port()
    store = tmp_path_factory.mktemp("nats")
    process = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@contextlib.asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A new PostgreSQL database, dropped afterwards; skips where none is configured."""
    dsn = os.environ.get("BYTESPIKE_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("BYTESPIKE_TEST_POSTGRES_DSN is not set")
    name = f"bytespike_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = dsn.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Runs a store test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    async with fresh_postgres_database() as url:
        yield url


# The edge's request metrics by the name `bytespike_edge.observability` keeps them under.
_EDGE_METRICS = {
    "_requests": telemetry.REQUESTS,
    "_duration": telemetry.REQUEST_DURATION,
    "_overhead": telemetry.GATEWAY_OVERHEAD,
    "_upstream": telemetry.UPSTREAM_DURATION,
    "_ttft": telemetry.TIME_TO_FIRST_TOKEN,
    "_tokens": telemetry.TOKENS,
    "_upstream_errors": telemetry.UPSTREAM_ERRORS,
}


@pytest.fixture
def edge_metrics(monkeypatch: pytest.MonkeyPatch) -> CollectorRegistry:
    """The edge's request metrics in a registry of their own, for a test serving requests
    in-process: the process-wide registry is what tests/observability scrape, and they
    expect only their own suite's model there."""
    registry = CollectorRegistry()
    for name, metric in _EDGE_METRICS.items():
        kwargs: dict[str, Any] = {"registry": registry}
        if isinstance(metric, Histogram):
            kwargs["buckets"] = metric._upper_bounds
        own = type(metric)(metric._name, metric._documentation, metric._labelnames, **kwargs)
        monkeypatch.setattr(observability, name, telemetry.Children(own))
    # Series found per request shape are cached: made again, from the metrics above.
    monkeypatch.setattr(observability, "_request_series", {})
    return registry
