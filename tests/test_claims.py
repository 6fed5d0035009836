"""Claims on the sample world (SQLite, then PostgreSQL): the backfill equals what the
imagery job computed, verdicts true and false against the planted truth, too few
observations said as such, overlaps and double pledges, reproducible reports, and the
whole path from a drawn plot to a pledged parcel through the API."""

import json
import subprocess
import sys
from datetime import datetime

import numpy as np
import pytest
import rasterio
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer
from rasterio.features import geometry_mask
from shapely.geometry import mapping, shape
from sqlalchemy import delete, select

from collateral import auth, claim_report, claims, loans, pledges
from collateral.api.app import create_app
from collateral.claim_report import claim_words
from collateral.tables import claims as claims_table
from remote_sensing import store as rs_store
from remote_sensing.claims import landcover, plot_history
from remote_sensing.claims.plots import as_drawn
from remote_sensing.tables import parcels
from tests.support.paths import SAMPLE_TILES
from tests.support.world import WORLD_AS_OF

AS_OF = datetime.fromisoformat(WORLD_AS_OF)
TO_WGS84 = Transformer.from_crs("EPSG:32650", "EPSG:4326", always_xy=True)
TO_UTM = Transformer.from_crs("EPSG:4326", "EPSG:32650", always_xy=True)
# Ground planted in sample_tiles/generate.py (UTM 50N): the village and the reservoir
VILLAGE = shapely.box(620_100, 2_772_700, 620_400, 2_772_950)
RESERVOIR = shapely.box(618_550, 2_770_620, 618_850, 2_770_780)
RICE_FIELDS = shapely.box(619_800, 2_770_450, 620_200, 2_770_750)  # double-cropped rice


def reproject(geometry, transformer: Transformer):
    return shapely.transform(
        geometry, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))
    )


def wgs84(utm_geometry):
    return reproject(utm_geometry, TO_WGS84)


def parcel_geometry(engine, parcel_id: str):
    return shape(json.loads(rs_store.get_parcel(engine, parcel_id)["geometry_geojson"]))


def submit(engine, geometry, kind: str, as_of=AS_OF, **attributes) -> dict:
    data = json.dumps(mapping(geometry)).encode()
    submission = claims.Submission(kind, "wgs84", "Chen Ming", "ANXI-01", attributes, as_of)
    return claims.submit(engine, data, "geojson", submission, max_ha=200)


def truth_share(geometry, code: int) -> float:
    """Share of a plot's 10 m pixels that the sample's planted truth says are ``code``."""
    with rasterio.open(SAMPLE_TILES / "landcover.tif") as src:
        truth = src.read(1)
        inside = ~geometry_mask([reproject(geometry, TO_UTM)], truth.shape, src.transform)
    return float((truth[inside] == code).mean())


@pytest.fixture(autouse=True)
def no_claims_left(world):
    """Claims, and the parcels accepted ones became, are gone after each test: the world
    is shared by the session."""
    yield
    with world.begin() as conn:
        made = [r.parcel_id for r in conn.execute(select(claims_table.c.parcel_id)) if r.parcel_id]
        conn.execute(delete(parcels).where(parcels.c.parcel_id.in_(made)))
        conn.execute(delete(claims_table))


def test_the_backfill_equals_what_the_imagery_job_computed(world):
    geometry = parcel_geometry(world, "T-03")
    history = plot_history.plot_history(world, geometry)
    job = {o["scene_id"]: o for o in rs_store.parcel_observations(world, "T-03")}
    compared = 0
    for o in history.observations:
        stored = job[o["scene_id"]]
        assert o["valid_fraction"] == pytest.approx(stored["valid_fraction"], abs=1e-6)
        if stored["ndvi_mean"] is not None and o["ndvi_mean"] is not None:
            assert o["ndvi_mean"] == pytest.approx(stored["ndvi_mean"], rel=1e-6)
            compared += 1
    assert compared >= 25 and len(history.observations) == len(job)
    assert history.pixels.shape[0] >= 30  # the Sentinel-2 dates, per pixel


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)  # the rule, not the store
@pytest.mark.parametrize(
    ("ground", "kind", "verdict", "looks_like"),
    [
        ("T-01", "tea_garden", "consistent", "tea_garden"),
        ("F-01", "forest", "consistent", "forest"),
        ("F-04", "tea_garden", "inconsistent", "forest"),  # a forest claimed as tea
        ("village", "tea_garden", "inconsistent", "bare_built"),
        ("reservoir", "tea_garden", "inconsistent", "water"),
        ("rice fields", "tea_garden", "inconsistent", "cropland"),
        ("T-02", "forest", "inconsistent", "tea_garden"),
    ],
)
def test_verdicts_against_the_planted_truth(world, ground, kind, verdict, looks_like):
    places = {
        "village": wgs84(VILLAGE),
        "reservoir": wgs84(RESERVOIR),
        "rice fields": wgs84(RICE_FIELDS),
    }
    geometry = places.get(ground) or parcel_geometry(world, ground)
    report = submit(world, geometry, kind)["report"]
    assert report["verdict"] == verdict, report["summary"]
    assert report["land_cover"]["class"] == looks_like
    assert report["evidence"]["clear_observations"] >= 8
    assert set(report["land_cover"]["probabilities"]) == set(landcover.CLASSES)
    assert report["land_cover"]["decided_by"] in report["summary"]
    if verdict == "consistent":
        assert report["indicative_value"] is not None
    else:
        assert report["indicative_value"] is None and report["flags"]


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)  # the rule, not the store
def test_a_tea_claim_that_is_half_forest_is_flagged_with_its_share(world):
    tea = parcel_geometry(world, "T-04")
    xmin, ymin, xmax, ymax = tea.bounds
    plot = shapely.box(xmin + (xmax - xmin) / 2, ymin, xmax + (xmax - xmin), ymax)
    expected = truth_share(plot, 2)  # 2: tea in generate.py
    assert 0.2 < expected < 0.6
    report = submit(world, plot, "tea_garden")["report"]
    assert report["verdict"] == "inconsistent"
    share = report["land_cover"]["shares"]["tea_garden"]
    assert share == pytest.approx(expected, abs=0.1)
    assert any(
        f.startswith(f"only {share:.0%} of the plot looks like tea garden") for f in report["flags"]
    )


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)  # the rule, not the store
def test_too_few_observations_is_said_with_how_many_and_when(world):
    report = submit(
        world,
        parcel_geometry(world, "T-01"),
        "tea_garden",
        as_of=datetime.fromisoformat("2023-04-20T00:00:00+00:00"),
    )["report"]
    assert report["verdict"] == "not_enough_evidence"
    evidence = report["evidence"]
    assert 0 < evidence["clear_observations"] < 8
    assert evidence["first_clear"].startswith("2023-")
    assert f"{evidence['clear_observations']} clear observations" in report["summary"]


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)  # the rule, not the store
def test_a_value_for_the_accepted_part_from_the_price_tables(world):
    geometry = parcel_geometry(world, "T-01")
    report = submit(world, geometry, "tea_garden", variety="Tieguanyin", planted_year=2012)[
        "report"
    ]
    value = report["indicative_value"]
    assert report["verdict"] == "consistent" and float(value["value_cny"]) > 0
    assert value["formula"].startswith(f"({value['accepted_ha'][:4]}")
    assert float(value["eligible_value_cny"]) < float(value["value_cny"])


def test_a_stored_report_is_recomputed_from_its_inputs(world):
    claim = submit(world, parcel_geometry(world, "T-01"), "tea_garden")
    assert claims.verify(world, claim["claim_id"]) == {
        "claim_id": claim["claim_id"],
        "matches": True,
        "problems": [],
        "verdict": "consistent",
    }
    stored = claims.get_claim(world, claim["claim_id"], with_inputs=True)
    inputs = stored["inputs"]
    inputs["pixels"]["features"] = (np.array(inputs["pixels"]["features"]) * 0 + 0.1).tolist()
    with world.begin() as conn:
        conn.execute(
            claims_table.update()
            .where(claims_table.c.claim_id == claim["claim_id"])
            .values(inputs=inputs)
        )
    result = claims.verify(world, claim["claim_id"])
    assert not result["matches"]
    assert "the stored inputs do not match their checksum" in result["problems"]


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_a_report_of_an_earlier_model_is_recomputed_by_that_model(world):
    """A claim reported by landcover-v1 (pixels alone, before the plot's context) is
    verified by landcover-v1, which stays shipped, not by today's model."""
    claim = submit(world, parcel_geometry(world, "T-01"), "tea_garden")
    stored = claims.get_claim(world, claim["claim_id"], with_inputs=True)
    earlier = landcover.load_version("landcover-v1")
    assert earlier.inputs == landcover.FEATURES != landcover.load().inputs
    old_report = claim_report.report(stored["inputs"], earlier)
    assert old_report["model"]["version"] == "landcover-v1"
    with world.begin() as conn:
        conn.execute(
            claims_table.update()
            .where(claims_table.c.claim_id == claim["claim_id"])
            .values(report=old_report, model_version="landcover-v1")
        )
    assert claims.verify(world, claim["claim_id"])["matches"] is True


def test_overlaps_with_pledged_parcels_and_open_claims(world):
    loans.create_loan(
        world,
        loans.LoanIn(
            loan_id="CL-LOAN-1",
            borrower="Wu Jun",
            branch="ANXI-01",
            principal_cny="300000",
            parcel_ids=["T-01"],
        ),
    )
    geometry = parcel_geometry(world, "T-01")
    first = submit(world, geometry, "tea_garden")["report"]
    assert [(o["with_kind"], o["with_id"], o["loan_id"]) for o in first["overlaps"]] == [
        ("parcel", "T-01", "CL-LOAN-1")
    ]
    assert first["overlaps"][0]["overlap_ha"] == pytest.approx(
        rs_store.get_parcel(world, "T-01")["area_ha"], rel=1e-3
    )
    second = submit(world, geometry.buffer(-0.0002), "tea_garden")["report"]
    kinds = {o["with_kind"] for o in second["overlaps"]}
    assert kinds == {"parcel", "claim"}
    assert any("open claim" in f for f in second["flags"])


def test_accept_makes_a_parcel_and_refuses_what_it_must(world):
    consistent = submit(
        world, parcel_geometry(world, "T-06").buffer(-0.0001), "tea_garden", planted_year=2015
    )
    inconsistent = submit(world, parcel_geometry(world, "F-05"), "tea_garden")
    with pytest.raises(claims.NotAcceptable, match="inconsistent"):
        claims.accept(world, inconsistent["claim_id"])
    accepted = claims.accept(world, consistent["claim_id"], "T-06-CLAIMED")
    assert accepted["state"] == "accepted" and accepted["parcel_id"] == "T-06-CLAIMED"
    parcel = rs_store.get_parcel(world, "T-06-CLAIMED")
    assert (
        parcel["kind"] == "tea_garden"
        and parcel["attributes"]["claim_id"] == consistent["claim_id"]
    )
    with pytest.raises(claims.NotAcceptable, match="accepted, not open"):
        claims.accept(world, consistent["claim_id"])
    # the parcel it became is the same ground as T-06: one may be pledged, not both
    loans.create_loan(
        world,
        loans.LoanIn(
            loan_id="CL-LOAN-2",
            borrower="Wu Jun",
            branch="ANXI-01",
            principal_cny="1",
            parcel_ids=["T-06-CLAIMED"],
        ),
    )
    with pytest.raises(pledges.DoublePledge, match="CL-LOAN-2"):
        loans.create_loan(
            world,
            loans.LoanIn(
                loan_id="CL-LOAN-3",
                borrower="Wu Jun",
                branch="ANXI-01",
                principal_cny="1",
                parcel_ids=["T-06"],
            ),
        )


def test_a_drawn_plot_becomes_a_pledged_parcel_through_the_api(world):
    client = TestClient(create_app(world))
    officer = {"Authorization": f"Bearer {auth.create_key(world, 'loan_officer', 'ANXI-01')}"}
    stranger = {"Authorization": f"Bearer {auth.create_key(world, 'loan_officer', 'XIAMEN-02')}"}
    drawn = as_drawn(parcel_geometry(world, "T-07"), "gcj02")  # what AMap shows the borrower
    body = {
        "kind": "tea_garden",
        "crs": "gcj02",
        "owner": "Lin Fang",
        "attributes": {"planted_year": 2010},
        "as_of": WORLD_AS_OF,
        "geometry": mapping(drawn),
    }
    created = client.post("/v1/claims", json=body, headers=officer)
    assert created.status_code == 201, created.text
    claim = created.json()
    assert claim["branch"] == "ANXI-01" and claim["crs"] == "gcj02"
    assert claim["report"]["verdict"] == "consistent", claim["report"]["summary"]
    assert (
        shapely.hausdorff_distance(shape(claim["geometry"]), parcel_geometry(world, "T-07")) < 1e-5
    )
    assert client.get(f"/v1/claims/{claim['claim_id']}", headers=stranger).status_code == 404
    assert (
        client.get(f"/v1/claims/{claim['claim_id']}", headers=officer).json()["report"]
        == claim["report"]
    )
    accepted = client.post(
        f"/v1/claims/{claim['claim_id']}/accept?parcel_id=T-07-API", headers=officer
    )
    assert accepted.status_code == 200, accepted.text
    loan = {
        "loan_id": "CL-API-1",
        "borrower": "Lin Fang",
        "branch": "ANXI-01",
        "principal_cny": "200000",
        "parcel_ids": ["T-07-API"],
    }
    assert client.post("/v1/loans", json=loan, headers=officer).status_code == 201
    again = client.post(
        "/v1/loans", json={**loan, "loan_id": "CL-API-2", "parcel_ids": ["T-07"]}, headers=officer
    )
    assert again.status_code == 409 and "CL-API-1" in again.json()["detail"]
    # a KML file as the body, and the refusals
    ring = "118.170,25.080 118.172,25.080 118.172,25.082 118.170,25.082 118.170,25.080"
    kml = (
        '<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Placemark>'
        f"<Polygon><outerBoundaryIs><LinearRing><coordinates>{ring}</coordinates>"
        "</LinearRing></outerBoundaryIs></Polygon></Placemark></kml>"
    ).encode()
    sent = client.post(
        "/v1/claims?kind=tea_garden&crs=wgs84",
        content=kml,
        headers={**officer, "content-type": "application/vnd.google-earth.kml+xml"},
    )
    assert sent.status_code == 201 and sent.json()["area_ha"] == pytest.approx(4.47, abs=0.01)
    for query, content, ctype, words in [
        (
            "kind=tea_garden&crs=gcj02",
            b"2.35,48.85\n2.36,48.85\n2.36,48.86",
            "text/plain",
            "outside mainland China",
        ),
        ("kind=rice&crs=wgs84", kml, "application/vnd.google-earth.kml+xml", "kind 'rice'"),
        ("kind=tea_garden", kml, "application/vnd.google-earth.kml+xml", "crs"),
        ("kind=tea_garden&crs=wgs84", b"x", "image/png", "not a plot file"),
    ]:
        refused = client.post(
            f"/v1/claims?{query}", content=content, headers={**officer, "content-type": ctype}
        )
        assert refused.status_code == 422 and words in refused.json()["detail"], refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)  # the rule, not the store
def test_the_cli_prints_the_report(world, tmp_path):
    plot = tmp_path / "plot.txt"
    coordinates = shapely.get_coordinates(parcel_geometry(world, "T-05"))
    plot.write_text("\n".join(f"{x},{y}" for x, y in coordinates))
    env = {
        "AGRI_DATABASE_URL": world.url.render_as_string(hide_password=False),
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "collateral.cli",
            "claims",
            "submit",
            str(plot),
            "--kind",
            "tea_garden",
            "--as-of",
            WORLD_AS_OF,
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    claim = json.loads(out.stdout)
    assert claim["report"]["verdict"] in claims.claim_report.VERDICTS
    shown = subprocess.run(
        [sys.executable, "-m", "collateral.cli", "claims", "show", claim["claim_id"]],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert claim["report"]["summary"] in shown.stdout


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)  # the rule, not the store
def test_the_demo_claims_are_one_consistent_and_one_inconsistent(world, tmp_path):
    from collateral import demo

    made = demo.submit_demo_claims(world, tmp_path, max_ha=200)
    assert [c["report"]["verdict"] for c in made] == ["consistent", "inconsistent"]
    assert [c["crs"] for c in made] == ["gcj02", "bd09"]
    assert (tmp_path / "chen-ming-amap.kml").read_text().startswith("<?xml")


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_a_report_reads_in_chinese_from_the_same_figures(world):
    """The stored report is English; the API words the same figures in the officer's
    language (Accept-Language), and claim_words in English gives back the stored text."""
    tea = parcel_geometry(world, "T-04")
    xmin, ymin, xmax, ymax = tea.bounds
    half_forest = shapely.box(xmin + (xmax - xmin) / 2, ymin, xmax + (xmax - xmin), ymax)
    claim = submit(world, half_forest, "tea_garden", claimed_area_ha=0.5)
    report = claim["report"]
    english = claim_words(report, "en")
    assert english == {
        "decided_by": report["land_cover"]["decided_by"],
        "flags": report["flags"],
        "summary": report["summary"],
    }
    client = TestClient(create_app(world))
    key = {"Authorization": f"Bearer {auth.create_key(world, 'loan_officer', 'ANXI-01')}"}
    shown = client.get(
        f"/v1/claims/{claim['claim_id']}", headers={**key, "Accept-Language": "zh-CN"}
    ).json()["report"]
    words = shown["words"]
    assert words["locale"] == "zh-CN" and len(words["flags"]) == len(report["flags"]) >= 2
    assert words["summary"].startswith("不一致：申报为茶园")
    share = f"{report['land_cover']['shares']['tea_garden']:.0%}"
    assert f"地块仅 {share} 判读为茶园" in words["flags"][0]
    assert "公顷" in words["flags"][1] and shown["summary"] == report["summary"]
