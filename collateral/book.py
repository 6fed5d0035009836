"""Reads of the loan book that cost what they return, not the size of the book: each loan
with its latest valuation's figures in one statement (one index seek a loan, however long
its valuation history: ``ix_valuations_loan_latest``), and the open alerts of a branch's
loans. What the loan list, a loan read and the portfolio stand on."""

from sqlalchemy import Engine, select

from agri_common.wording import Said
from collateral.errors import NotFound
from collateral.loans import _loan_row, _loan_row_of, _valuation_row
from collateral.tables import loan_alerts, loans, valuations

# What a loan list shows of a loan's latest valuation: its figures, not its document.
LATEST_COLUMNS = [
    valuations.c[name]
    for name in (
        "valuation_id",
        "loan_id",
        "as_of",
        "created_at",
        "eligible_value_cny",
        "ltv",
        "status",
        "figures",
    )
]


def loan_with_latest_valuation(engine: Engine, loan_id: str) -> tuple[dict, dict | None]:
    """The loan and its latest valuation's summary (``LATEST_COLUMNS``) through one
    connection: the API's most frequent read, where each connection taken from the pool
    costs a liveness round trip."""
    with engine.connect() as conn:
        loan = conn.execute(select(loans).where(loans.c.loan_id == loan_id)).first()
        if loan is None:
            raise NotFound(Said("problem.not_found", what="loan", id=repr(loan_id)))
        latest = conn.execute(
            select(*LATEST_COLUMNS).where(valuations.c.valuation_id == _latest_id(loan_id))
        ).first()
    return _loan_row(loan), _valuation_row(latest) if latest else None


# What the portfolio reads of a loan and of its latest valuation: its sums and bands.
PORTFOLIO_LOAN = ("loan_id", "principal_cny", "parcel_ids", "herds", "carbon", "solar")
PORTFOLIO_LATEST = ("valuation_id", "eligible_value_cny", "ltv", "status", "figures")


def loans_with_latest(
    engine: Engine,
    branch: str | None = None,
    active_only: bool = False,
    loan_columns: tuple[str, ...] | None = None,
    latest_columns: tuple[str, ...] | None = None,
) -> list[tuple[dict, dict | None]]:
    """Each loan (of ``branch``; None: every branch) with its latest valuation's summary
    (``LATEST_COLUMNS``), in one query: one index seek a loan, whatever the length of its
    valuation history. ``loan_columns`` and ``latest_columns`` narrow what is read (the
    portfolio: ``PORTFOLIO_LOAN``, ``PORTFOLIO_LATEST``); ``valuation_id`` is always read."""
    own = [loans.c[n] for n in loan_columns] if loan_columns else list(loans.c)
    names = latest_columns or tuple(c.name for c in LATEST_COLUMNS)
    names = names if "valuation_id" in names else ("valuation_id", *names)
    latest = [valuations.c[n].label(f"latest_{n}") for n in names]
    query = (
        select(*own, *latest)
        .select_from(
            loans.outerjoin(valuations, valuations.c.valuation_id == _latest_id(loans.c.loan_id))
        )
        .order_by(loans.c.loan_id)
    )
    if branch is not None:
        query = query.where(loans.c.branch == branch)
    if active_only:
        query = query.where(loans.c.state == "active")
    out = []
    with engine.connect() as conn:
        for row in conn.execute(query):
            values = tuple(row)
            loan = _loan_row_of(dict(zip((c.name for c in own), values, strict=False)))
            summary = dict(zip(names, values[len(own) :], strict=True))
            out.append((loan, summary if summary["valuation_id"] is not None else None))
    return out


def _latest_id(loan_id):
    """The id of a loan's latest valuation: the most recently made of those with the latest
    as_of. ``loan_id``: a value, or the loans table's column (correlated)."""
    newest = valuations.alias("newest")
    return (
        select(newest.c.valuation_id)
        .where(newest.c.loan_id == loan_id)
        .order_by(newest.c.as_of.desc(), newest.c.created_at.desc())
        .limit(1)
        .correlate_except(newest)
        .scalar_subquery()
    )


def open_loan_alerts(engine: Engine, branch: str | None = None) -> list[dict]:
    """The open alerts of the active loans of ``branch`` (None: every branch)."""
    query = (
        select(loan_alerts)
        .join(loans, loans.c.loan_id == loan_alerts.c.loan_id)
        .where(loan_alerts.c.closed_at.is_(None), loans.c.state == "active")
        .order_by(loan_alerts.c.opened_at, loan_alerts.c.id)
    )
    if branch is not None:
        query = query.where(loans.c.branch == branch)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
