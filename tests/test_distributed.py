"""The imagery job on a real dask.distributed cluster (separate worker processes): the same
observations and events as the serial run, and the ledger still does each scene once."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pytest
import rasterio
from distributed import Client, LocalCluster, get_task_stream
from sqlalchemy import select

from collateral.db import make_engine, upgrade
from remote_sensing import store
from remote_sensing.imagery.job import Cluster, run_inbox
from remote_sensing.parcels import read_parcel_file
from remote_sensing.tables import observations
from tests.support.databases import fresh_postgres_database
from tests.support.paths import REPO_ROOT, SAMPLE_TILES

pytestmark = [pytest.mark.slow]

SCENES = SAMPLE_TILES / "scenes"


def _utc(value):
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # SQLite hands back naive UTC datetimes
    return value


def _results(engine) -> tuple:
    with engine.connect() as c:
        rows = sorted(tuple(map(_utc, r)) for r in c.execute(select(observations)))
    events = sorted(
        (e["parcel_id"], e["kind"], e["start"].isoformat(), e["state"], e["affected_ha"])
        for e in store.stored_events(engine)
    )
    return rows, events


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    root = tmp_path_factory.mktemp("serial")
    engine = make_engine(f"sqlite:///{root / 'agri.db'}")
    upgrade(engine)
    store.upsert_parcels(engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels)
    assert run_inbox(engine, SCENES, root / "data").ok
    yield _results(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def serial_cogs(serial, tmp_path_factory) -> dict[str, np.ndarray]:
    """The serial run's NDVI COGs, pixel by pixel (the serial fixture's data folder)."""
    root = tmp_path_factory.getbasetemp()
    return {p.name: _pixels(p) for p in root.glob("serial*/data/ndvi/*.tif")}


def _pixels(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def _local_cluster():
    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)


def _agri_run(url: str, data_dir, *args) -> dict:
    env = {**os.environ, "AGRI_DATABASE_URL": url, "AGRI_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "collateral.cli",
            "imagery",
            "run",
            "--inbox",
            str(SCENES),
            "--json",
            *args,
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _prepared(url: str):
    engine = make_engine(url)
    upgrade(engine)
    store.upsert_parcels(engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels)
    return engine


def test_a_local_cluster_gives_the_serial_results_and_skips_what_is_done(tmp_path, serial):
    url = f"sqlite:///{tmp_path / 'agri.db'}"
    engine = _prepared(url)
    first = _agri_run(url, tmp_path / "data", "--workers", "2")
    assert (first["processed"], first["failed"]) == (30, 0)
    assert _results(engine) == serial
    again = _agri_run(url, tmp_path / "data", "--workers", "2")
    assert (again["processed"], again["skipped"]) == (0, 30)
    ledger = store.scene_ledger(engine)
    assert len(ledger) == 30 and {r["status"] for r in ledger} == {"done"}
    engine.dispose()


@pytest.mark.postgres
def test_a_separate_scheduler_with_postgresql(tmp_path, serial):
    with (
        fresh_postgres_database("agri_dask") as url,
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
    ):
        engine = _prepared(url)
        summary = _agri_run(url, tmp_path / "data", "--scheduler", cluster.scheduler_address)
        assert (summary["processed"], summary["failed"]) == (30, 0)
        rows, events = _results(engine)
        expected_rows, expected_events = serial
        assert events == expected_events
        assert len(rows) == len(expected_rows)
        for got, want in zip(rows, expected_rows, strict=True):  # float8 round trip
            assert got[:4] == want[:4]  # parcel, scene, date, sensor
            for a, b in zip(got[4:], want[4:], strict=True):
                assert a == b if b is None else a == pytest.approx(b, rel=1e-9, abs=1e-12)
        engine.dispose()


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'agri.db'}"
    _prepared(url).dispose()
    env = {
        **os.environ,
        "AGRI_DATABASE_URL": url,
        "AGRI_DATA_DIR": str(tmp_path / "data"),
        "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s",  # Dask's own setting, honoured
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "collateral.cli",
            "imagery",
            "run",
            "--inbox",
            str(SCENES),
            "--scheduler",
            "tcp://127.0.0.1:9",
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "cannot reach the Dask scheduler" in done.stderr


def test_large_scenes_are_split_into_windows_over_the_workers(tmp_path, serial, serial_cogs):
    """Every sample scene counts as large here (split_pixels=0) and is cut into bands of
    170 rows (not a multiple of the read chunks): observations, events and every NDVI pixel
    are the serial run's, and no scratch file is left behind."""
    url = f"sqlite:///{tmp_path / 'agri.db'}"
    engine = _prepared(url)
    with _local_cluster() as local, Client(local) as client, get_task_stream(client) as tasks:
        cluster = Cluster(client, url, make_engine, split_pixels=0, window_rows=170)
        summary = run_inbox(engine, SCENES, tmp_path / "data", cluster=cluster)
    assert (summary.count("processed"), summary.count("failed")) == (30, 0)
    windows = [t for t in tasks.data if str(t["key"]).startswith("window_on_worker")]
    assert len(windows) == 30 * 3  # 500 rows in bands of 170
    assert len({t["worker"] for t in windows}) == 2, "both workers computed windows"
    assert _results(engine) == serial
    cogs = sorted((tmp_path / "data" / "ndvi").glob("*.tif"))
    assert len(cogs) == len(serial_cogs) == 30
    for path in cogs:
        np.testing.assert_array_equal(_pixels(path), serial_cogs[path.name])
    assert not any((tmp_path / "data" / "scratch").iterdir())
    engine.dispose()


def test_a_worker_killed_mid_scene_has_the_scene_redone(tmp_path, serial, serial_cogs):
    """SIGKILL a worker process while it runs a scene: the cluster redoes that scene on a
    worker that lives, the run finishes with every scene done once and the serial results,
    and no NDVI file is left half-written."""
    url = f"sqlite:///{tmp_path / 'agri.db'}"
    engine = _prepared(url)
    killed: list[str] = []

    def scenes_running(dask_worker) -> list[str]:
        return [
            str(ts.key) for ts in dask_worker.state.executing if "scene_on_worker" in str(ts.key)
        ]

    def kill_a_worker_mid_scene(client: Client, stop: threading.Event) -> None:
        while not stop.is_set() and not killed:
            for address, keys in client.run(scenes_running).items():
                if keys:
                    pid = client.run(os.getpid, workers=[address])[address]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(keys[0])
                    return
            time.sleep(0.01)

    with _local_cluster() as local, Client(local) as client:
        stop = threading.Event()
        killer = threading.Thread(target=kill_a_worker_mid_scene, args=(client, stop))
        killer.start()
        try:
            summary = run_inbox(
                engine, SCENES, tmp_path / "data", cluster=Cluster(client, url, make_engine)
            )
        finally:
            stop.set()
            killer.join(30)
    assert killed, "the kill must land while a scene runs"
    assert (summary.count("processed"), summary.count("failed")) == (30, 0)
    assert _results(engine) == serial
    ledger = store.scene_ledger(engine)
    assert len(ledger) == 30 and {r["status"] for r in ledger} == {"done"}
    # what readers see is complete; a killed write may leave only a hidden temp file
    for path in (tmp_path / "data" / "ndvi").iterdir():
        if path.name.startswith("."):
            assert path.suffix == ".tmp", f"left behind: {path.name}"
            continue
        np.testing.assert_array_equal(_pixels(path), serial_cogs[path.name])
    assert len(list((tmp_path / "data" / "ndvi").glob("*.tif"))) == 30
    engine.dispose()
