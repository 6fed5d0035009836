"""The domains the farm gateway protocol carries, named in one place: the ingester's
writer stores their payload schemas (``telemetry.payloads.Domain``, named ``module:Class``
because the writer is a process of its own), and the gateway agent checks input lines
with their schemas, asking them in this order (the last takes what no other does)."""

from telemetry.payloads import Schema

INGEST = ("bioassets.payloads:Livestock",)


def agent_schemas() -> tuple[Schema, ...]:
    from bioassets.payloads import SCHEMAS as LIVESTOCK

    return LIVESTOCK
