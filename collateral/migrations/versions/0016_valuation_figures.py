"""Reads that follow what they return as the book grows: each valuation's totals stored
beside its document (``figures``, filled here for the valuations already stored), an index
that finds a loan's latest valuation in one seek, and one that finds the open disturbances.

Revision ID: 0016
Revises: 0015
"""

import json

import sqlalchemy as sa
from alembic import op

from collateral.valuation import figures

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

BATCH = 500


def upgrade() -> None:
    with op.batch_alter_table("valuations") as batch:
        batch.add_column(sa.Column("figures", sa.JSON))
    op.create_index("ix_valuations_loan_latest", "valuations", ["loan_id", "as_of", "created_at"])
    op.create_index("ix_parcel_events_state", "parcel_events", ["state"])
    table = sa.table(
        "valuations",
        sa.column("valuation_id", sa.String),
        sa.column("result", sa.JSON),
        sa.column("figures", sa.JSON),
    )
    conn = op.get_bind()
    ids = [r.valuation_id for r in conn.execute(sa.select(table.c.valuation_id))]
    for first in range(0, len(ids), BATCH):
        rows = conn.execute(
            sa.select(table.c.valuation_id, table.c.result).where(
                table.c.valuation_id.in_(ids[first : first + BATCH])
            )
        )
        for valuation_id, result in rows.all():
            if isinstance(result, str):
                result = json.loads(result)
            conn.execute(
                table.update()
                .where(table.c.valuation_id == valuation_id)
                .values(figures=figures(result))
            )


def downgrade() -> None:
    op.drop_index("ix_parcel_events_state", "parcel_events")
    op.drop_index("ix_valuations_loan_latest", "valuations")
    with op.batch_alter_table("valuations") as batch:
        batch.drop_column("figures")
