"""Lending commands: price and policy tables, loans, valuations and revaluation."""

import json
import sys
from pathlib import Path

import click

from agri_common.files import atomic_write
from agri_common.rows import jsonable
from agri_common.wording import LOCALES
from collateral import errors, loans, notify, prices, report
from collateral.cli.context import App, parse_time_option, pass_app
from collateral.cli.notify import smtp_of
from collateral.credit_report import valuation_pdf
from collateral.valuation import ValuationError


@click.group("prices")
def prices_group() -> None:
    """Price and policy tables (versioned, effective-dated, never edited in place)."""


@prices_group.command("import")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--defaults", is_flag=True, help="Import the shipped illustrative tables.")
@pass_app
def prices_import(app: App, paths: tuple[Path, ...], defaults: bool) -> None:
    """Import price or policy tables (YAML or CSV); a version already there is skipped."""
    files = list(paths) + (prices.default_tables() if defaults else [])
    if not files:
        raise click.UsageError("give FILE(s) or --defaults")
    engine = app.engine
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
@pass_app
def prices_list(app: App, as_json: bool) -> None:
    """Imported versions, oldest first per kind."""
    rows = [jsonable(r) for r in prices.list_versions(app.engine)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        flag = " illustrative" if r["illustrative"] else ""
        click.echo(f"{r['kind']:<7} {r['version']:<24} from {r['effective_from']}{flag}")


@click.group("loans")
def loans_group() -> None:
    """Loans and their pledged parcels and herds."""


@loans_group.command("create")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@pass_app
def loans_create(app: App, path: Path) -> None:
    """Create a loan from a JSON file (the body of POST /v1/loans), or a list of them."""
    engine = app.engine
    try:
        body = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path} is not JSON: {exc}") from exc
    for entry in body if isinstance(body, list) else [body]:
        try:
            loan = loans.create_loan(engine, loans.LoanIn.model_validate(entry))
        except (ValueError, errors.Conflict) as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"created loan {loan['loan_id']} ({loan['borrower']}, {loan['branch']})")


@loans_group.command("list")
@click.option("--branch")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def loans_list(app: App, branch: str | None, as_json: bool) -> None:
    """Loans with their latest valuation's status."""
    engine = app.engine
    rows = []
    for loan in loans.list_loans(engine, branch):
        latest = loans.latest_valuation(engine, loan["loan_id"])
        rows.append(
            {
                **jsonable(loan),
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


@click.command("valuate")
@click.argument("loan_id")
@click.option("--as-of", "as_of_text", help="Value as of this ISO 8601 time (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print the valuation document.")
@pass_app
def valuate(app: App, loan_id: str, as_of_text: str | None, as_json: bool) -> None:
    """Value a loan now (or as of a past time) and store the valuation."""
    engine = app.engine
    try:
        doc = loans.value_now(engine, loan_id, parse_time_option(as_of_text))
    except (errors.NotFound, ValuationError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(report.valuation_text(doc, loans.get_loan(engine, loan_id)["borrower"]))


@click.group("valuations")
def valuations_group() -> None:
    """Stored valuations."""


@valuations_group.command("verify")
@click.argument("valuation_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def valuations_verify(app: App, valuation_id: str, as_json: bool) -> None:
    """Recompute a stored valuation from its input snapshot; exit 1 if figures differ."""
    try:
        outcome = loans.verify(app.engine, valuation_id)
    except errors.NotFound as exc:
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
@pass_app
def valuations_show(app: App, valuation_id: str, as_json: bool) -> None:
    """A stored valuation (add --json for the document with evidence)."""
    try:
        row = loans.get_valuation(app.engine, valuation_id)
    except errors.NotFound as exc:
        raise click.ClickException(str(exc)) from exc
    doc = loans.document(row["valuation_id"], row["result"], row["created_at"])
    click.echo(json.dumps(doc, indent=2) if as_json else report.valuation_text(doc))


@valuations_group.command("report")
@click.argument("valuation_id")
@click.option("--pdf", "pdf_path", type=click.Path(dir_okay=False), required=True)
@click.option("--lang", type=click.Choice(LOCALES), default="zh-CN", show_default=True)
@pass_app
def valuations_report(app: App, valuation_id: str, pdf_path: str, lang: str) -> None:
    """Write a stored valuation as the PDF report for the credit file."""
    try:
        row = loans.get_valuation(app.engine, valuation_id, with_inputs=False)
        loan = loans.get_loan(app.engine, row["loan_id"])
    except errors.NotFound as exc:
        raise click.ClickException(str(exc)) from exc
    doc = loans.stored_document(row)
    pdf = valuation_pdf(app.engine, doc, loan, lang)
    atomic_write(Path(pdf_path), lambda f: f.write(pdf), mode=0o644)  # a document to share
    click.echo(f"{pdf_path}: {lang} report of valuation {valuation_id}")


@click.command("revalue")
@click.option("--all", "all_loans", is_flag=True, required=True, help="Every active loan.")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--notify",
    "deliver",
    is_flag=True,
    help="Then deliver the notices due (one `agri notify run --once` cycle).",
)
@pass_app
def revalue(app: App, all_loans: bool, as_json: bool, deliver: bool) -> None:
    """Revalue every active loan now (for cron); alert on a worsened status."""
    smtp = smtp_of(app.settings) if deliver else None
    outcomes = loans.revalue_all(app.engine)
    if deliver:  # after the valuations' alerts are stored; a failed delivery is retried later
        counts = notify.run_once(app.engine, smtp, app.settings.notify_max_attempts)
        click.echo(f"notices: {json.dumps(counts)}", err=as_json)
    if as_json:
        click.echo(json.dumps(outcomes, indent=2))
    for o in outcomes if not as_json else []:
        extra = " (status worsened: alert raised)" if o.get("status_worsened") else ""
        click.echo(
            f"{o['loan_id']:<16} {o['outcome']:<9} {o.get('status') or o.get('error')}{extra}"
        )
    if any(o["outcome"] == "failed" for o in outcomes):
        sys.exit(1)


COMMANDS = [prices_group, loans_group, valuate, valuations_group, revalue]
