"""The officer's page in a real browser, shared by the browser tests: `agri serve` on the
demo data (a separate process on a free port) and Debian's Chromium driven by Playwright.
Screenshots go to tests/artifacts/ (kept by CI as test artifacts, ignored by git)."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from collateral import auth, loans
from collateral.api import app as api_app
from telemetry.local_broker import free_port
from tests.support.paths import REPO_ROOT, SAMPLE_TILES
from tests.support.solar_fleet import add_plants_and_loan
from tests.support.world import build_world

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
# As the machine notes say: headless, no sandbox as root, and none of Chromium's own calls
# home (this machine's network is closed and refuses them).
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """`agri serve` on the demo data: parcels, imagery, farms whose tags reported an hour
    ago, the shipped tables and the two demo loans, each valued once, and the demo's
    rooftop plants with a fortnight of readings and its loan on two of them."""
    assert not api_app.web_bundle_missing(), "the page is not built: `make test` runs `make web`"
    root = tmp_path_factory.mktemp("web")
    url = f"sqlite:///{root / 'agri.db'}"
    engine = build_world(url, root / "data", datetime.now(UTC) - timedelta(hours=1))
    for entry in json.loads((SAMPLE_TILES / "loans" / "demo-loans.json").read_text()):
        loans.create_loan(engine, loans.LoanIn.model_validate(entry))
        loans.value_now(engine, entry["loan_id"])
    add_plants_and_loan(engine, datetime.now(UTC))
    keys = {
        "officer": auth.create_key(engine, "loan_officer", "ANXI-01"),
        "stranger": auth.create_key(engine, "loan_officer", "XIAMEN-02"),
    }
    port = free_port()
    env = {**os.environ, "AGRI_DATABASE_URL": url, "AGRI_DATA_DIR": str(root / "data")}
    process = subprocess.Popen(
        [sys.executable, "-m", "collateral.cli", "serve", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(root / "serve.log", "w"),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/v1/health", timeout=1)
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, (
                root / "serve.log"
            ).read_text()
            time.sleep(0.2)
    yield {"base": base, "keys": keys, "engine": engine}
    process.terminate()
    process.wait(10)
    engine.dispose()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def new_page(browser, locale: str = "en-US"):
    """A page in a fresh context whose browser speaks ``locale`` (Accept-Language too)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale=locale)
    return context, context.new_page()


@pytest.fixture
def page(browser, server):
    context, page = new_page(browser)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert errors == [], errors


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def sign_in(page, server, who: str = "officer") -> None:
    page.goto(server["base"] + "/")
    page.fill("#key", server["keys"][who])
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=30_000)


def api_get(server, path: str, who: str = "officer"):
    request = urllib.request.Request(
        server["base"] + path, headers={"Authorization": f"Bearer {server['keys'][who]}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def gcj02_kml(engine, parcel_id: str, path: Path) -> Path:
    """A parcel's ground as AMap shows it (GCJ-02), exported as KML by the field library."""
    import geopandas as gpd
    from shapely.geometry import shape

    from remote_sensing import store as rs_store
    from remote_sensing.claims.plots import as_drawn

    ground = shape(json.loads(rs_store.get_parcel(engine, parcel_id)["geometry_geojson"]))
    drawn = as_drawn(ground, "gcj02")
    gpd.GeoDataFrame(geometry=[drawn], crs="EPSG:4326").to_file(path, driver="KML")
    return path
