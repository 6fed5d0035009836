"""Rooftop solar plants: the registry, inverter readings as received (SunSpec names, the
raw item kept) and what the daily job found per plant-day.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

from agri_common.times import UTCDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "solar_plants",
        sa.Column("plant_id", sa.String(64), primary_key=True),
        sa.Column("farm_id", sa.String(64), sa.ForeignKey("farms.farm_id"), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
        sa.Column("kwp", sa.Float, nullable=False),
        sa.Column("ac_kw", sa.Float, nullable=False),
        sa.Column("tilt", sa.Float, nullable=False),
        sa.Column("azimuth", sa.Float, nullable=False),
        sa.Column("commissioned", sa.Date, nullable=False),
        sa.Column("grid_connected", sa.Date, nullable=False),
        sa.Column("make", sa.String(100)),
        sa.Column("model", sa.String(100)),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("tariff", sa.String(64), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_solar_plants_farm_id", "solar_plants", ["farm_id"])
    op.create_table(
        "solar_readings",
        sa.Column("plant_id", sa.String(64), primary_key=True),
        sa.Column("observed_at", UTCDateTime, primary_key=True),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("lifetime_wh", sa.Float),
        sa.Column("power_w", sa.Float),
        sa.Column("status", sa.Integer),
        sa.Column("events", sa.Integer),
        sa.Column("mppt", sa.JSON),
        sa.Column("dcv_min", sa.Float),
        sa.Column("dcv_max", sa.Float),
        sa.Column("farm_id", sa.String(64), nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("seq", sa.BigInteger),
        sa.Column("raw", sa.Text, nullable=False),
    )
    op.create_table(
        "solar_days",
        sa.Column("plant_id", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("energy_kwh", sa.Float),
        sa.Column("expected_kwh", sa.Float),
        sa.Column("modelled_kwh", sa.Float),
        sa.Column("calibration", sa.Float),
        sa.Column("calibration_days", sa.Integer),
        sa.Column("insolation_kwh_m2", sa.Float),
        sa.Column("peer_ratio", sa.Float),
        sa.Column("performance_ratio", sa.Float),
        sa.Column("availability", sa.Float),
        sa.Column("daylight_h", sa.Float),
        sa.Column("readings", sa.Integer, nullable=False),
        sa.Column("serial", sa.String(64)),
        sa.Column("last_at", UTCDateTime),
        sa.Column("last_wh", sa.Float),
        sa.Column("flags", sa.JSON, nullable=False),
        sa.Column("computed_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("solar_days")
    op.drop_table("solar_readings")
    op.drop_index("ix_solar_plants_farm_id", "solar_plants")
    op.drop_table("solar_plants")
