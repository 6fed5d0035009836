"""The solar rules' thresholds from the bank's policy table in force (kind ``solar``):
the solar domain decides with numbers it is handed, the bank versions them."""

from datetime import date
from decimal import Decimal

from sqlalchemy import Engine

from collateral import prices
from collateral.errors import Refused
from solar.alerts import Thresholds

INTEGERS = {"zero_output_days", "performance_window_days"}


def thresholds(engine: Engine, on: date) -> Thresholds:
    table = prices.table_in_force(engine, "solar", on)
    if table is None:
        raise Refused(f"no solar table is in force on {on}: import one (agri prices import)")
    values = {}
    for key in Thresholds.__annotations__:
        number = prices.value(table, "solar_alert", key)
        values[key] = int(number) if key in INTEGERS else float(number)
    return Thresholds(**values)


def tariff(engine: Engine, scheme: str, on: date) -> Decimal:
    """What the grid pays per kWh fed in under ``scheme`` (CNY), by the table in force."""
    table = prices.table_in_force(engine, "solar", on)
    if table is None:
        raise Refused(f"no solar table is in force on {on}: import one (agri prices import)")
    return prices.value(table, "solar_tariff", scheme)
