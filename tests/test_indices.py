import numpy as np

from remote_sensing.imagery.indices import (
    CLEAR,
    CLOUDY,
    NOT_IMAGED,
    SCL_MASKED,
    UNUSABLE,
    masked_ndvi,
    ndvi,
    pixel_state,
    reflectance,
    scl_cloudy,
    scl_masked,
)


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
    assert scl_masked(scl).sum() == 7  # snow (11) too
    assert list(np.flatnonzero(scl_cloudy(scl))) == [3, 8, 9, 10]


def test_reflectance_applies_scale_offset_and_no_data():
    dn = np.array([0, 1000, 3500, 11000], dtype=np.uint16)
    result = reflectance(dn, 1e-4, -0.1, 0)
    assert result.dtype == np.float32
    assert np.isnan(result[0])
    np.testing.assert_allclose(result[1:], [0.0, 0.25, 1.0], atol=1e-7)


def test_pixel_state_tells_not_imaged_clear_cloudy_and_unusable():
    scl = np.array([0, 1, 3, 4, 5, 8, 9, 10, 4], dtype=np.uint8)
    red = np.array([0.1] * 8 + [np.nan], dtype=np.float32)
    nir = np.full(9, 0.3, dtype=np.float32)
    expected = [NOT_IMAGED, UNUSABLE, CLOUDY, CLEAR, CLEAR, CLOUDY, CLOUDY, CLOUDY, NOT_IMAGED]
    assert pixel_state(red, nir, scl).tolist() == expected
