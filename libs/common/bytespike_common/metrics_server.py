"""Prometheus `/metrics` on its own port, beside a service's gRPC or HTTP API.

prometheus-client's WSGI server on a daemon thread: a scrape never queues behind the event
loop, and a busy loop never makes a scrape time out. Started by each process entry point
(`run_service`, the edge's `main`), not by the factories, so tests that build services
bind no fixed port. Port 0 in the settings means no metrics server.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

log = logging.getLogger(__name__)


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def start(
    host: str, port: int, registry: CollectorRegistry = REGISTRY, *, ephemeral: bool = False
) -> MetricsServer | None:
    """Serves the registry on http://host:port/metrics; None when `port` is 0.

    `ephemeral=True` binds a free port when `port` is 0 (tests). A port that cannot be
    bound fails the start-up, like the service's own port would.
    """
    if port == 0 and not ephemeral:
        return None
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise RuntimeError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
    running = MetricsServer(server, thread)
    log.info("metrics on http://%s:%d/metrics", host, running.port)
    return running
