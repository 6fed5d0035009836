"""Price and policy tables: versioned, effective-dated, never edited in place.

A table is a header (kind, version, effective_from, illustrative) and rows of one shape,
``section, region, key, band_min, band_max, value``, whether it comes as YAML or CSV:

- ``section`` names what the row prices (``tea_leaf_price_cny_per_kg``, ``haircut``...).
- ``key`` narrows it (a season, a variety, a category, ``tea:mature``); ``*`` is any.
- ``region`` is ``*`` (the default, valid anywhere), ``county:NAME`` (an asset whose
  ``county`` attribute is NAME) or ``bbox:MINLON,MINLAT,MAXLON,MAXLAT`` (WGS84, the asset's
  centroid inside). A specific region wins over ``*``; so a default row lets any asset be
  valued, and a bank can add regional rows without repeating everything.
- ``band_min``/``band_max`` bound a numeric attribute (parity, lactation, weight, age),
  ``[min, max)``, either side open when empty.

The table in force at a date is the newest ``effective_from`` on or before it (the later
import wins a tie). Importing a version that exists with other content is refused.
"""

import csv
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml
from sqlalchemy import Engine, insert, select

from collateral.errors import Conflict, Refused
from collateral.tables import price_versions

SECTIONS = {
    "prices": {
        "tea_leaf_price_cny_per_kg",
        "tea_yield_kg_per_ha_yr",
        "tea_season_share",
        "timber_stumpage_cny_per_m3",
        "head_value_cny",
        "liveweight_cny_per_kg",
    },
    "policy": {
        "tea_stage",
        "haircut",
        "stale_after_days",
        "stale_haircut",
        "condition_floor",
        "ltv_threshold",
    },
    # forest carbon: the biomass-expansion parameters, carbon prices and carbon policy
    "carbon": {
        "wood_density_t_per_m3",
        "biomass_expansion_factor",
        "root_shoot_ratio",
        "carbon_fraction",
        "volume_growth_m3_per_ha_yr",
        "carbon_price_cny_per_t",
        "carbon_haircut",
        "carbon_eligible_basis",
        "carbon_growth_floor",
    },
    # rooftop solar: alert thresholds (solar.alerts.Thresholds), the fee schemes' prices and
    # years, the valuation's parameters and haircuts (collateral/solar_value.py)
    "solar": {"solar_alert", "solar_tariff", "solar_tariff_years", "solar_value", "solar_haircut"},
}
VALUELESS = {"tea_stage"}  # a stage row is only a band
FRACTIONS = {
    "tea_season_share",
    "haircut",
    "stale_haircut",
    "condition_floor",
    "carbon_fraction",
    "carbon_haircut",
    "carbon_eligible_basis",
    "carbon_growth_floor",
    "solar_haircut",
}
SEASONS = ("spring", "summer", "autumn")
CSV_COLUMNS = ("section", "region", "key", "band_min", "band_max", "value")


class TableError(Refused):
    """A price or policy table that cannot be used, with every problem found."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class VersionExists(Conflict, TableError):
    """The version is already stored with other content: versions are immutable."""


@dataclass(frozen=True)
class Where:
    """What a row's region is matched against: the asset's county and centroid (WGS84)."""

    county: str | None = None
    lon: float | None = None
    lat: float | None = None


def parse_table_text(text: str, name: str) -> dict:
    """A table document from YAML or CSV text (CSV when ``name`` ends in .csv)."""
    if name.lower().endswith(".csv"):
        header = {}
        lines = text.splitlines()
        for line in lines:
            if line.startswith("#") and ":" in line:
                k, v = line[1:].split(":", 1)
                header[k.strip()] = v.strip()
        body = [line for line in lines if not line.startswith("#")]
        reader = csv.DictReader(body)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise TableError([f"CSV header must be {','.join(CSV_COLUMNS)}"])
        rows = [{k: v for k, v in r.items() if v not in ("", None)} for r in reader]
        raw = {**header, "rows": rows}
        raw["illustrative"] = str(raw.get("illustrative", "false")).lower() == "true"
    else:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise TableError([f"not valid YAML: {exc}"]) from exc
    return validate_table(raw)


def validate_table(raw) -> dict:
    """The table as stored: checked and normalised (decimals as strings), or TableError."""
    if not isinstance(raw, dict):
        raise TableError(["a table is a mapping with kind, version, effective_from and rows"])
    problems = []
    kind = raw.get("kind")
    if kind not in SECTIONS:
        problems.append(f"kind must be one of {sorted(SECTIONS)}, not {kind!r}")
    version = str(raw.get("version") or "").strip()
    if not version or len(version) > 64:
        problems.append("version is required (at most 64 characters)")
    effective = raw.get("effective_from")
    try:
        effective = date.fromisoformat(str(effective))
    except ValueError:
        problems.append(f"effective_from {effective!r} is not a date (YYYY-MM-DD)")
    rows = raw.get("rows")
    if not isinstance(rows, list) or not rows:
        problems.append("rows must be a non-empty list")
        rows = []
    clean = []
    for number, row in enumerate(rows, start=1):
        try:
            clean.append(_row(row, SECTIONS.get(kind, set())))
        except ValueError as exc:
            problems.append(f"row {number}: {exc}")
    if kind == "prices" and not problems:
        problems += _share_problems(clean)
    if problems:
        raise TableError(problems)
    return {
        "kind": kind,
        "version": version,
        "effective_from": effective.isoformat(),
        "illustrative": bool(raw.get("illustrative", False)),
        "notes": str(raw.get("notes") or ""),
        "rows": clean,
    }


def _row(row, sections: set[str]) -> dict:
    if not isinstance(row, dict):
        raise ValueError("must be a mapping")
    section = row.get("section")
    if section not in sections:
        raise ValueError(f"section {section!r} is not one of {sorted(sections)}")
    region = str(row.get("region", "*")).strip() or "*"
    _check_region(region)
    key = str(row.get("key", "*")).strip() or "*"
    out = {"section": section, "region": region, "key": key}
    for name in ("band_min", "band_max"):
        if row.get(name) is not None:
            out[name] = str(_decimal(row[name], name))
    if (
        "band_min" in out
        and "band_max" in out
        and Decimal(out["band_min"]) >= Decimal(out["band_max"])
    ):
        raise ValueError("band_min must be below band_max")
    if section in VALUELESS:
        return out
    if row.get("value") is None:
        raise ValueError(f"{section} needs a value")
    value = _decimal(row["value"], "value")
    if value < 0 or (section in FRACTIONS and value > 1):
        raise ValueError(f"value {value} is out of range for {section}")
    out["value"] = str(value)
    return out


def _decimal(value, name: str) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name} {value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{name} {value!r} is not a finite number")
    return number


def wgs84_box(text: str) -> tuple[float, float, float, float]:
    """``MINLON,MINLAT,MAXLON,MAXLAT`` as numbers, or ValueError saying what is wrong."""
    try:
        minx, miny, maxx, maxy = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError("bbox must be 4 numbers: minlon,minlat,maxlon,maxlat") from None
    if not (-180 <= minx < maxx <= 180 and -90 <= miny < maxy <= 90):
        raise ValueError("bbox must be a WGS84 box with min < max")
    return minx, miny, maxx, maxy


def _check_region(region: str) -> None:
    if region == "*" or (region.startswith("county:") and len(region) > 7):
        return
    if region.startswith("bbox:"):
        try:
            wgs84_box(region[5:])
        except ValueError as exc:
            raise ValueError(f"region {region!r}: {exc}") from None
        return
    raise ValueError(f"region {region!r} must be '*', 'county:NAME' or 'bbox:MINLON,MINLAT,...'")


def _share_problems(rows: list[dict]) -> list[str]:
    """Seasonal shares of one region must cover the three seasons and sum to 1."""
    by_region: dict[str, dict[str, Decimal]] = {}
    for r in rows:
        if r["section"] == "tea_season_share":
            by_region.setdefault(r["region"], {})[r["key"]] = Decimal(r["value"])
    problems = []
    for region, shares in by_region.items():
        if set(shares) != set(SEASONS) or sum(shares.values()) != 1:
            problems.append(
                f"tea_season_share for region {region!r} must give spring, summer and "
                f"autumn summing to 1 (got {dict(sorted(shares.items()))})"
            )
    return problems


# --- lookups (pure) -------------------------------------------------------------------


def lookup(
    table: dict, section: str, key: str | None = "*", where: Where = Where(), band=None
) -> dict | None:
    """The row that applies: key exact before ``*`` (None: any key), a specific region
    before ``*``, the band containing ``band``; None when nothing applies."""
    keys = [None] if key is None else [key, "*"] if key != "*" else ["*"]
    for wanted in keys:
        candidates = [
            r
            for r in table["rows"]
            if r["section"] == section
            and (wanted is None or r["key"] == wanted)
            and _in_band(r, band)
            and _region_matches(r["region"], where)
        ]
        if candidates:
            return min(candidates, key=lambda r: _region_rank(r["region"]))
    return None


def value(table: dict, section: str, key: str = "*", where: Where = Where(), band=None) -> Decimal:
    """Like lookup, for a value that must exist; the error says what is missing."""
    row = lookup(table, section, key, where, band)
    if row is None:
        detail = f" for {band}" if band is not None else ""
        raise LookupError(
            f"{table['kind']} table {table['version']!r} has no {section} row for {key!r}{detail}"
        )
    return Decimal(row["value"])


def _in_band(row: dict, band) -> bool:
    if band is None:
        return "band_min" not in row and "band_max" not in row
    band = Decimal(str(band))
    low, high = row.get("band_min"), row.get("band_max")
    return (low is None or Decimal(low) <= band) and (high is None or band < Decimal(high))


def _region_matches(region: str, where: Where) -> bool:
    if region == "*":
        return True
    if region.startswith("county:"):
        return where.county is not None and region[7:] == where.county
    if where.lon is None or where.lat is None:
        return False
    minx, miny, maxx, maxy = wgs84_box(region[5:])
    return minx <= where.lon <= maxx and miny <= where.lat <= maxy


def _region_rank(region: str) -> int:
    return 0 if region.startswith("county:") else 1 if region.startswith("bbox:") else 2


# --- storage --------------------------------------------------------------------------


def content_sha256(document: dict) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def import_table(engine: Engine, document: dict, source: str) -> bool:
    """Store a validated table; False when this exact version is already there.

    A version is immutable: the same kind and version with other content is refused.
    """
    digest = content_sha256(document)
    with engine.begin() as conn:
        existing = conn.execute(
            select(price_versions.c.content_sha256).where(
                price_versions.c.kind == document["kind"],
                price_versions.c.version == document["version"],
            )
        ).first()
        if existing:
            if existing.content_sha256 == digest:
                return False
            raise VersionExists(
                [
                    f"{document['kind']} version {document['version']!r} exists with other "
                    "content; versions are never edited: import it under a new version"
                ]
            )
        conn.execute(
            insert(price_versions).values(
                kind=document["kind"],
                version=document["version"],
                effective_from=date.fromisoformat(document["effective_from"]),
                illustrative=document["illustrative"],
                content_sha256=digest,
                document=document,
                source=source,
                imported_at=datetime.now(UTC),
            )
        )
    return True


def table_in_force(engine: Engine, kind: str, on: date) -> dict | None:
    """The table of ``kind`` in force on ``on``: newest effective_from <= on, later import
    first on a tie."""
    with engine.connect() as conn:
        row = conn.execute(
            select(price_versions.c.document)
            .where(price_versions.c.kind == kind, price_versions.c.effective_from <= on)
            .order_by(price_versions.c.effective_from.desc(), price_versions.c.id.desc())
            .limit(1)
        ).first()
    return row.document if row else None


def list_versions(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                price_versions.c.kind,
                price_versions.c.version,
                price_versions.c.effective_from,
                price_versions.c.illustrative,
                price_versions.c.source,
                price_versions.c.imported_at,
            ).order_by(price_versions.c.kind, price_versions.c.effective_from, price_versions.c.id)
        ).all()
    return [dict(r._mapping) for r in rows]


DEFAULTS_DIR = Path(__file__).parent / "defaults"


def default_tables() -> list[Path]:
    """The shipped illustrative tables (effective 2020-01-01)."""
    return sorted(DEFAULTS_DIR.glob("*.yaml"))


def import_file(engine: Engine, path: Path) -> tuple[dict, bool]:
    """Read, validate and store a table file: (the table, whether it was new)."""
    table = read_table_file(path)
    return table, import_table(engine, table, Path(path).name)


def read_table_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TableError([f"cannot read {path}: {exc}"]) from exc
    return parse_table_text(text, path.name)


def parse_upload(body: bytes, content_type: str) -> dict:
    """A table sent to the API: YAML or JSON (a YAML subset), or CSV by content type."""
    text = body.decode("utf-8", errors="strict")
    return parse_table_text(text, "upload.csv" if "csv" in content_type else "upload.yaml")
