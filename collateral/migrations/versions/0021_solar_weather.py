"""Imported weather for the solar model: hourly irradiance and air temperature per
0.1-degree cell, a typical year (PVGIS TMY) or measured hours (CAMS radiation).

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

from agri_common.times import UTCDateTime

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "solar_weather",
        sa.Column("cell", sa.String(32), primary_key=True),
        sa.Column("typical", sa.Boolean, primary_key=True),
        sa.Column("at", UTCDateTime, primary_key=True),
        sa.Column("ghi", sa.Float, nullable=False),
        sa.Column("temp_air", sa.Float),
        sa.Column("source", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("solar_weather")
