"""A reading's message number as a 64-bit integer: the reference gateway agent numbers a
new outbox from the current time in milliseconds (about 1.8e12), past a 32-bit column.
PostgreSQL's binary COPY wrote those numbers truncated into ``readings.seq``; SQLite stores
them whole either way.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("readings") as batch:
        batch.alter_column("seq", type_=sa.BigInteger, existing_type=sa.Integer)


def downgrade() -> None:
    with op.batch_alter_table("readings") as batch:
        batch.alter_column("seq", type_=sa.Integer, existing_type=sa.BigInteger)
