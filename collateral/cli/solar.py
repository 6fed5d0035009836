"""Rooftop solar commands: the plants registry, readings from an inverter vendor's export,
the grid's settlements, weather files, the daily job and a plant's days."""

import json
from datetime import UTC, date, datetime
from pathlib import Path

import click

from agri_common.rows import jsonable
from bioassets import store as bio_store
from collateral import solar_policy
from collateral.cli.context import App, pass_app, report_rejected
from collateral.errors import Refused
from solar import alerts, daily, plants, settlements, vendor_export, weather

PLANT_COLUMNS = ("plant_id", "farm_id", "kwp", "ac_kw", "tilt", "azimuth", "serial", "tariff")


@click.group()
def solar() -> None:
    """Rooftop solar plants: registry, readings, the daily job."""


@solar.group("plants")
def plants_group() -> None:
    """The plants registry."""


@plants_group.command("import")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@pass_app
def plants_import(app: App, path: Path) -> None:
    """Import plants from CSV or JSON (plant_id, farm_id, lat, lon, kwp, ac_kw, tilt,
    azimuth from north, commissioned, grid_connected, serial, tariff; Chinese column
    names too)."""
    try:
        result = plants.parse_plants(path, bio_store.farm_ids(app.engine))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    created, updated = plants.upsert_plants(app.engine, result.records)
    click.echo(f"imported {created} new and updated {updated} plants from {path}")
    report_rejected(result.errors)


@plants_group.command("add")
@click.argument("plant_id")
@click.option("--farm", "farm_id", required=True)
@click.option("--lat", type=float, required=True)
@click.option("--lon", type=float, required=True)
@click.option("--kwp", type=float, required=True)
@click.option("--ac-kw", type=float, required=True)
@click.option("--tilt", type=float, required=True)
@click.option("--azimuth", type=float, required=True, help="Degrees from north (180 = south).")
@click.option("--commissioned", required=True)
@click.option("--grid-connected", required=True)
@click.option("--serial", required=True)
@click.option("--tariff", required=True)
@click.option("--name")
@pass_app
def plants_add(app: App, plant_id: str, **fields) -> None:
    """Register (or update) one plant."""
    row = {"plant_id": plant_id, **{k: v for k, v in fields.items() if v is not None}}
    try:
        record = plants.plant_record(row, bio_store.farm_ids(app.engine), plants.tariff_ids())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    created, _ = plants.upsert_plants(app.engine, [record])
    click.echo(f"{'registered' if created else 'updated'} plant {plant_id}")


@plants_group.command("list")
@click.option("--farm", "farm_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def plants_list(app: App, farm_id: str | None, as_json: bool) -> None:
    """The registered plants."""
    rows = plants.list_plants(app.engine, farm_id)
    if as_json:
        click.echo(json.dumps([jsonable(r) for r in rows], indent=2))
        return
    for r in rows:
        click.echo("  ".join(f"{r[c]}" for c in PLANT_COLUMNS))
    click.echo(f"{len(rows)} plants")


@plants_group.command("show")
@click.argument("plant_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def plants_show(app: App, plant_id: str, as_json: bool) -> None:
    """One plant as registered."""
    plant = plants.get_plant(app.engine, plant_id)
    if plant is None:
        raise click.ClickException(f"no plant with id {plant_id!r}")
    if as_json:
        click.echo(json.dumps(jsonable(plant), indent=2))
        return
    for key, value in plant.items():
        click.echo(f"{key:<15} {value}")


@solar.group("readings")
def readings_group() -> None:
    """Inverter readings."""


@readings_group.command("import")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--zone", help="The zone of times given without one (e.g. Asia/Shanghai).")
@pass_app
def readings_import(app: App, path: Path, zone: str | None) -> None:
    """Import an inverter vendor portal's export (CSV: plant_id, time with zone, serial,
    lifetime_kwh, power_w, status; other vendors' names in solar/data/export_columns.csv)."""
    try:
        result = vendor_export.import_export(app.engine, path, zone)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"stored {result.stored} readings ({result.duplicates} already stored) from {path}")
    report_rejected(result.errors)


@solar.group("settlements")
def settlements_group() -> None:
    """The grid company's monthly settlements."""


@settlements_group.command("import")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@pass_app
def settlements_import(app: App, path: Path) -> None:
    """Import a settlement statement (CSV: plant_id, month YYYY-MM, kwh, paid_cny; or
    电站编号, 结算月份, 结算电量(kWh), 结算金额(元)); checked against the counters by the
    daily job's alerts."""
    known = {p["plant_id"] for p in plants.list_plants(app.engine)}
    try:
        result = settlements.parse(path, known)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    stored = settlements.store(app.engine, result.records)
    click.echo(f"stored {stored} monthly settlements from {path}")
    report_rejected(result.errors)


@solar.group("weather")
def weather_group() -> None:
    """Weather for the expected-energy model (until imported: clear sky x the month's
    clearness, solar/data/fujian_climate.csv)."""


@weather_group.command("import")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@pass_app
def weather_import(app: App, path: Path) -> None:
    """Import a county's weather file: PVGIS's typical meteorological year (CSV or JSON,
    re.jrc.ec.europa.eu/pvg_tools) or a CAMS radiation series (1 h or finer, W/m2)."""
    try:
        hours = weather.read(path)
    except weather.WeatherError as exc:
        raise click.ClickException(str(exc)) from exc
    cell, stored = weather.store(app.engine, hours)
    kind = "typical-year" if hours.typical else "measured"
    click.echo(
        f"stored {stored} {kind} hours ({hours.source}) for weather cell {cell} "
        f"({hours.lat:.3f}, {hours.lon:.3f}): plants within it use them from the next daily job"
    )


@solar.command("daily")
@click.option("--through", "through_text", help="Last local day to process (default: yesterday).")
@pass_app
def solar_daily(app: App, through_text: str | None) -> None:
    """The daily job (cron): every day not yet processed, up to --through."""
    now = datetime.now(UTC)
    through = date.fromisoformat(through_text) if through_text else daily.yesterday(now)
    summary = daily.run(app.engine, through, now)
    if not summary.days:
        click.echo(f"nothing to do through {through} ({summary.plants} plants)")
    else:
        click.echo(
            f"processed {len(summary.days)} days ({summary.days[0]} .. {summary.days[-1]}) "
            f"for {summary.plants} plants: {summary.rows} plant-days"
        )
    try:
        rules = solar_policy.thresholds(app.engine, through)
    except Refused as exc:
        raise click.ClickException(f"alerts not evaluated: {exc}") from exc
    found = alerts.evaluate(app.engine, through, rules, now)
    click.echo(f"solar alerts: {sum(found.values())} open conditions on {len(found)} farms")


@solar.command("days")
@click.argument("plant_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def solar_days_command(app: App, plant_id: str, as_json: bool) -> None:
    """A plant's days: energy, expected, peer ratio, performance ratio, flags."""
    if plants.get_plant(app.engine, plant_id) is None:
        raise click.ClickException(f"no plant with id {plant_id!r}")
    rows = daily.plant_days(app.engine, plant_id)
    if as_json:
        click.echo(json.dumps([jsonable(r) for r in rows], indent=2))
        return
    click.echo(f"{'day':<11} {'kWh':>8} {'expected':>9} {'peers':>6} {'PR':>5}  flags")
    for r in rows:
        click.echo(
            f"{r['day']!s:<11} {_num(r['energy_kwh'], 8, 1)} {_num(r['expected_kwh'], 9, 1)} "
            f"{_num(r['peer_ratio'], 6, 2)} {_num(r['performance_ratio'], 5, 2)}  "
            f"{', '.join(r['flags'])}"
        )


def _num(value, width: int, places: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{places}f}"


COMMANDS = [solar]
