"""The benchmark harness end to end at toy size, and the fake vendor's wire formats.

`make bench` is not run by the tests (minutes of load); this proves the harness still
starts everything, measures every mode and writes the JSON the docs and the lead read.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench.fake_upstream import anthropic_answer, gemini_answer, openai_answer
from bench.load import LoadResult, merge, percentile

REPO = Path(__file__).resolve().parents[2]
ROW_FIELDS = {
    "protocol",
    "stream",
    "concurrency",
    "mode",
    "requests",
    "errors",
    "rps",
    "p50_ms",
    "p99_ms",
    "ttft_p50_ms",
    "added_p50_ms",
    "added_ttft_p50_ms",
    "rps_vs_direct",
    "rps_vs_proxy",
    "cpu_us_per_request",
}


@pytest.mark.integration
def test_make_bench_runs_every_mode_and_writes_the_json(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    argv = [
        sys.executable, "-m", "bench",
        "--protocols", "openai", "--concurrency", "2", "--rounds", "1",
        "--duration", "1", "--warmup", "0.5",
        "--streams", "8", "--stream-ttfb", "0.05", "--stream-chunk-delay", "0.01",
        "--soak", "64", "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(argv, check=False, cwd=REPO, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "targets:" in done.stdout

    result = orjson.loads(output.read_bytes())
    rows = result["results"]
    assert {(r["mode"], r["stream"]) for r in rows} == {
        (mode, stream) for mode in ("direct", "proxy", "gateway") for stream in (False, True)
    }
    for row in rows:
        assert row.keys() >= ROW_FIELDS
        assert row["requests"] > 0, row
        if row["mode"] != "gateway":
            assert row["errors"] == {}, row
        if row["stream"]:
            assert row["ttft_p50_ms"] > 0
    gateway = next(r for r in rows if r["mode"] == "gateway" and r["stream"])
    assert gateway["added_ttft_p50_ms"] is not None and gateway["cpu_us_per_request"] > 0
    assert result["protocols"][0] == {"protocol": "openai", "status": "measured"}
    assert result["edge_rss_mb"]["start"] > 0 and result["edge_rss_mb"]["end"] > 0
    assert result["open_streams"]["streams"] == 8 and "gateway" in result["open_streams"]
    assert result["soak"]["rss_end_mb"] > 0
    checks = {check["name"]: check for check in result["targets"]}
    assert set(checks) >= {"gateway_rps_c2", "edge_rss_max", "open_streams", "edge_rss_flat"}
    # Toy sizes are reported but never judged against the real targets.
    assert checks["open_streams"]["pass"] is None and checks["edge_rss_flat"]["pass"] is None


def _data(frame: bytes) -> dict[str, object]:
    line = next(x for x in frame.splitlines() if x.startswith(b"data: "))
    value = orjson.loads(line[6:])
    assert isinstance(value, dict)
    return value


def test_fake_vendor_speaks_each_protocols_wire_format() -> None:
    whole = orjson.loads(openai_answer("m", stream=False, chunks=3, include_usage=False).body)
    assert whole["object"] == "chat.completion" and whole["usage"]["prompt_tokens"] == 42

    frames = openai_answer("m", stream=True, chunks=3, include_usage=True).frames
    assert frames[-1] == b"data: [DONE]\n\n"
    assert _data(frames[-2])["choices"] == [] and "usage" in _data(frames[-2])
    assert len(frames) == 1 + 3 + 1 + 1 + 1

    events = anthropic_answer("m", stream=True, chunks=3).frames
    names = [frame.split(b"\n", 1)[0] for frame in events]
    assert names[0] == b"event: message_start" and names[-1] == b"event: message_stop"
    assert all(name.startswith(b"event: ") for name in names)
    assert _data(events[-2])["usage"] == {"output_tokens": 3}

    chunks = gemini_answer("g", stream=True, chunks=3).frames
    last = _data(chunks[-1])
    assert last["candidates"][0]["finishReason"] == "STOP"  # type: ignore[index]
    assert last["usageMetadata"]["candidatesTokenCount"] == 3  # type: ignore[index]
    assert all(frame.startswith(b"data: ") for frame in chunks)


def test_percentiles_and_merged_rounds() -> None:
    assert percentile([], 50) == 0.0
    assert percentile(list(range(1, 101)), 50) == 50.0
    assert percentile(list(range(1, 101)), 99) == 99.0
    merged = merge(
        [
            LoadResult(requests=2, window=1.0, latencies_us=[3, 5], errors={"timeout": 1}),
            LoadResult(requests=1, window=1.0, latencies_us=[4], errors={"timeout": 2}),
        ]
    )
    assert merged.latencies_us == [3, 4, 5] and merged.errors == {"timeout": 3}
    assert merged.rps == 1.5
