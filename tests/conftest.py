"""Shared fixtures: real databases (SQLite file, a fresh PostgreSQL database), sample data."""

import json
import os
import shutil
import uuid
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


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"agri_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _reset(engine) -> None:
    """Empty every table (PostgreSQL database is shared by the session's tests)."""
    from bioassets.tables import metadata as bio_metadata
    from remote_sensing.tables import metadata

    with engine.begin() as conn:
        for meta in (bio_metadata, metadata):
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
