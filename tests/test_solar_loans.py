"""Loans that pledge rooftop plants: the fee receivable and the equipment valued from the
plant's own record, P50 and P90, the DSCR, verify to the cent, and a plant pledged once."""

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from collateral import loans, pledges, prices
from collateral.errors import Invalid
from solar import daily, plants, vendor_export
from tests.support.livestock import GATEWAY_FARMS
from tests.test_solar import PLANT_ROWS, _day_lines, _plants_csv

FIRST = date(2026, 9, 1)
DAYS = 70


@pytest.fixture
def plant_book(livestock_engine, tmp_path):
    """The test plants with 70 days of hourly readings, the days processed, the shipped
    tables imported."""
    engine = livestock_engine
    path = tmp_path / "plants.csv"
    _plants_csv(path)
    plants.upsert_plants(engine, plants.parse_plants(path, set(GATEWAY_FARMS.values())).records)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    rows = []
    for plant_id, farm, _lat, _lon, kwp, _ac, _tilt, _az, serial in PLANT_ROWS[:2]:
        counter = 8_000_000.0
        for k in range(DAYS):
            lines, counter = _day_lines(plant_id, serial, kwp, FIRST + timedelta(days=k), counter)
            for line in lines[::12]:
                value = vendor_export.payloads.READINGS.check(json.loads(line), now)
                rows.append(
                    vendor_export.payloads.reading_row(value, farm, "import", "import", now)
                )
    with engine.begin() as conn:
        vendor_export.payloads.store_readings(conn, rows)
    daily.run(engine, FIRST + timedelta(days=DAYS - 1), now)
    for table in prices.default_tables():
        prices.import_file(engine, table)
    return engine


def _loan(**over) -> loans.LoanIn:
    body = {
        "loan_id": "LN-PV-1",
        "borrower": "Chen Mei",
        "branch": "ANXI-01",
        "principal_cny": "60000.00",
        "solar": [{"plant_id": "PV-SOW-1"}, {"plant_id": "PV-SOW-2"}],
        "term_months": 120,
        "annual_rate": "0.0435",
    }
    return loans.LoanIn(**(body | over))


def test_a_loan_pledging_two_plants_is_valued_from_their_records_with_its_dscr(plant_book):
    engine = plant_book
    loans.create_loan(engine, _loan())
    as_of = datetime.combine(FIRST + timedelta(days=DAYS), datetime.min.time(), UTC)
    valued = loans.value_now(engine, "LN-PV-1", as_of)
    kinds = sorted((i["kind"], i["ref"]) for i in valued["items"])
    assert kinds == [
        ("solar_equipment", "PV-SOW-1"),
        ("solar_equipment", "PV-SOW-2"),
        ("solar_plant", "PV-SOW-1"),
        ("solar_plant", "PV-SOW-2"),
    ]
    fees = next(i for i in valued["items"] if i["kind"] == "solar_plant" and i["ref"] == "PV-SOW-1")
    e = fees["evidence"]
    assert e["record_days"] == DAYS and e["open_alerts"] == []
    assert fees["confidence"] == "high" and fees["haircut"] == "0.30"
    assert Decimal(e["fees_p90_cny"]) < Decimal(fees["value_cny"]) == Decimal(e["fees_p50_cny"])
    # whole years left: the loan's 120 months (from its creation, today) are shorter than
    # the scheme's 20 years from 2024-03-15
    assert e["years"] == 10
    # the fee receivable by hand, from the item's own numbers and the shipped table
    table = prices.read_table_file(prices.DEFAULTS_DIR / "solar-2020.yaml")
    v = lambda key: float(prices.value(table, "solar_value", key))  # noqa: E731
    per_kwh = 0.95 * 0.3932 + 0.05 * v("residential_price_cny_per_kwh")
    costs = 10.0 * (v("om_cny_per_kwp_yr") + v("insurance_cny_per_kwp_yr"))
    record = loans.get_valuation(engine, valued["valuation_id"])["inputs"]["solar"][0]["record"]
    availability = record["availability"]
    e1 = float(e["first_year_kwh_p50"])
    flows = [e1 * (1 - 0.005) ** (t - 1) * availability * per_kwh - costs for t in range(1, 11)]
    by_hand = sum(f / 1.06**t for t, f in enumerate(flows, 1))
    assert float(e["fees_p50_cny"]) == pytest.approx(by_hand, abs=0.05)
    # first-year energy: the model's typical year scaled by the plant's own record (the
    # ratio to 4 places, energies to 0.1 kWh)
    ratio = round(round(record["energy_kwh"], 1) / round(record["modelled_kwh"], 1), 4)
    assert e1 == pytest.approx(round(record["typical_year_kwh"], 1) * ratio, abs=0.11)
    # DSCR: the plants' first-year net income over a 10-year 4.35 % annuity's payments
    monthly = 0.0435 / 12
    service = 60000 * monthly / (1 - (1 + monthly) ** -120) * 12
    cover = valued["solar"]
    assert float(cover["annual_debt_service_cny"]) == pytest.approx(service, abs=0.01)
    income = sum(
        float(i["evidence"]["first_year_net_p50_cny"])
        for i in valued["items"]
        if i["kind"] == "solar_plant"
    )
    assert float(cover["dscr_p50"]) == pytest.approx(income / service, abs=0.006)
    assert float(cover["dscr_p90"]) < float(cover["dscr_p50"])
    assert cover["kwp"] == "22.0"
    check = loans.verify(engine, valued["valuation_id"])
    assert check["identical"] and check["inputs_sha256_matches"], check["differences"]


def test_a_plant_is_pledged_to_one_active_loan_at_a_time(plant_book):
    engine = plant_book
    loans.create_loan(engine, _loan())
    with pytest.raises(pledges.DoublePledge) as refused:
        loans.create_loan(engine, _loan(loan_id="LN-PV-2", solar=[{"plant_id": "PV-SOW-2"}]))
    assert refused.value.loan_id == "LN-PV-1" and "PV-SOW-2" in str(refused.value)
    with pytest.raises(Invalid, match="plant 'PV-NONE' is not registered"):
        loans.create_loan(engine, _loan(loan_id="LN-PV-3", solar=[{"plant_id": "PV-NONE"}]))
    loans.close_loan(engine, "LN-PV-1")
    again = loans.create_loan(engine, _loan(loan_id="LN-PV-2", solar=[{"plant_id": "PV-SOW-2"}]))
    assert again["solar"] == [{"plant_id": "PV-SOW-2"}]


def test_a_short_record_values_on_the_model_with_the_weak_evidence_haircut(plant_book):
    engine = plant_book
    loans.create_loan(engine, _loan(solar=[{"plant_id": "PV-FAT-1"}], principal_cny="20000"))
    valued = loans.value_now(engine, "LN-PV-1", datetime(2026, 11, 10, tzinfo=UTC))
    fees = next(i for i in valued["items"] if i["kind"] == "solar_plant")
    assert fees["confidence"] == "reduced" and fees["haircut"] == "0.45"
    assert fees["evidence"]["record_days"] == 0
    assert "from the model" in fees["formula"]
    assert loans.verify(engine, valued["valuation_id"])["identical"]


def test_the_api_serves_plants_their_days_alerts_and_a_solar_loan(plant_book):
    from fastapi.testclient import TestClient

    from collateral import auth
    from collateral.api.app import create_app

    engine = plant_book
    client = TestClient(create_app(engine))
    key = {"Authorization": f"Bearer {auth.create_key(engine, 'loan_officer', 'ANXI-01')}"}
    listed = client.get("/v1/plants?farm_id=FARM-SOW", headers=key).json()
    assert [p["plant_id"] for p in listed] == ["PV-SOW-1", "PV-SOW-2"]
    days = client.get("/v1/plants/PV-SOW-1/days?since=2026-11-01", headers=key).json()
    assert [d["day"] for d in days] == [f"2026-11-{k:02d}" for k in range(1, 10)]
    assert all(d["energy_kwh"] > 0 and d["flags"] == [] for d in days)
    assert client.get("/v1/plants/PV-SOW-1/alerts", headers=key).json() == []
    missing = client.get("/v1/plants/PV-NONE/days", headers=key)
    assert missing.status_code == 404
    value = client.get("/v1/plants/PV-SOW-1/value", headers=key).json()
    assert [i["kind"] for i in value["items"]] == ["solar_plant", "solar_equipment"]
    assert Decimal(value["value_cny"]) == sum(Decimal(i["value_cny"]) for i in value["items"])
    fees = value["items"][0]["evidence"]
    assert 0 < Decimal(fees["fees_p90_cny"]) < Decimal(fees["fees_p50_cny"])
    assert value["table_version"] == "solar-default-2020"
    assert client.get("/v1/plants/PV-NONE/value", headers=key).status_code == 404
    body = _loan().model_dump(mode="json")
    made = client.post("/v1/loans", headers=key, json=body)
    assert made.status_code == 201, made.text
    assert made.json()["solar"] == [{"plant_id": "PV-SOW-1"}, {"plant_id": "PV-SOW-2"}]
    twice = client.post("/v1/loans", headers=key, json=body | {"loan_id": "LN-PV-9"})
    assert twice.status_code == 409
    # the loan's summary and the branch's portfolio carry the plants' figures
    as_of = datetime.combine(FIRST + timedelta(days=DAYS), datetime.min.time(), UTC)
    valued = loans.value_now(engine, "LN-PV-1", as_of)
    evidence = [i["evidence"] for i in valued["items"] if i["kind"] == "solar_plant"]
    made_30 = sum(e["last_30_energy_kwh"] for e in evidence)
    assert made_30 > 0
    summary = client.get("/v1/loans/LN-PV-1", headers=key).json()["latest_valuation"]
    assert summary["solar_kwp"] == "22.0"
    assert float(summary["solar_energy_30d_kwh"]) == pytest.approx(made_30, abs=0.06)
    assert summary["dscr_p90"] == valued["solar"]["dscr_p90"]
    portfolio = client.get("/v1/portfolio", headers=key).json()
    solar = portfolio["pledged_solar"]
    assert solar["kwp"] == "22.0" and solar["loan_ids"] == ["LN-PV-1"]
    assert solar["energy_30d_kwh"] == summary["solar_energy_30d_kwh"]
    assert solar["expected_30d_kwh"] == summary["solar_expected_30d_kwh"]
    under = float(valued["solar"]["dscr_p90"]) < 1
    assert solar["dscr_p90_under_1"]["loan_ids"] == (["LN-PV-1"] if under else [])


def test_a_settlement_that_disagrees_with_the_counter_opens_an_alert(plant_book, tmp_path):
    from collateral import solar_policy
    from solar import alerts, settlements
    from telemetry import farm_alerts

    engine = plant_book
    september = [d for d in daily.plant_days(engine, "PV-SOW-1") if d["day"].month == 9]
    counted = sum(d["energy_kwh"] for d in september)
    other = sum(
        d["energy_kwh"] for d in daily.plant_days(engine, "PV-SOW-2") if d["day"].month == 9
    )
    statement = tmp_path / "结算单.csv"
    statement.write_text(
        "电站编号,结算月份,结算电量(kWh),结算金额(元)\n"
        f"PV-SOW-1,2026-09,{counted * 1.08:.1f},{counted * 1.08 * 0.3932:.2f}\n"
        f"PV-SOW-2,2026/09,{other * 1.01:.1f},{other * 1.01 * 0.3932:.2f}\n"
        "PV-NONE,2026-09,100,39.32\n",
        encoding="utf-8",
    )
    parsed = settlements.parse(statement, {"PV-SOW-1", "PV-SOW-2"})
    assert parsed.errors == ["line 4: plant 'PV-NONE' is not registered"]
    assert settlements.store(engine, parsed.records) == 2
    last = FIRST + timedelta(days=DAYS - 1)
    now = datetime(2026, 11, 10, 2, tzinfo=UTC)
    alerts.evaluate(engine, last, solar_policy.thresholds(engine, last), now)
    found = [
        a
        for a in farm_alerts.list_alerts(engine, "FARM-SOW", open_only=True)
        if a["kind"] == "solar_settlement_gap"
    ]
    assert [a["subject"] for a in found] == ["PV-SOW-1"]
    assert found[0]["params"]["gap"] == "-7.4%" and found[0]["params"]["month"] == "2026-09"
    # a corrected statement replaces the month, and the alert closes
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(f"plant_id,month,kwh,paid_cny\nPV-SOW-1,2026-09,{counted:.1f},1.00\n")
    settlements.store(engine, settlements.parse(fixed, {"PV-SOW-1"}).records)
    alerts.evaluate(engine, last, solar_policy.thresholds(engine, last), now)
    still = farm_alerts.list_alerts(engine, "FARM-SOW", open_only=True)
    assert not [a for a in still if a["kind"] == "solar_settlement_gap"]


def test_a_valuation_counts_a_settled_month_as_the_grid_metered_it(plant_book, tmp_path):
    from solar import settlements
    from solar.record import plant_record

    engine = plant_book
    as_of = datetime.combine(FIRST + timedelta(days=DAYS), datetime.min.time(), UTC)
    before = plant_record(engine, "PV-SOW-1", as_of)
    september = [d for d in daily.plant_days(engine, "PV-SOW-1") if d["day"].month == 9]
    counted = sum(d["energy_kwh"] for d in september)
    statement = tmp_path / "s.csv"
    statement.write_text(f"plant_id,month,kwh,paid_cny\nPV-SOW-1,2026-09,{counted * 0.9:.1f},1\n")
    settlements.store(engine, settlements.parse(statement, {"PV-SOW-1"}).records)
    after = plant_record(engine, "PV-SOW-1", as_of)
    assert (before["settled_months"], after["settled_months"]) == (0, 1)
    assert after["energy_kwh"] == pytest.approx(
        before["energy_kwh"] - counted + round(counted * 0.9, 1), abs=0.01
    )
    assert after["modelled_kwh"] == pytest.approx(before["modelled_kwh"], abs=0.01)
    loans.create_loan(engine, _loan())
    valued = loans.value_now(engine, "LN-PV-1", as_of)
    assert loans.verify(engine, valued["valuation_id"])["identical"]


def test_the_credit_report_shows_the_plants_and_the_dscr_in_both_languages(plant_book):
    from collateral.credit_report import report_html

    engine = plant_book
    loan = loans.create_loan(engine, _loan())
    as_of = datetime.combine(FIRST + timedelta(days=DAYS), datetime.min.time(), UTC)
    valued = loans.value_now(engine, "LN-PV-1", as_of)
    cover = valued["solar"]
    chinese = report_html(valued, loan, {}, {}, "zh-CN")
    assert "光伏电费收益权" in chinese and "首年电费净收入" in chinese
    assert f">{cover['dscr_p50']}<" in chinese and f">{cover['dscr_p90']}<" in chinese
    english = report_html(valued, loan, {}, {}, "en")
    assert "solar plant fees" in english and "first-year net fee income" in english
    income = f"{Decimal(cover['first_year_net_p50_cny']):,.2f}"
    assert income in english and "P50" in english


def test_a_pledged_plant_s_alert_becomes_a_notice_for_the_pledging_branch(plant_book, tmp_path):
    from collateral import solar_policy
    from collateral.notices import notices_since
    from solar import alerts, settlements

    engine = plant_book
    loans.create_loan(engine, _loan(solar=[{"plant_id": "PV-SOW-1"}]))
    since = datetime(2026, 11, 10, 1, tzinfo=UTC)
    statement = tmp_path / "statement.csv"
    lines = ["plant_id,month,kwh,paid_cny"]
    for plant_id in ("PV-SOW-1", "PV-SOW-2"):  # both off by 10 %; only one is pledged
        days = daily.plant_days(engine, plant_id)
        counted = sum(d["energy_kwh"] for d in days if d["day"].month == 9)
        lines.append(f"{plant_id},2026-09,{counted * 1.1:.1f},{counted * 1.1 * 0.3932:.2f}")
    statement.write_text("\n".join(lines) + "\n")
    settlements.store(engine, settlements.parse(statement, {"PV-SOW-1", "PV-SOW-2"}).records)
    last = FIRST + timedelta(days=DAYS - 1)
    now = datetime(2026, 11, 10, 2, tzinfo=UTC)
    alerts.evaluate(engine, last, solar_policy.thresholds(engine, last), now)
    found = [n for n in notices_since(engine, since) if n["kind"] == "solar_alert"]
    assert [(n["plant_id"], n["branches"]) for n in found] == [("PV-SOW-1", ["ANXI-01"])]
    words = found[0]["words"]
    assert words["zh-CN"]["title"] == "抵押光伏电站 PV-SOW-1（FARM-SOW）：结算电量不符"
    assert "2026-09" in words["en"]["detail"] and "-9.1%" in words["en"]["detail"]
    assert notices_since(engine, now + timedelta(seconds=1)) == []  # recorded once, at `now`
    # the portfolio counts the pledged plant's alert against its loan, not the unpledged one
    from collateral.portfolio import branch_portfolio

    gaps = branch_portfolio(engine, "ANXI-01", now)["open_alerts"]["solar_settlement_gap"]
    assert gaps["count"] == 1 and gaps["loan_ids"] == ["LN-PV-1"]
