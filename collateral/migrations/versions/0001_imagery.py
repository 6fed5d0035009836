"""Imagery: parcels, the scene ledger and per-parcel observations.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "parcels",
        sa.Column("parcel_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(200)),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("geometry_geojson", sa.Text, nullable=False),
        sa.Column("area_ha", sa.Float, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "scenes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scene_id", sa.String(200), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("source_path", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("acquired_at", sa.DateTime(timezone=True)),
        sa.Column("crs", sa.Text),
        sa.Column("ndvi_path", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("seconds", sa.Float),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("scene_id", "checksum", name="uq_scenes_scene_checksum"),
    )
    op.create_table(
        "observations",
        sa.Column(
            "parcel_id",
            sa.String(64),
            sa.ForeignKey("parcels.parcel_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("scene_id", sa.String(200), primary_key=True),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ndvi_mean", sa.Float),
        sa.Column("ndvi_median", sa.Float),
        sa.Column("ndvi_p10", sa.Float),
        sa.Column("ndvi_p90", sa.Float),
        sa.Column("ndvi_std", sa.Float),
        sa.Column("pixel_count", sa.Integer, nullable=False),
        sa.Column("valid_fraction", sa.Float, nullable=False),
        sa.Column("cloud_fraction", sa.Float, nullable=False),
    )
    op.create_index("ix_observations_acquired_at", "observations", ["acquired_at"])


def downgrade() -> None:
    op.drop_table("observations")
    op.drop_table("scenes")
    op.drop_table("parcels")
