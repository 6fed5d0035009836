"""Audit log of API writes.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from collateral.tables import audit_log

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    audit_log.create(op.get_bind())


def downgrade() -> None:
    op.drop_table("audit_log")
