"""Parcel statistics from coverage weights agree with exactextract and with geometry."""

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from exactextract import exact_extract
from exactextract.raster import NumPyRasterSource
from pyproj import CRS

from remote_sensing.coverage import Grid, cached_weights, compute_weights
from remote_sensing.imagery.indices import CLEAR, CLOUDY
from remote_sensing.imagery.scene_processing import observation_rows
from remote_sensing.imagery.zonal import parcel_statistics
from remote_sensing.parcel_set import ParcelSet

UTM = CRS.from_epsg(32650)
GRID = Grid(UTM, Affine(10, 0, 618_000, 0, -10, 2_775_000), 60, 80)


def _frame(geoms, crs=UTM):
    return gpd.GeoDataFrame(
        {"parcel_id": [f"P{i}" for i in range(len(geoms))]}, geometry=geoms, crs=crs
    )


def _parcels(geoms, crs=UTM):
    return ParcelSet.from_frame(_frame(geoms, crs))


def _all_clear():
    return np.full((GRID.height, GRID.width), CLEAR, dtype=np.uint8)


def test_half_pixel_offset_square_has_analytic_coverage():
    x0, y0 = 618_000 + 105, 2_775_000 - 105  # starts in the middle of pixel (10, 10)
    square = shapely.box(x0, y0 - 20, x0 + 20, y0)  # 2 x 2 pixels, offset half a pixel
    weights = compute_weights(_parcels([square]), GRID)
    cov = dict(zip(weights.cell_ids.tolist(), weights.coverage.tolist(), strict=True))
    # corners a quarter, edges a half, the centre pixel whole
    assert sorted(cov.values()) == [0.25, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.5, 1.0]
    assert cov[11 * GRID.width + 11] == 1.0
    assert weights.parcel_area_px[0] == pytest.approx(4.0)


def test_pixel_aligned_parcel_gives_the_plain_numpy_mean():
    rng = np.random.default_rng(7)
    ndvi = rng.uniform(-0.2, 0.9, (GRID.height, GRID.width)).astype(np.float32)
    box = shapely.box(618_000 + 50, 2_775_000 - 170, 618_000 + 250, 2_775_000 - 40)
    weights = compute_weights(_parcels([box]), GRID)
    stats = parcel_statistics(weights, ndvi, _all_clear())
    window = ndvi[4:17, 5:25].astype(np.float64)
    assert stats["ndvi_mean"][0] == pytest.approx(window.mean(), abs=1e-12)
    assert stats["ndvi_std"][0] == pytest.approx(window.std(), abs=1e-12)
    assert stats["pixel_count"][0] == window.size
    assert stats["valid_fraction"][0] == pytest.approx(1.0)


def test_statistics_match_exactextract_on_irregular_parcels_with_masked_pixels():
    rng = np.random.default_rng(11)
    ndvi = rng.uniform(-0.1, 0.9, (GRID.height, GRID.width)).astype(np.float32)
    ndvi[rng.random(ndvi.shape) < 0.2] = np.nan  # clouds
    geoms = []
    for _ in range(25):
        cx = 618_000 + rng.uniform(50, 750)
        cy = 2_775_000 - rng.uniform(50, 550)
        geoms.append(shapely.Point(cx, cy).buffer(rng.uniform(8, 60), quad_segs=5))
    geoms.append(shapely.box(618_003, 2_774_990, 618_009, 2_774_996))  # smaller than a pixel
    frame = _frame(geoms)
    weights = compute_weights(ParcelSet.from_frame(frame), GRID)
    ours = parcel_statistics(weights, ndvi, _all_clear())
    xmin, ymin, xmax, ymax = GRID.bounds
    src = NumPyRasterSource(ndvi, xmin, ymin, xmax, ymax, nodata=np.nan, srs_wkt=UTM.to_wkt())
    theirs = exact_extract(
        src,
        frame,
        ["mean", "median", "quantile(q=0.1)", "quantile(q=0.9)", "stdev"],
        output="pandas",
    )
    np.testing.assert_allclose(ours["ndvi_mean"], theirs["mean"], atol=1e-9)
    np.testing.assert_allclose(ours["ndvi_std"], theirs["stdev"], atol=1e-9)
    # exactextract reports quantiles as float32
    np.testing.assert_allclose(ours["ndvi_median"], theirs["median"], atol=1e-6)
    np.testing.assert_allclose(ours["ndvi_p10"], theirs["quantile_10"], atol=1e-6)
    np.testing.assert_allclose(ours["ndvi_p90"], theirs["quantile_90"], atol=1e-6)


def test_parcel_without_valid_pixels_has_nan_statistics_and_zero_valid_fraction():
    ndvi = np.full((GRID.height, GRID.width), np.nan, dtype=np.float32)
    state = np.full(ndvi.shape, CLOUDY, dtype=np.uint8)
    weights = compute_weights(_parcels([shapely.box(618_100, 2_774_700, 618_200, 2_774_800)]), GRID)
    stats = parcel_statistics(weights, ndvi, state)
    for name in ("ndvi_mean", "ndvi_median", "ndvi_p10", "ndvi_p90", "ndvi_std"):
        assert np.isnan(stats[name][0]), name
    assert stats["valid_fraction"][0] == 0.0
    assert stats["cloud_fraction"][0] == 1.0


def test_parcel_half_outside_the_grid_has_valid_fraction_one_half():
    ndvi = np.full((GRID.height, GRID.width), 0.5, dtype=np.float32)
    xmax = GRID.bounds[2]
    box = shapely.box(xmax - 100, 2_774_700, xmax + 100, 2_774_800)
    stats = parcel_statistics(compute_weights(_parcels([box]), GRID), ndvi, _all_clear())
    assert stats["valid_fraction"][0] == pytest.approx(0.5)
    assert stats["ndvi_mean"][0] == pytest.approx(0.5)


def test_same_parcel_in_wgs84_and_utm_gives_the_same_statistics(tmp_path):
    rng = np.random.default_rng(3)
    ndvi = rng.uniform(0, 0.9, (GRID.height, GRID.width)).astype(np.float32)
    utm = _parcels(
        [
            shapely.Polygon(
                [
                    (618_120, 2_774_880),
                    (618_420, 2_774_860),
                    (618_380, 2_774_600),
                    (618_150, 2_774_640),
                ]
            )
        ]
    )
    wgs84 = utm.to_crs(4326)
    rows_utm = observation_rows(utm, GRID, ndvi, _all_clear(), tmp_path / "a")
    rows_wgs = observation_rows(wgs84, GRID, ndvi, _all_clear(), tmp_path / "b")
    assert rows_utm[0].keys() == rows_wgs[0].keys()
    for key in ("ndvi_mean", "ndvi_median", "ndvi_p10", "ndvi_p90", "ndvi_std", "valid_fraction"):
        assert rows_wgs[0][key] == pytest.approx(rows_utm[0][key], abs=1e-6), key


def test_weights_cache_is_reused_and_invalidated_when_parcels_change(tmp_path):
    frame = _parcels([shapely.box(618_100, 2_774_700, 618_200, 2_774_800)])
    first = cached_weights(frame, GRID, tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1
    again = cached_weights(frame, GRID, tmp_path)
    np.testing.assert_array_equal(first.cell_ids, again.cell_ids)
    assert list(tmp_path.iterdir()) == files
    moved = _parcels([shapely.box(618_300, 2_774_700, 618_400, 2_774_800)])
    changed = cached_weights(moved, GRID, tmp_path)
    assert len(list(tmp_path.iterdir())) == 2
    assert not np.array_equal(first.cell_ids, changed.cell_ids)


def test_grid_key_ignores_how_the_crs_is_spelled():
    import rasterio.crs

    gdal_wkt = CRS.from_wkt(rasterio.crs.CRS.from_epsg(32650).to_wkt())
    same = Grid(gdal_wkt, GRID.transform, GRID.height, GRID.width)
    assert same.key() == GRID.key()
    shifted = Grid(UTM, GRID.transform * GRID.transform.translation(1, 0), GRID.height, GRID.width)
    assert shifted.key() != GRID.key()
