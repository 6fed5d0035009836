"""Real item documents from Earth Search, Planetary Computer, Copernicus Data Space and
USGS, with rasters encoded as each catalogue encodes them: every parcel's NDVI must come
out as computed from the reflectances planted under it, whatever the metadata says."""

import json
from pathlib import Path

import pytest

from remote_sensing import store
from remote_sensing.imagery.catalogues import recognise
from remote_sensing.imagery.job import run_inbox
from remote_sensing.parcels import read_parcel_file
from tests.support.catalogue_scenes import (
    CATALOGUE_ITEMS,
    HLS_NIR,
    HLS_RED,
    QA_CLEAR,
    QA_CLOUD,
    QA_SHADOW,
    QA_WATER,
    VEGETATION,
    WATER,
    Patch,
    build_scene,
    expected_ndvi,
    landsat_numbers,
    s2_numbers,
    write_parcels,
)

ES_L2A = "earth-search-v1_sentinel-2-l2a_S2A_39QTA_20230628_0_L2A.json"
ES_C1 = "earth-search-v1_sentinel-2-c1-l2a_S2A_T13TDE_20240422T174753_L2A.json"
PC_2019 = (
    "planetary-computer_sentinel-2-l2a_S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json"
)
PC_2024 = (
    "planetary-computer_sentinel-2-l2a_S2B_MSIL2A_20240825T173909_R098_T13TDE_20240825T215747.json"
)
CDSE = (
    "copernicus-data-space_sentinel-2-l2a_"
    "S2C_MSIL2A_20250330T100051_N0511_R122_T33UWP_20250330T145914.json"
)
PC_LANDSAT = "planetary-computer_landsat-c2-l2_LC09_L2SP_089090_20240417_02_T1.json"
USGS_LANDSAT = "usgs_landsat-c2l2-sr_LC08_L2SP_028030_20200114_20200824_02_T1_SR.json"

EARTH_SEARCH_KEYS = {"red": "red", "nir": "nir", "mask": "scl"}
PC_S2_KEYS = {"red": "B04", "nir": "B08", "mask": "SCL"}
CDSE_KEYS = {"red": "B04_10m", "nir": "B08_10m", "mask": "SCL_20m"}
LANDSAT_KEYS = {"red": "red", "nir": "nir08", "mask": "qa_pixel"}


def s2_patches(prefix: str) -> list[Patch]:
    """A dense forest, a tea garden and a pond, mid-tile (vegetation and water for the
    offset check)."""
    return [
        Patch(f"{prefix}-F", 5000, 5000, red=0.0312, nir=0.3831, mask=VEGETATION),
        Patch(
            f"{prefix}-T", 5000, 5100, red=0.0587, nir=0.2975, mask=VEGETATION, kind="tea_garden"
        ),
        Patch(f"{prefix}-W", 5100, 5000, red=0.0421, nir=0.0135, mask=WATER),
    ]


def _set(key: str, value):
    def edit(item: dict) -> None:
        item["properties"][key] = value

    return edit


ES = "earth-search-v1/sentinel-2-l2a"
ES_C1_NAME = "earth-search-v1/sentinel-2-c1-l2a"
PC = "planetary-computer/sentinel-2-l2a"
FLAG = "earthsearch:boa_offset_applied"
# (name, item file, asset keys, numbers carry +1000?, item edit, expected catalogue,
#  expected offset rule, metadata contradicted?)
S2_CASES = [
    ("es-l2a", ES_L2A, EARTH_SEARCH_KEYS, False, None, ES, "flag", False),
    # Earth Search issues #66/#71: flag false on numbers whose offset is already removed
    ("es-flag-false-wrong", ES_L2A, EARTH_SEARCH_KEYS, False, _set(FLAG, False), ES, "data", True),
    # and the other way: flag true on numbers that still carry +1000
    ("es-flag-true-wrong", ES_L2A, EARTH_SEARCH_KEYS, True, None, ES, "data", True),
    ("es-c1", ES_C1, EARTH_SEARCH_KEYS, True, None, ES_C1_NAME, "raster:bands", False),
    ("pc-2019", PC_2019, PC_S2_KEYS, False, None, PC, "baseline", False),
    ("pc-2024", PC_2024, PC_S2_KEYS, True, None, PC, "baseline", False),
    ("cdse", CDSE, CDSE_KEYS, True, None, "copernicus-data-space/sentinel-2-l2a", "asset", False),
]  # fmt: skip


def _import(engine, path: Path) -> None:
    result = read_parcel_file(path)
    assert not result.rejected
    store.upsert_parcels(engine, result.parcels)


def _by_parcel(engine, parcel_ids) -> dict[str, list[dict]]:
    return store.observations_by_parcel(engine, list(parcel_ids))


@pytest.fixture
def sqlite_engine(tmp_path):
    from collateral.db import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'agri.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def test_every_catalogue_item_is_recognised_from_itself():
    names = {
        path.name: recognise(json.loads(path.read_text())).name
        for path in CATALOGUE_ITEMS.glob("*.json")
    }
    assert names == {
        ES_L2A: "earth-search-v1/sentinel-2-l2a",
        ES_C1: "earth-search-v1/sentinel-2-c1-l2a",
        PC_2019: "planetary-computer/sentinel-2-l2a",
        PC_2024: "planetary-computer/sentinel-2-l2a",
        CDSE: "copernicus-data-space/sentinel-2-l2a",
        PC_LANDSAT: "planetary-computer/landsat-c2-l2",
        USGS_LANDSAT: "usgs/landsat-c2l2-sr",
    }


@pytest.mark.parametrize(
    ("item_file", "keys", "with_offset", "edit", "catalogue", "rule", "contradicted"),
    [case[1:] for case in S2_CASES],
    ids=[case[0] for case in S2_CASES],
)
def test_sentinel2_items_of_every_catalogue_read_right_even_with_a_wrong_flag(
    tmp_path, sqlite_engine, item_file, keys, with_offset, edit, catalogue, rule, contradicted
):
    patches = s2_patches("P")
    _, features = build_scene(
        CATALOGUE_ITEMS / item_file,
        tmp_path / "inbox" / "scene",
        keys,
        patches,
        lambda r: s2_numbers(r, with_offset),
        edit,
    )
    _import(sqlite_engine, write_parcels(tmp_path / "parcels.geojson", features))
    summary = run_inbox(sqlite_engine, tmp_path / "inbox", tmp_path / "data")
    [scene] = summary.scenes
    assert scene.status == "processed", scene.error
    assert (scene.catalogue, scene.offset_rule, scene.offset_contradicted) == (
        catalogue,
        rule,
        contradicted,
    )
    assert (scene.warning is not None) == contradicted
    observations = _by_parcel(sqlite_engine, [p.parcel_id for p in patches])
    for p in patches:
        [row] = observations[p.parcel_id]
        assert row["ndvi_mean"] == pytest.approx(expected_ndvi(p.red, p.nir), abs=1e-4)
        assert row["valid_fraction"] == pytest.approx(1.0)
        assert row["sensor"] == scene.sensor
    assert scene.sensor in ("sentinel-2a", "sentinel-2b", "sentinel-2c")
    [ledger] = store.scene_ledger(sqlite_engine)
    assert (ledger["offset_rule"], ledger["offset_contradicted"]) == (rule, contradicted)
    assert ledger["catalogue"] == catalogue and ledger["sensor"] == scene.sensor
    assert ledger["radiometry"]["check"]["checked"] > 200


def test_a_flag_the_numbers_contradict_is_a_warning_in_the_cli(tmp_path, sqlite_env, agri):
    inbox = tmp_path / "inbox"
    patches = s2_patches("W")
    _, features = build_scene(
        CATALOGUE_ITEMS / ES_L2A,
        inbox / "wrong-flag",
        EARTH_SEARCH_KEYS,
        patches,
        lambda r: s2_numbers(r, False),
        _set("earthsearch:boa_offset_applied", False),
    )
    assert agri("db", "upgrade").exit_code == 0
    assert agri("parcels", "import", write_parcels(tmp_path / "p.geojson", features)).exit_code == 0
    result = agri("imagery", "run", "--inbox", inbox, "--json")
    summary = json.loads(result.stdout)
    [scene] = summary["scenes"]
    assert (scene["offset_rule"], scene["offset_contradicted"]) == ("data", True)
    assert summary["offset_contradicted"] == 1
    assert "WARNING scene S2A_39QTA_20230628_0_L2A" in result.stderr
    assert "do not (" in result.stderr  # "...but they do not (NN% of ... below 1000)"
    rows = json.loads(agri("parcels", "observations", "W-F", "--json").stdout)
    assert rows[0]["ndvi_mean"] == pytest.approx(expected_ndvi(0.0312, 0.3831), abs=1e-4)


@pytest.mark.parametrize("item_file", [PC_LANDSAT, USGS_LANDSAT])
def test_landsat_c2_l2_reads_scale_offset_bandpass_and_qa_bits(tmp_path, sqlite_engine, item_file):
    inbox = tmp_path / "inbox"
    patches = [
        Patch("L-F", 3000, 3000, red=0.0312, nir=0.3831, mask=QA_CLEAR),
        Patch("L-W", 3000, 3100, red=0.0421, nir=0.0135, mask=QA_WATER),
        Patch("L-C", 3100, 3000, red=0.0312, nir=0.3831, mask=QA_CLOUD),
        Patch("L-S", 3100, 3100, red=0.0312, nir=0.3831, mask=QA_SHADOW),
    ]
    _, features = build_scene(
        CATALOGUE_ITEMS / item_file, inbox / "ls", LANDSAT_KEYS, patches, landsat_numbers
    )
    _import(sqlite_engine, write_parcels(tmp_path / "parcels.geojson", features))
    summary = run_inbox(sqlite_engine, inbox, tmp_path / "data")
    [scene] = summary.scenes
    assert scene.status == "processed", scene.error
    assert scene.sensor in ("landsat-8", "landsat-9")
    assert scene.offset_rule in ("raster:bands", "catalogue")  # PC declares, USGS does not
    rows = _by_parcel(sqlite_engine, [p.parcel_id for p in patches])
    for p in patches[:2]:
        # what the catalogue's numbers mean, then the HLS line onto the Sentinel-2 scale
        red = (landsat_numbers(p.red) * 2.75e-5 - 0.2 - HLS_RED[1]) / HLS_RED[0]
        nir = (landsat_numbers(p.nir) * 2.75e-5 - 0.2 - HLS_NIR[1]) / HLS_NIR[0]
        [row] = rows[p.parcel_id]
        assert row["ndvi_mean"] == pytest.approx(expected_ndvi(red, nir), abs=1e-4)
        assert row["sensor"] == scene.sensor
    for cloudy in ("L-C", "L-S"):
        [row] = rows[cloudy]
        assert row["ndvi_mean"] is None and row["valid_fraction"] == 0
        assert row["cloud_fraction"] == pytest.approx(1.0)


def _reprocessed(item: dict) -> None:
    """The same acquisition processed again later with a newer baseline: Planetary
    Computer gives it a new id (the processing time is part of it)."""
    item["id"] = item["id"].replace("20240825T215747", "20250102T101500")
    item["properties"]["s2:processing_baseline"] = "05.12"


def test_a_reprocessed_copy_replaces_the_older_one_whichever_comes_first(tmp_path, engine):
    original = (s2_patches("R"), None)
    newer = ([Patch("R-F", 5000, 5000, red=0.0300, nir=0.4000, mask=VEGETATION)], _reprocessed)
    for order, runs in enumerate(([original, newer], [newer, original])):
        store_dir = tmp_path / f"order{order}"
        for run, (patches, edit) in enumerate(runs):
            _, features = build_scene(
                CATALOGUE_ITEMS / PC_2024,
                store_dir / "inbox" / f"copy{run}",
                PC_S2_KEYS,
                patches,
                lambda r: s2_numbers(r, True),
                edit,
            )
            if run == 0:
                _import(engine, write_parcels(store_dir / "parcels.geojson", features))
            summary = run_inbox(engine, store_dir / "inbox", store_dir / "data")
            assert summary.count("failed") == 0
        [row] = _by_parcel(engine, ["R-F"])["R-F"]
        assert row["scene_id"].endswith("20250102T101500")
        assert row["ndvi_mean"] == pytest.approx(expected_ndvi(0.03, 0.40), abs=1e-4)
        statuses = sorted(r["status"] for r in store.scene_ledger(engine))
        assert statuses == ["done", "superseded"]
        assert summary.count("processed") + summary.count("skipped") >= 1
        # the next order starts from an empty database
        from tests.support.databases import empty_all_tables

        empty_all_tables(engine)
