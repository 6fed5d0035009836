"""Collateral: price and policy versions, loans, valuations, loan alerts, API keys.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "price_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("effective_from", sa.Date, nullable=False),
        sa.Column("illustrative", sa.Boolean, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("kind", "version", name="uq_price_versions_kind_version"),
    )
    op.create_table(
        "loans",
        sa.Column("loan_id", sa.String(64), primary_key=True),
        sa.Column("borrower", sa.String(200), nullable=False),
        sa.Column("branch", sa.String(64), nullable=False),
        sa.Column("principal_cny", sa.String(32), nullable=False),
        sa.Column("parcel_ids", sa.JSON, nullable=False),
        sa.Column("herds", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_loans_branch", "loans", ["branch"])
    op.create_table(
        "valuations",
        sa.Column("valuation_id", sa.String(40), primary_key=True),
        sa.Column("loan_id", sa.String(64), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prices_version", sa.String(64), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("code_version", sa.String(64), nullable=False),
        sa.Column("inputs_sha256", sa.String(64), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("eligible_value_cny", sa.String(32), nullable=False),
        sa.Column("ltv", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_index("ix_valuations_loan_id", "valuations", ["loan_id"])
    op.create_table(
        "loan_alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("loan_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("valuation_id", sa.String(40), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_loan_alerts_loan_id", "loan_alerts", ["loan_id"])
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("branch", sa.String(64)),
        sa.Column("label", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("loan_alerts")
    op.drop_table("valuations")
    op.drop_table("loans")
    op.drop_table("price_versions")
