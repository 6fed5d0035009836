"""The benchmarks still run against the code as it is (they are not run by the suite
otherwise): the ingest benchmark end to end on a small stream, every reading accounted
for."""

import json
import subprocess
import sys

import pytest

from tests.support.paths import REPO_ROOT

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_the_ingest_benchmark_runs_and_loses_nothing(tmp_path):
    out = tmp_path / "ingest.json"
    command = ["--messages", "300", "--farms", "4", "--skip-postgres", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "bench/ingest_throughput.py", *command],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["sqlite"]["sent"] == result["sqlite"]["stored"] > 0
    assert result["sqlite"]["lost"] == 0 and result["farms"] == 4  # four publishers at once
