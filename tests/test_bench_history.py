"""bench/history_growth.py still runs against the code as it is: at a tiny size, every
history length measured, each in its own process."""

import json
import subprocess
import sys

import pytest

from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.slow


def test_the_history_growth_benchmark_runs(tmp_path):
    out = tmp_path / "growth.json"
    command = ["--parcels", "40", "--years", "0.083,1", "--runs", "2", "--loans", "10"]
    command += ["--out", str(out)]
    done = subprocess.run(
        [sys.executable, "bench/history_growth.py", *command],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert [r["scenes"] for r in results] == [6, 73]
    for result in results:
        assert len(result["new_scene_s"]) == len(result["reference_rebuild_s"]) == 2
        assert result["peak_rss_mb"] > 0 and result["bytes_per_parcel_year"] > 0
        assert result["loans"] == 10 and result["revalue_all_s"] > 0
    assert "1.0 y against 0.083 y" in done.stdout
