"""Claims: a borrower's plot and what they say it is, with its verification report.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from agri_common.times import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("claim_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(200)),
        sa.Column("branch", sa.String(64), index=True),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("crs", sa.String(16), nullable=False),
        sa.Column("submitted_geometry", sa.JSON, nullable=False),
        sa.Column("geometry_geojson", sa.Text, nullable=False),
        sa.Column("area_ha", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(24), nullable=False),
        sa.Column("report", sa.JSON, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("inputs_sha256", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("parcel_id", sa.String(64)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("claims")
