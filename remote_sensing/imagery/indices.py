"""Spectral indices and pixel masks on numpy arrays: pure functions, no I/O.

Inputs are surface reflectance (unitless, nominally 0..1, float32, NaN = no data) and
Sentinel-2 L2A scene classification (SCL) codes; outputs are float32 or uint8 so a full
10980 x 10980 tile never needs a float64 copy. They work on one window at a time: the
imagery job (band_reads) reads, masks and indexes each window while it is still in
cache.
"""

import numpy as np

# SCL classes that must never reach a statistic: no data, saturated/defective,
# cloud shadow, cloud medium/high probability, thin cirrus, snow (snow over a tea garden
# says nothing about the tea).
SCL_MASKED = (0, 1, 3, 8, 9, 10, 11)
# The subset that is weather: what a parcel's cloud fraction counts.
SCL_CLOUDY = (3, 8, 9, 10)

# Per-pixel state of a scene, one byte per pixel (what the parcel statistics need).
NOT_IMAGED = 0  # outside the swath, or no data in red/nir/SCL
CLEAR = 1
CLOUDY = 2  # cloud, cloud shadow or cirrus
UNUSABLE = 3  # saturated or defective


def _lookup(classes, hit, miss) -> np.ndarray:
    table = np.full(256, miss, dtype=np.uint8)
    table[list(classes)] = hit
    return table


_MASKED = _lookup(SCL_MASKED, 1, 0).astype(bool)
_CLOUDY = _lookup(SCL_CLOUDY, 1, 0).astype(bool)
_STATE = _lookup(SCL_CLOUDY, CLOUDY, CLEAR)
_STATE[0] = NOT_IMAGED
_STATE[1] = UNUSABLE
_STATE[11] = UNUSABLE

# Landsat Collection 2 QA_PIXEL bits -> the SCL class that means the same to the masks
# above, highest priority last (fill beats everything). A clear land pixel becomes 7
# (unclassified: usable, claims no land cover); water 6.
QA_PIXEL_CLASSES = (
    (7, 6),  # water
    (5, 11),  # snow
    (4, 3),  # cloud shadow
    (2, 10),  # cirrus
    (1, 9),  # dilated cloud
    (3, 9),  # cloud
    (0, 0),  # fill: no data
)
QA_CLEAR_CLASS = 7


def qa_pixel_to_scl(qa: np.ndarray) -> np.ndarray:
    """Landsat QA_PIXEL bit flags as SCL-like classes (uint8), so masking is one code path."""
    out = np.full(qa.shape, QA_CLEAR_CLASS, dtype=np.uint8)
    for bit, scl_class in QA_PIXEL_CLASSES:
        out[(qa & (1 << bit)) != 0] = scl_class
    return out


def scl_masked(scl: np.ndarray) -> np.ndarray:
    """True where the scene classification says the pixel is unusable."""
    return _MASKED[scl]


def scl_cloudy(scl: np.ndarray) -> np.ndarray:
    """True where the pixel is cloud, cloud shadow or cirrus."""
    return _CLOUDY[scl]


def ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """Normalised difference vegetation index, float32 in [-1, 1].

    NaN where either band is NaN or where red + nir <= 0 (the ratio is meaningless
    there; negative reflectances happen over water and dark shadow after the L2A offset).
    """
    red = red.astype(np.float32, copy=False)
    nir = nir.astype(np.float32, copy=False)
    total = nir + red
    with np.errstate(divide="ignore", invalid="ignore"):
        value = nir - red
        value /= total
    value[~(total > 0)] = np.nan
    np.clip(value, -1.0, 1.0, out=value)
    return value


def masked_ndvi(red: np.ndarray, nir: np.ndarray, scl: np.ndarray) -> np.ndarray:
    """NDVI with every SCL-masked pixel set to NaN."""
    value = ndvi(red, nir)
    value[_MASKED[scl]] = np.nan
    return value


def pixel_state(red: np.ndarray, nir: np.ndarray, scl: np.ndarray) -> np.ndarray:
    """uint8 state per pixel: NOT_IMAGED, CLEAR, CLOUDY or UNUSABLE (see constants)."""
    state = _STATE[scl]
    state[np.isnan(red) | np.isnan(nir)] = NOT_IMAGED
    return state


def reflectance(dn: np.ndarray, scale: float, offset: float, nodata: float | None) -> np.ndarray:
    """Digital numbers to float32 reflectance (dn * scale + offset), NaN where no data."""
    out = dn.astype(np.float32)
    out *= np.float32(scale)
    out += np.float32(offset)
    if nodata is not None:
        out[dn == nodata] = np.nan
    return out
