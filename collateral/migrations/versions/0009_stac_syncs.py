"""Where each STAC API and collection was last synced from; what each scene cost to read
over HTTP.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from agri_common.times import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stac_syncs",
        sa.Column("api_url", sa.String(500), primary_key=True),
        sa.Column("collection", sa.String(200), primary_key=True),
        sa.Column("searched_from", UTCDateTime),
        sa.Column("succeeded_at", UTCDateTime, nullable=False),
        sa.Column("items_found", sa.Integer, nullable=False),
    )
    with op.batch_alter_table("scenes") as batch:
        batch.add_column(sa.Column("http_requests", sa.Integer))
        batch.add_column(sa.Column("http_bytes", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("scenes") as batch:
        batch.drop_column("http_bytes")
        batch.drop_column("http_requests")
    op.drop_table("stac_syncs")
