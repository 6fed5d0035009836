"""Livestock: farms, gateways, animals, readings, life events, alerts, rejects.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "farms",
        sa.Column("farm_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("owner", sa.String(200)),
        sa.Column("geofence_geojson", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "gateways",
        sa.Column("gateway_id", sa.String(64), primary_key=True),
        sa.Column("farm_id", sa.String(64), sa.ForeignKey("farms.farm_id"), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "animals",
        sa.Column("tag_id", sa.String(15), primary_key=True),
        sa.Column("farm_id", sa.String(64), sa.ForeignKey("farms.farm_id"), nullable=False),
        sa.Column("species", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("sex", sa.String(16)),
        sa.Column("birth_date", sa.Date),
        sa.Column("parity", sa.Integer),
        sa.Column("lactation", sa.Integer),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_at", sa.DateTime(timezone=True)),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "readings",
        sa.Column("tag_id", sa.String(15), primary_key=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("farm_id", sa.String(64), nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lat", sa.Float),
        sa.Column("lon", sa.Float),
        sa.Column("temperature_c", sa.Float),
        sa.Column("activity", sa.Float),
        sa.Column("weight_kg", sa.Float),
        sa.Column("battery_pct", sa.Float),
        sa.Column("rssi", sa.Float),
        sa.Column("seq", sa.Integer),
    )
    op.create_table(
        "animal_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tag_id", sa.String(15), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("farm_id", sa.String(64), nullable=False),
        sa.Column("gateway_id", sa.String(64), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tag_id", "kind", "occurred_at", name="uq_animal_events_key"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("farm_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_alerts_farm_id", "alerts", ["farm_id"])
    op.create_table(
        "rejects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("farm_id", sa.String(64)),
        sa.Column("gateway_id", sa.String(64)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("item", sa.Text),
        sa.Column("raw", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_rejects_gateway_id", "rejects", ["gateway_id"])


def downgrade() -> None:
    op.drop_table("rejects")
    op.drop_table("alerts")
    op.drop_table("animal_events")
    op.drop_table("readings")
    op.drop_table("animals")
    op.drop_table("gateways")
    op.drop_table("farms")
