"""The domains the farm gateway protocol carries, named in one place: the ingester's
writer stores their payload schemas (``telemetry.payloads.Domain``, named ``module:Class``
because the writer is a process of its own), and the gateway agent checks input lines
with their schemas, asking them in this order (the last takes what no other does)."""

from telemetry.payloads import Schema

INGEST = ("bioassets.payloads:Livestock", "solar.payloads:Solar")


def agent_schemas() -> tuple[Schema, ...]:
    """Solar's readings name an inverter; livestock's events a kind; a reading is the
    rest, so livestock's readings come last."""
    from bioassets.payloads import EVENTS, READINGS
    from solar.payloads import SCHEMAS as SOLAR

    return (*SOLAR, EVENTS, READINGS)
