"""What every command shares: the settings, read once per process, and the database
engine, built and migrated once, on first use. Carried on the click context."""

import faulthandler
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import click
from sqlalchemy import Engine

from agri_common.times import parse_as_of
from collateral.db import make_engine, upgrade
from collateral.settings import Settings


@dataclass
class App:
    settings: Settings
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        """The configured database, migrated to the newest schema on first use."""
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
            upgrade(self._engine)
        return self._engine


pass_app = click.make_pass_decorator(App)


def parse_time_option(text: str | None, what: str = "time") -> datetime | None:
    """A --as-of / --at value (None: none given), or a click error that names it."""
    try:
        return parse_as_of(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 date or {what}") from exc


def report_rejected(errors: list[str], what: str = "row(s)") -> None:
    """Print each rejected row with its reason; exit 1 if there were any."""
    for error in errors:
        click.echo(f"rejected {error}", err=True)
    if errors:
        click.echo(f"{len(errors)} {what} rejected", err=True)
        raise SystemExit(1)


def stop_on_signals(doing: str, then: Callable[[], None] | None = None) -> threading.Event:
    """An event set by SIGTERM or SIGINT, saying so (``received SIGTERM, {doing}``), for a
    long-running command to end its loop cleanly; ``then`` is called too.

    The handler only puts the signal on a queue (SimpleQueue's put is reentrant); a
    thread of its own says so, sets the event and calls ``then``. A handler runs in the
    main thread between two of its steps, and one that set the event itself deadlocked
    when the main thread was inside that event's wait still holding its lock (a gateway
    agent that never exited on SIGTERM; its stack, by SIGUSR1, showed it). Printing
    from the handler would as well, inside a write to standard error."""
    stop = threading.Event()
    received: queue.SimpleQueue[int] = queue.SimpleQueue()

    def _stopping() -> None:
        while True:
            signum = received.get()
            click.echo(f"received {signal.Signals(signum).name}, {doing}", err=True)
            stop.set()
            if then is not None:
                then()

    threading.Thread(target=_stopping, name="stop-on-signal", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda signum, _frame: received.put(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: received.put(signum))
    # an operator's (or a test's) view into a process that does not stop: `kill -USR1`
    # prints every thread's stack to standard error and the process carries on
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    return stop
