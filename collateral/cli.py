"""The ``agri`` command line: thin wrappers that wire settings, database and domain code."""

import contextlib
import gc
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import Engine

from bioassets import headcount, registry, rules
from bioassets import store as bio_store
from bioassets.ingester import Ingester, parse_mqtt_url
from bioassets.local_broker import LocalBroker
from bioassets.simulator import Faults, Simulator, default_gateway
from collateral import auth, loans, prices, report
from collateral.db import engine_url, make_engine, upgrade, warm_pool
from collateral.settings import load_settings
from collateral.valuation import ValuationError
from remote_sensing import store
from remote_sensing.job import Cluster, RunSummary, SceneOutcome, run_inbox
from remote_sensing.parcels import ParcelFileError, read_parcel_file
from remote_sensing.profile_plot import render_profile_png
from remote_sensing.profile_update import parcel_profile, parse_as_of
from remote_sensing.profiles import MIN_VALID_FRACTION

GATEWAY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def open_engine() -> Engine:
    """The configured database, migrated to the newest schema on first use."""
    engine = make_engine(load_settings().database_url)
    upgrade(engine)
    return engine


@click.group()
def main() -> None:
    """agri-collateral: satellite- and ear-tag-watched farm assets for loan officers."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest revision."""
    settings = load_settings()
    upgrade(make_engine(settings.database_url))
    click.echo(f"database at {settings.database_url} is up to date")


@main.group()
def parcels() -> None:
    """Tea gardens and forests: import, list, observations."""


@parcels.command("import")
@click.argument("path", type=click.Path(path_type=Path))
def parcels_import(path: Path) -> None:
    """Import parcels from a GeoJSON or GeoPackage file in any CRS."""
    try:
        result = read_parcel_file(path)
    except ParcelFileError as exc:
        raise click.ClickException(str(exc)) from exc
    created, updated = store.upsert_parcels(open_engine(), result.parcels)
    click.echo(f"imported {created} new and updated {updated} parcels from {path}")
    for reason in result.rejected:
        click.echo(f"rejected {reason}", err=True)
    if result.rejected:
        click.echo(f"{len(result.rejected)} feature(s) rejected", err=True)
        sys.exit(1)


@parcels.command("observations")
@click.argument("parcel_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def parcels_observations(parcel_id: str, as_json: bool) -> None:
    """A parcel's NDVI observations in date order."""
    engine = open_engine()
    if store.get_parcel(engine, parcel_id) is None:
        raise click.ClickException(f"no parcel with id {parcel_id!r}")
    rows = store.parcel_observations(engine, parcel_id)
    if as_json:
        click.echo(json.dumps([store.jsonable(r) for r in rows], indent=2))
        return
    click.echo(f"{'date':<12}{'scene':<44}{'mean':>7}{'valid':>7}{'cloud':>7}")
    for r in rows:
        click.echo(
            f"{r['acquired_at']:%Y-%m-%d}  {r['scene_id']:<42}{_fmt(r['ndvi_mean']):>7}"
            f"{r['valid_fraction']:>7.2f}{r['cloud_fraction']:>7.2f}"
        )


@parcels.command("profile")
@click.argument("parcel_id")
@click.option("--as-of", help="Use only data acquired up to this ISO 8601 date or datetime.")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
@click.option("--png", type=click.Path(path_type=Path, dir_okay=False), help="Write a plot.")
@click.option(
    "--min-valid-fraction",
    type=click.FloatRange(0.0, 1.0),
    default=MIN_VALID_FRACTION,
    show_default=True,
    help="Ignore observations that saw less of the parcel than this.",
)
def parcels_profile(
    parcel_id: str, as_of: str | None, as_json: bool, png: Path | None, min_valid_fraction: float
) -> None:
    """A parcel's NDVI story: smoothed series, seasons, health, anomalies, disturbances."""
    try:
        cutoff = parse_as_of(as_of)
    except ValueError as exc:
        raise click.BadParameter(f"{as_of!r} is not an ISO 8601 date or datetime") from exc
    engine = open_engine()
    try:
        profile = parcel_profile(
            engine, parcel_id, as_of=cutoff, min_valid_fraction=min_valid_fraction
        )
    except KeyError as exc:
        raise click.ClickException(f"no parcel with id {parcel_id!r}") from exc
    if png is not None:
        render_profile_png(profile, png)
        click.echo(f"wrote {png}", err=True)
    if as_json:
        click.echo(json.dumps(profile, indent=2))
    else:
        health = profile["health_index"]
        click.echo(
            f"{parcel_id} ({profile['kind']}, {profile['area_ha']:.2f} ha) as of "
            f"{(profile['as_of'] or '-')[:10]}: health index "
            f"{'n/a' if health is None else f'{health:.2f}'}, anomaly z {profile['anomaly_z']}"
        )
        for e in profile["events"]:
            click.echo(
                f"  disturbance {e['state']}: from {e['start']} to {e['end'] or 'now'}, "
                f"severity {e['severity']:.0%}, affected {e['affected_ha'] or 0:.2f} ha"
            )


@parcels.command("list")
def parcels_list() -> None:
    """Every parcel with its latest clear NDVI: what the imagery says today."""
    engine = open_engine()
    frame = store.load_parcels_frame(engine)
    summary = store.latest_clear_summary(engine, MIN_VALID_FRACTION)
    health = store.profile_overview(engine)
    for kind, group in frame.groupby("kind"):
        click.echo(f"{len(group)} {kind.replace('_', ' ')} parcels, {group.area_ha.sum():.1f} ha")
    latest_all = [s["latest_acquired_at"] for s in summary.values()]
    if latest_all:
        click.echo(f"latest clear imagery: {max(latest_all):%Y-%m-%d}\n")
    click.echo(
        f"{'parcel':<12}{'kind':<12}{'owner':<22}{'area ha':>9}  {'latest clear NDVI':>17}"
        f"  {'on':<10}  {'clear obs':>9}  {'health':>6}  disturbance"
    )
    for row in frame.itertuples():
        s = summary.get(row.parcel_id, {"clear_count": 0})
        latest = s.get("latest_acquired_at")
        latest_day = latest.date().isoformat() if latest else "-"
        area = f"{row.area_ha:.2f}" if row.area_ha >= 0.01 else f"{row.area_ha:.4f}"
        click.echo(
            f"{row.parcel_id:<12}{row.kind:<12}{(row.owner or '')[:20]:<22}{area:>9}"
            f"  {_fmt(s.get('latest_ndvi')):>17}  {latest_day:<10}"
            f"  {s['clear_count']:>9}  {_fmt(health.get(row.parcel_id, {}).get('health_index')):>6}"
            f"  {health.get(row.parcel_id, {}).get('disturbance', '')}"
        )
    click.echo(f"clear = at least {MIN_VALID_FRACTION:.0%} of the parcel seen without cloud")
    click.echo("health = 1 at the parcel's usual NDVI for the time of year, 0 at 4 spreads below")


@main.group()
def imagery() -> None:
    """The imagery job: satellite scenes to parcel observations."""


@imagery.command("run")
@click.option("--inbox", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--scheduler",
    help="Run the scenes on this Dask distributed cluster (tcp://HOST:PORT; default "
    "AGRI_DASK_SCHEDULER). Its workers must share the database and the data directory.",
)
@click.option("--workers", type=int, help="Start a local Dask cluster of N worker processes.")
def imagery_run(inbox: Path, as_json: bool, scheduler: str | None, workers: int | None) -> None:
    """Process every scene in INBOX not yet done; exit 1 if any scene failed."""
    with _dask_cluster(scheduler or load_settings().dask_scheduler, workers) as cluster:
        summary = _run(inbox, cluster)
    _report(summary, as_json)
    sys.exit(0 if summary.ok else 1)


@contextlib.contextmanager
def _dask_cluster(scheduler: str | None, workers: int | None):
    """None (serial, in this process), a remote scheduler's client, or a local cluster."""
    if scheduler and workers:
        raise click.UsageError("give --scheduler or --workers, not both")
    if not scheduler and not workers:
        yield None
        return
    from distributed import Client, LocalCluster

    settings = load_settings()
    with contextlib.ExitStack() as stack:
        if workers:
            local = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
            stack.enter_context(local)
            client = stack.enter_context(Client(local))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout="20s"))
            except OSError as exc:
                message = f"cannot reach the Dask scheduler {scheduler}: {exc}"
                raise click.ClickException(message) from exc
        yield Cluster(client, settings.database_url, make_engine)


@imagery.command("watch")
@click.option("--inbox", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--interval", default=300.0, show_default=True, help="Seconds between scans.")
@click.option("--json", "as_json", is_flag=True, help="Print each run's summary as JSON.")
def imagery_watch(inbox: Path, interval: float, as_json: bool) -> None:
    """Run the job every INTERVAL seconds until SIGTERM or SIGINT, then stop cleanly."""
    stop = threading.Event()

    def _stop(signum, _frame) -> None:
        click.echo(f"received {signal.Signals(signum).name}, stopping after this scan", err=True)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop.is_set():
        summary = _run(inbox)
        if summary.count("processed") or summary.count("failed") or as_json:
            _report(summary, as_json)
        stop.wait(interval)
    click.echo("watch stopped", err=True)


@main.group()
def farms() -> None:
    """Farms and their geofences; verified headcount."""


@farms.command("import")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def farms_import(path: Path) -> None:
    """Import farms from a GeoJSON FeatureCollection (geometry = geofence, WGS84)."""
    try:
        result = registry.parse_farms(path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    created, updated = bio_store.upsert_farms(open_engine(), result.records)
    click.echo(f"imported {created} new and updated {updated} farms from {path}")
    _report_errors(result.errors)


@farms.command("headcount")
@click.argument("farm_id")
@click.option("--at", "at_text", help="ISO 8601 time (default: now).")
@click.option("--json", "as_json", is_flag=True)
def farms_headcount(farm_id: str, at_text: str | None, as_json: bool) -> None:
    """Registered and verified animals per category at a time, with reasons."""
    engine = open_engine()
    if bio_store.get_farm(engine, farm_id) is None:
        raise click.ClickException(f"no farm with id {farm_id!r}")
    try:
        at = parse_as_of(at_text) if at_text else datetime.now(UTC)
    except ValueError as exc:
        raise click.BadParameter(f"{at_text!r} is not an ISO 8601 time") from exc
    result = headcount.farm_headcount(engine, farm_id, at)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"farm {farm_id} at {result['at']}")
    for category, c in result["categories"].items():
        click.echo(f"  {category:<14} registered {c['registered']:>5}  verified {c['verified']:>5}")


@main.group()
def gateways() -> None:
    """Farm IoT gateways and their broker credentials."""


@gateways.command("add")
@click.argument("gateway_id")
@click.option("--farm", "farm_id", required=True)
@click.option(
    "--mosquitto-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the Mosquitto password and ACL files (all gateways) into this folder.",
)
def gateways_add(gateway_id: str, farm_id: str, mosquitto_dir: Path | None) -> None:
    """Register a gateway and print its MQTT password (shown once, stored hashed)."""
    if not GATEWAY_ID.match(gateway_id):
        raise click.BadParameter("letters, digits, '-' and '_' only", param_hint="GATEWAY_ID")
    engine = open_engine()
    if bio_store.get_farm(engine, farm_id) is None:
        raise click.ClickException(f"no farm with id {farm_id!r}; import farms first")
    password = registry.new_password()
    bio_store.add_gateway(engine, gateway_id, farm_id, registry.mosquitto_hash(password))
    click.echo(f"gateway {gateway_id} registered to farm {farm_id}")
    click.echo(f"MQTT username: {gateway_id}")
    click.echo(f"MQTT password: {password}   (shown once; store it in the gateway)")
    if mosquitto_dir is not None:
        write_mosquitto_files(engine, mosquitto_dir)
        click.echo(f"wrote {mosquitto_dir}/passwd and {mosquitto_dir}/acl; send the broker SIGHUP")


def write_mosquitto_files(engine: Engine, folder: Path) -> None:
    """Password and ACL files for every registered gateway plus the ingester's account."""
    broker = parse_mqtt_url(load_settings().mqtt_url)
    ingester_hash = (
        registry.mosquitto_hash(broker.password)
        if broker.username == registry.INGESTER_USER and broker.password
        else None
    )
    passwd, acl = registry.mosquitto_files(bio_store.all_gateways(engine), ingester_hash)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("passwd", passwd), ("acl", acl)):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text)
        tmp.chmod(0o640)
        tmp.replace(folder / name)


@main.group()
def animals() -> None:
    """Tagged animals."""


@animals.command("import")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def animals_import(path: Path) -> None:
    """Import animals from CSV (tag_id,farm_id,species,category,sex,birth_date,parity,lactation)."""
    engine = open_engine()
    try:
        result = registry.parse_animals(path, bio_store.farm_ids(engine))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    created, updated = bio_store.upsert_animals(engine, result.records)
    click.echo(f"imported {created} new and updated {updated} animals from {path}")
    _report_errors(result.errors)


@animals.command("show")
@click.argument("tag_id")
@click.option("--json", "as_json", is_flag=True)
def animals_show(tag_id: str, as_json: bool) -> None:
    """An animal's registry record and what its tag says now."""
    engine = open_engine()
    result = headcount.animal_state(engine, tag_id, datetime.now(UTC))
    if result is None:
        raise click.ClickException(f"no animal with tag {tag_id!r}")
    if as_json:
        click.echo(json.dumps(store.jsonable(result), indent=2, default=str))
        return
    for key, value in store.jsonable(result).items():
        click.echo(f"{key:>22}: {value}")


@main.command("ingest")
@click.option("--client-id", default=None, help="MQTT client id (default: agri-ingest-HOST-PID).")
@click.option(
    "--session-expiry",
    default=24 * 3600,
    show_default=True,
    help="Seconds the broker keeps this ingester's queue while it is down. Use 0 when "
    "retiring an instance, or its share of the stream waits for it that long.",
)
@click.option("--batch-rows", default=5000, show_default=True, help="Most readings per commit.")
@click.option("--batch-ms", default=100, show_default=True, help="Longest wait to fill a batch.")
@click.option(
    "--shared/--no-shared",
    default=True,
    show_default=True,
    help="Shared subscription ($share/agri-ingest/...) so several ingesters split the stream. "
    "--no-shared for a single ingester whose subscription must survive a Mosquitto restart.",
)
def ingest(
    client_id: str | None, session_expiry: int, batch_rows: int, batch_ms: int, shared: bool
) -> None:
    """Run the MQTT ingester until SIGTERM or SIGINT; drains and acknowledges, exits 0."""
    settings = load_settings()
    open_engine().dispose()  # migrated before the writer process opens it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    worker = Ingester(
        settings.database_url,
        settings.mqtt_url,
        client_id or f"agri-ingest-{socket.gethostname()}-{os.getpid()}",
        open_engine=make_engine,
        ca_file=settings.mqtt_ca_file,
        session_expiry_s=session_expiry,
        batch_rows=batch_rows,
        batch_ms=batch_ms,
        shared=shared,
    )

    def _stop(signum, _frame) -> None:
        click.echo(f"received {signal.Signals(signum).name}, draining", err=True)
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stats = worker.run()
    click.echo(
        f"ingest stopped: {stats.messages} messages, {stats.readings_stored} readings stored, "
        f"{stats.rejects} rejects",
        err=True,
    )


@main.command("simulate-gateways")
@click.option("--farms", "farm_list", help="Comma-separated farm ids (default: all).")
@click.option("--animals", "animals_per_farm", type=int, help="Animals per farm (default: all).")
@click.option("--interval", default=10.0, show_default=True, help="Seconds between rounds.")
@click.option("--duration", default=60.0, show_default=True, help="Seconds to run.")
@click.option(
    "--credentials",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    required=True,
    help='JSON {"GATEWAY_ID": "password"} of the gateways to play.',
)
@click.option("--silent-tags", default=0, help="Animals per farm whose tags stay silent.")
@click.option("--wanderer", is_flag=True, help="One animal per farm leaves the geofence.")
@click.option("--fever", is_flag=True, help="One animal per farm runs a fever.")
@click.option("--duplicates", is_flag=True, help="Every 10th message is sent twice.")
@click.option("--out-of-order", is_flag=True, help="Shuffled readings, batches held back.")
@click.option("--late", is_flag=True, help="Every 7th batch is a day old.")
@click.option("--malformed", is_flag=True, help="Every 25th message is broken JSON.")
def simulate_gateways(
    farm_list,
    animals_per_farm,
    interval,
    duration,
    credentials,
    silent_tags,
    wanderer,
    fever,
    duplicates,
    out_of_order,
    late,
    malformed,
) -> None:
    """Publish realistic ear-tag traffic for registered farms, with faults on demand."""
    faults = Faults(silent_tags, wanderer, fever, duplicates, out_of_order, late, malformed)
    try:
        settings = load_settings()
        sim = Simulator(
            open_engine(),
            settings.mqtt_url,
            json.loads(credentials.read_text()),
            farm_list.split(",") if farm_list else None,
            animals_per_farm,
            faults,
            ca_file=settings.mqtt_ca_file,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    stats = sim.run(duration, interval)
    click.echo(
        f"published {stats.messages} messages, {stats.readings} readings "
        f"({stats.malformed} malformed); last seq per gateway: {stats.seq}"
    )


@main.command("demo-livestock")
@click.option("--seconds", default=8.0, show_default=True, help="How long the gateways publish.")
def demo_livestock(seconds: float) -> None:
    """The livestock half end to end on a private broker: register, publish, ingest, count."""
    import tempfile

    engine = open_engine()
    sample = Path(__file__).resolve().parents[1] / "sample_tiles"
    if not bio_store.farm_ids(engine):
        bio_store.upsert_farms(engine, registry.parse_farms(sample / "farms.geojson").records)
        animals = registry.parse_animals(sample / "animals.csv", bio_store.farm_ids(engine))
        bio_store.upsert_animals(engine, animals.records)
    passwords = {}
    for farm_id in sorted(bio_store.farm_ids(engine)):
        gateway_id = default_gateway(farm_id)
        passwords[gateway_id] = registry.new_password()
        bio_store.add_gateway(
            engine, gateway_id, farm_id, registry.mosquitto_hash(passwords[gateway_id])
        )
    ingest_password = registry.new_password()
    with tempfile.TemporaryDirectory(prefix="agri-broker-") as root:
        broker = LocalBroker(Path(root), bio_store.all_gateways(engine), ingest_password).start()
        try:
            worker = Ingester(
                engine_url(engine),
                broker.url(password=ingest_password),
                "agri-demo",
                open_engine=make_engine,
                session_expiry_s=0,
            )
            thread = threading.Thread(target=worker.run, daemon=True)
            thread.start()
            worker.wait_connected(10)
            sim = Simulator(
                engine,
                broker.url(),
                passwords,
                faults=Faults(
                    silent_tags=3, wanderer=True, fever=True, duplicates=True, malformed=True
                ),
            )
            stats = sim.run(seconds, 2.0)
            time.sleep(1.0)
            worker.stop()
            thread.join(30)
        finally:
            broker.stop()
    click.echo(
        f"gateways published {stats.messages} messages ({stats.readings} readings, "
        f"{stats.duplicate_messages} resent, {stats.malformed} malformed); ingester stored "
        f"{worker.stats.readings_stored} readings, rejected {worker.stats.rejects}"
    )
    now = datetime.now(UTC)
    click.echo(
        f"\nverified headcount at {now:%Y-%m-%d %H:%M} UTC "
        "(seen in the last 24 h, inside the fence, no fever)"
    )
    for farm_id in sorted(bio_store.farm_ids(engine)):
        rules.evaluate_farm(engine, farm_id, now)
        counts = headcount.farm_headcount(engine, farm_id, now)["categories"]
        for category, c in counts.items():
            if c["registered"]:
                shown = f"{c['verified']:>4} of {c['registered']:>4} verified"
                click.echo(f"  {farm_id:<12} {category:<14} {shown}")
    open_alerts = bio_store.list_alerts(engine, open_only=True)
    click.echo(f"\nopen alerts: {len(open_alerts)}")
    for a in open_alerts[:12]:
        click.echo(f"  {a['farm_id']:<12} {a['kind']:<16} {a['subject']:<16} {a['detail']}")


@main.command("demo-valuation")
def demo_valuation() -> None:
    """The loan officer's view of the demo: value the sample loans now, with their alerts."""
    engine = open_engine()
    sample = Path(__file__).resolve().parents[1] / "sample_tiles"
    for path in prices.default_tables():
        prices.import_file(engine, path)
    for entry in json.loads((sample / "loans" / "demo-loans.json").read_text()):
        try:
            loans.get_loan(engine, entry["loan_id"])
        except loans.NotFound:
            loans.create_loan(engine, loans.LoanIn.model_validate(entry))
    now = datetime.now(UTC)
    for loan in loans.list_loans(engine, active_only=True):
        doc = loans.value_now(engine, loan["loan_id"], now)
        click.echo("\n" + report.valuation_text(doc, loan["borrower"]))
        farms = sorted({h["farm_id"] for h in loan["herds"]})
        events = [e for e in store.stored_events(engine) if e["parcel_id"] in loan["parcel_ids"]]
        livestock = [a for f in farms for a in bio_store.list_alerts(engine, f, open_only=True)]
        events = [e for e in events if e["state"] == "open"]
        click.echo(f"  open alerts on the pledges: {len(events) + len(livestock)}")
        for e in events:
            click.echo(
                f"    parcel {e['parcel_id']}: {e['kind']} since {e['start']:%Y-%m-%d}, "
                f"{e['affected_ha'] or 0:.2f} ha affected"
            )
        for a in livestock:
            click.echo(f"    {a['farm_id']} {a['kind']} {a['subject']}: {a['detail']}")
    click.echo(
        "\nEvery valuation is stored with its inputs: `agri valuations verify ID` recomputes "
        "it; `make serve` starts the API on this data."
    )


@main.group()
def alerts() -> None:
    """Livestock alerts."""


@alerts.command("list")
@click.option("--farm", "farm_id")
@click.option("--open", "open_only", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def alerts_list(farm_id: str | None, open_only: bool, as_json: bool) -> None:
    """Alerts, oldest first."""
    engine = open_engine()
    for farm in [farm_id] if farm_id else sorted(bio_store.farm_ids(engine)):
        rules.evaluate_farm(engine, farm, datetime.now(UTC), _offline_after())
    rows = [store.jsonable(r) for r in bio_store.list_alerts(engine, farm_id, open_only)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(
            f"{r['opened_at'][:19]}  {r['state']:<6} {r['farm_id']:<12} {r['kind']:<16} "
            f"{r['subject']:<16} {r['detail']}"
        )


@main.group()
def rejects() -> None:
    """Gateway payloads the ingester refused."""


@rejects.command("list")
@click.option("--gateway", "gateway_id")
@click.option("--json", "as_json", is_flag=True)
def rejects_list(gateway_id: str | None, as_json: bool) -> None:
    """Rejected messages and readings with their reasons and raw bytes."""
    rows = [store.jsonable(r) for r in bio_store.list_rejects(open_engine(), gateway_id)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['received_at'][:19]}  {r['gateway_id'] or '-':<12} {r['reason']}")


@main.group("prices")
def prices_group() -> None:
    """Price and policy tables (versioned, effective-dated, never edited in place)."""


@prices_group.command("import")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--defaults", is_flag=True, help="Import the shipped illustrative tables.")
def prices_import(paths: tuple[Path, ...], defaults: bool) -> None:
    """Import price or policy tables (YAML or CSV); a version already there is skipped."""
    files = list(paths) + (prices.default_tables() if defaults else [])
    if not files:
        raise click.UsageError("give FILE(s) or --defaults")
    engine = open_engine()
    failed = False
    for path in files:
        try:
            table, added = prices.import_file(engine, path)
        except prices.TableError as exc:
            failed = True
            click.echo(f"rejected {path}:", err=True)
            for problem in exc.problems:
                click.echo(f"  {problem}", err=True)
            continue
        state = "imported" if added else "already present:"
        click.echo(
            f"{state} {table['kind']} {table['version']} effective {table['effective_from']}"
            + (" (illustrative)" if table["illustrative"] else "")
        )
    if failed:
        sys.exit(1)


@prices_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def prices_list(as_json: bool) -> None:
    """Imported versions, oldest first per kind."""
    rows = [store.jsonable(r) for r in prices.list_versions(open_engine())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        flag = " illustrative" if r["illustrative"] else ""
        click.echo(f"{r['kind']:<7} {r['version']:<24} from {r['effective_from']}{flag}")


@main.group("loans")
def loans_group() -> None:
    """Loans and their pledged parcels and herds."""


@loans_group.command("create")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def loans_create(path: Path) -> None:
    """Create a loan from a JSON file (the body of POST /v1/loans), or a list of them."""
    engine = open_engine()
    try:
        body = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path} is not JSON: {exc}") from exc
    for entry in body if isinstance(body, list) else [body]:
        try:
            loan = loans.create_loan(engine, loans.LoanIn.model_validate(entry))
        except (ValueError, loans.Conflict) as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"created loan {loan['loan_id']} ({loan['borrower']}, {loan['branch']})")


@loans_group.command("list")
@click.option("--branch")
@click.option("--json", "as_json", is_flag=True)
def loans_list(branch: str | None, as_json: bool) -> None:
    """Loans with their latest valuation's status."""
    engine = open_engine()
    rows = []
    for loan in loans.list_loans(engine, branch):
        latest = loans.latest_valuation(engine, loan["loan_id"])
        rows.append(
            {
                **store.jsonable(loan),
                "latest_valuation_id": latest["valuation_id"] if latest else None,
                "ltv": latest["ltv"] if latest else None,
                "status": latest["status"] if latest else None,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(
            f"{r['loan_id']:<16} {r['branch']:<10} {report.cny(r['principal_cny']):>16} CNY  "
            f"LTV {r['ltv'] or '-':<8} {r['status'] or 'not valued'}"
        )


@main.command("valuate")
@click.argument("loan_id")
@click.option("--as-of", "as_of_text", help="Value as of this ISO 8601 time (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print the valuation document.")
def valuate(loan_id: str, as_of_text: str | None, as_json: bool) -> None:
    """Value a loan now (or as of a past time) and store the valuation."""
    engine = open_engine()
    try:
        doc = loans.value_now(engine, loan_id, _as_of(as_of_text))
    except (loans.NotFound, ValuationError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(report.valuation_text(doc, loans.get_loan(engine, loan_id)["borrower"]))


@main.group("valuations")
def valuations_group() -> None:
    """Stored valuations."""


@valuations_group.command("verify")
@click.argument("valuation_id")
@click.option("--json", "as_json", is_flag=True)
def valuations_verify(valuation_id: str, as_json: bool) -> None:
    """Recompute a stored valuation from its input snapshot; exit 1 if figures differ."""
    try:
        outcome = loans.verify(open_engine(), valuation_id)
    except loans.NotFound as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(outcome, indent=2))
    elif outcome["identical"]:
        click.echo(f"{valuation_id}: recomputed from its inputs to identical figures")
    else:
        click.echo(f"{valuation_id}: DIFFERS from its recomputation:")
        for d in outcome["differences"]:
            click.echo(f"  {d['field']}: stored {d['stored']!r}, recomputed {d['recomputed']!r}")
    if not outcome["identical"]:
        sys.exit(1)


@valuations_group.command("show")
@click.argument("valuation_id")
@click.option("--json", "as_json", is_flag=True)
def valuations_show(valuation_id: str, as_json: bool) -> None:
    """A stored valuation (add --json for the document with evidence)."""
    try:
        row = loans.get_valuation(open_engine(), valuation_id)
    except loans.NotFound as exc:
        raise click.ClickException(str(exc)) from exc
    doc = loans.document(row["valuation_id"], row["result"], row["created_at"])
    click.echo(json.dumps(doc, indent=2) if as_json else report.valuation_text(doc))


@main.command("revalue")
@click.option("--all", "all_loans", is_flag=True, required=True, help="Every active loan.")
@click.option("--json", "as_json", is_flag=True)
def revalue(all_loans: bool, as_json: bool) -> None:
    """Revalue every active loan now (for cron); alert on a worsened status."""
    outcomes = loans.revalue_all(open_engine())
    if as_json:
        click.echo(json.dumps(outcomes, indent=2))
    for o in outcomes if not as_json else []:
        extra = " (status worsened: alert raised)" if o.get("status_worsened") else ""
        click.echo(
            f"{o['loan_id']:<16} {o['outcome']:<9} {o.get('status') or o.get('error')}{extra}"
        )
    if any(o["outcome"] == "failed" for o in outcomes):
        sys.exit(1)


@main.group("keys")
def keys_group() -> None:
    """API keys."""


@keys_group.command("create")
@click.option("--role", required=True, type=click.Choice(auth.ROLES))
@click.option("--branch", help="The branch a loan_officer works for.")
@click.option("--label", help="Whose key this is.")
def keys_create(role: str, branch: str | None, label: str | None) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    try:
        click.echo(auth.create_key(open_engine(), role, branch, label))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run the HTTP API (FastAPI) on the configured database."""
    import uvicorn

    from collateral.api.app import BUILD_HINT, create_app, web_bundle_missing

    if web_bundle_missing():
        click.echo(f"warning: {BUILD_HINT} The /v1 API works without it.", err=True)
    # One process per `agri serve`; scale with more of them behind a balancer (see
    # deploy/README.md). Uvicorn's own --workers mode answered every request ~44 ms late
    # on this machine (measured with wrk), where one process answers in ~0.5 ms.
    engine = open_engine()
    warm_pool(engine)
    app = create_app(engine, load_settings().data_dir)
    # What start-up imported (numpy, geopandas, SQLAlchemy, ...: ~230,000 objects) lives as
    # long as the process: frozen out of the collector's way, a full collection under load
    # no longer walks them (~80 ms each time on this machine, a pause for every request).
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level="info")


def _as_of(text: str | None) -> datetime | None:
    try:
        return parse_as_of(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 date or time") from exc


def _offline_after() -> timedelta:
    return timedelta(minutes=load_settings().gateway_offline_minutes)


def _report_errors(errors: list[str]) -> None:
    for error in errors:
        click.echo(f"rejected {error}", err=True)
    if errors:
        click.echo(f"{len(errors)} row(s) rejected", err=True)
        sys.exit(1)


def _run(inbox: Path, cluster: Cluster | None = None) -> RunSummary:
    # Under a file size limit (ulimit -f) a write past it must fail like a full disk, so
    # the scene is recorded as failed, instead of the kernel killing the whole job.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    settings = load_settings()
    engine = open_engine()
    progress = sys.stderr.isatty()

    def on_scene(outcome: SceneOutcome) -> None:
        if progress:
            click.echo(
                f"  {outcome.status:<9} {outcome.scene_id} ({outcome.seconds:.1f} s)", err=True
            )

    if not inbox.is_dir():
        raise click.ClickException(f"inbox {inbox} is not a directory")
    return run_inbox(engine, inbox, settings.data_dir, on_scene=on_scene, cluster=cluster)


def _report(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.as_json(), indent=2))
        return
    click.echo(
        f"scenes: {summary.count('processed')} processed, {summary.count('skipped')} skipped, "
        f"{summary.count('failed')} failed; profiles updated: {summary.profiles_updated}"
    )
    for s in summary.scenes:
        if s.status == "failed":
            click.echo(f"  FAILED {s.scene_id}: {s.error}", err=True)
    for parcel_id, error in summary.profile_failures.items():
        click.echo(f"  PROFILE FAILED {parcel_id}: {error}", err=True)


def _fmt(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


if __name__ == "__main__":
    main()
