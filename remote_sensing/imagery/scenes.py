"""What a scene is: a STAC item or a multi-band GeoTIFF, its bands and how to read them.

Whatever the source and the sensor, a scene's metadata (SceneMeta) says where its red,
NIR and mask bands are and how their numbers become reflectance, from the item and the
catalogue conventions (``catalogues``, ``radiometry``), never from callers; its pixels
are read by ``band_reads``: ``red`` and ``nir`` as float32 surface reflectance on the
Sentinel-2 scale (NaN where the sensor has no data) and ``scl`` as the Sentinel-2 scene
classification on the same grid (0 = no data; Landsat's QA_PIXEL bits are mapped onto
its classes).
"""

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import rasterio

from agri_common.times import parse_time
from remote_sensing.coverage import Grid
from remote_sensing.imagery import band_reads, catalogues, http_assets, radiometry
from remote_sensing.imagery.band_reads import Layout
from remote_sensing.imagery.radiometry import Encoding
from remote_sensing.imagery.scene_types import BandRef, SceneError, SceneMeta

SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

# A GeoTIFF scene names its bands in the band descriptions.
GEOTIFF_BANDS = {
    "red": ("red", "b04"),
    "nir": ("nir", "b08"),
    "mask": ("scl",),
}


@dataclass(frozen=True)
class SceneSource:
    """A scene found in an inbox: its id, the file that defines it and all files it reads."""

    scene_id: str
    path: Path
    files: tuple[Path, ...]
    root: Path | None = None  # the inbox: the only place its STAC assets may point into
    allowed_hosts: frozenset[str] = frozenset()  # hosts its asset URLs may be read from
    # an item from a STAC API: "API root|collection|updated time or content hash"
    version: str | None = None
    # signs the item's asset URLs in place just before they are read: a catalogue's
    # tokens are short-lived (Planetary Computer's), and a sync of many scenes outlasts
    # the ones the search was signed with
    sign: Callable[[dict], None] | None = field(default=None, compare=False)

    def meta(self) -> "SceneMeta":
        """What the scene's item or GeoTIFF says (scene_meta), its URLs signed now."""
        return scene_meta(self.path, self.roots, self.allowed_hosts, self.sign)

    @property
    def roots(self) -> list[Path] | None:
        """Where its assets may lie, as load_scene and scene_meta take it."""
        return [self.root] if self.root else None

    def checksum(self) -> str:
        """sha256 over every file the scene reads, so a re-delivered product is redone; for
        an item from a STAC API, over its version (its files are the catalogue's)."""
        if self.version is not None:
            return hashlib.sha256(self.version.encode()).hexdigest()
        digest = hashlib.sha256()
        for file in self.files:
            digest.update(file.name.encode())
            with open(file, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        return digest.hexdigest()


def parse_datetime(text: str) -> datetime:
    """A scene's acquisition time (ISO 8601 or TIFF's ``YYYY:MM:DD HH:MM:SS``) as UTC."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise SceneError(f"acquisition time: {exc}") from exc


def find_scenes(inbox: Path, allowed_hosts: frozenset[str] = frozenset()) -> list[SceneSource]:
    """Every scene below ``inbox``: STAC item JSON files, and GeoTIFFs no item refers to.
    Items may name band files by URL on ``allowed_hosts`` (read over HTTP)."""
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
                target = asset_path(item_path, key, href, [inbox], allowed_hosts)
            except SceneError:
                continue  # never read (not even for a checksum); loading says why
            if isinstance(target, str):
                continue  # a URL: the item (which names it) is what the checksum covers
            claimed.add(target)
            if target.exists():
                files.append(target)
        scene_id = str(item.get("id") or item_path.stem)
        scenes.append(SceneSource(scene_id, item_path, tuple(files), inbox, allowed_hosts))
    for tif in sorted([*inbox.rglob("*.tif"), *inbox.rglob("*.tiff")]):
        if tif.resolve() not in claimed:
            scenes.append(SceneSource(tif.stem, tif, (tif,), inbox))
    return scenes


def asset_path(
    item_path: Path,
    key: str,
    href,
    roots: list[Path],
    allowed_hosts: frozenset[str] = frozenset(),
) -> Path | str:
    """The file a STAC asset names, if it is a relative path that stays inside ``roots``,
    or the GDAL path of an http(s) URL on one of ``allowed_hosts`` (or an ``s3://`` URL
    in one of its buckets).

    An inbox is fed by other systems; an item must not make the job read /etc/passwd or
    fetch a URL it likes: absolute paths, ``../`` escapes (symlinks included, since the
    path is resolved), URLs on hosts or buckets not allowed and any other scheme
    (``file:``, ``ftp:``) are refused.
    """
    if allowed_hosts and isinstance(href, str) and http_assets.is_url(href):
        try:
            return http_assets.gdal_path(href, allowed_hosts)
        except http_assets.HostNotAllowed as exc:
            raise SceneError(f"{item_path}: asset '{key}' {exc} (refused)") from None
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


@dataclass(frozen=True)
class SceneBands:
    """A whole scene read into memory: what tests and small tools look at."""

    meta: SceneMeta
    grid: Grid
    red: np.ndarray  # float32 reflectance, NaN where no data
    nir: np.ndarray
    scl: np.ndarray  # uint8 scene classes on the red grid


def load_scene(
    path: Path,
    roots: list[Path] | None = None,
    encoding: Encoding | None = None,
    allowed_hosts: frozenset[str] = frozenset(),
) -> SceneBands:
    """Read a STAC item (``.json``) or a multi-band GeoTIFF whole.

    A STAC item's assets must lie inside ``roots`` (default: the item's own folder).
    ``encoding`` overrules what the metadata says about red and NIR (the job passes the
    one the numbers confirmed). Raises SceneError naming what is wrong (missing band, no
    CRS, unreadable file).
    """
    meta = scene_meta(Path(path), roots, allowed_hosts)
    layout = scene_layout(meta)
    whole = (slice(0, layout.grid.height), slice(0, layout.grid.width))
    with band_reads.handles() as opened:
        red, nir, scl = band_reads.read_reflectance(
            meta, layout, encoding or meta.encoding, whole, opened
        )
    return SceneBands(meta, layout.grid, red, nir, scl)


def scene_layout(meta: SceneMeta) -> Layout:
    """Where a scene's pixels are (band_reads.bands_layout), checked from the headers:
    a raster without CRS, of absurd size or off the red grid is refused before a read."""
    return band_reads.bands_layout(meta.bands)


def scene_meta(
    path: Path,
    roots: list[Path] | None = None,
    allowed_hosts: frozenset[str] = frozenset(),
    sign: Callable[[dict], None] | None = None,
) -> SceneMeta:
    """What a STAC item or GeoTIFF says about its scene; reads no pixel. Its assets may be
    URLs on ``allowed_hosts``, signed by ``sign`` (in place) as the item is read."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            return _stac_meta(path, roots or [path.parent], allowed_hosts, sign)
        return _geotiff_meta(path)
    except (radiometry.RadiometryError, catalogues.UnknownSensor) as exc:
        raise SceneError(f"{path}: {exc}") from exc


def _stac_meta(
    path: Path, roots: list[Path], allowed_hosts: frozenset[str], sign=None
) -> SceneMeta:
    try:
        item = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SceneError(f"{path}: not a readable STAC item JSON ({exc})") from exc
    if not isinstance(item, dict) or item.get("type") != "Feature":
        raise SceneError(f"{path}: not a STAC item (type must be 'Feature')")
    if sign is not None:
        sign(item)
    props = item.get("properties") or {}
    if not props.get("datetime"):
        raise SceneError(f"{path}: STAC item has no properties.datetime")
    acquired_at = parse_datetime(str(props["datetime"]))
    convention = catalogues.recognise(item)
    sensor = catalogues.platform(item) or convention.family
    assets = item.get("assets") or {}
    bands: dict[str, BandRef] = {}
    encodings: dict[str, Encoding] = {}
    for name in ("red", "nir", "mask"):
        key = _find_asset(assets, convention, name)
        if key is None:
            label = catalogues.MASK_OF_FAMILY[convention.family] if name == "mask" else name
            raise SceneError(
                f"{path}: STAC item ({convention.name}) has no '{label}' asset "
                f"(looked for {', '.join(convention.keys[name])})"
            )
        asset = assets[key]
        href = http_assets.readable_href(asset, allowed_hosts)
        target = asset_path(path, key, href, roots, allowed_hosts)
        if isinstance(target, Path) and not target.is_file():
            raise SceneError(f"{path}: asset '{key}' file {target} does not exist")
        if name == "mask":
            bands[name] = BandRef(target, 1, None)
            continue
        encodings[name] = radiometry.metadata_encoding(
            asset,
            props,
            acquired_at,
            (convention.scale, convention.offset, convention.nodata),
            convention.offset_applied_flag,
            baseline_rule=convention.family == catalogues.SENTINEL_2,
        )
        bands[name] = BandRef(target, 1, encodings[name].nodata)
    if encodings["red"] != encodings["nir"]:
        raise SceneError(
            f"{path}: red and nir declare different encodings "
            f"({encodings['red']} / {encodings['nir']})"
        )
    scene_id = str(item.get("id") or path.stem)
    return SceneMeta(
        path=path,
        scene_id=scene_id,
        acquired_at=acquired_at,
        sensor=sensor,
        family=convention.family,
        catalogue=convention.name,
        acquisition_key=f"{sensor}/{catalogues.tile(item) or scene_id}/{acquired_at:%Y%m%dT%H%M%S}",
        processing_rank=catalogues.processing_rank(item),
        bands=bands,
        mask=catalogues.MASK_OF_FAMILY[convention.family],
        encoding=encodings["red"],
        bandpass=convention.bandpass,
    )


def _find_asset(assets: dict, convention: catalogues.Convention, name: str) -> str | None:
    """The asset key for one band: the convention's keys in order (any case), then an
    asset whose band has one of its common names."""
    by_lower = {key.lower(): key for key in assets}
    for key in convention.keys[name]:
        if key.lower() in by_lower:
            return by_lower[key.lower()]
    wanted = (convention.common_names or {}).get(name, ())
    for key, asset in assets.items():
        if not isinstance(asset, dict):
            continue
        for band in (asset.get("eo:bands") or []) + (asset.get("bands") or []):
            if not isinstance(band, dict):
                continue
            common = band.get("common_name") or band.get("eo:common_name")
            if str(common or "").lower() in wanted:
                return key
    return None


def _geotiff_meta(path: Path) -> SceneMeta:
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
    scale, offset = radiometry.baseline_scale_offset(acquired_at)
    no_data = nodata if nodata is not None else 0
    bands: dict[str, BandRef] = {}
    for name, aliases in GEOTIFF_BANDS.items():
        matches = [i for i, d in enumerate(descriptions, start=1) if d in aliases]
        if not matches:
            raise SceneError(
                f"{path}: no band described as {' or '.join(aliases)} (found {descriptions})"
            )
        bands[name] = BandRef(path, matches[0], None if name == "mask" else no_data)
    sensor = tags.get("PLATFORM", catalogues.SENTINEL_2).lower()
    return SceneMeta(
        path=path,
        scene_id=path.stem,
        acquired_at=acquired_at,
        sensor=sensor,
        family=catalogues.SENTINEL_2,
        catalogue="geotiff",
        acquisition_key=f"{sensor}/{path.stem}/{acquired_at:%Y%m%dT%H%M%S}",
        processing_rank="",
        bands=bands,
        mask="scl",
        encoding=Encoding(scale, offset, no_data, "baseline"),
    )
