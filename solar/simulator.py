"""Rooftop plants' inverter loggers, simulated: what `make demo` publishes through the farm
gateways, and the grid company's statements of the same plants.

Power follows the plant's own model (``solar.expected``: its roof, nameplate and inverter
under the assumed Fujian sky) scaled by each day's weather, shared by neighbours, and a
little noise of its own; the lifetime counter is its integral. A plant's fault is a row of
data (``Fault``): a logger silent for some days while the counter keeps counting, an
inverter replaced (another serial, a counter from zero), soiling that drifts the output
down, or a grid meter that settles less than the plant made. Pure: plants and a period in,
JSON lines and settlement rows out.
"""

import json
import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal

import numpy as np
import pandas as pd
from scipy import signal

from solar import expected

ZONE = "Asia/Shanghai"
FaultKind = Literal["comms_gap", "inverter_swapped", "soiling", "settlement_gap"]


@dataclass(frozen=True)
class Fault:
    """``day``: the period's day it starts (negative: counted back from its last day);
    ``days``: how long a logger stays silent; ``share``: soiling's loss by the period's
    end, or the part of the energy the grid's meter does not settle."""

    kind: FaultKind
    day: int = 0
    days: int = 0
    share: float = 0.0


@dataclass(frozen=True)
class Fleet:
    lines: list[str]  # solar/v1 items as JSON lines, in time order
    energy_kwh: dict[str, dict[date, float]]  # plant -> local day -> what it made


def weather(days: list[date], seed: int) -> dict[date, float]:
    """Each day's sky against the month's usual one (shared by plants 10 km apart): mostly
    near 1, some overcast days, a few bright ones."""
    rng = random.Random(seed)
    return {d: min(1.25, max(0.25, rng.gauss(1.0, 0.25))) for d in days}


def fleet(
    plants: list[dict], first: date, last: date, faults: dict[str, Fault], seed: int = 2026
) -> Fleet:
    """Every plant's 5-minute readings from ``first`` to ``last`` (local days)."""
    days = [first + timedelta(days=k) for k in range(int((last - first).days) + 1)]
    sky = weather(days, seed)
    frame = pd.DataFrame(plants)
    steps = pd.date_range(
        pd.Timestamp(first).tz_localize(ZONE),
        pd.Timestamp(last + timedelta(days=1)).tz_localize(ZONE),
        freq=expected.STEP,
        inclusive="left",
    )
    modelled = expected.model(frame, steps.tz_convert("UTC"))
    local_days = steps.tz_localize(None).normalize().date
    hours = pd.Timedelta(expected.STEP) / pd.Timedelta(hours=1)
    rng = np.random.default_rng(seed)
    per_plant, energy = {}, {}
    for j, plant in enumerate(plants):
        fault = faults.get(plant["plant_id"])
        # passing clouds: slow wobbles (AR(1), about 2 %), not independent jumps per reading
        wobble = signal.lfilter([1.0], [1.0, -0.9], rng.normal(0.0, 0.01, len(steps)))
        scale = np.array([sky[d] for d in local_days]) * (1.0 + wobble)
        if fault is not None and fault.kind == "soiling":
            start = _day(fault, days)
            progress = np.array([max(0, (d - start).days) for d in local_days]) / max(
                1, (last - start).days
            )
            scale *= 1 - fault.share * progress
        power = np.minimum(modelled.ac_w[:, j] * scale, plant["ac_kw"] * 1000.0).clip(min=0.0)
        per_plant[plant["plant_id"]] = power
        made = pd.Series(power * hours / 1000.0).groupby(local_days).sum()
        energy[plant["plant_id"]] = {d: float(made[d]) for d in days}
    lines = []
    counters = {p["plant_id"]: 1000.0 * p["kwp"] * (300 + 40 * k) for k, p in enumerate(plants)}
    serials = {p["plant_id"]: p["serial"] for p in plants}
    for i, at in enumerate(steps):
        local = local_days[i]
        for plant in plants:
            pid = plant["plant_id"]
            fault = faults.get(pid)
            watts = float(per_plant[pid][i])
            if fault is not None and fault.kind == "inverter_swapped":
                if local == _day(fault, days) and at.hour == 0 and at.minute == 0:
                    serials[pid], counters[pid] = f"{plant['serial']}-R", 0.0
            counters[pid] += watts * hours
            if fault is not None and fault.kind == "comms_gap":
                silent = _day(fault, days)
                if silent <= local < silent + timedelta(days=fault.days):
                    continue  # the logger is cut off; the inverter's counter keeps counting
            strings = 2 if plant["kwp"] <= 15 else 3
            volts = 360.0 + 30.0 * min(1.0, watts / (plant["kwp"] * 600.0)) if watts > 0 else 0.0
            item = {
                "plant_id": pid,
                "SN": serials[pid],
                "observed_at": at.isoformat(),
                "W": round(watts, 1),
                "WH": round(counters[pid], 1),
                "St": 4 if watts > 0 else 2,
                "Evt1": 0,
                "DCV": [round(volts, 1)] * strings,
                "DCA": [round(watts / strings / volts, 3) if volts else 0.0] * strings,
            }
            lines.append(json.dumps(item))
    return Fleet(lines, energy)


def settlements(
    fleet_made: Fleet, plants: list[dict], month: date, faults: dict[str, Fault], price: Decimal
) -> list[dict]:
    """The grid company's statement of ``month`` (its first day) for the plants it covers
    whole: what each plant made, less what a faulty meter does not settle."""
    end = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    rows = []
    for plant in plants:
        made = fleet_made.energy_kwh[plant["plant_id"]]
        if not all(d in made for d in _range(month, end)):
            continue
        kwh = sum(made[d] for d in _range(month, end))
        fault = faults.get(plant["plant_id"])
        if fault is not None and fault.kind == "settlement_gap":
            kwh *= 1 - fault.share
        kwh = round(kwh, 1)
        rows.append(
            {
                "plant_id": plant["plant_id"],
                "month": f"{month:%Y-%m}",
                "kwh": kwh,
                "paid_cny": str((Decimal(str(kwh)) * price).quantize(Decimal("0.01"))),
            }
        )
    return rows


def _day(fault: Fault, days: list[date]) -> date:
    return days[fault.day]


def _range(start: date, end: date) -> list[date]:
    return [start + timedelta(days=k) for k in range((end - start).days)]
