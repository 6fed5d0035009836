"""The tables the solar domain owns (SQLAlchemy Core), on the transport's metadata: a
plant belongs to a farm of ``telemetry.tables``. Migrations live in collateral."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
)

from agri_common.times import UTCDateTime
from telemetry.tables import metadata

solar_plants = Table(
    "solar_plants",
    metadata,
    Column("plant_id", String(64), primary_key=True),
    Column("farm_id", String(64), ForeignKey("farms.farm_id"), nullable=False, index=True),
    Column("name", String(200)),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("kwp", Float, nullable=False),  # DC nameplate
    Column("ac_kw", Float, nullable=False),  # the inverter's AC rating
    Column("tilt", Float, nullable=False),  # degrees from horizontal
    Column("azimuth", Float, nullable=False),  # degrees clockwise from north (180: south)
    Column("commissioned", Date, nullable=False),
    Column("grid_connected", Date, nullable=False),
    Column("make", String(100)),
    Column("model", String(100)),
    Column("serial", String(64), nullable=False),  # the inverter the plant was registered with
    Column("tariff", String(64), nullable=False),  # a row of the tariff table
    Column("updated_at", UTCDateTime, nullable=False),
)

# One inverter reading as received: SunSpec's names, the lifetime counter in Wh, and the
# item as the logger sent it (``raw``), whatever the parse made of it.
solar_readings = Table(
    "solar_readings",
    metadata,
    Column("plant_id", String(64), primary_key=True),
    Column("observed_at", UTCDateTime, primary_key=True),
    Column("serial", String(64), nullable=False),
    Column("lifetime_wh", Float),
    Column("power_w", Float),
    Column("status", Integer),  # SunSpec St: 1 off, 2 sleeping, 4 MPPT, 7 fault...
    Column("events", Integer),  # SunSpec Evt1 bits
    Column("mppt", JSON),  # [{"DCV": V, "DCA": A}, ...] per MPPT input
    # the lowest and highest MPPT input voltage: a string at 0 V beside one that carries
    # voltage, read without parsing every reading's inputs
    Column("dcv_min", Float),
    Column("dcv_max", Float),
    Column("farm_id", String(64), nullable=False),
    Column("gateway_id", String(64), nullable=False),
    Column("source", String(16), nullable=False),  # gateway | import
    Column("received_at", UTCDateTime, nullable=False),
    Column("seq", BigInteger),
    Column("raw", Text, nullable=False),
)

# What the daily job found for one plant on one local day.
solar_days = Table(
    "solar_days",
    metadata,
    Column("plant_id", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("energy_kwh", Float),  # None: the counter could not say (a fault, no data)
    Column("expected_kwh", Float),  # modelled x the plant's calibration factor
    Column("modelled_kwh", Float),  # the model's own figure, before calibration
    Column("calibration", Float),  # measured over modelled on the plant's first clean days
    Column("calibration_days", Integer),  # the clean days it stands on (final at 60)
    Column("insolation_kwh_m2", Float),  # in-plane irradiation the model used
    Column("peer_ratio", Float),  # this plant's yield against its neighbours' median
    Column("performance_ratio", Float),
    Column("availability", Float),  # share of daylight with the plant producing
    Column("daylight_h", Float),  # hours the plant should have produced (the model's)
    Column("readings", Integer, nullable=False),
    Column("serial", String(64)),  # the inverter that reported that day
    # the newest believed counter reading up to the day's end: the next day counts from it
    Column("last_at", UTCDateTime),
    Column("last_wh", Float),
    Column("flags", JSON, nullable=False),  # [code, ...]: counter and quality findings
    Column("computed_at", UTCDateTime, nullable=False),
    # year-on-year loss (% a year), worked out on a month's first day from the two years
    # before and carried day to day: the daily rules read a month, not two years
    Column("degradation_pct", Float),
)

# The grid company's monthly settlement of a plant: what it metered and paid.
solar_settlements = Table(
    "solar_settlements",
    metadata,
    Column("plant_id", String(64), primary_key=True),
    Column("month", Date, primary_key=True),  # the month's first day
    Column("kwh", Float, nullable=False),
    Column("paid_cny", String(32), nullable=False),  # decimal text
    Column("imported_at", UTCDateTime, nullable=False),
)

# Irradiance and air temperature per weather cell (expected.CELL_DEG), hourly, from an
# imported file (solar.weather): a typical year (PVGIS TMY, its hours moved to TYPICAL_YEAR)
# or measured hours (CAMS radiation).
solar_weather = Table(
    "solar_weather",
    metadata,
    Column("cell", String(32), primary_key=True),
    Column("typical", Boolean, primary_key=True),
    Column("at", UTCDateTime, primary_key=True),  # the hour's time (its middle for CAMS)
    Column("ghi", Float, nullable=False),  # W/m2
    Column("temp_air", Float),  # C; none in CAMS radiation: the climate table's then
    Column("source", String(64), nullable=False),
)
