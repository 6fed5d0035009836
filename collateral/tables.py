"""The collateral side's own tables: price/policy versions, loans, valuations, API keys.

Money is stored as decimal text, never as a float: SQLite has no exact decimal type and a
valuation must read back to the cent it was computed with.
"""

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from agri_common.times import UTCDateTime

metadata = MetaData()

# One row per imported price or policy table. Never updated: a new version supersedes.
price_versions = Table(
    "price_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # prices | policy | carbon
    Column("version", String(64), nullable=False),
    Column("effective_from", Date, nullable=False),
    Column("illustrative", Boolean, nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("document", JSON, nullable=False),  # the validated table (version, rows, notes)
    Column("source", Text, nullable=False),
    Column("imported_at", UTCDateTime, nullable=False),
    UniqueConstraint("kind", "version", name="uq_price_versions_kind_version"),
)

loans = Table(
    "loans",
    metadata,
    Column("loan_id", String(64), primary_key=True),
    Column("borrower", String(200), nullable=False),
    Column("branch", String(64), nullable=False, index=True),
    Column("principal_cny", String(32), nullable=False),
    Column("parcel_ids", JSON, nullable=False),
    Column("herds", JSON, nullable=False),  # [{"farm_id", "categories"?, "tag_ids"?}]
    # [{"parcel_id", "basis", "baseline_date", "market"}]: forest carbon (revision 0011)
    Column("carbon", JSON),
    Column("solar", JSON),  # [{"plant_id"}]: plants and the right to their fees
    Column("term_months", Integer),  # with annual_rate: the debt service DSCR is read on
    Column("annual_rate", String(16)),  # decimal text
    Column("state", String(16), nullable=False),  # active | closed
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Immutable: a valuation row is written once with everything needed to recompute it.
valuations = Table(
    "valuations",
    metadata,
    Column("valuation_id", String(40), primary_key=True),
    Column("loan_id", String(64), nullable=False, index=True),
    Column("as_of", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("prices_version", String(64), nullable=False),
    Column("policy_version", String(64), nullable=False),
    Column("code_version", String(64), nullable=False),
    Column("inputs_sha256", String(64), nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("result", JSON, nullable=False),
    Column("eligible_value_cny", String(32), nullable=False),
    Column("ltv", String(32)),  # null when nothing is eligible
    Column("status", String(16), nullable=False),
    # valuation.Figures: the totals lists read without parsing the document (revision 0016)
    Column("figures", JSON),
    # a loan's latest valuation is one backward index seek, however long its history
    Index("ix_valuations_loan_latest", "loan_id", "as_of", "created_at"),
)

loan_alerts = Table(
    "loan_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("loan_id", String(64), nullable=False, index=True),
    Column("kind", String(32), nullable=False),  # status_worsened
    Column("valuation_id", String(40), nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime),
    Column("detail", Text, nullable=False),  # English
    Column("code", String(48)),  # agri_common.wording: the detail in any language
    Column("params", JSON),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("role", String(16), nullable=False),  # loan_officer | risk_admin | operator
    Column("branch", String(64)),
    Column("label", String(200)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)

# Every write through the API: who (key), what (method, path, subject, outcome), when.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("key_id", String(16)),  # None: no valid key was presented
    Column("role", String(16)),
    Column("branch", String(64)),
    Column("method", String(8), nullable=False),
    Column("path", Text, nullable=False),
    Column("subject", String(200)),  # e.g. the loan or valuation created
    Column("status", Integer, nullable=False),
)

# A borrower's plot and what they say it is, before it is a parcel (revision 0010). The
# report and the inputs it was computed from are kept together, like a valuation's.
claims = Table(
    "claims",
    metadata,
    Column("claim_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # tea_garden | forest
    Column("owner", String(200)),
    Column("branch", String(64), index=True),  # whose officers see and accept it
    Column("attributes", JSON, nullable=False),
    Column("crs", String(16), nullable=False),  # the declared system it was drawn in
    Column("submitted_geometry", JSON, nullable=False),  # as drawn, in that system
    Column("geometry_geojson", Text, nullable=False),  # WGS84
    Column("area_ha", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # open | accepted
    Column("verdict", String(24), nullable=False),
    Column("report", JSON, nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("inputs_sha256", String(64), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("parcel_id", String(64)),  # the parcel it became when accepted
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Who is told about which alerts, and how (revision 0012).
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("branch", String(64), index=True),  # NULL: every branch (a risk desk)
    Column("label", String(200), nullable=False),  # the officer or group it is for
    Column("kinds", JSON, nullable=False),  # notice kinds (notify.KINDS)
    Column("channel", String(16), nullable=False),  # webhook | wecom | dingtalk | email
    Column("target", Text, nullable=False),  # the URL, or the e-mail address
    Column("secret", String(200)),  # HMAC key (webhook), signing secret (DingTalk)
    Column("language", String(8)),  # zh-CN | en (revision 0014); NULL: en
    Column("active", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# One row per (subscription, notice): the unique key makes enqueueing idempotent, so a
# notice is queued once per subscription however often the worker looks.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscription_id", Integer, nullable=False, index=True),
    Column("notice_key", String(120), nullable=False),
    Column("notice", JSON, nullable=False),
    Column("state", String(16), nullable=False),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
    Column("delivered_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("subscription_id", "notice_key", name="uq_deliveries_notice"),
)
