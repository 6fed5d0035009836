"""Parcel files (GeoJSON, GeoPackage; any CRS) to validated WGS84 parcels with areas.

Area is measured in an equal-area projection (EPSG:6933, WGS 84 / NSIDC EASE-Grid 2.0
Global), never in degrees. Each bad feature is rejected on its own, with its index and
reason, so one typo in a farmer's file does not block the other parcels.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import shapely
from shapely.geometry.base import BaseGeometry

from agri_common import terms

if TYPE_CHECKING:  # imported where a file is read: the imagery job never needs it
    import geopandas as gpd

PARCEL_KINDS = ("tea_garden", "forest")
EQUAL_AREA_CRS = "EPSG:6933"
WGS84 = "EPSG:4326"
ATTRIBUTES = {
    "forest": ("species_group", "age_class", "stand_volume_m3_per_ha"),
    "tea_garden": ("variety", "planted_year"),
}


class ParcelFileError(ValueError):
    """The file as a whole cannot be read (missing, not a vector file, no CRS)."""


@dataclass(frozen=True)
class Parcel:
    parcel_id: str
    kind: str
    owner: str | None
    attributes: dict
    geometry: BaseGeometry  # WGS84 (lon, lat)
    area_ha: float


@dataclass
class ParcelImport:
    parcels: list[Parcel] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # "feature 3 (id 'X'): reason"


# Real parcels have tens to a few thousand vertices. Files past these limits are refused
# with a clear error instead of being read into memory or fed to exactextract.
MAX_FILE_BYTES = 512 << 20
MAX_VERTICES_PER_PARCEL = 100_000
MAX_VERTICES = 20_000_000


def read_parcel_file(path: Path) -> ParcelImport:
    """Read, validate and repair every feature of a parcel file."""
    path = Path(path)
    if not path.exists():
        raise ParcelFileError(f"{path}: no such file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ParcelFileError(
            f"{path}: {path.stat().st_size:,} bytes is beyond the {MAX_FILE_BYTES:,} a parcel "
            "file may have; split it"
        )
    import geopandas as gpd

    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises its own and OS errors
        raise ParcelFileError(f"{path}: not a readable GeoJSON/GeoPackage ({exc})") from exc
    if frame.crs is None:
        raise ParcelFileError(f"{path}: the file declares no CRS")
    return validate_parcels(frame)


def validate_parcels(frame: "gpd.GeoDataFrame") -> ParcelImport:
    """Turn a GeoDataFrame in any CRS into Parcels; bad features become rejections."""
    import geopandas as gpd

    result = ParcelImport()
    vertices = shapely.get_num_coordinates(frame.geometry.values)
    if int(vertices.sum()) > MAX_VERTICES:
        raise ParcelFileError(
            f"{int(vertices.sum()):,} vertices in all is beyond the {MAX_VERTICES:,} one import "
            "may have; split the file"
        )
    wgs84 = frame.to_crs(WGS84)
    areas_ha = wgs84.to_crs(EQUAL_AREA_CRS).area / 10_000
    for index, (props, geom, area_ha) in enumerate(
        zip(
            frame.drop(columns="geometry").to_dict("records"), wgs84.geometry, areas_ha, strict=True
        )
    ):
        props = terms.english_row({k: _plain(v) for k, v in props.items() if _present(v)})
        parcel_id = props.get("parcel_id")
        label = f"feature {index}" + (f" (parcel_id {parcel_id!r})" if parcel_id else "")
        if not parcel_id:
            result.rejected.append(f"{label}: missing parcel_id")
            continue
        kind = props.get("kind")
        if kind not in PARCEL_KINDS:
            result.rejected.append(f"{label}: kind {kind!r} is not one of {PARCEL_KINDS}")
            continue
        if vertices[index] > MAX_VERTICES_PER_PARCEL:
            result.rejected.append(
                f"{label}: {vertices[index]:,} vertices is beyond the "
                f"{MAX_VERTICES_PER_PARCEL:,} a parcel may have"
            )
            continue
        geom, problem = repair_geometry(geom)
        if problem:
            result.rejected.append(f"{label}: {problem}")
            continue
        if not geom.equals(wgs84.geometry.iloc[index]):
            area_ha = gpd.GeoSeries([geom], crs=WGS84).to_crs(EQUAL_AREA_CRS).area.iloc[0] / 1e4
        attributes = {k: v for k, v in props.items() if k not in ("parcel_id", "kind", "owner")}
        owner = props.get("owner")
        result.parcels.append(Parcel(str(parcel_id), kind, owner, attributes, geom, float(area_ha)))
    return result


def repair_geometry(geom: BaseGeometry | None) -> tuple[BaseGeometry | None, str | None]:
    """An areal geometry, repaired with make_valid when the repair is unambiguous.

    Unambiguous means the repaired geometry is still purely polygonal: a bow-tie becomes
    two triangles, a self-touching ring is split. If repair leaves lines or points (a
    collapsed polygon), we cannot know what the farmer meant and reject the feature.
    """
    if geom is None or geom.is_empty:
        return None, "empty or missing geometry"
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        return None, f"geometry is a {geom.geom_type}, parcels must be polygons"
    if geom.is_valid:
        return geom, None
    repaired = shapely.make_valid(geom)
    if repaired.geom_type == "GeometryCollection":
        polys = [g for g in repaired.geoms if g.geom_type in ("Polygon", "MultiPolygon")]
        others = [g for g in repaired.geoms if g.geom_type not in ("Polygon", "MultiPolygon")]
        if others or not polys:
            return None, _unrepairable(geom)
        repaired = shapely.union_all(polys)
    if repaired.geom_type not in ("Polygon", "MultiPolygon") or repaired.is_empty:
        return None, _unrepairable(geom)
    return repaired, None


def _unrepairable(geom: BaseGeometry) -> str:
    return f"invalid geometry ({shapely.is_valid_reason(geom)}) cannot be repaired unambiguously"


def _present(value) -> bool:
    if value is None:
        return False
    try:
        return value == value  # NaN from missing GeoJSON properties is not a value
    except (TypeError, ValueError):
        return True


def _plain(value):
    """Whole numbers that pandas widened to float (a column with gaps) back to int."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def attributes_json(attributes: dict) -> str:
    """Attributes as JSON; numpy scalars from GeoPandas become plain numbers."""
    return json.dumps(attributes, default=lambda v: v.item() if hasattr(v, "item") else str(v))
