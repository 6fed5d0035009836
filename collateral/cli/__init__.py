"""The ``agri`` command line: thin wrappers that read arguments, call the domain code and
print. Settings are read once here and carried to every command on the click context.

A command's module is imported only when that command runs: a cron job's
``agri imagery sync`` should not pay for the web server's, the ingester's and the
plotting libraries' imports (1.4 s of its 3 s start when everything was imported).
"""

import atexit
import gc
import importlib
import os
import sys
import threading

# NumPy's and SciPy's OpenBLAS each start a thread per core when imported, and those
# threads spin waiting for work that never comes: the commands' arrays are cut into
# blocks on thread pools of their own, and their matrices (a parcel's smoother) are
# tiny. On two cores the spinning took 0.35 s of CPU from a 3 s ``agri imagery sync``.
# Set before anything imports NumPy; an operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Python's cyclic collector runs each time 700 more tracked objects exist than did, and
# importing a command's libraries creates some 150,000 that live as long as the process:
# 310 collections (two of them full) took 0.11-0.17 s of a 2 s ``agri imagery sync``,
# on the main thread before any work; so this is set before the first library import.
# Objects freed by their reference counts (the ingester's messages, a request's rows)
# never count towards it, so a long-running command still collects its cycles, 100,000
# objects later.
gc.set_threshold(100_000, *gc.get_threshold()[1:])

import click  # noqa: E402

from collateral.cli.context import App  # noqa: E402
from collateral.settings import load_settings  # noqa: E402

# Each top-level command, and the module (collateral.cli.NAME) whose COMMANDS hold it.
COMMAND_MODULES: dict[str, str] = {
    "db": "admin",
    "keys": "admin",
    "serve": "admin",
    "parcels": "imagery",
    "imagery": "imagery",
    "profiles": "imagery",
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
    "solar": "solar",
    "claims": "claims",
    "landcover": "claims",
    "demo-livestock": "demo",
    "demo-valuation": "demo",
    "demo-claims": "demo",
    "demo-solar": "demo",
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


def run() -> None:
    """The ``agri`` program (its console script and ``python -m collateral.cli``): the
    command, then the end of the process without Python's interpreter teardown.

    Freeing every imported module's objects one by one took 0.25-0.45 s after a 3 s
    ``agri imagery sync`` (geopandas, SQLAlchemy and pandas most), on every cron run.
    A finished command has closed what it wrote (files through context managers,
    transactions committed); the exit handlers still run (logging, thread pools, child
    processes) and standard output is flushed. While a thread that is not a daemon still
    runs (Python's own exit waits for it), or under a profiler or a tracer such as
    coverage (which write their results after the program), Python's own exit is kept.
    """
    try:
        main()  # click's standalone mode: ends with SystemExit
        code = 0
    except SystemExit as end:
        code = end.code
    still_running = any(
        t is not threading.main_thread() and not t.daemon for t in threading.enumerate()
    )
    # a profiler or coverage tool writes its results after the program, not at exit
    watched = sys.getprofile() is not None or sys.gettrace() is not None
    if still_running or watched:
        sys.exit(code)
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    atexit._run_exitfuncs()  # what Python's exit runs before its teardown
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
