"""Crop profiles: disturbance events and the latest profile summary per parcel.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _parcel_fk(**kwargs) -> sa.Column:
    return sa.Column(
        "parcel_id",
        sa.String(64),
        sa.ForeignKey("parcels.parcel_id", ondelete="CASCADE"),
        **kwargs,
    )


def upgrade() -> None:
    op.create_table(
        "parcel_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _parcel_fk(nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True)),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("severity", sa.Float, nullable=False),
        sa.Column("affected_ha", sa.Float),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("parcel_id", "kind", "start", name="uq_parcel_events_key"),
    )
    op.create_table(
        "parcel_profiles",
        _parcel_fk(primary_key=True),
        sa.Column("as_of", sa.DateTime(timezone=True)),
        sa.Column("latest_clear_at", sa.DateTime(timezone=True)),
        sa.Column("latest_ndvi", sa.Float),
        sa.Column("expected_ndvi", sa.Float),
        sa.Column("anomaly_z", sa.Float),
        sa.Column("health_index", sa.Float),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("parcel_profiles")
    op.drop_table("parcel_events")
