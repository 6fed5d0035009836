"""The tables the farm gateway protocol owns (SQLAlchemy Core): the farms that topics are
scoped by, their gateways with their broker credentials, what each gateway last said
about itself, every message or item refused, and the farms' alerts (each domain syncs its
own kinds). Domains' tables share this metadata
(their rows name a farm). Migrations live in collateral."""

from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from agri_common.times import UTCDateTime

metadata = MetaData()

farms = Table(
    "farms",
    metadata,
    Column("farm_id", String(64), primary_key=True),
    Column("name", String(200)),
    Column("owner", String(200)),
    Column("geofence_geojson", Text, nullable=False),  # WGS84 Polygon/MultiPolygon
    Column("updated_at", UTCDateTime, nullable=False),
)

gateways = Table(
    "gateways",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("farm_id", String(64), ForeignKey("farms.farm_id"), nullable=False),
    Column("password_hash", Text, nullable=False),  # Mosquitto $7$ PBKDF2-SHA512
    Column("created_at", UTCDateTime, nullable=False),
)

rejects = Table(
    "rejects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("topic", Text, nullable=False),
    Column("farm_id", String(64)),
    Column("gateway_id", String(64), index=True),
    Column("reason", Text, nullable=False),
    Column("item", Text),  # the rejected item as JSON, when only part was bad
    Column("raw", LargeBinary, nullable=False),
)

# What each gateway last said about itself on .../status (its MQTT Will says "offline").
gateway_status = Table(
    "gateway_status",
    metadata,
    Column("gateway_id", String(64), ForeignKey("gateways.gateway_id"), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
)

# What a farm's devices say is wrong, one open alert per (subject, kind): a tag, a gateway,
# a plant. Each domain syncs its own kinds (farm_alerts.sync_alerts).
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("farm_id", String(64), nullable=False, index=True),
    Column("subject", String(64), nullable=False),  # a tag id, a gateway id or the farm id
    Column("kind", String(32), nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime),
    Column("detail", Text, nullable=False),  # English
    Column("code", String(48)),  # agri_common.wording: the detail in any language
    Column("params", JSON),
)
