"""The daily job (cron, ``agri solar daily``): every local day not yet processed, up to a
day (yesterday by default), for every plant: its energy from the counter
(``energy.days``), what it should have made (``expected``, calibrated on its first clean
days), its yield against its neighbours', its performance ratio and availability, and
the flags a loan officer acts on. A day is stored whole for all plants in one
transaction; running it again recomputes the same rows.

A day without readings is stored as ``no_data``; when readings come back, the days of
the gap become ``comms_gap`` if the counter carried what they should have made (the
plant produced, the logger was silent), else ``outage``.
"""

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Engine, delete, func, insert, select

from solar import energy, expected
from solar.plants import list_plants
from solar.tables import solar_days, solar_readings

PEER_RADIUS_KM = 10.0
MIN_PEERS = 3
PRODUCING_SHARE = energy.PRODUCING_SHARE
CATCH_UP_SHARE = 0.5  # a catch-up carrying at least half the gap's expected energy: comms
# Counter and quality findings that make a day unfit to calibrate the plant on.
UNCLEAN = {
    "counter_jump",
    "counter_frozen",
    "counter_reset",
    "counter_backwards",
    "catch_up",
    "no_data",
    "energy_unknown",
    "inverter_swapped",
}


@dataclass
class DailySummary:
    days: list[date] = field(default_factory=list)
    plants: int = 0
    rows: int = 0


def yesterday(now: datetime) -> date:
    return pd.Timestamp(now).tz_convert(energy.ZONE).date() - timedelta(days=1)


def run(engine: Engine, through: date, now: datetime | None = None) -> DailySummary:
    """Process every day after the last one processed (or from the first reading) up to
    and including ``through``."""
    now = now or datetime.now(UTC)
    plants = pd.DataFrame(list_plants(engine))
    summary = DailySummary(plants=len(plants))
    if plants.empty:
        return summary
    first = _first_day(engine)
    if first is None:
        return summary
    day = first
    while day <= through:
        summary.rows += run_day(engine, plants, day, now)
        summary.days.append(day)
        day += timedelta(days=1)
    return summary


def plant_days(engine: Engine, plant_id: str) -> list[dict]:
    """A plant's stored days, oldest first."""
    query = select(solar_days).where(solar_days.c.plant_id == plant_id).order_by(solar_days.c.day)
    with engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(query)]


def _first_day(engine: Engine) -> date | None:
    with engine.connect() as c:
        done = c.execute(select(func.max(solar_days.c.day))).scalar()
        if done is not None:
            return done + timedelta(days=1)
        start = c.execute(select(func.min(solar_readings.c.observed_at))).scalar()
    return energy.local_day(start) if start is not None else None


def _bounds(day: date) -> tuple[datetime, datetime]:
    start = pd.Timestamp(day).tz_localize(energy.ZONE)
    return start.tz_convert(UTC).to_pydatetime(), (start + pd.Timedelta(days=1)).tz_convert(
        UTC
    ).to_pydatetime()


def run_day(engine: Engine, plants: pd.DataFrame, day: date, now: datetime) -> int:
    """One local day for every plant; returns the rows stored. Each plant's counter is
    read from its newest believed reading before the day (carried in the day before's
    row), so a day's cost is its own readings, not the plant's history."""
    start, end = _bounds(day)
    readings = _readings(engine, start, end)
    previous = _previous(engine, day, start)
    times = expected.day_times(pd.Timestamp(day), energy.ZONE)
    modelled = expected.model(plants, times)
    hours = pd.Timedelta(expected.STEP) / pd.Timedelta(hours=1)
    modelled_kwh = modelled.ac_w.sum(axis=0) * hours / 1000.0
    insolation = modelled.poa_w_m2.sum(axis=0) * hours / 1000.0
    daylight_h = (modelled.ac_w > PRODUCING_SHARE * plants["kwp"].to_numpy() * 1000).sum(
        axis=0
    ) * hours
    factors = _factors(engine, plants["plant_id"].tolist(), day)
    rows = []
    for k, plant in enumerate(plants.itertuples(index=False)):
        before = previous.get(plant.plant_id)
        mine = readings.get(plant.plant_id)
        found = None
        if mine is not None:
            if before is not None:
                base = pd.DataFrame(
                    [{"observed_at": before[0], "lifetime_wh": before[1], "power_w": np.nan}]
                )
                mine = pd.concat([base, mine], ignore_index=True)
            found = next(
                (d for d in energy.days(mine, plant.kwp, plant.ac_kw) if d.day == day), None
            )
        factor = factors.get(plant.plant_id)
        row = {
            "plant_id": plant.plant_id,
            "day": day,
            "modelled_kwh": round(float(modelled_kwh[k]), 3),
            "insolation_kwh_m2": round(float(insolation[k]), 3),
            "expected_kwh": round(float(modelled_kwh[k]) * (factor or 1.0), 3),
            "daylight_h": round(float(daylight_h[k]), 2),
            "computed_at": now,
        }
        if found is None:
            row.update(energy_kwh=None, readings=0, serial=None, flags=["no_data"])
            row.update(performance_ratio=None, availability=None, peer_ratio=None)
            row.update(last_at=before and before[0], last_wh=before and before[1])
        else:
            flags = list(found.flags)
            if found.serial is not None and found.serial != plant.serial:
                flags.append("inverter_swapped")
            e = found.energy_kwh
            pr = e / (plant.kwp * insolation[k]) if e is not None and insolation[k] > 0 else None
            available = (
                min(found.producing_hours / daylight_h[k], 1.0) if daylight_h[k] > 0 else None
            )
            last = found.last or before
            row.update(
                energy_kwh=None if e is None else round(e, 3),
                readings=found.readings,
                serial=found.serial,
                flags=sorted(set(flags)),
                performance_ratio=None if pr is None else round(pr, 4),
                availability=None if available is None else round(available, 4),
                peer_ratio=None,
                last_at=last and last[0],
                last_wh=last and last[1],
            )
        rows.append(row)
    _peer_ratios(plants, rows)
    with engine.begin() as conn:
        conn.execute(delete(solar_days).where(solar_days.c.day == day))
        conn.execute(insert(solar_days), rows)
        silent = {
            pid
            for pid, flags in conn.execute(
                select(solar_days.c.plant_id, solar_days.c.flags).where(
                    solar_days.c.day == day - timedelta(days=1)
                )
            )
            if "no_data" in (flags or [])
        }
        for row in rows:
            if row["readings"] and row["plant_id"] in silent:
                _label_gap(conn, row)
    return len(rows)


READING_COLUMNS = ("observed_at", "lifetime_wh", "power_w", "serial", "mppt")


def _readings(engine: Engine, start: datetime, end: datetime) -> dict[str, pd.DataFrame]:
    """plant id -> its readings in [start, end), as energy.days takes them."""
    columns = [solar_readings.c.plant_id, *(solar_readings.c[n] for n in READING_COLUMNS)]
    query = select(*columns).where(
        solar_readings.c.observed_at >= start, solar_readings.c.observed_at < end
    )
    with engine.connect() as c:
        frame = pd.DataFrame(c.execute(query).all(), columns=["plant_id", *READING_COLUMNS])
    if frame.empty:
        return {}
    frame["lifetime_wh"] = frame["lifetime_wh"].astype(float)
    frame["power_w"] = frame["power_w"].astype(float)
    return {pid: g.drop(columns="plant_id") for pid, g in frame.groupby("plant_id")}


def _previous(engine: Engine, day: date, start: datetime) -> dict[str, tuple[datetime, float]]:
    """plant id -> the newest believed counter reading before ``day``: carried in the day
    before's row; for a plant without one (its first day), its last reading in the two
    days before."""
    carried = select(solar_days.c.plant_id, solar_days.c.last_at, solar_days.c.last_wh).where(
        solar_days.c.day == day - timedelta(days=1), solar_days.c.last_at.is_not(None)
    )
    recent = (
        select(
            solar_readings.c.plant_id, solar_readings.c.observed_at, solar_readings.c.lifetime_wh
        )
        .where(
            solar_readings.c.observed_at >= start - timedelta(days=2),
            solar_readings.c.observed_at < start,
            solar_readings.c.lifetime_wh.is_not(None),
        )
        .order_by(solar_readings.c.observed_at)
    )
    with engine.connect() as c:
        out = {pid: (at, wh) for pid, at, wh in c.execute(carried)}
        first_days = {pid: (at, wh) for pid, at, wh in c.execute(recent) if pid not in out}
    return {**first_days, **out}


def _factors(engine: Engine, plant_ids: list[str], before: date) -> dict[str, float]:
    """plant id -> its calibration: measured over modelled energy on its first
    CALIBRATION_DAYS clean days before ``before`` (none while it has fewer than a week)."""
    query = (
        select(
            solar_days.c.plant_id,
            solar_days.c.energy_kwh,
            solar_days.c.modelled_kwh,
            solar_days.c.flags,
        )
        .where(solar_days.c.day < before, solar_days.c.energy_kwh.is_not(None))
        .order_by(solar_days.c.plant_id, solar_days.c.day)
    )
    clean: dict[str, list[tuple[float, float]]] = {}
    with engine.connect() as c:
        for pid, e, m, flags in c.execute(query):
            kept = clean.setdefault(pid, [])
            if len(kept) < expected.CALIBRATION_DAYS and not UNCLEAN & set(flags or []):
                kept.append((e, m or 0.0))
    out = {}
    for pid, pairs in clean.items():
        factor = expected.calibration(
            np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        )
        if factor is not None:
            out[pid] = factor
    return out


def _peer_ratios(plants: pd.DataFrame, rows: list[dict]) -> None:
    """Each plant's yield (kWh/kWp) over the median of plants within PEER_RADIUS_KM that
    day, with at least MIN_PEERS of them reporting; it needs no irradiance at all."""
    lat = np.radians(plants["lat"].to_numpy())
    lon = np.radians(plants["lon"].to_numpy())
    yields = np.array(
        [
            r["energy_kwh"] / kwp if r["energy_kwh"] is not None else np.nan
            for r, kwp in zip(rows, plants["kwp"], strict=True)
        ]
    )
    for k, row in enumerate(rows):
        if np.isnan(yields[k]):
            continue
        a = (
            np.sin((lat - lat[k]) / 2) ** 2
            + np.cos(lat) * math.cos(lat[k]) * np.sin((lon - lon[k]) / 2) ** 2
        )
        km = 2 * 6371.0 * np.arcsin(np.sqrt(a))
        near = (km <= PEER_RADIUS_KM) & ~np.isnan(yields)
        near[k] = False
        if near.sum() >= MIN_PEERS:
            median = float(np.median(yields[near]))
            if median > 0:
                row["peer_ratio"] = round(float(yields[k] / median), 4)


def _km(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> np.ndarray:
    """Great-circle distances (haversine) from one point, in km."""
    a = np.sin((lat - lat0) / 2) ** 2 + np.cos(lat) * math.cos(lat0) * np.sin((lon - lon0) / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(a))


def _label_gap(conn, row: dict) -> None:
    """The days without data just before a catch-up: ``comms_gap`` when the catch-up
    carried at least CATCH_UP_SHARE of what the plant makes on such days (the counter
    kept counting), else ``outage``. What the plant makes on a day is the median of its
    last clean days where it has them, else the expected energy."""
    before = conn.execute(
        select(
            solar_days.c.day, solar_days.c.energy_kwh, solar_days.c.expected_kwh, solar_days.c.flags
        )
        .where(solar_days.c.plant_id == row["plant_id"], solar_days.c.day < row["day"])
        .order_by(solar_days.c.day.desc())
        .limit(60)
    ).all()
    gap = []
    for day, _energy, expected_kwh, flags in before:
        if "no_data" not in (flags or []):
            break
        gap.append((day, expected_kwh or 0.0))
    if not gap:
        return
    clean = [e for _d, e, _x, f in before if e is not None and not UNCLEAN & set(f or [])][:7]
    usual = float(np.median(clean)) if clean else None
    owed = sum(usual if usual is not None else x for _d, x in gap)
    today = usual if usual is not None else (row["expected_kwh"] or 0.0)
    carried = (row["energy_kwh"] or 0.0) - today
    label = "comms_gap" if owed <= 0 or carried >= CATCH_UP_SHARE * owed else "outage"
    for day, _x in gap:
        conn.execute(
            solar_days.update()
            .where(solar_days.c.plant_id == row["plant_id"], solar_days.c.day == day)
            .values(flags=sorted(["no_data", label]))
        )
