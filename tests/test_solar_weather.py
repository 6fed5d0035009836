"""Weather files for the solar model through pvlib's readers: a real PVGIS typical year
drives its cell's expected energy day by day, a CAMS series is taken where it covers a
day, and what is not weather (or too coarse) is refused with its reason."""

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from solar import daily, expected, plants, weather
from tests.support.paths import REPO_ROOT

REAL = REPO_ROOT / "tests" / "data" / "real" / "pvlib_weather"
TMY = REAL / "tmy_45.000_8.000_2005_2023.csv"
CAMS = REAL / "cams_radiation_1min_verbose.csv"


def _plant(engine, plant_id: str, lat: float, lon: float) -> None:
    record = {
        "plant_id": plant_id,
        "farm_id": "FARM-SOW",
        "name": None,
        "lat": lat,
        "lon": lon,
        "kwp": 10.0,
        "ac_kw": 10.0,
        "tilt": 30.0,
        "azimuth": 180.0,
        "commissioned": date(2024, 3, 1),
        "grid_connected": date(2024, 3, 15),
        "make": None,
        "model": None,
        "serial": f"INV-{plant_id}",
        "tariff": "fujian-coal-benchmark",
    }
    plants.upsert_plants(engine, [record])


def test_a_pvgis_typical_year_drives_its_cell_s_expected_energy(
    livestock_engine, tmp_path, agri, monkeypatch
):
    engine = livestock_engine
    hours = weather.read(TMY)
    assert (hours.source, hours.typical, hours.lat, hours.lon) == ("pvgis-tmy", True, 45.0, 8.0)
    assert len(hours.frame) == 8760 and hours.frame.index.year.unique().tolist() == [2001]
    # 2 January of the typical year (2018's) is clear; 5 January is overcast
    noon = hours.frame.loc["2001-01-02 12:00":"2001-01-02 12:00", "ghi"].iloc[0]
    assert noon == 364.0
    _plant(engine, "PV-IT-1", 45.0, 8.0)  # in the file's cell
    _plant(engine, "PV-IT-2", 45.3, 8.4)  # another cell: the assumed climate
    monkeypatch.setenv("AGRI_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("AGRI_DATA_DIR", str(tmp_path))
    done = agri("solar", "weather", "import", TMY)
    assert done.exit_code == 0, done.output
    assert "stored 8760 typical-year hours (pvgis-tmy) for weather cell 450:80" in done.output
    now = datetime(2026, 1, 10, tzinfo=UTC)
    fleet = pd.DataFrame(plants.list_plants(engine))
    for day in range(2, 6):  # the model's days (no readings needed)
        daily.run_day(engine, fleet, date(2026, 1, day), now)
    days = {
        pid: {d["day"]: d for d in daily.plant_days(engine, pid)} for pid in ("PV-IT-1", "PV-IT-2")
    }
    clear, overcast = date(2026, 1, 2), date(2026, 1, 5)
    imported = days["PV-IT-1"]
    assert imported[clear]["modelled_kwh"] > 3 * imported[overcast]["modelled_kwh"] > 0
    assumed = days["PV-IT-2"]  # clear sky x clearness: two January days alike
    assert assumed[clear]["modelled_kwh"] == pytest.approx(
        assumed[overcast]["modelled_kwh"], rel=0.05
    )
    # the in-plane irradiation the model gives a south roof on the clear day is near what
    # the file's own beam and diffuse give by pvlib's transposition (to 10 %)
    frame = weather.for_times(engine, ["450:80"], expected.day_times(clear, "Asia/Shanghai"))[
        "450:80"
    ]
    assert frame["ghi"].max() == pytest.approx(379.0, abs=40)  # 11:00 UTC, interpolated
    day_ghi = frame["ghi"].sum() * 5 / 60 / 1000
    assert day_ghi == pytest.approx(1.964, rel=0.05)  # the file's hourly sums, kWh/m2
    assert imported[clear]["insolation_kwh_m2"] > day_ghi  # tilted towards the winter sun


def test_a_cams_series_is_taken_where_it_covers_a_day(livestock_engine):
    hours = weather.read(CAMS)
    assert (hours.source, hours.typical) == ("cams-radiation", False)
    assert hours.lat == pytest.approx(55.7906) and hours.lon == pytest.approx(12.5251)
    # the file's 1-minute rows of one hour become that hour's mean, at its middle
    assert hours.frame.index.tolist() == [datetime(2020, 6, 1, 12, 30, tzinfo=UTC)]
    assert np.isnan(hours.frame["temp_air"]).all()
    cell, stored = weather.store(livestock_engine, hours)
    assert (cell, stored) == ("558:125", 1)
    times = expected.day_times(date(2020, 6, 1), "UTC")
    # one hour does not cover a day, and the cell has no typical year: the assumed climate
    assert weather.for_times(livestock_engine, [cell], times) == {}


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("cams_radiation_monthly.csv", None, "a CAMS step of 1M: ask for 1h or less"),
        ("prices.csv", "section,key,value\nsolar_tariff,x,0.39\n", "not a weather file"),
        ("tmy_cut.csv", "cut", "a typical year needs its 8760 hours, found 3"),
        ("tmy_garbled.csv", "garbled", "unreadable as pvgis-tmy"),
    ],
)
def test_what_is_not_usable_weather_is_refused_with_its_reason(tmp_path, name, content, reason):
    if content is None:
        path = REAL / name
    elif content in ("cut", "garbled"):
        path = tmp_path / name
        head = TMY.read_text().splitlines()[:20]  # the header and three hours
        path.write_text("\n".join(head if content == "cut" else [*head[:18], "20180101:0200,x"]))
    else:
        path = tmp_path / name
        path.write_text(content)
    with pytest.raises(weather.WeatherError, match=reason):
        weather.read(path)
