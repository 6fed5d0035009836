"""Planetary Computer's asset URLs must be signed: `agri imagery sync --sign
planetary-computer` signs each search page with the `planetary-computer` package, whose
token service is a real HTTP server started here (PC_SDK_SAS_URL), and reads the signed
URLs on the catalogue's blob host, which a real nginx answers as the job's HTTP proxy
(GDAL_HTTP_PROXY, as a bank's network would have it). Each sync is its own process:
the package keeps its settings and tokens for the life of one."""

import json
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from remote_sensing.imagery import stac_sync
from tests.support.paths import REPO_ROOT, SAMPLE_TILES
from tests.support.processes import AGRI
from tests.support.range_server import range_server
from tests.support.stac_api import stac_api
from tests.test_stac_sync import COLLECTION, COLLECTION_DOC, SCENES, _item, _process_env

pytestmark = pytest.mark.postgres

BLOB_HOST = "sentinel2l2a01.blob.core.windows.net"  # Planetary Computer's Sentinel-2 account


class TokenService:
    """Planetary Computer's SAS token endpoint (GET /{account}/{container}): a new token on
    every request, or 403 while ``refuse`` is set."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.refuse = False
        self.lifetime = timedelta(hours=1)
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                service.requests.append(self.path)
                if service.refuse:
                    body, status = {"message": "subscription key required"}, 403
                else:
                    expiry = datetime.now(UTC) + service.lifetime
                    n = len(service.requests)
                    body, status = (
                        {
                            "msft:expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "token": f"st=2026-12-02&se=2026-12-03&sp=rl&sv=2024-05-04&sr=c"
                            f"&sig=AGRITEST{n}",
                        },
                        200,
                    )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/sas/v1/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tokens():
    service = TokenService()
    yield service
    service.close()


@pytest.fixture(scope="module")
def blob_store(tmp_path_factory):
    with range_server(SAMPLE_TILES / "scenes", tmp_path_factory.mktemp("blob")) as server:
        yield server


def _blob_item(scene: str) -> dict:
    """A sample item as Planetary Computer publishes it: URLs on its blob host, no
    ``updated`` time (the ledger hashes the item instead)."""
    item = _item(scene, f"http://{BLOB_HOST}")
    item["properties"].pop("updated", None)
    return item


def _sync(api, env, *more) -> tuple[int, dict, str]:
    command = [*AGRI, "imagery", "sync", "--stac-api", api.url, "--collection", COLLECTION]
    result = subprocess.run(
        [*command, "--json", *more], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    return result.returncode, json.loads(result.stdout or "{}"), result.stderr


def _blob_env(tmp_path, blob_store, tokens):
    """A database and an ``agri`` environment that reads the blob host through the test's
    nginx (as a proxy) and takes tokens from the test's token service."""
    return _process_env(
        tmp_path,
        blob_store,
        AGRI_IMAGERY_ALLOWED_HOSTS=BLOB_HOST,
        GDAL_HTTP_PROXY=blob_store.base_url.removeprefix("http://"),
        PC_SDK_SAS_URL=tokens.url,
    )


def test_signed_urls_are_read_and_a_refused_token_fails_the_search(tmp_path, blob_store, tokens):
    engine, env = _blob_env(tmp_path, blob_store, tokens)
    with stac_api([COLLECTION_DOC], [_blob_item(s) for s in SCENES[:3]], tmp_path / "a.log") as api:
        before = len(blob_store.requests())
        code, summary, err = _sync(api, env, "--sign", "planetary-computer")
        assert code == 0, err
        assert [s["status"] for s in summary["scenes"]] == ["processed"] * 3
        # a token per container (PC's token is per account and container), and every
        # band read went to the blob host with the token's signature
        assert sorted(tokens.requests) == sorted(
            f"/api/sas/v1/token/sentinel2l2a01/{s}" for s in SCENES[:3]
        )
        read = blob_store.requests()[before:]
        assert read and all(r.host == BLOB_HOST for r in read)
        assert all("sig=AGRITEST" in r.query and r.status in (200, 206) for r in read)
        # the staged item keeps the signed URLs it was read with; the ledger's version
        # does not depend on the token, so an unchanged item is skipped next time
        code, again, err = _sync(api, env, "--sign", "planetary-computer", "--since", "2023-01-01")
        assert code == 0, err
        assert [s["status"] for s in again["scenes"]] == ["skipped"] * 3

        # the token service refuses: the search fails with the signer's reason, nothing
        # is read or recorded as synced
        tokens.refuse = True
        recorded = stac_sync_rows(engine)
        signed = ("--sign", "planetary-computer", "--since", "2023-01-01")
        code, refused, _ = _sync(api, env, *signed)
        assert code == 1
        error = refused["searches"][COLLECTION]["error"]
        assert "signing asset URLs with planetary-computer failed" in error and "403" in error
        assert refused["scenes"] == [] and stac_sync_rows(engine) == recorded


def test_each_scene_is_read_with_a_token_taken_when_it_is_read(tmp_path, blob_store, tokens):
    """A token outlived by a long sync (Planetary Computer's last about an hour; these a
    few seconds, so the package takes a new one whenever asked): each item is signed
    again just before its files are read, so no scene is read with the search's tokens."""
    _engine, env = _blob_env(tmp_path, blob_store, tokens)
    tokens.lifetime = timedelta(seconds=5)  # under the package's 60 s: never reused
    with stac_api([COLLECTION_DOC], [_blob_item(s) for s in SCENES[:3]], tmp_path / "a.log") as api:
        before = len(blob_store.requests())
        code, summary, err = _sync(api, env, "--sign", "planetary-computer")
        assert code == 0, err
        assert [s["status"] for s in summary["scenes"]] == ["processed"] * 3
    # three tokens for the search page's three items, then one per scene as it is read
    # a token per asset URL (3 bands x 3 items) as the search page is signed, and again
    # for each item as its scene is read
    assert len(tokens.requests) == 18
    search_tokens = {f"sig=AGRITEST{n}" for n in range(1, 10)}
    read = blob_store.requests()[before:]
    assert read and all(r.status in (200, 206) for r in read)
    used = {part for r in read for part in r.query.split("&") if part.startswith("sig=")}
    assert used and not used & search_tokens, used
    for path in {r.path for r in read}:  # each file is read with one token, taken for it
        assert len({r.query for r in read if r.path == path}) == 1


def stac_sync_rows(engine) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM stac_syncs")).scalar_one()


def test_the_signer_follows_the_catalogue_unless_told(agri, monkeypatch, tmp_path):
    pc = "https://planetarycomputer.microsoft.com/api/stac/v1"
    assert stac_sync.signer_for(pc) == "planetary-computer"
    assert stac_sync.signer_for("https://earth-search.aws.element84.com/v1") is None
    assert stac_sync.signer_for(pc, "none") is None
    assert stac_sync.signer_for("http://127.0.0.1:9/", "planetary-computer") == "planetary-computer"
    with pytest.raises(stac_sync.SigningError, match="unknown URL signer 'azure'"):
        stac_sync.signer_for("http://127.0.0.1:9/", "azure")
    # a signer whose package is not installed names the extra to install
    monkeypatch.setitem(stac_sync.SIGNERS, "elsewhere", ("no_such_signer", "sign", "elsewhere"))
    with pytest.raises(stac_sync.SigningError, match=r"pip install 'agri-collateral\[elsewhere\]'"):
        stac_sync.signing_modifier("elsewhere")
    # and the command line says so before searching anything
    monkeypatch.setenv("AGRI_DATABASE_URL", f"sqlite:///{tmp_path / 'agri.db'}")
    result = agri(
        "imagery", "sync", "--stac-api", "http://127.0.0.1:9", "--collection", COLLECTION,
        "--sign", "azure",
    )  # fmt: skip
    assert result.exit_code == 1 and "unknown URL signer 'azure'" in result.output
