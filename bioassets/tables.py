"""The tables bioassets owns (SQLAlchemy Core), on the transport's metadata: their rows
name a farm of ``telemetry.tables``. Migrations live in collateral."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    UniqueConstraint,
)

from agri_common.times import UTCDateTime
from telemetry.tables import metadata

animals = Table(
    "animals",
    metadata,
    Column("tag_id", String(15), primary_key=True),
    Column("farm_id", String(64), ForeignKey("farms.farm_id"), nullable=False),
    Column("species", String(16), nullable=False),
    Column("category", String(32), nullable=False),
    Column("sex", String(16)),
    Column("birth_date", Date),
    Column("parity", Integer),
    Column("lactation", Integer),
    Column("status", String(16), nullable=False),  # alive | dead | sold
    Column("status_at", UTCDateTime),
    Column("registered_at", UTCDateTime, nullable=False),
)

readings = Table(
    "readings",
    metadata,
    Column("tag_id", String(15), primary_key=True),
    Column("observed_at", UTCDateTime, primary_key=True),
    Column("farm_id", String(64), nullable=False),
    Column("gateway_id", String(64), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("lat", Float),
    Column("lon", Float),
    Column("temperature_c", Float),
    Column("activity", Float),
    Column("weight_kg", Float),
    Column("battery_pct", Float),
    Column("rssi", Float),
    Column("seq", BigInteger),  # the agent numbers from the time in ms
)

animal_events = Table(
    "animal_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tag_id", String(15), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("farm_id", String(64), nullable=False),
    Column("gateway_id", String(64), nullable=False),
    Column("details", JSON, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("tag_id", "kind", "occurred_at", name="uq_animal_events_key"),
)
