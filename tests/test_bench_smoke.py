"""The benchmarks still run against the code as it is (they are not run by the suite
otherwise), each at a tiny size: the ingest benchmark on a small stream, every reading
accounted for; the tile benchmarks (raster pipeline, Landsat, STAC sync over HTTP, imagery
scale-out) on a 600-px tile in a folder of their own. bench/history_growth.py,
bench/book_growth.py and bench/api_load.py have theirs beside them."""

import json
import os
import subprocess
import sys

import pytest

from tests.support.paths import REPO_ROOT

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_the_ingest_benchmark_runs_and_loses_nothing(tmp_path):
    out = tmp_path / "ingest.json"
    command = ["--messages", "300", "--farms", "4", "--skip-postgres", "--solar", "--out", str(out)]
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
    assert 0 < result["sqlite"]["cpu_s_per_1000_readings"] < 1
    solar = result["sqlite_solar_through_agent"]  # inverter readings through the agent
    assert solar["agent_exit_code"] == 0 and solar["stream"] == "solar"
    assert solar["sent"] == solar["stored"] == 300 * 20 and solar["lost"] == 0


def _tiny_tile(tmp_path) -> dict:
    """What makes a tile benchmark tiny: a 600-px tile with 80 parcels, a 300-px Landsat
    scene, 40 township parcels and 3 scenes of history, all under ``tmp_path``."""
    return {
        **os.environ,
        "AGRI_BENCH_OUT": str(tmp_path / "out"),
        "AGRI_BENCH_TILE_PX": "600",
        "AGRI_BENCH_PARCELS": "80",
        "AGRI_BENCH_LANDSAT_PX": "300",
        "AGRI_BENCH_STAC_PARCELS": "40",
        "AGRI_BENCH_STAC_HISTORY": "3",
    }


def _bench(env: dict, script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, script, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout


def test_the_raster_and_landsat_benchmarks_run(tmp_path):
    env = _tiny_tile(tmp_path)
    _bench(env, "bench/raster_pipeline.py", "--skip-rasterstats")
    out = tmp_path / "out"
    raster = json.loads((out / "results.json").read_text())
    assert raster["statistics"]["parcels"] > 50
    assert raster["statistics"]["max_abs_mean_diff"] < 1e-4  # ours and exactextract agree
    assert raster["whole_job"]["ours_s"] > 0 and raster["first_scene_on_grid"]["peak_mb"] > 0
    _bench(env, "bench/landsat_pipeline.py")
    landsat = json.loads((out / "landsat_results.json").read_text())
    assert landsat["landsat"]["sensor"].startswith("landsat")
    assert landsat["landsat"]["observations"] > 50 and landsat["sentinel2"]["observations"] > 50


@pytest.mark.postgres
def test_the_stac_sync_benchmark_runs(tmp_path):
    env = _tiny_tile(tmp_path)
    _bench(env, "bench/stac_sync.py", "--runs", "1", "--later", "1")
    result = json.loads((tmp_path / "out" / "stac_sync.json").read_text())
    (run,) = result["runs"]
    assert run["ours_bytes"] > 0 and run["peer_bytes"] > 0 and run["parcels_compared"] > 20
    assert run["max_abs_mean_diff"] < 1e-5
    assert len(result["later"]["runs"]) == 1
    assert result["history"]["scenes"] == 3


def test_the_imagery_scaleout_benchmark_runs(tmp_path):
    out = _bench(_tiny_tile(tmp_path), "bench/imagery_scaleout.py", "--workers", "2")
    result = json.loads(out[out.index("{\n") :])
    assert result["serial (reference)"]["processed"] == 30
    assert all(r["processed"] == 30 for k, r in result.items() if k != "full tile")
    assert result["full tile"]["serial (reference)"]["processed"] == 1
