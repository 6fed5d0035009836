"""Loans pledge the carbon of forest parcels (carbon_sink items); NULL: none.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("loans") as batch:
        batch.add_column(sa.Column("carbon", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("loans") as batch:
        batch.drop_column("carbon")
