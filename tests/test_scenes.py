"""The scene loader on the sample STAC items and on hand-made GeoTIFF variants."""

import json
import shutil
from datetime import UTC, datetime

import numpy as np
import pytest
import rasterio

from remote_sensing.radiometry import baseline_scale_offset
from remote_sensing.scenes import SceneError, find_scenes, load_scene
from tests.support.paths import SAMPLE_TILES

FIRST = sorted((SAMPLE_TILES / "scenes").iterdir())[0]


def test_stac_item_loads_lazily_with_reflectance_and_scl_on_the_10m_grid():
    ds = load_scene(FIRST / "item.json")
    assert ds.red.chunks is not None  # dask-backed, nothing read yet
    assert ds.rio.crs.to_epsg() == 32650
    assert ds.rio.transform().a == 10
    assert ds.sizes == {"y": 500, "x": 500}
    assert ds.attrs["acquired_at"].startswith("2023-01-06")
    with rasterio.open(FIRST / "B04.tif") as src:
        dn = src.read(1)
    red = ds.red.values
    np.testing.assert_allclose(red, (dn.astype(np.float64) - 1000) / 10000, atol=1e-7)
    with rasterio.open(FIRST / "SCL.tif") as src:
        scl20 = src.read(1)
    np.testing.assert_array_equal(ds.scl.values, np.kron(scl20, np.ones((2, 2), np.uint8)))


def test_stac_item_without_raster_bands_uses_the_processing_baseline(tmp_path):
    folder = tmp_path / "scene"
    shutil.copytree(FIRST, folder)
    item = json.loads((folder / "item.json").read_text())
    for asset in item["assets"].values():
        asset.pop("raster:bands")
    (folder / "item.json").write_text(json.dumps(item))
    shifted = load_scene(folder / "item.json").red.values
    item["properties"]["s2:processing_baseline"] = "03.01"
    (folder / "item.json").write_text(json.dumps(item))
    unshifted = load_scene(folder / "item.json").red.values
    np.testing.assert_allclose(unshifted - shifted, 0.1, atol=1e-6)


def test_baseline_rule_by_date():
    assert baseline_scale_offset(datetime(2022, 1, 24, tzinfo=UTC)) == (1e-4, 0.0)
    assert baseline_scale_offset(datetime(2022, 1, 25, tzinfo=UTC)) == (1e-4, -0.1)
    assert baseline_scale_offset(datetime(2019, 1, 1, tzinfo=UTC), "04.00") == (1e-4, -0.1)


def test_missing_asset_is_a_clear_error(tmp_path):
    folder = tmp_path / "scene"
    shutil.copytree(FIRST, folder)
    item = json.loads((folder / "item.json").read_text())
    del item["assets"]["nir"]
    (folder / "item.json").write_text(json.dumps(item))
    with pytest.raises(SceneError, match="no 'nir' asset"):
        load_scene(folder / "item.json")


def test_geotiff_without_crs_or_named_bands_is_refused(tmp_path):
    path = tmp_path / "nocrs.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=4, height=4, count=3, dtype="uint16"
    ) as dst:
        dst.write(np.ones((3, 4, 4), np.uint16))
        dst.descriptions = ("B04", "B08", "SCL")
        dst.update_tags(DATETIME="2023-05-01")
    with pytest.raises(SceneError, match="no CRS"):
        load_scene(path)
    unnamed = tmp_path / "unnamed.tif"
    with rasterio.open(
        unnamed,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=2,
        dtype="uint16",
        crs="EPSG:32650",
        transform=rasterio.Affine(10, 0, 0, 0, -10, 0),
    ) as dst:
        dst.write(np.ones((2, 4, 4), np.uint16))
        dst.update_tags(DATETIME="2023-05-01")
    with pytest.raises(SceneError, match="no band described as red"):
        load_scene(unnamed)


def test_corrupt_geotiff_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00" + b"\x00" * 100)
    with pytest.raises(SceneError, match="not a readable GeoTIFF"):
        load_scene(path)


def test_find_scenes_lists_items_and_standalone_tiffs_but_not_assets(tmp_path):
    shutil.copytree(FIRST, tmp_path / "item")
    (tmp_path / "loose.tif").write_bytes(b"")
    found = {s.scene_id: s for s in find_scenes(tmp_path)}
    assert set(found) == {FIRST.name, "loose"}
    assert len(found[FIRST.name].files) == 4  # the item and its three assets
