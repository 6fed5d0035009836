"""The imagery job against real databases (SQLite and PostgreSQL) and real COG files."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from sqlalchemy import func, select

from remote_sensing import store
from remote_sensing.imagery.indices import SCL_MASKED
from remote_sensing.imagery.job import run_inbox
from remote_sensing.parcels import read_parcel_file
from remote_sensing.tables import observations
from tests.support.paths import REPO_ROOT, SAMPLE_TILES

TRUTH = json.loads((SAMPLE_TILES / "truth.json").read_text())
AGRI = [sys.executable, "-m", "collateral.cli"]


def _import_sample_parcels(engine):
    store.upsert_parcels(engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels)


def _all_observations(engine) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(observations).order_by(observations.c.parcel_id, observations.c.scene_id)
        ).all()
    return [tuple(r) for r in rows]


def test_second_run_does_nothing_and_rows_are_unchanged(engine, scenes_subset, tmp_path):
    _import_sample_parcels(engine)
    first = run_inbox(engine, scenes_subset, tmp_path / "data")
    assert (first.count("processed"), first.count("failed")) == (4, 0), first.as_json()
    rows = _all_observations(engine)
    assert len(rows) > 4 * 25
    second = run_inbox(engine, scenes_subset, tmp_path / "data")
    assert (second.count("processed"), second.count("skipped")) == (0, 4)
    assert _all_observations(engine) == rows


def test_observations_round_trip_with_nan_as_null(engine, scenes_subset, tmp_path):
    _import_sample_parcels(engine)
    run_inbox(engine, scenes_subset, tmp_path / "data")
    obs = store.parcel_observations(engine, "F-01")
    assert [o["acquired_at"] for o in obs] == sorted(o["acquired_at"] for o in obs)
    assert all(o["acquired_at"].tzinfo is not None for o in obs)
    for o in obs:
        assert set(o) == set(store.OBSERVATION_FIELDS)
        if o["valid_fraction"] == 0:
            assert o["ndvi_mean"] is None


def test_swath_edge_scene_has_no_rows_for_parcels_it_never_imaged(engine, scenes_subset, tmp_path):
    _import_sample_parcels(engine)
    run_inbox(engine, scenes_subset, tmp_path / "data")
    edge = next(s["scene_id"] for s in TRUTH["scenes"] if s["swath_edge"])
    full = next(s["scene_id"] for s in TRUTH["scenes"][6:8] if s["cloud_cover"] == 0)
    with engine.connect() as conn:

        def count(scene_id: str) -> int:
            query = select(func.count()).where(observations.c.scene_id == scene_id)
            return conn.execute(query).scalar()

        assert count(full) == 31
        # the western 40 % was not imaged: its parcels have no row, the others do
        assert 10 < count(edge) < 31


def test_masked_pixels_never_reach_a_statistic(tmp_path, sqlite_env):
    from collateral.db import make_engine, upgrade

    cloudy = next(s for s in TRUTH["scenes"] if 0.2 <= s["cloud_cover"] <= 0.4)
    clean, corrupted = tmp_path / "clean", tmp_path / "corrupted"
    shutil.copytree(SAMPLE_TILES / "scenes" / cloudy["scene_id"], clean / "scene")
    shutil.copytree(SAMPLE_TILES / "scenes" / cloudy["scene_id"], corrupted / "scene")
    with rasterio.open(corrupted / "scene" / "SCL.tif") as src:
        scl = np.kron(src.read(1), np.ones((2, 2), np.uint8))
    masked = np.isin(scl, SCL_MASKED)
    assert masked.mean() > 0.1
    rng = np.random.default_rng(0)
    for band in ("B04.tif", "B08.tif"):
        path = corrupted / "scene" / band
        with rasterio.open(path) as src:
            data, profile = src.read(1), src.profile
        data[masked] = rng.integers(1, 65535, masked.sum())  # garbage under the clouds
        profile.update(driver="COG")
        path.unlink()
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data, 1)

    def stats(inbox: Path, name: str):
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        upgrade(engine)
        _import_sample_parcels(engine)
        summary = run_inbox(engine, inbox, tmp_path / name)
        assert summary.count("processed") == 1
        return _all_observations(engine)

    a, b = stats(clean, "a"), stats(corrupted, "b")
    assert a == b
    cloud_fractions = [row[-1] for row in a]
    assert max(cloud_fractions) > 0.3  # clouds really covered parcels in this scene


def _bad_inbox(tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    good = sorted((SAMPLE_TILES / "scenes").iterdir())[2]
    shutil.copytree(good, inbox / good.name)
    (inbox / "corrupt.tif").write_bytes(b"II*\x00" + os.urandom(2000))
    missing = sorted((SAMPLE_TILES / "scenes").iterdir())[3]
    shutil.copytree(missing, inbox / missing.name)
    item = json.loads((inbox / missing.name / "item.json").read_text())
    del item["assets"]["nir"]
    (inbox / missing.name / "item.json").write_text(json.dumps(item))
    (inbox / missing.name / "B08.tif").unlink()
    gone = sorted((SAMPLE_TILES / "scenes").iterdir())[4]
    shutil.copytree(gone, inbox / gone.name)
    (inbox / gone.name / "B04.tif").unlink()  # the item names it, the delivery lost it
    return inbox


def test_corrupt_tiff_and_missing_asset_fail_without_stopping_the_job(tmp_path, sqlite_env, agri):
    agri("parcels", "import", SAMPLE_TILES / "parcels.geojson")
    inbox = _bad_inbox(tmp_path)
    result = agri("imagery", "run", "--inbox", inbox, "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["processed"], summary["failed"], summary["skipped"]) == (1, 3, 0)
    errors = {s["scene_id"]: s["error"] for s in summary["scenes"] if s["status"] == "failed"}
    assert "not a readable GeoTIFF" in errors["corrupt"]
    assert any("no 'nir' asset" in e for e in errors.values())
    assert any("B04.tif" in e and "does not exist" in e for e in errors.values())
    assert all(s["seconds"] >= 0 for s in summary["scenes"])
    from collateral.db import make_engine

    ledger = store.scene_ledger(make_engine(sqlite_env["AGRI_DATABASE_URL"]))
    assert sorted(r["status"] for r in ledger) == ["done", "failed", "failed", "failed"]
    assert all(r["error"] for r in ledger if r["status"] == "failed")
    # a failed scene is retried by the next run (and fails again, still without stopping)
    again = json.loads(agri("imagery", "run", "--inbox", inbox, "--json").stdout)
    assert (again["processed"], again["skipped"], again["failed"]) == (0, 1, 3)


def test_human_summary_names_the_failures(tmp_path, sqlite_env, agri):
    inbox = _bad_inbox(tmp_path)
    result = agri("imagery", "run", "--inbox", inbox)
    assert result.exit_code == 1
    assert "1 processed, 0 skipped, 3 failed" in result.stdout
    assert "FAILED corrupt" in result.stderr


def test_ndvi_cog_is_written_per_scene(tmp_path, sqlite_env, agri):
    """The NDVI of the part of the scene the parcels need (here, the whole small scene)."""
    inbox = tmp_path / "inbox"
    first = sorted((SAMPLE_TILES / "scenes").iterdir())[0]
    shutil.copytree(first, inbox / first.name)
    assert agri("parcels", "import", SAMPLE_TILES / "parcels.geojson").exit_code == 0
    assert agri("imagery", "run", "--inbox", inbox).exit_code == 0
    cog = tmp_path / "data" / "ndvi" / f"{first.name}.tif"
    with rasterio.open(cog) as src:
        assert src.dtypes[0] == "float32" and src.crs.to_epsg() == 32650
        assert src.profile["tiled"] and src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        ndvi = src.read(1)
    assert np.nanmin(ndvi) >= -1 and np.nanmax(ndvi) <= 1
    assert 0.05 < np.isnan(ndvi).mean() < 0.6  # the clouds of this scene
    assert not list((tmp_path / "data" / "ndvi").glob(".*tmp"))


def _env(tmp_path: Path, name: str) -> dict:
    return {
        **os.environ,
        "AGRI_DATABASE_URL": f"sqlite:///{tmp_path / name / 'agri.db'}",
        "AGRI_DATA_DIR": str(tmp_path / name / "data"),
    }


def _import_parcels_cli(env: dict) -> None:
    command = [*AGRI, "parcels", "import", str(SAMPLE_TILES / "parcels.geojson")]
    subprocess.run(command, env=env, check=True, cwd=REPO_ROOT, capture_output=True)


def _done_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("select count(*) from scenes where status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_kill_midway_then_rerun_equals_a_clean_run(tmp_path):
    inbox = SAMPLE_TILES / "scenes"
    for name in ("killed", "clean"):
        _import_parcels_cli(_env(tmp_path, name))
    victim = subprocess.Popen(
        [*AGRI, "imagery", "run", "--inbox", str(inbox)],
        env=_env(tmp_path, "killed"),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = tmp_path / "killed" / "agri.db"
    deadline = time.monotonic() + 120
    while _done_count(db) < 3 and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done_at_kill = _done_count(db)
    assert 3 <= done_at_kill < 30, "the kill must land midway through the inbox"

    rerun = subprocess.run(
        [*AGRI, "imagery", "run", "--inbox", str(inbox), "--json"],
        env=_env(tmp_path, "killed"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["skipped"] == done_at_kill and summary["processed"] == 30 - done_at_kill
    subprocess.run(
        [*AGRI, "imagery", "run", "--inbox", str(inbox)],
        env=_env(tmp_path, "clean"),
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )

    from collateral.db import make_engine

    killed_rows = _all_observations(make_engine(f"sqlite:///{db}"))
    clean_rows = _all_observations(make_engine(f"sqlite:///{tmp_path / 'clean' / 'agri.db'}"))
    assert len(killed_rows) == len(clean_rows) > 30 * 25
    assert killed_rows == clean_rows
    assert not list((tmp_path / "killed" / "data" / "ndvi").glob(".*tmp"))
    assert len(list((tmp_path / "killed" / "data" / "ndvi").glob("*.tif"))) == 30


@pytest.mark.slow
def test_watch_processes_new_scenes_and_stops_cleanly_on_sigterm(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    env = _env(tmp_path, "watch")
    _import_parcels_cli(env)
    watcher = subprocess.Popen(
        [*AGRI, "imagery", "watch", "--inbox", str(inbox), "--interval", "0.3"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = sorted((SAMPLE_TILES / "scenes").iterdir())[0]
        shutil.copytree(first, tmp_path / "staging")
        os.rename(tmp_path / "staging", inbox / first.name)  # appears atomically
        db = tmp_path / "watch" / "agri.db"
        deadline = time.monotonic() + 60
        while _done_count(db) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _done_count(db) == 1
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    assert "1 processed" in out
    assert "watch stopped" in err


@pytest.mark.parametrize("bad", ["missing-dir"])
def test_run_on_missing_inbox_is_a_clear_error(tmp_path, sqlite_env, agri, bad):
    result = agri("imagery", "run", "--inbox", tmp_path / bad)
    assert result.exit_code != 0
    assert "not a directory" in result.output or "does not exist" in result.output


@pytest.mark.slow
def test_a_data_directory_out_of_space_fails_the_scene_cleanly(
    tmp_path, postgres_url, scenes_subset
):
    """Under a 150 kB file size limit (ulimit -f) the NDVI COGs cannot be written: every
    scene is recorded as failed with a clear error, no file is left as if complete, no
    observation is stored; lifted, the same run completes (the database is on PostgreSQL,
    so only the data directory is short of space)."""
    import resource

    from collateral.db import make_engine, upgrade
    from tests.support.databases import empty_all_tables as _reset

    engine = make_engine(postgres_url)
    upgrade(engine)
    _reset(engine)
    _import_sample_parcels(engine)
    env = {**os.environ, "AGRI_DATABASE_URL": postgres_url, "AGRI_DATA_DIR": str(tmp_path / "d")}

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))

    run = subprocess.run(
        [*AGRI, "imagery", "run", "--inbox", str(scenes_subset), "--json"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        preexec_fn=small_files,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr
    summary = json.loads(run.stdout)
    assert summary["failed"] == len(summary["scenes"]) == 4
    errors = [s["error"] for s in summary["scenes"]]
    assert all("disk full" in e or "File too large" in e for e in errors), errors
    ndvi = tmp_path / "d" / "ndvi"
    for left in ndvi.glob("*") if ndvi.exists() else []:  # only complete files, if any
        assert left.suffix == ".tif", left
        with rasterio.open(left) as src:
            assert src.read(1).shape == (500, 500)
    assert _all_observations(engine) == []
    assert {r["status"] for r in store.scene_ledger(engine)} == {"failed"}

    again = subprocess.run(
        [*AGRI, "imagery", "run", "--inbox", str(scenes_subset), "--json"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["processed"] == 4
    assert len(list(ndvi.glob("*.tif"))) == 4 and _all_observations(engine)
    engine.dispose()


def test_a_cog_write_sweeps_temp_files_of_writes_that_died(tmp_path):
    """A killed worker leaves its hidden temp file; the next write of that COG removes it
    once it is stale, and leaves a fresh one alone (it may be a write in progress)."""
    from pyproj import CRS
    from rasterio.transform import from_origin

    from remote_sensing.imagery.cog import STALE_TMP_S, write_cog

    path = tmp_path / "ndvi" / "scene.tif"
    path.parent.mkdir()
    stale, fresh = path.parent / ".scene.tif.111.tmp", path.parent / ".scene.tif.222.tmp"
    for leftover in (stale, fresh):
        leftover.write_bytes(b"half a COG")
    old = time.time() - STALE_TMP_S - 60
    os.utime(stale, (old, old))
    array = np.linspace(-1, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    # a writer of this host that was killed: swept at once, however fresh its file
    import socket
    import subprocess

    finished = subprocess.Popen(["true"])
    finished.wait()
    killed = path.parent / f".scene.tif.{socket.gethostname()}-{finished.pid}.x1y2z3.tmp"
    killed.write_bytes(b"half a COG")
    write_cog(path, array, CRS.from_epsg(32650), from_origin(600000, 2770000, 10, 10), None)
    assert not stale.exists() and fresh.exists() and not killed.exists()
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(ds.read(1), array)


def test_a_cog_of_blocks_reads_only_them_and_is_nodata_elsewhere(tmp_path):
    """The job's area is memory touched only under the blocks it read: write_cog takes
    those blocks, never reads the rest, and the file is NaN there (with its tags)."""
    from pyproj import CRS
    from rasterio.transform import from_origin

    from remote_sensing.imagery import cog

    rng = np.random.default_rng(5)
    array = rng.random((3000, 2600), dtype=np.float32)  # outside the blocks: garbage
    blocks = [(slice(0, 1024), slice(1024, 2048)), (slice(2048, 3000), slice(0, 700))]
    path = cog.write_cog(
        tmp_path / "blocks.tif",
        array,
        CRS.from_epsg(32650),
        from_origin(600000, 2770000, 10, 10),
        np.nan,
        {"SCENE_ID": "S2A_X"},
        blocks,
    )
    with rasterio.open(path) as src:
        stored = src.read(1)
        assert src.tags()["SCENE_ID"] == "S2A_X" and src.overviews(1) == [2, 4, 8]
        assert src.crs.to_epsg() == 32650 and src.transform == from_origin(600000, 2770000, 10, 10)
    expected = np.full(array.shape, np.nan, np.float32)
    for rows, cols in blocks:
        expected[rows, cols] = array[rows, cols]
    np.testing.assert_array_equal(stored, expected)
    # the overviews average the pixels that are not NaN, as GDAL's AVERAGE does
    with rasterio.open(path) as src:
        half = src.read(1, out_shape=(1500, 1300))
    cells = expected.reshape(1500, 2, 1300, 2)
    with np.errstate(invalid="ignore"):
        mean = np.nansum(cells, axis=(1, 3)) / (~np.isnan(cells)).sum(axis=(1, 3))
    np.testing.assert_allclose(half, mean, rtol=1e-6)
    assert np.isnan(half[600:1000, 400:]).all()  # no block there
    # the overviews are made block by block: a block off their 8-px lines is refused
    with pytest.raises(ValueError, match="multiples of 8 px"):
        cog.write_cog(
            tmp_path / "off.tif",
            array,
            CRS.from_epsg(32650),
            from_origin(600000, 2770000, 10, 10),
            np.nan,
            blocks=[(slice(2047, 3000), slice(0, 700))],
        )
    assert not (tmp_path / "off.tif").exists()


def test_a_sparse_ndvi_cog_stores_only_tiles_with_data_and_a_truncated_one_is_found(tmp_path):
    """The area read for a scatter of parcels is mostly blocks nobody needed: their tiles
    are not stored (the file is small, reads give NaN there); the completeness check finds
    the last stored tile, and a file cut short fails it even when the array's last tile is
    empty."""
    from pyproj import CRS
    from rasterio.transform import from_origin

    from remote_sensing.imagery import cog

    array = np.full((2048, 2048), np.nan, dtype=np.float32)
    rng = np.random.default_rng(3)
    array[512:1024, 0:512] = rng.random((512, 512), dtype=np.float32)  # one tile of data
    sparse = cog.write_cog(
        tmp_path / "sparse.tif", array, CRS.from_epsg(32650), from_origin(0, 0, 10, 10), np.nan
    )
    dense = rng.random((2048, 2048), dtype=np.float32)
    full = cog.write_cog(
        tmp_path / "dense.tif", dense, CRS.from_epsg(32650), from_origin(0, 0, 10, 10), np.nan
    )
    assert sparse.stat().st_size < full.stat().st_size / 8
    with rasterio.open(sparse) as src:
        np.testing.assert_array_equal(src.read(1), array)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(sparse.read_bytes()[: sparse.stat().st_size - 1000])
    with pytest.raises(OSError, match="not written completely"):
        cog._check_complete(cut, array, "cut.tif")
    cog._check_complete(sparse, array, "sparse.tif")  # the whole file passes
