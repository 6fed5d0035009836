"""Where each STAC API and collection was last synced from.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from agri_common.times import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stac_syncs",
        sa.Column("api_url", sa.String(500), primary_key=True),
        sa.Column("collection", sa.String(200), primary_key=True),
        sa.Column("searched_from", UTCDateTime),
        sa.Column("succeeded_at", UTCDateTime, nullable=False),
        sa.Column("items_found", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stac_syncs")
