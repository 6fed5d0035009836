"""Commands of the service itself: the schema, API keys and the HTTP server."""

import gc

import click

from collateral import auth
from collateral.cli.context import App, pass_app
from collateral.db import make_engine, upgrade, warm_pool


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Create or migrate the schema to the newest revision."""
    upgrade(make_engine(app.settings.database_url))
    click.echo(f"database at {app.settings.database_url} is up to date")


@click.group("keys")
def keys_group() -> None:
    """API keys."""


@keys_group.command("create")
@click.option("--role", required=True, type=click.Choice(auth.ROLES))
@click.option("--branch", help="The branch a loan_officer works for.")
@click.option("--label", help="Whose key this is.")
@pass_app
def keys_create(app: App, role: str, branch: str | None, label: str | None) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    try:
        click.echo(auth.create_key(app.engine, role, branch, label))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@pass_app
def serve(app: App, host: str, port: int) -> None:
    """Run the HTTP API (FastAPI) on the configured database."""
    import uvicorn

    from collateral.api.app import BUILD_HINT, create_app, web_bundle_missing

    if web_bundle_missing():
        click.echo(f"warning: {BUILD_HINT} The /v1 API works without it.", err=True)
    # One process per `agri serve`; scale with more of them behind a balancer (see
    # deploy/README.md). Uvicorn's own --workers mode answered every request ~44 ms late
    # on a 2-core host (measured with wrk), where one process answers in ~0.5 ms.
    warm_pool(app.engine)
    api = create_app(app.engine, app.settings)
    # What start-up imported (numpy, geopandas, SQLAlchemy, ...: ~230,000 objects) lives as
    # long as the process: frozen out of the collector's way, a full collection under load
    # no longer walks them (~80 ms each time on a 2-core host, a pause for every request).
    gc.collect()
    gc.freeze()
    uvicorn.run(api, host=host, port=port, log_level="info")


COMMANDS = [db, keys_group, serve]
