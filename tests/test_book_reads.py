"""The officer's reads follow what they return, not the size of the book: the portfolio, the
loan list and the map's pledges send the same statements whether the bank holds 24 loans
or 240 (a branch keeps its 12), their figures are those of each loan's latest valuation
among several, and on PostgreSQL finding the latest valuations reads the valuation table
by index, however long its history."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from collateral import auth, book, loans
from collateral.api import models
from collateral.api.app import create_app
from collateral.valuation import figures
from tests.support.book import add_book, branch_of, loan_of, parcel_of

PER_BRANCH = 12
WHEN = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def _template(name: str, tea_ha: str, eligible: str, ltv: str, status: str) -> dict:
    result = {
        "items": [
            {"kind": "tea_garden", "ref": "T", "evidence": {"area_ha": tea_ha}},
            {"kind": "carbon_sink", "ref": "F", "evidence": {"quantity_t_co2e": "3.5"}},
            {"kind": "herd", "ref": "FARM/breeding_sow", "evidence": {"verified": 7}},
        ],
        "collateral_value_cny": str(Decimal(eligible) * 2),
    }
    return {
        "valuation_id": name,
        "loan_id": name,
        "as_of": WHEN,
        "created_at": WHEN,
        "prices_version": "p",
        "policy_version": "q",
        "code_version": "c",
        "inputs_sha256": "0" * 64,
        "inputs": {},
        "result": result,
        "eligible_value_cny": eligible,
        "ltv": ltv,
        "status": status,
        "figures": figures(result),
    }


TEMPLATES = [
    _template("A", "1.25", "200000.00", "0.5000", "ok"),
    _template("B", "2.5", "150000.00", "0.7500", "watch"),
]


def _reads(engine, role: str = "loan_officer") -> tuple[dict, dict[str, int]]:
    """The officer's three reads (the risk desk's: the whole book): (path -> JSON, path ->
    statements sent)."""
    client = TestClient(create_app(engine))
    branch = branch_of(0, PER_BRANCH) if role == "loan_officer" else None
    key = auth.create_key(engine, role, branch)
    pledged = ",".join(parcel_of(n) for n in range(PER_BRANCH))
    paths = ["/v1/portfolio", "/v1/loans", f"/v1/parcels?ids={pledged}&limit=1000"]
    bodies, counts = {}, {}
    sent: list[str] = []
    listener = lambda *args: sent.append(args[2])  # noqa: E731
    for path in paths:
        sent.clear()
        event.listen(engine, "before_cursor_execute", listener)
        try:
            response = client.get(path, headers={"Authorization": f"Bearer {key}"})
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        assert response.status_code == 200, response.text
        bodies[path], counts[path] = response.json(), len(sent)
    return bodies, counts


def test_the_officers_reads_cost_the_same_in_a_book_ten_times_larger(engine):
    add_book(engine, 2 * PER_BRANCH, PER_BRANCH, TEMPLATES, history=3)
    small, small_counts = _reads(engine)
    add_book(engine, 18 * PER_BRANCH, PER_BRANCH, TEMPLATES, first=2 * PER_BRANCH, history=3)
    large, large_counts = _reads(engine)
    assert large_counts == small_counts
    # and the risk desk's whole book (240 loans) takes the statements of one branch (12)
    book, book_counts = _reads(engine, "risk_admin")
    assert book_counts == large_counts
    models.Portfolio.model_validate(book["/v1/portfolio"])  # as /openapi.json says (sent as is)
    assert book["/v1/portfolio"]["loans"] == len(book["/v1/loans"]) == 20 * PER_BRANCH
    for path, body in small.items():  # the same answers (the portfolio's time aside)
        if path == "/v1/portfolio":
            body, large[path] = body | {"as_of": None}, large[path] | {"as_of": None}
        assert large[path] == body, path

    portfolio = large["/v1/portfolio"]
    mine = range(PER_BRANCH)
    # the latest of each loan's three valuations: template n % 2 (the older ones differ)
    latest = [TEMPLATES[n % 2] for n in mine]
    assert portfolio["loans"] == PER_BRANCH
    assert Decimal(portfolio["principal_cny"]) == sum(
        Decimal(f"{100000 + 37 * n}.00") for n in mine
    )
    assert Decimal(portfolio["eligible_value_cny"]) == sum(
        Decimal(t["eligible_value_cny"]) for t in latest
    )
    assert portfolio["by_status"]["ok"]["loan_ids"] == [loan_of(n) for n in mine if n % 2 == 0]
    assert portfolio["by_status"]["watch"]["count"] == PER_BRANCH // 2
    assert (
        Decimal(portfolio["pledged_ha"]["tea_garden"]["ha"])
        == Decimal("1.25") * 6 + Decimal("2.5") * 6
    )
    assert Decimal(portfolio["pledged_carbon_t_co2e"]) == Decimal("3.5") * PER_BRANCH
    assert portfolio["verified_headcount"] == {"breeding_sow": 7 * PER_BRANCH}
    # every tenth loan has an open status alert; every 25th parcel an open disturbance
    assert portfolio["open_alerts"]["status_worsened"]["loan_ids"] == [loan_of(0), loan_of(10)]
    assert portfolio["open_alerts"]["disturbance"]["loan_ids"] == [loan_of(0)]

    listed = large["/v1/loans"]
    assert [x["loan_id"] for x in listed] == [loan_of(n) for n in mine]
    assert [x["latest_valuation"]["status"] for x in listed[:2]] == ["ok", "watch"]
    assert listed[1]["latest_valuation"]["collateral_value_cny"] == "300000.00"
    assert listed[1]["latest_valuation"]["carbon_t_co2e"] == "3.5"
    parcels = large[next(p for p in large if p.startswith("/v1/parcels"))]
    assert parcels["numberMatched"] == PER_BRANCH
    assert [f["id"] for f in parcels["features"]] == [parcel_of(n) for n in mine]
    assert "open since" in parcels["features"][0]["properties"]["disturbance"]


def test_a_loan_without_a_valuation_is_listed_without_one(engine):
    add_book(engine, 2, PER_BRANCH, TEMPLATES)
    loans.create_loan(
        engine,
        loans.LoanIn(
            loan_id="LN-NEW",
            borrower="Lin",
            branch=branch_of(0, PER_BRANCH),
            principal_cny=Decimal("5000"),
        ),
    )
    pairs = dict((loan["loan_id"], latest) for loan, latest in book.loans_with_latest(engine))
    assert pairs["LN-NEW"] is None and pairs[loan_of(1)]["status"] == "watch"
    body, _ = _reads(engine)
    assert body["/v1/portfolio"]["by_status"]["not_valued"]["loan_ids"] == ["LN-NEW"]


@pytest.mark.postgres
def test_the_latest_valuations_are_found_by_index_on_postgresql(postgres_url):
    from collateral.db import make_engine, upgrade
    from tests.support.databases import empty_all_tables

    engine = make_engine(postgres_url)
    upgrade(engine)
    empty_all_tables(engine)
    add_book(engine, 600, 100, TEMPLATES, history=20)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    sent = []
    listener = lambda *args: sent.append((args[2], args[3]))  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert len(book.loans_with_latest(engine, branch_of(0, 100), active_only=True)) == 100
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    ((statement, parameters),) = sent
    with engine.begin() as conn:
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
    assert "Seq Scan on valuations" not in plan, plan
    assert "ix_valuations_loan_latest" in plan, plan
    engine.dispose()
