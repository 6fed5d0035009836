import dask.array as da
import numpy as np

from remote_sensing.indices import SCL_MASKED, masked_ndvi, ndvi, scl_cloudy, scl_masked


def test_ndvi_equals_formula_on_known_pixels():
    red = np.array([[0.05, 0.10], [0.20, 0.03]], dtype=np.float32)
    nir = np.array([[0.40, 0.10], [0.10, 0.30]], dtype=np.float32)
    expected = (nir.astype(np.float64) - red) / (nir.astype(np.float64) + red)
    result = ndvi(red, nir)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, atol=1e-7)
    assert result[0, 1] == 0.0


def test_ndvi_is_nan_where_sum_not_positive_or_input_missing():
    red = np.array([0.0, -0.05, np.nan, 0.1], dtype=np.float32)
    nir = np.array([0.0, 0.02, 0.3, np.nan], dtype=np.float32)
    assert np.isnan(ndvi(red, nir)).all()


def test_ndvi_is_clipped_to_unit_interval_when_offset_makes_red_negative():
    red = np.array([-0.01], dtype=np.float32)
    nir = np.array([0.3], dtype=np.float32)
    assert ndvi(red, nir)[0] == 1.0


def test_every_masked_scl_class_becomes_nan_and_others_survive():
    scl = np.arange(12, dtype=np.uint8)
    red = np.full(12, 0.05, dtype=np.float32)
    nir = np.full(12, 0.30, dtype=np.float32)
    result = masked_ndvi(red, nir, scl)
    for code in range(12):
        assert np.isnan(result[code]) == (code in SCL_MASKED), code
    assert scl_masked(scl).sum() == 6
    assert list(np.flatnonzero(scl_cloudy(scl))) == [3, 8, 9, 10]


def test_dask_arrays_stay_lazy_and_give_the_same_values():
    rng = np.random.default_rng(1)
    red = rng.uniform(0, 0.3, (64, 64)).astype(np.float32)
    nir = rng.uniform(0, 0.6, (64, 64)).astype(np.float32)
    scl = rng.integers(0, 12, (64, 64)).astype(np.uint8)
    lazy = masked_ndvi(
        da.from_array(red, chunks=16), da.from_array(nir, chunks=16), da.from_array(scl, chunks=16)
    )
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), masked_ndvi(red, nir, scl))
