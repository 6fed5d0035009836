"""The tables remote_sensing owns (SQLAlchemy Core). Migrations live in collateral."""

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

parcels = Table(
    "parcels",
    metadata,
    Column("parcel_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("owner", String(200)),
    Column("attributes", JSON, nullable=False),
    Column("geometry_geojson", Text, nullable=False),  # WGS84
    Column("area_ha", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The imagery ledger: one row per (scene id, content checksum) ever attempted.
scenes = Table(
    "scenes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scene_id", String(200), nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("source_path", Text, nullable=False),
    Column("status", String(16), nullable=False),  # done | failed
    Column("error", Text),
    Column("acquired_at", DateTime(timezone=True)),
    Column("crs", Text),
    Column("ndvi_path", Text),
    Column("attempts", Integer, nullable=False),
    Column("seconds", Float),
    Column("processed_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("scene_id", "checksum", name="uq_scenes_scene_checksum"),
)

observations = Table(
    "observations",
    metadata,
    Column(
        "parcel_id",
        String(64),
        ForeignKey("parcels.parcel_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("scene_id", String(200), primary_key=True),
    Column("acquired_at", DateTime(timezone=True), nullable=False, index=True),
    Column("ndvi_mean", Float),
    Column("ndvi_median", Float),
    Column("ndvi_p10", Float),
    Column("ndvi_p90", Float),
    Column("ndvi_std", Float),
    Column("pixel_count", Integer, nullable=False),
    Column("valid_fraction", Float, nullable=False),
    Column("cloud_fraction", Float, nullable=False),
)
