"""A borrower's plot, as drawn on a phone map or exported by a field app, to a WGS84 polygon.

Chinese phone maps do not draw in WGS84. AMap (Gaode) and Tencent use GCJ-02, Baidu
BD-09: both are WGS84 shifted by a deliberately irregular offset of 300-600 m. A plot taken
in the wrong system lands on a neighbour's land, so the system is *declared* by whoever
submits it and never guessed; the conversion is the `prcoords` library's (its exact,
iterative inverse), not a hand-copied formula. CGCS2000 (EPSG:4490), China's geodetic
system, differs from WGS84 by centimetres; pyproj converts it.

Accepted files: GeoJSON (a geometry, a feature or a collection), KML and KMZ (Ovital,
2bulu and Google Earth exports), a zipped Shapefile, or a plain list of "lon,lat" pairs.
Every refusal is a `PlotError` with the reason a borrower or an officer can act on.
"""

import io
import json
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import prcoords
import pyogrio
import shapely
from pyproj import Transformer
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from agri_common.wording import Said
from remote_sensing.parcels import EQUAL_AREA_CRS, WGS84, repair_geometry

MIN_PLOT_HA = 0.05  # below this a plot is a few Sentinel-2 pixels: nothing can be verified
MAX_SUBMISSION_BYTES = 20 << 20
MAX_UNPACKED_BYTES = 100 << 20  # what a KMZ or zipped Shapefile may hold once unpacked
MAX_PLOT_VERTICES = 100_000
CHINA = Path(__file__).parent / "data" / "china-mainland.geojson"


@cache
def _transformer(source: str, target: str) -> Transformer:
    """pyproj transformers are costly to build: one per pair of systems per process."""
    return Transformer.from_crs(source, target, always_xy=True)


def _cgcs2000(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _transformer("EPSG:4490", WGS84).transform(lon, lat)


def _pointwise(convert: Callable) -> Callable:
    """A prcoords function (one lat/lon at a time) applied to arrays of lon and lat."""

    def apply(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = [convert(prcoords.Coords(y, x), False) for x, y in zip(lon, lat, strict=True)]
        return np.array([p.lon for p in points]), np.array([p.lat for p in points])

    return apply


# The coordinate systems a plot may be declared in: how to reach WGS84, whether the
# system only exists inside mainland China, and where people meet it.
COORDINATE_SYSTEMS: dict[str, dict] = {
    "wgs84": {"to_wgs84": None, "china_only": False, "used_by": "GPS, Google Earth, Ovital"},
    "cgcs2000": {"to_wgs84": _cgcs2000, "china_only": True, "used_by": "Chinese land registry"},
    "gcj02": {
        "to_wgs84": _pointwise(prcoords.gcj_wgs_bored),
        "from_wgs84": _pointwise(prcoords.wgs_gcj),
        "china_only": True,
        "used_by": "AMap (Gaode), Tencent maps, WeChat location",
    },
    "bd09": {
        "to_wgs84": _pointwise(prcoords.bd_wgs_bored),
        "from_wgs84": _pointwise(prcoords.wgs_bd),
        "china_only": True,
        "used_by": "Baidu maps",
    },
}

# File formats: the name's ending to the reader's format name.
FORMATS = {
    ".geojson": "geojson",
    ".json": "geojson",
    ".kml": "kml",
    ".kmz": "kmz",
    ".zip": "shapefile",
    ".txt": "coordinates",
    ".csv": "coordinates",
}


class PlotError(ValueError):
    """A plot that cannot be taken, with the reason."""


@dataclass(frozen=True)
class Plot:
    geometry: BaseGeometry  # WGS84 (lon, lat), valid, polygonal
    area_ha: float
    crs: str  # the declared system the coordinates were drawn in
    submitted: dict  # the geometry as submitted, GeoJSON, in the declared system
    repaired: bool  # the ring needed make_valid


def format_of(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix not in FORMATS:
        raise PlotError(
            f"{filename!r}: unknown file type; send one of {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[suffix]


def read_plot(data: bytes, fmt: str, crs: str, max_ha: float) -> Plot:
    """The plot in ``data`` (a file's bytes in format ``fmt``) drawn in system ``crs``."""
    if crs not in COORDINATE_SYSTEMS:
        raise PlotError(Said("plot.crs", crs=repr(crs), systems=", ".join(COORDINATE_SYSTEMS)))
    if len(data) > MAX_SUBMISSION_BYTES:
        raise PlotError(
            f"{len(data):,} bytes is beyond the {MAX_SUBMISSION_BYTES:,} a plot may have"
        )
    readers = {
        "geojson": _from_geojson,
        "kml": lambda data: _from_vector_file(data, ".kml"),
        "kmz": lambda data: _from_vector_file(data, ".kmz"),
        "shapefile": lambda data: _from_vector_file(data, ".zip"),
        "coordinates": _from_coordinates,
    }
    if fmt not in readers:
        raise PlotError(f"format {fmt!r} is not one of {list(readers)}")
    return plot_from_geometry(readers[fmt](data), crs, max_ha)


def plot_from_geometry(geom: BaseGeometry, crs: str, max_ha: float) -> Plot:
    """Check and convert a geometry drawn in ``crs``: polygonal, repairable, inside China
    when the system is Chinese, between MIN_PLOT_HA and ``max_ha``."""
    system = COORDINATE_SYSTEMS[crs]
    if geom is None or geom.is_empty:
        raise PlotError(Said("plot.empty"))
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise PlotError(Said("plot.not_polygon", kind=geom.geom_type))
    if shapely.get_num_coordinates(geom) > MAX_PLOT_VERTICES:
        raise PlotError(f"more than {MAX_PLOT_VERTICES:,} vertices: not a hand-drawn plot")
    geom = shapely.force_2d(geom)
    lon, lat = shapely.get_coordinates(geom).T
    if not (np.all(np.abs(lon) <= 180) and np.all(np.abs(lat) <= 90)):
        raise PlotError(Said("plot.not_degrees"))
    if system["china_only"] and not china().covers(geom):
        raise PlotError(Said("plot.outside_china", crs=crs))
    submitted = shapely.geometry.mapping(geom)
    convert = system["to_wgs84"]
    if convert is not None:
        geom = shapely.transform(geom, lambda xy: np.column_stack(convert(xy[:, 0], xy[:, 1])))
    repaired_geom, problem = repair_geometry(geom)
    if problem:
        raise PlotError(problem)
    area_ha = area_in_ha(repaired_geom)
    if area_ha < MIN_PLOT_HA:
        raise PlotError(Said("plot.too_small", ha=f"{area_ha:.3f}", minimum=MIN_PLOT_HA))
    if area_ha > max_ha:
        raise PlotError(Said("plot.too_large", ha=f"{area_ha:,.1f}", maximum=f"{max_ha:,}"))
    return Plot(repaired_geom, area_ha, crs, submitted, not repaired_geom.equals(geom))


def as_drawn(geom: BaseGeometry, crs: str) -> BaseGeometry:
    """A WGS84 geometry as a phone map in ``crs`` (gcj02, bd09) shows it: what a borrower
    draws there for that ground (the demo's and the tests' plots)."""
    convert = COORDINATE_SYSTEMS[crs]["from_wgs84"]
    return shapely.transform(geom, lambda xy: np.column_stack(convert(xy[:, 0], xy[:, 1])))


def area_in_ha(geom: BaseGeometry) -> float:
    """Area of a WGS84 geometry, measured in an equal-area projection."""
    projected = shapely.transform(geom, _equal_area)
    return float(projected.area) / 10_000


def _equal_area(xy: np.ndarray) -> np.ndarray:
    x, y = _transformer(WGS84, EQUAL_AREA_CRS).transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


@cache
def china() -> BaseGeometry:
    """Mainland China, widened by about 5 km (the file says where it comes from)."""
    prepared = shape(json.loads(CHINA.read_text())["geometry"])
    shapely.prepare(prepared)
    return prepared


def _polygons(geoms) -> BaseGeometry:
    parts = [g for g in geoms if g is not None and not g.is_empty]
    polygonal = [g for g in parts if g.geom_type in ("Polygon", "MultiPolygon")]
    if not polygonal:
        kinds = sorted({g.geom_type for g in parts})
        raise PlotError(
            "the file holds no polygon" + (f" (only {', '.join(kinds)})" if kinds else "")
        )
    return polygonal[0] if len(polygonal) == 1 else shapely.union_all(polygonal)


def _from_geojson(data: bytes) -> BaseGeometry:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PlotError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or "type" not in doc:
        raise PlotError("not GeoJSON: no 'type'")
    if doc["type"] == "FeatureCollection":
        geometries = [f.get("geometry") for f in doc.get("features") or []]
    elif doc["type"] == "Feature":
        geometries = [doc.get("geometry")]
    else:
        geometries = [doc]
    try:
        return _polygons([shape(g) for g in geometries if g])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, PlotError):
            raise
        raise PlotError(f"not a GeoJSON geometry: {exc}") from exc


def _from_vector_file(data: bytes, suffix: str) -> BaseGeometry:
    """KML, KMZ or a zipped Shapefile, read by GDAL (pyogrio; LIBKML follows a KMZ's
    network links). The declared system wins over what the file says: KML always claims
    WGS84, even when an app wrote GCJ-02 numbers into it."""
    if suffix in (".zip", ".kmz"):
        try:
            entries = zipfile.ZipFile(io.BytesIO(data)).infolist()
        except zipfile.BadZipFile as exc:
            raise PlotError(f"not a zip file: {exc}") from exc
        unpacked = sum(e.file_size for e in entries)
        if unpacked > MAX_UNPACKED_BYTES:  # a zip bomb is refused before GDAL opens it
            raise PlotError(
                f"the archive unpacks to {unpacked:,} bytes, beyond the "
                f"{MAX_UNPACKED_BYTES:,} a plot may have"
            )
        if suffix == ".zip" and not any(e.filename.lower().endswith(".shp") for e in entries):
            raise PlotError("the zip file holds no Shapefile (.shp)")
    with tempfile.TemporaryDirectory(prefix="agri-plot-") as folder:
        path = Path(folder) / f"plot{suffix}"
        path.write_bytes(data)
        geometries = []
        try:
            for layer, _kind in pyogrio.list_layers(path):  # a KML's folders are layers
                frame = pyogrio.read_dataframe(path, layer=layer)
                if frame.crs is not None and frame.crs.is_projected:
                    raise PlotError(
                        f"the file is in a projected system ({frame.crs.name}); "
                        "export it in degrees"
                    )
                geometries += list(frame.geometry)
        except PlotError:
            raise
        except Exception as exc:  # pyogrio raises its own errors for every unreadable file
            reason = str(exc).replace(str(path), "the file")
            raise PlotError(f"not a readable {suffix[1:].upper()} file: {reason}") from exc
    return _polygons(geometries)


def _from_coordinates(data: bytes) -> BaseGeometry:
    """Lines or semicolon-separated "lon,lat" (or "lon lat") pairs, longitude first."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlotError("the coordinate list is not UTF-8 text") from exc
    pairs = []
    for n, item in enumerate(text.replace(";", "\n").splitlines(), start=1):
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        fields = item.replace(",", " ").split()
        try:
            lon, lat = (float(v) for v in fields)
        except ValueError:
            raise PlotError(
                f"pair {n} ({item!r}) is not two numbers: longitude, latitude"
            ) from None
        pairs.append((lon, lat))
    if len(pairs) < 3:
        raise PlotError(Said("plot.too_few_points", count=len(pairs)))
    lon, lat = np.array(pairs).T
    if np.all(np.abs(lon) <= 90) and np.all(np.abs(lat) > 90):
        raise PlotError(Said("plot.lat_lon"))
    if pairs[0] != pairs[-1]:
        pairs.append(pairs[0])
    return shapely.Polygon(pairs)
