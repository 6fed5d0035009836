"""The grid company's monthly settlement of each plant (kWh and CNY paid), imported from
its statement, and the cross-check with what the plant's own counter says it made: a gap
over the policy's share (5 %) is a meter, a diversion or a logger that lies.

Parsing is pure (rows in, records and per-row errors out); the comparison reads the
stored days and settlements of the months asked about."""

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy import Engine, delete, insert, select
from typing_extensions import TypedDict

from agri_common import terms
from agri_common.wording import Said
from solar.tables import solar_days, solar_settlements

COLUMNS = ("plant_id", "month", "kwh", "paid_cny")


class Settlement(TypedDict):
    plant_id: str
    month: date  # its first day
    kwh: float
    paid_cny: str  # decimal text


@dataclass
class Imported:
    records: list[Settlement] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse(path: Path, known_plants: set[str]) -> Imported:
    """A statement's rows (English or Chinese column names); each bad row is reported."""
    reader = csv.DictReader(
        io.StringIO(terms.read_records_text(Path(path).read_bytes()), newline="")
    )
    missing = [c for c in COLUMNS if c not in terms.english_columns(reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path}: header lacks {', '.join(missing)}")
    out = Imported()
    for line, raw in enumerate(reader, start=2):
        row = {k: str(v or "").strip() for k, v in terms.english_row(raw).items()}
        try:
            if row["plant_id"] not in known_plants:
                raise ValueError(f"plant {row['plant_id']!r} is not registered")
            year, month = (int(part) for part in row["month"].replace("/", "-").split("-")[:2])
            kwh = float(row["kwh"])
            paid = Decimal(row["paid_cny"])
            if not (kwh >= 0 and paid >= 0 and paid.is_finite()):
                raise ValueError("kwh and paid_cny must be amounts of 0 or more")
            out.records.append(
                Settlement(
                    plant_id=row["plant_id"],
                    month=date(year, month, 1),
                    kwh=kwh,
                    paid_cny=str(paid.quantize(Decimal("0.01"))),
                )
            )
        except (ValueError, InvalidOperation) as exc:
            out.errors.append(f"line {line}: {exc}")
    return out


def store(engine: Engine, records: list[Settlement]) -> int:
    """Store settlements; a month already stored for a plant is replaced (a corrected
    statement)."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for r in records:
            key = (solar_settlements.c.plant_id == r["plant_id"]) & (
                solar_settlements.c.month == r["month"]
            )
            conn.execute(delete(solar_settlements).where(key))
            conn.execute(insert(solar_settlements).values(**r, imported_at=now))
    return len(records)


def gaps(engine: Engine, through: date, share: float) -> dict[tuple[str, str], Said]:
    """(plant id, "solar_settlement_gap") -> why, for each plant whose latest settled month
    that its counter covers whole (no day without a believed energy) differs from the
    counter's energy by more than ``share``."""
    with engine.connect() as c:
        settled = c.execute(
            select(solar_settlements).where(solar_settlements.c.month <= through)
        ).all()
        latest: dict[str, tuple] = {}
        for r in settled:
            if r.plant_id not in latest or r.month > latest[r.plant_id].month:
                latest[r.plant_id] = r
        out = {}
        for plant_id, r in latest.items():
            end = date(r.month.year + r.month.month // 12, r.month.month % 12 + 1, 1)
            days = c.execute(
                select(solar_days.c.energy_kwh).where(
                    solar_days.c.plant_id == plant_id,
                    solar_days.c.day >= r.month,
                    solar_days.c.day < end,
                )
            ).all()
            if len(days) < (end - r.month).days or any(e is None for (e,) in days):
                continue  # the counter does not cover the month: nothing to compare
            counted = sum(e for (e,) in days)
            if r.kwh > 0 and abs(counted - r.kwh) / r.kwh > share:
                out[(plant_id, "solar_settlement_gap")] = Said(
                    "alert.solar_settlement_gap",
                    month=f"{r.month:%Y-%m}",
                    settled=f"{r.kwh:.0f}",
                    counted=f"{counted:.0f}",
                    gap=f"{(counted - r.kwh) / r.kwh:+.1%}",
                )
    return out
