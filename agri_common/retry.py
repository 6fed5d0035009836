"""One retry policy for "the database is briefly away", shared by the imagery job and
the ingester.

A restart, a failover or a dropped connection passes: wait and try again. A schema
mismatch (a missing table or column), a constraint violation or bad SQL never passes:
retrying it only hides it, so it fails at once with its own message.
"""

import logging
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

log = logging.getLogger("agri.retry")

T = TypeVar("T")

# PostgreSQL SQLSTATEs (class or full code) that say "try again": the connection, the
# server's state, or a transaction that lost a race.
TRANSIENT_SQLSTATES = (
    "08",  # connection exception (refused, closed, failed)
    "40001",  # serialization failure
    "40P01",  # deadlock detected
    "53300",  # too many connections
    "57P01",  # admin shutdown (server restarting)
    "57P02",  # crash shutdown
    "57P03",  # cannot connect now (starting up)
)
# SQLite reports everything as OperationalError; only these messages are a wait.
TRANSIENT_SQLITE_MESSAGES = ("database is locked", "database is busy")


class DatabaseUnavailable(Exception):
    """The database stayed away longer than the retry schedule allows (or the caller
    gave up waiting); ``retries`` says how often it was tried again."""

    def __init__(self, message: str, retries: int):
        super().__init__(message)
        self.retries = retries


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` says the database is briefly away, not that the work is wrong."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate:
        return sqlstate.startswith(TRANSIENT_SQLSTATES)
    if type(exc.orig).__module__.startswith("sqlite3"):
        message = str(exc.orig).lower()
        return any(m in message for m in TRANSIENT_SQLITE_MESSAGES)
    # A driver error without a SQLSTATE is a connection that could not be made or was lost
    # (psycopg: "connection refused", "server closed the connection unexpectedly").
    return isinstance(exc, OperationalError)


def with_retries(
    work: Callable[[], T],
    delays_s: Iterable[float],
    what: str,
    give_up: Callable[[float], bool] = lambda _delay: False,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T, int]:
    """Run ``work`` until it succeeds: (its result, retries it took).

    A transient database error waits the next of ``delays_s`` and tries again; when the
    delays run out, or ``give_up(next_delay)`` says so, it raises DatabaseUnavailable.
    Any other error is raised at once.
    """
    retries = 0
    delays = iter(delays_s)
    while True:
        try:
            return work(), retries
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            delay = next(delays, None)
            if delay is None or give_up(delay):
                message = f"database unavailable during {what}: {exc}"
                raise DatabaseUnavailable(message, retries) from exc
            retries += 1
            log.warning(
                "database unavailable during %s (%s); retrying in %.1f s",
                what,
                exc.__class__.__name__,
                delay,
            )
            sleep(delay)


def backoff(first_s: float, most_s: float):
    """Delays that double from ``first_s`` up to ``most_s``, without end."""
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2, most_s)
