"""A plant's year-on-year degradation, worked out monthly and carried on each day's row,
so the daily alert rules read a month of days instead of two years.

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("solar_days") as batch:
        batch.add_column(sa.Column("degradation_pct", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("solar_days") as batch:
        batch.drop_column("degradation_pct")
