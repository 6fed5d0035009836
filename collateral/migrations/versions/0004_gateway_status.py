"""Gateway status: what each gateway last said on its status topic (MQTT Will).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from bioassets.tables import gateway_status

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    gateway_status.create(op.get_bind())


def downgrade() -> None:
    op.drop_table("gateway_status")
