"""A plant's energy per local day, from its inverter's lifetime counter.

Summing the counter's differences, not the power readings, is what makes a communications
gap lose nothing: the counter keeps counting while the logger is silent, and the first
reading after the gap carries what was made meanwhile (``catch_up``). The counter is
judged before it is trusted, reading by reading (pure functions, NumPy arrays in):

- a short run of readings below the one before, after which the counter is back
  (``lone_zero`` when they read 0: a logger's default value, not the inverter's) is
  dropped;
- a drop to near zero that stays (``counter_reset``: an inverter replaced or its memory
  cleared) starts a new base: what it counts from there is energy;
- any other drop that stays (``counter_backwards``) counts nothing and rebases;
- a rise more than the plant could have made in the time since the last reading, at its
  DC nameplate with a margin (``counter_jump``), is not summed: that day's energy is then
  unknown (None) unless the power readings cover the day;
- a counter that does not move while the inverter reports power (``counter_frozen``,
  pvanalytics' stale-value test on the counter) leaves the day to its power readings.

Power readings are judged with pvanalytics (stale values, outliers, clipping) and only
flag the day; they give the day's energy only where the counter cannot. An MPPT input at
0 V while another carries a string's voltage (``string_down``) is a string cut, stolen
or failed.
"""

from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pandas as pd
from pvanalytics.features import clipping
from pvanalytics.quality import gaps, outliers

ZONE = "Asia/Shanghai"  # Fujian's plants are settled by local (UTC+8) days
MAX_YIELD_MARGIN = 1.2  # a counter rising faster than nameplate x this is not believed
RESET_SHARE = 0.05  # a drop to below 5 % of the last value is a reset, not a glitch
PRODUCING_SHARE = 0.02  # power above 2 % of nameplate: the inverter says it produces
FROZEN_READINGS = 3  # the counter unchanged over this many readings while producing
# a power reading this share of nameplate away from its neighbours' median, besides the
# Hampel filter's 3 MADs: a smooth passing cloud's wobble is not an outlier
OUTLIER_SHARE = 0.05
GLITCH_RUN = 3  # at most this many readings below the last before it is back
# A counter stands still only when it repeats to the watt-hour: a relative tolerance would
# call a 10 MWh counter's dawn steps of a few Wh "stale".
COUNTER_SAME = {"rtol": 0.0, "atol": 0.5}
GAP_HOURS = 2.0  # readings further apart than this in daylight: a gap
STRING_DOWN_V = 5.0  # an MPPT input under this while another is over STRING_UP_V...
STRING_UP_V = 100.0
STRING_DOWN_READINGS = 3  # ...in this many readings of a day: a string is down


@dataclass
class Counted:
    """What a counter series says, reading by reading."""

    increments_wh: np.ndarray  # energy since the reading before (NaN: not believed)
    kept: np.ndarray  # bool: the reading is used
    flags: dict[int, str] = field(default_factory=dict)  # reading index -> finding


def count(hours: np.ndarray, counter_wh: np.ndarray, kwp: float) -> Counted:
    """Judge a lifetime counter (Wh) read at ``hours`` (increasing, any origin)."""
    n = len(counter_wh)
    kept = ~np.isnan(counter_wh)
    flags: dict[int, str] = {}
    values = counter_wh.copy()
    index = np.flatnonzero(kept)
    # a short run of readings below the one before, after which the counter is back:
    # a glitch (a logger's default 0, a misread register), not energy given back
    k = 1
    while k < len(index):
        before = values[index[k - 1]]
        run = 0
        while k + run < len(index) and values[index[k + run]] < before and run < GLITCH_RUN:
            run += 1
        if run and k + run < len(index) and values[index[k + run]] >= before:
            for j in index[k : k + run]:
                kept[j] = False
                flags[int(j)] = "lone_zero" if values[j] == 0 else "counter_glitch"
        k += max(run, 1)
    increments = np.full(n, np.nan)
    previous = None
    for i in np.flatnonzero(kept):
        if previous is None:
            previous = i
            continue
        step = values[i] - values[previous]
        limit = kwp * 1000.0 * MAX_YIELD_MARGIN * max(hours[i] - hours[previous], 0.0)
        if step < 0:
            if values[i] < RESET_SHARE * values[previous]:
                increments[i] = values[i]
                flags[int(i)] = "counter_reset"
            else:
                increments[i] = 0.0
                flags[int(i)] = "counter_backwards"
        elif step > limit:
            flags[int(i)] = "counter_jump"
        else:
            increments[i] = step
        previous = i
    return Counted(increments, kept, flags)


@dataclass
class Day:
    day: date
    energy_kwh: float | None
    readings: int
    flags: list[str]
    serial: str | None = None
    producing_hours: float = 0.0  # hours with the inverter producing (power readings)
    last: tuple[datetime, float] | None = None  # the day's newest believed counter reading


def days(readings: pd.DataFrame, kwp: float, ac_kw: float) -> list[Day]:
    """Local days of one plant's readings (columns observed_at as aware UTC, lifetime_wh,
    power_w, serial), each with its energy and what was found on it. Energy that a
    reading after a gap carries is the day's of that reading (``catch_up``)."""
    if readings.empty:
        return []
    frame = readings.sort_values("observed_at").reset_index(drop=True)
    local = pd.DatetimeIndex(pd.to_datetime(frame["observed_at"], utc=True)).tz_convert(ZONE)
    hours = ((local - local[0]) / pd.Timedelta(hours=1)).to_numpy(dtype=float)
    counter = frame["lifetime_wh"].to_numpy(dtype=float)
    power = frame["power_w"].to_numpy(dtype=float)
    counted = count(hours, counter, kwp)
    power_flags = power_findings(pd.Series(power, index=local), kwp, ac_kw)
    frozen = _frozen(counter, power, kwp)
    day_of = local.date
    out = []
    for day in sorted(set(day_of)):
        rows = np.flatnonzero(day_of == day)
        flags = sorted(
            {counted.flags[i] for i in rows if i in counted.flags}
            | {power_flags[i] for i in rows if i in power_flags}
            | ({"counter_frozen"} if frozen[rows].any() else set())
            | ({"string_down"} if _frame_strings_down(frame, rows) else set())
        )
        increments = counted.increments_wh[rows]
        believed = counted.kept[rows] & ~np.isnan(increments)
        first = rows[0]
        carried = counted.increments_wh[first]
        gap = first > 0 and hours[first] - hours[first - 1] > GAP_HOURS
        if gap and carried > PRODUCING_SHARE * kwp * 1000:  # not a night's silence
            flags.append("catch_up")
        energy = float(np.nansum(increments[believed])) / 1000.0
        if "counter_jump" in flags or "counter_frozen" in flags:
            energy = _from_power(hours[rows], power[rows])
            flags.append("energy_from_power" if energy is not None else "energy_unknown")
        producing = _producing_hours(hours[rows], power[rows], kwp)
        serials = frame["serial"].iloc[rows].dropna()
        believed_rows = rows[counted.kept[rows]]
        last = None
        if len(believed_rows):
            j = believed_rows[-1]
            last = (frame["observed_at"].iloc[j].to_pydatetime(), float(counter[j]))
        out.append(
            Day(
                day=day,
                energy_kwh=energy,
                readings=len(rows),
                flags=sorted(set(flags)),
                serial=serials.iloc[-1] if len(serials) else None,
                producing_hours=producing,
                last=last,
            )
        )
    return out


def repeats(values: np.ndarray, on: np.ndarray, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """A run of FROZEN_READINGS equal values (to pvanalytics' tolerances by default) with
    the inverter producing in it: what may be stale (pvanalytics judges it)."""
    run = FROZEN_READINGS
    if len(values) < run:
        return False
    lit = np.lib.stride_tricks.sliding_window_view(on, run).any(axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(values, run)
    same = np.isclose(windows, windows[:, :1], rtol=rtol, atol=atol).all(axis=1)
    return bool((lit & same).any())


def spiky(values: np.ndarray, floor: float = 0.0, window: int = 7) -> bool:
    """A value further from its window's median than 3 scaled MADs (what the Hampel
    filter flags; pvanalytics judges it) and than ``floor``."""
    if len(values) < window:
        return False
    windows = np.lib.stride_tricks.sliding_window_view(values, window)
    middle = np.median(windows, axis=1)
    spread = 1.4826 * np.median(np.abs(windows - middle[:, None]), axis=1)
    away = np.abs(windows[:, window // 2] - middle)
    return bool(((away > 3 * spread) & (away > floor)).any())


def doubtful(
    power: np.ndarray,
    counter: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    kwp: np.ndarray,
    plants_at_once: int = 2000,
) -> np.ndarray:
    """For many plants' day readings at once (each plant's [start, stop) in the arrays):
    whether its power repeats, its counter stands still while producing, or its power
    spikes, as ``repeats`` and ``spiky`` say plant by plant. One NumPy pass over a block
    of plants instead of a dozen small calls per plant (0.2 ms a plant, 4 s of a
    fleet's day); a window that straddles two plants counts for neither."""
    out = np.zeros(len(starts), dtype=bool)
    for first in range(0, len(starts), plants_at_once):
        block = slice(first, first + plants_at_once)
        a, b = int(starts[block][0]), int(stops[block][-1])
        lengths = stops[block] - starts[block]
        owner = np.repeat(np.arange(len(lengths)), lengths)  # the plant of each reading
        p, c = power[a:b], counter[a:b]
        threshold = np.repeat(kwp[block] * 1000.0, lengths)
        on = p > PRODUCING_SHARE * threshold
        found = np.zeros(len(lengths), dtype=bool)
        for values, tolerance in ((p, {"rtol": 1e-5, "atol": 1e-8}), (c, COUNTER_SAME)):
            found |= _any_per_plant(_repeat_windows(values, on, tolerance), owner, FROZEN_READINGS)
        found |= _any_per_plant(_spike_windows(p, OUTLIER_SHARE * threshold, 7), owner, 7)
        out[block] = found
    return out


def _repeat_windows(values: np.ndarray, on: np.ndarray, tolerance: dict) -> np.ndarray:
    run = FROZEN_READINGS
    if len(values) < run:
        return np.zeros(0, dtype=bool)
    lit = np.lib.stride_tricks.sliding_window_view(on, run).any(axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(values, run)
    return lit & np.isclose(windows, windows[:, :1], **tolerance).all(axis=1)


def _spike_windows(values: np.ndarray, floor: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window:
        return np.zeros(0, dtype=bool)
    windows = np.lib.stride_tricks.sliding_window_view(values, window)
    middle = np.median(windows, axis=1)
    spread = 1.4826 * np.median(np.abs(windows - middle[:, None]), axis=1)
    away = np.abs(windows[:, window // 2] - middle)
    return (away > 3 * spread) & (away > floor[window // 2 : len(values) - window // 2])


def _any_per_plant(flagged: np.ndarray, owner: np.ndarray, window: int) -> np.ndarray:
    """Per plant: any flagged window lying wholly within its readings."""
    plants = int(owner[-1]) + 1 if len(owner) else 0
    if not len(flagged):
        return np.zeros(plants, dtype=bool)
    first, last = owner[: len(flagged)], owner[window - 1 : window - 1 + len(flagged)]
    inside = flagged & (first == last)
    return np.bincount(first[inside], minlength=plants) > 0


def quick_day(
    day: date,
    hours: np.ndarray,
    counter: np.ndarray,
    power: np.ndarray,
    serials: np.ndarray,
    dcv: tuple[np.ndarray, np.ndarray],
    kwp: float,
    ac_kw: float,
    based: bool,
    screened: bool | None = None,
) -> Day | None:
    """A day that needs no judging, in NumPy alone; None when anything might (a counter
    that steps back, jumps or stands still while producing, a gap, a serial change, power
    that repeats, spikes or clips, a string at 0 V): ``days`` then judges it, with
    pvanalytics. ``based``: the first reading is the newest before the day (its base).
    The screen is wider than the judges (a doubt is enough), and for the day it takes the
    figures are those ``days`` gives (a test holds the two equal); it spares a fleet's
    ordinary day a pandas and pvanalytics pass per plant. ``screened``: what ``doubtful``
    found for the plant's day readings, when it looked for the fleet."""
    own = slice(1 if based else 0, None)
    day_power, day_hours = power[own], hours[own]
    if len(day_hours) < 2 or np.isnan(counter).any() or len(set(serials[own])) > 1:
        return None
    steps, spans = np.diff(counter), np.diff(hours)
    if (steps < 0).any() or (steps > kwp * 1000.0 * MAX_YIELD_MARGIN * spans).any():
        return None
    if (spans > GAP_HOURS).any():
        return None
    if np.isnan(day_power).any() or (day_power >= 0.98 * ac_kw * 1000).any():
        return None
    on = day_power > PRODUCING_SHARE * kwp * 1000
    if screened is not None:  # ``doubtful`` has looked already, for the whole fleet
        if screened:
            return None
    elif (
        repeats(day_power, on)
        or repeats(counter[own], on, **COUNTER_SAME)
        or spiky(day_power, OUTLIER_SHARE * kwp * 1000)
    ):
        return None
    if strings_down(dcv[0][own], dcv[1][own]):
        return None
    day_spans = np.diff(day_hours)
    return Day(
        day=day,
        energy_kwh=float(counter[-1] - counter[0]) / 1000.0,
        readings=len(day_hours),
        flags=[],
        serial=serials[-1],
        producing_hours=float(day_spans[on[1:] & (day_spans <= GAP_HOURS)].sum()),
    )


def power_findings(power: pd.Series, kwp: float, ac_kw: float) -> dict[int, str]:
    """reading index -> finding on the AC power: stale (the same value repeated while
    producing), an outlier (Hampel filter) or clipping at the inverter's rating."""
    findings: dict[int, str] = {}
    valid = power.dropna()
    if len(valid) < 6:
        return findings
    positions = {t: k for k, t in enumerate(power.index)}
    producing = valid > PRODUCING_SHARE * kwp * 1000
    values, none = valid.to_numpy(dtype=float), pd.Series(False, index=valid.index)
    # pvanalytics' rolling tests cost tens of milliseconds a plant: asked only where the
    # same test in NumPy finds something
    stale = (
        gaps.stale_values_diff(valid, window=FROZEN_READINGS) & producing
        if repeats(values, producing.to_numpy())
        else none
    )
    floor = OUTLIER_SHARE * kwp * 1000
    spikes = (  # night spikes too
        outliers.hampel(valid, window=7)
        & (valid - valid.rolling(7, center=True).median()).abs().gt(floor)
        if spiky(values, floor)
        else none
    )
    clipped = valid >= 0.98 * ac_kw * 1000
    if clipped.sum() >= 3:
        try:
            clipped = clipping.geometric(valid) & clipped
        except (ValueError, TypeError):  # pvanalytics needs a regular index
            pass
    for name, mask in (("power_stale", stale), ("power_outlier", spikes), ("clipping", clipped)):
        for t in mask.index[mask.to_numpy(dtype=bool)]:
            findings.setdefault(positions[t], name)
    return findings


def _frame_strings_down(frame: pd.DataFrame, rows: np.ndarray) -> bool:
    if "dcv_min" not in frame:
        return False
    low = frame["dcv_min"].to_numpy(dtype=float)[rows]
    return strings_down(low, frame["dcv_max"].to_numpy(dtype=float)[rows])


def strings_down(dcv_min: np.ndarray, dcv_max: np.ndarray) -> bool:
    """One MPPT input at (nearly) 0 V while another carries a string's voltage, in
    STRING_DOWN_READINGS readings or more (NaN: fewer than two inputs reported)."""
    with np.errstate(invalid="ignore"):
        down = (dcv_min < STRING_DOWN_V) & (dcv_max > STRING_UP_V)
    return int(down.sum()) >= STRING_DOWN_READINGS


def _frozen(counter: np.ndarray, power: np.ndarray, kwp: float) -> np.ndarray:
    """The counter repeating while the inverter reports that it produces."""
    with np.errstate(invalid="ignore"):
        lit = np.nan_to_num(power, nan=0.0) > PRODUCING_SHARE * kwp * 1000
    if not repeats(np.nan_to_num(counter, nan=-1.0), lit, **COUNTER_SAME):
        return np.zeros(len(counter), dtype=bool)
    series = pd.Series(counter)
    stale = gaps.stale_values_diff(series, window=FROZEN_READINGS, **COUNTER_SAME)
    stale = stale.to_numpy(dtype=bool)
    with np.errstate(invalid="ignore"):
        producing = np.nan_to_num(power, nan=0.0) > PRODUCING_SHARE * kwp * 1000
    return stale & producing


def _from_power(hours: np.ndarray, power: np.ndarray) -> float | None:
    """The day's energy from its power readings (trapezoids), when they cover it without
    a gap; None otherwise."""
    ok = ~np.isnan(power)
    if ok.sum() < 2 or np.max(np.diff(hours[ok]), initial=0.0) > GAP_HOURS:
        return None
    return float(np.trapezoid(np.clip(power[ok], 0, None), hours[ok])) / 1000.0


def _producing_hours(hours: np.ndarray, power: np.ndarray, kwp: float) -> float:
    ok = ~np.isnan(power)
    if ok.sum() < 2:
        return 0.0
    h, p = hours[ok], power[ok]
    spans = np.diff(h)
    producing = p[1:] > PRODUCING_SHARE * kwp * 1000
    return float(spans[producing & (spans <= GAP_HOURS)].sum())


def local_day(when: datetime) -> date:
    return pd.Timestamp(when).tz_convert(ZONE).date()
