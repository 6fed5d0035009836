"""The tables remote_sensing owns (SQLAlchemy Core). Migrations live in collateral."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from agri_common.times import UTCDateTime

metadata = MetaData()


def _parcel_id(**kwargs) -> Column:
    """The parcel a row belongs to; rows go when their parcel is deleted."""
    return Column(
        "parcel_id", String(64), ForeignKey("parcels.parcel_id", ondelete="CASCADE"), **kwargs
    )


parcels = Table(
    "parcels",
    metadata,
    Column("parcel_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("owner", String(200)),
    Column("attributes", JSON, nullable=False),
    Column("geometry_geojson", Text, nullable=False),  # WGS84
    Column("area_ha", Float, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
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
    Column("acquired_at", UTCDateTime),
    Column("crs", Text),
    Column("ndvi_path", Text),
    Column("attempts", Integer, nullable=False),
    Column("seconds", Float),
    Column("processed_at", UTCDateTime, nullable=False),
    # What the scene is and how its numbers were read (revision 0007).
    Column("sensor", String(32)),  # sentinel-2a/b/c, landsat-8/9
    Column("catalogue", String(64)),  # the remote_sensing.catalogues row it matched
    Column("acquisition_key", String(200), index=True),  # platform/tile/day
    Column("processing_rank", String(64)),  # baseline|processing time: best copy wins
    Column("superseded_by", String(200)),  # the better copy of the same acquisition
    Column("offset_rule", String(16)),  # flag | asset | raster:bands | catalogue | ...
    Column("offset_contradicted", Boolean),  # the numbers overruled the metadata
    Column("radiometry", JSON),  # scale, offset, the check's counts, bandpass
    Column("http_requests", Integer),  # made to read its files over HTTP (GDAL's count)
    Column("http_bytes", BigInteger),  # downloaded for it
    UniqueConstraint("scene_id", "checksum", name="uq_scenes_scene_checksum"),
)

observations = Table(
    "observations",
    metadata,
    _parcel_id(primary_key=True),
    Column("scene_id", String(200), primary_key=True),
    Column("acquired_at", UTCDateTime, nullable=False, index=True),
    Column("sensor", String(32)),  # revision 0007; NULL for rows from before it
    Column("ndvi_mean", Float),
    Column("ndvi_median", Float),
    Column("ndvi_p10", Float),
    Column("ndvi_p90", Float),
    Column("ndvi_std", Float),
    Column("pixel_count", Integer, nullable=False),
    Column("valid_fraction", Float, nullable=False),
    Column("cloud_fraction", Float, nullable=False),
)

# Disturbances found in a parcel's profile; one row per (parcel, kind, start), updated as
# the event grows and closed when the parcel recovers.
parcel_events = Table(
    "parcel_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _parcel_id(nullable=False),
    Column("kind", String(32), nullable=False),
    Column("start", UTCDateTime, nullable=False),
    Column("end", UTCDateTime),
    Column("confirmed_at", UTCDateTime, nullable=False),
    Column("severity", Float, nullable=False),
    Column("affected_ha", Float),
    Column("state", String(16), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("parcel_id", "kind", "start", name="uq_parcel_events_key"),
)

# The latest profile summary per parcel: what valuation and alerting read.
parcel_profiles = Table(
    "parcel_profiles",
    metadata,
    _parcel_id(primary_key=True),
    Column("as_of", UTCDateTime),
    Column("latest_clear_at", UTCDateTime),
    Column("latest_ndvi", Float),
    Column("expected_ndvi", Float),
    Column("anomaly_z", Float),
    Column("health_index", Float),
    Column("updated_at", UTCDateTime, nullable=False),
    # how sure: clear dates in the last 60 days and the largest gap without one
    Column("clear_dates_60d", Integer),
    Column("largest_gap_days", Float),
    Column("suspected", JSON),  # drops nobody could confirm or rule out (profile "suspected")
)

# Per STAC API and collection: when the last sync that searched without error started.
# The next sync searches from there less an overlap (late ingest, reprocessing).
stac_syncs = Table(
    "stac_syncs",
    metadata,
    Column("api_url", String(500), primary_key=True),
    Column("collection", String(200), primary_key=True),
    Column("searched_from", UTCDateTime),  # the start of the last search window (None: all)
    Column("succeeded_at", UTCDateTime, nullable=False),  # when that sync started
    Column("items_found", Integer, nullable=False),
)
