"""Profiles say how sure they are: clear dates in the last 60 days, the largest gap
without one, and the drops that could not be confirmed for want of clear dates.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PROFILE_COLUMNS = (
    ("clear_dates_60d", sa.Integer),
    ("largest_gap_days", sa.Float),
    ("suspected", sa.JSON),
)


def upgrade() -> None:
    with op.batch_alter_table("parcel_profiles") as batch:
        for name, kind in PROFILE_COLUMNS:
            batch.add_column(sa.Column(name, kind))


def downgrade() -> None:
    with op.batch_alter_table("parcel_profiles") as batch:
        for name, _kind in reversed(PROFILE_COLUMNS):
            batch.drop_column(name)
