"""Raster pipeline benchmark on a full-size Sentinel-2 tile with 10,000 parcels.

    make bench            (or: .venv/bin/python bench/raster_pipeline.py [--skip-rasterstats])

Side by side, in one run on this machine:
  A. parcel statistics alone, same in-memory NDVI: ours (cached weights, a later scene on a
     known grid) vs exactextract (NumPyRasterSource, same statistics);
  B. the whole job for a later scene (read, mask, NDVI COG, parcel statistics, store) vs the
     peers' tools (`rio calc` writing the NDVI, then exactextract on that file);
  C. rasterstats' default zonal_stats call over the same parcels.
Peak memory of each side is the max RSS of its own child process. Results go to stdout and
bench/out/results.json; the inputs are generated once into bench/out/ (not committed).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from scipy.ndimage import zoom

ROOT = Path(__file__).resolve().parents[1]
# A full Sentinel-2 tile and 10,000 parcels under bench/out/; the suite's smoke test runs
# the same stages at a tiny size in a folder of its own (tests/test_bench_smoke.py).
OUT = Path(os.environ.get("AGRI_BENCH_OUT", ROOT / "bench" / "out"))
SIZE = int(os.environ.get("AGRI_BENCH_TILE_PX", 10980))
X0, Y0 = 600_000.0, 2_800_020.0
TRANSFORM = Affine(10, 0, X0, 0, -10, Y0)
SCL_TRANSFORM = Affine(20, 0, X0, 0, -20, Y0)
N_PARCELS = int(os.environ.get("AGRI_BENCH_PARCELS", 10_000))
REPEATS = 3
STATS = ["mean", "median", "quantile(q=0.1)", "quantile(q=0.9)", "stdev"]
AGRI = [sys.executable, "-m", "collateral.cli"]
TIME = "/usr/bin/time"  # GNU time (Debian package `time`): a command's own peak RSS


def make_tile(folder: Path) -> None:
    """Red/NIR uint16 (baseline-04.00 DNs) at 10 m and SCL at 20 m, tiled and compressed."""
    rng = np.random.default_rng(42)
    folder.mkdir(parents=True, exist_ok=True)
    coarse = rng.uniform(0.1, 0.85, (SIZE // 60 + 1, SIZE // 60 + 1)).astype(np.float32)
    ndvi_field = zoom(coarse, 60, order=1)[:SIZE, :SIZE]
    cloud_coarse = zoom(rng.standard_normal((SIZE // 180 + 1,) * 2), 90, order=1)[
        : SIZE // 2, : SIZE // 2
    ]
    common = {
        "driver": "GTiff",
        "width": SIZE,
        "height": SIZE,
        "count": 1,
        "crs": "EPSG:32650",
        "tiled": True,
        "blockxsize": 1024,
        "blockysize": 1024,
        "compress": "DEFLATE",
        "predictor": 2,
        "nodata": 0,
    }
    with (
        rasterio.open(
            folder / "B04.tif", "w", dtype="uint16", transform=TRANSFORM, **common
        ) as red,
        rasterio.open(
            folder / "B08.tif", "w", dtype="uint16", transform=TRANSFORM, **common
        ) as nir,
    ):
        for row in range(0, SIZE, 1098):
            step = min(1098, SIZE - row)
            n = ndvi_field[row : row + step] + rng.normal(0, 0.03, (step, SIZE)).astype(np.float32)
            n = np.clip(n, -0.5, 0.95)
            r = np.clip(0.085 - 0.065 * n, 0.02, 0.2)
            window = rasterio.windows.Window(0, row, SIZE, step)
            red.write((r * 10000 + 1000).astype(np.uint16), 1, window=window)
            nir.write((r * (1 + n) / (1 - n) * 10000 + 1000).astype(np.uint16), 1, window=window)
    scl = np.where(cloud_coarse > 1.0, 9, np.where(cloud_coarse > 0.8, 3, 4)).astype(np.uint8)
    with rasterio.open(
        folder / "SCL.tif",
        "w",
        dtype="uint8",
        transform=SCL_TRANSFORM,
        **{**common, "width": SIZE // 2, "height": SIZE // 2},
    ) as dst:
        dst.write(scl, 1)


def link_inbox(inbox: Path, source: Path, files: tuple[str, ...], item: dict) -> None:
    """An inbox holding ``item`` and hard links to ``source``'s files. The item's assets
    must lie inside its inbox (the job refuses paths that leave it): no copy, no symlink."""
    inbox.mkdir(parents=True, exist_ok=True)
    for file in files:
        (inbox / file).unlink(missing_ok=True)
        os.link(source / file, inbox / file)
    (inbox / "item.json").write_text(json.dumps(item))


def make_inboxes() -> None:
    """Two inboxes, each a STAC item of the tile (two acquisition dates)."""
    files = (("red", "B04.tif"), ("nir", "B08.tif"), ("scl", "SCL.tif"))
    for i in (1, 2):
        item = {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": f"BENCH_T50RLN_scene{i}",
            "properties": {
                "datetime": f"2024-0{i}-15T03:00:00Z",
                "s2:processing_baseline": "05.10",
            },
            "geometry": None,
            "assets": {name: {"href": file} for name, file in files},
        }
        link_inbox(OUT / f"inbox{i}", OUT / "tile", tuple(f for _, f in files), item)


def rectangles(rng, cx, cy, area_m2, aspect) -> list:
    """Rectangles of the given areas and aspect ratios centred on (cx, cy), rotated 0-90
    degrees at random: parcels as cadastral maps draw them."""
    w, h = np.sqrt(area_m2 * aspect), np.sqrt(area_m2 / aspect)
    angle = rng.uniform(0, 90, len(cx))
    return [
        shapely.affinity.rotate(shapely.box(x - a / 2, y - b / 2, x + a / 2, y + b / 2), t)
        for x, y, a, b, t in zip(cx, cy, w, h, angle, strict=True)
    ]


def make_parcels(path: Path) -> None:
    """10,000 rotated rectangles of 0.2-5 ha (log-uniform) inside the tile, in WGS84."""
    rng = np.random.default_rng(7)
    area_m2 = np.exp(rng.uniform(np.log(2_000), np.log(50_000), N_PARCELS))
    aspect = rng.uniform(0.5, 2.0, N_PARCELS)
    cx = rng.uniform(X0 + 500, X0 + SIZE * 10 - 500, N_PARCELS)
    cy = rng.uniform(Y0 - SIZE * 10 + 500, Y0 - 500, N_PARCELS)
    geoms = rectangles(rng, cx, cy, area_m2, aspect)
    kinds = np.where(rng.random(N_PARCELS) < 0.5, "tea_garden", "forest")
    frame = gpd.GeoDataFrame(
        {"parcel_id": [f"B{i:05d}" for i in range(N_PARCELS)], "kind": kinds},
        geometry=geoms,
        crs="EPSG:32650",
    )
    frame.to_crs(4326).to_file(path, driver="GPKG")


def child(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Run a command as a child: wall seconds, that command's own peak RSS in MB, its stdout.

    The peak comes from GNU time (``/usr/bin/time -f %M``), which runs the command as its
    own child: a child forked straight from this benchmark would start as a copy of this
    (large) process, and its ru_maxrss would report our size, not the command's.
    """
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("r") as peak,
    ):
        started = time.perf_counter()
        proc = subprocess.run(
            [TIME, "-f", "%M", "-o", peak.name, *cmd],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=err,
            text=True,
        )
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd} failed:\n{err.read()[-3000:]}")
        peak_kb = int(peak.read().split()[-1])
        return seconds, peak_kb / 1024, out.read()


def agri_env() -> dict:
    return {
        **os.environ,
        "AGRI_DATABASE_URL": f"sqlite:///{OUT / 'bench.db'}",
        "AGRI_DATA_DIR": str(OUT / "data"),
    }


def stage_statistics() -> dict:
    """A: parcel statistics only, same NDVI array in memory, ours vs exactextract."""
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource
    from pyproj import CRS

    from collateral.db import make_engine
    from remote_sensing import store
    from remote_sensing.coverage import Grid, cached_weights
    from remote_sensing.imagery.indices import CLEAR
    from remote_sensing.imagery.scene_processing import parcels_on_grid
    from remote_sensing.imagery.zonal import parcel_statistics

    with rasterio.open(OUT / "data" / "ndvi" / "BENCH_T50RLN_scene1.tif") as src:
        ndvi = src.read(1)
    crs = CRS.from_epsg(32650)
    grid = Grid(crs, TRANSFORM, SIZE, SIZE)
    # the parcels as the job sees them (from the database), so the job's cache is hit
    engine = make_engine(agri_env()["AGRI_DATABASE_URL"])
    parcels = parcels_on_grid(store.load_parcel_set(engine), grid)
    # the same outlines as a GeoDataFrame, the reference's input
    frame = gpd.GeoDataFrame({"parcel_id": parcels.parcel_id}, geometry=parcels.geometry, crs=crs)
    state = np.full(ndvi.shape, CLEAR, dtype=np.uint8)
    t0 = time.perf_counter()
    weights = cached_weights(parcels, grid, OUT / "data" / "coverage")  # loads the cache file
    load_s = time.perf_counter() - t0
    xmin, ymin, xmax, ymax = grid.bounds
    source = NumPyRasterSource(ndvi, xmin, ymin, xmax, ymax, nodata=np.nan, srs_wkt=crs.to_wkt())
    ours_runs, theirs_runs = [], []
    for _ in range(REPEATS):  # alternate the two, keep each one's best
        t0 = time.perf_counter()
        ours = parcel_statistics(weights, ndvi, state)
        ours_runs.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs = exact_extract(source, frame, STATS, output="pandas")
        theirs_runs.append(time.perf_counter() - t0)
    ours_s, theirs_s = min(ours_runs), min(theirs_runs)
    mean_diff = float(np.nanmax(np.abs(ours["ndvi_mean"] - theirs["mean"].to_numpy())))
    median_diff = float(np.nanmax(np.abs(ours["ndvi_median"] - theirs["median"].to_numpy())))
    return {
        "ours_s": ours_s,
        "exactextract_s": theirs_s,
        "speedup": theirs_s / ours_s,
        "ours_runs_s": ours_runs,
        "exactextract_runs_s": theirs_runs,
        "weights_cache_load_s": load_s,
        "speedup_including_cache_load": theirs_s / (ours_s + load_s),
        "max_abs_mean_diff": mean_diff,
        "max_abs_median_diff": median_diff,
        "parcels": len(parcels),
        "pixels_in_weights": int(len(weights.cell_ids)),
    }


PEER_SCRIPT = """
import sys, time
from exactextract import exact_extract
import geopandas as gpd
parcels = gpd.read_file(sys.argv[2]).to_crs(32650)
exact_extract(sys.argv[1], parcels, {stats!r}, output="pandas")
"""


def stage_whole_job() -> dict:
    """B: whole job for a later scene vs rio calc + exactextract."""
    ours_s, ours_mb, out = child(
        [*AGRI, "imagery", "run", "--inbox", str(OUT / "inbox2"), "--json"], agri_env()
    )
    summary = json.loads(out)
    assert summary["processed"] == 1, summary
    peer_ndvi = OUT / "peer_ndvi.tif"
    expr = (
        "(/ (- (read 2 1 'float32') (read 1 1 'float32')) "
        "(+ (- (read 2 1 'float32') 2000) (read 1 1 'float32')))"
    )
    calc_s, calc_mb, _ = child(
        [
            str(Path(sys.executable).parent / "rio"),
            "calc",
            expr,
            str(OUT / "tile" / "B04.tif"),
            str(OUT / "tile" / "B08.tif"),
            str(peer_ndvi),
            "--dtype",
            "float32",
            "--co",
            "compress=deflate",
            "--co",
            "tiled=yes",
            "--overwrite",
        ]
    )
    ee_s, ee_mb, _ = child(
        [
            sys.executable,
            "-c",
            PEER_SCRIPT.format(stats=STATS),
            str(peer_ndvi),
            str(OUT / "parcels.gpkg"),
        ]
    )
    return {
        "ours_s": ours_s,
        "ours_peak_mb": ours_mb,
        "rio_calc_s": calc_s,
        "rio_calc_peak_mb": calc_mb,
        "exactextract_file_s": ee_s,
        "exactextract_file_peak_mb": ee_mb,
        "peers_s": calc_s + ee_s,
        "speedup": (calc_s + ee_s) / ours_s,
        "observations": summary["scenes"][0]["observations"],
    }


RASTERSTATS_SCRIPT = """
import sys
import tempfile
import geopandas as gpd
from rasterstats import zonal_stats
parcels = gpd.read_file(sys.argv[2]).to_crs(32650)
zonal_stats(list(parcels.geometry), sys.argv[1])
"""


def stage_rasterstats(ours_stats_s: float) -> dict:
    seconds, mb, _ = child(
        [
            sys.executable,
            "-c",
            RASTERSTATS_SCRIPT,
            str(OUT / "data" / "ndvi" / "BENCH_T50RLN_scene1.tif"),
            str(OUT / "parcels.gpkg"),
        ]
    )
    return {
        "rasterstats_s": seconds,
        "rasterstats_peak_mb": mb,
        "speedup_vs_ours_stats": seconds / ours_stats_s,
    }


def prepare_inputs() -> None:
    """The tile, its two inboxes and the parcels under bench/out/, generated once (also
    what bench/imagery_scaleout.py runs its full tile on)."""
    if not (OUT / "tile" / "SCL.tif").exists():
        print(f"generating a {SIZE} x {SIZE} tile (once)...", flush=True)
        make_tile(OUT / "tile")
    make_inboxes()
    if not (OUT / "parcels.gpkg").exists():
        make_parcels(OUT / "parcels.gpkg")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-rasterstats", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="regenerate the tile and parcels")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(OUT, ignore_errors=True)
    prepare_inputs()
    for stale in ("bench.db", "data"):
        path = OUT / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    child([*AGRI, "parcels", "import", str(OUT / "parcels.gpkg")], agri_env())
    cold_s, cold_mb, _ = child(
        [*AGRI, "imagery", "run", "--inbox", str(OUT / "inbox1")], agri_env()
    )
    results = {"first_scene_on_grid": {"seconds": cold_s, "peak_mb": cold_mb}}
    results["whole_job"] = stage_whole_job()
    results["statistics"] = stage_statistics()
    if not args.skip_rasterstats:
        results["rasterstats"] = stage_rasterstats(results["statistics"]["ours_s"])
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
