"""Claims commands: a borrower's plot checked against the satellite record, and the
land-cover model that judges it."""

import json
from pathlib import Path

import click

from agri_common.rows import jsonable
from collateral import claims, report
from collateral.cli.context import App, parse_time_option, pass_app
from remote_sensing.claims.plots import COORDINATE_SYSTEMS, format_of


@click.group("claims")
def claims_group() -> None:
    """Plots that borrowers say are tea gardens or forests, before they are parcels."""


@claims_group.command("submit")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--kind", required=True, type=click.Choice(claims.CLAIM_KINDS))
@click.option(
    "--crs",
    default="wgs84",
    show_default=True,
    type=click.Choice(list(COORDINATE_SYSTEMS)),
    help="The system the plot was drawn in: gcj02 for AMap/Tencent, bd09 for Baidu.",
)
@click.option("--owner")
@click.option("--branch", help="The branch whose officers see and accept the claim.")
@click.option(
    "--attribute",
    "attributes",
    multiple=True,
    metavar="KEY=VALUE",
    help="What the borrower says about the plot (variety, planted_year, species_group, "
    "stand_volume_m3_per_ha, claimed_area_ha ...).",
)
@click.option("--as-of", help="Judge on the history up to this date (default: now).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def claims_submit(
    app: App,
    path: Path,
    kind: str,
    crs: str,
    owner: str | None,
    branch: str | None,
    attributes: tuple[str, ...],
    as_of: str | None,
    as_json: bool,
) -> None:
    """Submit a plot file (GeoJSON, KML, KMZ, zipped Shapefile, or lon,lat lines) and print
    its verification report."""
    try:
        submission = claims.Submission(
            kind, crs, owner, branch, _attributes(attributes), parse_time_option(as_of, "date")
        )
        claim = claims.submit(
            app.engine,
            path.read_bytes(),
            format_of(path.name),
            submission,
            app.settings.claim_max_ha,
            claims.catalogue_of(app.settings),
            app.settings.data_dir,
        )
    except ValueError as exc:
        raise click.ClickException(f"claim refused: {exc}") from exc
    if as_json:
        click.echo(json.dumps(jsonable(claim), indent=2))
    else:
        click.echo(report.claim_text(claim))


def _attributes(pairs: tuple[str, ...]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--attribute")
        try:
            out[key] = json.loads(value)  # numbers stay numbers
        except ValueError:
            out[key] = value
    return out


@claims_group.command("show")
@click.argument("claim_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def claims_show(app: App, claim_id: str, as_json: bool) -> None:
    """A claim and its stored report."""
    try:
        claim = claims.get_claim(app.engine, claim_id)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(jsonable(claim), indent=2))
    else:
        click.echo(report.claim_text(claim))


@claims_group.command("list")
@click.option("--branch")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def claims_list(app: App, branch: str | None, as_json: bool) -> None:
    """Claims, oldest first."""
    rows = claims.list_claims(app.engine, branch)
    if as_json:
        click.echo(json.dumps(jsonable(rows), indent=2))
        return
    for r in rows:
        click.echo(
            f"{r['claim_id']}  {r['kind']:<10}  {r['verdict']:<20}  {r['state']:<8}  "
            f"{float(r['area_ha']):8.2f} ha  {r['owner'] or '-'}"
        )


@claims_group.command("verify")
@click.argument("claim_id")
@pass_app
def claims_verify(app: App, claim_id: str) -> None:
    """Recompute a stored report from its stored inputs; exit 1 if it differs."""
    try:
        result = claims.verify(app.engine, claim_id)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(result, indent=2))
    if not result["matches"]:
        raise SystemExit(1)


@claims_group.command("accept")
@click.argument("claim_id")
@click.option("--parcel-id", help="The new parcel's id (default: the claim's).")
@pass_app
def claims_accept(app: App, claim_id: str, parcel_id: str | None) -> None:
    """Turn a consistent claim into a parcel that loans can pledge."""
    try:
        claim = claims.accept(app.engine, claim_id, parcel_id)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"claim {claim_id} accepted: parcel {claim['parcel_id']}")


@click.group("landcover")
def landcover_group() -> None:
    """The land-cover model that judges claims."""


@landcover_group.command("train")
@click.option(
    "--sample",
    "sample_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=Path("sample_tiles"),
    show_default=True,
    help="The sample area: scenes/, landcover.tif (its planted truth), parcels.geojson.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the model (default: the shipped model file).",
)
@click.option("--json", "as_json", is_flag=True)
def landcover_train(sample_dir: Path, out: Path | None, as_json: bool) -> None:
    """Train the land-cover model on the sample area, score it on held-out plots, save it."""
    from remote_sensing.claims import landcover, landcover_training

    model, scores = landcover_training.train_on_sample(sample_dir)
    path = landcover.save(model, out or landcover.MODEL_FILE)
    saved = landcover.load(path)
    summary = {
        "model": str(path),
        "version": saved.version,
        "sha256": saved.sha256,
        "trained_on": saved.trained_on,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"wrote {path} ({saved.version}, sha256 {saved.sha256[:12]})")
    click.echo(
        f"held out: {scores['plots']} plots, accuracy {scores['accuracy']:.1%}, "
        f"tea vs forest vs other {scores['tea_forest_other_accuracy']:.1%}"
    )
    for truth, row in scores["confusion"].items():
        click.echo(f"  {truth:<12} -> " + ", ".join(f"{p} {n}" for p, n in row.items()))


COMMANDS = [claims_group, landcover_group]
