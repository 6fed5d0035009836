"""PostgreSQL for the tests: a database of their own on the configured server, or, when
nothing answers there, on a private cluster this process starts (``initdb`` from Debian's
PostgreSQL packages) on a free port and removes at exit. So the suite needs no running
server, and never depends on the state of one that runs."""

import atexit
import os
import uuid
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.support.private_postgres import PrivatePostgres

CONFIGURED_ADMIN_URL = os.environ.get(
    "AGRI_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
_admin_url: str | None = None


def _answers(url: str) -> bool:
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except OperationalError:
        return False
    finally:
        engine.dispose()


def admin_url() -> str:
    """The admin URL of a PostgreSQL server the tests may create databases on."""
    global _admin_url
    if _admin_url is None:
        if _answers(CONFIGURED_ADMIN_URL):
            _admin_url = CONFIGURED_ADMIN_URL
        else:
            cluster = PrivatePostgres().start()
            atexit.register(cluster.destroy)
            _admin_url = cluster.url().replace("postgresql://", "postgresql+psycopg://")
    return _admin_url


@contextmanager
def fresh_postgres_database(prefix: str = "agri_test"):
    """Create a PostgreSQL database for the caller; drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url().rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def empty_all_tables(engine) -> None:
    """Delete every row of every table (a PostgreSQL database is shared by the session's
    tests)."""
    from collateral.db import all_metadata

    with engine.begin() as conn:
        for meta in reversed(all_metadata()):  # dependents before what they point to
            for table in reversed(meta.sorted_tables):
                conn.execute(table.delete())
