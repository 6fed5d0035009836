"""Valuation: figures computed by hand from the shipped tables and the documented formulas,
on the sample world (every sample scene processed, one round of ear-tag readings)."""

import csv
import json
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import update

from agri_common.wording import text
from bioassets import store as bio_store
from bioassets.payloads import Reading
from collateral import loans, prices
from collateral.db import engine_url
from collateral.evidence import parcel_evidence
from collateral.tables import valuations
from collateral.valuation import ValuationError, value_loan
from remote_sensing import store as rs_store
from remote_sensing.profiles.profile_update import parcel_profile
from tests.support.paths import SAMPLE_TILES
from tests.support.world import SILENT_SOWS, WORLD_AS_OF

AS_OF = datetime.fromisoformat(WORLD_AS_OF)
BEFORE_CUT = datetime(2024, 4, 30, 12, tzinfo=UTC)  # the sample clear-cut is on 2024-05-08
# From collateral/defaults/*.yaml, copied here by hand so the test does not trust lookups.
SOW_BY_PARITY = [(0, 1, "2500.00"), (1, 3, "3000.00"), (3, 6, "3200.00"), (6, 99, "1800.00")]
TEA_SEASONAL_PRICE = Decimal("0.40") * 40 + Decimal("0.25") * 12 + Decimal("0.35") * 30


def cent(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def four(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def area(engine, parcel_id: str) -> Decimal:
    return four(rs_store.get_parcel(engine, parcel_id)["area_ha"])


def open_affected_ha(engine, parcel_id: str, as_of: datetime) -> Decimal:
    events = parcel_profile(engine, parcel_id, as_of)["events"]
    return sum((four(e["affected_ha"]) for e in events if e["state"] == "open"), Decimal(0))


def sows() -> list[dict]:
    with open(SAMPLE_TILES / "animals.csv") as f:
        return [r for r in csv.DictReader(f) if r["category"] == "breeding_sow"]


def sow_value(parity: str) -> Decimal:
    p = int(parity or 0)
    return next(Decimal(v) for low, high, v in SOW_BY_PARITY if low <= p < high)


def new_loan(engine, loan_id: str, principal: str, parcels: list[str], herds=()) -> dict:
    body = {
        "loan_id": loan_id,
        "borrower": "Test Borrower",
        "branch": "ANXI-01",
        "principal_cny": principal,
        "parcel_ids": parcels,
        "herds": list(herds),
    }
    return loans.create_loan(engine, loans.LoanIn.model_validate(body))


def item(doc: dict, ref: str) -> dict:
    return next(i for i in doc["items"] if i["ref"] == ref)


def test_the_demo_loan_by_hand(world):
    """Each item from the table and the formula; then the totals, LTV and status."""
    demo = json.loads((SAMPLE_TILES / "loans" / "demo-loans.json").read_text())[0]
    demo["loan_id"] = "T-HAND-1"
    demo.pop("carbon")  # its carbon items are checked by hand in test_carbon.py
    loans.create_loan(world, loans.LoanIn.model_validate(demo))
    doc = loans.value_now(world, "T-HAND-1", AS_OF)

    # F-10: chinese_fir 227 m3/ha at 600 CNY/m3, near_mature: haircut 0.35
    f10 = cent(area(world, "F-10") * 227 * 600)
    # F-08: eucalyptus 181 m3/ha at 350, middle: haircut 0.45; the clear-cut area is out
    affected = open_affected_ha(world, "F-08", AS_OF)
    assert Decimal("6.5") < affected < Decimal("8.0")  # the planted cut is 7.27 ha
    f08 = cent((area(world, "F-08") - affected) * 181 * 350)
    # T-04: Benshan (default yield 7500 kg/ha), planted 1996 -> 28 years: mature, haircut 0.30
    health = parcel_profile(world, "T-04", AS_OF)["health_index"]
    condition = min(Decimal(1), max(Decimal("0.25"), four(health)))
    t04 = cent(area(world, "T-04") * 7500 * TEA_SEASONAL_PRICE * condition)
    # the sows: verified ones (all but the silent tags) by parity band; haircut 0.40
    herd = sum((sow_value(s["parity"]) for s in sows()[SILENT_SOWS:]), Decimal(0))

    expected = {
        "F-10": (f10, cent(f10 * Decimal("0.65"))),
        "F-08": (f08, cent(f08 * Decimal("0.55"))),
        "T-04": (t04, cent(t04 * Decimal("0.70"))),
        "FARM-SOW/breeding_sow": (herd, cent(herd * Decimal("0.60"))),
    }
    for ref, (value, eligible) in expected.items():
        got = item(doc, ref)
        assert (Decimal(got["value_cny"]), Decimal(got["eligible_value_cny"])) == (value, eligible)
        assert got["confidence"] == "high", got["evidence"]["haircut"]
    total = sum(e for _, e in expected.values())
    assert Decimal(doc["eligible_value_cny"]) == total
    assert Decimal(doc["collateral_value_cny"]) == sum(v for v, _ in expected.values())
    ltv = (Decimal("1200000.00") / total).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    assert doc["ltv"] == str(ltv)
    assert doc["status"] == ("ok" if ltv < Decimal("0.70") else "watch")
    assert "LTV = principal / eligible value" in doc["formula"]
    assert item(doc, "F-08")["evidence"]["open_disturbances"][0]["affected_ha"] is not None


def test_clear_cut_lowers_the_loan_by_the_affected_area_and_moves_its_status(world):
    f08_area = area(world, "F-08")
    affected = open_affected_ha(world, "F-08", AS_OF)
    f08_after = cent(cent((f08_area - affected) * 181 * 350) * Decimal("0.55"))
    f10 = cent(cent(area(world, "F-10") * 227 * 600) * Decimal("0.65"))
    principal = cent((f08_after + f10) * Decimal("0.75"))  # LTV 0.75 after the cut: watch
    new_loan(world, "T-CUT-1", str(principal), ["F-08", "F-10"])

    before = loans.value_now(world, "T-CUT-1", BEFORE_CUT)
    after = loans.value_now(world, "T-CUT-1", AS_OF)

    drop = Decimal(before["eligible_value_cny"]) - Decimal(after["eligible_value_cny"])
    f08_before = cent(cent(f08_area * 181 * 350) * Decimal("0.55"))
    assert drop == f08_before - f08_after  # F-10 did not move; F-08 lost the cut area
    assert item(before, "F-08")["evidence"]["open_disturbances"] == []
    assert (before["status"], after["status"]) == ("ok", "watch")
    assert after["changes"]["status_worsened"] is True
    assert after["changes"]["previous_valuation_id"] == before["valuation_id"]


def test_silent_tags_lose_exactly_those_animals(world):
    new_loan(
        world, "T-SOW-1", "100000.00", [], [{"farm_id": "FARM-SOW", "categories": ["breeding_sow"]}]
    )
    doc = loans.value_now(world, "T-SOW-1", AS_OF)
    herd = item(doc, "FARM-SOW/breeding_sow")
    all_sows = sum((sow_value(s["parity"]) for s in sows()), Decimal(0))
    silent = sows()[:SILENT_SOWS]
    assert Decimal(herd["value_cny"]) == all_sows - sum(sow_value(s["parity"]) for s in silent)
    unverified = herd["evidence"]["unverified"]
    assert [u["tag_id"] for u in unverified] == [s["tag_id"] for s in silent]
    assert all(u["reason"].startswith("not seen in the 24 h") for u in unverified)
    assert herd["evidence"]["verified"] == len(sows()) - SILENT_SOWS


def test_a_stored_valuation_recomputes_identically_and_tampering_is_caught(world):
    new_loan(world, "T-VERIFY-1", "500000.00", ["T-05", "F-07"])
    doc = loans.value_now(world, "T-VERIFY-1", AS_OF)
    assert loans.verify(world, doc["valuation_id"])["identical"]
    stored = loans.get_valuation(world, doc["valuation_id"])
    inputs = json.loads(json.dumps(stored["inputs"]))
    inputs["parcels"][0]["area_ha"] = inputs["parcels"][0]["area_ha"] * 2
    with world.begin() as conn:
        conn.execute(
            update(valuations)
            .where(valuations.c.valuation_id == doc["valuation_id"])
            .values(inputs=inputs)
        )
    outcome = loans.verify(world, doc["valuation_id"])
    assert not outcome["identical"] and not outcome["inputs_sha256_matches"]
    assert "eligible_value_cny" in {d["field"] for d in outcome["differences"]}


def test_an_as_of_valuation_ignores_later_data_and_later_prices(world):
    herds = [{"farm_id": "FARM-FAT", "categories": ["fattening_pig"]}]
    new_loan(world, "T-ASOF-1", "300000.00", ["F-04"], herds)
    first = loans.value_now(world, "T-ASOF-1", AS_OF)
    # later: a dearer price table, a death, more readings
    table = prices.read_table_file(prices.DEFAULTS_DIR / "prices-2020.yaml")
    table = {**table, "version": "test-2025", "effective_from": "2025-01-01"}
    table["rows"] = [
        {**r, "value": str(Decimal(r["value"]) * 2)} if "cny" in r["section"] else r
        for r in table["rows"]
    ]
    assert table["kind"] == "prices"
    prices.import_table(world, prices.validate_table(table), "test")
    pig = next(a for a in bio_store.farm_animals(world, "FARM-FAT"))
    later = AS_OF + timedelta(days=3)
    event = {
        "tag_id": pig["tag_id"],
        "kind": "death",
        "occurred_at": later,
        "farm_id": "FARM-FAT",
        "gateway_id": "GW-FAT-1",
        "details": {"cause": "test"},
        "received_at": later,
    }
    row = bio_store.reading_row(
        Reading(tag_id=pig["tag_id"], observed_at=later, weight_kg=150.0),
        "FARM-FAT",
        "GW-FAT-1",
        later,
        None,
    )
    with world.begin() as conn:
        bio_store.write_batch(conn, [row], [event])
    again = loans.value_now(world, "T-ASOF-1", AS_OF)
    for key in ("items", "collateral_value_cny", "eligible_value_cny", "ltv", "status"):
        assert again[key] == first[key], key
    assert again["prices_version"] == "default-2020"
    dearer = loans.value_now(world, "T-ASOF-1", later)
    assert dearer["prices_version"] == "test-2025"
    assert Decimal(item(dearer, "F-04")["value_cny"]) == 2 * Decimal(
        item(first, "F-04")["value_cny"]
    )


def test_revalue_all_is_idempotent_and_alerts_when_a_status_worsens(world):
    new_loan(world, "T-REVAL-1", "100.00", ["F-10"])
    at = AS_OF + timedelta(minutes=5)
    first = {o["loan_id"]: o for o in loans.revalue_all(world, at)}
    assert first["T-REVAL-1"]["outcome"] == "valued" and first["T-REVAL-1"]["status"] == "ok"
    second = {o["loan_id"]: o for o in loans.revalue_all(world, at + timedelta(minutes=1))}
    assert second["T-REVAL-1"]["outcome"] == "unchanged"
    assert len(loans.list_valuations(world, "T-REVAL-1")) == 1

    loans.update_loan(world, "T-REVAL-1", loans.LoanPatch(principal_cny=Decimal("90000000")))
    third = {o["loan_id"]: o for o in loans.revalue_all(world, at + timedelta(minutes=2))}
    assert third["T-REVAL-1"]["status"] == "margin_call"
    assert third["T-REVAL-1"]["status_worsened"] is True
    (alert,) = loans.list_loan_alerts(world, ["T-REVAL-1"])
    assert alert["closed_at"] is None and "ok -> margin_call" in alert["detail"]

    loans.update_loan(world, "T-REVAL-1", loans.LoanPatch(principal_cny=Decimal("100")))
    loans.revalue_all(world, at + timedelta(minutes=3))
    (alert,) = loans.list_loan_alerts(world, ["T-REVAL-1"])
    assert alert["closed_at"] is not None


def test_no_table_in_force_is_a_clear_error(world):
    new_loan(world, "T-EARLY-1", "100.00", ["F-10"])
    with pytest.raises(ValuationError, match="no price table in force on 2019-06-30"):
        loans.value_now(world, "T-EARLY-1", datetime(2019, 6, 30, tzinfo=UTC))
    assert loans.list_valuations(world, "T-EARLY-1") == []


# --- the pure rules on small hand-made inputs ----------------------------------------


def _inputs(**over) -> dict:
    tables = {t["kind"]: t for t in map(prices.read_table_file, prices.default_tables())}
    parcel = {
        "parcel_id": "P1",
        "kind": "tea_garden",
        "area_ha": 2.0,
        "attributes": {"variety": "Tieguanyin", "planted_year": 2010},
        "centroid": [118.2, 25.0],
        "health_index": 0.1,
        "latest_clear_at": "2024-01-01T00:00:00+00:00",
        "open_disturbances": [{"start": "2024-01-01", "affected_ha": 0.5}],
    }
    base = {
        "loan": {"loan_id": "L", "principal_cny": "100000.00"},
        "as_of": "2024-04-01T00:00:00+00:00",
        "prices": tables["prices"],
        "policy": tables["policy"],
        "parcels": [{**parcel, **over}],
        "herds": [],
        "previous": None,
    }
    return base


def test_tea_condition_is_clamped_and_stale_imagery_lowers_the_advance_rate():
    doc = value_loan(_inputs())
    tea = doc["items"][0]
    # (2 - 0.5) ha x 6000 kg (Tieguanyin) x 29.5 CNY/kg x condition clamped up to 0.25
    assert Decimal(tea["value_cny"]) == cent(Decimal("1.5") * 6000 * TEA_SEASONAL_PRICE / 4)
    # 91 days since the last clear image (limit 60): haircut 0.30 (mature) + 0.15
    assert tea["haircut"] == "0.45" and tea["confidence"] == "reduced"
    assert Decimal(tea["eligible_value_cny"]) == cent(Decimal(tea["value_cny"]) * Decimal("0.55"))
    fresh = value_loan(_inputs(latest_clear_at="2024-03-20T00:00:00+00:00", health_index=1.7))
    assert fresh["items"][0]["evidence"]["condition_factor"] == "1"
    assert fresh["items"][0]["haircut"] == "0.30"


def test_stale_imagery_counts_clear_images_in_the_window_and_names_unconfirmed_drops():
    """The profile's figures decide: one clear image in 60 days cannot confirm or rule
    out damage however recent it is; two can; a drop the profile could not confirm is
    named."""
    recent = "2024-03-25T00:00:00+00:00"

    def tea(**sampling):
        window = {"window_days": 60, **sampling}
        return value_loan(_inputs(latest_clear_at=recent, sampling=window))["items"][0]

    one = tea(clear_dates=1, largest_gap_days=48.0)
    assert one["haircut"] == "0.45" and one["confidence"] == "reduced"
    assert one["evidence"]["haircut"]["reasons"] == [
        "only 1 clear image in the last 60 days (2024-03-25; longest wait 48 days): "
        "2 are needed to confirm or rule out damage"
    ]
    two = tea(clear_dates=2, largest_gap_days=30.0)
    assert two["haircut"] == "0.30" and two["confidence"] == "high"
    window = {"window_days": 60, "clear_dates": 0, "largest_gap_days": 91.0}
    none = value_loan(_inputs(sampling=window))["items"][0]  # last clear 2024-01-01
    assert none["evidence"]["haircut"]["reasons"] == [
        "no clear image in the last 60 days: the last, 2024-01-01, is 91 days old"
    ]
    suspected = {
        "start": "2024-03-10",
        "state": "unconfirmed",
        "affected_ha": 1.9,
        "reason": "not enough clear dates: 1 low clear date(s) from 2024-03-10, ...",
    }
    window = {"window_days": 60, "clear_dates": 3, "largest_gap_days": 31.0}
    doubt = value_loan(_inputs(latest_clear_at=recent, sampling=window, suspected=[suspected]))
    item = doubt["items"][0]
    assert item["confidence"] == "reduced"
    assert item["evidence"]["haircut"]["reasons"][0].startswith("possible damage from 2024-03-10")
    # as the profile now gives it: with its code, so the officer reads it in Chinese too
    suspected["reason_coded"] = {
        "code": "suspected.unclear",
        "params": {"count": "1", "since": "2024-03-10", "gap": "31"},
    }
    doubt = value_loan(_inputs(latest_clear_at=recent, sampling=window, suspected=[suspected]))
    haircut = doubt["items"][0]["evidence"]["haircut"]
    assert haircut["reasons"][0] == (
        "possible damage from 2024-03-10: not enough clear dates: 1 low clear date(s) from "
        "2024-03-10, the next clear date 31 days later was normal; a short dip and lasting "
        "damage cannot be told apart"
    )
    (first, *_) = haircut["reasons_coded"]
    assert text(first["code"], "zh-CN", **first["params"]).startswith("自 2024-03-10 起可能受损")


def test_a_policy_window_longer_than_a_profile_keeps_is_refused_by_name(world):
    """A profile keeps the clear dates of its last 180 days at hand; a policy counting
    images over a longer window is refused, not sampled short."""
    with pytest.raises(ValuationError, match="imagery window of 365 days is longer"):
        parcel_evidence(world, "T-04", datetime(2024, 10, 1, tzinfo=UTC), 365)
    assert parcel_evidence(world, "T-04", datetime(2024, 10, 1, tzinfo=UTC), 180)["sampling"]


def test_valuation_evidence_carries_the_profiles_own_sampling_figures(world):
    as_of = datetime(2024, 10, 1, tzinfo=UTC)
    for parcel_id in ("T-04", "F-08"):
        evidence = parcel_evidence(world, parcel_id, as_of, 60)
        profile = parcel_profile(world, parcel_id, as_of)
        assert evidence["sampling"] == profile["sampling"]
        assert evidence["sampling"]["clear_dates"] >= 1


def test_ltv_thresholds_decide_the_status():
    value = Decimal(value_loan(_inputs())["eligible_value_cny"])
    for ratio, status in (("0.69", "ok"), ("0.70", "watch"), ("0.85", "margin_call")):
        inputs = _inputs()
        inputs["loan"]["principal_cny"] = str(cent(value * Decimal(ratio)))
        doc = value_loan(inputs)
        assert doc["status"] == status, (ratio, doc["ltv"])
    inputs = _inputs(area_ha=0.5)  # all of it disturbed: nothing eligible
    assert value_loan(inputs)["ltv"] is None and value_loan(inputs)["status"] == "margin_call"


def test_a_missing_table_row_is_a_clear_error():
    inputs = _inputs()
    inputs["policy"] = {
        **inputs["policy"],
        "rows": [r for r in inputs["policy"]["rows"] if r["key"] != "tea:mature"],
    }
    with pytest.raises(ValuationError, match="no haircut row for 'tea:mature'"):
        value_loan(inputs)


def test_loans_and_revaluation_from_the_command_line(world, agri, monkeypatch, tmp_path):
    monkeypatch.setenv("AGRI_DATABASE_URL", engine_url(world))
    body = {
        "loan_id": "T-CLI-1",
        "borrower": "Ke Jian",
        "branch": "ANXI-02",
        "principal_cny": "250000.00",
        "parcel_ids": ["F-04", "F-06"],
        "herds": [],
    }
    path = tmp_path / "loan.json"
    path.write_text(json.dumps(body))
    assert "created loan T-CLI-1" in agri("loans", "create", str(path)).output
    again = agri("loans", "create", str(path))
    assert again.exit_code == 1 and "exists" in again.output
    text = agri("valuate", "T-CLI-1", "--as-of", "2024-12-31")
    assert text.exit_code == 0 and "forest F-04" in text.output and "LTV" in text.output
    outcome = json.loads(agri("revalue", "--all", "--json").output)
    assert {"loan_id": "T-CLI-1"}.items() <= next(
        o for o in outcome if o["loan_id"] == "T-CLI-1"
    ).items()
    listed = agri("loans", "list", "--branch", "ANXI-02", "--json")
    (row,) = json.loads(listed.output)
    assert row["loan_id"] == "T-CLI-1" and row["status"] in ("ok", "watch", "margin_call")
    missing = agri("valuate", "NOPE")
    assert missing.exit_code == 1 and "does not exist" in missing.output
