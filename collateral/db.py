"""Engine construction and schema migration (Alembic), shared by every command."""

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions: a new revision changes it too, and
# tests/test_migrations.py fails while it is not Alembic's head. A database already there
# is left alone without importing Alembic or reading its scripts (0.13 s of the start of
# every command).
HEAD_REVISION = "0022"


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs (SQLAlchemy would pick psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def engine_url(engine: Engine) -> str:
    """The URL another process needs to open the same database (password included)."""
    return engine.url.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    """Create an engine; for SQLite, make sure the file's folder exists and enable WAL.

    WAL lets readers (the API, a profile command) work while the imagery job writes,
    and a busy timeout makes a briefly locked database a wait rather than an error.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # Sized for the API's thread pool: several requests of one process at once.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def warm_pool(engine: Engine) -> None:
    """Open the pool's connections now: a server that opens them under its first burst of
    requests answers that burst late (each new PostgreSQL connection is a few ms of
    handshake, taken while requests queue)."""
    connections = [engine.connect() for _ in range(engine.pool.size())]
    for connection in connections:
        connection.close()


def alembic_config(engine: Engine) -> "Config":
    # Alembic is imported when a schema is migrated (0.13 s), not by every command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there."""
    if schema_revision(engine) == HEAD_REVISION:
        return
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


def schema_revision(engine: Engine) -> str | None:
    """The one revision Alembic's version table holds; None for a database without one
    (new) or with several (branches, which Alembic sorts out)."""
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except DBAPIError:  # no such table (or no database: Alembic then says so)
        return None
    return rows[0][0] if len(rows) == 1 else None


def all_metadata() -> list[MetaData]:
    """Every package's table definitions: what the newest revision must have built."""
    import bioassets.tables
    import solar.tables
    from collateral.tables import metadata as collateral_tables
    from remote_sensing.tables import metadata as remote_sensing_tables
    from telemetry.tables import metadata as farm_tables  # with bioassets' and solar's

    assert bioassets.tables.metadata is solar.tables.metadata is farm_tables
    return [remote_sensing_tables, farm_tables, collateral_tables]
