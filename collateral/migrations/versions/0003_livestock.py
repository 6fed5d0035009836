"""Livestock: farms, gateways, animals, readings, life events, alerts, rejects.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from bioassets.tables import metadata

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("farms", "gateways", "animals", "readings", "animal_events", "alerts", "rejects")


def upgrade() -> None:
    # Created from their definitions: a table created this way must never be altered
    # later (a fresh database would already have the change); new columns go into new
    # tables, or this revision is first rewritten with explicit op.create_table.
    bind = op.get_bind()
    metadata.create_all(bind, tables=[metadata.tables[name] for name in TABLES])


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
