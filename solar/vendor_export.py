"""A plant's history from its inverter vendor's portal: the export's CSV (time with its
zone, inverter serial, lifetime energy in kWh, AC power in W, status) becomes ``solar/v1``
items, checked by the same schema as live telemetry and stored by the same function, so
imported history and live readings are one record.

Vendors name the columns their own way and in their own units (``data/export_columns.csv``:
column, what it means, the factor to our unit) and the status in words
(``data/export_status.csv``: to SunSpec's St). A time without a zone is refused unless
the operator names the zone the portal used (``zone``): an hour's error would move energy
between days.
"""

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from agri_common import terms
from solar import payloads, plants

COLUMNS = Path(__file__).parent / "data" / "export_columns.csv"
STATUSES = Path(__file__).parent / "data" / "export_status.csv"
NEEDED = ("plant_id", "time", "serial", "lifetime_wh")


@dataclass
class Imported:
    stored: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)


def _table(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def items(data: bytes, now: datetime, zone: str | None = None) -> tuple[list[dict], list[str]]:
    """The export's rows as checked solar/v1 items, and the rows refused ("line N: why")."""
    columns = {r["column"].strip(): (r["means"], float(r["factor"])) for r in _table(COLUMNS)}
    states = {r["status"].strip().lower(): int(r["St"]) for r in _table(STATUSES)}
    reader = csv.DictReader(io.StringIO(terms.read_records_text(data), newline=""))
    header = [(name, columns.get((name or "").strip())) for name in reader.fieldnames or []]
    known = {means for _, m in header if m for means in [m[0]]}
    missing = [c for c in NEEDED if c not in known]
    if missing:
        raise ValueError(
            f"the export lacks {', '.join(missing)} (columns: data/export_columns.csv)"
        )
    tz = ZoneInfo(zone) if zone else None
    out, errors = [], []
    for line, row in enumerate(reader, start=2):
        try:
            cells = {}
            for name, mapped in header:
                text = (row.get(name) or "").strip()
                if mapped and text:
                    cells[mapped[0]] = (text, mapped[1])
            when = datetime.fromisoformat(cells["time"][0].replace("Z", "+00:00"))
            if when.tzinfo is None:
                if tz is None:
                    raise ValueError(f"time {cells['time'][0]!r} has no zone (give --zone)")
                when = when.replace(tzinfo=tz)
            item = {
                "plant_id": cells["plant_id"][0],
                "SN": cells["serial"][0],
                "observed_at": when.astimezone(UTC).isoformat(),
                "WH": float(cells["lifetime_wh"][0]) * cells["lifetime_wh"][1],
            }
            if "power_w" in cells:
                item["W"] = float(cells["power_w"][0]) * cells["power_w"][1]
            if "status" in cells:
                word = cells["status"][0].lower()
                if word not in states:
                    raise ValueError(
                        f"status {cells['status'][0]!r} is not in data/export_status.csv"
                    )
                item["St"] = states[word]
            out.append(payloads.READINGS.check(item, now))
        except KeyError as exc:
            errors.append(f"line {line}: missing {exc.args[0]}")
        except ValueError as exc:
            errors.append(f"line {line}: {exc}")
    return out, errors


def import_export(engine: Engine, path: Path, zone: str | None = None) -> Imported:
    """Store an export's readings; a reading of a plant not registered is refused."""
    now = datetime.now(UTC)
    checked, errors = items(Path(path).read_bytes(), now, zone)
    result = Imported(errors=errors)
    farms = plants.plant_farms(engine)
    rows = []
    for value in checked:
        farm = farms.get(value["plant_id"])
        if farm is None:
            result.errors.append(f"plant {value['plant_id']!r} is not registered")
            continue
        rows.append(payloads.reading_row(value, farm, "import", "import", now))
    with engine.begin() as conn:
        result.stored = payloads.store_readings(conn, rows)
    result.duplicates = len(rows) - result.stored
    return result
