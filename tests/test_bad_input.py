"""Hostile or absurd input is refused with a clear error before it costs anything: STAC
assets outside the inbox, rasters of absurd size, parcel files of absurd vertex counts."""

import json
import shutil

import numpy as np
import pytest
import rasterio

from remote_sensing import parcels as parcel_files
from remote_sensing.imagery.job import run_inbox
from remote_sensing.imagery.scenes import SceneError, find_scenes, load_scene
from remote_sensing.parcels import ParcelFileError, read_parcel_file
from tests.support.paths import SAMPLE_TILES

FIRST = sorted((SAMPLE_TILES / "scenes").iterdir())[0]


@pytest.mark.parametrize(
    ("href", "reason"),
    [
        ("../../outside/B04.tif", "leads outside the imagery inbox"),
        ("link/B04.tif", "leads outside the imagery inbox"),  # a symlink out of the inbox
        ("/etc/hostname", "is absolute"),
        ("http://example.com/B04.tif", "URLs and other schemes are refused"),
        ("file:///etc/hostname", "URLs and other schemes are refused"),
        ("s3:bucket/B04.tif", "URLs and other schemes are refused"),
    ],
)
def test_stac_assets_must_stay_inside_the_inbox(tmp_path, engine, href, reason):
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    shutil.copytree(FIRST, inbox / "scene")
    shutil.copytree(FIRST, outside)
    (inbox / "scene" / "link").symlink_to(outside, target_is_directory=True)
    item_path = inbox / "scene" / "item.json"
    item = json.loads(item_path.read_text())
    red = next(k for k in item["assets"] if k.lower() in ("red", "b04"))
    item["assets"][red]["href"] = href
    item_path.write_text(json.dumps(item))

    (source,) = [s for s in find_scenes(inbox) if s.path == item_path]
    assert all(f.resolve().is_relative_to(inbox.resolve()) for f in source.files)  # not read
    with pytest.raises(SceneError, match=reason):
        load_scene(item_path, [inbox])
    summary = run_inbox(engine, inbox, tmp_path / "data")
    (outcome,) = [s for s in summary.scenes if s.path == str(item_path)]
    assert outcome.status == "failed" and reason in outcome.error
    assert outcome.observations == 0


def test_a_raster_of_absurd_size_is_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=40_000,
        height=40_000,
        count=3,
        dtype="uint16",
        crs="EPSG:32650",
        transform=rasterio.Affine(10, 0, 600_000, 0, -10, 2_800_000),
        tiled=True,
        compress="deflate",
        SPARSE_OK=True,
    ) as dst:
        dst.descriptions = ("B04", "B08", "SCL")
        dst.update_tags(DATETIME="2024-05-01T03:00:00Z")
        dst.write(np.ones((3, 16, 16), np.uint16), window=((0, 16), (0, 16)))
    assert path.stat().st_size < 1_000_000  # 1.6 billion pixels claimed, almost none stored
    with pytest.raises(SceneError, match="beyond the 400,000,000 px"):
        load_scene(path)


def _circle(vertices: int) -> dict:
    """A polygon ring of exactly ``vertices`` distinct points (plus the closing one)."""
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    ring = np.c_[118.2 + 0.002 * np.cos(angles), 25.05 + 0.002 * np.sin(angles)].tolist()
    return {"type": "Polygon", "coordinates": [ring + ring[:1]]}


def test_a_parcel_with_absurdly_many_vertices_is_rejected_and_the_rest_imported(tmp_path):
    features = [
        {
            "type": "Feature",
            "properties": {"parcel_id": "OK-1", "kind": "forest"},
            "geometry": _circle(64),
        },
        {
            "type": "Feature",
            "properties": {"parcel_id": "HUGE-1", "kind": "forest"},
            "geometry": _circle(parcel_files.MAX_VERTICES_PER_PARCEL + 400),
        },
    ]
    path = tmp_path / "parcels.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    result = read_parcel_file(path)
    assert [p.parcel_id for p in result.parcels] == ["OK-1"]
    (rejection,) = result.rejected
    assert "HUGE-1" in rejection and "vertices is beyond the 100,000" in rejection


def test_a_parcel_file_beyond_the_limits_is_refused_whole(tmp_path, monkeypatch):
    features = [
        {
            "type": "Feature",
            "properties": {"parcel_id": f"P-{i}", "kind": "forest"},
            "geometry": _circle(400),
        }
        for i in range(5)
    ]
    path = tmp_path / "parcels.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    monkeypatch.setattr(parcel_files, "MAX_VERTICES", 1000)
    with pytest.raises(ParcelFileError, match="vertices in all is beyond the 1,000"):
        read_parcel_file(path)
    monkeypatch.setattr(parcel_files, "MAX_FILE_BYTES", 100)
    with pytest.raises(ParcelFileError, match="bytes is beyond the 100"):
        read_parcel_file(path)
