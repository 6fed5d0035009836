"""Per-pixel NDVI of one parcel across several scenes' NDVI COGs (reads only its window)."""

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from pyproj import CRS
from rasterio.windows import Window, from_bounds
from shapely.geometry.base import BaseGeometry

from remote_sensing.coverage import Grid, compute_weights


def parcel_pixel_stack(
    paths: list[Path], geometry_wgs84: BaseGeometry
) -> tuple[np.ndarray, np.ndarray, float]:
    """NDVI of the parcel's pixels in each COG: (stack[scene, pixel], coverage, pixel m2).

    Pixels are those of the first COG's grid; a COG on another grid gives a row of NaN,
    so rows always compare the same ground.
    """
    with rasterio.open(paths[0]) as src:
        crs = CRS.from_wkt(src.crs.to_wkt())
        transform, shape = src.transform, (src.height, src.width)
    local = gpd.GeoSeries([geometry_wgs84], crs="EPSG:4326").to_crs(crs)
    window = (
        from_bounds(*local.total_bounds, transform=transform)
        .round_offsets(op="floor")
        .round_lengths(op="ceil")
    )
    window = window.intersection(Window(0, 0, shape[1], shape[0]))
    window = Window(window.col_off, window.row_off, window.width + 1, window.height + 1)
    window = window.intersection(Window(0, 0, shape[1], shape[0]))
    grid = Grid(crs, rasterio.windows.transform(window, transform), window.height, window.width)
    frame = gpd.GeoDataFrame({"parcel_id": ["p"]}, geometry=local.values, crs=crs)
    weights = compute_weights(frame, grid)
    stack = np.full((len(paths), len(weights.cell_ids)), np.nan)
    for row, path in enumerate(paths):
        with rasterio.open(path) as src:
            if src.transform != transform or (src.height, src.width) != shape:
                continue
            values = src.read(1, window=window, boundless=False).astype(float)
        stack[row] = values.reshape(-1)[weights.cell_ids]
    return stack, weights.coverage, grid.pixel_area
