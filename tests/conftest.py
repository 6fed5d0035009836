"""Shared fixtures: real databases (SQLite file, a fresh PostgreSQL database), sample data."""

import contextlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from bioassets.local_broker import LocalBroker, mosquitto_binary
from collateral.cli import main as agri_main
from collateral.db import make_engine, upgrade

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_TILES = REPO_ROOT / "sample_tiles"
REALDATA = REPO_ROOT.parent / "shared" / "realdata"
PG_ADMIN_URL = os.environ.get(
    "AGRI_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The team's real imagery folder beside the repository (never committed into it)."""
    if not REALDATA.is_dir():
        pytest.skip(f"real imagery folder {REALDATA} is absent (clone outside the team machines)")
    return REALDATA


@contextmanager
def fresh_postgres_database(prefix: str = "agri_test"):
    """Create a PostgreSQL database for the caller; drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    with fresh_postgres_database() as url:
        yield url


def _reset(engine) -> None:
    """Empty every table (PostgreSQL database is shared by the session's tests)."""
    from bioassets.tables import metadata as bio_metadata
    from collateral.tables import metadata as collateral_metadata
    from remote_sensing.tables import metadata

    with engine.begin() as conn:
        for meta in (collateral_metadata, bio_metadata, metadata):
            for table in reversed(meta.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A migrated, empty database: a SQLite file, then the session's PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'agri.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    _reset(engine)
    engine.dispose()
    return url


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_env(tmp_path, monkeypatch) -> dict:
    """AGRI_* settings pointing at a fresh SQLite database and data dir under tmp_path."""
    env = {
        "AGRI_DATABASE_URL": f"sqlite:///{tmp_path / 'agri.db'}",
        "AGRI_DATA_DIR": str(tmp_path / "data"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def agri():
    """Invoke the ``agri`` CLI in-process; returns the click Result."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(agri_main, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def scenes_subset(tmp_path) -> Path:
    """A copy of a handful of sample scenes (clear, cloudy, swath edge) as an inbox."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    truth = json.loads((SAMPLE_TILES / "truth.json").read_text())
    for scene in truth["scenes"][6:10]:
        shutil.copytree(SAMPLE_TILES / "scenes" / scene["scene_id"], inbox / scene["scene_id"])
    return inbox


# --- livestock: a real Mosquitto per test session, sample farms in a database ----------

GATEWAY_PASSWORDS = {
    "GW-SOW-1": "sow-secret",
    "GW-FAT-1": "fat-secret",
    "GW-CAT-1": "cattle-secret",
}
GATEWAY_FARMS = {"GW-SOW-1": "FARM-SOW", "GW-FAT-1": "FARM-FAT", "GW-CAT-1": "FARM-CATTLE"}
INGESTER_PASSWORD = "ingest-secret"


class Broker(LocalBroker):
    """The test session's broker: the shipped settings, the test gateways' passwords."""

    def __init__(self, root: Path):
        from bioassets import registry

        gateways = [
            {
                "gateway_id": g,
                "farm_id": GATEWAY_FARMS[g],
                "password_hash": registry.mosquitto_hash(p),
            }
            for g, p in GATEWAY_PASSWORDS.items()
        ]
        super().__init__(root, gateways, INGESTER_PASSWORD)
        self.start()

    def url(self, user: str = "agri-ingester", password: str = INGESTER_PASSWORD) -> str:
        return super().url(user, password)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    try:
        mosquitto_binary()
    except RuntimeError as exc:
        pytest.fail(f"{exc}; `make test` installs it")
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()


def seed_livestock(engine) -> None:
    """The sample farms and animals, and the test gateways with the broker's passwords."""
    from bioassets import registry
    from bioassets import store as bio_store

    bio_store.upsert_farms(engine, registry.parse_farms(SAMPLE_TILES / "farms.geojson").records)
    animals = registry.parse_animals(SAMPLE_TILES / "animals.csv", bio_store.farm_ids(engine))
    bio_store.upsert_animals(engine, animals.records)
    for gateway_id, password in GATEWAY_PASSWORDS.items():
        bio_store.add_gateway(
            engine, gateway_id, GATEWAY_FARMS[gateway_id], registry.mosquitto_hash(password)
        )


@pytest.fixture
def livestock_engine(engine):
    """A migrated database (SQLite, then PostgreSQL) with the sample farms seeded."""
    from bioassets.tables import metadata as bio_metadata

    with engine.begin() as conn:
        for table in reversed(bio_metadata.sorted_tables):
            conn.execute(table.delete())
    seed_livestock(engine)
    return engine


# --- a valued world: sample parcels through the imagery job, farms with readings ------

WORLD_AS_OF = "2024-12-31T12:00:00+00:00"  # after the last sample scene (2024-12-31)
WORLD_SEEN = "2024-12-31T10:00:00+00:00"  # when the ear tags last reported
SILENT_SOWS = 3  # the first sows' tags never report


def _seed_world_readings(engine, seen) -> None:
    """Every registered animal reports once at ``seen`` from inside its farm's fence,
    growing animals with a weight; the first SILENT_SOWS sows stay silent."""
    import shapely

    from bioassets import store as bio_store
    from bioassets.messages import Reading
    from bioassets.simulator import growing_weight_kg

    rows = []
    for farm_id in sorted(bio_store.farm_ids(engine)):
        farm = bio_store.get_farm(engine, farm_id)
        point = shapely.geometry.shape(json.loads(farm["geofence_geojson"])).representative_point()
        animals = bio_store.farm_animals(engine, farm_id)
        sows = [a["tag_id"] for a in animals if a["category"] == "breeding_sow"]
        for animal in animals:
            if animal["tag_id"] in sows[:SILENT_SOWS]:
                continue
            reading = Reading(
                tag_id=animal["tag_id"],
                observed_at=seen,
                lat=point.y,
                lon=point.x,
                temperature_c=38.7,
                activity=100.0,
                weight_kg=growing_weight_kg(animal, seen),
            )
            gateway = next(g for g, f in GATEWAY_FARMS.items() if f == farm_id)
            rows.append(bio_store.reading_row(reading, farm_id, gateway, seen, None))
    with engine.begin() as conn:
        bio_store.write_batch(conn, rows, [], [])


def build_world(url: str, data_dir: Path, seen):
    """The sample parcels with every sample scene processed, the sample farms and animals
    with one round of readings at ``seen``, and the shipped price and policy tables."""
    from collateral import prices
    from remote_sensing import store as rs_store
    from remote_sensing.job import run_inbox
    from remote_sensing.parcels import read_parcel_file

    engine = make_engine(url)
    upgrade(engine)
    rs_store.upsert_parcels(engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels)
    summary = run_inbox(engine, SAMPLE_TILES / "scenes", data_dir)
    assert summary.ok, summary.as_json()
    seed_livestock(engine)
    _seed_world_readings(engine, seen)
    for path in prices.default_tables():
        prices.import_file(engine, path)
    return engine


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory):
    """The sample world (see build_world) in SQLite, then PostgreSQL, with the readings at
    WORLD_SEEN. Tests add their own loans (unique ids)."""
    from datetime import datetime

    root = tmp_path_factory.mktemp(f"world-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{root / 'agri.db'}"
        else:
            url = stack.enter_context(fresh_postgres_database("agri_world"))
        engine = build_world(url, root / "data", datetime.fromisoformat(WORLD_SEEN))
        yield engine
        engine.dispose()
