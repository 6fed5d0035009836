"""Stored rows as JSON-ready values, for the CLI's --json and the API."""

import math
from datetime import date, datetime
from decimal import Decimal

from agri_common.times import as_utc


def jsonable(row: dict) -> dict:
    """Datetimes as ISO 8601 UTC, dates as ISO dates, NaN as None, Decimals as text."""
    out = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            value = as_utc(value).isoformat()
        elif isinstance(value, date):
            value = value.isoformat()
        elif isinstance(value, float) and math.isnan(value):
            value = None
        elif isinstance(value, Decimal):
            value = str(value)
        out[key] = value
    return out
