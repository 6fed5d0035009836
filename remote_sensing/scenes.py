"""The one scene loader: a STAC item or a multi-band GeoTIFF becomes an xarray Dataset.

Whatever the source, the Dataset has the same shape downstream code relies on:
``red`` and ``nir`` as float32 surface reflectance (NaN where the sensor has no data)
and ``scl`` as the Sentinel-2 scene classification on the same 10 m grid (0 = no data),
all lazily read in dask chunks, with CRS and transform attached through rioxarray.
Band names, scale, offset and no-data come from the file's metadata, never from callers.
"""

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
import rioxarray
import xarray as xr

from agri_common.times import parse_time
from remote_sensing.indices import reflectance

# Sentinel-2 L2A processing baseline 04.00 (from 2022-01-25) adds +1000 to every DN.
BASELINE_04_START = datetime(2022, 1, 25, tzinfo=UTC)
CHUNK_PX = 2048
# A Sentinel-2 tile is 10,980 px square; a raster claiming more than 20,000 x 20,000 is a
# mistake or an attack, refused from its header before anything is allocated for it.
MAX_PIXELS = 20_000 * 20_000
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

BAND_ALIASES = {
    "red": ("red", "b04"),
    "nir": ("nir", "b08", "nir08"),
    "scl": ("scl",),
}


class SceneError(ValueError):
    """A scene that cannot be used: unreadable, incomplete, or without a CRS."""


@dataclass(frozen=True)
class BandRef:
    """Where one band lives and how its digital numbers become reflectance."""

    path: Path
    index: int  # 1-based band index inside the file
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = 0


@dataclass(frozen=True)
class SceneSource:
    """A scene found in an inbox: its id, the file that defines it and all files it reads."""

    scene_id: str
    path: Path
    files: tuple[Path, ...]
    root: Path | None = None  # the inbox: the only place its STAC assets may point into

    @property
    def roots(self) -> list[Path] | None:
        """Where its assets may lie, as load_scene and scene_size take it."""
        return [self.root] if self.root else None

    def checksum(self) -> str:
        """sha256 over every file the scene reads, so a re-delivered product is redone."""
        digest = hashlib.sha256()
        for file in self.files:
            digest.update(file.name.encode())
            with open(file, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        return digest.hexdigest()


def baseline_scale_offset(
    acquired_at: datetime, baseline: str | None = None
) -> tuple[float, float]:
    """Scale and offset that turn L2A digital numbers into reflectance.

    From processing baseline 04.00 (or, when the baseline is unknown, from acquisitions
    on or after 2022-01-25) reflectance = (DN - 1000) / 10000; before it, DN / 10000.
    """
    if baseline is not None:
        shifted = _baseline_number(baseline) >= 4.0
    else:
        shifted = acquired_at >= BASELINE_04_START
    return (1e-4, -0.1) if shifted else (1e-4, 0.0)


def _baseline_number(baseline: str) -> float:
    try:
        return float(baseline)
    except ValueError as exc:
        raise SceneError(f"processing baseline {baseline!r} is not a number like '05.10'") from exc


def parse_datetime(text: str) -> datetime:
    """A scene's acquisition time (ISO 8601 or TIFF's ``YYYY:MM:DD HH:MM:SS``) as UTC."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise SceneError(f"acquisition time: {exc}") from exc


def find_scenes(inbox: Path) -> list[SceneSource]:
    """Every scene below ``inbox``: STAC item JSON files, and GeoTIFFs no item refers to."""
    if not inbox.is_dir():
        raise SceneError(f"inbox {inbox} is not a directory")
    scenes: list[SceneSource] = []
    claimed: set[Path] = set()
    for item_path in sorted(inbox.rglob("*.json")):
        try:
            item = json.loads(item_path.read_text())
        except (OSError, json.JSONDecodeError):
            item = None
        if not isinstance(item, dict) or item.get("type") != "Feature":
            # Still a scene: loading it will record why it is unusable.
            scenes.append(SceneSource(item_path.stem, item_path, (item_path,)))
            continue
        files = [item_path]
        for key, asset in (item.get("assets") or {}).items():
            href = asset.get("href") if isinstance(asset, dict) else None
            try:
                target = asset_path(item_path, key, href, [inbox])
            except SceneError:
                continue  # never read (not even for a checksum); loading says why
            claimed.add(target)
            if target.exists():
                files.append(target)
        scene_id = str(item.get("id") or item_path.stem)
        scenes.append(SceneSource(scene_id, item_path, tuple(files), inbox))
    for tif in sorted([*inbox.rglob("*.tif"), *inbox.rglob("*.tiff")]):
        if tif.resolve() not in claimed:
            scenes.append(SceneSource(tif.stem, tif, (tif,), inbox))
    return scenes


def asset_path(item_path: Path, key: str, href, roots: list[Path]) -> Path:
    """The file a STAC asset names, if it is a relative path that stays inside ``roots``.

    An inbox is fed by other systems; an item must not make the job read /etc/passwd or
    fetch a URL: absolute paths, ``../`` escapes (symlinks included, since the path is
    resolved) and any scheme (``http:``, ``s3:``, ``file:``) are refused.
    """
    if not isinstance(href, str) or not href or SCHEME.match(href):
        raise SceneError(
            f"{item_path}: asset '{key}' href {href!r} is not a relative file path "
            "(URLs and other schemes are refused)"
        )
    if Path(href).is_absolute():
        raise SceneError(f"{item_path}: asset '{key}' href {href!r} is absolute (refused)")
    target = (item_path.parent / href).resolve()
    if not any(target.is_relative_to(Path(root).resolve()) for root in roots):
        raise SceneError(
            f"{item_path}: asset '{key}' href {href!r} leads outside the imagery inbox (refused)"
        )
    return target


def load_scene(path: Path, roots: list[Path] | None = None) -> xr.Dataset:
    """Open a STAC item (``.json``) or a multi-band GeoTIFF as a lazy Dataset.

    A STAC item's assets must lie inside ``roots`` (default: the item's own folder).
    Raises SceneError naming what is wrong (missing band, no CRS, unreadable file).
    """
    path = Path(path)
    scene_id, acquired_at, bands = _scene_bands(path, roots)
    red = _open_reflectance(bands["red"])
    nir = _open_reflectance(bands["nir"])
    if red.shape != nir.shape or red.rio.transform() != nir.rio.transform():
        raise SceneError(f"{path}: red and nir are not on the same grid")
    scl = _scl_on_grid(_open_band(bands["scl"]), red)
    ds = xr.Dataset({"red": red, "nir": nir, "scl": scl})
    ds = ds.rio.write_crs(red.rio.crs).rio.write_transform(red.rio.transform())
    ds.attrs = {"scene_id": scene_id, "acquired_at": acquired_at.isoformat(), "source": str(path)}
    return ds


def scene_size(path: Path, roots: list[Path] | None = None) -> tuple[int, int]:
    """(height, width) in pixels of a scene's red band, from its header alone: what a
    cluster needs to decide whether to split the scene."""
    path = Path(path)
    _, _, bands = _scene_bands(path, roots)
    try:
        with rasterio.open(bands["red"].path) as ds:
            return ds.height, ds.width
    except rasterio.errors.RasterioError as exc:
        raise SceneError(f"{bands['red'].path}: cannot open raster ({exc})") from exc


def _scene_bands(path: Path, roots: list[Path] | None) -> tuple[str, datetime, dict[str, BandRef]]:
    if path.suffix.lower() == ".json":
        return _stac_bands(path, roots or [path.parent])
    return _geotiff_bands(path)


def _stac_bands(path: Path, roots: list[Path]) -> tuple[str, datetime, dict[str, BandRef]]:
    try:
        item = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SceneError(f"{path}: not a readable STAC item JSON ({exc})") from exc
    if not isinstance(item, dict) or item.get("type") != "Feature":
        raise SceneError(f"{path}: not a STAC item (type must be 'Feature')")
    props = item.get("properties") or {}
    if not props.get("datetime"):
        raise SceneError(f"{path}: STAC item has no properties.datetime")
    acquired_at = parse_datetime(str(props["datetime"]))
    baseline = props.get("s2:processing_baseline") or props.get("processing:version")
    default_scale, default_offset = baseline_scale_offset(acquired_at, baseline)
    assets = item.get("assets") or {}
    bands: dict[str, BandRef] = {}
    for name, aliases in BAND_ALIASES.items():
        key = _find_asset(assets, aliases)
        if key is None:
            raise SceneError(f"{path}: STAC item has no '{name}' asset")
        asset = assets[key]
        target = asset_path(path, key, asset.get("href"), roots)
        raster_band = (asset.get("raster:bands") or [{}])[0]
        if name == "scl":
            scale, offset = 1.0, 0.0
        else:
            scale = float(raster_band.get("scale", default_scale))
            offset = float(raster_band.get("offset", default_offset))
        nodata = raster_band.get("nodata", 0)
        if not target.is_file():
            raise SceneError(f"{path}: asset '{key}' file {target} does not exist")
        bands[name] = BandRef(target, 1, scale, offset, nodata)
    return str(item.get("id") or path.stem), acquired_at, bands


def _find_asset(assets: dict, aliases: Iterable[str]) -> str | None:
    for key, asset in assets.items():
        if key.lower() in aliases:
            return key
        for band in (asset.get("eo:bands") or []) if isinstance(asset, dict) else []:
            if str(band.get("common_name", "")).lower() in aliases:
                return key
    return None


def _geotiff_bands(path: Path) -> tuple[str, datetime, dict[str, BandRef]]:
    try:
        with rasterio.open(path) as src:
            descriptions = [(d or "").lower() for d in src.descriptions]
            tags = src.tags()
            nodata = src.nodata
    except rasterio.errors.RasterioIOError as exc:
        raise SceneError(f"{path}: not a readable GeoTIFF ({exc})") from exc
    if "DATETIME" not in tags:
        raise SceneError(f"{path}: GeoTIFF has no DATETIME tag for the acquisition time")
    acquired_at = parse_datetime(tags["DATETIME"])
    scale, offset = baseline_scale_offset(acquired_at)
    bands: dict[str, BandRef] = {}
    for name, aliases in BAND_ALIASES.items():
        matches = [i for i, d in enumerate(descriptions, start=1) if d in aliases]
        if not matches:
            raise SceneError(
                f"{path}: no band described as {' or '.join(aliases)} (found {descriptions})"
            )
        band_scale, band_offset = (1.0, 0.0) if name == "scl" else (scale, offset)
        no_data = nodata if nodata is not None else 0
        bands[name] = BandRef(path, matches[0], band_scale, band_offset, no_data)
    return path.stem, acquired_at, bands


def _open_band(ref: BandRef) -> xr.DataArray:
    try:
        da = rioxarray.open_rasterio(
            ref.path, chunks={"x": CHUNK_PX, "y": CHUNK_PX}, lock=False, mask_and_scale=False
        )
    except Exception as exc:  # rasterio raises several types for broken files
        raise SceneError(f"{ref.path}: cannot open raster ({exc})") from exc
    if da.sizes["x"] * da.sizes["y"] > MAX_PIXELS:
        raise SceneError(
            f"{ref.path}: raster of {da.sizes['x']} x {da.sizes['y']} px is beyond the "
            f"{MAX_PIXELS:,} px a scene may have (refused before reading)"
        )
    if da.rio.crs is None:
        raise SceneError(f"{ref.path}: raster has no CRS")
    if ref.index > da.sizes["band"]:
        raise SceneError(f"{ref.path}: band {ref.index} does not exist")
    return da.isel(band=ref.index - 1, drop=True)


def _open_reflectance(ref: BandRef) -> xr.DataArray:
    """Digital numbers to float32 reflectance, NaN where the band has no data (lazy)."""
    dn = _open_band(ref)
    data = dn.data.map_blocks(reflectance, ref.scale, ref.offset, ref.nodata, dtype=np.float32)
    return dn.copy(data=data)


def _scl_on_grid(scl: xr.DataArray, like: xr.DataArray) -> xr.DataArray:
    """Nearest-neighbour SCL on the grid of ``like`` (e.g. 20 m onto 10 m); 0 outside it.

    A 20 m SCL is a quarter of the 10 m pixels (30 MB for a full tile), so it is read once
    and each 10 m chunk picks its pixels from it: no per-chunk resampling of the file.
    """
    if scl.rio.crs != like.rio.crs:
        raise SceneError("SCL is in a different CRS from the reflectance bands")
    if scl.rio.transform() == like.rio.transform() and scl.shape == like.shape:
        return scl.astype(np.uint8).rename("scl")
    scl_t = scl.rio.transform()
    # one row/column of 0 (no data) around the SCL makes out-of-grid lookups land on 0
    padded = np.pad(scl.values.astype(np.uint8), 1)
    cols = np.floor((like.x.values - scl_t.c) / scl_t.a).astype(np.int64) + 1
    rows = np.floor((like.y.values - scl_t.f) / scl_t.e).astype(np.int64) + 1
    cols = np.clip(cols, 0, padded.shape[1] - 1)
    rows = np.clip(rows, 0, padded.shape[0] - 1)

    def pick(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        return padded[np.ix_(rows[r0:r1], cols[c0:c1])]

    data = da.map_blocks(pick, chunks=like.data.chunks, dtype=np.uint8)
    return xr.DataArray(data, coords={"y": like.y, "x": like.x}, dims=("y", "x"), name="scl")
