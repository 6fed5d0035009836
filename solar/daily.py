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
from scipy.spatial import cKDTree
from sqlalchemy import Engine, delete, func, insert, select

from agri_common.sql import query_frame
from agri_common.times import UTCDateTime
from solar import alerts, energy, expected, weather
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
    row, with its calibration once final), so a day's cost is its own readings, not the
    plant's history. An ordinary day is taken in NumPy (``energy.quick_day``); a day with
    anything to judge goes through ``energy.days`` and pvanalytics."""
    start, end = _bounds(day)
    readings = _readings(engine, start, end)
    previous = _previous(engine, plants["plant_id"].tolist(), day, start)
    times = expected.day_times(pd.Timestamp(day), energy.ZONE)
    cells = sorted(set(expected.cells(plants)))
    modelled = expected.model(plants, times, weather.for_times(engine, cells, times))
    hours = pd.Timedelta(expected.STEP) / pd.Timedelta(hours=1)
    modelled_kwh = modelled.ac_w.sum(axis=0) * hours / 1000.0
    insolation = modelled.poa_w_m2.sum(axis=0) * hours / 1000.0
    daylight_h = (modelled.ac_w > PRODUCING_SHARE * plants["kwp"].to_numpy() * 1000).sum(
        axis=0
    ) * hours
    factors = _factors(engine, plants["plant_id"].tolist(), day, previous)
    screened = _screen(readings, plants)
    # year-on-year degradation: worked out on a month's first day, carried on the others
    if day.day == 1:
        degradation = alerts.degradation_by_plant(engine, day - timedelta(days=1))
    else:
        degradation = {pid: p["degradation_pct"] for pid, p in previous.items()}
    rows = []
    for k, plant in enumerate(plants.itertuples(index=False)):
        before = previous[plant.plant_id]["last"]
        found = _judge(readings, plant, before, day, screened.get(plant.plant_id))
        factor, used = factors.get(plant.plant_id, (None, 0))
        row = {
            "plant_id": plant.plant_id,
            "day": day,
            "modelled_kwh": round(float(modelled_kwh[k]), 3),
            "insolation_kwh_m2": round(float(insolation[k]), 3),
            "expected_kwh": round(float(modelled_kwh[k]) * (factor or 1.0), 3),
            "calibration": None if factor is None else round(factor, 4),
            "calibration_days": used,
            "daylight_h": round(float(daylight_h[k]), 2),
            "computed_at": now,
            "degradation_pct": _rounded(degradation.get(plant.plant_id)),
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
        for row in rows:
            if row["readings"] and previous[row["plant_id"]]["silent"]:
                _label_gap(conn, row)
    return len(rows)


def _screen(readings: "Readings", plants: pd.DataFrame) -> dict[str, bool]:
    """plant id -> whether its day's readings hold a doubt for the careful path
    (``energy.doubtful``, for every plant with readings at once)."""
    ids = [pid for pid in plants["plant_id"] if pid in readings.spans]
    if not ids:
        return {}
    starts = np.array([readings.spans[pid][0] for pid in ids])
    stops = np.array([readings.spans[pid][1] for pid in ids])
    kwp = plants.set_index("plant_id").loc[ids, "kwp"].to_numpy(dtype=float)
    order = np.argsort(starts)  # the arrays' order (plant id as the database sorts it)
    found = energy.doubtful(
        readings.power, readings.lifetime, starts[order], stops[order], kwp[order]
    )
    return {ids[j]: bool(found[k]) for k, j in enumerate(order)}


def _judge(
    readings: "Readings", plant, before, day: date, screened: bool | None = None
) -> energy.Day | None:
    """The plant's day from its readings (None: it has none), the quick way when it can."""
    span = readings.spans.get(plant.plant_id)
    if span is None:
        return None
    a, b = span
    seconds = readings.seconds[a:b]
    counter, power = readings.lifetime[a:b], readings.power[a:b]
    serials = readings.serial[a:b]
    low, high = readings.dcv_min[a:b], readings.dcv_max[a:b]
    if before is not None:
        seconds = np.concatenate([[pd.Timestamp(before[0]).timestamp()], seconds])
        counter = np.concatenate([[before[1]], counter])
        power, low, high = (np.concatenate([[np.nan], x]) for x in (power, low, high))
        serials = np.concatenate([np.array([None], dtype=object), serials])
    hours = (seconds - seconds[0]) / 3600.0
    based = before is not None
    quick = energy.quick_day(
        day, hours, counter, power, serials, (low, high), plant.kwp, plant.ac_kw, based, screened
    )
    if quick is not None:
        quick.last = (datetime.fromtimestamp(float(seconds[-1]), UTC), float(counter[-1]))
        return quick
    frame = pd.DataFrame(
        {
            "observed_at": pd.to_datetime(seconds, unit="s", utc=True),
            "lifetime_wh": counter,
            "power_w": power,
            "serial": serials,
            "dcv_min": low,
            "dcv_max": high,
        }
    )
    return next((d for d in energy.days(frame, plant.kwp, plant.ac_kw) if d.day == day), None)


@dataclass
class Readings:
    """A day's readings of every plant, in arrays ordered by plant and time, and each
    plant's [start, stop) in them."""

    seconds: np.ndarray  # since the epoch, UTC
    lifetime: np.ndarray
    power: np.ndarray
    serial: np.ndarray
    dcv_min: np.ndarray
    dcv_max: np.ndarray
    spans: dict[str, tuple[int, int]]


# A reading's time as seconds since the epoch, in SQL: a day of a fleet's readings (5.76
# million for 20,000 plants) is read as numbers, not as that many datetime objects.
EPOCH_SECONDS = {
    "postgresql": "EXTRACT(EPOCH FROM observed_at)::float8",
    "sqlite": "(julianday(observed_at) - 2440587.5) * 86400.0",
}


READING_COLUMNS = ("plant_id", "seconds", "lifetime", "power", "serial", "dcv_min", "dcv_max")


def _readings(engine: Engine, start: datetime, end: datetime) -> Readings:
    """Every plant's readings in [start, end), as arrays (a fleet's day is 5.76 million
    rows for 20,000 plants: agri_common.sql.query_frame)."""
    select_sql = (
        f"SELECT plant_id, {EPOCH_SECONDS[engine.dialect.name]}, lifetime_wh, power_w, serial,"
        " dcv_min, dcv_max FROM solar_readings WHERE observed_at >= :start AND observed_at <"
        " :end ORDER BY plant_id, observed_at"
    )
    frame = query_frame(
        engine,
        select_sql,
        {"start": start, "end": end},
        READING_COLUMNS,
        {"start": UTCDateTime(), "end": UTCDateTime()},
        ("plant_id", "serial"),
    )
    ids = frame["plant_id"].to_numpy(dtype=object)
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1 if len(ids) else np.array([], dtype=int)
    starts = np.concatenate([[0], cuts]) if len(ids) else cuts
    stops = np.concatenate([cuts, [len(ids)]]) if len(ids) else cuts
    spans = {ids[a]: (int(a), int(b)) for a, b in zip(starts, stops, strict=True)}
    number = lambda name: frame[name].to_numpy(dtype=float)  # noqa: E731
    return Readings(
        np.round(number("seconds"), 3),  # SQLite's julianday is exact to well under 1 ms
        number("lifetime"),
        number("power"),
        frame["serial"].to_numpy(dtype=object),
        number("dcv_min"),
        number("dcv_max"),
        spans,
    )


def _previous(engine: Engine, plant_ids: list[str], day: date, start: datetime) -> dict:
    """plant id -> what the day before says: ``last`` (its newest believed counter reading,
    carried in the day before's row; for a plant without one, its last reading in the two
    days before), ``silent`` (no data that day), ``calibration``, ``calibration_days`` and
    ``degradation_pct``."""
    carried = select(
        solar_days.c.plant_id,
        solar_days.c.last_at,
        solar_days.c.last_wh,
        solar_days.c.flags,
        solar_days.c.calibration,
        solar_days.c.calibration_days,
        solar_days.c.degradation_pct,
    ).where(solar_days.c.day == day - timedelta(days=1))
    out = {
        pid: {
            "last": None,
            "silent": False,
            "calibration": None,
            "calibration_days": 0,
            "degradation_pct": None,
        }
        for pid in plant_ids
    }
    with engine.connect() as c:
        for pid, at, wh, flags, factor, used, degradation in c.execute(carried):
            if pid in out:
                out[pid] = {
                    "last": (at, wh) if at is not None else None,
                    "silent": "no_data" in (flags or []),
                    "calibration": factor,
                    "calibration_days": used or 0,
                    "degradation_pct": degradation,
                }
        lacking = [pid for pid, v in out.items() if v["last"] is None]
        for first in range(0, len(lacking), 500):
            recent = (
                select(
                    solar_readings.c.plant_id,
                    solar_readings.c.observed_at,
                    solar_readings.c.lifetime_wh,
                )
                .where(
                    solar_readings.c.plant_id.in_(lacking[first : first + 500]),
                    solar_readings.c.observed_at >= start - timedelta(days=2),
                    solar_readings.c.observed_at < start,
                    solar_readings.c.lifetime_wh.is_not(None),
                )
                .order_by(solar_readings.c.observed_at)
            )
            for pid, at, wh in c.execute(recent):  # the newest wins
                out[pid]["last"] = (at, wh)
    return out


def _factors(
    engine: Engine, plant_ids: list[str], before: date, previous: dict[str, dict]
) -> dict[str, tuple[float | None, int]]:
    """plant id -> (its calibration, the clean days it stands on): measured over modelled
    energy on its first CALIBRATION_DAYS clean days (none while it has fewer than a
    week). A final one is carried from the day before; only a young plant's days are read."""
    out: dict[str, tuple[float | None, int]] = {}
    young = []
    for pid in plant_ids:
        known = previous.get(pid, {})
        if (known.get("calibration_days") or 0) >= expected.CALIBRATION_DAYS:
            out[pid] = (known["calibration"], known["calibration_days"])
        else:
            young.append(pid)
    clean: dict[str, list[tuple[float, float]]] = {}
    for first in range(0, len(young), 500):
        chunk = young[first : first + 500]
        query = (
            select(
                solar_days.c.plant_id,
                solar_days.c.energy_kwh,
                solar_days.c.modelled_kwh,
                solar_days.c.flags,
            )
            .where(
                solar_days.c.day < before,
                solar_days.c.energy_kwh.is_not(None),
                solar_days.c.plant_id.in_(chunk),
            )
            .order_by(solar_days.c.plant_id, solar_days.c.day)
        )
        with engine.connect() as c:
            for pid, e, m, flags in c.execute(query):
                kept = clean.setdefault(pid, [])
                if len(kept) < expected.CALIBRATION_DAYS and not UNCLEAN & set(flags or []):
                    kept.append((e, m or 0.0))
    for pid, pairs in clean.items():
        factor = expected.calibration(
            np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        )
        out[pid] = (factor, len(pairs) if factor is not None else 0)
    return out


def _peer_ratios(plants: pd.DataFrame, rows: list[dict]) -> None:
    """Each plant's yield (kWh/kWp) over the median of plants within PEER_RADIUS_KM that
    day, with at least MIN_PEERS of them reporting; it needs no irradiance at all. The
    neighbours come from a k-d tree of the plants on the unit sphere."""
    energy_kwh = np.array([np.nan if r["energy_kwh"] is None else r["energy_kwh"] for r in rows])
    yields = energy_kwh / plants["kwp"].to_numpy()
    reporting = np.flatnonzero(~np.isnan(yields))
    if len(reporting) <= MIN_PEERS:
        return
    lat = np.radians(plants["lat"].to_numpy()[reporting])
    lon = np.radians(plants["lon"].to_numpy()[reporting])
    points = np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    chord = 2 * math.sin(PEER_RADIUS_KM / 6371.0 / 2)
    tree = cKDTree(points)
    for j, near in enumerate(tree.query_ball_point(points, chord)):
        others = [n for n in near if n != j]
        if len(others) >= MIN_PEERS:
            median = float(np.median(yields[reporting[others]]))
            if median > 0:
                k = reporting[j]
                rows[k]["peer_ratio"] = round(float(yields[k] / median), 4)


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


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
