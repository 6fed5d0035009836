"""The committed sample study area is small, complete, and regenerates byte for byte."""

import hashlib
import json
import subprocess
import sys

import rasterio

from tests.support.paths import SAMPLE_TILES

LIVESTOCK = {"farms.geojson", "animals.csv"}
HAND_WRITTEN = ("loans", "solar")  # the demo loans and plants: written by hand


def _digests(root, livestock: bool = False):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.suffix in (".tif", ".json", ".geojson", ".csv")
        and (p.name in LIVESTOCK) == livestock
        and p.relative_to(root).parts[0] not in HAND_WRITTEN
    }


def test_regenerates_byte_identically(tmp_path):
    subprocess.run([sys.executable, str(SAMPLE_TILES / "generate.py"), str(tmp_path)], check=True)
    committed = _digests(SAMPLE_TILES)
    assert len(committed) == 30 * 4 + 12 * 4 + 3  # Sentinel-2, Landsat, parcels, truth, cover
    assert _digests(tmp_path) == committed


def test_sample_farms_regenerate_byte_identically(tmp_path):
    subprocess.run([sys.executable, str(SAMPLE_TILES / "farms.py"), str(tmp_path)], check=True)
    committed = _digests(SAMPLE_TILES, livestock=True)
    assert set(committed) == LIVESTOCK
    assert _digests(tmp_path, livestock=True) == committed


def test_sample_is_under_5_mb_and_shaped_like_sentinel2_l2a():
    total = sum(p.stat().st_size for p in SAMPLE_TILES.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024
    truth = json.loads((SAMPLE_TILES / "truth.json").read_text())
    scenes = truth["scenes"]
    assert len(scenes) >= 24
    assert scenes[0]["date"][:4] == "2023" and scenes[-1]["date"][:4] == "2024"
    assert (
        sum(s["almost_cloudy"] for s in scenes) == 1 and sum(s["swath_edge"] for s in scenes) == 1
    )
    folder = SAMPLE_TILES / "scenes" / scenes[0]["scene_id"]
    item = json.loads((folder / "item.json").read_text())
    assert set(item["assets"]) == {"red", "nir", "scl"}
    with rasterio.open(folder / "B04.tif") as red, rasterio.open(folder / "SCL.tif") as scl:
        assert red.crs.to_epsg() == 32650 and red.res == (10.0, 10.0) and red.dtypes[0] == "uint16"
        assert scl.res == (20.0, 20.0) and scl.dtypes[0] == "uint8"
        assert red.width * red.res[0] == 5000
        assert red.read(1).min() >= 1000  # baseline-04.00 offset: DN = reflectance * 10000 + 1000
        codes = set(int(c) for c in set(scl.read(1).ravel()))
    assert {4, 5, 6} <= codes and codes & {3, 8, 9, 10}
