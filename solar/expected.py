"""What each plant should have made: pvlib's clear sky, transposition to the plant's roof,
cell temperature and a PVWatts-style DC and AC model, for many plants at once.

Weather is a table per time (UTC): global horizontal irradiance and air temperature, from
an imported file (PVGIS, CAMS, NASA POWER through pvlib's readers) or, where none is
imported, the Ineichen clear sky times the month's clearness (``data/fujian_climate.csv``,
an assumption stated there). Plants within one ``CELL_DEG`` cell share the sun's position
and the weather; each has its own tilt, azimuth, nameplate and inverter. The arithmetic is
NumPy over (times x plants): 20,000 plants' day is one pass, not 20,000 model chains.

Each plant is calibrated on its own first ``CALIBRATION_DAYS`` clean days (a factor,
measured over modelled energy, reported with the plant): the model says how a day compares
with others, the plant's record says its level (shading, soiling, a wrong nameplate).
"""

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib

CLIMATE = Path(__file__).parent / "data" / "fujian_climate.csv"
CELL_DEG = 0.1  # about 10 km: plants closer than this share sun and weather
GAMMA_PDC = -0.004  # crystalline silicon: -0.4 % of DC power per degree above 25 C
LOSSES_PERCENT = pvlib.pvsystem.pvwatts_losses()  # PVWatts' defaults (14.1 %)
ETA_INVERTER = 0.96
TEMPERATURE_MODEL = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"][
    "close_mount_glass_glass"  # a farmhouse roof: modules close to the tiles
]
WIND_M_S = 1.0
CALIBRATION_DAYS = 60
STEP = "5min"


@dataclass(frozen=True)
class Modelled:
    """Per plant (columns, in the order given) and time (rows): AC power (W) and in-plane
    irradiance (W/m2), the latter for the performance ratio."""

    times: pd.DatetimeIndex
    ac_w: np.ndarray
    poa_w_m2: np.ndarray


def climate() -> dict[int, tuple[float, float]]:
    """month -> (clearness, air temperature C): the stated assumption."""
    with CLIMATE.open(encoding="utf-8") as f:
        return {
            int(r["month"]): (float(r["clearness"]), float(r["temp_air_c"]))
            for r in csv.DictReader(f)
        }


def day_times(day: pd.Timestamp, zone: str) -> pd.DatetimeIndex:
    """A local day's time steps (their middles), in UTC."""
    start = pd.Timestamp(day).tz_localize(zone) if pd.Timestamp(day).tzinfo is None else day
    steps = pd.date_range(start, start + pd.Timedelta(days=1), freq=STEP, inclusive="left")
    return (steps + pd.Timedelta(STEP) / 2).tz_convert("UTC")


def cells(plants: pd.DataFrame) -> pd.Series:
    """Each plant's weather cell (a label shared by neighbours)."""
    lat = (plants["lat"] / CELL_DEG).round().astype(int)
    lon = (plants["lon"] / CELL_DEG).round().astype(int)
    return lat.astype(str) + ":" + lon.astype(str)


def clear_sky_weather(
    times: pd.DatetimeIndex, lat: float, lon: float, sun: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The assumed weather of a cell: Ineichen clear sky times the month's clearness
    (``sun``: the cell's solar position at ``times``, when the caller has it)."""
    table = climate()
    sun = pvlib.solarposition.get_solarposition(times, lat, lon) if sun is None else sun
    zenith = sun["apparent_zenith"]
    airmass = pvlib.atmosphere.get_absolute_airmass(pvlib.atmosphere.get_relative_airmass(zenith))
    months = times.month
    turbidity = np.array([_linke(lat, lon, m) for m in months])
    sky = pvlib.clearsky.ineichen(
        zenith, airmass, turbidity, dni_extra=pvlib.irradiance.get_extra_radiation(times)
    )
    clearness = np.array([table[m][0] for m in months])
    temp = np.array([table[m][1] for m in months])
    ghi = np.nan_to_num(np.asarray(sky["ghi"], dtype=float), nan=0.0)
    return pd.DataFrame({"ghi": ghi * clearness, "temp_air": temp}, index=times)


@functools.lru_cache(maxsize=65536)
def _linke(lat: float, lon: float, month: int) -> float:
    """The Linke turbidity of a place in a month (pvlib's climatology, read once)."""
    at = pd.DatetimeIndex([pd.Timestamp(2025, month, 15, tz="UTC")])
    return float(pvlib.clearsky.lookup_linke_turbidity(at, lat, lon).iloc[0])


def model(
    plants: pd.DataFrame,
    times: pd.DatetimeIndex,
    weather: dict[str, pd.DataFrame] | None = None,
) -> Modelled:
    """AC power and in-plane irradiance of every plant (rows of ``plants``: lat, lon, kwp,
    ac_kw, tilt, azimuth) at ``times``; ``weather``: cell -> a frame with ``ghi`` and
    ``temp_air`` on ``times`` (clear sky times clearness where a cell has none)."""
    weather = weather or {}
    label = cells(plants).to_numpy()
    ac = np.zeros((len(times), len(plants)))
    poa_out = np.zeros_like(ac)
    doy = times.day_of_year.to_numpy()
    for cell in dict.fromkeys(label):
        members = np.flatnonzero(label == cell)
        lat = float(plants["lat"].iloc[members].mean())
        lon = float(plants["lon"].iloc[members].mean())
        sun = pvlib.solarposition.get_solarposition(times, lat, lon)
        here = weather.get(cell)
        if here is None:
            here = clear_sky_weather(times, lat, lon, sun)
        ghi = here["ghi"].to_numpy(dtype=float)
        zenith = sun["apparent_zenith"].to_numpy()
        parts = pvlib.irradiance.erbs(ghi, zenith, doy)
        group = plants.iloc[members]
        tilt = group["tilt"].to_numpy()[None, :]
        azimuth = group["azimuth"].to_numpy()[None, :]
        poa = pvlib.irradiance.get_total_irradiance(
            tilt,
            azimuth,
            zenith[:, None],
            sun["azimuth"].to_numpy()[:, None],
            np.asarray(parts["dni"])[:, None],
            ghi[:, None],
            np.asarray(parts["dhi"])[:, None],
        )["poa_global"]
        poa = np.nan_to_num(np.asarray(poa, dtype=float), nan=0.0).clip(min=0.0)
        cell_temp = pvlib.temperature.sapm_cell(
            poa, here["temp_air"].to_numpy(dtype=float)[:, None], WIND_M_S, **TEMPERATURE_MODEL
        )
        pdc0 = group["kwp"].to_numpy()[None, :] * 1000.0
        dc = pvlib.pvsystem.pvwatts_dc(poa, cell_temp, pdc0, GAMMA_PDC)
        dc = np.asarray(dc) * (1 - LOSSES_PERCENT / 100.0)
        inverter_dc = group["ac_kw"].to_numpy()[None, :] * 1000.0 / ETA_INVERTER
        out = pvlib.inverter.pvwatts(dc, inverter_dc, ETA_INVERTER)
        ac[:, members] = np.nan_to_num(np.asarray(out, dtype=float), nan=0.0).clip(min=0.0)
        poa_out[:, members] = poa
    return Modelled(times, ac, poa_out)


def daily_kwh(modelled: Modelled, zone: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(AC energy in kWh, in-plane irradiation in kWh/m2) per local day (rows) and plant
    (columns, as modelled)."""
    hours = pd.Timedelta(STEP) / pd.Timedelta(hours=1)
    days = modelled.times.tz_convert(zone).normalize().tz_localize(None).date
    energy = pd.DataFrame(modelled.ac_w * hours / 1000.0).groupby(days).sum()
    insolation = pd.DataFrame(modelled.poa_w_m2 * hours / 1000.0).groupby(days).sum()
    return energy, insolation


def calibration(measured_kwh: np.ndarray, modelled_kwh: np.ndarray) -> float | None:
    """A plant's factor from its first clean days (measured over modelled energy); None
    while it has fewer than a week of them."""
    ok = ~np.isnan(measured_kwh) & (modelled_kwh > 0)
    if ok.sum() < 7:
        return None
    return float(measured_kwh[ok].sum() / modelled_kwh[ok].sum())


def year_hours(zone: str) -> pd.DatetimeIndex:
    """A non-leap year's hours (their middles, UTC): the steps of ``typical_year_kwh``."""
    start = pd.Timestamp("2025-01-01").tz_localize(zone)
    hours = pd.date_range(start, start + pd.DateOffset(years=1), freq="1h", inclusive="left")
    return (hours + pd.Timedelta(minutes=30)).tz_convert("UTC")


def typical_year_kwh(
    plants: pd.DataFrame, zone: str, weather: dict[str, pd.DataFrame] | None = None
) -> np.ndarray:
    """Each plant's modelled AC energy over a typical year (a cell's imported typical
    year on ``year_hours`` where ``weather`` has one, else the assumed weather): the level
    its own record scales."""
    return model(plants, year_hours(zone), weather).ac_w.sum(axis=0) / 1000.0
