"""The demo's two commands (the last steps of `make demo`): printing only."""

from datetime import UTC, datetime
from pathlib import Path

import click

from agri_common.files import atomic_write
from collateral import demo, report
from collateral.cli.context import App, pass_app
from collateral.credit_report import valuation_pdf


@click.command("demo-livestock")
@click.option("--seconds", default=8.0, show_default=True, help="How long the gateways publish.")
@pass_app
def demo_livestock(app: App, seconds: float) -> None:
    """The livestock half end to end on a private broker: register, publish, ingest, count."""
    result = demo.run_livestock(app.engine, app.settings, seconds, lambda: datetime.now(UTC))
    stats, worker = result.published, result.ingested
    click.echo(
        f"gateways published {stats.messages} messages ({stats.readings} readings, "
        f"{stats.duplicate_messages} sent twice, {stats.malformed} malformed); ingester stored "
        f"{worker.readings_stored} readings, rejected {worker.rejects}; "
        f"{stats.unacknowledged} message(s) left unacknowledged in the gateways' outboxes"
    )
    click.echo(
        f"\nverified headcount at {result.at:%Y-%m-%d %H:%M} UTC "
        "(seen in the last 24 h, inside the fence, no fever)"
    )
    for farm_id, counts in result.headcounts.items():
        for category, c in counts.items():
            if c["registered"]:
                shown = f"{c['verified']:>4} of {c['registered']:>4} verified"
                click.echo(f"  {farm_id:<12} {category:<14} {shown}")
    click.echo(f"\nopen alerts: {len(result.open_alerts)}")
    for a in result.open_alerts[:12]:
        click.echo(f"  {a['farm_id']:<12} {a['kind']:<16} {a['subject']:<16} {a['detail']}")


@click.command("demo-valuation")
@pass_app
def demo_valuation(app: App) -> None:
    """The loan officer's view of the demo: value the sample loans now, with their alerts."""
    for entry in demo.value_demo_loans(app.engine, datetime.now(UTC)):
        loan = entry["loan"]
        click.echo("\n" + report.valuation_text(entry["valuation"], loan["borrower"]))
        for item in entry["valuation"]["items"]:
            if item["kind"] == "carbon_sink":
                click.echo(f"  carbon of {item['ref']}: {item['formula']}")
        events, livestock = entry["open_events"], entry["livestock_alerts"]
        for a in entry["loan_alerts"]:
            click.echo(f"  loan alert {a['kind']}: {a['detail']}")
        click.echo(f"  open alerts on the pledges: {len(events) + len(livestock)}")
        for e in events:
            click.echo(
                f"    parcel {e['parcel_id']}: {e['kind']} since {e['start']:%Y-%m-%d}, "
                f"{e['affected_ha'] or 0:.2f} ha affected"
            )
        for a in livestock:
            click.echo(f"    {a['farm_id']} {a['kind']} {a['subject']}: {a['detail']}")
        valuation = entry["valuation"]
        pdf = Path(app.settings.data_dir) / "reports" / f"{loan['loan_id']}-zh-CN.pdf"
        pdf.parent.mkdir(parents=True, exist_ok=True)
        data = valuation_pdf(app.engine, valuation, loan, "zh-CN")
        atomic_write(pdf, lambda f, data=data: f.write(data), mode=0o644)  # a document to share
        click.echo(f"  the credit file's PDF report (中文): {pdf}")
    click.echo(
        "\nEvery valuation is stored with its inputs: `agri valuations verify ID` recomputes "
        "it; `make serve` starts the API on this data."
    )


@click.command("demo-claims")
@pass_app
def demo_claims(app: App) -> None:
    """Two borrowers' plots drawn on Chinese phone maps, checked against the satellite
    record of the sample years."""
    folder = app.settings.data_dir / "claims"
    click.echo(f"\nclaims judged on the imagery up to {demo.DEMO_CLAIMS_AS_OF:%Y-%m-%d}:")
    for claim in demo.submit_demo_claims(app.engine, folder, app.settings.claim_max_ha):
        click.echo(f"\n{report.claim_text(claim)}\n  (the borrower's file: {claim['file']})")


@click.command("demo-solar")
@pass_app
def demo_solar(app: App) -> None:
    """Rooftop plants end to end: a month of inverter readings through the farm gateways,
    the grid's statement, the daily job and its alerts, a loan on two plants."""
    from collateral import solar_demo

    result = solar_demo.run_solar(app.engine, app.settings, datetime.now(UTC))
    stats = result.ingested
    click.echo(
        f"\nrooftop solar: {len(result.plants)} plants from the farmers' list; their gateways "
        f"published {result.readings_sent:,} five-minute inverter readings "
        f"({result.first} .. {result.last}); the ingester stored {stats.readings_stored:,}, "
        f"rejected {stats.rejects}; {result.unacknowledged} message(s) left unacknowledged"
    )
    click.echo(f"the grid company's statement of {result.settled_month:%Y-%m} imported")
    click.echo(f"\nthe morning of {result.silent_morning}, after the daily job:")
    for a in result.alerts_then:
        click.echo(f"  {a['subject']:<12} {a['kind']:<24} {a['detail']}")
    click.echo(f"\ntoday, the daily job through {result.last}: the last 30 days")
    click.echo(
        f"  {'plant':<12} {'farm':<12} {'kWp':>5} {'kWh':>8} {'expected':>9} {'peers':>6} "
        f"{'PR':>5}  flags"
    )
    for p in result.plants:
        peers = "-" if p["peer_ratio"] is None else f"{p['peer_ratio']:.2f}"
        pr = "-" if p["performance_ratio"] is None else f"{p['performance_ratio']:.2f}"
        click.echo(
            f"  {p['plant_id']:<12} {p['farm_id']:<12} {p['kwp']:>5.1f} "
            f"{p['energy_30d_kwh']:>8.0f} {p['expected_30d_kwh']:>9.0f} {peers:>6} {pr:>5}  "
            f"{', '.join(p['flags'])}"
        )
    click.echo("\nopen solar alerts:")
    for a in result.alerts_now:
        click.echo(f"  {a['subject']:<12} {a['kind']:<24} {a['detail']}")
    for a in result.closed:
        click.echo(
            f"closed: {a['subject']} {a['kind']} (opened {a['opened_at']:%Y-%m-%d}, closed "
            f"{a['closed_at']:%Y-%m-%d}): {a['detail']}"
        )
    for d in result.silent_days:
        kwh = "-" if d["energy_kwh"] is None else f"{d['energy_kwh']:.1f} kWh"
        click.echo(f"  {d['plant_id']} {d['day']}: {kwh:>10}  {', '.join(d['flags'])}")
    valuation, loan = result.valuation, result.loan
    click.echo("\n" + report.valuation_text(valuation, loan["borrower"]))
    pdf = Path(app.settings.data_dir) / "reports" / f"{loan['loan_id']}-zh-CN.pdf"
    pdf.parent.mkdir(parents=True, exist_ok=True)
    data = valuation_pdf(app.engine, valuation, loan, "zh-CN")
    atomic_write(pdf, lambda f, data=data: f.write(data), mode=0o644)
    click.echo(f"  the credit file's PDF report (中文): {pdf}")


COMMANDS = [demo_livestock, demo_valuation, demo_claims, demo_solar]
