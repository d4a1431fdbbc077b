"""Edge gauges read from the live gateway at scrape time: circuit breakers, usage backlog.

Collected on the metrics server's thread (see `bytespike_common.metrics_server`), so they
only read: the breaker table is copied defensively, counters are plain attribute reads.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bytespike_common import telemetry


class EdgeGauges(Collector):
    """Sums over every watched app: one per process in production, several in tests."""

    def __init__(self) -> None:
        self._apps: weakref.WeakSet[FastAPI] = weakref.WeakSet()
        self._lock = threading.Lock()

    def watch(self, app: FastAPI) -> None:
        with self._lock:
            self._apps.add(app)

    def collect(self) -> Iterable[Metric]:
        circuits = GaugeMetricFamily(
            telemetry.CIRCUIT_STATE,
            "Circuit breaker per deployment: 0 closed, 1 half-open, 2 open.",
            labels=["deployment"],
        )
        pending = published = 0
        with self._lock:
            apps = list(self._apps)
        for app in apps:
            gateway = getattr(app.state, "gateway", None)
            if gateway is None:
                continue
            for deployment, state in _breaker_states(gateway.health).items():
                circuits.add_metric([deployment], int(state))
            pending += gateway.usage.pending
            published += gateway.usage.published
        yield circuits
        yield GaugeMetricFamily(
            telemetry.USAGE_PUBLISH_PENDING,
            "Usage events queued for JetStream, not yet acked.",
            value=pending,
        )
        yield CounterMetricFamily(
            telemetry.USAGE_PUBLISHED, "Usage events acked by JetStream.", value=published
        )


def _breaker_states(board: Any) -> dict[str, int]:
    # The event loop may add a breaker while this thread copies the table: try again.
    for _ in range(3):
        try:
            return {name: int(state) for name, state in board.states().items()}
        except RuntimeError:
            continue
    return {}


_gauges = EdgeGauges()
REGISTRY.register(_gauges)


def watch(app: FastAPI) -> None:
    """Report this app's gateway (once its lifespan has built one) at every scrape."""
    _gauges.watch(app)
