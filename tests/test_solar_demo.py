"""`make demo`'s rooftop plants end to end: a month of simulated inverter readings through
the real transport (gateway agents, a private Mosquitto, the ingester), the grid's
statement, the daily job run on two mornings, and a loan on two plants."""

from datetime import UTC, date, datetime

from collateral import solar_demo
from collateral.db import make_engine, upgrade
from collateral.settings import Settings
from solar import plants


def test_the_solar_demo_finds_each_planted_fault_and_values_the_loan(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'agri.db'}")
    upgrade(engine)
    now = datetime(2026, 12, 8, 1, 30, tzinfo=UTC)
    result = solar_demo.run_solar(engine, Settings(data_dir=tmp_path / "data"), now)

    assert (result.first, result.last) == (date(2026, 11, 1), date(2026, 12, 7))
    assert result.readings_sent == 8 * 37 * 288 - 3 * 288  # the silent logger's three days
    assert result.ingested.readings_stored == result.readings_sent
    assert result.ingested.rejects == 0 and result.unacknowledged == 0
    assert len(plants.list_plants(engine)) == 8

    then = {(a["subject"], a["kind"]) for a in result.alerts_then}
    assert ("PV-FAT-2", "solar_offline") in then
    offline = next(a for a in result.alerts_then if a["kind"] == "solar_offline")
    assert offline["params"]["cause"] == "unknown"
    now_open = {(a["subject"], a["kind"]) for a in result.alerts_now}
    assert now_open == {
        ("PV-CATTLE-2", "solar_performance_drop"),  # soiled, drifting down
        ("PV-FAT-3", "solar_settlement_gap"),  # the grid settles 12 % less
        ("PV-CATTLE-1", "solar_inverter_swapped"),
    }
    assert [(a["subject"], a["kind"]) for a in result.closed] == [("PV-FAT-2", "solar_offline")]
    labels = [d["flags"] for d in result.silent_days]
    assert labels == [["comms_gap", "no_data"]] * 3 + [["catch_up"]]
    rows = {p["plant_id"]: p for p in result.plants}
    healthy = [p for pid, p in rows.items() if pid in ("PV-SOW-1", "PV-SOW-2", "PV-FAT-1")]
    for p in healthy:
        assert p["flags"] == [] and 0.97 < p["peer_ratio"] < 1.03
        assert abs(p["energy_30d_kwh"] / p["expected_30d_kwh"] - 1) < 0.05
    # the comms gap lost no energy: the counter caught up
    gap = rows["PV-FAT-2"]
    assert abs(gap["energy_30d_kwh"] / gap["expected_30d_kwh"] - 1) < 0.05
    assert rows["PV-CATTLE-2"]["peer_ratio"] < 0.85

    valuation = result.valuation
    assert {i["kind"] for i in valuation["items"]} == {"solar_plant", "solar_equipment"}
    cover = valuation["solar"]
    assert cover["kwp"] == "37.0" and float(cover["dscr_p90"]) < float(cover["dscr_p50"])
    assert valuation["status"] == "ok"
