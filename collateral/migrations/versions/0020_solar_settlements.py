"""The grid company's monthly settlement of each rooftop plant (kWh metered, CNY paid),
to be checked against the plant's own counter.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

from agri_common.times import UTCDateTime

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "solar_settlements",
        sa.Column("plant_id", sa.String(64), primary_key=True),
        sa.Column("month", sa.Date, primary_key=True),
        sa.Column("kwh", sa.Float, nullable=False),
        sa.Column("paid_cny", sa.String(32), nullable=False),
        sa.Column("imported_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("solar_settlements")
