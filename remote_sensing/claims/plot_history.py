"""A plot's NDVI history from what the imagery job has already stored (a claim's backfill).

Every processed scene left an NDVI COG (cloud-masked, NaN where not clear). A borrower's
plot drawn today is read from those files at once, the same pixels with the same exact
coverage weights the job used for parcels, so the plot's mean NDVI on a date is what the
job would have computed had the plot been a parcel then. Nothing is re-read from the bands.
A COG holds only the blocks that the parcels of its day needed (scenes synced from a STAC
API): a plot elsewhere is not in it (``holds_plot``), and a claim reads that scene from
the catalogue instead (plot_backfill), or, with none configured, reports it as not
observed and says how many observations it had.
"""

import math
from dataclasses import dataclass, field
from datetime import datetime
from itertools import product
from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import transform_bounds
from rasterio.windows import from_bounds
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Engine

from agri_common.times import parse_time
from remote_sensing import store
from remote_sensing.parcel_pixels import parcel_pixel_stack


@dataclass
class PlotHistory:
    """Per scene: the plot's coverage-weighted mean NDVI and the share of it seen clear;
    and per pixel (on the most common grid, Sentinel-2's 10 m where there is one) the
    NDVI of every scene on that grid, for the land-cover model and the plot's texture."""

    observations: list[dict] = field(default_factory=list)
    pixel_dates: list[datetime] = field(default_factory=list)
    pixels: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))  # [date, pixel]
    coverage: np.ndarray = field(default_factory=lambda: np.empty(0))  # [pixel], 0..1
    pixel_area_m2: float = 0.0


def stored_scenes(engine: Engine, since: datetime | None, until: datetime | None) -> list[dict]:
    """Done, not superseded scenes with an NDVI COG, oldest first."""
    rows = [
        r
        for r in store.scene_ledger(engine)
        if r["status"] == "done" and r["ndvi_path"] and r["acquired_at"] is not None
    ]
    latest: dict[str, dict] = {}
    for row in rows:  # the ledger keeps every attempt; the last one counts
        latest[row["scene_id"]] = row
    chosen = [
        r
        for r in latest.values()
        if (since is None or r["acquired_at"] >= since)
        and (until is None or r["acquired_at"] <= until)
    ]
    return sorted(chosen, key=lambda r: (r["acquired_at"], r["scene_id"]))


def holds_plot(path: Path, geometry_wgs84: BaseGeometry) -> bool:
    """Whether a stored NDVI COG holds the plot's ground: the plot inside its extent and
    every block under it stored (a sparse COG leaves out the blocks no parcel needed; a
    stored block may still be NaN where it was cloudy, which is an observation). A file
    that is gone holds nothing."""
    if not Path(path).exists():
        return False
    with rasterio.open(path) as src:
        bounds = transform_bounds("EPSG:4326", src.crs, *geometry_wgs84.bounds)
        w = from_bounds(*bounds, transform=src.transform)
        r0, r1 = math.floor(w.row_off), math.ceil(w.row_off + w.height)
        c0, c1 = math.floor(w.col_off), math.ceil(w.col_off + w.width)
        if r0 < 0 or c0 < 0 or r1 > src.height or c1 > src.width:
            return False
        block_h, block_w = src.block_shapes[0]
        blocks = product(range(c0 // block_w, (c1 - 1) // block_w + 1),
                         range(r0 // block_h, (r1 - 1) // block_h + 1))  # fmt: skip
        offsets = (src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=1) for x, y in blocks)
        return all(offset and int(offset) > 0 for offset in offsets)


def lattice(path: Path) -> tuple:
    """A COG's pixel lattice: its CRS, pixel size and origin modulo the pixel size. Pixels
    of two files on the same lattice are the same ground."""
    with rasterio.open(path) as src:
        t = src.transform
        return (src.crs.to_string(), t.a, t.e, round(t.c % t.a, 6), round(t.f % t.e, 6))


def plot_history(
    engine: Engine,
    geometry: BaseGeometry,
    since: datetime | None = None,
    until: datetime | None = None,
    extra: list[dict] = (),
) -> PlotHistory:
    """The plot's history over the stored scenes acquired between ``since`` and ``until``,
    and the ``extra`` scenes (plot_backfill's, read from a catalogue for this plot; a
    stored copy of one of those that does not hold the plot is left out)."""
    fetched = {s["scene_id"] for s in extra}
    stored = [
        s
        for s in stored_scenes(engine, since, until)
        if Path(s["ndvi_path"]).exists() and s["scene_id"] not in fetched
    ]
    scenes = sorted([*stored, *extra], key=lambda r: (r["acquired_at"], r["scene_id"]))
    history = PlotHistory()
    per_grid: dict[tuple, list[tuple[dict, np.ndarray, np.ndarray, float]]] = {}
    for scene in scenes:
        stack, coverage, pixel_area = parcel_pixel_stack([Path(scene["ndvi_path"])], geometry)
        values = stack[0]
        valid = ~np.isnan(values)
        total = float(coverage.sum())
        seen = float((coverage * valid).sum())
        mean = float((coverage * np.nan_to_num(values)).sum() / seen) if seen > 0 else None
        history.observations.append(
            {
                "scene_id": scene["scene_id"],
                "acquired_at": scene["acquired_at"].isoformat(),
                "sensor": scene["sensor"],
                "ndvi_mean": mean,
                "valid_fraction": seen / total if total > 0 else 0.0,
                "source": scene.get("source", "stored"),
            }
        )
        per_grid.setdefault(lattice(Path(scene["ndvi_path"])), []).append(
            (scene, values, coverage, pixel_area)
        )
    if per_grid:
        rows = max(per_grid.values(), key=len)
        history.pixel_dates = [parse_time(r[0]["acquired_at"].isoformat()) for r in rows]
        history.pixels = np.vstack([r[1] for r in rows])
        history.coverage = rows[0][2]
        history.pixel_area_m2 = rows[0][3]
    return history
