"""A closed-loop load driver: N concurrent workers, each sending its next request as soon as
the previous one finished, for a fixed time after a warm-up (or a fixed count each).

It runs in its own process (`python -m bench.load --serve` takes one JSON job per stdin
line and answers one JSON result per stdout line), so the process being measured never
shares an event loop with the load. The client is aiohttp on uvloop, the fastest Python
HTTP client measured on this machine (DESIGN §9).

Per request it records the latency (request sent → body fully read) and, for streams, the
time to the first body bytes (TTFT). A request counts in a duration run when it started
after the warm-up and finished before the end. A non-200 status, a transport error, a
timeout, an empty stream or an in-stream error frame counts as an error, by cause.

Standalone: `python -m bench.load --url http://127.0.0.1:8080/v1/chat/completions
--header 'authorization: Bearer sk-byts-…' --body '{…}' -c 64 -d 10 [--stream]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson
import uvloop

# In-stream error forms: OpenAI / Gemini `data: {"error": …}`, Anthropic `event: error`.
ERROR_MARKERS = (b'data: {"error"', b"event: error")


@dataclass(frozen=True, slots=True)
class LoadJob:
    url: str
    body: bytes
    headers: dict[str, str]
    stream: bool = False
    concurrency: int = 1
    duration: float = 5.0
    warmup: float = 1.0
    # > 0: every worker sends this many requests (no warm-up, no window); `duration` then
    # caps the whole run, so a slow target cannot hold it open for count x timeout.
    requests_per_worker: int = 0
    timeout: float = 60.0

    def to_json(self) -> bytes:
        return orjson.dumps({**asdict(self), "body": self.body.decode()})

    @classmethod
    def from_json(cls, raw: bytes) -> LoadJob:
        data = orjson.loads(raw)
        return cls(**{**data, "body": data["body"].encode()})


@dataclass(slots=True)
class LoadResult:
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    # Seconds of the measured window (duration runs) or of the whole run (count runs).
    window: float = 0.0
    # Microseconds, sorted.
    latencies_us: list[int] = field(default_factory=list)
    ttft_us: list[int] = field(default_factory=list)
    peak_in_flight: int = 0
    # Every request answered during the job, warm-up included (CPU per request uses it).
    served: int = 0
    # The first answer body seen per error cause (truncated), to tell why.
    error_samples: dict[str, str] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def rps(self) -> float:
        return self.requests / self.window if self.window > 0 else 0.0

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> LoadResult:
        return cls(**orjson.loads(raw))


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of already sorted values; 0.0 for no values."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values)) - 1))
    return float(sorted_values[rank])


def merge(results: list[LoadResult]) -> LoadResult:
    """Rounds of the same measurement as one: counts and windows add, samples pool."""
    errors: Counter[str] = Counter()
    for result in results:
        errors.update(result.errors)
    return LoadResult(
        requests=sum(r.requests for r in results),
        errors=dict(errors),
        window=sum(r.window for r in results),
        latencies_us=sorted(v for r in results for v in r.latencies_us),
        ttft_us=sorted(v for r in results for v in r.ttft_us),
        peak_in_flight=max((r.peak_in_flight for r in results), default=0),
        served=sum(r.served for r in results),
        error_samples={k: v for r in reversed(results) for k, v in r.error_samples.items()},
    )


class _Run:
    def __init__(self, job: LoadJob, session: aiohttp.ClientSession) -> None:
        self.job = job
        self.session = session
        self.errors: Counter[str] = Counter()
        self.latencies: list[int] = []
        self.ttfts: list[int] = []
        self.in_flight = 0
        self.peak = 0
        self.served = 0
        self.error_samples: dict[str, str] = {}

    async def one(self) -> tuple[bool, float]:
        """Sends one request and reads the whole answer; (ok, first-bytes time)."""
        job = self.job
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        first = 0.0
        try:
            async with self.session.post(job.url, data=job.body, headers=job.headers) as resp:
                if resp.status != 200:
                    cause = f"http_{resp.status}"
                    body = await resp.read()
                    self.errors[cause] += 1
                    self.error_samples.setdefault(cause, body[:300].decode(errors="replace"))
                    return False, first
                if not job.stream:
                    await resp.read()
                    return True, time.perf_counter()
                async for chunk in resp.content.iter_any():
                    if not first:
                        first = time.perf_counter()
                    if any(marker in chunk for marker in ERROR_MARKERS):
                        self.errors["stream_error_frame"] += 1
                        return False, first
                if not first:
                    self.errors["empty_stream"] += 1
                    return False, first
                return True, first
        except TimeoutError:
            self.errors["timeout"] += 1
        except (aiohttp.ClientError, OSError) as exc:
            self.errors[type(exc).__name__] += 1
        finally:
            self.in_flight -= 1
            self.served += 1
        return False, first

    async def timed_worker(self, measure_from: float, until: float) -> None:
        while (started := time.perf_counter()) < until:
            ok, first = await self.one()
            finished = time.perf_counter()
            if started < measure_from or finished > until:
                continue
            if ok:
                self.latencies.append(int((finished - started) * 1e6))
                if self.job.stream:
                    self.ttfts.append(int((first - started) * 1e6))

    async def counted_worker(self, count: int, until: float) -> None:
        for _ in range(count):
            started = time.perf_counter()
            if started >= until:
                self.errors["not_sent_time_cap"] += 1
                continue
            ok, first = await self.one()
            if ok:
                self.latencies.append(int((time.perf_counter() - started) * 1e6))
                if self.job.stream:
                    self.ttfts.append(int((first - started) * 1e6))


async def run_job(job: LoadJob) -> LoadResult:
    connector = aiohttp.TCPConnector(limit=job.concurrency, limit_per_host=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=job.timeout)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        run = _Run(job, session)
        started = time.perf_counter()
        if job.requests_per_worker > 0:
            until = started + job.duration
            workers = [
                run.counted_worker(job.requests_per_worker, until) for _ in range(job.concurrency)
            ]
            await asyncio.gather(*workers)
            window = time.perf_counter() - started
        else:
            measure_from = started + job.warmup
            until = measure_from + job.duration
            await asyncio.gather(
                *(run.timed_worker(measure_from, until) for _ in range(job.concurrency))
            )
            window = job.duration
    return LoadResult(
        requests=len(run.latencies),
        errors=dict(run.errors),
        window=window,
        latencies_us=sorted(run.latencies),
        ttft_us=sorted(run.ttfts),
        peak_in_flight=run.peak,
        served=run.served,
        error_samples=run.error_samples,
    )


class LoadDriver:
    """The orchestrator's handle on one long-lived load process."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.load",
            "--serve",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=256 * 1024 * 1024,
        )

    @property
    def pid(self) -> int:
        """The load process's (its CPU counts in `bench.ab`)."""
        assert self._process is not None, "start() first"
        return self._process.pid

    async def run(self, job: LoadJob) -> LoadResult:
        process = self._process
        assert process is not None and process.stdin and process.stdout, "start() first"
        process.stdin.write(job.to_json() + b"\n")
        await process.stdin.drain()
        budget = job.warmup + job.duration + job.timeout + 30
        line = await asyncio.wait_for(process.stdout.readline(), budget)
        if not line:
            raise RuntimeError("the load process exited")
        return LoadResult.from_json(line)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


def _serve() -> None:
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        result = uvloop.run(run_job(LoadJob.from_json(line)))
        sys.stdout.buffer.write(result.to_json() + b"\n")
        sys.stdout.buffer.flush()


def _summary(result: LoadResult, stream: bool) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "requests": result.requests,
        "errors": result.errors,
        "rps": round(result.rps, 1),
        "p50_ms": percentile(result.latencies_us, 50) / 1000,
        "p99_ms": percentile(result.latencies_us, 99) / 1000,
    }
    if stream:
        summary["ttft_p50_ms"] = percentile(result.ttft_us, 50) / 1000
        summary["ttft_p99_ms"] = percentile(result.ttft_us, 99) / 1000
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description="closed-loop HTTP load driver")
    parser.add_argument("--serve", action="store_true", help="JSON jobs on stdin (bench)")
    parser.add_argument("--url")
    parser.add_argument("--body", default="{}")
    parser.add_argument("--header", action="append", default=[], help="'name: value'")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            _serve()
        return
    if not args.url or not args.url.startswith(("http://127.", "http://localhost")):
        parser.error("--url must be a loopback http:// URL")
    headers = {"content-type": "application/json"}
    for header in args.header:
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    job = LoadJob(
        url=args.url,
        body=args.body.encode(),
        headers=headers,
        stream=args.stream,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
    )
    result = uvloop.run(run_job(job))
    print(orjson.dumps(_summary(result, args.stream), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
