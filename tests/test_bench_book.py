"""bench/book_growth.py, bench/api_load.py and bench/solar_daily.py still run against the
code as it is: at a tiny size, every read answered with 200 and every figure reported."""

import json
import subprocess
import sys

import pytest

from tests.support.paths import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, script, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_book_growth_benchmark_runs(tmp_path):
    out = tmp_path / "book.json"
    _run(
        "bench/book_growth.py",
        *("--sizes", "30,60", "--per-branch", "20", "--seconds", "1", "--warm-up", "0.5"),
        *("--rate-scale", "2", "--connections", "2", "--out", str(out)),
    )
    results = json.loads(out.read_text())
    assert [s["loans"] for s in results["sizes"]] == [30, 60]
    labels = set(results["p99_largest_to_smallest"])
    assert len(labels) == 6 and "reference GET /v1/health" in labels
    for size in results["sizes"]:
        assert size["server_peak_mb"] > 0
        for label in labels:
            assert set(size[label]["statuses"]) == {"200"}, (label, size[label]["statuses"])
            assert size[label]["wrk_closed_loop"]["non_2xx"] == "0", label
            assert size[label]["wrk_closed_loop"]["throughput"] > 0


def test_the_api_load_benchmark_runs(tmp_path):
    """Its loans pledge parcels of their own: none is refused as pledged twice."""
    done = _run(
        "bench/api_load.py",
        *("--loans", "12", "--seconds", "1", "--warm-up", "0", "--rate", "10"),
        *("--post-rate", "2", "--connections", "2"),
    )
    results = json.loads(done.stdout[done.stdout.index("{\n") :])
    reads = [k for k in results if k.startswith(("GET", "POST", "reference"))]
    assert len(reads) == 5
    for label in reads:
        statuses = results[label]["statuses"]
        expected = {"201"} if label.startswith("POST") else {"200"}
        assert set(statuses) == expected, (label, statuses)


def test_the_solar_daily_benchmark_runs(tmp_path):
    out = tmp_path / "solar.json"
    _run(
        "bench/solar_daily.py",
        "--plants",
        "60",
        "--sample",
        "5",
        "--history",
        "1",
        "--stored-days",
        "30",
        "--out",
        str(out),
    )
    result = json.loads(out.read_text())
    assert result["plants"] == 60 and result["readings"] == 60 * 288
    assert result["stored_days"] == 30
    assert result["ours_s"] > 0 and result["reference_scaled_s"] > 0 and result["speedup"] > 0
    assert result["peak_rss_mb"] > 0
