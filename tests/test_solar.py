"""Rooftop solar plants: the registry, inverter readings through the real farm transport
(agent, Mosquitto, ingester), a vendor's export, and the daily job's energy, expected
energy, peers and flags."""

import json
import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from solar import daily, energy, plants, vendor_export
from solar.tables import solar_readings
from telemetry import gateways
from tests.support.livestock import GATEWAY_FARMS, ingesting
from tests.support.paths import REPO_ROOT
from tests.test_gateway_agent import Agent

DAY = date(2026, 11, 20)
ZONE = "Asia/Shanghai"
PLANT_ROWS = [
    # plant_id, farm, lat, lon, kwp, ac_kw, tilt, azimuth, serial
    ("PV-SOW-1", "FARM-SOW", 25.060, 117.950, 10.0, 10.0, 20, 180, "INV-A1"),
    ("PV-SOW-2", "FARM-SOW", 25.065, 117.955, 12.0, 10.0, 18, 175, "INV-A2"),
    ("PV-FAT-1", "FARM-FAT", 25.070, 117.960, 8.0, 8.0, 22, 185, "INV-B1"),
    ("PV-FAT-2", "FARM-FAT", 25.075, 117.945, 15.0, 15.0, 20, 190, "INV-B2"),
]


def _plants_csv(path, rows=PLANT_ROWS, chinese: bool = False) -> None:
    header = (
        "电站编号,农户编号,纬度,经度,装机容量,逆变器额定功率,倾角,方位角,投运日期,并网日期,逆变器序列号,电价方案"
        if chinese
        else ",".join(plants.REQUIRED)
    )
    lines = [header]
    for p, f, lat, lon, kwp, ac, tilt, az, serial in rows:
        lines.append(
            f"{p},{f},{lat},{lon},{kwp},{ac},{tilt},{az},2024年3月1日,2024/3/15,{serial},"
            "fujian-coal-benchmark"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _register(engine, tmp_path) -> None:
    path = tmp_path / "plants.csv"
    _plants_csv(path)
    result = plants.parse_plants(path, set(GATEWAY_FARMS.values()))
    assert result.errors == []
    plants.upsert_plants(engine, result.records)


def _day_lines(plant_id: str, serial: str, kwp: float, day: date, start_wh: float, scale=1.0):
    """A day of 5-minute readings: power on a clear-day bell, the counter its integral."""
    lines, counter = [], start_wh
    start = pd.Timestamp(day).tz_localize(ZONE)
    for k in range(288):
        at = start + pd.Timedelta(minutes=5 * k)
        hour = at.hour + at.minute / 60
        power = max(0.0, math.sin(math.pi * (hour - 6.5) / 11)) * 0.8 * kwp * 1000 * scale
        counter += power * 5 / 60
        item = {
            "plant_id": plant_id,
            "SN": serial,
            "observed_at": at.isoformat(),
            "W": round(power, 1),
            "WH": round(counter, 1),
            "St": 4 if power > 0 else 2,
            "Evt1": 0,
            "DCV": [380.0, 381.0] if power > 0 else [0.0, 0.0],
            "DCA": [power / 760, power / 762] if power > 0 else [0.0, 0.0],
        }
        lines.append(json.dumps(item))
    return lines, counter


def test_plants_import_takes_chinese_columns_and_refuses_bad_rows_with_reasons(
    livestock_engine, tmp_path
):
    path = tmp_path / "电站.csv"
    rows = [
        *PLANT_ROWS[:2],
        ("PV-NORTH", "FARM-SOW", 25.0, 117.9, 10.0, 10.0, 20, 0, "X"),  # from south, not north
        ("PV-NOFARM", "FARM-NONE", 25.0, 117.9, 10.0, 10.0, 20, 180, "Y"),
        ("PV-WATTS", "FARM-SOW", 25.0, 117.9, 10000.0, 10.0, 20, 180, "Z"),  # W for kW
    ]
    _plants_csv(path, rows, chinese=True)
    path.write_bytes(path.read_text(encoding="utf-8").encode("gb18030"))  # Excel's default
    result = plants.parse_plants(path, set(GATEWAY_FARMS.values()))
    assert [r["plant_id"] for r in result.records] == ["PV-SOW-1", "PV-SOW-2"]
    assert result.records[0]["commissioned"] == date(2024, 3, 1)
    assert result.records[0]["azimuth"] == 180.0
    assert len(result.errors) == 3
    assert "line 4: azimuth 0.0 faces north" in result.errors[0]
    assert "farm 'FARM-NONE' is not registered" in result.errors[1]
    assert "kwp 10000.0 is outside" in result.errors[2]
    as_json = tmp_path / "plants.json"
    as_json.write_text(
        json.dumps(
            [{**result.records[0], "commissioned": "2024-03-01", "grid_connected": "2024-03-15"}]
        )
    )
    again = plants.parse_plants(as_json, set(GATEWAY_FARMS.values()))
    assert again.errors == [] and again.records == result.records[:1]


def test_inverter_readings_through_agent_broker_and_ingester_are_stored_raw_and_a_day_valued(
    livestock_engine, broker, tmp_path
):
    engine = livestock_engine
    _register(engine, tmp_path)
    lines, counters = [], {}
    for plant_id, farm, _lat, _lon, kwp, _ac, _tilt, _az, serial in PLANT_ROWS:
        if farm != "FARM-SOW":
            continue
        day_lines, counters[plant_id] = _day_lines(plant_id, serial, kwp, DAY, 1_000_000.0)
        lines += day_lines
    # a plant of another farm sent through this farm's gateway: refused, kept as a reject
    stray = json.loads(lines[150]) | {"plant_id": "PV-FAT-1", "SN": "INV-B1"}
    lines.append(json.dumps(stray))
    agent = Agent(broker, "GW-SOW-1", tmp_path / "agent", spool=False)
    with ingesting(engine, broker):
        agent.start(stdin="\n".join(lines) + "\n")
        assert agent.process.wait(120) == 0, agent.log.read_text()[-3000:]
    with engine.connect() as c:
        stored = c.execute(solar_readings.select().order_by(solar_readings.c.observed_at)).all()
    assert len(stored) == 576
    first = stored[0]._mapping
    assert first["source"] == "gateway" and first["gateway_id"] == "GW-SOW-1"
    assert json.loads(first["raw"])["SN"] in ("INV-A1", "INV-A2")
    refused = [r for r in gateways.list_rejects(engine, "GW-SOW-1") if "PV-FAT-1" in r["reason"]]
    assert len(refused) == 1 and "registered to farm 'FARM-FAT'" in refused[0]["reason"]
    assert refused[0]["item"]["plant_id"] == "PV-FAT-1"

    summary = daily.run(engine, DAY, datetime(2026, 11, 21, 1, tzinfo=UTC))
    assert summary.days == [DAY]
    days = {r["plant_id"]: r for r in (daily.plant_days(engine, p[0])[0] for p in PLANT_ROWS)}
    one = days["PV-SOW-1"]
    # the counter's rise over the day, to the watt-hour (the first reading's increment is
    # the night's zero)
    first_wh = json.loads(lines[0])["WH"]
    assert one["energy_kwh"] == pytest.approx((counters["PV-SOW-1"] - first_wh) / 1000, abs=1e-3)
    assert one["flags"] == [] and one["readings"] == 288
    assert 0 < one["expected_kwh"] and 0 < one["performance_ratio"] < 2
    assert days["PV-FAT-1"]["flags"] == ["no_data"] and days["PV-FAT-1"]["energy_kwh"] is None
    assert one["availability"] == pytest.approx(1.0, abs=0.15)


def test_the_counter_s_faults_are_handled_and_flagged_never_summed_blindly():
    hours = np.arange(0, 24, 1.0)
    produced = np.clip(np.sin(np.pi * (hours - 6) / 12), 0, None) * 5000  # Wh per hour
    counter = 1_000_000 + np.cumsum(produced)
    clean = energy.count(hours, counter, kwp=6.0)
    assert np.nansum(clean.increments_wh) == pytest.approx(produced[1:].sum())

    glitch = counter.copy()
    glitch[10] = 0.0  # a logger's default value, once
    count = energy.count(hours, glitch, kwp=6.0)
    assert count.flags == {10: "lone_zero"}
    assert np.nansum(count.increments_wh) == pytest.approx(produced[1:].sum())

    reset = counter.copy()
    reset[12:] = np.cumsum(produced[12:])  # inverter replaced at 12:00, a new counter
    count = energy.count(hours, reset, kwp=6.0)
    assert count.flags == {12: "counter_reset"}
    assert np.nansum(count.increments_wh) == pytest.approx(produced[1:].sum())

    backwards = counter.copy()
    backwards[15:] -= 20_000.0  # a counter that gave back 20 kWh, counting on from there
    count = energy.count(hours, backwards, kwp=6.0)
    assert count.flags == {15: "counter_backwards"}
    assert np.nansum(count.increments_wh) == pytest.approx(produced[1:].sum() - produced[15])

    jump = counter.copy()
    jump[14:] += 50_000.0  # 50 kWh in an hour from a 6 kWp plant
    count = energy.count(hours, jump, kwp=6.0)
    assert count.flags == {14: "counter_jump"} and math.isnan(count.increments_wh[14])


def test_a_frozen_counter_leaves_the_day_to_the_power_readings():
    start = pd.Timestamp(DAY).tz_localize(ZONE)
    times = pd.date_range(start, periods=288, freq="5min")
    hour = (times.hour + times.minute / 60).to_numpy()
    power = np.clip(np.sin(np.pi * (hour - 6.5) / 11), 0, None) * 4000.0
    counter = 2e6 + np.cumsum(power * 5 / 60)
    counter[130:170] = counter[129]  # the register stuck for over three hours at noon
    frame = pd.DataFrame(
        {
            "observed_at": times.tz_convert(UTC),
            "lifetime_wh": counter,
            "power_w": power,
            "serial": "S",
        }
    )
    (day,) = energy.days(frame, kwp=5.0, ac_kw=5.0)
    assert "counter_frozen" in day.flags and "energy_from_power" in day.flags
    assert day.energy_kwh == pytest.approx(np.trapezoid(power, dx=5 / 60) / 1000, rel=1e-6)


def _pvops(site: str) -> pd.DataFrame:
    """Sandia pvOps' real cumulative-energy example (kWh): R23 hourly, R27 15-minute."""
    path = REPO_ROOT / "tests/data/real/pvops_cumulative_energy/example_prod_data_cumE2.csv"
    frame = pd.read_csv(path, parse_dates=["Date"], date_format="%m/%d/%Y %H:%M")
    frame = frame[(frame.randid == site) & frame.Date.notna()]
    return pd.DataFrame(
        {
            "observed_at": frame.Date.dt.tz_localize(ZONE).dt.tz_convert(UTC),
            "lifetime_wh": frame.Energy.to_numpy() * 1000,
            "power_w": np.nan,
            "serial": site,
            "irradiance": frame.Irradiance.to_numpy(),
        }
    )


def test_a_real_counter_s_lone_zeros_gap_and_catch_up_lose_no_energy():
    """pvOps' example plants (real counters): R23 reads 0 twice on 2018-07-19 and once on
    07-27; R27 reads 0 three times and then is silent for 23 days, after which its counter
    has carried on (56,590 kWh, about 2,460 kWh a day, its usual day)."""
    for site, kwp, zeros in (("R23", 2500.0, 3), ("R27", 500.0, 3)):
        frame = _pvops(site)
        found = energy.days(frame, kwp, kwp)
        lone = sum("lone_zero" in d.flags for d in found)
        assert lone >= 2, site
        counted = energy.count(
            ((frame.observed_at - frame.observed_at.iloc[0]) / pd.Timedelta(hours=1)).to_numpy(),
            frame.lifetime_wh.to_numpy(),
            kwp,
        )
        assert sum(v == "lone_zero" for v in counted.flags.values()) == zeros, site
        assert not {"counter_jump", "counter_reset"} & set(counted.flags.values()), site
        # every kWh the counter rose is on some day, none twice
        kept = frame.lifetime_wh.to_numpy()[counted.kept]
        total = sum(d.energy_kwh for d in found)
        assert total == pytest.approx((kept[-1] - kept[0]) / 1000, rel=1e-9), site
    r27 = {d.day: d for d in energy.days(_pvops("R27"), 500.0, 500.0)}
    catch = r27[date(2018, 10, 12)]
    assert "catch_up" in catch.flags and catch.energy_kwh > 56_590
    r23 = {d.day: d.energy_kwh for d in energy.days(_pvops("R23"), 2500.0, 2500.0)}
    typical = np.median([v for k, v in r23.items() if k.month == 7 and k.day < 31])
    # 2018-07-21: the counter stood still from 07:00 to 13:00 in daylight
    assert r23[date(2018, 7, 21)] < 0.4 * typical


def test_pvanalytics_labelled_faults_are_flagged():
    """NREL PVDAQ inverter series with labelled stale values and outliers (pvanalytics'
    test data, CC BY 4.0), through power_findings."""
    folder = REPO_ROOT / "tests/data/real/pvanalytics_pvdaq"
    stale = pd.read_csv(folder / "ac_power_inv_2173_stale_data.csv", index_col=0, parse_dates=True)
    found = energy.power_findings(stale["value_normalized"] * 1000, kwp=1.0, ac_kw=2.0)
    flagged = np.zeros(len(stale), dtype=bool)
    flagged[[k for k, v in found.items() if v == "power_stale"]] = True
    labelled = stale["stale_data_mask"].to_numpy(dtype=bool)
    producing = (stale["value_normalized"] > energy.PRODUCING_SHARE).to_numpy()
    recall = (flagged & labelled & producing).sum() / (labelled & producing).sum()
    assert recall > 0.9
    assert (flagged & ~labelled).sum() < 0.05 * flagged.sum()

    spikes = pd.read_csv(folder / "ac_power_inv_7539_outliers.csv", index_col=0, parse_dates=True)
    found = energy.power_findings(spikes["value_normalized"] * 1000, kwp=1.0, ac_kw=2.0)
    flagged = {k for k, v in found.items() if v == "power_outlier"}
    labelled = {int(k) for k in np.flatnonzero(spikes["outlier"].to_numpy(dtype=bool))}
    assert len(flagged & labelled) >= 0.8 * len(labelled)  # 5 of the 6 labelled
    assert len(flagged - labelled) < 0.05 * len(spikes)


def test_expected_energy_follows_a_real_system_after_calibration():
    """PVDAQ system 50 (NREL, Golden CO: 39.7406 N, 105.1775 W, tilt 45, azimuth 158;
    CC BY 4.0): a year of 15-minute AC power against our model on the NSRDB PSM3 GHI of
    its site, calibrated on its first 60 full days. Stated band: the median day within
    0.9-1.2 of expected, at least 70 % of days within +/- 20 %; the day with no output
    in the record is found."""
    from solar import expected

    folder = REPO_ROOT / "tests/data/real/pvanalytics_pvdaq"
    ac = pd.read_csv(folder / "system_50_ac_power_2.csv.gz", index_col=0)
    ac.index = pd.to_datetime(ac.index, utc=True)
    sky = pd.read_csv(folder / "system_50_psm3.csv.gz", index_col=0)
    sky.index = pd.to_datetime(sky.index, utc=True)
    site = pd.DataFrame(
        {
            "lat": [39.7406],
            "lon": [-105.1775],
            "kwp": [3.6],
            "ac_kw": [3.4],
            "tilt": [45.0],
            "azimuth": [158.0],
        }
    )
    times = pd.date_range(sky.index[0], sky.index[-1], freq=expected.STEP)
    weather = (
        sky[["ghi", "temp_air"]].reindex(times.union(sky.index)).interpolate("time").reindex(times)
    )
    modelled = expected.model(site, times, {expected.cells(site).iloc[0]: weather})
    zone = "America/Denver"
    modelled_kwh, _ = expected.daily_kwh(modelled, zone)
    local = ac.index.tz_convert(zone).date
    measured = (ac["ac_power_2"].clip(lower=0) * 0.25 / 1000).groupby(local).sum()
    full = ac["ac_power_2"].groupby(local).count() >= 90
    days = pd.DataFrame({"modelled": modelled_kwh.iloc[:, 0], "measured": measured})[full].dropna()
    factor = expected.calibration(days.measured.to_numpy()[:60], days.modelled.to_numpy()[:60])
    assert 0.7 < factor < 1.3
    ratio = days.measured / (days.modelled * factor)
    assert 0.9 < ratio.median() < 1.2
    assert ((ratio - 1).abs() < 0.2).mean() >= 0.7
    dead = ratio[ratio < 0.05].index
    assert date(2011, 10, 26) in set(dead)


def test_a_vendor_export_becomes_the_same_record_as_live_readings(livestock_engine, tmp_path):
    engine = livestock_engine
    _register(engine, tmp_path)
    export = tmp_path / "导出.csv"
    export.write_text(
        "电站编号,采集时间,逆变器序列号,累计发电量(kWh),有功功率(kW),状态\n"
        "PV-SOW-1,2026-11-19T10:00:00+08:00,INV-A1,1000.5,4.2,并网\n"
        "PV-SOW-1,2026-11-19T10:05:00+08:00,INV-A1,1000.85,4.3,并网\n"
        "PV-SOW-1,2026-11-19 10:10:00,INV-A1,1001.2,4.1,并网\n"
        "PV-SOW-1,2026-11-19T10:15:00+08:00,INV-A1,1001.55,4.0,sunbathing\n"
        "PV-NONE,2026-11-19T10:15:00+08:00,INV-Q,5.0,1.0,并网\n",
        encoding="utf-8",
    )
    result = vendor_export.import_export(engine, export)
    assert result.stored == 2
    assert "line 4: time '2026-11-19 10:10:00' has no zone" in result.errors[0]
    assert "line 5: status 'sunbathing'" in result.errors[1]
    assert "plant 'PV-NONE' is not registered" in result.errors[2]
    again = vendor_export.import_export(engine, export, zone="Asia/Shanghai")
    assert again.stored == 1 and again.duplicates == 2  # the zoned time, once
    with engine.connect() as c:
        rows = c.execute(solar_readings.select().order_by(solar_readings.c.observed_at)).all()
    assert [r.lifetime_wh for r in rows] == [1_000_500.0, 1_000_850.0, 1_001_200.0]
    assert rows[0].power_w == 4200.0 and rows[0].status == 4 and rows[0].source == "import"
    assert rows[2].observed_at == datetime(2026, 11, 19, 2, 10, tzinfo=UTC)


def test_a_silent_logger_whose_counter_catches_up_is_a_comms_gap_not_an_outage(
    livestock_engine, tmp_path
):
    engine = livestock_engine
    _register(engine, tmp_path)
    now = datetime(2026, 11, 25, 1, tzinfo=UTC)
    counters = {p[0]: 500_000.0 for p in PLANT_ROWS}
    rows = []
    for k in range(4):
        day = DAY + timedelta(days=k)
        for plant_id, farm, _lat, _lon, kwp, _ac, _tilt, _az, serial in PLANT_ROWS:
            lines, counters[plant_id] = _day_lines(plant_id, serial, kwp, day, counters[plant_id])
            silent = plant_id == "PV-SOW-1" and k in (1, 2)
            off = plant_id == "PV-FAT-2" and k in (1, 2)
            if off:  # an outage: the inverter made nothing, the counter stood still
                counters[plant_id] = json.loads(lines[0])["WH"]
            if silent or off:
                continue
            rows += [
                vendor_export.payloads.reading_row(
                    vendor_export.payloads.READINGS.check(json.loads(line), now),
                    farm,
                    "import",
                    "import",
                    now,
                )
                for line in lines
            ]
    with engine.begin() as conn:
        vendor_export.payloads.store_readings(conn, rows)
    daily.run(engine, DAY + timedelta(days=3), now)
    sow = {r["day"]: r for r in daily.plant_days(engine, "PV-SOW-1")}
    fat = {r["day"]: r for r in daily.plant_days(engine, "PV-FAT-2")}
    gap = [DAY + timedelta(days=1), DAY + timedelta(days=2)]
    assert [sow[d]["flags"] for d in gap] == [["comms_gap", "no_data"]] * 2
    assert [fat[d]["flags"] for d in gap] == [["no_data", "outage"]] * 2
    back = sow[DAY + timedelta(days=3)]
    assert "catch_up" in back["flags"] and back["energy_kwh"] > 2.5 * sow[DAY]["energy_kwh"]
    # the neighbours within 10 km made the same, so the peer ratio says 1 on a normal day
    assert sow[DAY]["peer_ratio"] == pytest.approx(1.0, abs=0.25)


def test_the_quick_day_gives_what_the_careful_one_does_and_leaves_it_every_doubt():
    """The daily job takes an ordinary day in NumPy (energy.quick_day) and sends any day
    with something to judge through energy.days and pvanalytics: the figures agree."""
    lines, _ = _day_lines("P", "S", 10.0, DAY, 3_000_000.0)
    items = [json.loads(line) for line in lines]
    frame = pd.DataFrame(
        {
            "observed_at": pd.to_datetime([i["observed_at"] for i in items], utc=True),
            "lifetime_wh": [i["WH"] for i in items],
            "power_w": [i["W"] for i in items],
            "serial": "S",
            "dcv_min": [min(i["DCV"]) for i in items],
            "dcv_max": [max(i["DCV"]) for i in items],
        }
    )

    def quick(f: pd.DataFrame):
        hours = ((f.observed_at - f.observed_at.iloc[0]) / pd.Timedelta(hours=1)).to_numpy()
        columns = (f.lifetime_wh.to_numpy(float), f.power_w.to_numpy(float))
        dcv = (f.dcv_min.to_numpy(float), f.dcv_max.to_numpy(float))
        return energy.quick_day(
            DAY, hours, *columns, f.serial.to_numpy(object), dcv, 10.0, 10.0, False
        )

    (careful,) = energy.days(frame, 10.0, 10.0)
    fast = quick(frame)
    assert fast is not None and careful.flags == []
    assert fast.energy_kwh == pytest.approx(careful.energy_kwh, abs=1e-9)
    assert (fast.readings, fast.serial) == (careful.readings, careful.serial)
    assert fast.producing_hours == pytest.approx(careful.producing_hours)
    doubts = {
        "a lone zero": frame.assign(lifetime_wh=frame.lifetime_wh.where(frame.index != 140, 0)),
        "a frozen counter": frame.assign(
            lifetime_wh=frame.lifetime_wh.where(~frame.index.isin(range(140, 150)), 3_030_000)
        ),
        "a spike": frame.assign(power_w=frame.power_w.where(frame.index != 150, 9_900.0)),
        "a new inverter": frame.assign(serial=["S"] * 200 + ["T"] * 88),
        "a string down": frame.assign(dcv_min=frame.dcv_min.where(frame.index < 150, 0.0)),
        "a gap": frame.drop(index=range(100, 140)),
    }
    for what, dirty in doubts.items():
        assert quick(dirty.reset_index(drop=True)) is None, what


def test_the_fleet_screen_finds_per_plant_what_the_plant_screens_find():
    """energy.doubtful looks at many plants' readings in one pass: per plant, the same
    answer as repeats and spiky plant by plant, and no window across two plants."""
    lines, _ = _day_lines("P", "S", 10.0, DAY, 3_000_000.0)
    power = np.array([json.loads(line)["W"] for line in lines])
    counter = np.array([json.loads(line)["WH"] for line in lines])
    stuck = power.copy()
    stuck[140:144] = stuck[140]
    frozen = counter.copy()
    frozen[150:154] = frozen[150]
    spike = power.copy()
    spike[150] = 9_900.0
    small = power[100:120]  # a short day ending on two equal values...
    tail = np.concatenate([small[:-2], [1234.5] * 2])
    plants = [
        (power, counter),
        (stuck, counter),
        (power, frozen),
        (spike, counter),
        (tail, counter[100:120]),
        (np.concatenate([[tail[-1]], power[1:]]), counter),  # ...the next starts on: no run
    ]
    kwp = np.full(len(plants), 10.0)
    lengths = np.array([len(p) for p, _ in plants])
    stops = np.cumsum(lengths)
    found = energy.doubtful(
        np.concatenate([p for p, _ in plants]),
        np.concatenate([c for _, c in plants]),
        stops - lengths,
        stops,
        kwp,
        plants_at_once=4,  # two blocks
    )
    expected = []
    for p, c in plants:
        on = p > energy.PRODUCING_SHARE * 10_000
        expected.append(
            energy.repeats(p, on)
            or energy.repeats(c, on, **energy.COUNTER_SAME)
            or energy.spiky(p, energy.OUTLIER_SHARE * 10_000)
        )
    assert found.tolist() == expected
    # the short day's two values and the next day's first are a run across two plants:
    # not the short day's (the last plant's counter stands still at night while its first
    # reading says it produces: a doubt of its own)
    assert expected == [False, True, True, True, False, True]
