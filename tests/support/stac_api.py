"""A real STAC API for the tests: stac-fastapi-pgstac on a private PostgreSQL database.

The database is created (and dropped) on the test PostgreSQL server, migrated to the
pgstac schema with pypgstac (PostGIS from Debian's postgresql-NN-postgis-3, installed by
`make system-deps`), loaded with the given collections and items, and served by the
stac-fastapi-pgstac application under uvicorn on a free loopback port. ``load`` upserts
more items while it runs (a catalogue publishing or reprocessing scenes).
"""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods
from pypgstac.migrate import Migrate

from telemetry.local_broker import free_port
from tests.support.databases import fresh_postgres_database
from tests.support.paths import SAMPLE_TILES
from tests.support.processes import stop
from tests.support.waiting import wait_for


def collection(collection_id: str, description: str) -> dict:
    """A minimal STAC collection document (world extent, open-ended time)."""
    return {
        "type": "Collection",
        "id": collection_id,
        "stac_version": "1.0.0",
        "description": description,
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2015-06-27T00:00:00Z", None]]},
        },
        "links": [],
    }


@dataclass
class StacApi:
    url: str
    dsn: str

    def load(self, items: list[dict]) -> None:
        """Insert or replace items, as a catalogue does when it publishes or reprocesses."""
        with PgstacDB(dsn=self.dsn) as db:
            Loader(db).load_items(iter(items), insert_mode=Methods.upsert)

    def delete(self, item_id: str, collection: str) -> None:
        with PgstacDB(dsn=self.dsn) as db:
            db.query_one("SELECT delete_item(%s, %s)", (item_id, collection))


@contextmanager
def stac_api(collections: list[dict], items: list[dict], log: Path) -> Iterator[StacApi]:
    with fresh_postgres_database("agri_stac") as url:
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with PgstacDB(dsn=dsn) as db:
            Migrate(db).run_migration()
            loader = Loader(db)
            loader.load_collections(iter(collections), insert_mode=Methods.upsert)
            loader.load_items(iter(items), insert_mode=Methods.upsert)
        parts = urlsplit(dsn)
        port = free_port()
        env = {
            **os.environ,
            "PGUSER": parts.username or "postgres",
            "PGPASSWORD": parts.password or "",
            "PGHOST": parts.hostname or "127.0.0.1",
            "PGPORT": str(parts.port or 5432),
            "PGDATABASE": parts.path.lstrip("/"),
        }
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "stac_fastapi.pgstac.app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env=env,
                stdout=out,
                stderr=out,
            )
        api = StacApi(f"http://127.0.0.1:{port}", dsn)
        try:
            if not wait_for(lambda: _ready(api.url) or process.poll() is not None, 60):
                raise RuntimeError(f"the STAC API did not start:\n{log.read_text()[-3000:]}")
            if process.poll() is not None:
                raise RuntimeError(f"the STAC API exited:\n{log.read_text()[-3000:]}")
            yield api
        finally:
            stop(process)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/collections", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def sample_item(scene: str, base_url: str, collection_id: str) -> dict:
    """A sample scene's STAC item in ``collection_id`` with its band files served from
    ``base_url`` (a range_server over sample_tiles/scenes)."""
    item = json.loads((SAMPLE_TILES / "scenes" / scene / "item.json").read_text())
    item["collection"] = collection_id
    for asset in item["assets"].values():
        asset["href"] = f"{base_url}/{scene}/{asset['href']}"
    return item
