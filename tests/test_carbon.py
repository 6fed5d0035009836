"""Forest carbon as collateral: stock and increment by hand from the shipped table, a
clear-cut that reverses exactly its area's carbon and raises the loan alert, as-of
valuations that ignore later tables, verify, the timber-and-carbon rule, and bad inputs
that give a reason and a zero, never a crash."""

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from collateral import auth, errors, loans, pledges, prices
from collateral.api.app import create_app
from collateral.carbon import CARBON_REFUSED, carbon_account, carbon_item
from collateral.evidence import parcel_carbon
from collateral.tables import loan_alerts
from collateral.valuation import value_loan
from remote_sensing import store as rs_store
from tests.support.world import WORLD_AS_OF

AS_OF = datetime.fromisoformat(WORLD_AS_OF)
TABLE = prices.read_table_file(prices.DEFAULTS_DIR / "carbon-2020.yaml")


def forest(parcel_id: str, species: str, age: str, volume, area: float, **more) -> dict:
    return {
        "parcel_id": parcel_id,
        "kind": "forest",
        "attributes": {
            "species_group": species,
            "age_class": age,
            "stand_volume_m3_per_ha": volume,
        },
        "area_ha": area,
        "health_index": None,
        "open_disturbances": [],
        **more,
    }


@pytest.mark.parametrize(
    ("species", "age", "density", "bef", "root_shoot", "fraction", "growth"),
    [
        # the shipped table's rows, copied by hand
        ("chinese_fir", "near_mature", "0.307", "1.634", "0.246", "0.520", "10.0"),
        ("masson_pine", "near_mature", "0.380", "1.472", "0.187", "0.460", "7.0"),
    ],
)
def test_stock_and_increment_by_hand(species, age, density, bef, root_shoot, fraction, growth):
    volume, area = Decimal("153.00"), Decimal("12.1191")
    per_m3 = (
        Decimal(density)
        * Decimal(bef)
        * (1 + Decimal(root_shoot))
        * Decimal(fraction)
        * Decimal(44)
        / Decimal(12)
    )
    since = datetime.fromisoformat("2021-01-01T00:00:00+00:00")
    account = carbon_account(forest("F", species, age, 153, 12.1191), TABLE, AS_OF, since)
    assert Decimal(account["stock_t_co2e"]) == (volume * area * per_m3).quantize(Decimal("0.001"))
    annual = (Decimal(growth) * area * per_m3).quantize(Decimal("0.001"))
    assert Decimal(account["annual_t_co2e"]) == annual
    years = Decimal((AS_OF - since).days) / Decimal("365.25")
    assert Decimal(account["increment_t_co2e"]) == pytest.approx(
        annual * years, abs=Decimal("0.01")
    )
    assert account["factors"]["wood_density_t_per_m3"] == density
    assert account["table_version"] == "carbon-default-2020"
    # a canopy below its usual state grows less, never below the floor
    sick = carbon_account(
        forest("F", species, age, 153, 12.1191, health_index=0.5), TABLE, AS_OF, since
    )
    assert Decimal(sick["annual_t_co2e"]) == pytest.approx(annual / 2, abs=Decimal("0.002"))
    dying = carbon_account(
        forest("F", species, age, 153, 12.1191, health_index=0.05), TABLE, AS_OF, since
    )
    assert Decimal(dying["growth_scale"]) == Decimal("0.30")


def test_the_clear_cut_reverses_exactly_its_area_and_raises_the_loan_alert(world):
    account = parcel_carbon(world, "F-08", AS_OF, None)
    disturbed = Decimal(account["disturbed_ha"])
    assert disturbed == pytest.approx(Decimal("7.27"), abs=Decimal("0.2"))  # truth: 7.2737 ha
    per_ha = Decimal("181.00") * Decimal(account["t_co2e_per_m3"])
    area = Decimal(account["area_ha"])
    assert Decimal(account["reversed_t_co2e"]) == pytest.approx(
        per_ha * disturbed, rel=Decimal("1e-5")
    )
    assert Decimal(account["stock_t_co2e"]) == pytest.approx(
        per_ha * (area - disturbed), rel=Decimal("1e-5")
    )
    before = parcel_carbon(world, "F-08", datetime.fromisoformat("2024-04-30T00:00:00+00:00"), None)
    assert Decimal(before["reversed_t_co2e"]) == 0  # before the cut nothing was reversed
    loans.create_loan(
        world,
        loans.LoanIn(
            loan_id="C-CUT-1",
            borrower="Wang Hui",
            branch="ANXI-01",
            principal_cny="100000",
            carbon=[{"parcel_id": "F-08", "basis": "stock", "market": "ccer"}],
        ),
    )
    valuation = loans.value_now(world, "C-CUT-1", AS_OF)
    item = next(i for i in valuation["items"] if i["kind"] == "carbon_sink")
    assert item["evidence"]["carbon"]["reversed_t_co2e"] == account["reversed_t_co2e"]
    alerts = [
        a for a in loans.list_loan_alerts(world, ["C-CUT-1"]) if a["kind"] == "carbon_reversed"
    ]
    assert len(alerts) == 1 and f"{account['reversed_t_co2e']} t CO2e" in alerts[0]["detail"]
    reversed_alerts = lambda: [  # noqa: E731
        a for a in loans.list_loan_alerts(world, ["C-CUT-1"]) if a["kind"] == "carbon_reversed"
    ]
    assert alerts[0]["params"]["parcel"] == "F-08"
    loans.value_now(world, "C-CUT-1", AS_OF)  # once per parcel while open
    assert len(reversed_alerts()) == 1
    stored = {a["id"]: a["params"] for a in loans.list_loan_alerts(world, ["C-CUT-1"])}
    with world.begin() as conn:  # as stored before alerts had params (revision 0013)
        conn.execute(
            update(loan_alerts).where(loan_alerts.c.loan_id == "C-CUT-1").values(params=None)
        )
    loans.value_now(world, "C-CUT-1", AS_OF)  # still known by its English detail
    assert len(reversed_alerts()) == 1
    with world.begin() as conn:  # the world is shared: put them back
        for alert_id, params in stored.items():
            conn.execute(
                update(loan_alerts).where(loan_alerts.c.id == alert_id).values(params=params)
            )


def test_an_as_of_valuation_ignores_a_later_carbon_table_and_verify_recomputes(world):
    loans.create_loan(
        world,
        loans.LoanIn(
            loan_id="C-ASOF-1",
            borrower="Lin Fang",
            branch="ANXI-01",
            principal_cny="50000",
            carbon=[
                {
                    "parcel_id": "F-03",
                    "basis": "increment",
                    "baseline_date": "2021-01-01",
                    "market": "sanming_ticket",
                }
            ],
        ),
    )
    first = loans.value_now(world, "C-ASOF-1", AS_OF)
    later = {**TABLE, "version": "test-carbon-2025", "effective_from": "2025-01-01"}
    later["rows"] = [
        {**r, "value": str(Decimal(r["value"]) * 3)}
        if r["section"] == "carbon_price_cny_per_t"
        else r
        for r in TABLE["rows"]
    ]
    prices.import_table(world, prices.validate_table(later), "test")
    again = loans.value_now(world, "C-ASOF-1", AS_OF)
    item = lambda v: next(i for i in v["items"] if i["kind"] == "carbon_sink")  # noqa: E731
    assert item(again)["value_cny"] == item(first)["value_cny"]
    assert item(again)["evidence"]["price_cny_per_t"] == "12.00"
    now = loans.value_now(world, "C-ASOF-1", AS_OF + timedelta(days=200))
    assert item(now)["evidence"]["price_cny_per_t"] == "36.00"
    assert item(now)["evidence"]["carbon"]["table_version"] == "test-carbon-2025"
    for v in (first, now):
        result = loans.verify(world, v["valuation_id"])
        assert result["identical"] and result["inputs_sha256_matches"], result


def test_timber_and_carbon_of_one_stand_count_once():
    timber = {"value_cny": "1000.00"}
    pledge = {
        "parcel": forest("F", "chinese_fir", "near_mature", 153, 12.1191),
        "basis": "stock",
        "market": "ccer",
    }
    alone = carbon_item(pledge, TABLE, AS_OF, None)
    with_timber = carbon_item(pledge, TABLE, AS_OF, timber)
    assert Decimal(alone["value_cny"]) > 1000
    assert Decimal(with_timber["value_cny"]) == Decimal(alone["value_cny"]) - 1000
    assert "a harvest destroys both" in with_timber["formula"]
    dearer = carbon_item(pledge, TABLE, AS_OF, {"value_cny": "9999999.00"})
    assert dearer["value_cny"] == "0.00"


@pytest.mark.parametrize(
    ("parcel", "reason"),
    [
        (forest("F-X", "chinese_fir", "young", None, 3.0), "no stand_volume_m3_per_ha"),
        (forest("F-X", "teak", "young", 100, 3.0), "species group 'teak' has no carbon parameters"),
        (forest("F-X", "moso_bamboo", "young", 100, 3.0), CARBON_REFUSED["moso_bamboo"][:40]),
        (forest("F-X", "chinese_fir", "ancient", 100, 3.0), "no volume growth"),
    ],
)
def test_bad_inputs_give_a_reason_and_zero_never_a_crash(parcel, reason):
    item = carbon_item({"parcel": parcel, "basis": "stock", "market": "ccer"}, TABLE, AS_OF, None)
    assert item["value_cny"] == "0.00" and item["kind"] == "carbon_sink"
    assert reason in item["formula"] and reason in " ".join(item["evidence"]["notes"])
    no_table = carbon_item(
        {"parcel": parcel, "basis": "stock", "market": "ccer"}, None, AS_OF, None
    )
    assert no_table["value_cny"] == "0.00" and "no carbon table" in no_table["formula"]


def test_a_whole_valuation_with_a_bad_carbon_pledge_still_values(world):
    loans.create_loan(
        world,
        loans.LoanIn(
            loan_id="C-BAD-1",
            borrower="Lin Fang",
            branch="ANXI-01",
            principal_cny="50000",
            parcel_ids=["T-07"],
            carbon=[{"parcel_id": "F-05", "basis": "stock", "market": "ccer"}],
        ),
    )
    stored = loans.get_valuation(world, loans.value_now(world, "C-BAD-1", AS_OF)["valuation_id"])
    inputs = json.loads(json.dumps(stored["inputs"]))
    inputs["carbon"][0]["parcel"]["attributes"].pop("stand_volume_m3_per_ha")
    result = value_loan(inputs)
    carbon = next(i for i in result["items"] if i["kind"] == "carbon_sink")
    assert carbon["value_cny"] == "0.00" and "no stand_volume" in carbon["formula"]
    assert Decimal(result["eligible_value_cny"]) > 0  # the tea garden is still valued


def test_pledges_of_carbon_are_checked(world):
    body = {"loan_id": "C-P-1", "borrower": "Lin Fang", "branch": "ANXI-01", "principal_cny": "1"}
    with pytest.raises(errors.Invalid, match="is not a forest"):
        loans.create_loan(
            world, loans.LoanIn(**body, carbon=[{"parcel_id": "T-01", "basis": "stock"}])
        )
    with pytest.raises(ValueError, match="baseline_date"):
        loans.LoanIn(**body, carbon=[{"parcel_id": "F-03", "basis": "increment"}])
    loans.create_loan(world, loans.LoanIn(**body, carbon=[{"parcel_id": "F-03", "basis": "stock"}]))
    # F-03's timber elsewhere is the same ground: a harvest takes both
    with pytest.raises(pledges.DoublePledge, match="C-P-1"):
        loans.create_loan(world, loans.LoanIn(**{**body, "loan_id": "C-P-2"}, parcel_ids=["F-03"]))
    # within one loan, timber and carbon of the stand together are allowed (counted once)
    loans.update_loan(world, "C-P-1", loans.LoanPatch(parcel_ids=["F-03"]))


def test_where_people_look(world):
    client = TestClient(create_app(world))
    key = {"Authorization": f"Bearer {auth.create_key(world, 'loan_officer', 'ANXI-01')}"}
    response = client.get(
        "/v1/parcels/F-03/carbon",
        params={"as_of": WORLD_AS_OF, "since": "2021-01-01T00:00:00Z"},
        headers=key,
    )
    assert response.status_code == 200, response.text
    assert response.json() == parcel_carbon(
        world, "F-03", AS_OF, datetime.fromisoformat("2021-01-01T00:00:00+00:00")
    )
    tea = client.get("/v1/parcels/T-01/carbon", headers=key)
    assert tea.status_code == 422 and "not a forest" in tea.json()["detail"]
    loans.create_loan(
        world,
        loans.LoanIn(
            loan_id="C-W-1",
            borrower="Lin Fang",
            branch="ANXI-01",
            principal_cny="1",
            carbon=[{"parcel_id": "F-03", "basis": "stock"}],
        ),
    )
    loans.value_now(world, "C-W-1", AS_OF)
    listed = client.get("/v1/loans/C-W-1", headers=key).json()
    assert Decimal(listed["latest_valuation"]["carbon_t_co2e"]) == Decimal(
        parcel_carbon(world, "F-03", AS_OF, None)["stock_t_co2e"]
    )
    assert listed["carbon"] == [
        {"parcel_id": "F-03", "basis": "stock", "baseline_date": None, "market": "sanming_ticket"}
    ]
    assert rs_store.get_parcel(world, "F-03")["kind"] == "forest"


def test_carbon_on_stale_imagery_is_haircut_like_the_timber_it_stands_on(world):
    """Two years after the world's last clear image, a forest's carbon is valued with
    reduced confidence and the policy's stale-imagery haircut, for the same reasons as the
    stand's timber (a stand cut since then would hold neither); a valuation made under the
    rules before (2026.12.3) still recomputes to its own figures, carbon at high
    confidence."""
    when = AS_OF + timedelta(days=730)
    pledged = {"borrower": "Lin Fang", "branch": "ANXI-01", "principal_cny": "50000"}
    carbon_pledge = [{"parcel_id": "F-03", "basis": "stock", "market": "sanming_ticket"}]
    loans.create_loan(world, loans.LoanIn(loan_id="C-STALE-1", carbon=carbon_pledge, **pledged))
    doc = loans.value_now(world, "C-STALE-1", when)
    loans.close_loan(world, "C-STALE-1")
    loans.create_loan(world, loans.LoanIn(loan_id="C-STALE-2", parcel_ids=["F-03"], **pledged))
    timber = next(i for i in loans.value_now(world, "C-STALE-2", when)["items"])
    carbon = next(i for i in doc["items"] if i["kind"] == "carbon_sink")
    assert timber["confidence"] == carbon["confidence"] == "reduced"
    reasons = carbon["evidence"]["haircut"]["reasons"]
    assert reasons and reasons == timber["evidence"]["haircut"]["reasons"]
    stale = Decimal(carbon["evidence"]["haircut"]["stale_evidence"])
    assert stale > 0 and stale == Decimal(timber["evidence"]["haircut"]["stale_evidence"])
    assert Decimal(carbon["haircut"]) == Decimal(carbon["evidence"]["haircut"]["base"]) + stale
    assert Decimal(carbon["eligible_value_cny"]) > 0
    assert loans.verify(world, doc["valuation_id"])["identical"]

    stored = loans.get_valuation(world, doc["valuation_id"])
    before = {**stored["inputs"], "code_version": "agri-collateral rules 2026.12.3"}
    old = loans.store_valuation(world, before, value_loan(before))
    old_carbon = next(i for i in old["items"] if i["kind"] == "carbon_sink")
    assert old_carbon["confidence"] == "high"
    assert Decimal(old_carbon["eligible_value_cny"]) > Decimal(carbon["eligible_value_cny"])
    assert loans.verify(world, old["valuation_id"])["identical"]
