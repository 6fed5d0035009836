"""Solar alert rules: which conditions hold for a plant after the daily job, from its
stored days, and syncing them to the farm's alerts (``telemetry.farm_alerts``: one open
alert per plant and kind, closed when the condition clears; the same lifecycle,
notifications and wording as the livestock alerts).

``conditions`` is pure (a plant's days in, conditions out); the thresholds are rows of
the bank's policy table in force (section ``solar_alert``), handed in by the caller.
"""

import json
from datetime import date, timedelta
from statistics import median
from typing import TypedDict

import numpy as np
from sqlalchemy import Date, Engine, select

from agri_common.sql import query_frame
from agri_common.wording import Said
from solar import settlements
from solar.plants import list_plants
from solar.tables import solar_days
from telemetry import farm_alerts

KINDS = {
    "solar_offline",
    "solar_zero_output",
    "solar_performance_drop",
    "solar_counter_fault",
    "solar_inverter_swapped",
    "solar_string_down",
    "solar_degradation",
    "solar_settlement_gap",
}
COUNTER_FAULTS = ("counter_jump", "counter_backwards", "counter_reset", "counter_frozen")
HISTORY_DAYS = 2 * 365 + 30  # what degradation reads, on a month's first day
# what the daily rules read of each plant (besides the policy's performance window): a
# silence or a run of zero days longer than this is past its threshold already
RECENT_DAYS = 14


class Thresholds(TypedDict):
    """The policy table's ``solar_alert`` rows."""

    offline_daylight_hours: float  # no data for more daylight than this
    zero_output_share: float  # under this share of expected...
    zero_output_days: int  # ...on this many days running, while the peers produce
    peer_ratio_floor: float  # the window's median peer ratio under this
    pr_floor: float  # or its performance ratio under this
    performance_window_days: int
    degradation_pct_per_year: float  # year-on-year loss worse than this (after two years)
    settlement_gap_share: float  # the grid's settled kWh and the counter's differ by more


def conditions(days: list[dict], thresholds: Thresholds) -> dict[str, Said]:
    """The conditions of one plant from its days (oldest first, up to the day judged)."""
    out: dict[str, Said] = {}
    if not days:
        return out
    last = days[-1]
    silent = 0.0
    for d in reversed(days):
        if "no_data" not in d["flags"]:
            break
        silent += d.get("daylight_h") or 0.0
    if silent > thresholds["offline_daylight_hours"]:
        label = next((f for f in ("comms_gap", "outage") if f in last["flags"]), "unknown")
        out["solar_offline"] = Said("alert.solar_offline", hours=f"{silent:.0f}", cause=label)
    run = 0
    for d in reversed(days):
        e, x = d["energy_kwh"], d["expected_kwh"]
        produced = d["peer_ratio"] is not None  # neighbours reported and made energy
        if e is None or not x or e >= thresholds["zero_output_share"] * x or not produced:
            break
        run += 1
    if run >= thresholds["zero_output_days"]:
        out["solar_zero_output"] = Said("alert.solar_zero_output", days=run)
    window = [d for d in days[-thresholds["performance_window_days"] :] if d["energy_kwh"]]
    ratios = [d["peer_ratio"] for d in window if d["peer_ratio"] is not None]
    energy = sum(d["energy_kwh"] for d in window if d["insolation_kwh_m2"])
    reference = sum(d["kwp"] * d["insolation_kwh_m2"] for d in window if d["insolation_kwh_m2"])
    pr = energy / reference if reference > 0 else None
    peer = median(ratios) if len(ratios) >= 7 else None
    if (peer is not None and peer < thresholds["peer_ratio_floor"]) or (
        pr is not None and len(window) >= 7 and pr < thresholds["pr_floor"]
    ):
        out["solar_performance_drop"] = Said(
            "alert.solar_performance_drop",
            days=len(window),
            peer="-" if peer is None else f"{peer:.2f}",
            pr="-" if pr is None else f"{pr:.2f}",
        )
    faults = [f for f in COUNTER_FAULTS if f in last["flags"]]
    if faults:
        out["solar_counter_fault"] = Said("alert.solar_counter_fault", faults=", ".join(faults))
    if "inverter_swapped" in last["flags"]:
        out["solar_inverter_swapped"] = Said(
            "alert.solar_inverter_swapped", serial=last["serial"], registered=last["registered"]
        )
    if "string_down" in last["flags"]:
        out["solar_string_down"] = Said("alert.solar_string_down")
    rate = last.get("degradation_pct")  # carried by the daily job (degradation_by_plant)
    if rate is not None and rate > thresholds["degradation_pct_per_year"]:
        out["solar_degradation"] = Said("alert.solar_degradation", rate=f"{rate:.1f}")
    return out


def degradation_pct_per_year(days: list[dict]) -> float | None:
    """Year-on-year loss (rdtools' year-on-year method on the plant's own record): each
    clean day's measured-to-modelled ratio against the same calendar day a year before;
    the median of those year-on-year changes, in % a year (positive: losing). None until
    the record spans two years."""
    if len(days) < 2 or (days[-1]["day"] - days[0]["day"]).days < 2 * 365:
        return None
    ratio = {
        d["day"]: d["energy_kwh"] / d["modelled_kwh"]
        for d in days
        if d["energy_kwh"]
        and d["modelled_kwh"]
        and not {"no_data", *COUNTER_FAULTS} & set(d["flags"])
    }
    changes = [
        (ratio[day] / ratio[earlier] - 1) * 100
        for day in ratio
        if (earlier := day - timedelta(days=365)) in ratio and ratio[earlier] > 0
    ]
    if len(changes) < 30:
        return None
    return -float(np.median(changes))


def degradation_by_plant(engine: Engine, through: date) -> dict[str, float | None]:
    """plant id -> its year-on-year loss from its days up to ``through`` (None before two
    years): what the daily job works out on a month's first day and carries."""
    query = (
        select(
            solar_days.c.plant_id,
            solar_days.c.day,
            solar_days.c.energy_kwh,
            solar_days.c.modelled_kwh,
            solar_days.c.flags,
        )
        .where(
            solar_days.c.day > through - timedelta(days=HISTORY_DAYS), solar_days.c.day <= through
        )
        .order_by(solar_days.c.plant_id, solar_days.c.day)
    )
    per_plant: dict[str, list[dict]] = {}
    with engine.connect() as c:
        for row in c.execute(query):
            per_plant.setdefault(row.plant_id, []).append(dict(row._mapping))
    return {pid: degradation_pct_per_year(days) for pid, days in per_plant.items()}


RULE_COLUMNS = (
    "energy_kwh",
    "expected_kwh",
    "peer_ratio",
    "insolation_kwh_m2",
    "daylight_h",
    "serial",
    "degradation_pct",
)


def evaluate(engine: Engine, through: date, thresholds: Thresholds, at) -> dict[str, int]:
    """Sync every plant's solar alerts with its days up to ``through`` (the last
    RECENT_DAYS or performance window of them: a day's cost does not grow with the
    record); farm id -> the open conditions found."""
    plants = {p["plant_id"]: p for p in list_plants(engine)}
    since = through - timedelta(days=max(RECENT_DAYS, thresholds["performance_window_days"]))
    # the columns the rules read, flags as their JSON text (most days have none: "[]")
    frame = query_frame(
        engine,
        f"SELECT plant_id, {', '.join(RULE_COLUMNS)}, CAST(flags AS TEXT) FROM solar_days"
        " WHERE day > :since AND day <= :through ORDER BY plant_id, day",
        {"since": since, "through": through},
        ("plant_id", *RULE_COLUMNS, "flags"),
        {"since": Date(), "through": Date()},
        ("plant_id", "serial", "flags"),
    )
    frame = frame.astype(object).where(frame.notna(), None)
    per_plant: dict[str, list[dict]] = {}
    for day in frame.to_dict("records"):
        flags = day["flags"]
        day["flags"] = [] if flags in (None, "[]") else json.loads(flags)
        per_plant.setdefault(day.pop("plant_id"), []).append(day)
    per_farm: dict[str, dict] = {}
    for plant_id, plant in plants.items():
        days = per_plant.get(plant_id, [])
        for d in days:
            d["kwp"], d["registered"] = plant["kwp"], plant["serial"]
        found = per_farm.setdefault(plant["farm_id"], {})
        for kind, detail in conditions(days, thresholds).items():
            found[(plant_id, kind)] = detail
    for (plant_id, kind), detail in settlements.gaps(
        engine, through, thresholds["settlement_gap_share"]
    ).items():
        if plant_id in plants:
            per_farm.setdefault(plants[plant_id]["farm_id"], {})[(plant_id, kind)] = detail
    with engine.begin() as conn:
        for farm_id, active in per_farm.items():
            farm_alerts.sync_alerts(conn, farm_id, active, at, KINDS)
    return {farm: len(active) for farm, active in per_farm.items()}
