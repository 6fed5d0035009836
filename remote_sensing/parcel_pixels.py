"""Per-pixel NDVI of one parcel across several scenes' NDVI COGs (reads only its window)."""

from pathlib import Path

import numpy as np
import rasterio
from pyproj import CRS
from rasterio.windows import Window, from_bounds
from shapely.geometry.base import BaseGeometry

from remote_sensing.coverage import Grid, compute_weights
from remote_sensing.parcel_set import ParcelSet


def parcel_pixel_stack(
    paths: list[Path], geometry_wgs84: BaseGeometry
) -> tuple[np.ndarray, np.ndarray, float]:
    """NDVI of the parcel's pixels in each COG: (stack[scene, pixel], coverage, pixel m2).

    Pixels are those of the first COG's grid. The COGs may cover different parts of a
    scene's grid (each holds the blocks read for the parcels of its day): a COG on the
    same pixel lattice is read at the same ground, partly outside it as NaN; a COG on
    another lattice (CRS, pixel size or offset) gives a row of NaN, so rows always compare
    the same ground.
    """
    with rasterio.open(paths[0]) as src:
        crs = CRS.from_wkt(src.crs.to_wkt())
        transform = src.transform
    local = ParcelSet.of(["p"], [geometry_wgs84]).to_crs(crs)
    window = (
        from_bounds(*local.total_bounds, transform=transform)
        .round_offsets(op="floor")
        .round_lengths(op="ceil")
    )
    window = Window(window.col_off - 1, window.row_off - 1, window.width + 3, window.height + 3)
    grid = Grid(crs, rasterio.windows.transform(window, transform), window.height, window.width)
    weights = compute_weights(local, grid)
    stack = np.full((len(paths), len(weights.cell_ids)), np.nan)
    for row, path in enumerate(paths):
        with rasterio.open(path) as src:
            offset = _lattice_offset(transform, src.transform)
            if offset is None or CRS.from_wkt(src.crs.to_wkt()) != crs:
                continue
            there = Window(
                window.col_off - offset[0], window.row_off - offset[1], window.width, window.height
            )
            try:
                inside = there.intersection(Window(0, 0, src.width, src.height))
            except rasterio.errors.WindowError:  # the COG does not reach the parcel
                inside = None
            values = np.full((int(window.height), int(window.width)), np.nan)
            if inside is not None:
                part = src.read(1, window=inside).astype(float)
                r, c = int(inside.row_off - there.row_off), int(inside.col_off - there.col_off)
                values[r : r + part.shape[0], c : c + part.shape[1]] = part
        stack[row] = values.reshape(-1)[weights.cell_ids]
    return stack, weights.coverage, grid.pixel_area


def _lattice_offset(reference, other) -> tuple[int, int] | None:
    """(columns, rows) from ``reference``'s origin to ``other``'s when both are the same
    pixel lattice (same pixel size, origins a whole number of pixels apart), else None."""
    if (reference.a, reference.b, reference.d, reference.e) != (other.a, other.b, other.d, other.e):
        return None
    cols = (other.c - reference.c) / reference.a
    rows = (other.f - reference.f) / reference.e
    if abs(cols - round(cols)) > 1e-6 or abs(rows - round(rows)) > 1e-6:
        return None
    return round(cols), round(rows)
