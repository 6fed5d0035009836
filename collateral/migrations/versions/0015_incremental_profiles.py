"""Profiles that a new scene advances instead of rebuilding: the peers of each scene
(scene_peers), each parcel's clear dates with their judgement, the walk to continue from
and the view as of the date (profile_dates), and the season tables by year
(season_tables). Existing profiles are filled by `agri profiles rebuild`.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

from agri_common.times import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _parcel_id(**kwargs) -> sa.Column:
    return sa.Column(
        "parcel_id",
        sa.String(64),
        sa.ForeignKey("parcels.parcel_id", ondelete="CASCADE"),
        **kwargs,
    )


def upgrade() -> None:
    op.create_index("ix_observations_parcel_time", "observations", ["parcel_id", "acquired_at"])
    op.create_index("ix_observations_scene", "observations", ["scene_id"])
    op.create_table(
        "scene_peers",
        sa.Column("scene_id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("acquired_at", UTCDateTime, nullable=False),
        sa.Column("median", sa.Float, nullable=False),
        sa.Column("spread", sa.Float, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("dip", sa.Float, nullable=False),
    )
    op.create_index("ix_scene_peers_kind_time", "scene_peers", ["kind", "acquired_at"])
    op.create_table(
        "profile_dates",
        _parcel_id(primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("scene_id", sa.String(200), nullable=False),
        sa.Column("acquired_at", UTCDateTime, nullable=False),
        sa.Column("ndvi", sa.Float, nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("outlier", sa.Boolean, nullable=False),
        sa.Column("expected", sa.Float),
        sa.Column("spread", sa.Float),
        sa.Column("allowance", sa.Float, nullable=False),
        sa.Column("allowance_source", sa.String(16)),
        sa.Column("source", sa.String(16)),
        sa.Column("shared", sa.Float, nullable=False),
        sa.Column("offset", sa.Float),
        sa.Column("clear_dates", sa.Integer, nullable=False),
        sa.Column("state", sa.JSON),
        sa.Column("view", sa.JSON, nullable=False),
    )
    op.create_index("ix_profile_dates_parcel_time", "profile_dates", ["parcel_id", "acquired_at"])
    op.create_index("ix_profile_dates_scene", "profile_dates", ["scene_id"])
    op.create_table(
        "season_tables",
        _parcel_id(primary_key=True),
        sa.Column("year", sa.Integer, primary_key=True),
        sa.Column("bins", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("season_tables")
    op.drop_index("ix_profile_dates_scene", "profile_dates")
    op.drop_index("ix_profile_dates_parcel_time", "profile_dates")
    op.drop_table("profile_dates")
    op.drop_index("ix_scene_peers_kind_time", "scene_peers")
    op.drop_table("scene_peers")
    op.drop_index("ix_observations_scene", "observations")
    op.drop_index("ix_observations_parcel_time", "observations")
