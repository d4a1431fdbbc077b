"""`python -m bench.ab`: two whole suites under equal load, CPU per request per process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench.ab import check_tree, summarise

REPO = Path(__file__).resolve().parents[2]


def test_the_difference_is_taken_round_by_round() -> None:
    # B is 10 µs dearer every round while the machine swings both by 100: the noise the
    # rounds share cancels in B - A.
    a = [200.0, 300.0, 250.0, 210.0]
    b = [210.0, 310.0, 260.0, 220.0]
    assert summarise(a, b) == {
        "a_mean": 240.0,
        "b_mean": 250.0,
        "diff_mean": 10.0,
        "diff_sd": 0.0,
        "diff_se": 0.0,
    }
    spread = summarise([100.0, 100.0], [104.0, 96.0])
    assert (spread["diff_mean"], spread["diff_sd"], spread["diff_se"]) == (0.0, 4.0, 2.8)


def test_a_tree_without_generated_code_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="make proto"):
        check_tree(tmp_path)


@pytest.mark.integration
def test_this_checkout_against_itself(tmp_path: Path) -> None:
    output = tmp_path / "ab.json"
    argv = [
        sys.executable, "-m", "bench.ab", "--tree", str(REPO),
        "--rounds", "2", "--duration", "0.5", "--warmup", "0.2", "--concurrency", "2",
        "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(argv, check=False, cwd=REPO, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = orjson.loads(output.read_bytes())
    assert result["rounds"] == 2 and len(result["rps"]["a"]) == len(result["rps"]["b"]) == 2
    assert all(rps > 0 for rps in result["rps"]["a"] + result["rps"]["b"])
    cpu = result["cpu_us_per_request"]
    # Both suites' edges, metering, fake vendors and load processes were measured.
    assert {"edge", "metering", "fake", "load"} <= set(cpu)
    assert all(cpu[name]["a_mean"] > 0 and cpu[name]["b_mean"] > 0 for name in ("edge", "load"))
    assert "B - A beyond twice its standard error" in done.stdout
