"""Land commands: parcels and their observations and profiles, and the imagery job."""

import contextlib
import json
import math
import signal
import sys
from pathlib import Path

import click

from agri_common.rows import jsonable
from agri_common.times import parse_time
from collateral.cli.context import App, parse_time_option, pass_app, stop_on_signals
from collateral.db import make_engine
from remote_sensing import store
from remote_sensing.imagery import stac_sync
from remote_sensing.imagery.job import Cluster, RunSummary, SceneOutcome, run_inbox
from remote_sensing.parcels import ParcelFileError, read_parcel_file
from remote_sensing.profiles.profile_update import parcel_profile, rebuild_peers, update_profiles
from remote_sensing.profiles.profiles import MIN_VALID_FRACTION


@click.group()
def parcels() -> None:
    """Tea gardens and forests: import, list, observations."""


@parcels.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@pass_app
def parcels_import(app: App, path: Path) -> None:
    """Import parcels from a GeoJSON or GeoPackage file in any CRS."""
    try:
        result = read_parcel_file(path)
    except ParcelFileError as exc:
        raise click.ClickException(str(exc)) from exc
    created, updated = store.upsert_parcels(app.engine, result.parcels)
    click.echo(f"imported {created} new and updated {updated} parcels from {path}")
    for reason in result.rejected:
        click.echo(f"rejected {reason}", err=True)
    if result.rejected:
        click.echo(f"{len(result.rejected)} feature(s) rejected", err=True)
        sys.exit(1)


@parcels.command("observations")
@click.argument("parcel_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_app
def parcels_observations(app: App, parcel_id: str, as_json: bool) -> None:
    """A parcel's NDVI observations in date order."""
    engine = app.engine
    if store.get_parcel(engine, parcel_id) is None:
        raise click.ClickException(f"no parcel with id {parcel_id!r}")
    rows = store.parcel_observations(engine, parcel_id)
    if as_json:
        click.echo(json.dumps([jsonable(r) for r in rows], indent=2))
        return
    click.echo(f"{'date':<12}{'sensor':<13}{'scene':<44}{'mean':>7}{'valid':>7}{'cloud':>7}")
    for r in rows:
        click.echo(
            f"{r['acquired_at']:%Y-%m-%d}  {r['sensor'] or '-':<11}  {r['scene_id']:<42}"
            f"{_fmt(r['ndvi_mean']):>7}{r['valid_fraction']:>7.2f}{r['cloud_fraction']:>7.2f}"
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
@pass_app
def parcels_profile(
    app: App,
    parcel_id: str,
    as_of: str | None,
    as_json: bool,
    png: Path | None,
    min_valid_fraction: float,
) -> None:
    """A parcel's NDVI story: smoothed series, seasons, health, anomalies, disturbances."""
    cutoff = parse_time_option(as_of, "datetime")
    engine = app.engine
    try:
        profile = parcel_profile(
            engine, parcel_id, as_of=cutoff, min_valid_fraction=min_valid_fraction
        )
    except KeyError as exc:
        raise click.ClickException(f"no parcel with id {parcel_id!r}") from exc
    if png is not None:
        from remote_sensing.rendering.profile_chart import render_profile_png  # matplotlib: 0.5 s

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
        sampling = profile["sampling"]
        if sampling is not None:
            click.echo(
                f"  from {sampling['clear_dates']} clear image(s) in the last "
                f"{sampling['window_days']} days, longest wait "
                f"{sampling['largest_gap_days']} days"
            )
        for e in profile["events"]:
            click.echo(
                f"  disturbance {e['state']}: from {e['start']} to {e['end'] or 'now'}, "
                f"severity {e['severity']:.0%}, affected {e['affected_ha'] or 0:.2f} ha, "
                f"confirmed {e['confirmed']} ({e['detection_delay_days']} days after first seen)"
            )
        for s in profile["suspected"]:
            click.echo(f"  possible damage ({s['state']}): {s['reason']}")


@parcels.command("list")
@pass_app
def parcels_list(app: App) -> None:
    """Every parcel with its latest clear NDVI: what the imagery says today."""
    engine = app.engine
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


@parcels.command("carbon")
@click.argument("parcel_id")
@click.option("--as-of", help="Account at this ISO 8601 date or datetime (default: now).")
@click.option("--since", help="Also the increment since this date (a pledge's baseline).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def parcels_carbon(
    app: App, parcel_id: str, as_of: str | None, since: str | None, as_json: bool
) -> None:
    """A forest's carbon: stock, annual sequestration, increment, carbon reversed by
    disturbances, and every factor used (the carbon table in force at --as-of)."""
    from datetime import UTC, datetime

    from collateral.carbon import CarbonError
    from collateral.evidence import parcel_carbon
    from collateral.valuation import ValuationError

    when = parse_time_option(as_of, "datetime") or datetime.now(UTC)
    start = parse_time_option(since, "date")
    try:
        account = parcel_carbon(app.engine, parcel_id, when, start)
    except (CarbonError, ValuationError) as exc:
        raise click.ClickException(f"{parcel_id}: {exc}") from exc
    if as_json:
        click.echo(json.dumps(account, indent=2))
        return
    click.echo(
        f"{parcel_id} ({account['species_group']}, {account['age_class']}, "
        f"{account['area_ha']} ha) as of {account['as_of'][:10]}: stock "
        f"{account['stock_t_co2e']} t CO2e, {account['annual_t_co2e']} t CO2e a year"
        + (
            f", {account['increment_t_co2e']} t since {account['since'][:10]}"
            if account["since"]
            else ""
        )
    )
    click.echo(f"  {account['formula']}  (table {account['table_version']})")


@click.group()
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
@pass_app
def imagery_run(
    app: App, inbox: Path, as_json: bool, scheduler: str | None, workers: int | None
) -> None:
    """Process every scene in INBOX not yet done; exit 1 if any scene failed."""
    with _dask_cluster(app, scheduler or app.settings.dask_scheduler, workers) as cluster:
        summary = _run(app, inbox, cluster)
    _report(summary, as_json)
    sys.exit(0 if summary.ok else 1)


SIGN_OPTION = click.option(
    "--sign",
    help="Sign asset URLs with this catalogue's signer ("
    + ", ".join([*stac_sync.SIGNERS, stac_sync.NO_SIGNING])
    + "); default AGRI_STAC_SIGN, else what the API's host needs (Planetary Computer).",
)


@imagery.command("sync")
@click.option("--stac-api", help="The STAC API's root URL (default AGRI_STAC_API).")
@click.option(
    "--collection",
    "collections",
    multiple=True,
    help="A collection to search; repeat for more (default AGRI_STAC_COLLECTIONS).",
)
@click.option(
    "--since",
    help="Search items from this date or time (default: the last successful sync of the "
    "API and collection, less 10 days; the first sync: everything).",
)
@click.option("--max-cloud", type=click.FloatRange(0, 100), help="Skip items cloudier (%).")
@SIGN_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def imagery_sync(
    app: App,
    stac_api: str | None,
    collections: tuple[str, ...],
    since: str | None,
    max_cloud: float | None,
    sign: str | None,
    as_json: bool,
) -> None:
    """Search a STAC API for new items over the stored parcels and process them (cron);
    exit 1 if a search or a scene failed. Band files are read over HTTP from the hosts in
    AGRI_IMAGERY_ALLOWED_HOSTS only."""
    api = stac_api or app.settings.stac_api
    wanted = list(collections) or app.settings.collections
    if not api or not wanted:
        raise click.UsageError(
            "give --stac-api URL and --collection NAME (or set AGRI_STAC_API and "
            "AGRI_STAC_COLLECTIONS)"
        )
    try:
        start = parse_time(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    summary = _sync(app, api, wanted, start, max_cloud, _signing(app, api, sign))
    for collection, search in summary.searches.items():
        if "error" not in search and not as_json:
            since_text = (search["from"] or "the beginning")[:19]
            click.echo(f"{collection}: {search['found']} item(s) since {since_text}")
    _report(summary.run, as_json, document=summary.as_json())
    sys.exit(0 if summary.ok else 1)


def _signing(app: App, api: str, requested: str | None):
    """The signing function for the API's asset URLs (None: unsigned), or a click error
    naming the unknown signer or the package to install."""
    try:
        name = stac_sync.signer_for(api, requested or app.settings.stac_sign)
        return stac_sync.signing_modifier(name) if name else None
    except stac_sync.SigningError as exc:
        raise click.ClickException(str(exc)) from exc


def _sync(
    app: App, api: str, collections: list[str], since, max_cloud: float | None, sign
) -> stac_sync.SyncSummary:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as in _run: a full disk fails the scene
    summary = stac_sync.sync(
        app.engine,
        api,
        collections,
        app.settings.data_dir,
        app.settings.allowed_hosts,
        since=since,
        max_cloud=max_cloud,
        on_scene=_progress,
        sign=sign,
    )
    for collection, search in summary.searches.items():
        if "error" in search:
            click.echo(f"  SEARCH FAILED {collection}: {search['error']}", err=True)
    return summary


@contextlib.contextmanager
def _dask_cluster(app: App, scheduler: str | None, workers: int | None):
    """None (serial, in this process), a remote scheduler's client, or a local cluster."""
    if scheduler and workers:
        raise click.UsageError("give --scheduler or --workers, not both")
    if not scheduler and not workers:
        yield None
        return
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if workers:
            local = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
            stack.enter_context(local)
            client = stack.enter_context(Client(local))
        else:
            try:
                # Dask's own connect timeout (distributed.comm.timeouts.connect, 30 s; set
                # DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT to change it)
                client = stack.enter_context(Client(scheduler))
            except OSError as exc:
                message = f"cannot reach the Dask scheduler {scheduler}: {exc}"
                raise click.ClickException(message) from exc
        yield Cluster(client, app.settings.database_url, make_engine)


@imagery.command("watch")
@click.option("--inbox", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--stac-api", help="Sync from this STAC API instead of an inbox (default AGRI_STAC_API)."
)
@click.option("--collection", "collections", multiple=True, help="With --stac-api; repeatable.")
@click.option("--max-cloud", type=click.FloatRange(0, 100), help="With --stac-api.")
@SIGN_OPTION
@click.option("--interval", default=300.0, show_default=True, help="Seconds between scans.")
@click.option("--json", "as_json", is_flag=True, help="Print each run's summary as JSON.")
@pass_app
def imagery_watch(
    app: App,
    inbox: Path | None,
    stac_api: str | None,
    collections: tuple[str, ...],
    max_cloud: float | None,
    sign: str | None,
    interval: float,
    as_json: bool,
) -> None:
    """Run the job every INTERVAL seconds until SIGTERM or SIGINT, then stop cleanly: over
    an inbox, or as `agri imagery sync` over a STAC API."""
    api = stac_api or (None if inbox else app.settings.stac_api)
    if (inbox is None) == (api is None):
        raise click.UsageError("give --inbox DIR or --stac-api URL (or set AGRI_STAC_API)")
    wanted = list(collections) or app.settings.collections
    if api and not wanted:
        raise click.UsageError("give --collection NAME (or set AGRI_STAC_COLLECTIONS)")
    signing = _signing(app, api, sign) if api else None
    stop = stop_on_signals("stopping after this scan")
    while not stop.is_set():
        if api:
            synced = _sync(app, api, wanted, None, max_cloud, signing)
            summary, document = synced.run, synced.as_json()
        else:
            summary, document = _run(app, inbox), None
        if summary.count("processed") or summary.count("failed") or as_json:
            _report(summary, as_json, document)
        stop.wait(interval)
    click.echo("watch stopped", err=True)


def _run(app: App, inbox: Path, cluster: Cluster | None = None) -> RunSummary:
    # Under a file size limit (ulimit -f) a write past it must fail like a full disk, so
    # the scene is recorded as failed, instead of the kernel killing the whole job.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    engine = app.engine
    if not inbox.is_dir():
        raise click.ClickException(f"inbox {inbox} is not a directory")
    return run_inbox(
        engine,
        inbox,
        app.settings.data_dir,
        on_scene=_progress,
        cluster=cluster,
        allowed_hosts=app.settings.allowed_hosts,
    )


def _progress(outcome: SceneOutcome) -> None:
    """One line per scene on a terminal (not in a cron job's mail)."""
    if sys.stderr.isatty():
        click.echo(f"  {outcome.status:<9} {outcome.scene_id} ({outcome.seconds:.1f} s)", err=True)


def _report(summary: RunSummary, as_json: bool, document: dict | None = None) -> None:
    """The run's summary on stdout (text, or JSON: ``document`` if given), its warnings
    (and in text its failures) on stderr."""
    # Metadata the numbers contradicted is worth a human's look even in a cron job.
    for s in summary.scenes:
        if s.warning:
            click.echo(f"  WARNING {s.warning}", err=True)
    if as_json:
        click.echo(json.dumps(document or summary.as_json(), indent=2))
        return
    superseded = summary.count("superseded")
    click.echo(
        f"scenes: {summary.count('processed')} processed, {summary.count('skipped')} skipped, "
        + (f"{superseded} superseded by a better copy, " if superseded else "")
        + f"{summary.count('failed')} failed; profiles updated: {summary.profiles_updated}"
    )
    requests = sum(s.http_requests or 0 for s in summary.scenes)
    if requests:
        fetched = sum(s.http_bytes or 0 for s in summary.scenes)
        click.echo(f"read over HTTP: {fetched / 1e6:.1f} MB in {requests} requests")
    for s in summary.scenes:
        if s.status == "failed":
            click.echo(f"  FAILED {s.scene_id}: {s.error}", err=True)
    for parcel_id, error in summary.profile_failures.items():
        click.echo(f"  PROFILE FAILED {parcel_id}: {error}", err=True)


def _fmt(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


@imagery.command("prune")
@click.option(
    "--older-than-days",
    type=click.IntRange(min=1),
    default=730,
    show_default=True,
    help="Scenes acquired this long ago or more lose their NDVI files.",
)
@click.option("--dry-run", is_flag=True, help="Say what would go; delete nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def imagery_prune(app: App, older_than_days: int, dry_run: bool, as_json: bool) -> None:
    """Delete old scenes' NDVI files (cron). Kept, whatever their age: the files a profile
    still reads (a drop not yet decided, a disturbance's first weeks, and the clear dates
    just before them). Observations and profiles stay; claims see the files that remain,
    so keep more than a claim's 270 days."""
    from datetime import UTC, datetime, timedelta

    from remote_sensing.imagery.retention import prune_ndvi

    before = datetime.now(UTC) - timedelta(days=older_than_days)
    result = prune_ndvi(app.engine, before, dry_run)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} the NDVI files of {len(result['removed'])} scene(s) acquired before "
        f"{before.date()} ({result['bytes'] / 1e6:.1f} MB); kept "
        f"{len(result['kept_for_profiles'])} that profiles still read"
    )


@click.group("profiles")
def profiles_group() -> None:
    """Stored crop profiles: rebuild them after a change of rules."""


@profiles_group.command("rebuild")
@click.option("--parcel", "parcel_ids", multiple=True, help="Only this parcel (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_app
def profiles_rebuild(app: App, parcel_ids: tuple[str, ...], as_json: bool) -> None:
    """Recompute stored profiles from the observations, from each parcel's first clear
    date: every scene's peers, then every parcel (or only the ones named, on the stored
    peers). The imagery job advances profiles scene by scene; this gives the same rows,
    for after an upgrade or a change of the profile rules."""
    engine = app.engine
    peers = None
    if not parcel_ids:
        with engine.begin() as conn:
            peers = rebuild_peers(conn)
        parcel_ids = tuple(sorted(store.parcel_ids(engine)))
    else:
        unknown = sorted(set(parcel_ids) - set(store.get_parcels(engine, list(parcel_ids))))
        if unknown:
            raise click.ClickException(f"no parcel with id {', '.join(map(repr, unknown))}")
    failures = update_profiles(engine, list(parcel_ids))
    result = {
        "parcels": len(parcel_ids) - len(failures),
        "scene_peers": peers,
        "failures": failures,
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"rebuilt the profiles of {result['parcels']} parcel(s)")
        for parcel_id, error in failures.items():
            click.echo(f"  {parcel_id}: {error}", err=True)
    if failures:
        sys.exit(1)


COMMANDS = [parcels, imagery, profiles_group]
