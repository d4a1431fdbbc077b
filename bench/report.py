"""Turning load results into the figures, the target checks and the printed table."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.load import LoadResult, merge, percentile

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
# DESIGN §9 / issue 8, on this 2-core machine with the load generator included.
MAX_ADDED_P50_MS = 1.0
MAX_ADDED_TTFT_MS = 1.0
MIN_GATEWAY_RPS = 1500.0
MIN_RATIO_TO_PROXY = 0.60
TARGET_OPEN_STREAMS = 1000
MAX_RSS_MB = 150.0
TARGET_SOAK_REQUESTS = 100_000
# "Flat": the edge grows by at most this much between the first tenth of the soak and its end.
MAX_RSS_GROWTH_MB = 10.0


def own_process(mode: str) -> str | None:
    """The process whose CPU a mode adds on top of the direct call."""
    if mode == "proxy":
        return "proxy"
    if mode == "gateway":
        return "edge"
    return mode if mode.startswith(("gateway+", "proxy+")) else None


@dataclass
class Cell:
    """One (protocol, stream, concurrency, mode) measurement, over all rounds."""

    protocol: str
    stream: bool
    concurrency: int
    mode: str
    rounds: list[LoadResult] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)

    def add(self, result: LoadResult, cpu: dict[str, float]) -> None:
        self.rounds.append(result)
        for name, seconds in cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds

    def summary(self) -> dict[str, Any]:
        total = merge(self.rounds)
        ms = 1000.0
        figures: dict[str, Any] = {
            "protocol": self.protocol,
            "stream": self.stream,
            "concurrency": self.concurrency,
            "mode": self.mode,
            "rounds": len(self.rounds),
            "requests": total.requests,
            "errors": total.errors,
            "rps": round(total.rps, 1),
            "p50_ms": round(percentile(total.latencies_us, 50) / ms, 3),
            "p99_ms": round(percentile(total.latencies_us, 99) / ms, 3),
            "ttft_p50_ms": None,
            "ttft_p99_ms": None,
            "cpu_s": {name: round(seconds, 2) for name, seconds in self.cpu.items()},
            "cpu_us_per_request": None,
        }
        if self.stream:
            figures["ttft_p50_ms"] = round(percentile(total.ttft_us, 50) / ms, 3)
            figures["ttft_p99_ms"] = round(percentile(total.ttft_us, 99) / ms, 3)
        own = own_process(self.mode)
        if own and total.requests:
            # CPU is read around the whole job, so it is shared by every request served.
            figures["cpu_us_per_request"] = round(self.cpu.get(own, 0.0) / total.served * 1e6, 1)
        return figures


def compare(rows: list[dict[str, Any]]) -> None:
    """Adds, in place, each row's difference and ratio to direct (and to the proxy)."""
    by_key = {(r["protocol"], r["stream"], r["concurrency"], r["mode"]): r for r in rows}
    for row in rows:
        key = (row["protocol"], row["stream"], row["concurrency"])
        direct = by_key.get((*key, "direct"))
        proxy = by_key.get((*key, "proxy"))
        row["added_p50_ms"] = row["added_ttft_p50_ms"] = None
        row["rps_vs_direct"] = row["rps_vs_proxy"] = None
        if direct and direct["requests"] and row["requests"]:
            row["added_p50_ms"] = round(row["p50_ms"] - direct["p50_ms"], 3)
            row["rps_vs_direct"] = round(row["rps"] / direct["rps"], 3) if direct["rps"] else None
            if row["stream"]:
                row["added_ttft_p50_ms"] = round(row["ttft_p50_ms"] - direct["ttft_p50_ms"], 3)
        if proxy and proxy["rps"] and row["requests"]:
            row["rps_vs_proxy"] = round(row["rps"] / proxy["rps"], 3)


def _check(
    name: str, target: str, measured: Any, passed: bool | None, **extra: Any
) -> dict[str, Any]:
    return {"name": name, "target": target, "measured": measured, "pass": passed, **extra}


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def targets(
    rows: list[dict[str, Any]],
    *,
    protocol: str,
    concurrencies: list[int],
    mode: str = "gateway",
    streams: dict[str, Any] | None = None,
    soak: dict[str, Any] | None = None,
    rss_max_mb: float | None = None,
) -> list[dict[str, Any]]:
    """The checks of DESIGN §9 for one gateway mode; scenarios only where they ran."""
    checks: list[dict[str, Any]] = []
    low, high = min(concurrencies), max(concurrencies)
    single = _find(rows, protocol=protocol, stream=False, concurrency=low, mode=mode)
    if single and single["added_p50_ms"] is not None and low == 1:
        added = single["added_p50_ms"]
        checks.append(
            _check("added_p50_c1", f"<= {MAX_ADDED_P50_MS} ms", added, added <= MAX_ADDED_P50_MS)
        )
    stream = _find(rows, protocol=protocol, stream=True, concurrency=low, mode=mode)
    if stream and stream["added_ttft_p50_ms"] is not None and low == 1:
        added = stream["added_ttft_p50_ms"]
        checks.append(
            _check("added_ttft_c1", f"<= {MAX_ADDED_TTFT_MS} ms", added, added <= MAX_ADDED_TTFT_MS)
        )
    loaded = _find(rows, protocol=protocol, stream=False, concurrency=high, mode=mode)
    if loaded and high > 1:
        rps = loaded["rps"]
        checks.append(
            _check(
                f"gateway_rps_c{high}",
                f">= {MIN_GATEWAY_RPS:.0f} req/s",
                rps,
                rps >= MIN_GATEWAY_RPS,
            )
        )
        ratio = loaded["rps_vs_proxy"]
        if ratio is not None:
            checks.append(
                _check(
                    f"gateway_vs_proxy_rps_c{high}",
                    f">= {MIN_RATIO_TO_PROXY:.0%} of the bare proxy",
                    ratio,
                    ratio >= MIN_RATIO_TO_PROXY,
                )
            )
    for check in checks:  # the per-request checks so far: this protocol's
        check["protocol"] = protocol
    if streams is not None:
        errors = streams["errors_total"]
        full = streams["streams"] >= TARGET_OPEN_STREAMS
        ok = errors == 0 and streams["peak_open"] >= streams["streams"]
        checks.append(
            _check(
                "open_streams",
                f"{TARGET_OPEN_STREAMS} concurrent streams, 0 errors",
                {
                    "streams": streams["streams"],
                    "peak_open": streams["peak_open"],
                    "errors": errors,
                },
                ok if full else None,
                note=None if full else f"ran {streams['streams']} streams only",
            )
        )
    if rss_max_mb is not None:
        measured = round(rss_max_mb, 1)
        checks.append(
            _check("edge_rss_max", f"< {MAX_RSS_MB:.0f} MB", measured, rss_max_mb < MAX_RSS_MB)
        )
    if soak is not None:
        growth = soak["rss_growth_mb"]
        full = soak["requests"] + soak["errors_total"] >= TARGET_SOAK_REQUESTS
        checks.append(
            _check(
                "edge_rss_flat",
                f"growth <= {MAX_RSS_GROWTH_MB:.0f} MB over {TARGET_SOAK_REQUESTS:,} requests",
                growth,
                (growth <= MAX_RSS_GROWTH_MB and soak["errors_total"] == 0) if full else None,
                note=None if full else f"soaked {soak['requests']:,} requests only",
            )
        )
    for check in checks:
        check["mode"] = mode
    return checks


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    width = max([9, *(len(r["mode"]) + 1 for r in rows)])
    header = (
        f"{'protocol':<10}{'stream':<7}{'conc':>5} {'mode':<{width}}{'req/s':>9}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'ttft50':>8}{'+p50':>8}{'+ttft':>8}{'x dir':>7}{'x prx':>7}"
        f"{'cpu us':>8}{'errors':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        errors = sum(r["errors"].values())
        lines.append(
            f"{r['protocol']:<10}{'yes' if r['stream'] else 'no':<7}{r['concurrency']:>5} "
            f"{r['mode']:<{width}}{r['rps']:>9.0f}{_fmt(r['p50_ms']):>9}{_fmt(r['p99_ms']):>9}"
            f"{_fmt(r['ttft_p50_ms']):>8}{_fmt(r['added_p50_ms']):>8}"
            f"{_fmt(r['added_ttft_p50_ms']):>8}{_fmt(r['rps_vs_direct']):>7}"
            f"{_fmt(r['rps_vs_proxy']):>7}{_fmt(r['cpu_us_per_request'], '.0f'):>8}{errors:>8}"
        )
    return "\n".join(lines)


def checks_text(checks: list[dict[str, Any]]) -> str:
    lines = []
    for check in checks:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[check["pass"]]
        note = f"  ({check['note']})" if check.get("note") else ""
        where = "" if check["mode"] == "gateway" else f" [{check['mode']}]"
        protocol = f" {check['protocol']}" if check.get("protocol") else ""
        lines.append(
            f"  {verdict}  {check['name'] + protocol + where:<54} {check['target']:<46} "
            f"{check['measured']}{note}"
        )
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    """The run's figures as Markdown tables (for docs/performance.md)."""
    lines = [
        "| protocol | stream | conc | mode | req/s | p50 ms | p99 ms | TTFT p50 ms | +p50 ms "
        "| +TTFT ms | x direct | x proxy | CPU µs/req | errors |",
        "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results["results"]:
        lines.append(
            f"| {r['protocol']} | {'yes' if r['stream'] else 'no'} | {r['concurrency']} "
            f"| {r['mode']} | {r['rps']:.0f} | {_fmt(r['p50_ms'])} | {_fmt(r['p99_ms'])} "
            f"| {_fmt(r['ttft_p50_ms'])} | {_fmt(r['added_p50_ms'])} "
            f"| {_fmt(r['added_ttft_p50_ms'])} | {_fmt(r['rps_vs_direct'])} "
            f"| {_fmt(r['rps_vs_proxy'])} | {_fmt(r['cpu_us_per_request'], '.0f')} "
            f"| {sum(r['errors'].values())} |"
        )
    lines += [
        "",
        "| check | protocol | mode | target | measured | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for check in results["targets"]:
        verdict = {True: "pass", False: "**fail**", None: "not judged"}[check["pass"]]
        note = f" ({check['note']})" if check.get("note") else ""
        lines.append(
            f"| {check['name']} | {check.get('protocol', 'any')} | {check['mode']} "
            f"| {check['target']} | {check['measured']} | {verdict}{note} |"
        )
    return "\n".join(lines)


def main() -> None:
    """`python -m bench.report [results.json]`: the Markdown tables of a finished run."""
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    print(markdown(orjson.loads(path.read_bytes())))


if __name__ == "__main__":
    main()
