"""Writing rasters as Cloud-Optimized GeoTIFFs, atomically.

A COG is written to a temporary file beside its destination and renamed into place only
when GDAL has finished, so a killed job never leaves a half-written file that looks done.
"""

import os
import re
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS

COG_OPTIONS = {
    "compress": "DEFLATE",
    "predictor": "YES",  # floating-point predictor for float32 (3), horizontal for ints
    "blocksize": 512,
    "overviews": "AUTO",
    "overview_resampling": "AVERAGE",
    "num_threads": "ALL_CPUS",
    "bigtiff": "IF_SAFER",
}


def safe_name(scene_id: str) -> str:
    """A file name for a scene id (which may contain slashes or colons)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", scene_id)


def write_cog(
    path: Path,
    array: np.ndarray,
    crs: CRS,
    transform: Affine,
    nodata: float | int | None,
    tags: dict[str, str] | None = None,
    **options,
) -> Path:
    """Write a single-band 2-D array as a COG at ``path`` (replacing any previous file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    profile = {
        "driver": "COG",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": rasterio.crs.CRS.from_wkt(crs.to_wkt()),
        "transform": transform,
        "nodata": nodata,
        **COG_OPTIONS,
        **options,
    }
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(array, 1)
            if tags:
                dst.update_tags(**tags)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
