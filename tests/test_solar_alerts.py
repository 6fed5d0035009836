"""Solar alert rules (pure, on hand-made days) and the daily job end to end from the
command line: plants and a vendor's export in, days and alerts out."""

import json
from datetime import date, timedelta

import pytest

from solar import alerts
from tests.support.paths import SAMPLE_TILES
from tests.test_solar import PLANT_ROWS, _day_lines, _plants_csv

RULES = alerts.Thresholds(
    offline_daylight_hours=24,
    zero_output_share=0.05,
    zero_output_days=2,
    peer_ratio_floor=0.85,
    pr_floor=0.65,
    performance_window_days=30,
    degradation_pct_per_year=1.5,
    settlement_gap_share=0.05,
)
D0 = date(2026, 6, 1)


def _day(k: int, **over) -> dict:
    day = {
        "day": D0 + timedelta(days=k),
        "energy_kwh": 40.0,
        "expected_kwh": 42.0,
        "modelled_kwh": 42.0,
        "peer_ratio": 1.0,
        "insolation_kwh_m2": 5.0,
        "kwp": 10.0,
        "daylight_h": 11.0,
        "flags": [],
        "serial": "INV-1",
        "registered": "INV-1",
    }
    return {**day, **over}


def test_a_healthy_plant_raises_nothing():
    assert alerts.conditions([_day(k) for k in range(40)], RULES) == {}


def test_offline_after_more_than_a_day_of_daylight_and_says_why_once_known():
    silent = {"energy_kwh": None, "peer_ratio": None, "flags": ["no_data"]}
    two = [_day(k) for k in range(10)] + [_day(10 + k, **silent) for k in range(2)]
    assert alerts.conditions(two, RULES) == {}  # 22 daylight hours
    three = two + [_day(12, **silent)]
    found = alerts.conditions(three, RULES)
    assert set(found) == {"solar_offline"}
    assert found["solar_offline"].params == {"hours": "33", "cause": "unknown"}
    known = three[:-1] + [_day(12, **silent | {"flags": ["comms_gap", "no_data"]})]
    assert "the logger was silent" in alerts.conditions(known, RULES)["solar_offline"]


def test_zero_output_needs_two_days_and_producing_neighbours():
    dark = {"energy_kwh": 0.5, "peer_ratio": 0.01}
    one = [_day(k) for k in range(10)] + [_day(10, **dark)]
    assert "solar_zero_output" not in alerts.conditions(one, RULES)
    two = one + [_day(11, **dark)]
    assert "solar_zero_output" in alerts.conditions(two, RULES)
    cloudy_everywhere = one + [_day(11, energy_kwh=0.5, peer_ratio=None)]
    assert "solar_zero_output" not in alerts.conditions(cloudy_everywhere, RULES)


def test_a_drop_against_the_neighbours_or_a_low_performance_ratio():
    soiled = [_day(k, peer_ratio=0.8, energy_kwh=34.0) for k in range(30)]
    found = alerts.conditions(soiled, RULES)
    assert set(found) == {"solar_performance_drop"}
    assert found["solar_performance_drop"].params["peer"] == "0.80"
    low_pr = [_day(k, energy_kwh=30.0) for k in range(30)]  # 30 / (10 x 5) = 0.60
    assert alerts.conditions(low_pr, RULES)["solar_performance_drop"].params["pr"] == "0.60"


def test_counter_faults_a_swapped_inverter_and_a_string_down_are_the_day_s():
    days = [_day(k) for k in range(5)] + [
        _day(
            5,
            flags=["counter_jump", "energy_from_power", "inverter_swapped", "string_down"],
            serial="INV-9",
        )
    ]
    found = alerts.conditions(days, RULES)
    assert set(found) == {"solar_counter_fault", "solar_inverter_swapped", "solar_string_down"}
    assert found["solar_inverter_swapped"].params == {"serial": "INV-9", "registered": "INV-1"}
    assert alerts.conditions(days + [_day(6)], RULES) == {}  # cleared the next day


def test_degradation_year_on_year_after_two_years():
    days = [_day(k, energy_kwh=40.0 * (1 - 0.03 * k / 365)) for k in range(2 * 365 + 10)]
    assert alerts.degradation_pct_per_year(days[:700]) is None
    rate = alerts.degradation_pct_per_year(days)
    assert rate == pytest.approx(3.0 / (1 - 0.03 * 1.5), rel=0.1)
    assert alerts.conditions(days, RULES) == {}  # the rule reads the carried rate...
    days[-1]["degradation_pct"] = rate
    assert "solar_degradation" in alerts.conditions(days[-30:], RULES)  # ...of a month
    steady = [_day(k) for k in range(2 * 365 + 10)]
    assert alerts.degradation_pct_per_year(steady) == pytest.approx(0.0, abs=1e-9)


def test_the_daily_job_works_out_degradation_on_a_month_s_first_day_and_carries_it(
    livestock_engine, tmp_path
):
    """Two years and a month of a plant's days stored; the daily job of the 1st works the
    year-on-year loss out from them, the 2nd's carries it, and the rules read 30 days."""
    from datetime import UTC, datetime

    import pandas as pd
    from sqlalchemy import insert

    from solar import daily, plants
    from solar.tables import solar_days

    engine = livestock_engine
    path = tmp_path / "plants.csv"
    _plants_csv(path, PLANT_ROWS[:1])
    plants.upsert_plants(engine, plants.parse_plants(path, {"FARM-SOW"}).records)
    first = date(2026, 10, 1)
    start = first - timedelta(days=2 * 365 + 20)
    history = [
        _day((start - D0).days + k, energy_kwh=40.0 * (1 - 0.03 * k / 365))
        for k in range((first - start).days)
    ]
    now = datetime(2026, 10, 3, tzinfo=UTC)
    keep = {c.name for c in solar_days.columns}
    with engine.begin() as conn:
        conn.execute(
            insert(solar_days),
            [
                {k: v for k, v in d.items() if k in keep}
                | {"plant_id": "PV-SOW-1", "readings": 288, "computed_at": now}
                for d in history
            ],
        )
    fleet = pd.DataFrame(plants.list_plants(engine))
    daily.run_day(engine, fleet, first, now)
    daily.run_day(engine, fleet, first + timedelta(days=1), now)
    stored = {d["day"]: d["degradation_pct"] for d in daily.plant_days(engine, "PV-SOW-1")}
    worked_out = alerts.degradation_pct_per_year(history)
    assert worked_out == pytest.approx(3.0 / (1 - 0.03 * 1.5), rel=0.1)
    assert stored[first] == pytest.approx(worked_out, abs=1e-3)
    assert stored[first + timedelta(days=1)] == stored[first]  # carried
    assert stored[first - timedelta(days=1)] is None  # the hand-made history had none


def test_the_daily_job_from_the_command_line_stores_days_and_opens_solar_alerts(
    agri, sqlite_env, tmp_path
):
    assert agri("farms", "import", SAMPLE_TILES / "farms.geojson").exit_code == 0
    plants_csv = tmp_path / "plants.csv"
    _plants_csv(plants_csv)
    done = agri("solar", "plants", "import", plants_csv)
    assert done.exit_code == 0 and "imported 4 new" in done.output
    shown = json.loads(agri("solar", "plants", "show", "PV-SOW-1", "--json").output)
    assert shown["kwp"] == 10.0 and shown["grid_connected"] == "2024-03-15"
    export = ["plant_id,time,serial,lifetime_kwh,power_w,status"]
    first = date(2026, 11, 10)
    for plant_id, _farm, _lat, _lon, kwp, _ac, _tilt, _az, serial in PLANT_ROWS:
        counter = 3_000_000.0
        for k in range(5):
            swapped = plant_id == "PV-FAT-1" and k == 4
            lines, counter = _day_lines(
                plant_id, "INV-NEW" if swapped else serial, kwp, first + timedelta(days=k), counter
            )
            for line in lines[::3]:  # 15-minute export
                item = json.loads(line)
                export.append(
                    f"{plant_id},{item['observed_at']},{item['SN']},{item['WH'] / 1000},"
                    f"{item['W']},{'running' if item['W'] > 0 else 'sleeping'}"
                )
    export_csv = tmp_path / "export.csv"
    export_csv.write_text("\n".join(export) + "\n")
    done = agri("solar", "readings", "import", export_csv)
    assert done.exit_code == 0 and "stored 1920 readings" in done.output, done.output
    last = first + timedelta(days=4)
    refused = agri("solar", "daily", "--through", last)
    assert refused.exit_code == 1 and "no solar table is in force" in refused.output
    for name in ("prices-2020.yaml", "policy-2020.yaml", "solar-2020.yaml"):
        assert (
            agri(
                "prices", "import", SAMPLE_TILES.parent / "collateral" / "defaults" / name
            ).exit_code
            == 0
        )
    done = agri("solar", "daily", "--through", last)
    assert done.exit_code == 0, done.output
    assert "nothing to do" in done.output  # the days were stored by the refused run
    days = json.loads(agri("solar", "days", "PV-FAT-1", "--json").output)
    assert [d["day"] for d in days] == [str(first + timedelta(days=k)) for k in range(5)]
    assert days[-1]["flags"] == ["inverter_swapped"] and days[-1]["serial"] == "INV-NEW"
    assert days[0]["energy_kwh"] == pytest.approx(days[1]["energy_kwh"], rel=1e-3)
    listed = json.loads(agri("alerts", "list", "--open", "--json").output)
    solar = [a for a in listed if a["kind"].startswith("solar_")]
    assert [(a["subject"], a["kind"]) for a in solar] == [("PV-FAT-1", "solar_inverter_swapped")]
    assert solar[0]["code"] == "alert.solar_inverter_swapped"
    text = agri("solar", "days", "PV-SOW-1").output
    assert "2026-11-14" in text and "expected" in text
