"""Landsat benchmark: a full Landsat 8/9 Collection 2 Level-2 scene with 10,000 parcels.

    make bench            (or: .venv/bin/python bench/landsat_pipeline.py)

A scene of 7,700 x 7,800 px at 30 m (UTM 50N) covering the same 10,000 parcels as
bench/raster_pipeline.py's Sentinel-2 tile. Side by side, in one run: the whole job for a
later Landsat scene on a known grid (the first scene on the grid is run first, untimed
for the target, to build the coverage cache), and the Sentinel-2 later-scene job from
raster_pipeline's inputs as the reference. Target: no slower per parcel than Sentinel-2.
Each side's peak memory is the max RSS of its own child process (GNU time). Results go
to stdout and bench/out/landsat_results.json.
"""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from scipy.ndimage import zoom

sys.path.insert(0, str(Path(__file__).resolve().parent))
from raster_pipeline import (  # noqa: E402
    AGRI,
    OUT,
    X0,
    Y0,
    agri_env,
    child,
    link_inbox,
    prepare_inputs,
)

# a Landsat scene (the smoke test: a small one, AGRI_BENCH_LANDSAT_PX)
WIDTH = int(os.environ.get("AGRI_BENCH_LANDSAT_PX", 7700))
HEIGHT = WIDTH + WIDTH // 77
# The Sentinel-2 bench tile spans x 600,000-709,800 and y 2,690,220-2,800,020; the
# Landsat scene is larger and contains it, as a real WRS-2 scene contains a tile.
MARGIN = 60_000.0 * WIDTH / 7700  # the scene reaches past the Sentinel-2 tile on every side
LANDSAT_TRANSFORM = Affine(30, 0, X0 - MARGIN, 0, -30, Y0 + MARGIN)
QA_CLEAR = 0b0101_0101_0100_0000
QA_CLOUD = 0b0101_0111_0000_1000


def make_scene(folder: Path) -> None:
    """SR_B4/SR_B5 uint16 in Collection 2 numbers (reflectance = DN * 2.75e-5 - 0.2) and
    QA_PIXEL with clouds, tiled and compressed."""
    rng = np.random.default_rng(43)
    folder.mkdir(parents=True, exist_ok=True)
    coarse = rng.uniform(0.1, 0.85, (HEIGHT // 20 + 1, WIDTH // 20 + 1)).astype(np.float32)
    ndvi_field = zoom(coarse, 20, order=1)[:HEIGHT, :WIDTH]
    clouds = zoom(rng.standard_normal((HEIGHT // 60 + 1, WIDTH // 60 + 1)), 60, order=1)
    common = {
        "driver": "GTiff",
        "width": WIDTH,
        "height": HEIGHT,
        "count": 1,
        "crs": "EPSG:32650",
        "transform": LANDSAT_TRANSFORM,
        "tiled": True,
        "blockxsize": 1024,
        "blockysize": 1024,
        "compress": "DEFLATE",
        "predictor": 2,
        "dtype": "uint16",
    }
    with (
        rasterio.open(folder / "SR_B4.tif", "w", nodata=0, **common) as red,
        rasterio.open(folder / "SR_B5.tif", "w", nodata=0, **common) as nir,
        rasterio.open(folder / "QA_PIXEL.tif", "w", nodata=1, **common) as qa,
    ):
        for row in range(0, HEIGHT, 780):
            step = min(780, HEIGHT - row)
            n = ndvi_field[row : row + step] + rng.normal(0, 0.03, (step, WIDTH)).astype(np.float32)
            n = np.clip(n, -0.5, 0.95)
            r = np.clip(0.085 - 0.065 * n, 0.02, 0.2)
            window = rasterio.windows.Window(0, row, WIDTH, step)
            red.write(((r + 0.2) / 2.75e-5).astype(np.uint16), 1, window=window)
            nir.write(((r * (1 + n) / (1 - n) + 0.2) / 2.75e-5).astype(np.uint16), 1, window=window)
            cloudy = clouds[row : row + step, :WIDTH] > 1.0
            qa.write(np.where(cloudy, QA_CLOUD, QA_CLEAR).astype(np.uint16), 1, window=window)


def make_inboxes() -> None:
    """Two inboxes, each a Landsat C2 L2 item of the scene (two dates)."""
    band = {"scale": 2.75e-5, "offset": -0.2, "nodata": 0}
    for i in (1, 2):
        item = {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": f"LC0{8 + i % 2}_L2SP_119042_2024011{i}_2024011{i}_02_T1_bench",
            "properties": {"datetime": f"2024-01-1{i}T02:40:00Z", "platform": "landsat-9"},
            "geometry": None,
            "assets": {
                "red": {"href": "SR_B4.tif", "raster:bands": [band]},
                "nir08": {"href": "SR_B5.tif", "raster:bands": [band]},
                "qa_pixel": {"href": "QA_PIXEL.tif", "raster:bands": [{"nodata": 1}]},
            },
        }
        files = ("SR_B4.tif", "SR_B5.tif", "QA_PIXEL.tif")
        link_inbox(OUT / f"landsat_inbox{i}", OUT / "landsat", files, item)


def main() -> None:
    prepare_inputs()
    if not (OUT / "landsat" / "QA_PIXEL.tif").exists():
        print(f"generating a {WIDTH} x {HEIGHT} Landsat scene (once)...", flush=True)
        make_scene(OUT / "landsat")
    make_inboxes()
    env = {**agri_env(), "AGRI_DATABASE_URL": f"sqlite:///{OUT / 'landsat_bench.db'}"}
    env["AGRI_DATA_DIR"] = str(OUT / "landsat_data")
    (OUT / "landsat_bench.db").unlink(missing_ok=True)
    shutil.rmtree(OUT / "landsat_data", ignore_errors=True)
    child([*AGRI, "parcels", "import", str(OUT / "parcels.gpkg")], env)
    results = {}
    for name, first, later in (
        ("sentinel2", "inbox1", "inbox2"),
        ("landsat", "landsat_inbox1", "landsat_inbox2"),
    ):
        cold_s, cold_mb, _ = child([*AGRI, "imagery", "run", "--inbox", str(OUT / first)], env)
        seconds, peak_mb, out = child(
            [*AGRI, "imagery", "run", "--inbox", str(OUT / later), "--json"], env
        )
        summary = json.loads(out)
        [scene] = summary["scenes"]
        assert scene["status"] == "processed", scene
        results[name] = {
            "first_scene_s": cold_s,
            "first_scene_peak_mb": cold_mb,
            "later_scene_s": seconds,
            "later_scene_peak_mb": peak_mb,
            "observations": scene["observations"],
            "ms_per_parcel": 1000 * seconds / scene["observations"],
            "sensor": scene["sensor"],
        }
    results["landsat_vs_sentinel2_per_parcel"] = (
        results["landsat"]["ms_per_parcel"] / results["sentinel2"]["ms_per_parcel"]
    )
    (OUT / "landsat_results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
