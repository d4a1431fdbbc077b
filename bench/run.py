"""One benchmark run: probe, the alternating matrix, open streams, soak, report.

Modes are measured round-robin within each (stream, concurrency) cell, the order rotated
every round, so the noise of a shared machine lands on all of them alike; figures are
reported as ratios to the direct run of the same cell.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import os
import platform
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench import report
from bench.load import ERROR_MARKERS, LoadDriver, LoadJob, LoadResult, percentile
from bench.protocols import BY_NAME, ClientProtocol
from bench.suite import UPSTREAM_KEY, Processes, cpu_seconds, load_average, rss_mb

MODES = ("direct", "proxy", "gateway")
# Answers that mean "this gateway does not serve that protocol yet": skip with a note.
NOT_SERVED = frozenset({400, 404, 405, 501})


@dataclass(frozen=True)
class Config:
    duration: float = 5.0
    warmup: float = 1.0
    rounds: int = 3
    concurrency: tuple[int, ...] = (1, 64)
    protocols: tuple[str, ...] = tuple(BY_NAME)
    modes: tuple[str, ...] = MODES
    chunks: int = 16
    streams: int = 1000
    stream_ttfb: float = 0.5
    stream_chunk_delay: float = 0.1
    soak: int = 100_000
    soak_concurrency: int = 64
    # Upper bounds on the count-based scenarios, whatever the gateway's speed.
    soak_max_seconds: float = 1800.0
    streams_max_seconds: float = 180.0
    timeout: float = 60.0
    # Extra edges with candidate fixes (`bench.edge` patches), one per entry.
    variants: tuple[str, ...] = ()
    # Extra bare proxies forwarding with other clients (`bench.proxy --client`).
    proxy_clients: tuple[str, ...] = ()


class Bench:
    def __init__(self, config: Config, processes: Processes, driver: LoadDriver) -> None:
        self.config = config
        self.processes = processes
        self.driver = driver
        self.key = ""
        self.rss_samples: list[tuple[float, float]] = []
        self.modes = [*config.modes, *processes.variant_urls]

    # -- targets ----------------------------------------------------------------------------

    def _base(self, mode: str) -> str:
        if mode in self.processes.variant_urls:
            return self.processes.variant_urls[mode]
        if mode == "direct":
            return self.processes.fake_url
        if mode == "proxy":
            return self.processes.proxy_url
        assert self.processes.stack is not None
        return self.processes.stack.edge_url

    def job(self, mode: str, protocol: ClientProtocol, stream: bool, **overrides: Any) -> LoadJob:
        gateway = mode.startswith("gateway")
        model = protocol.model if gateway else protocol.upstream_model
        fields: dict[str, Any] = {
            "url": self._base(mode) + protocol.path(model, stream),
            "body": protocol.body(model, stream),
            "headers": protocol.headers(self.key if gateway else UPSTREAM_KEY),
            "stream": stream,
            "duration": self.config.duration,
            "warmup": self.config.warmup,
            "timeout": self.config.timeout,
        }
        return LoadJob(**{**fields, **overrides})

    def _cpu(self) -> dict[str, float]:
        helpers = self.processes.helpers
        pids = {**{name: p.pid for name, p in helpers.items()}, **self.processes.suite_pids()}
        return {name: cpu_seconds(pid) for name, pid in pids.items()}

    async def measure(self, job: LoadJob) -> tuple[LoadResult, dict[str, float]]:
        before = self._cpu()
        result = await self.driver.run(job)
        after = self._cpu()
        return result, {name: after[name] - before.get(name, 0.0) for name in after}

    # -- steps ------------------------------------------------------------------------------

    async def probe(self) -> tuple[list[ClientProtocol], list[dict[str, Any]]]:
        """Which protocols the gateway serves end to end; the others are skipped, noted."""
        served: list[ClientProtocol] = []
        notes: list[dict[str, Any]] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            for name in self.config.protocols:
                protocol = BY_NAME[name]
                failures = []
                for mode in self.modes:
                    for stream in (False, True):
                        job = self.job(mode, protocol, stream)
                        async with session.post(job.url, data=job.body, headers=job.headers) as r:
                            raw = await r.read()
                        text = raw[:300].decode(errors="replace")
                        if r.status != 200 or any(marker in raw for marker in ERROR_MARKERS):
                            failures.append((mode, stream, r.status, text))
                if not failures:
                    served.append(protocol)
                    notes.append({"protocol": name, "status": "measured"})
                    continue
                mode, stream, status, text = failures[0]
                if mode != "gateway":
                    # The fake, the proxy or a variant edge failing is the harness's fault.
                    raise RuntimeError(f"{name} {mode} stream={stream}: HTTP {status}: {text}")
                reason = "not served yet" if status in NOT_SERVED else "FAILING"
                notes.append(
                    {
                        "protocol": name,
                        "status": "skipped",
                        "note": f"{reason}: gateway answered {status} on "
                        f"{protocol.path(protocol.model, stream)} (stream={stream}): {text[:200]}",
                    }
                )
        return served, notes

    async def matrix(self, protocols: list[ClientProtocol]) -> list[dict[str, Any]]:
        cells: dict[tuple[str, bool, int, str], report.Cell] = {}
        modes = self.modes
        for stream in (False, True):
            for concurrency in self.config.concurrency:
                for round_ in range(self.config.rounds):
                    shift = round_ % len(modes)
                    for mode in modes[shift:] + modes[:shift]:
                        for protocol in protocols:
                            key = (protocol.name, stream, concurrency, mode)
                            cell = cells.setdefault(key, report.Cell(*key))
                            job = self.job(mode, protocol, stream, concurrency=concurrency)
                            cell.add(*await self.measure(job))
                            summary = cell.summary()
                            print(
                                f"  {protocol.name:<9} stream={stream!s:<5} c={concurrency:<4} "
                                f"{mode:<8} round {round_ + 1}: {cell.rounds[-1].rps:8.0f} req/s"
                                f"  p50 {summary['p50_ms']:.2f} ms",
                                flush=True,
                            )
        order = {mode: i for i, mode in enumerate([*MODES, *self.modes])}
        rows = [cell.summary() for cell in cells.values()]
        rows.sort(key=lambda r: (r["protocol"], r["stream"], r["concurrency"], order[r["mode"]]))
        report.compare(rows)
        return rows

    async def open_streams(self, protocol: ClientProtocol) -> dict[str, Any]:
        """N concurrent streams against a slow upstream, each held open for seconds."""
        config = self.config
        await self.processes.configure_fake(
            config.stream_ttfb, config.chunks, config.stream_chunk_delay
        )
        try:
            figures: dict[str, Any] = {
                "streams": config.streams,
                "upstream": {
                    "ttfb_s": config.stream_ttfb,
                    "chunks": config.chunks,
                    "chunk_delay_s": config.stream_chunk_delay,
                },
            }
            for mode in ("direct", "gateway"):
                job = self.job(
                    mode,
                    protocol,
                    True,
                    concurrency=config.streams,
                    requests_per_worker=1,
                    duration=config.streams_max_seconds,
                )
                result, _ = await self.measure(job)
                figures[mode] = {
                    "completed": result.requests,
                    "errors": result.errors,
                    "error_samples": result.error_samples,
                    "peak_open": result.peak_in_flight,
                    "ttft_p50_ms": round(percentile(result.ttft_us, 50) / 1000, 2),
                    "ttft_p99_ms": round(percentile(result.ttft_us, 99) / 1000, 2),
                    "duration_p50_ms": round(percentile(result.latencies_us, 50) / 1000, 1),
                    "duration_p99_ms": round(percentile(result.latencies_us, 99) / 1000, 1),
                    "edge_rss_mb": round(rss_mb(self.processes.edge_pid), 1),
                }
            gateway = figures["gateway"]
            figures["errors_total"] = sum(gateway["errors"].values())
            figures["peak_open"] = gateway["peak_open"]
            return figures
        finally:
            await self.processes.configure_fake(0.0, config.chunks, 0.0)

    async def soak(self, protocol: ClientProtocol) -> dict[str, Any]:
        """Many non-streaming requests through the gateway; RSS sampled against progress."""
        config = self.config
        concurrency = min(config.soak_concurrency, config.soak)
        per_worker = math.ceil(config.soak / concurrency)
        base = await self.processes.fake_requests()
        pid = self.processes.edge_pid
        samples: list[tuple[int, float]] = [(0, rss_mb(pid))]

        async def sample() -> None:
            while True:
                await asyncio.sleep(1.0)
                done = await self.processes.fake_requests() - base
                samples.append((done, rss_mb(pid)))

        job = self.job(
            "gateway",
            protocol,
            False,
            concurrency=concurrency,
            requests_per_worker=per_worker,
            duration=config.soak_max_seconds,
        )
        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        try:
            result, cpu = await self.measure(job)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        elapsed = time.perf_counter() - started
        total = concurrency * per_worker
        samples.append((total, rss_mb(pid)))
        tenth = next((rss for done, rss in samples if done >= total / 10), samples[0][1])
        step = max(1, len(samples) // 40)
        return {
            "requests": result.requests,
            "errors": result.errors,
            "errors_total": result.error_count,
            "concurrency": concurrency,
            "seconds": round(elapsed, 1),
            "rps": round(result.requests / elapsed, 1) if elapsed else 0.0,
            "edge_cpu_us_per_request": round(cpu.get("edge", 0.0) / max(1, total) * 1e6, 1),
            "rss_start_mb": round(samples[0][1], 1),
            "rss_at_10pct_mb": round(tenth, 1),
            "rss_end_mb": round(samples[-1][1], 1),
            "rss_growth_mb": round(samples[-1][1] - tenth, 1),
            "rss_samples": [[done, round(rss, 1)] for done, rss in samples[::step]],
        }

    @contextlib.asynccontextmanager
    async def watching_rss(self) -> AsyncIterator[None]:
        async def watch() -> None:
            while True:
                self.rss_samples.append((time.time(), rss_mb(self.processes.edge_pid)))
                await asyncio.sleep(0.5)

        task = asyncio.create_task(watch())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self, argv: list[str]) -> dict[str, Any]:
        config = self.config
        started = dt.datetime.now(dt.UTC)
        load_start = load_average()
        assert self.processes.stack is not None
        _, self.key = await self.processes.stack.create_key("bench", f"bench-{int(time.time())}")
        rss_idle = rss_mb(self.processes.edge_pid)
        protocols, notes = await self.probe()
        if not protocols:
            raise RuntimeError(f"the gateway serves none of the benchmarked protocols: {notes}")
        for note in notes:
            print(f"protocol {note['protocol']}: {note['status']} {note.get('note', '')}")
        async with self.watching_rss():
            rows = await self.matrix(protocols)
            soak = await self.soak(protocols[0]) if config.soak else None
            streams = await self.open_streams(protocols[0]) if config.streams else None
        rss_end = rss_mb(self.processes.edge_pid)
        rss_max = max([rss_idle, rss_end, *(rss for _, rss in self.rss_samples)])
        checks = report.targets(
            rows,
            protocol=protocols[0].name,
            concurrencies=list(config.concurrency),
            streams=streams,
            soak=soak,
            rss_max_mb=rss_max,
        )
        # Latency and throughput are judged for every protocol (they differ: each has its
        # own floor); the scenarios and memory once, on the first.
        for other in protocols[1:]:
            checks += report.targets(
                rows, protocol=other.name, concurrencies=list(config.concurrency)
            )
        for mode in (m for m in self.processes.variant_urls if m.startswith("gateway+")):
            checks += report.targets(
                rows, protocol=protocols[0].name, concurrencies=list(config.concurrency), mode=mode
            )
        return {
            "date": started.isoformat(timespec="seconds"),
            "command": " ".join(argv),
            "machine": _machine(load_start),
            "config": {**config.__dict__, "modes": self.modes},
            "protocols": notes,
            "results": rows,
            "open_streams": streams,
            "soak": soak,
            "edge_rss_mb": {
                "start": round(rss_idle, 1),
                "end": round(rss_end, 1),
                "max": round(rss_max, 1),
            },
            "targets": checks,
        }


def _machine(load_start: list[float]) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), Path("/proc/cpuinfo").open() as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": load_start,
        "load_average_end": load_average(),
    }
