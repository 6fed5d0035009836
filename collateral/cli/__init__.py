"""The ``agri`` command line: thin wrappers that read arguments, call the domain code and
print. Settings are read once here and carried to every command on the click context.

A command's module is imported only when that command runs: a cron job's
``agri imagery sync`` should not pay for the web server's, the ingester's and the
plotting libraries' imports (1.4 s of its 3 s start when everything was imported).
"""

import importlib

import click

from collateral.cli.context import App
from collateral.settings import load_settings

# Each top-level command, and the module (collateral.cli.NAME) whose COMMANDS hold it.
COMMAND_MODULES: dict[str, str] = {
    "db": "admin",
    "keys": "admin",
    "serve": "admin",
    "parcels": "imagery",
    "imagery": "imagery",
    "farms": "livestock",
    "gateways": "livestock",
    "gateway": "gateway",
    "animals": "livestock",
    "ingest": "livestock",
    "simulate-gateways": "livestock",
    "alerts": "livestock",
    "rejects": "livestock",
    "prices": "lending",
    "loans": "lending",
    "valuate": "lending",
    "valuations": "lending",
    "revalue": "lending",
    "notify": "notify",
    "claims": "claims",
    "landcover": "claims",
    "demo-livestock": "demo",
    "demo-valuation": "demo",
    "demo-claims": "demo",
}


class LazyGroup(click.Group):
    """A group whose commands are imported from COMMAND_MODULES when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(name)
        if module_name is None:
            return None
        module = importlib.import_module(f"collateral.cli.{module_name}")
        return next(c for c in module.COMMANDS if c.name == name)


@click.group(cls=LazyGroup)
@click.pass_context
def main(ctx: click.Context) -> None:
    """agri-collateral: satellite- and ear-tag-watched farm assets for loan officers."""
    ctx.obj = App(load_settings())
