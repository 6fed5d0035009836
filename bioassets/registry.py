"""Farms and animals: file parsing and validation.

Parsing is pure (rows in, records and per-row errors out); ``store.py`` writes them.
"""

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import shapely
from shapely.geometry import shape

from agri_common import terms
from bioassets.payloads import check_tag_id

SPECIES_BY_CATEGORY = {
    "dairy_cow": "cattle",
    "beef_cattle": "cattle",
    "breeding_sow": "pig",
    "fattening_pig": "pig",
}
ANIMAL_COLUMNS = (
    "tag_id",
    "farm_id",
    "species",
    "category",
    "sex",
    "birth_date",
    "parity",
    "lactation",
)


@dataclass
class Imported:
    records: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_farms(path: Path) -> Imported:
    """A GeoJSON FeatureCollection of farm geofences (WGS84), one farm per feature."""
    out = Imported()
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable GeoJSON file ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ValueError(f"{path}: expected a GeoJSON FeatureCollection")
    for index, feature in enumerate(doc.get("features", [])):
        props = (feature or {}).get("properties") or {}
        farm_id = props.get("farm_id")
        if not farm_id:
            out.errors.append(f"feature {index}: missing farm_id")
            continue
        try:
            geom = shape(feature["geometry"])
        except Exception as exc:  # shapely raises several types for bad GeoJSON
            out.errors.append(f"feature {index} (farm_id {farm_id!r}): bad geometry ({exc})")
            continue
        if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
            out.errors.append(f"feature {index} (farm_id {farm_id!r}): geofence must be a polygon")
            continue
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        out.records.append(
            {
                "farm_id": str(farm_id),
                "name": props.get("name"),
                "owner": props.get("owner"),
                "geofence_geojson": json.dumps(shapely.geometry.mapping(geom)),
            }
        )
    return out


def parse_animals(path: Path, known_farms: set[str]) -> Imported:
    """Animals from CSV (English or Chinese terms, agri_common.terms); each bad row is
    reported with its line number and reason."""
    out = Imported()
    reader = csv.DictReader(io.StringIO(terms.read_records_text(path.read_bytes()), newline=""))
    columns = terms.english_columns(reader.fieldnames or [])
    missing = [c for c in ANIMAL_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"{path}: header lacks {', '.join(missing)}")
    for line, row in enumerate(reader, start=2):
        try:
            out.records.append(animal_record(terms.english_row(row), known_farms))
        except ValueError as exc:
            out.errors.append(f"line {line}: {exc}")
    return out


def animal_record(row: dict, known_farms: set[str]) -> dict:
    """One CSV row as an animal record; raises ValueError naming the bad field."""
    cell = {k: (row.get(k) or "").strip() for k in ANIMAL_COLUMNS}
    tag_id = check_tag_id(cell["tag_id"])
    if cell["farm_id"] not in known_farms:
        raise ValueError(f"farm_id {cell['farm_id']!r} is not a registered farm")
    category = cell["category"]
    if category not in SPECIES_BY_CATEGORY:
        raise ValueError(f"category {category!r} is not one of {sorted(SPECIES_BY_CATEGORY)}")
    if cell["species"] != SPECIES_BY_CATEGORY[category]:
        raise ValueError(f"species {cell['species']!r} does not fit category {category!r}")
    if cell["sex"] not in ("", "female", "male", "castrated"):
        raise ValueError(f"sex {cell['sex']!r} is not female, male or castrated")
    if category in ("dairy_cow", "breeding_sow") and cell["sex"] not in ("", "female"):
        raise ValueError(f"a {category} must be female")
    birth = None
    if cell["birth_date"]:
        try:
            birth = terms.parse_day(cell["birth_date"])
        except ValueError as exc:
            raise ValueError(f"birth_date {cell['birth_date']!r} is not YYYY-MM-DD") from exc
        if birth > date.today():
            raise ValueError(f"birth_date {birth} is in the future")
    parity = _count(cell["parity"], "parity")
    lactation = _count(cell["lactation"], "lactation")
    if parity is not None and category != "breeding_sow":
        raise ValueError("parity applies to breeding sows only")
    if lactation is not None and category != "dairy_cow":
        raise ValueError("lactation applies to dairy cows only")
    return {
        "tag_id": tag_id,
        "farm_id": cell["farm_id"],
        "species": cell["species"],
        "category": category,
        "sex": cell["sex"] or None,
        "birth_date": birth,
        "parity": parity,
        "lactation": lactation,
    }


def _count(text: str, name: str) -> int | None:
    if not text:
        return None
    try:
        value = int(text)
    except ValueError as exc:
        raise ValueError(f"{name} {text!r} is not a whole number") from exc
    if not 0 <= value <= 20:
        raise ValueError(f"{name} {value} is outside 0..20")
    return value
