"""Shared fixtures: real databases (SQLite file, a fresh PostgreSQL database), sample data."""

import contextlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from collateral.cli import main as agri_main
from collateral.db import make_engine, upgrade
from telemetry.local_broker import mosquitto_binary
from tests.support.databases import empty_all_tables, fresh_postgres_database
from tests.support.livestock import Broker, seed_livestock
from tests.support.paths import REALDATA, SAMPLE_TILES
from tests.support.world import WORLD_SEEN, build_world

# the browser tests' server, browser and page (tests/support/web.py)
pytest_plugins = ["tests.support.web"]

BROKER_FIXTURES = {"broker"}
POSTGRES_FIXTURES = {"postgres_url"}


def pytest_collection_modifyitems(items) -> None:
    """Mark tests by the services they use: those that ask for the session's broker or a
    PostgreSQL database (a fixture, or the "postgresql" side of a parametrized one) get
    the marker here; modules that start services themselves mark themselves."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if fixtures & BROKER_FIXTURES:
            item.add_marker(pytest.mark.broker)
        if fixtures & POSTGRES_FIXTURES or "postgresql" in params.values():
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The real imagery kept with the tests (tests/data/real: sources and licences)."""
    return REALDATA


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A migrated, empty database: a SQLite file, then the session's PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'agri.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    empty_all_tables(engine)
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


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    try:
        mosquitto_binary()
    except RuntimeError as exc:
        pytest.fail(f"{exc}; `make test` installs it")
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()


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


@pytest.fixture(autouse=True)
def close_world_loans(request):
    """Each test's loans are closed after it: a parcel or herd may be pledged to one active
    loan at a time, and the world is shared by the whole session."""
    yield
    if "world" in request.fixturenames:
        from collateral import loans

        engine = request.getfixturevalue("world")
        for loan in loans.list_loans(engine, active_only=True):
            loans.close_loan(engine, loan["loan_id"])
