"""The imagery job's parcels without geopandas: the same outlines, and no pandas import."""

import subprocess
import sys

import geopandas as gpd
import numpy as np
import shapely

from remote_sensing.parcel_set import ParcelSet
from tests.support.paths import SAMPLE_TILES


def test_reprojected_outlines_are_geopandas_own_to_the_last_bit():
    frame = gpd.read_file(SAMPLE_TILES / "parcels.geojson")
    parcels = ParcelSet.from_frame(frame)
    for crs in ("EPSG:32650", "EPSG:3857", "EPSG:4326"):
        theirs = frame.to_crs(crs)
        ours = parcels.to_crs(crs)
        assert list(ours.parcel_id) == list(theirs["parcel_id"])
        assert list(shapely.to_wkb(ours.geometry)) == list(theirs.geometry.to_wkb())
        assert ours.crs == theirs.crs
    np.testing.assert_array_equal(parcels.total_bounds, frame.total_bounds)
    tea = parcels.take(np.asarray(frame["kind"] == "tea_garden"))
    assert list(tea.parcel_id) == list(frame.loc[frame["kind"] == "tea_garden", "parcel_id"])
    assert not tea.empty and parcels.take(np.zeros(len(parcels), bool)).empty


def test_the_sync_command_does_not_import_pandas():
    """pandas (through geopandas) was 0.22-0.29 s of each ~3 s sync."""
    code = (
        "import sys, collateral.cli, collateral.cli.imagery, remote_sensing.imagery.stac_sync, "
        "remote_sensing.imagery.cluster; "
        "print(sorted(m for m in ('pandas', 'geopandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
