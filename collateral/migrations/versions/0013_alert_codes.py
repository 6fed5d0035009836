"""Alerts carry the machine code and parameters of their detail, so that the officer's
page and the PDF report word them in the officer's language (agri_common.wording);
``detail`` keeps the English sentence for other clients. NULL: an alert from before.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLES = ("alerts", "loan_alerts")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("code", sa.String(48)))
            batch.add_column(sa.Column("params", sa.JSON))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("params")
            batch.drop_column("code")
