"""Times: one parser for every time the project reads, one UTC column type for every
time it stores.

Everything stored is an aware UTC datetime. SQLite keeps no time zone, so without help it
hands back naive datetimes and silently drops the offset of a non-UTC value on write;
``UTCDateTime`` converts on the way in and marks UTC on the way out, on every database.
"""

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator

_TIFF_TIME = re.compile(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")


def as_utc(value: datetime | None) -> datetime | None:
    """An aware UTC datetime; a naive one is taken as UTC (what we store)."""
    if value is None:
        return None
    zone = value.tzinfo
    if zone is UTC:  # most values: every row read back, every time built here
        return value
    if zone is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_time(text: str) -> datetime:
    """ISO 8601 (``Z`` accepted) or TIFF ``YYYY:MM:DD HH:MM:SS``, as aware UTC.

    A value without an offset is taken as UTC. Raises ValueError naming the text.
    """
    text = str(text).strip()
    tiff = _TIFF_TIME.fullmatch(text)
    if tiff:
        return datetime(*(int(g) for g in tiff.groups()), tzinfo=UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date or time") from None
    return as_utc(value)


def parse_as_of(text: str | None) -> datetime | None:
    """A cut-off a person types: a date means the whole of that day (UTC), a time is
    exact. None stays None (no cut-off)."""
    if text is None:
        return None
    value = parse_time(text)
    if len(text.strip()) == 10:  # YYYY-MM-DD
        return value + timedelta(days=1) - timedelta(microseconds=1)
    return value


class UTCDateTime(TypeDecorator):
    """``DateTime(timezone=True)`` that is aware UTC in Python on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if isinstance(value, datetime):
            return as_utc(value)
        return value

    def process_result_value(self, value, dialect):
        return as_utc(value) if isinstance(value, datetime) else value
