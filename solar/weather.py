"""Weather for the expected-energy model, imported from the files an operator downloads for
a county: PVGIS's typical meteorological year (ERA5 and SARAH, which cover Fujian; CSV or
JSON) or CAMS radiation's measured series (satellite, a day or two behind), read with
pvlib's readers. NASA POWER has no file reader in pvlib (only its web API), so it is not
taken. Each file is one place: its hours are stored for the 0.1-degree weather cell that
place falls in (``expected.cells``), as hourly global horizontal irradiance and air
temperature.

For a day, a cell's weather is its measured hours where they cover the day, else its
typical year's same calendar hours, else none (the model's clear sky times the month's
clearness, ``data/fujian_climate.csv``). ``read`` is pure (a file in, hours out); the
rest reads and writes ``solar_weather``.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib
from sqlalchemy import Engine, delete, insert, select

from solar import expected
from solar.tables import solar_weather

TYPICAL_YEAR = 2001  # a typical year's hours are stored in this (non-leap) year
TYPICAL_HOURS = 8760 - 24  # a typical year's hours (a file may lack a day's)
MIN_HOURS = 20  # measured hours a day needs (of 24 and the edges) to be used
MAX_STEP = pd.Timedelta(hours=1)  # coarser series (CAMS monthly sums) say nothing of a day


class WeatherError(ValueError):
    """A file that is not weather this model can take, and why."""


@dataclass(frozen=True)
class Hours:
    """A file's weather: hourly UTC times, GHI (W/m2) and air temperature (C, or NaN)."""

    source: str
    typical: bool
    lat: float
    lon: float
    frame: pd.DataFrame  # index: UTC times; columns ghi, temp_air


def _pvgis_tmy(path: Path) -> tuple[pd.DataFrame, float, float]:
    data, meta = pvlib.iotools.read_pvgis_tmy(path, map_variables=True)
    inputs = meta.get("inputs") or {}
    lat, lon = _place(inputs.get("location") or inputs or meta)
    frame = data[["ghi", "temp_air"]].astype(float)
    # the months come from different years: each hour moves to the typical year
    frame.index = [_typical(t) for t in frame.index]
    return frame[~frame.index.duplicated()].sort_index(), lat, lon


def _cams(path: Path) -> tuple[pd.DataFrame, float, float]:
    data, meta = pvlib.iotools.read_cams(path, label="left", map_variables=True)
    step = pd.Timedelta(meta.get("time_step", "1h").replace("M", "30D"))
    if step > MAX_STEP:
        raise WeatherError(
            f"{path.name}: a CAMS step of {meta.get('time_step')}: ask for 1h or less"
        )
    if str(meta.get("radiation_unit", "W/m^2")) != "W/m^2":
        raise WeatherError(f"{path.name}: irradiation in {meta['radiation_unit']}: ask for W/m2")
    ghi = data["ghi"].astype(float)
    hourly = ghi.resample("1h").mean()  # each hour's mean, labelled by its start
    hourly.index = hourly.index + pd.Timedelta(minutes=30)  # ...and stored at its middle
    frame = pd.DataFrame({"ghi": hourly, "temp_air": np.nan}).dropna(subset=["ghi"])
    return frame, float(meta["latitude"]), float(meta["longitude"])


@dataclass(frozen=True)
class Format:
    name: str
    markers: tuple[str, ...]  # all found in the file's first 4 KB
    typical: bool
    read: Callable[[Path], tuple[pd.DataFrame, float, float]]


FORMATS = (
    Format("pvgis-tmy", ("G(h)", "T2m", "month,year"), True, _pvgis_tmy),
    Format("pvgis-tmy", ('"tmy_hourly"',), True, _pvgis_tmy),
    Format("cams-radiation", ("CAMS Radiation Service",), False, _cams),
)


def read(path: Path) -> Hours:
    """A weather file as hours (WeatherError: not one this model takes, and why)."""
    path = Path(path)
    head = path.read_bytes()[:4096].decode("utf-8", errors="replace")
    found = next((f for f in FORMATS if all(m in head for m in f.markers)), None)
    if found is None:
        names = sorted({f.name for f in FORMATS})
        raise WeatherError(f"{path.name}: not a weather file this takes ({', '.join(names)})")
    try:
        frame, lat, lon = found.read(path)
    except WeatherError:
        raise
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise WeatherError(f"{path.name}: unreadable as {found.name}: {exc}") from None
    if found.typical and len(frame) < TYPICAL_HOURS:
        raise WeatherError(f"{path.name}: a typical year needs its 8760 hours, found {len(frame)}")
    if frame.empty or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise WeatherError(f"{path.name}: no hours, or no place on Earth")
    if (frame["ghi"] < -5).any() or (frame["ghi"] > 1500).any():
        raise WeatherError(f"{path.name}: irradiance outside -5..1500 W/m2")
    return Hours(found.name, found.typical, lat, lon, frame)


def cell_of(lat: float, lon: float) -> str:
    return str(expected.cells(pd.DataFrame({"lat": [lat], "lon": [lon]})).iloc[0])


def store(engine: Engine, hours: Hours) -> tuple[str, int]:
    """Store a file's hours for its cell (replacing what that cell had of the same kind in
    the same span); returns (cell, hours stored)."""
    cell = cell_of(hours.lat, hours.lon)
    frame = hours.frame.assign(ghi=hours.frame["ghi"].clip(lower=0.0))
    rows = [
        {
            "cell": cell,
            "typical": hours.typical,
            "at": at.to_pydatetime(),
            "ghi": float(g),
            "temp_air": None if np.isnan(t) else float(t),
            "source": hours.source,
        }
        for at, g, t in zip(frame.index, frame["ghi"], frame["temp_air"], strict=True)
    ]
    span = (solar_weather.c.cell == cell) & (solar_weather.c.typical == hours.typical)
    span &= solar_weather.c.at.between(rows[0]["at"], rows[-1]["at"])
    with engine.begin() as conn:
        conn.execute(delete(solar_weather).where(span))
        conn.execute(insert(solar_weather), rows)
    return cell, len(rows)


def for_times(
    engine: Engine, cells: list[str], times: pd.DatetimeIndex, measured: bool = True
) -> dict[str, pd.DataFrame]:
    """cell -> weather on ``times`` (ghi, temp_air) for the cells that have some: measured
    hours where at least MIN_HOURS of them span the times (unless ``measured`` is False),
    else the typical year's."""
    start = times[0].to_pydatetime() - timedelta(hours=1)
    end = times[-1].to_pydatetime() + timedelta(hours=1)
    out: dict[str, pd.DataFrame] = {}
    found = _rows(engine, cells, False, start, end) if measured else {}
    wanted_typical = [c for c in cells if len(found.get(c, ())) < MIN_HOURS]
    shifted = None
    if wanted_typical:
        # the same hours of the typical year (times crossing a new year: its two ends and
        # all between, read once)
        lo, hi = sorted(_typical(t) for t in (times[0], times[-1]))
        span = (lo - timedelta(hours=1), hi + timedelta(hours=1))
        shifted = _rows(engine, wanted_typical, True, *span)
    in_typical_year = None
    for cell in cells:
        rows = found.get(cell, [])
        at = times
        if len(rows) < MIN_HOURS:
            rows = (shifted or {}).get(cell, [])
            if in_typical_year is None and len(rows) >= 2:
                in_typical_year = pd.DatetimeIndex([_typical(t) for t in times])
            at = in_typical_year
        if len(rows) < 2:
            continue
        out[cell] = _on(rows, at, times)
    return out


def _rows(engine: Engine, cells: list[str], typical: bool, start, end) -> dict[str, list]:
    query = (
        select(
            solar_weather.c.cell, solar_weather.c.at, solar_weather.c.ghi, solar_weather.c.temp_air
        )
        .where(
            solar_weather.c.cell.in_(cells),
            solar_weather.c.typical.is_(typical),
            solar_weather.c.at.between(start, end),
        )
        .order_by(solar_weather.c.cell, solar_weather.c.at)
    )
    out: dict[str, list] = {}
    with engine.connect() as c:
        for cell, at, ghi, temp in c.execute(query):
            out.setdefault(cell, []).append((at, ghi, temp))
    return out


def _on(rows: list, at: pd.DatetimeIndex, times: pd.DatetimeIndex) -> pd.DataFrame:
    """Hourly rows interpolated to the model's times (``at``: the same instants in the rows'
    year); a temperature the file lacks is the month's climate table's."""
    seconds = np.array([r[0].timestamp() for r in rows])
    want = np.array([t.timestamp() for t in at])
    ghi = np.interp(want, seconds, [r[1] for r in rows])
    temps = np.array([np.nan if r[2] is None else r[2] for r in rows])
    if np.isnan(temps).all():
        table = expected.climate()
        temp = np.array([table[m][1] for m in times.month])
    else:
        ok = ~np.isnan(temps)
        temp = np.interp(want, seconds[ok], temps[ok])
    return pd.DataFrame({"ghi": ghi, "temp_air": temp}, index=times)


def _typical(t: pd.Timestamp) -> pd.Timestamp:
    """The same calendar instant in TYPICAL_YEAR (29 February as the 28th)."""
    t = pd.Timestamp(t).tz_convert("UTC")
    day = 28 if (t.month, t.day) == (2, 29) else t.day
    return t.replace(year=TYPICAL_YEAR, day=day)


def _place(place: dict) -> tuple[float, float]:
    lat = place.get("latitude", place.get("Latitude"))
    lon = place.get("longitude", place.get("Longitude"))
    if lat is None or lon is None:
        raise WeatherError("the file does not say where it is (latitude, longitude)")
    return float(lat), float(lon)
