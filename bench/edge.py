"""The edge with measured changes applied in-process, for A/B runs against the real one.

`python -m bench.edge --patch aiohttp,async-deps` starts `bytespike_edge` exactly as
`python -m bytespike_edge` does, after applying the named patches. A patch is a candidate
fix measured before anyone edits the service (`python -m bench --variants …`); it never
ships. Each one names what it changes:

- `aiohttp`      upstream calls through `upstream/aiohttp_client.AiohttpUpstream` (the
                 edge's default from 622d53b until `upstream/http1.py` replaced it; it
                 now measures the previous client next to the current one);
- `async-deps`   the `GatewayDep` dependency as an `async def` (FastAPI runs a plain `def`
                 dependency in a worker thread: a thread hop per request; applied since);
- `quiet-httpx`  httpx's per-request INFO log line ("HTTP Request: POST …") off (applied);
- `uvicorn-http` the public server on uvicorn's own httptools protocol (head and body of a
                 whole answer in two writes; `http_server.EdgeHttpProtocol` since 2026-12-07);
- `gc-default`   CPython's collector thresholds (a young collection every 700 allocations;
                 `bytespike_common.heap` raised it to 20,000 on 2026-12-07);
- `gc-stats`     prints the collector's collections and CPU per generation to the log
                 every 2 s (a measurement, not a fix);
- `stub-admit`   admission answered in-process, no `metering.Admit` RPC: what the edge
                 costs by itself, and what an Admit that costs nothing would give;
- `stub-usage`   usage events dropped instead of published to JetStream one by one (with
                 an ack each): the most that batching the publishes could save.

The two `stub-*` patches break billing; they measure, they are not fixes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from bytespike_common.ids import new_id


def _aiohttp() -> None:
    from bytespike_edge.upstream import dispatch  # noqa: PLC0415 - patched before app import
    from bytespike_edge.upstream.aiohttp_client import AiohttpUpstream  # noqa: PLC0415

    def default(cls: type[dispatch.UpstreamDispatcher], max_connections: int, *_: Any) -> Any:
        return cls(AiohttpUpstream(max_connections))

    dispatch.UpstreamDispatcher.default = classmethod(default)  # type: ignore[assignment,method-assign]


def _async_deps() -> None:
    from fastapi import Request  # noqa: PLC0415

    from bytespike_edge import deps  # noqa: PLC0415
    from bytespike_edge.gateway import Gateway  # noqa: PLC0415

    async def get_gateway(request: Request) -> Gateway:
        gateway: Gateway = request.app.state.gateway
        return gateway

    # FastAPI resolves string annotations in the function's module globals; these are local.
    get_gateway.__annotations__ = {"request": Request, "return": Gateway}

    marker = deps.GatewayDep.__metadata__[0]  # type: ignore[attr-defined]
    object.__setattr__(marker, "dependency", get_gateway)


def _quiet_httpx() -> None:
    from bytespike_common import logs  # noqa: PLC0415

    configure = logs.configure

    def quiet(*args: Any, **kwargs: Any) -> None:
        configure(*args, **kwargs)
        logging.getLogger("httpx").setLevel(logging.WARNING)

    logs.configure = quiet


def _uvicorn_http() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415

    from bytespike_edge import http_server  # noqa: PLC0415

    http_server.EdgeHttpProtocol.on_headers_complete = HttpToolsProtocol.on_headers_complete  # type: ignore[method-assign]


def _gc_default() -> None:
    from bytespike_common import heap  # noqa: PLC0415

    heap.YOUNG_THRESHOLD = 700  # CPython's default


def _gc_stats() -> None:
    import gc  # noqa: PLC0415
    import threading  # noqa: PLC0415
    import time  # noqa: PLC0415

    counts, seconds, started = [0, 0, 0], [0.0, 0.0, 0.0], [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:
            seconds[info["generation"]] += time.thread_time() - started[0]
            counts[info["generation"]] += 1

    def report() -> None:
        while True:
            time.sleep(2)
            spent = [round(s * 1000, 1) for s in seconds]
            print(f"gc collections {counts}, ms {spent}", file=sys.stderr, flush=True)

    gc.callbacks.append(timed)
    threading.Thread(target=report, daemon=True).start()


def _stub_admit() -> None:
    from bytespike_edge.control import metering  # noqa: PLC0415

    async def admit(self: Any, *args: Any, **kwargs: Any) -> Any:
        return metering.Admission(hold_id=new_id("hold"), metered=True)

    metering.Admitter.admit = admit  # type: ignore[method-assign]


def _stub_usage() -> None:
    from bytespike_edge.control import usage  # noqa: PLC0415

    def submit(self: Any, event: Any) -> None:
        return None

    usage.UsagePublisher.submit = submit  # type: ignore[method-assign]


PATCHES: dict[str, Callable[[], None]] = {
    "aiohttp": _aiohttp,
    "async-deps": _async_deps,
    "quiet-httpx": _quiet_httpx,
    "uvicorn-http": _uvicorn_http,
    "gc-default": _gc_default,
    "gc-stats": _gc_stats,
    "stub-admit": _stub_admit,
    "stub-usage": _stub_usage,
}


def main() -> None:
    parser = argparse.ArgumentParser(description="the edge with candidate fixes applied")
    parser.add_argument("--patch", default="", help=f"comma-separated: {', '.join(PATCHES)}")
    args = parser.parse_args()
    for name in filter(None, args.patch.split(",")):
        if name not in PATCHES:
            parser.error(f"unknown patch {name!r}; choose from {list(PATCHES)}")
        PATCHES[name]()
    from bytespike_edge.__main__ import main as edge_main  # noqa: PLC0415 - after patching

    sys.argv = sys.argv[:1]
    edge_main()


if __name__ == "__main__":
    main()
