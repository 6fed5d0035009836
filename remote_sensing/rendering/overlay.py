"""NDVI COGs as web-map overlays: reprojected to Web Mercator, coloured, PNG with alpha.

A map page puts the PNG on its map between the returned WGS84 bounds. One PNG per scene,
written once (scenes never change) next to its bounds, atomically, so concurrent API
processes can share the cache.
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from rasterio.warp import (  # noqa: E402
    Resampling,
    calculate_default_transform,
    reproject,
    transform_bounds,
)

from agri_common.files import atomic_write  # noqa: E402

WEB_MERCATOR = "EPSG:3857"
MAX_SIDE = 2048  # pixels: a branch laptop on a poor line gets a few hundred kB
NDVI_RANGE = (-0.2, 0.9)
COLOURS = "RdYlGn"


def overlay(cog_path: Path, cache_dir: Path, scene_id: str) -> tuple[Path, dict]:
    """(PNG path, {"bounds": [[south, west], [north, east]]}), rendering on first use."""
    png, meta = cache_dir / f"{scene_id}.png", cache_dir / f"{scene_id}.json"
    if not (png.exists() and meta.exists()):
        rgba, bounds = render(cog_path)
        atomic_write(png, lambda f: plt.imsave(f, rgba, format="png"))
        atomic_write(meta, lambda f: f.write(json.dumps({"bounds": bounds}).encode()))
    return png, json.loads(meta.read_text())


def render(cog_path: Path) -> tuple[np.ndarray, list[list[float]]]:
    """The NDVI as RGBA in Web Mercator (no data transparent) and its WGS84 bounds."""
    with rasterio.open(cog_path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, WEB_MERCATOR, src.width, src.height, *src.bounds
        )
        shrink = max(1.0, max(width, height) / MAX_SIDE)
        width, height = max(1, int(width / shrink)), max(1, int(height / shrink))
        transform = transform * transform.scale(shrink)
        ndvi = np.full((height, width), np.nan, dtype="float32")
        reproject(
            rasterio.band(src, 1),
            ndvi,
            src_nodata=src.nodata,
            dst_transform=transform,
            dst_crs=WEB_MERCATOR,
            dst_nodata=np.nan,
            resampling=Resampling.average if shrink > 1 else Resampling.nearest,
        )
    rgba = colormaps[COLOURS](Normalize(*NDVI_RANGE, clip=True)(np.nan_to_num(ndvi)))
    rgba[..., 3] = np.where(np.isfinite(ndvi), 0.85, 0.0)
    west, north = transform * (0, 0)
    east, south = transform * (width, height)
    lon0, lat0, lon1, lat1 = transform_bounds(WEB_MERCATOR, "EPSG:4326", west, south, east, north)
    return rgba, [[lat0, lon0], [lat1, lon1]]


def legend(cache_dir: Path) -> Path:
    """A small colour bar for the overlay's NDVI scale."""
    path = cache_dir / "ndvi-legend.png"
    if not path.exists():
        fig, ax = plt.subplots(figsize=(3.2, 0.6), dpi=100)
        fig.subplots_adjust(bottom=0.55, top=0.9, left=0.05, right=0.95)
        bar = matplotlib.colorbar.ColorbarBase(
            ax, cmap=colormaps[COLOURS], norm=Normalize(*NDVI_RANGE), orientation="horizontal"
        )
        bar.set_label("NDVI (bare, cloud-free soil ~0.1; dense canopy ~0.8)", fontsize=7)
        ax.tick_params(labelsize=7)
        atomic_write(path, lambda f: fig.savefig(f, format="png", transparent=True))
        plt.close(fig)
    return path
