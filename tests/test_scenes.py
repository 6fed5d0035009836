"""The scene loader on the sample STAC items and on hand-made GeoTIFF variants."""

import dataclasses
import json
import shutil
import types
from datetime import UTC, datetime

import numpy as np
import pytest
import rasterio

from remote_sensing.imagery.band_reads import EncodingCheck, scene_arrays
from remote_sensing.imagery.indices import NOT_IMAGED, masked_ndvi, pixel_state
from remote_sensing.imagery.radiometry import baseline_scale_offset
from remote_sensing.imagery.scenes import (
    SceneError,
    find_scenes,
    load_scene,
    scene_layout,
    scene_meta,
)
from tests.support.paths import SAMPLE_TILES

FIRST = sorted((SAMPLE_TILES / "scenes").iterdir())[0]


def test_stac_item_loads_with_reflectance_and_scl_on_the_10m_grid():
    ds = load_scene(FIRST / "item.json")
    assert ds.grid.crs.to_epsg() == 32650
    assert ds.grid.transform.a == 10
    assert (ds.grid.height, ds.grid.width) == (500, 500)
    assert ds.red.shape == ds.nir.shape == ds.scl.shape == (500, 500)
    assert ds.meta.acquired_at.isoformat().startswith("2023-01-06")
    with rasterio.open(FIRST / "B04.tif") as src:
        dn = src.read(1)
    red = ds.red
    np.testing.assert_allclose(red, (dn.astype(np.float64) - 1000) / 10000, atol=1e-7)
    with rasterio.open(FIRST / "SCL.tif") as src:
        scl20 = src.read(1)
    np.testing.assert_array_equal(ds.scl, np.kron(scl20, np.ones((2, 2), np.uint8)))


def test_windows_at_any_offset_give_the_values_of_the_whole_scene():
    """The job reads a scene window by window on threads (the blocks under parcels, or a
    cluster worker's rows): any cut, odd offsets against the 20 m SCL included, gives the
    values of one whole read; blocks not asked for stay not imaged."""
    whole = load_scene(FIRST / "item.json")
    expected_ndvi = masked_ndvi(whole.red, whole.nir, whole.scl)
    expected_state = pixel_state(whole.red, whole.nir, whole.scl)
    meta = scene_meta(FIRST / "item.json")
    layout = dataclasses.replace(scene_layout(meta), chunk=77)  # odd: windows cut SCL pixels
    ndvi, state = scene_arrays(meta, layout, meta.encoding, threads=3)
    np.testing.assert_array_equal(ndvi, expected_ndvi)
    np.testing.assert_array_equal(state, expected_state)
    area = (slice(33, 401), slice(101, 480))
    blocks = [(slice(33, 154), slice(101, 231)), (slice(231, 308), slice(385, 462))]
    ndvi, state = scene_arrays(meta, layout, meta.encoding, area, blocks, threads=2)
    assert ndvi.shape == state.shape == (368, 379)
    for rows, cols in blocks:
        inside = (slice(rows.start - 33, rows.stop - 33), slice(cols.start - 101, cols.stop - 101))
        np.testing.assert_array_equal(ndvi[inside], expected_ndvi[rows, cols])
        np.testing.assert_array_equal(state[inside], expected_state[rows, cols])
        state[inside] = NOT_IMAGED
    assert (state == NOT_IMAGED).all()  # the NDVI there is memory never touched


@pytest.mark.parametrize("threads", [1, 4])
def test_an_encoding_checked_on_the_same_reads_sees_the_cells_and_reads_with_its_decision(
    threads,
):
    """The job's offset check takes its sample from the reads that make the NDVI: the
    raw numbers under its cells, whatever blocks they fall in, and every block (held ones
    included) is read with what it decided; one thread cannot deadlock on it."""
    meta = scene_meta(FIRST / "item.json")
    layout = dataclasses.replace(scene_layout(meta), chunk=128)
    cells = [(slice(0, 100), slice(120, 300)), (slice(300, 420), slice(50, 90))]
    seen = {}
    shifted = dataclasses.replace(meta.encoding, offset=meta.encoding.offset + 0.05)

    def decide(red, nir, scl):
        seen.update(red=red, nir=nir, scl=scl)
        return types.SimpleNamespace(encoding=shifted)

    check = EncodingCheck(cells, decide)
    ndvi, state = scene_arrays(meta, layout, check, threads=threads)
    assert check.result.encoding == shifted
    with rasterio.open(FIRST / "B04.tif") as src:
        red = src.read(1)
    expected_red = np.concatenate([red[rows, cols].ravel() for rows, cols in cells])
    np.testing.assert_array_equal(np.sort(seen["red"]), np.sort(expected_red))
    assert len(seen["nir"]) == len(seen["scl"]) == expected_red.size
    plain, plain_state = scene_arrays(meta, layout, shifted, threads=threads)
    np.testing.assert_array_equal(ndvi, plain)
    np.testing.assert_array_equal(state, plain_state)


def test_stac_item_without_raster_bands_uses_the_processing_baseline(tmp_path):
    folder = tmp_path / "scene"
    shutil.copytree(FIRST, folder)
    item = json.loads((folder / "item.json").read_text())
    for asset in item["assets"].values():
        asset.pop("raster:bands")
    (folder / "item.json").write_text(json.dumps(item))
    shifted = load_scene(folder / "item.json").red
    item["properties"]["s2:processing_baseline"] = "03.01"
    (folder / "item.json").write_text(json.dumps(item))
    unshifted = load_scene(folder / "item.json").red
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
