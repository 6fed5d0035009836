"""A claim over ground no stored scene has read is backfilled from a real STAC API
(stac-fastapi-pgstac) whose items name band files on a real nginx, reading only the
plot's blocks, and gets the same NDVI as the imagery job's reader gives on stored scenes."""

import json
from datetime import datetime

import pytest
from shapely.geometry import mapping, shape

from collateral import claims, prices
from collateral.db import make_engine, upgrade
from remote_sensing import store as rs_store
from remote_sensing.claims import plot_history
from remote_sensing.claims.plot_backfill import Catalogue
from tests.support.paths import SAMPLE_TILES
from tests.support.range_server import range_server
from tests.support.stac_api import collection, sample_item, stac_api
from tests.support.world import WORLD_AS_OF

pytestmark = pytest.mark.postgres

COLLECTION = "sentinel-2-l2a"
SCENES = sorted(p.parent.name for p in (SAMPLE_TILES / "scenes").glob("*/item.json"))


def _item(scene: str, base_url: str) -> dict:
    return sample_item(scene, base_url, COLLECTION)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    root = tmp_path_factory.mktemp("claims-catalogue")
    with range_server(SAMPLE_TILES / "scenes", root / "nginx") as served:
        items = [_item(s, served.base_url) for s in SCENES]
        doc = collection(COLLECTION, "Sentinel-2 L2A scenes of the sample area (test catalogue)")
        with stac_api([doc], items, root / "api.log") as api:
            yield (
                served,
                Catalogue(
                    api.url, (COLLECTION,), frozenset({served.base_url.removeprefix("http://")})
                ),
            )


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)  # one reference is enough
def test_a_claim_is_backfilled_from_the_catalogue(catalogue, world, tmp_path):
    served, access = catalogue
    engine = make_engine(f"sqlite:///{tmp_path / 'agri.db'}")
    upgrade(engine)
    for path in prices.default_tables():
        prices.import_file(engine, path)
    geometry = shape(json.loads(rs_store.get_parcel(world, "T-01")["geometry_geojson"]))
    submission = claims.Submission(
        "tea_garden", "wgs84", "Wu Jun", "ANXI-01", {}, datetime.fromisoformat(WORLD_AS_OF)
    )
    before = len(served.requests())
    claim = claims.submit(
        engine,
        json.dumps(mapping(geometry)).encode(),
        "geojson",
        submission,
        200,
        catalogue=access,
        data_dir=tmp_path / "data",
    )
    inputs = claims.get_claim(engine, claim["claim_id"], with_inputs=True)["inputs"]
    over_plot = [  # the swath-edge scene's footprint misses the plot: not found
        s
        for s in SCENES
        if shape(
            json.loads((SAMPLE_TILES / "scenes" / s / "item.json").read_text())["geometry"]
        ).intersects(geometry)
    ]
    assert 25 <= len(over_plot) < len(SCENES)
    assert inputs["catalogue"]["read"] == len(over_plot)
    assert inputs["catalogue"]["problems"] == []
    assert {o["source"] for o in inputs["observations"]} == {"catalogue"}
    assert claim["report"]["verdict"] == "consistent", claim["report"]["summary"]
    # the same reader as the job: equal to the stored scenes' NDVI for the same ground
    stored = {o["scene_id"]: o for o in plot_history.plot_history(world, geometry).observations}
    for o in inputs["observations"]:
        same = stored[o["scene_id"]]
        assert o["valid_fraction"] == pytest.approx(same["valid_fraction"], abs=1e-6)
        if same["ndvi_mean"] is not None:
            assert o["ndvi_mean"] == pytest.approx(same["ndvi_mean"], abs=1e-6)
    # only byte ranges of the band files, never a whole file (GDAL's HEADs send nothing)
    band_reads = [r for r in served.requests()[before:] if r.path.endswith(".tif") and r.bytes_sent]
    assert band_reads and all(r.range != "-" for r in band_reads)
    # a second claim over known scenes reads nothing it has (none are in the ledger:
    # claims' scenes are evidence, not the portfolio's observations)
    assert rs_store.scene_ledger(engine) == []


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_an_unreachable_catalogue_is_named_and_the_claim_still_judged(world, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'agri.db'}")
    upgrade(engine)
    geometry = shape(json.loads(rs_store.get_parcel(world, "T-01")["geometry_geojson"]))
    nowhere = Catalogue("http://127.0.0.1:9/stac", (COLLECTION,), frozenset())
    claim = claims.submit(
        engine,
        json.dumps(mapping(geometry)).encode(),
        "geojson",
        claims.Submission("tea_garden", "wgs84", as_of=datetime.fromisoformat(WORLD_AS_OF)),
        200,
        catalogue=nowhere,
        data_dir=tmp_path / "data",
    )
    assert claim["report"]["verdict"] == "not_enough_evidence"
    assert "cannot open the STAC API" in " ".join(claim["report"]["evidence"]["catalogue_problems"])
