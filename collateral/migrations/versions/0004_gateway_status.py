"""Gateway status: what each gateway last said on its status topic (MQTT Will).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_status",
        sa.Column(
            "gateway_id", sa.String(64), sa.ForeignKey("gateways.gateway_id"), primary_key=True
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_status")
