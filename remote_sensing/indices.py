"""Spectral indices and masks on arrays: no I/O; numpy or dask arrays (lazy stays lazy).

Inputs are surface reflectance (unitless, nominally 0..1, float32) and Sentinel-2 L2A
scene classification (SCL) codes; outputs are float32 so a full 10980 x 10980 tile
never needs a float64 copy.
"""

import numpy as np

# SCL classes that must never reach a statistic: no data, saturated/defective,
# cloud shadow, cloud medium/high probability, thin cirrus.
SCL_MASKED = (0, 1, 3, 8, 9, 10)
# The subset that is weather: what a parcel's cloud fraction counts.
SCL_CLOUDY = (3, 8, 9, 10)


def scl_masked(scl):
    """True where the scene classification says the pixel is unusable."""
    return _isin(scl, SCL_MASKED)


def scl_cloudy(scl):
    """True where the pixel is cloud, cloud shadow or cirrus."""
    return _isin(scl, SCL_CLOUDY)


def _isin(values, classes):
    out = values == classes[0]
    for code in classes[1:]:
        out = out | (values == code)
    return out


def ndvi(red, nir):
    """Normalised difference vegetation index, float32 in [-1, 1].

    NaN where either band is NaN or where red + nir <= 0 (the ratio is meaningless
    there; negative reflectances happen over water and dark shadow after the L2A offset).
    """
    red = red.astype(np.float32)
    nir = nir.astype(np.float32)
    total = nir + red
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (nir - red) / total
    value = np.where(total > 0, value, np.float32(np.nan))
    return np.clip(value, np.float32(-1.0), np.float32(1.0)).astype(np.float32)


def masked_ndvi(red, nir, scl):
    """NDVI with every SCL-masked pixel set to NaN."""
    return np.where(scl_masked(scl), np.float32(np.nan), ndvi(red, nir)).astype(np.float32)
