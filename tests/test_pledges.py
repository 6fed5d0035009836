"""Nothing is pledged twice: land by its ground (not its id), herds by farm, category and
tag, refused where loans are created and changed, freed when a loan closes."""

import json
from dataclasses import replace

import pytest
import shapely
from shapely.geometry import shape

from collateral import loans
from collateral.db import make_engine, upgrade
from collateral.pledges import (
    OVERLAP_MIN_SHARE,
    DoublePledge,
    overlaps,
    parcel_pledge_overlaps,
)
from remote_sensing import store as rs_store
from remote_sensing.claims.plots import area_in_ha
from remote_sensing.parcels import read_parcel_file
from tests.support.livestock import seed_livestock
from tests.support.paths import SAMPLE_TILES

SOW_TAG = "156100000000001"  # a breeding sow of FARM-SOW (sample_tiles/animals.csv)


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'agri.db'}")
    upgrade(engine)
    parcels = read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels
    f03 = next(p for p in parcels if p.parcel_id == "F-03")
    # the same forest imported again under another id, and a neighbour that only touches it
    copy = replace(f03, parcel_id="F-03-AGAIN")
    xmin, ymin, xmax, ymax = f03.geometry.bounds
    sliver = shapely.box(xmax - 0.00001, ymin, xmax + 0.003, ymax)  # ~1 m inside F-03
    neighbour = replace(f03, parcel_id="F-03-EAST", geometry=sliver, area_ha=area_in_ha(sliver))
    rs_store.upsert_parcels(engine, [*parcels, copy, neighbour])
    seed_livestock(engine)
    yield engine
    engine.dispose()


def loan(loan_id: str, parcel_ids=(), herds=()) -> loans.LoanIn:
    return loans.LoanIn(
        loan_id=loan_id,
        borrower="Lin Fang",
        branch="ANXI-01",
        principal_cny="500000",
        parcel_ids=list(parcel_ids),
        herds=list(herds),
    )


def test_land_is_compared_by_ground_not_by_id(engine):
    loans.create_loan(engine, loan("L-1", ["F-03"]))
    for parcel in ("F-03", "F-03-AGAIN"):
        with pytest.raises(DoublePledge, match="active loan 'L-1'") as refused:
            loans.create_loan(engine, loan("L-2", [parcel]))
        assert refused.value.loan_id == "L-1"
    # a neighbour whose drawn border runs a metre into F-03 is not a double pledge
    assert loans.create_loan(engine, loan("L-3", ["F-03-EAST"]))["state"] == "active"
    # nothing half-written by the refusals
    assert [x["loan_id"] for x in loans.list_loans(engine)] == ["L-1", "L-3"]


def test_a_pledge_change_is_refused_and_a_closed_loan_frees_its_land(engine):
    loans.create_loan(engine, loan("L-1", ["F-03"]))
    loans.create_loan(engine, loan("L-2", ["T-01"]))
    with pytest.raises(DoublePledge, match="'F-03-AGAIN' is already pledged"):
        loans.update_loan(engine, "L-2", loans.LoanPatch(parcel_ids=["T-01", "F-03-AGAIN"]))
    assert loans.get_loan(engine, "L-2")["parcel_ids"] == ["T-01"]
    # the loan's own pledges are no conflict when it changes
    loans.update_loan(engine, "L-1", loans.LoanPatch(principal_cny="400000"))
    loans.close_loan(engine, "L-1")
    loans.update_loan(engine, "L-2", loans.LoanPatch(parcel_ids=["T-01", "F-03-AGAIN"]))
    assert loans.get_loan(engine, "L-2")["parcel_ids"] == ["T-01", "F-03-AGAIN"]


def test_herds_by_category_and_by_tag(engine):
    loans.create_loan(
        engine, loan("L-1", herds=[{"farm_id": "FARM-SOW", "categories": ["breeding_sow"]}])
    )
    for herd in (
        {"farm_id": "FARM-SOW", "categories": ["breeding_sow"]},
        {"farm_id": "FARM-SOW", "tag_ids": [SOW_TAG]},  # one of the pledged category's sows
    ):
        with pytest.raises(DoublePledge, match="FARM-SOW.*active loan 'L-1'"):
            loans.create_loan(engine, loan("L-2", herds=[herd]))
    # another category of the same farm, or another farm, is free
    loans.create_loan(
        engine, loan("L-3", herds=[{"farm_id": "FARM-FAT", "categories": ["fattening_pig"]}])
    )
    loans.create_loan(
        engine, loan("L-4", herds=[{"farm_id": "FARM-SOW", "categories": ["fattening_pig"]}])
    )


def test_overlaps_report_the_parcel_the_loan_and_the_area(engine):
    loans.create_loan(engine, loan("L-1", ["F-03"]))
    f03 = shape(json.loads(rs_store.get_parcel(engine, "F-03")["geometry_geojson"]))
    xmin, ymin, xmax, ymax = f03.bounds
    half = shapely.box(xmin, ymin, (xmin + xmax) / 2, ymax)
    found = parcel_pledge_overlaps(engine, half)
    assert [(o.with_id, o.loan_id) for o in found] == [("F-03", "L-1")]
    expected = area_in_ha(half.intersection(f03))
    assert found[0].overlap_ha == pytest.approx(expected, rel=1e-9)
    assert "pledged to loan 'L-1'" in found[0].sentence()
    assert parcel_pledge_overlaps(engine, half, except_loan="L-1") == []


def test_the_tolerance_is_a_share_of_the_smaller_plot():
    big = shapely.box(118.0, 25.0, 118.01, 25.01)  # ~110 ha
    edge = shapely.box(118.0099, 25.0, 118.0200, 25.01)  # shares a 10 m strip of ~1.1 ha
    share = area_in_ha(big.intersection(edge)) / area_in_ha(edge)
    assert share < OVERLAP_MIN_SHARE
    assert overlaps(edge, [("parcel", "L", "P", big)]) == []
    inside = shapely.box(118.002, 25.002, 118.004, 25.004)
    assert [o.with_id for o in overlaps(inside, [("parcel", "L", "P", big)])] == ["P"]
