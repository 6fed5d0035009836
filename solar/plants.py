"""The plants registry: rooftop plants from the operator's CSV or JSON (English or the
farmers' own Chinese column names, ``agri_common.terms``), validated row by row, and their
reads and writes. Parsing is pure (rows in, records and per-row errors out)."""

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine, insert, select, update
from typing_extensions import TypedDict

from agri_common import terms
from solar.tables import solar_plants

TARIFFS = Path(__file__).parent / "data" / "tariffs.csv"
REQUIRED = (
    "plant_id",
    "farm_id",
    "lat",
    "lon",
    "kwp",
    "ac_kw",
    "tilt",
    "azimuth",
    "commissioned",
    "grid_connected",
    "serial",
    "tariff",
)
OPTIONAL = ("name", "make", "model")
# A rooftop plant the bank lends against (5-50 kWp); a row outside this is a typo (W for
# kW, a commercial plant) and is refused, not stored.
KWP_RANGE = (0.5, 500.0)
# Fujian's roofs face south; a plant "facing" north is almost always a form that gives
# the azimuth from south (正南为0°), which would put its expected energy far too low.
FACING_NORTH = (-45.0, 45.0)


class Plant(TypedDict):
    plant_id: str
    farm_id: str
    name: str | None
    lat: float
    lon: float
    kwp: float
    ac_kw: float
    tilt: float
    azimuth: float  # degrees clockwise from north: 180 is south (pvlib's convention)
    commissioned: date
    grid_connected: date
    make: str | None
    model: str | None
    serial: str
    tariff: str


@dataclass
class Imported:
    records: list[Plant] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def tariff_ids() -> set[str]:
    with TARIFFS.open(encoding="utf-8") as f:
        return {row["tariff"] for row in csv.DictReader(f)}


def parse_plants(path: Path, known_farms: set[str]) -> Imported:
    """Plants from CSV or JSON (a list of objects); each bad row is reported with its
    line (CSV) or position (JSON) and why."""
    data = Path(path).read_bytes()
    if Path(path).suffix.lower() == ".json":
        try:
            rows = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from exc
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of plants")
        numbered = [(f"item {k}", r) for k, r in enumerate(rows)]
    else:
        reader = csv.DictReader(io.StringIO(terms.read_records_text(data), newline=""))
        columns = terms.english_columns(reader.fieldnames or [])
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise ValueError(f"{path}: header lacks {', '.join(missing)}")
        numbered = [(f"line {n}", r) for n, r in enumerate(reader, start=2)]
    out, tariffs = Imported(), tariff_ids()
    for where, row in numbered:
        try:
            if not isinstance(row, dict):
                raise ValueError("a plant must be an object")
            out.records.append(plant_record(terms.english_row(row), known_farms, tariffs))
        except ValueError as exc:
            out.errors.append(f"{where}: {exc}")
    return out


def plant_record(row: dict, known_farms: set[str], tariffs: set[str]) -> Plant:
    """One row as a plant; ValueError names the field that is wrong and why."""
    text = {
        k: str(row.get(k) if row.get(k) is not None else "").strip() for k in (*REQUIRED, *OPTIONAL)
    }
    missing = [k for k in REQUIRED if not text[k]]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    if text["farm_id"] not in known_farms:
        raise ValueError(f"farm {text['farm_id']!r} is not registered (import farms first)")
    if text["tariff"] not in tariffs:
        raise ValueError(f"tariff {text['tariff']!r} is not one of {sorted(tariffs)}")
    number = {k: _number(k, text[k]) for k in ("lat", "lon", "kwp", "ac_kw", "tilt", "azimuth")}
    if not (-90 <= number["lat"] <= 90 and -180 <= number["lon"] <= 180):
        raise ValueError(f"lat/lon {number['lat']}, {number['lon']} is not a place on Earth")
    if not KWP_RANGE[0] <= number["kwp"] <= KWP_RANGE[1]:
        raise ValueError(f"kwp {number['kwp']} is outside {KWP_RANGE[0]}-{KWP_RANGE[1]} kWp")
    if not 0 < number["ac_kw"] <= 2 * number["kwp"]:
        raise ValueError(f"ac_kw {number['ac_kw']} does not fit a {number['kwp']} kWp plant")
    if not 0 <= number["tilt"] <= 90:
        raise ValueError(f"tilt {number['tilt']} is outside 0-90 degrees")
    azimuth = number["azimuth"] % 360
    north = (azimuth + 180) % 360 - 180  # -180..180, 0 = north
    if number["tilt"] > 0 and FACING_NORTH[0] < north < FACING_NORTH[1]:
        raise ValueError(
            f"azimuth {number['azimuth']} faces north: give degrees clockwise from north "
            "(180 = south), not from south"
        )
    commissioned = terms.parse_day(text["commissioned"])
    connected = terms.parse_day(text["grid_connected"])
    if connected < commissioned:
        raise ValueError(f"grid_connected {connected} is before commissioned {commissioned}")
    return Plant(
        plant_id=text["plant_id"],
        farm_id=text["farm_id"],
        name=text["name"] or None,
        lat=number["lat"],
        lon=number["lon"],
        kwp=number["kwp"],
        ac_kw=number["ac_kw"],
        tilt=number["tilt"],
        azimuth=azimuth,
        commissioned=commissioned,
        grid_connected=connected,
        make=text["make"] or None,
        model=text["model"] or None,
        serial=text["serial"],
        tariff=text["tariff"],
    )


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} {text!r} is not a number")
    return value


def upsert_plants(engine: Engine, records: list[Plant]) -> tuple[int, int]:
    """(created, updated)."""
    now = datetime.now(UTC)
    created = updated = 0
    with engine.begin() as conn:
        known = {r for (r,) in conn.execute(select(solar_plants.c.plant_id))}
        for record in records:
            row = {**record, "updated_at": now}
            if record["plant_id"] in known:
                key = solar_plants.c.plant_id == record["plant_id"]
                conn.execute(update(solar_plants).where(key).values(row))
                updated += 1
            else:
                conn.execute(insert(solar_plants).values(row))
                known.add(record["plant_id"])
                created += 1
    return created, updated


def list_plants(engine: Engine, farm_id: str | None = None) -> list[dict]:
    query = select(solar_plants).order_by(solar_plants.c.plant_id)
    if farm_id:
        query = query.where(solar_plants.c.farm_id == farm_id)
    with engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(query)]


def get_plant(engine: Engine, plant_id: str) -> dict | None:
    with engine.connect() as c:
        row = c.execute(select(solar_plants).where(solar_plants.c.plant_id == plant_id)).first()
    return dict(row._mapping) if row else None


def plant_farms(engine: Engine) -> dict[str, str]:
    """plant id -> its farm: whose gateway may report it."""
    with engine.connect() as c:
        query = select(solar_plants.c.plant_id, solar_plants.c.farm_id)
        return {p: f for p, f in c.execute(query)}
