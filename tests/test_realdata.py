"""Real Sentinel-2 L2A data (FuseTS field, Spain 2019) through the unchanged imagery job."""

import json
import shutil
from datetime import date, timedelta

import numpy as np
import pytest
import rasterio

from remote_sensing.imagery.scenes import load_scene

FUSETS = "fusets_field_spain_2019"


@pytest.fixture
def field_parcels(realdata, tmp_path):
    geometry = json.loads((realdata / FUSETS / "field.geojson").read_text())
    path = tmp_path / "field.geojson"
    feature = {
        "type": "Feature",
        "properties": {"parcel_id": "ES-FIELD", "kind": "forest", "owner": "FuseTS"},
        "geometry": geometry,
    }
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path


def _source_ndvi_by_date(realdata):
    """The cube's own NDVI variable, per acquisition date (t = days since 1990-01-01)."""
    out = {}
    with rasterio.open(f"netcdf:{realdata / FUSETS / 'raw_s2_ndvi_field.nc'}:NDVI") as src:
        for band in range(1, src.count + 1):
            days = int(float(src.tags(band)["NETCDF_DIM_t"]))
            out[date(1990, 1, 1) + timedelta(days=days)] = src.read(band)
    return out


def test_fusets_series_runs_through_the_job_and_matches_the_cube_ndvi(
    realdata, field_parcels, sqlite_env, agri, tmp_path
):
    assert agri("parcels", "import", field_parcels).exit_code == 0
    inbox = realdata / FUSETS / "derived_tif"
    result = agri("imagery", "run", "--inbox", inbox, "--json")
    summary = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert summary["processed"] == 33 and summary["failed"] == 0

    source = _source_ndvi_by_date(realdata)
    compared = 0
    for cog in sorted((tmp_path / "data" / "ndvi").glob("*.tif")):
        with rasterio.open(cog) as src:
            ours = src.read(1)
            when = date.fromisoformat(src.tags()["DATETIME"][:10])
        theirs = source[when]
        both = np.isfinite(ours) & np.isfinite(theirs)
        assert both.sum() > 0 or not np.isfinite(theirs).any()
        np.testing.assert_allclose(ours[both], theirs[both], atol=1e-6, rtol=0)
        compared += int(both.sum())
    assert compared > 33 * 1000  # most of the 57 x 56 pixels, on every date

    observations = json.loads(agri("parcels", "observations", "ES-FIELD", "--json").output)
    assert len(observations) == 33
    clear = [o for o in observations if o["valid_fraction"] >= 0.6]
    assert len(clear) >= 28
    by_month = {}
    for o in clear:
        by_month.setdefault(int(o["acquired_at"][5:7]), []).append(o["ndvi_mean"])
    peak = max(clear, key=lambda o: o["ndvi_mean"])
    # A rain-fed winter cereal on the Meseta: green-up in March, peak April-May, harvest by July.
    assert peak["acquired_at"][:7] in ("2019-04", "2019-05") and peak["ndvi_mean"] > 0.7
    assert max(by_month[7] + by_month[8]) < 0.3
    assert np.mean(by_month[3]) > np.mean(by_month[2])
    assert all(0 <= o["cloud_fraction"] <= 1 for o in observations)


def test_baseline_offset_applies_only_from_2022(realdata, tmp_path):
    original = realdata / FUSETS / "derived_tif" / "S2_20190805_B04_B08_SCL.tif"
    shifted = tmp_path / "S2_20230805_shifted.tif"
    shutil.copy(original, shifted)
    with rasterio.open(shifted, "r+") as dst:
        data = dst.read()
        for band in (0, 1):  # B04 and B08 get the baseline-04.00 +1000; no data stays 0
            data[band] = np.where(data[band] > 0, data[band] + 1000, 0)
        dst.write(data)
        dst.update_tags(DATETIME="2023-08-05")
    before = load_scene(original)
    after = load_scene(shifted)
    valid = np.isfinite(before.red)
    assert valid.sum() > 1000
    np.testing.assert_allclose(after.red[valid], before.red[valid], atol=1e-6)
    np.testing.assert_allclose(after.nir[valid], before.nir[valid], atol=1e-6)
    # The same shifted DNs dated 2019 would be read without the offset: visibly wrong.
    with rasterio.open(shifted, "r+") as dst:
        dst.update_tags(DATETIME="2019-08-05")
    wrong = load_scene(shifted)
    assert np.nanmin(wrong.red[valid] - before.red[valid]) > 0.099
