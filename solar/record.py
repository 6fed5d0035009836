"""What a plant's own record says at a date, for its valuation: its registry facts, how
much it made on the days it reported in the year before (against what the model says of
the same days), the model's typical year, availability, degradation, the last 30 days
and the alerts open on it. Read from the stored days: nothing here recomputes energy."""

from calendar import monthrange
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select
from typing_extensions import TypedDict

from solar import alerts, energy, expected, weather
from solar.plants import get_plant
from solar.tables import solar_days, solar_settlements
from telemetry import farm_alerts

YEAR_DAYS = 365
UNFIT = {"no_data", "energy_unknown", *alerts.COUNTER_FAULTS}


class PlantRecord(TypedDict):
    plant_id: str
    farm_id: str
    kwp: float
    ac_kw: float
    tilt: float
    azimuth: float
    lat: float
    lon: float
    commissioned: str
    grid_connected: str
    tariff: str
    serial: str
    record_days: int  # days with believed energy in the year before as_of
    energy_kwh: float  # their energy (a settled month's from the grid's statement)
    settled_months: int  # whole months of that year the grid company settled
    modelled_kwh: float  # the model's energy for the same days
    typical_year_kwh: float  # the model's typical year for this plant
    availability: float | None  # mean share of daylight producing, over those days
    degradation_pct_per_year: float | None  # year on year, once two years are recorded
    last_30_energy_kwh: float
    last_30_expected_kwh: float
    last_day: str | None
    open_alerts: list[str]


def plant_record(engine: Engine, plant_id: str, as_of: datetime) -> PlantRecord:
    plant = get_plant(engine, plant_id)
    if plant is None:
        raise LookupError(f"plant {plant_id!r} is not registered")
    through = energy.local_day(as_of) - timedelta(days=1)
    query = (
        select(solar_days)
        .where(
            solar_days.c.plant_id == plant_id,
            solar_days.c.day > through - timedelta(days=alerts.HISTORY_DAYS),
            solar_days.c.day <= through,
        )
        .order_by(solar_days.c.day)
    )
    with engine.connect() as c:
        days = [dict(r._mapping) for r in c.execute(query)]
    year = [d for d in days if d["day"] > through - timedelta(days=YEAR_DAYS)]
    fit = [d for d in year if d["energy_kwh"] is not None and not UNFIT & set(d["flags"])]
    settled = _settled_months(engine, plant_id, year)
    # a settled month counts what the grid metered, against the model's whole month
    made = sum(d["energy_kwh"] for d in fit if _month(d["day"]) not in settled)
    made += sum(settled.values())
    modelled = sum(d["modelled_kwh"] or 0.0 for d in fit if _month(d["day"]) not in settled)
    modelled += sum(d["modelled_kwh"] or 0.0 for d in year if _month(d["day"]) in settled)
    recent = [d for d in year if d["day"] > through - timedelta(days=30)]
    site = pd.DataFrame([plant])[["lat", "lon", "kwp", "ac_kw", "tilt", "azimuth"]]
    hours = expected.year_hours(energy.ZONE)
    typical = weather.for_times(engine, expected.cells(site).tolist(), hours, measured=False)
    shares = [d["availability"] for d in fit if d["availability"] is not None]
    open_kinds = sorted(
        a["kind"]
        for a in farm_alerts.list_alerts(engine, plant["farm_id"], open_only=True)
        if a["subject"] == plant_id and a["kind"] in alerts.KINDS and a["opened_at"] <= as_of
    )
    return PlantRecord(
        plant_id=plant_id,
        farm_id=plant["farm_id"],
        kwp=plant["kwp"],
        ac_kw=plant["ac_kw"],
        tilt=plant["tilt"],
        azimuth=plant["azimuth"],
        lat=plant["lat"],
        lon=plant["lon"],
        commissioned=plant["commissioned"].isoformat(),
        grid_connected=plant["grid_connected"].isoformat(),
        tariff=plant["tariff"],
        serial=plant["serial"],
        record_days=len(fit),
        energy_kwh=round(made, 3),
        settled_months=len(settled),
        modelled_kwh=round(modelled, 3),
        typical_year_kwh=round(float(expected.typical_year_kwh(site, energy.ZONE, typical)[0]), 3),
        availability=round(float(np.mean(shares)), 4) if shares else None,
        degradation_pct_per_year=_rounded(
            alerts.degradation_pct_per_year(
                [{**d, "flags": d["flags"] or []} for d in days if d["energy_kwh"] is not None]
            )
        ),
        last_30_energy_kwh=round(sum(d["energy_kwh"] or 0.0 for d in recent), 3),
        last_30_expected_kwh=round(sum(d["expected_kwh"] or 0.0 for d in recent), 3),
        last_day=str(days[-1]["day"]) if days else None,
        open_alerts=open_kinds,
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _month(day: date) -> date:
    return day.replace(day=1)


def _settled_months(engine: Engine, plant_id: str, year: list[dict]) -> dict[date, float]:
    """month -> the grid's settled kWh, for the months of ``year`` whose every day is there."""
    present: dict[date, int] = {}
    for d in year:
        present[_month(d["day"])] = present.get(_month(d["day"]), 0) + 1
    whole = {m for m, n in present.items() if n == monthrange(m.year, m.month)[1]}
    if not whole:
        return {}
    query = select(solar_settlements.c.month, solar_settlements.c.kwh).where(
        solar_settlements.c.plant_id == plant_id, solar_settlements.c.month.in_(sorted(whole))
    )
    with engine.connect() as c:
        return {month: kwh for month, kwh in c.execute(query)}
