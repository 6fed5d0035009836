"""Writing rasters as Cloud-Optimized GeoTIFFs, atomically.

A COG is written to a temporary file beside its destination and renamed into place only
when GDAL has finished, so a killed job never leaves a half-written file that looks done.
"""

import re
from pathlib import Path

import numpy as np
import rasterio
import rasterio.dtypes
import rasterio.errors
import rasterio.shutil
import rasterio.windows
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling

from agri_common.files import atomic_path, sweep_stale

# ZSTD at level 1: the ratio of DEFLATE at about half the time on a full tile (GDAL >= 2.3
# reads it, and only our own services read these files). The float predictor suits NDVI.
COG_OPTIONS = {
    "compress": "ZSTD",
    "level": 1,
    "predictor": "YES",
    "blocksize": 512,
    "num_threads": "ALL_CPUS",
    "bigtiff": "IF_SAFER",
    # tiles that are all nodata (the blocks of a scene's area no parcel needed) are not
    # stored: a reader gets nodata for them, the writer skips compressing them
    "sparse_ok": "TRUE",
}
OVERVIEW_MIN_SIZE = 512


def safe_name(scene_id: str) -> str:
    """A file name for a scene id (which may contain slashes or colons)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", scene_id)


def overview_factors(height: int, width: int) -> list[int]:
    """2, 4, 8, ... until the smallest level fits in one 512 px block."""
    factors, factor = [], 2
    while max(height, width) / factor >= OVERVIEW_MIN_SIZE / 2 and max(height, width) > 512:
        factors.append(factor)
        factor *= 2
    return factors


def write_cog(
    path: Path,
    array: np.ndarray,
    crs: CRS,
    transform: Affine,
    nodata: float | int | None,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write a single-band 2-D array as a COG at ``path`` (replacing any previous file).

    GDAL reads the array where it is (a MEM dataset over its buffer, GDAL's documented
    ``MEM:::DATAPOINTER`` form): a full tile's NDVI is 480 MB, and the in-memory GeoTIFF
    copy this used to go through put the job over 2 GB. Overviews (average) are built on
    that dataset, in memory, and handed to GDAL's COG driver, which is several times
    faster than letting the driver build them through temp files.
    """
    path = Path(path)
    array = np.ascontiguousarray(array)
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_MEM_ENABLE_OPEN="YES"):
        with rasterio.open(_mem_dataset_name(array, transform), "r+") as src:
            src.crs = rasterio.crs.CRS.from_wkt(crs.to_wkt())
            if nodata is not None:
                src.nodata = nodata
            if tags:
                src.update_tags(**tags)
            factors = overview_factors(*array.shape)
            if factors:
                src.build_overviews(factors, Resampling.average)
            # the file exists only while GDAL writes it: a kill leaves as little as can be
            with atomic_path(path) as tmp:
                rasterio.shutil.copy(
                    src, tmp, driver="COG", overviews="FORCE_USE_EXISTING", **COG_OPTIONS
                )
                _check_complete(tmp, array, path.name)
    sweep_stale(path, STALE_TMP_S)
    return path


def _mem_dataset_name(array: np.ndarray, transform: Affine) -> str:
    """A GDAL MEM dataset over a C-contiguous 2-D array's own buffer (no copy); the array
    must outlive the dataset."""
    height, width = array.shape
    gdal_type = _gdal_data_type(array.dtype)
    geotransform = "/".join(repr(float(v)) for v in transform.to_gdal())
    return (
        f"MEM:::DATAPOINTER={array.ctypes.data},PIXELS={width},LINES={height},BANDS=1,"
        f"DATATYPE={gdal_type},GEOTRANSFORM={geotransform}"
    )


def _gdal_data_type(dtype: np.dtype) -> str:
    """GDAL's name of a NumPy type, from rasterio's own tables."""
    try:
        return rasterio.dtypes.typename_fwd[rasterio.dtypes.dtype_rev[dtype.name]]
    except KeyError:
        raise ValueError(f"cannot write {dtype.name} rasters") from None


STALE_TMP_S = 600  # a COG write never leaves its temp file untouched this long


def _check_complete(path: Path, array: np.ndarray, name: str) -> None:
    """Raise if the file on disk is not all there.

    GDAL reports a failed write (disk full, file size limit) only as a logged error and
    leaves a truncated file. A COG stores its full-resolution tiles last; tiles that are
    all nodata are not stored at all (SPARSE_OK). So the tile stored last, the one at the
    highest offset (GDAL's BLOCK_OFFSET_X_Y), must end within the file and read back equal
    to the array: that finds a truncation for the cost of one block.
    """
    try:
        with rasterio.open(path) as src:
            block_h, block_w = src.block_shapes[0]
            last, end = None, 0
            for y in range(-(-src.height // block_h)):
                for x in range(-(-src.width // block_w)):
                    offset = int(src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=1) or 0)
                    if offset and offset >= end:
                        size = int(src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=1) or 0)
                        last, end = (y, x), offset + size
            if last is None:
                return  # nothing but nodata: no tile stored, nothing to truncate
            rows = slice(last[0] * block_h, min((last[0] + 1) * block_h, src.height))
            cols = slice(last[1] * block_w, min((last[1] + 1) * block_w, src.width))
            block = src.read(1, window=rasterio.windows.Window.from_slices(rows, cols))
    except rasterio.errors.RasterioError as exc:
        raise OSError(f"NDVI COG {name} was not written completely (disk full?): {exc}") from exc
    if path.stat().st_size < end or not np.array_equal(
        block, array[rows, cols], equal_nan=np.issubdtype(array.dtype, np.floating)
    ):
        raise OSError(f"NDVI COG {name} was not written completely (disk full?)")
