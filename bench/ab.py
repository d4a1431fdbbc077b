"""A/B of two checkouts: both whole suites at once, under equal load, CPU per request.

    python -m bench.ab --tree ../base              # this checkout (A) against ../base (B)
    git worktree add ../base HEAD~1 && (cd ../base && make proto)   # a tree to compare with

On this shared 2-core machine a change worth a few µs a request drowns in the noise of
runs taken one after the other: the same code measures 210 µs a request one minute and 290
the next. Here both suites run *at the same time*, each with its own fake vendor,
nats-server, auth, router, metering, edge and load process, so whatever the machine does
lands on A and B alike; per round, each process's CPU is divided by the
requests its suite answered. A and B get the same closed-loop concurrency; keep it
moderate (the default 16 each), so that neither suite starves the other and both answer
at about the same rate: the CPU a request costs depends on the rate (batching, wake-ups).

Prints each round, then per process the mean of A, the mean of B - A over the rounds and
its standard error; a difference beyond twice its standard error is marked. Measured on
2026-12-07: the same tree against itself differs by 2.0 µs (sd 4.9) on the edge over 8
rounds, and a usage linger of 50 ms against 20 ms cut metering by 24 µs a request (sd 4).
B runs from `--tree` through PYTHONPATH (its `gen/`, `libs/common` and `services/*`),
ahead of this checkout's editable install; the tool checks that B's edge really imports
from there before measuring.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench.load import LoadDriver, LoadResult
from bench.protocols import BY_NAME, ClientProtocol
from bench.report import RESULTS
from bench.run import Bench, Config
from bench.suite import Processes, cpu_seconds

# Where a checkout keeps what its processes import (`make proto` writes gen/).
IMPORT_ROOTS = (
    "gen",
    "libs/common",
    "services/edge",
    "services/auth",
    "services/router",
    "services/metering",
)


def tree_path(tree: Path) -> str:
    return os.pathsep.join(str(tree / root) for root in IMPORT_ROOTS)


def check_tree(tree: Path) -> None:
    """B must import its own code: its generated modules exist and win over ours."""
    if not (tree / "gen").is_dir():
        raise SystemExit(f"{tree}/gen is missing: run `make proto` in that checkout first")
    found = subprocess.run(
        [sys.executable, "-c", "import bytespike_edge; print(bytespike_edge.__file__)"],
        env={**os.environ, "PYTHONPATH": tree_path(tree)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"B would import {found}, not code from {tree}")


def summarise(a: list[float], b: list[float]) -> dict[str, float]:
    """A's mean, and B - A per round: its mean, standard deviation and standard error."""
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    sd = statistics.pstdev(diffs) if len(diffs) > 1 else 0.0
    return {
        "a_mean": round(statistics.mean(a), 1),
        "b_mean": round(statistics.mean(b), 1),
        "diff_mean": round(statistics.mean(diffs), 1),
        "diff_sd": round(sd, 1),
        "diff_se": round(sd / math.sqrt(len(diffs)), 1),
    }


class Side:
    """One suite and its load process."""

    def __init__(self, name: str, processes: Processes) -> None:
        self.name = name
        self.processes = processes
        self.driver = LoadDriver()
        self.bench: Bench | None = None
        self.cpu: dict[str, list[float]] = {}
        self.rps: list[float] = []

    def cpu_now(self) -> dict[str, float]:
        """CPU seconds so far of the suite's processes, its fake vendor and its load."""
        pids = {
            **{name: helper.pid for name, helper in self.processes.helpers.items()},
            **self.processes.suite_pids(),
            "load": self.driver.pid,
        }
        return {name: cpu_seconds(pid) for name, pid in pids.items()}

    async def run(self, protocol: ClientProtocol, stream: bool, concurrency: int) -> LoadResult:
        assert self.bench is not None
        return await self.driver.run(
            self.bench.job("gateway", protocol, stream, concurrency=concurrency)
        )

    async def start(self, config: Config) -> None:
        await self.driver.start()
        self.bench = Bench(config, self.processes, self.driver)
        assert self.processes.stack is not None
        _, self.bench.key = await self.processes.stack.create_key("ab", f"ab-{time.time_ns()}")

    def note(self, result: LoadResult, before: dict[str, float], after: dict[str, float]) -> str:
        served = max(result.served, 1)
        self.rps.append(result.rps)
        parts = []
        for name, seconds in after.items():
            per_request = (seconds - before.get(name, 0.0)) / served * 1e6
            self.cpu.setdefault(name, []).append(per_request)
            parts.append(f"{name}={per_request:.0f}")
        return f"{self.name}: {result.rps:6.0f} req/s, µs/request " + " ".join(parts)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    protocol = BY_NAME[args.protocol]
    config = Config(duration=args.duration, warmup=args.warmup)
    root = Path(tempfile.mkdtemp(prefix="bytespike-ab-"))
    a = Side("A", Processes(root / "a"))
    b = Side("B", Processes(root / "b"))
    try:
        print(f"starting two suites and their fake vendors (logs under {root})", flush=True)
        for side in (a, b):
            await side.processes.start_fake()
        await a.processes.start_stack()
        await b.processes.start_stack({"PYTHONPATH": tree_path(args.tree)})
        for side in (a, b):
            await side.start(config)
        for round_ in range(args.rounds):
            before = [side.cpu_now() for side in (a, b)]
            results = await asyncio.gather(
                *(side.run(protocol, args.stream, args.concurrency) for side in (a, b))
            )
            after = [side.cpu_now() for side in (a, b)]
            lines = [
                side.note(result, start, end)
                for side, result, start, end in zip((a, b), results, before, after, strict=True)
            ]
            errors = sum(result.error_count for result in results)
            print(f"round {round_ + 1}: " + " | ".join(lines) + f" errors={errors}", flush=True)
    finally:
        for side in (a, b):
            await side.driver.stop()
            side.processes.stop()
    processes = {
        name: summarise(a.cpu[name], b.cpu[name])
        for name in a.cpu
        if name in b.cpu and max(statistics.mean(a.cpu[name]), statistics.mean(b.cpu[name])) >= 1
    }
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["python", "-m", "bench.ab", *sys.argv[1:]]),
        "b_tree": str(args.tree),
        "protocol": protocol.name,
        "stream": args.stream,
        "concurrency_each": args.concurrency,
        "rounds": args.rounds,
        "rps": {"a": [round(x) for x in a.rps], "b": [round(x) for x in b.rps]},
        "cpu_us_per_request": processes,
    }


def print_summary(results: dict[str, Any]) -> None:
    print(f"\n{'process':<10}{'A µs/req':>10}{'B - A':>9}{'sd':>7}{'se':>6}")
    for name, row in results["cpu_us_per_request"].items():
        marked = "  *" if abs(row["diff_mean"]) > 2 * row["diff_se"] > 0 else ""
        print(
            f"{name:<10}{row['a_mean']:>10.1f}{row['diff_mean']:>+9.1f}"
            f"{row['diff_sd']:>7.1f}{row['diff_se']:>6.1f}{marked}"
        )
    print("* B - A beyond twice its standard error")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, required=True, help="B: another checkout (made proto)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop, each suite")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds a round")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--protocol", choices=sorted(BY_NAME), default="openai")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS.with_name("ab.json"))
    args = parser.parse_args()
    args.tree = args.tree.resolve()
    check_tree(args.tree)
    results = uvloop.run(run(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print_summary(results)
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
