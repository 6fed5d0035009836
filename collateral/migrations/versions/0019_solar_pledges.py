"""Loans pledge rooftop plants (and the right to their electricity fees), and carry the
term and rate that the debt-service cover ratio is read against.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("loans") as batch:
        batch.add_column(sa.Column("solar", sa.JSON))
        batch.add_column(sa.Column("term_months", sa.Integer))
        batch.add_column(sa.Column("annual_rate", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("loans") as batch:
        batch.drop_column("annual_rate")
        batch.drop_column("term_months")
        batch.drop_column("solar")
