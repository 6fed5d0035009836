"""The ``agri`` command line: thin wrappers that read arguments, call the domain code and
print. Settings are read once here and carried to every command on the click context."""

import click

from collateral.cli import admin, demo, imagery, lending, livestock
from collateral.cli.context import App
from collateral.settings import load_settings


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """agri-collateral: satellite- and ear-tag-watched farm assets for loan officers."""
    ctx.obj = App(load_settings())


for module in (admin, imagery, livestock, lending, demo):
    for command in module.COMMANDS:
        main.add_command(command)
