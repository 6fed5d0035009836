"""Scenes built from real catalogue item documents: rasters on the item's own grid,
encoded the way that catalogue encodes them, with uniform patches under parcels so the
expected NDVI of each parcel is known exactly."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.windows import Window
from shapely.geometry import box, mapping

CATALOGUE_ITEMS = Path(__file__).resolve().parents[1] / "data" / "catalogues"

# Sentinel-2 SCL classes and Landsat QA_PIXEL values as the products write them.
VEGETATION, WATER, CLOUD_HIGH = 4, 6, 9
QA_CLEAR = 0b0101_0101_0100_0000  # 21824: clear, low confidence in cloud/shadow/snow/cirrus
QA_WATER = QA_CLEAR | 1 << 7
QA_CLOUD = 0b0101_0111_0000_1000  # cloud bit (3), high cloud confidence
QA_SHADOW = 0b0101_0101_0001_0000  # cloud shadow bit (4)

# HLS v2.0 OLI = slope * MSI + offset (Sentinel-2A), written out here, not imported.
HLS_RED = (0.9765, 0.0009)
HLS_NIR = (0.9983, -0.0001)


@dataclass(frozen=True)
class Patch:
    """A parcel and the uniform surface under it (and a 2-pixel rim around it)."""

    parcel_id: str
    row: int
    col: int
    red: float  # surface reflectance
    nir: float
    mask: int  # SCL class or QA_PIXEL value
    size: int = 20  # parcel side in pixels
    kind: str = "forest"


def item_grid(item: dict, key: str) -> tuple[str, Affine, tuple[int, int]]:
    """(CRS, transform, shape) of one asset, from the asset or else the item properties."""
    asset, props = item["assets"][key], item["properties"]
    crs = asset.get("proj:code") or props.get("proj:code")
    epsg = asset.get("proj:epsg") or props.get("proj:epsg")
    crs = crs or f"EPSG:{epsg}"
    transform = Affine(*(asset.get("proj:transform") or props["proj:transform"])[:6])
    shape = tuple(asset.get("proj:shape") or props["proj:shape"])
    return crs, transform, shape


def s2_numbers(reflectance: float, with_offset: bool) -> int:
    return int(round(reflectance * 10000)) + (1000 if with_offset else 0)


def landsat_numbers(reflectance: float) -> int:
    return int(round((reflectance + 0.2) / 2.75e-5))


def expected_ndvi(red: float, nir: float) -> float:
    return (nir - red) / (nir + red)


def write_sparse(path: Path, crs, transform, shape, dtype, blocks) -> None:
    """A full-size tiled GeoTIFF with only ``blocks`` ((window, value) pairs) written:
    a few KB on disk however large the grid (GDAL's SPARSE_OK)."""
    profile = {
        "driver": "GTiff",
        "height": shape[0],
        "width": shape[1],
        "count": 1,
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "nodata": 0,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "sparse_ok": True,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        for window, value in blocks:
            data = np.full((int(window.height), int(window.width)), value, dtype=dtype)
            dst.write(data, 1, window=window)


def build_scene(
    item_file: Path,
    folder: Path,
    keys: dict[str, str],
    patches: list[Patch],
    numbers,
    edit=None,
) -> tuple[Path, list[dict]]:
    """Write the item (hrefs of ``keys``' assets rewritten to local files) and its rasters;
    returns the item path and the parcels as WGS84 GeoJSON features.

    ``numbers(reflectance) -> int`` encodes a reflectance as the catalogue stores it;
    ``edit(item)`` changes the item document first (a wrong flag, a reprocessed copy).
    """
    item = json.loads(Path(item_file).read_text())
    if edit is not None:
        edit(item)
    folder.mkdir(parents=True, exist_ok=True)
    crs, transform, shape = item_grid(item, keys["red"])
    mask_crs, mask_transform, mask_shape = item_grid(item, keys["mask"])
    ratio = mask_transform.a / transform.a
    rim = 2

    def window(p: Patch, scale: float = 1.0) -> Window:
        r0, c0 = int((p.row - rim) / scale), int((p.col - rim) / scale)
        r1 = int(np.ceil((p.row + p.size + rim) / scale))
        c1 = int(np.ceil((p.col + p.size + rim) / scale))
        return Window(c0, r0, c1 - c0, r1 - r0)

    for band in ("red", "nir"):
        write_sparse(
            folder / f"{keys[band]}.tif",
            crs,
            transform,
            shape,
            "uint16",
            [(window(p), numbers(getattr(p, band))) for p in patches],
        )
    mask_dtype = "uint8" if max(p.mask for p in patches) < 256 else "uint16"
    write_sparse(
        folder / f"{keys['mask']}.tif",
        mask_crs,
        mask_transform,
        mask_shape,
        mask_dtype,
        [(window(p, ratio), p.mask) for p in patches],
    )
    for band in ("red", "nir", "mask"):
        item["assets"][keys[band]]["href"] = f"./{keys[band]}.tif"
    path = folder / "item.json"
    path.write_text(json.dumps(item))
    to_wgs84 = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform
    features = []
    for p in patches:
        x0, y0 = transform * (p.col, p.row)
        x1, y1 = transform * (p.col + p.size, p.row + p.size)
        square = box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        geometry = shapely.transform(square, lambda xy: np.column_stack(to_wgs84(*xy.T)))
        features.append(
            {
                "type": "Feature",
                "properties": {"parcel_id": p.parcel_id, "kind": p.kind},
                "geometry": mapping(geometry),
            }
        )
    return path, features


def write_parcels(path: Path, features: list[dict]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path
