"""Livestock commands: farms, gateways, animals, the MQTT ingester, the gateway
simulator, alerts and rejects."""

import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import click

from agri_common.metrics import serve_metrics
from agri_common.rows import jsonable
from bioassets import headcount, registry, rules
from bioassets import store as bio_store
from bioassets.simulator import Faults, Simulator
from collateral import domains
from collateral.cli.context import (
    App,
    parse_time_option,
    pass_app,
    report_rejected,
    stop_on_signals,
)
from collateral.db import make_engine
from telemetry import accounts, farm_alerts
from telemetry import gateways as gateway_store
from telemetry.ingester import Ingester
from telemetry.mqtt_connection import ingester_client_id, parse_mqtt_url
from telemetry.partitions import DEFAULT_PARTITIONS, Leases, PartitionedIngest

GATEWAY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@click.group()
def farms() -> None:
    """Farms and their geofences; verified headcount."""


@farms.command("import")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@pass_app
def farms_import(app: App, path: Path) -> None:
    """Import farms from a GeoJSON FeatureCollection (geometry = geofence, WGS84)."""
    try:
        result = registry.parse_farms(path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    created, updated = bio_store.upsert_farms(app.engine, result.records)
    click.echo(f"imported {created} new and updated {updated} farms from {path}")
    report_rejected(result.errors)


@farms.command("headcount")
@click.argument("farm_id")
@click.option("--at", "at_text", help="ISO 8601 time (default: now).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def farms_headcount(app: App, farm_id: str, at_text: str | None, as_json: bool) -> None:
    """Registered and verified animals per category at a time, with reasons."""
    engine = app.engine
    if bio_store.get_farm(engine, farm_id) is None:
        raise click.ClickException(f"no farm with id {farm_id!r}")
    at = parse_time_option(at_text) if at_text else datetime.now(UTC)
    result = headcount.farm_headcount(engine, farm_id, at)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"farm {farm_id} at {result['at']}")
    for category, c in result["categories"].items():
        click.echo(f"  {category:<14} registered {c['registered']:>5}  verified {c['verified']:>5}")


@click.group()
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
@pass_app
def gateways_add(app: App, gateway_id: str, farm_id: str, mosquitto_dir: Path | None) -> None:
    """Register a gateway and print its MQTT password (shown once, stored hashed)."""
    if not GATEWAY_ID.match(gateway_id):
        raise click.BadParameter("letters, digits, '-' and '_' only", param_hint="GATEWAY_ID")
    engine = app.engine
    if bio_store.get_farm(engine, farm_id) is None:
        raise click.ClickException(f"no farm with id {farm_id!r}; import farms first")
    password = accounts.new_password()
    gateway_store.add_gateway(engine, gateway_id, farm_id, accounts.mosquitto_hash(password))
    click.echo(f"gateway {gateway_id} registered to farm {farm_id}")
    click.echo(f"MQTT username: {gateway_id}")
    click.echo(f"MQTT password: {password}   (shown once; store it in the gateway)")
    if mosquitto_dir is not None:
        broker = parse_mqtt_url(app.settings.mqtt_url)
        ingester = accounts.ingester_hash(broker.username, broker.password)
        accounts.write_mosquitto_files(mosquitto_dir, gateway_store.all_gateways(engine), ingester)
        click.echo(f"wrote {mosquitto_dir}/passwd and {mosquitto_dir}/acl; send the broker SIGHUP")


@click.group()
def animals() -> None:
    """Tagged animals."""


@animals.command("import")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@pass_app
def animals_import(app: App, path: Path) -> None:
    """Import animals from CSV (tag_id,farm_id,species,category,sex,birth_date,parity,lactation)."""
    engine = app.engine
    try:
        result = registry.parse_animals(path, bio_store.farm_ids(engine))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    created, updated = bio_store.upsert_animals(engine, result.records)
    click.echo(f"imported {created} new and updated {updated} animals from {path}")
    report_rejected(result.errors)


@animals.command("show")
@click.argument("tag_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def animals_show(app: App, tag_id: str, as_json: bool) -> None:
    """An animal's registry record and what its tag says now."""
    engine = app.engine
    result = headcount.animal_state(engine, tag_id, datetime.now(UTC))
    if result is None:
        raise click.ClickException(f"no animal with tag {tag_id!r}")
    if as_json:
        click.echo(json.dumps(jsonable(result), indent=2, default=str))
        return
    for key, value in jsonable(result).items():
        click.echo(f"{key:>22}: {value}")


@click.command("ingest")
@click.option(
    "--client-id",
    default=None,
    help="With --shared or --no-shared: the MQTT client id (default: agri-ingest-HOST, or "
    "agri-ingest-HOST-N with --instance). A restart must come back under the same id to "
    "collect what the broker kept for it.",
)
@click.option(
    "--instance",
    type=click.IntRange(0),
    default=None,
    help="With --shared or --no-shared: which of several ingesters on this host this is "
    "(each needs its own number).",
)
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
    "--alert-interval",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds between evaluations of the alert rules for the farms that sent data.",
)
@click.option(
    "--partitions",
    type=click.IntRange(1, 256),
    default=DEFAULT_PARTITIONS,
    show_default=True,
    help="Split the farms into this many partitions, each a persistent MQTT session "
    "agri-ingest-pK served by one process at a time (PostgreSQL advisory locks; every "
    "ingester must use the same number). Survives broker restarts and dead ingesters.",
)
@click.option(
    "--shared/--no-shared",
    default=None,
    help="Instead of partitions, one MQTT session: --shared on a shared subscription "
    "($share/agri-ingest/..., which Mosquitto 2.x does not restore after a restart), "
    "--no-shared on a plain one (a single ingester).",
)
@click.option(
    "--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus metrics on this port."
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port."
)
@pass_app
def ingest(
    app: App,
    client_id: str | None,
    instance: int | None,
    session_expiry: int,
    batch_rows: int,
    batch_ms: int,
    alert_interval: float,
    partitions: int,
    shared: bool | None,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run the MQTT ingester until SIGTERM or SIGINT; drains and acknowledges, exits 0.

    Exits 1, acknowledging nothing unstored, when the database refuses the work itself
    (e.g. a schema that does not match); a database that is briefly away is waited for."""
    if shared is None and (client_id is not None or instance is not None):
        raise click.UsageError(
            "--client-id and --instance name a single session (--shared or --no-shared); "
            "partitions are always agri-ingest-pK"
        )
    app.engine.dispose()  # migrated before the writer process opens it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    serve_metrics(metrics_port, metrics_host)
    tuning = {
        "session_expiry_s": session_expiry,
        "batch_rows": batch_rows,
        "batch_ms": batch_ms,
        "alert_interval_s": alert_interval,
    }
    if shared is None:
        _ingest_partitions(app, partitions, tuning)
        return
    worker = _ingester(app, client_id or ingester_client_id(instance), shared=shared, **tuning)
    stop_on_signals("draining", worker.stop)
    _stopped(worker.run())


def _stopped(stats) -> None:
    """Say what this process stored; exit 1 when the database refused the work."""
    click.echo(
        f"ingest stopped: {stats.messages} messages, {stats.readings_stored} readings stored, "
        f"{stats.rejects} rejects",
        err=True,
    )
    if stats.failure:
        raise click.ClickException(f"ingest stopped: {stats.failure}")


def _ingester(app: App, client_id: str | None, **options) -> Ingester:
    """An ingester on the configured database and broker: one session under
    ``client_id``, or none yet (partitions add theirs)."""
    settings = app.settings
    return Ingester(
        settings.database_url,
        settings.mqtt_url,
        client_id,
        open_engine=make_engine,
        domains=domains.INGEST,
        gateway_offline_after=settings.gateway_offline_after,
        ca_file=settings.mqtt_ca_file,
        **options,
    )


def _ingest_partitions(app: App, partitions: int, tuning: dict) -> None:
    """`agri ingest --partitions N`: serve this process's share of the partitions until
    SIGTERM or SIGINT (sessions drain and acknowledge before their leases go)."""
    stop = stop_on_signals("draining")
    manager = PartitionedIngest(
        Leases(app.settings.database_url, partitions),
        lambda: bio_store.farm_ids(app.engine),
        _ingester(app, None, **tuning),
    )
    manager.run(stop)
    _stopped(manager.ingester.stats)


@click.command("simulate-gateways")
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
@pass_app
def simulate_gateways(
    app: App,
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
        settings = app.settings
        sim = Simulator(
            app.engine,
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
        f"({stats.malformed} malformed, {stats.resent} re-sent); last seq per gateway: "
        f"{stats.seq}; {stats.unacknowledged} message(s) not acknowledged by the ingester"
    )


@click.group()
def alerts() -> None:
    """A farm's device alerts: its animals' and its solar plants'."""


@alerts.command("list")
@click.option("--farm", "farm_id")
@click.option("--open", "open_only", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def alerts_list(app: App, farm_id: str | None, open_only: bool, as_json: bool) -> None:
    """Alerts, oldest first, as the rules last left them (`agri alerts evaluate` runs them)."""
    engine = app.engine
    rows = [jsonable(r) for r in farm_alerts.list_alerts(engine, farm_id, open_only)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(
            f"{r['opened_at'][:19]}  {r['state']:<6} {r['farm_id']:<12} {r['kind']:<16} "
            f"{r['subject']:<16} {r['detail']}"
        )


@alerts.command("evaluate")
@click.option("--farm", "farm_id", help="one farm (default: every registered farm)")
@pass_app
def alerts_evaluate(app: App, farm_id: str | None) -> None:
    """Run the alert rules now (cron, every few minutes): the ingester runs them for the
    farms that send data; what only silence reveals (a gateway offline, a tag not heard
    from) opens here."""
    engine = app.engine
    offline_after = app.settings.gateway_offline_after
    farms = [farm_id] if farm_id else sorted(bio_store.farm_ids(engine))
    for farm in farms:
        rules.evaluate_farm(engine, farm, datetime.now(UTC), offline_after)
    opened = farm_alerts.list_alerts(engine, farm_id, open_only=True)
    click.echo(f"{len(farms)} farms evaluated; {len(opened)} alerts open")


@click.group()
def rejects() -> None:
    """Gateway payloads the ingester refused."""


@rejects.command("list")
@click.option("--gateway", "gateway_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def rejects_list(app: App, gateway_id: str | None, as_json: bool) -> None:
    """Rejected messages and readings with their reasons and raw bytes."""
    rows = [jsonable(r) for r in gateway_store.list_rejects(app.engine, gateway_id)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['received_at'][:19]}  {r['gateway_id'] or '-':<12} {r['reason']}")


COMMANDS = [farms, gateways, animals, ingest, simulate_gateways, alerts, rejects]
