"""Collateral: price and policy versions, loans, valuations, loan alerts, API keys.

Revision ID: 0005
Revises: 0004

The tables are created from collateral.tables as they stand at this revision; any later
change to them must come as explicit op.* steps in a new revision.
"""

from alembic import op

from collateral.tables import metadata

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


TABLES = ("price_versions", "loans", "valuations", "loan_alerts", "api_keys")


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=[metadata.tables[name] for name in TABLES])


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
