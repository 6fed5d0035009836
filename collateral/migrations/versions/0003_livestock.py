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
    # The first revision of these tables: created from their definitions as of this
    # revision. Later changes get explicit op.* steps in revisions of their own.
    bind = op.get_bind()
    metadata.create_all(bind, tables=[metadata.tables[name] for name in TABLES])


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
