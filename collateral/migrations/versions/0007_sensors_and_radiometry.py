"""Scenes record their sensor, catalogue, acquisition and how their numbers were read;
observations record their sensor.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCENE_COLUMNS = (
    ("sensor", sa.String(32)),
    ("catalogue", sa.String(64)),
    ("acquisition_key", sa.String(200)),
    ("processing_rank", sa.String(64)),
    ("superseded_by", sa.String(200)),
    ("offset_rule", sa.String(16)),
    ("offset_contradicted", sa.Boolean),
    ("radiometry", sa.JSON),
)


def upgrade() -> None:
    with op.batch_alter_table("scenes") as batch:
        for name, kind in SCENE_COLUMNS:
            batch.add_column(sa.Column(name, kind))
        batch.create_index("ix_scenes_acquisition_key", ["acquisition_key"])
    with op.batch_alter_table("observations") as batch:
        batch.add_column(sa.Column("sensor", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("observations") as batch:
        batch.drop_column("sensor")
    with op.batch_alter_table("scenes") as batch:
        batch.drop_index("ix_scenes_acquisition_key")
        for name, _kind in reversed(SCENE_COLUMNS):
            batch.drop_column(name)
