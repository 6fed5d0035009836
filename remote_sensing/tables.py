"""The tables remote_sensing owns (SQLAlchemy Core). Migrations live in collateral."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
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
    Column("catalogue", String(64)),  # the remote_sensing.imagery.catalogues row it matched
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
    # a parcel's recent observations (a profile's replay, its newest) without its record
    Index("ix_observations_parcel_time", "parcel_id", "acquired_at"),
    Index("ix_observations_scene", "scene_id"),  # a scene's rows: its peers, its redo
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
    Index("ix_parcel_events_state", "state"),  # the open ones, among every one ever seen
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

# Per scene and parcel kind: the parcels of that kind seen clear in it (their mean NDVIs'
# median, robust spread and count) and their shared dip, computed when the scene is
# processed (profiles.with_dips; final once PEER_EDGE later scenes have come).
scene_peers = Table(
    "scene_peers",
    metadata,
    Column("scene_id", String(200), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("median", Float, nullable=False),
    Column("spread", Float, nullable=False),
    Column("count", Integer, nullable=False),
    Column("dip", Float, nullable=False),
    Index("ix_scene_peers_kind_time", "kind", "acquired_at"),
)

# One row per clear date of a parcel (profile_state.DateRow): its judgement, made once when the
# date arrived; ``state``, what the profile continues from once the next date has settled
# this one (the detector's walk, the offsets among peers); ``view``, the disturbances and
# suspected drops as of this date. A new scene adds a row and settles the one before; a
# late one replays the rows from its date.
profile_dates = Table(
    "profile_dates",
    metadata,
    _parcel_id(primary_key=True),
    Column("seq", Integer, primary_key=True),  # position among the parcel's clear dates
    Column("scene_id", String(200), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("ndvi", Float, nullable=False),
    Column("weight", Float, nullable=False),  # valid fraction
    Column("outlier", Boolean, nullable=False),
    Column("expected", Float),  # NULL: no baseline
    Column("spread", Float),
    Column("allowance", Float, nullable=False),
    Column("allowance_source", String(16)),
    Column("source", String(16)),
    Column("shared", Float, nullable=False),
    Column("offset", Float),  # NDVI less the scene's peer median (NULL without peers)
    Column("clear_dates", Integer, nullable=False),  # clear dates up to it, no outliers
    Column("state", JSON),
    Column("view", JSON, nullable=False),
    Index("ix_profile_dates_parcel_time", "parcel_id", "acquired_at"),
    Index("ix_profile_dates_scene", "scene_id"),  # the dates judged on a scene's peers
)

# A parcel's usual NDVI by time of year for one calendar year (profile_state.SeasonTable), made
# on the year's first clear date from the years before it.
season_tables = Table(
    "season_tables",
    metadata,
    _parcel_id(primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("bins", LargeBinary, nullable=False),  # profile_state.SeasonTable.to_bytes
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
