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
from pvlib import spa

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


def sun_positions(
    times: pd.DatetimeIndex, lats: np.ndarray, lons: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apparent zenith, zenith and azimuth (degrees; times x places) by pvlib's SPA, as
    ``pvlib.solarposition.get_solarposition`` gives them (sea level, 12 C, 1013.25 hPa):
    the sun's own place is computed once for the times, each place's view of it by the
    same SPA functions for all places at once (one call per place cost 3.5 ms, 1.9 s of a
    fleet's day over Fujian's 500 cells)."""
    seconds = np.array([t.timestamp() for t in times])
    delta_t = spa.calculate_deltat(times.year.to_numpy(), times.month.to_numpy())
    common = (seconds, 0.0, 0.0, 0.0, PRESSURE_HPA, TEMPERATURE_C, delta_t, REFRACTION, 1)
    v, alpha, delta = (x[:, None] for x in spa.solar_position_numpy(*common, sst=True))
    (radius,) = spa.solar_position_numpy(*common, esd=True)
    lat, lon = lats[None, :], lons[None, :]
    hour_angle = spa.local_hour_angle(v, lon, alpha)
    xi = spa.equatorial_horizontal_parallax(radius)[:, None]
    u = spa.uterm(lat)
    x, y = spa.xterm(u, lat, 0.0), spa.yterm(u, lat, 0.0)
    delta_alpha = spa.parallax_sun_right_ascension(x, xi, hour_angle, delta)
    delta_prime = spa.topocentric_sun_declination(delta, x, y, xi, delta_alpha, hour_angle)
    h_prime = spa.topocentric_local_hour_angle(hour_angle, delta_alpha)
    e0 = spa.topocentric_elevation_angle_without_atmosphere(lat, delta_prime, h_prime)
    refracted = spa.atmospheric_refraction_correction(PRESSURE_HPA, TEMPERATURE_C, e0, REFRACTION)
    apparent = spa.topocentric_zenith_angle(spa.topocentric_elevation_angle(e0, refracted))
    gamma = spa.topocentric_astronomers_azimuth(h_prime, delta_prime, lat)
    return apparent, spa.topocentric_zenith_angle(e0), spa.topocentric_azimuth_angle(gamma)


PRESSURE_HPA, TEMPERATURE_C, REFRACTION = 1013.25, 12.0, 0.5667  # get_solarposition's


def _assumed(
    times: pd.DatetimeIndex, zenith: np.ndarray, lats: np.ndarray, lons: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """GHI and air temperature (times x places) of the stated assumption."""
    table = climate()
    months = times.month.to_numpy()
    airmass = pvlib.atmosphere.get_absolute_airmass(pvlib.atmosphere.get_relative_airmass(zenith))
    per_month = {
        int(m): [_linke(float(la), float(lo), int(m)) for la, lo in zip(lats, lons, strict=True)]
        for m in np.unique(months)
    }
    turbidity = np.array([per_month[int(m)] for m in months])
    extra = np.asarray(pvlib.irradiance.get_extra_radiation(times))[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):  # the night's infinite air mass
        sky = pvlib.clearsky.ineichen(zenith, airmass, turbidity, dni_extra=extra)
    clearness = np.array([table[m][0] for m in months])[:, None]
    temp = np.array([table[m][1] for m in months])[:, None]
    ghi = np.nan_to_num(np.asarray(sky["ghi"], dtype=float), nan=0.0)
    return ghi * clearness, np.broadcast_to(temp, ghi.shape)


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
    ``temp_air`` on ``times`` (clear sky times clearness where a cell has none). The sun
    and the weather are worked out per cell for all cells at once, then each plant takes
    its cell's column: (times x plants) arrays through pvlib's functions."""
    weather = weather or {}
    label = cells(plants).to_numpy()
    names = list(dict.fromkeys(label))
    column = {name: k for k, name in enumerate(names)}
    of_plant = np.array([column[name] for name in label])
    frame = pd.DataFrame({"lat": plants["lat"].to_numpy(), "cell": of_plant})
    centre = frame.groupby("cell")["lat"].mean().to_numpy()  # each cell at its plants' mean
    lons = pd.Series(plants["lon"].to_numpy()).groupby(of_plant).mean().to_numpy()
    apparent, zenith, sun_azimuth = sun_positions(times, centre, lons)
    ghi, temp = _assumed(times, apparent, centre, lons)
    ghi, temp = ghi.copy(), np.array(temp)
    for name, here in weather.items():
        if name in column:
            ghi[:, column[name]] = here["ghi"].to_numpy(dtype=float)
            temp[:, column[name]] = here["temp_air"].to_numpy(dtype=float)
    doy = times.day_of_year.to_numpy()[:, None]
    parts = pvlib.irradiance.erbs(ghi, apparent, doy)
    dni, dhi = np.asarray(parts["dni"]), np.asarray(parts["dhi"])
    take = lambda a: a[:, of_plant]  # noqa: E731  (times x cells -> times x plants)
    poa = pvlib.irradiance.get_total_irradiance(
        plants["tilt"].to_numpy()[None, :],
        plants["azimuth"].to_numpy()[None, :],
        take(apparent),
        take(sun_azimuth),
        take(dni),
        take(ghi),
        take(dhi),
    )["poa_global"]
    poa = np.nan_to_num(np.asarray(poa, dtype=float), nan=0.0).clip(min=0.0)
    cell_temp = pvlib.temperature.sapm_cell(poa, take(temp), WIND_M_S, **TEMPERATURE_MODEL)
    pdc0 = plants["kwp"].to_numpy()[None, :] * 1000.0
    dc = np.asarray(pvlib.pvsystem.pvwatts_dc(poa, cell_temp, pdc0, GAMMA_PDC))
    dc = dc * (1 - LOSSES_PERCENT / 100.0)
    inverter_dc = plants["ac_kw"].to_numpy()[None, :] * 1000.0 / ETA_INVERTER
    ac = np.asarray(pvlib.inverter.pvwatts(dc, inverter_dc, ETA_INVERTER), dtype=float)
    return Modelled(times, np.nan_to_num(ac, nan=0.0).clip(min=0.0), poa)


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
