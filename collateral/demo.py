"""The demo on the embedded sample data: what `make demo` runs after the imagery job.

The livestock half registers the sample farms and their gateways, starts a private
Mosquitto from the shipped configuration, lets simulated gateways publish (with faults)
while a real ingester stores, and reads back the verified headcount and alerts. The
valuation half imports the shipped tables and values the two demo loans. Functions return
data; the CLI prints it.
"""

import json
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from bioassets import headcount, registry, rules
from bioassets import store as bio_store
from bioassets.simulator import Faults, SimStats, Simulator, default_gateway
from collateral import domains, errors, loans, prices
from collateral.db import engine_url, make_engine
from collateral.settings import Settings
from remote_sensing import store
from telemetry import accounts, farm_alerts, gateways
from telemetry.ingester import Ingester, IngestStats
from telemetry.local_broker import LocalBroker

SAMPLE = Path(__file__).resolve().parents[1] / "sample_tiles"
DEMO_FAULTS = Faults(silent_tags=3, wanderer=True, fever=True, duplicates=True, malformed=True)


@dataclass
class LivestockDemo:
    published: SimStats
    ingested: IngestStats
    at: datetime  # when the headcount and alerts were evaluated
    headcounts: dict[str, dict]  # farm -> category -> {"registered", "verified", ...}
    open_alerts: list[dict]


def register_sample_farms(engine: Engine) -> dict[str, str]:
    """The sample farms and animals (once), and a gateway per farm with a new password:
    gateway id -> password."""
    if not bio_store.farm_ids(engine):
        bio_store.upsert_farms(engine, registry.parse_farms(SAMPLE / "farms.geojson").records)
        animals = registry.parse_animals(SAMPLE / "animals.csv", bio_store.farm_ids(engine))
        bio_store.upsert_animals(engine, animals.records)
    passwords = {}
    for farm_id in sorted(bio_store.farm_ids(engine)):
        gateway_id = default_gateway(farm_id)
        passwords[gateway_id] = accounts.new_password()
        gateways.add_gateway(
            engine, gateway_id, farm_id, accounts.mosquitto_hash(passwords[gateway_id])
        )
    return passwords


@contextmanager
def private_transport(
    engine: Engine, settings: Settings, client_id: str
) -> Iterator[tuple[LocalBroker, Ingester]]:
    """A private Mosquitto from the shipped configuration with the registered gateways'
    accounts, and a real ingester storing what they publish, for the block; on leaving
    it the ingester drains what it holds, then both stop."""
    ingest_password = accounts.new_password()
    with tempfile.TemporaryDirectory(prefix="agri-broker-") as root:
        broker = LocalBroker(Path(root), gateways.all_gateways(engine), ingest_password).start()
        try:
            worker = Ingester(
                engine_url(engine),
                broker.url(password=ingest_password),
                client_id,
                open_engine=make_engine,
                domains=domains.INGEST,
                gateway_offline_after=settings.gateway_offline_after,
                session_expiry_s=0,
            )
            thread = threading.Thread(target=worker.run, daemon=True)
            thread.start()
            worker.wait_subscribed(10)
            try:
                yield broker, worker
            finally:
                worker.stop()
                thread.join(30)
        finally:
            broker.stop()


def run_livestock(engine: Engine, settings: Settings, seconds: float, now) -> LivestockDemo:
    """Publish for ``seconds`` on a private broker, ingest, then count at ``now()``."""
    passwords = register_sample_farms(engine)
    with private_transport(engine, settings, "agri-demo") as (broker, worker):
        sim = Simulator(engine, broker.url(), passwords, faults=DEMO_FAULTS)
        published = sim.run(seconds, 2.0)
        time.sleep(1.0)  # the last messages reach the ingester; stop() then drains them
    at: datetime = now()
    counts = {}
    for farm_id in sorted(bio_store.farm_ids(engine)):
        rules.evaluate_farm(engine, farm_id, at, settings.gateway_offline_after)
        counts[farm_id] = headcount.farm_headcount(engine, farm_id, at)["categories"]
    open_alerts = farm_alerts.list_alerts(engine, open_only=True)
    return LivestockDemo(published, worker.stats, at, counts, open_alerts)


def value_demo_loans(engine: Engine, at: datetime) -> list[dict]:
    """The shipped tables and the demo loans (once), each loan valued at ``at``: a list of
    {"loan", "valuation", "open_events", "livestock_alerts", "loan_alerts"}."""
    for path in prices.default_tables():
        prices.import_file(engine, path)
    for entry in json.loads((SAMPLE / "loans" / "demo-loans.json").read_text()):
        try:
            loans.get_loan(engine, entry["loan_id"])
        except errors.NotFound:
            loans.create_loan(engine, loans.LoanIn.model_validate(entry))
    out = []
    for loan in loans.list_loans(engine, active_only=True):
        farms = sorted({h["farm_id"] for h in loan["herds"]})
        events = [
            e
            for e in store.stored_events(engine)
            if e["parcel_id"] in loan["parcel_ids"] and e["state"] == "open"
        ]
        out.append(
            {
                "loan": loan,
                "valuation": loans.value_now(engine, loan["loan_id"], at),
                "open_events": events,
                "livestock_alerts": [
                    a for f in farms for a in farm_alerts.list_alerts(engine, f, open_only=True)
                ],
                "loan_alerts": [
                    a
                    for a in loans.list_loan_alerts(engine, [loan["loan_id"]])
                    if a["closed_at"] is None
                ],
            }
        )
    return out


# Two borrowers' plots as their phone maps drew them (ground taken from the sample
# parcels): an honest tea garden drawn on AMap (GCJ-02, exported as KML), and a forest,
# pledged to a demo loan already, claimed as a tea garden on Baidu maps (BD-09).
DEMO_CLAIMS = (
    {
        "ground": "T-03",
        "kind": "tea_garden",
        "crs": "gcj02",
        "owner": "Chen Ming",
        "attributes": {"variety": "Tieguanyin", "planted_year": 2008},
        "file": "chen-ming-amap.kml",
    },
    {
        "ground": "F-07",
        "kind": "tea_garden",
        "crs": "bd09",
        "owner": "Huang Li",
        "attributes": {"planted_year": 2015},
        "file": "huang-li-baidu.geojson",
    },
)
DEMO_CLAIMS_AS_OF = datetime.fromisoformat("2024-12-31T12:00:00+00:00")  # last sample scene


def submit_demo_claims(engine: Engine, folder: Path, max_ha: float) -> list[dict]:
    """Write each demo plot as the borrower's app would (in its map's coordinate system),
    submit it as a claim judged on the sample years, and return the claims."""
    import geopandas as gpd
    from shapely.geometry import shape

    from collateral import claims
    from remote_sensing.claims.plots import as_drawn, format_of

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for entry in DEMO_CLAIMS:
        ground = shape(json.loads(store.get_parcel(engine, entry["ground"])["geometry_geojson"]))
        drawn = as_drawn(ground, entry["crs"])
        path = folder / entry["file"]
        path.unlink(missing_ok=True)  # a KML written again would gain a second layer
        # the file says WGS84, as phone apps' exports do, whatever numbers they hold
        frame = gpd.GeoDataFrame({"name": [entry["owner"]]}, geometry=[drawn], crs="EPSG:4326")
        driver = "KML" if path.suffix == ".kml" else "GeoJSON"
        frame.to_file(path, driver=driver, layer="plot")
        submission = claims.Submission(
            entry["kind"],
            entry["crs"],
            entry["owner"],
            "ANXI-01",
            entry["attributes"],
            DEMO_CLAIMS_AS_OF,
        )
        claim = claims.submit(engine, path.read_bytes(), format_of(path.name), submission, max_ha)
        out.append({"file": str(path), **claim})
    return out
