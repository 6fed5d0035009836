"""`agri imagery sync` against a real STAC API (stac-fastapi-pgstac on a private PostgreSQL
database) whose items name band files on a real nginx: it finds exactly the new items over
the parcels, skips what it has, redoes what the catalogue changed, and records where it
searched from."""

import copy
import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from remote_sensing.imagery import stac_sync
from tests.support.paths import SAMPLE_TILES
from tests.support.range_server import range_server
from tests.support.stac_api import collection, sample_item, stac_api

pytestmark = pytest.mark.postgres

COLLECTION = "sentinel-2-l2a"
SCENES = sorted(p.parent.name for p in (SAMPLE_TILES / "scenes").glob("*/item.json"))


def _item(scene: str, base_url: str) -> dict:
    return sample_item(scene, base_url, COLLECTION)


def _far_away(item: dict) -> dict:
    """The same scene moved 18 degrees west (Yunnan): over none of our parcels."""
    moved = copy.deepcopy(item)
    moved["id"] = item["id"] + "_yunnan"

    def shift(coords):
        return (
            [shift(c) for c in coords]
            if isinstance(coords[0], list)
            else [coords[0] - 18, coords[1]]
        )

    moved["geometry"]["coordinates"] = shift(moved["geometry"]["coordinates"])
    west, south, east, north = moved["bbox"]
    moved["bbox"] = [west - 18, south, east - 18, north]
    return moved


COLLECTION_DOC = collection(COLLECTION, "Sentinel-2 L2A scenes of the sample area (test catalogue)")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with range_server(SAMPLE_TILES / "scenes", tmp_path_factory.mktemp("nginx")) as server:
        yield server


@pytest.fixture
def catalogue(served, tmp_path):
    items = [_item(s, served.base_url) for s in SCENES[:3]]
    with stac_api([COLLECTION_DOC], [*items, _far_away(items[0])], tmp_path / "api.log") as api:
        yield api


def _env(monkeypatch, tmp_path, served):
    monkeypatch.setenv("AGRI_DATABASE_URL", f"sqlite:///{tmp_path / 'agri.db'}")
    monkeypatch.setenv("AGRI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AGRI_IMAGERY_ALLOWED_HOSTS", served.base_url.removeprefix("http://"))


def _process_env(tmp_path, served, **more) -> tuple:
    """A database with the sample parcels and the environment of an `agri` process on it."""
    from collateral.db import make_engine, upgrade
    from remote_sensing import store
    from remote_sensing.parcels import read_parcel_file

    url = f"sqlite:///{tmp_path / 'agri.db'}"
    engine = make_engine(url)
    upgrade(engine)
    store.upsert_parcels(engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels)
    env = {
        **os.environ,
        "AGRI_DATABASE_URL": url,
        "AGRI_DATA_DIR": str(tmp_path / "data"),
        "AGRI_IMAGERY_ALLOWED_HOSTS": served.base_url.removeprefix("http://"),
        **more,
    }
    return engine, env


def _sync(agri, api, *more):
    result = agri(
        "imagery", "sync", "--stac-api", api.url, "--collection", COLLECTION, "--json", *more
    )
    return result.exit_code, json.loads(result.stdout)


def test_sync_finds_new_items_over_the_parcels_skips_known_and_redoes_changed(
    agri, monkeypatch, tmp_path, served, catalogue
):
    _env(monkeypatch, tmp_path, served)
    assert agri("parcels", "import", SAMPLE_TILES / "parcels.geojson").exit_code == 0
    code, first = _sync(agri, catalogue)
    assert code == 0, first
    assert first["searches"][COLLECTION]["found"] == 3  # not the one in Yunnan
    assert (
        sorted(s["scene_id"] for s in first["scenes"] if s["status"] == "processed") == SCENES[:3]
    )
    assert first["searches"][COLLECTION]["from"] is None  # the first sync searches everything

    # the next sync searches acquisitions from its last success less the overlap: these
    # 2023 scenes are not searched again
    fetched = len(served.requests())
    code, again = _sync(agri, catalogue)
    assert code == 0 and again["searches"][COLLECTION]["found"] == 0 and again["scenes"] == []
    since = datetime.fromisoformat(again["searches"][COLLECTION]["from"])
    assert timedelta(days=9) < datetime.now(UTC) - since < timedelta(days=11)  # the overlap
    # from an explicit date it finds them again, and skips them: the ledger has them
    code, known = _sync(agri, catalogue, "--since", "2023-01-01")
    assert code == 0 and [s["status"] for s in known["scenes"]] == ["skipped"] * 3
    assert len(served.requests()) == fetched  # nothing read for what the ledger has

    # the catalogue reprocesses one item (new `updated`) and publishes a new one; this sync
    # window must still see them although their acquisition dates are old
    changed = _item(SCENES[1], served.base_url)
    changed["properties"]["updated"] = "2026-12-01T00:00:00Z"
    new = _item(SCENES[3], served.base_url)
    catalogue.load([changed, new])
    code, third = _sync(agri, catalogue, "--since", "2023-01-01")
    assert code == 0, third
    done = {s["scene_id"]: s["status"] for s in third["scenes"]}
    assert done == {
        SCENES[0]: "skipped",
        SCENES[1]: "processed",
        SCENES[2]: "skipped",
        SCENES[3]: "processed",
    }


def test_an_item_on_a_host_not_allowed_is_refused_and_the_sync_says_so(
    agri, monkeypatch, tmp_path, served, catalogue
):
    _env(monkeypatch, tmp_path, served)
    monkeypatch.setenv("AGRI_IMAGERY_ALLOWED_HOSTS", "sentinel-cogs.s3.us-west-2.amazonaws.com")
    assert agri("parcels", "import", SAMPLE_TILES / "parcels.geojson").exit_code == 0
    code, summary = _sync(agri, catalogue)
    assert code == 1
    assert {s["status"] for s in summary["scenes"]} == {"failed"}
    assert all("not in AGRI_IMAGERY_ALLOWED_HOSTS" in s["error"] for s in summary["scenes"])


def test_search_areas_group_parcels_by_cell_and_versions_follow_the_catalogue():
    import geopandas as gpd
    from shapely.geometry import box

    from remote_sensing.parcel_set import ParcelSet

    frame = gpd.GeoDataFrame(
        {"parcel_id": ["a", "b", "c"]},
        geometry=[
            box(118.1, 25.0, 118.11, 25.01),
            box(118.2, 25.1, 118.21, 25.11),
            box(101.0, 25.0, 101.01, 25.01),
        ],
        crs="EPSG:4326",
    )
    areas = stac_sync.search_areas(ParcelSet.from_frame(frame))
    assert areas == [(101.0, 25.0, 101.01, 25.01), (118.1, 25.0, 118.21, 25.11)]
    item = {
        "id": "x",
        "properties": {"datetime": "2024-01-01T00:00:00Z"},
        "assets": {"red": {"href": "https://h/a.tif?sig=1"}},
    }
    signed_again = copy.deepcopy(item)
    signed_again["assets"]["red"]["href"] = "https://h/a.tif?sig=2"
    assert stac_sync.item_version("api", "c", item) == stac_sync.item_version(
        "api", "c", signed_again
    )
    moved = copy.deepcopy(item)
    moved["assets"]["red"]["href"] = "https://h/b.tif"
    assert stac_sync.item_version("api", "c", item) != stac_sync.item_version("api", "c", moved)
    updated = {**item, "properties": {**item["properties"], "updated": "2024-02-01T00:00:00Z"}}
    assert stac_sync.item_version("api", "c", updated) == "api|c|2024-02-01T00:00:00Z"


def test_a_sync_killed_midway_leaves_whole_scenes_and_the_next_completes_it(
    monkeypatch, tmp_path, served
):
    """SIGKILL once the first scene is in the ledger (the files come from the overloaded
    path, so scenes take seconds): every row left is a whole scene, the sync is not
    recorded as done, and the next sync processes the rest."""
    import signal
    import subprocess

    from remote_sensing import store
    from tests.support.paths import REPO_ROOT
    from tests.support.processes import AGRI
    from tests.support.waiting import wait_for

    items = [_item(s, f"{served.base_url}/busy") for s in SCENES[:4]]
    engine, env = _process_env(tmp_path, served)
    with stac_api([COLLECTION_DOC], items, tmp_path / "api.log") as api:
        command = [*AGRI, "imagery", "sync", "--stac-api", api.url, "--collection", COLLECTION]
        process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stderr=subprocess.PIPE)
        done = lambda: [r for r in store.scene_ledger(engine) if r["status"] == "done"]  # noqa: E731
        assert wait_for(lambda: done() or process.poll() is not None, timeout=120)
        process.send_signal(signal.SIGKILL)
        process.wait()
        finished = {r["scene_id"] for r in done()}
        assert 1 <= len(finished) < len(items), "the sync ended before it could be killed"
        assert {r["status"] for r in store.scene_ledger(engine)} == {"done"}  # no half rows
        with_rows = {
            o["scene_id"]
            for pid in store.load_parcels_frame(engine).parcel_id
            for o in store.parcel_observations(engine, pid)
        }
        assert with_rows == finished
        assert store.last_stac_sync(engine, api.url, COLLECTION) is None
        result = subprocess.run([*command, "--json"], env=env, cwd=REPO_ROOT, capture_output=True)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        summary = json.loads(result.stdout)
        statuses = {s["scene_id"]: s["status"] for s in summary["scenes"]}
        assert statuses == {s: ("skipped" if s in finished else "processed") for s in SCENES[:4]}
        assert store.last_stac_sync(engine, api.url, COLLECTION) is not None


def test_watch_syncs_from_the_api_and_stops_cleanly_on_sigterm(tmp_path, served, catalogue):
    """`agri imagery watch --stac-api`: the scheduled sync as a long-running process; a
    scene the catalogue publishes while it runs is picked up by a later round."""
    import signal
    import subprocess

    from remote_sensing import store
    from tests.support.paths import REPO_ROOT
    from tests.support.processes import AGRI
    from tests.support.waiting import wait_for

    engine, env = _process_env(tmp_path, served, AGRI_STAC_COLLECTIONS=COLLECTION)
    command = [*AGRI, "imagery", "watch", "--stac-api", catalogue.url, "--interval", "0.5"]
    watcher = subprocess.Popen(
        command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    done = lambda: {r["scene_id"] for r in store.scene_ledger(engine) if r["status"] == "done"}  # noqa: E731
    try:
        assert wait_for(lambda: len(done()) == 3, timeout=120), done()
        # a scene acquired now is published: within the next round's search window
        fresh = _item(SCENES[4], served.base_url)
        fresh["id"] = "S2A_FRESH_T50RLN"
        fresh["properties"]["datetime"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        catalogue.load([fresh])
        assert wait_for(lambda: "S2A_FRESH_T50RLN" in done(), timeout=120), done()
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    assert "processed" in out and "watch stopped" in err


def test_an_unreachable_api_is_a_clear_failure_and_records_nothing(agri, monkeypatch, tmp_path):
    from telemetry.local_broker import free_port

    monkeypatch.setenv("AGRI_DATABASE_URL", f"sqlite:///{tmp_path / 'agri.db'}")
    monkeypatch.setenv("AGRI_DATA_DIR", str(tmp_path / "data"))
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = agri("imagery", "sync", "--stac-api", nowhere, "--collection", COLLECTION, "--json")
    assert result.exit_code == 1
    search = json.loads(result.stdout)["searches"][COLLECTION]
    assert search["error"].startswith(f"cannot open the STAC API {nowhere}")
    assert "SEARCH FAILED" in result.stderr
    missing = agri("imagery", "sync", "--collection", COLLECTION)
    assert missing.exit_code == 2 and "--stac-api" in missing.output
