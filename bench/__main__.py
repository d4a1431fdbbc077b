"""`make bench` (`python -m bench` from the repo root): the whole benchmark, one run.

    python -m bench                     # full run: ~20 minutes on 2 cores (the soak is most)
    python -m bench --quick             # ~3 minutes: shorter windows, one round, small soak
    python -m bench --protocols openai --variant aiohttp,async-deps   # A/B a candidate fix

Prints the table and the target checks, writes the JSON (default bench/results/latest.json).
Exits 0 whether targets pass or not: the checks are figures to read, not a gate; it exits
non-zero only when the benchmark itself could not run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench import report
from bench.load import LoadDriver
from bench.protocols import BY_NAME
from bench.report import RESULTS
from bench.run import MODES, Bench, Config
from bench.suite import Processes


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def _names(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(part for part in text.split(",") if part)
        unknown = sorted(set(names) - set(choices))
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {list(choices)}")
        return names

    return parse


def parse_args(argv: list[str]) -> tuple[Config, Path, bool]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows, 1 round, small soak")
    parser.add_argument("--duration", type=float, help="measured seconds per run (5; quick 2)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per run (1; quick 0.5)")
    parser.add_argument("--rounds", type=int, help="alternations of the modes (3; quick 1)")
    parser.add_argument("--concurrency", type=_ints, default=(1, 64), help="levels, e.g. 1,64")
    parser.add_argument("--protocols", type=_names(tuple(BY_NAME)), default=tuple(BY_NAME))
    parser.add_argument("--modes", type=_names(MODES), default=MODES)
    parser.add_argument("--chunks", type=int, default=16, help="content deltas per stream")
    parser.add_argument("--streams", type=int, default=1000, help="open-streams scenario size")
    parser.add_argument("--stream-ttfb", type=float, default=0.5)
    parser.add_argument("--stream-chunk-delay", type=float, default=0.1)
    parser.add_argument("--soak", type=int, help="soak requests (100000; quick 10000; 0 = skip)")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="also measure an edge with these bench.edge patches (comma-separated; repeatable)",
    )
    parser.add_argument(
        "--proxy-client",
        action="append",
        default=[],
        choices=["aiohttp", "httpx-aiohttp", "httpx"],
        help="also measure the bare proxy forwarding with this client (repeatable)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the run's temp dir (logs)")
    args = parser.parse_args(argv)
    quick = args.quick

    def pick(value: float | None, full: float, short: float) -> float:
        return value if value is not None else (short if quick else full)

    if "direct" not in args.modes:
        parser.error("--modes must include direct: every figure is relative to it")
    config = Config(
        duration=pick(args.duration, 5.0, 2.0),
        warmup=pick(args.warmup, 1.0, 0.5),
        rounds=int(pick(args.rounds, 3, 1)),
        concurrency=args.concurrency,
        protocols=args.protocols,
        modes=args.modes,
        chunks=args.chunks,
        streams=args.streams,
        stream_ttfb=args.stream_ttfb,
        stream_chunk_delay=args.stream_chunk_delay,
        soak=int(pick(args.soak, 100_000, 10_000)),
        variants=tuple(args.variant),
        proxy_clients=tuple(args.proxy_client),
    )
    return config, args.output, args.keep


async def main_async(argv: list[str]) -> int:
    config, output, keep = parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="bytespike-bench-"))
    processes = Processes(data_dir)
    driver = LoadDriver()
    ok = False
    try:
        print(f"starting fake vendor, bare proxy and the suite (logs in {data_dir / 'logs'})")
        await processes.start_fake()
        if "proxy" in config.modes:
            await processes.start_proxy()
        await processes.start_stack()
        for client in config.proxy_clients:
            await processes.start_proxy(client)
        for patches in config.variants:
            await processes.start_variant(patches)
        await driver.start()
        results = await Bench(config, processes, driver).run(["python", "-m", "bench", *argv])
        ok = True
    finally:
        await driver.stop()
        processes.stop()
        if ok and not keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        elif not ok:
            print(f"benchmark failed; logs kept in {data_dir}", file=sys.stderr)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    _print_summary(results)
    print(f"\nwritten to {output}")
    return 0


def _print_summary(results: dict[str, Any]) -> None:
    print()
    print(report.table(results["results"]))
    print()
    for note in results["protocols"]:
        if note["status"] != "measured":
            print(f"skipped {note['protocol']}: {note['note']}")
    if results["open_streams"]:
        print(f"open streams: {results['open_streams']['gateway']}")
    if results["soak"]:
        soak = {k: v for k, v in results["soak"].items() if k != "rss_samples"}
        print(f"soak: {soak}")
    print(f"edge RSS MB: {results['edge_rss_mb']}")
    print("targets:")
    print(report.checks_text(results["targets"]))


def main() -> None:
    sys.exit(uvloop.run(main_async(sys.argv[1:])))


if __name__ == "__main__":
    main()
