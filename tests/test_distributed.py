"""The imagery job on a real dask.distributed cluster (separate worker processes): the same
observations and events as the serial run, and the ledger still does each scene once."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from distributed import LocalCluster
from sqlalchemy import select

from collateral.db import make_engine, upgrade
from remote_sensing import store
from remote_sensing.job import run_inbox
from remote_sensing.parcels import read_parcel_file
from remote_sensing.tables import observations
from tests.conftest import REPO_ROOT, SAMPLE_TILES, fresh_postgres_database

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
            assert got[:3] == want[:3]  # parcel, scene, date
            for a, b in zip(got[3:], want[3:], strict=True):
                assert a == b if b is None else a == pytest.approx(b, rel=1e-9, abs=1e-12)
        engine.dispose()


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'agri.db'}"
    _prepared(url).dispose()
    env = {**os.environ, "AGRI_DATABASE_URL": url, "AGRI_DATA_DIR": str(tmp_path / "data")}
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
