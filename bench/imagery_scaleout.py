"""Imagery scenes per hour on this machine: the serial job against a local Dask cluster.

    .venv/bin/python bench/imagery_scaleout.py [--workers 2]

The same inbox (the 30 sample scenes, 500 x 500 px each, 31 parcels) through
`agri imagery run` three ways, each on a fresh SQLite database and data directory, one
after the other in this run: serial (the reference), `--workers N` (a local
dask.distributed cluster of N worker processes), and `--workers N` again with the
cluster's start-up excluded (a scheduler started beforehand, `--scheduler`).
Wall-clock time of the command, profiles included; scenes per hour = 30 / time.

Then one full Sentinel-2-sized tile (10980 x 10980 px, 10,000 parcels; the tile of
bench/raster_pipeline.py, generated once) serial and on `--workers N`, where the cluster
splits it into windows of 2048 rows (`Cluster.split_pixels`): what one large scene costs
when it is spread over the workers. `--skip-full-tile` leaves that part out.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distributed import LocalCluster

ROOT = Path(__file__).resolve().parents[1]
SCENES = ROOT / "sample_tiles" / "scenes"
PARCELS = ROOT / "sample_tiles" / "parcels.geojson"


def timed_run(extra: list[str], inbox: Path = SCENES, parcels: Path = PARCELS) -> dict:
    with tempfile.TemporaryDirectory(prefix="agri-bench-imagery-") as folder:
        env = {
            **os.environ,
            "AGRI_DATABASE_URL": f"sqlite:///{folder}/agri.db",
            "AGRI_DATA_DIR": f"{folder}/data",
        }
        agri = [sys.executable, "-m", "collateral.cli"]
        subprocess.run(
            [*agri, "parcels", "import", str(parcels)],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        started = time.perf_counter()
        done = subprocess.run(
            [*agri, "imagery", "run", "--inbox", str(inbox), "--json", *extra],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
    summary = json.loads(done.stdout)
    return {
        "processed": summary["processed"],
        "seconds": round(seconds, 2),
        "scenes_per_hour": round(summary["processed"] / seconds * 3600),
    }


def full_tile(workers: int) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    import raster_pipeline as tile

    tile.prepare_inputs()
    inbox, parcels = tile.OUT / "inbox1", tile.OUT / "parcels.gpkg"
    results = {"serial (reference)": timed_run([], inbox, parcels)}
    results[f"--workers {workers}, split into windows (cluster start included)"] = timed_run(
        ["--workers", str(workers)], inbox, parcels
    )
    return with_speedups(results)


def with_speedups(results: dict) -> dict:
    """Each run's speed against the first ("serial (reference)")."""
    reference = results["serial (reference)"]["seconds"]
    for result in results.values():
        result["speedup_vs_serial"] = round(reference / result["seconds"], 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-full-tile", action="store_true")
    args = parser.parse_args()
    results = {"serial (reference)": timed_run([])}
    results[f"--workers {args.workers} (cluster start included)"] = timed_run(
        ["--workers", str(args.workers)]
    )
    with LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        results[f"--scheduler, {args.workers} workers already up"] = timed_run(
            ["--scheduler", cluster.scheduler_address]
        )
    with_speedups(results)
    if not args.skip_full_tile:
        results["full tile"] = full_tile(args.workers)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "imagery_scaleout.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
