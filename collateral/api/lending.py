"""Loans, valuations and price tables. Loan officers see and change only their branch."""

import json
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from agri_common.rows import jsonable
from agri_common.wording import Said
from collateral import book, errors, loans, prices
from collateral.api import examples, models
from collateral.api.examples import CONFLICT, PROBLEMS
from collateral.api.limits import bounded_body
from collateral.api.security import ANY_ROLE, LENDING, RISK, EngineDep, request_locale
from collateral.auth import Principal
from collateral.credit_report import valuation_pdf
from collateral.portfolio import branch_portfolio

router = APIRouter(responses=examples.PROBLEMS)
Lender = Annotated[Principal, Depends(LENDING)]


class ValueRequest(BaseModel):
    """Value now (empty body) or as of a past time."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"as_of": "2024-06-30T00:00:00Z"}]}
    )

    as_of: AwareDatetime | None = Field(default=None)


def _loan_for(engine: Engine, principal: Principal, loan_id: str) -> dict:
    """The loan if the caller may see it; another branch's loan is reported as absent."""
    return _visible(principal, loans.get_loan(engine, loan_id))


def _visible(principal: Principal, loan: dict) -> dict:
    if not principal.sees_branch(loan["branch"]):
        raise errors.NotFound(Said("problem.not_found", what="loan", id=repr(loan["loan_id"])))
    return loan


def _loan_out(engine: Engine, loan: dict) -> dict:
    return _loan_json(loan, loans.latest_valuation(engine, loan["loan_id"]))


def _loan_json(loan: dict, latest: dict | None) -> dict:
    """A loan with its latest valuation's summary (any row with ``book.LATEST_COLUMNS``)."""
    return {
        **jsonable(loan),
        "latest_valuation": None
        if latest is None
        else {
            "valuation_id": latest["valuation_id"],
            "as_of": latest["as_of"].isoformat(),
            "collateral_value_cny": latest["figures"]["collateral_value_cny"],
            "eligible_value_cny": latest["eligible_value_cny"],
            "ltv": latest["ltv"],
            "status": latest["status"],
            "carbon_t_co2e": latest["figures"]["carbon_t_co2e"],
            **{k: latest["figures"][k] for k in SOLAR_FIGURES if k in latest["figures"]},
        },
    }


# what a loan's summary says of its rooftop plants (valuation.Figures)
SOLAR_FIGURES = (
    "solar_kwp",
    "solar_energy_30d_kwh",
    "solar_expected_30d_kwh",
    "dscr_p50",
    "dscr_p90",
)


@router.get(
    "/me",
    tags=["service"],
    summary="Who this API key is: role and branch",
    response_model=models.Me,
)
def whoami(principal: Annotated[Principal, Depends(ANY_ROLE)]) -> dict:
    return {"key_id": principal.key_id, "role": principal.role, "branch": principal.branch}


@router.post(
    "/loans",
    status_code=201,
    tags=["loans"],
    summary="Create a loan",
    responses=CONFLICT,
    response_model=models.Loan,
)
def create_loan(loan: loans.LoanIn, request: Request, engine: EngineDep, principal: Lender) -> dict:
    request.state.audit_subject = loan.loan_id
    if not principal.sees_branch(loan.branch):
        raise errors.Invalid(
            "branch",
            f"a loan officer of {principal.branch} cannot create loans of branch {loan.branch}",
        )
    return _loan_out(engine, loans.create_loan(engine, loan))


@router.get(
    "/loans",
    tags=["loans"],
    summary="Loans (a loan officer's own branch)",
    response_model=list[models.Loan],
)
def list_loans(engine: EngineDep, principal: Lender) -> list[dict]:
    branch = principal.branch if principal.role == "loan_officer" else None
    return [_loan_json(loan, latest) for loan, latest in book.loans_with_latest(engine, branch)]


@router.get(
    "/loans/{loan_id}",
    tags=["loans"],
    summary="One loan with its latest valuation",
    response_model=models.Loan,
)
def get_loan(loan_id: str, engine: EngineDep, principal: Lender) -> dict:
    loan, latest = book.loan_with_latest_valuation(engine, loan_id)
    return _loan_json(_visible(principal, loan), latest)


@router.patch(
    "/loans/{loan_id}",
    tags=["loans"],
    summary="Update principal and pledges",
    response_model=models.Loan,
)
def update_loan(loan_id: str, patch: loans.LoanPatch, engine: EngineDep, principal: Lender) -> dict:
    _loan_for(engine, principal, loan_id)
    return _loan_out(engine, loans.update_loan(engine, loan_id, patch))


@router.delete(
    "/loans/{loan_id}",
    tags=["loans"],
    summary="Close a loan (kept with its valuations)",
    response_model=models.Loan,
)
def close_loan(loan_id: str, engine: EngineDep, principal: Lender) -> dict:
    _loan_for(engine, principal, loan_id)
    return _loan_out(engine, loans.close_loan(engine, loan_id))


@router.post(
    "/loans/{loan_id}/valuations",
    status_code=201,
    tags=["valuations"],
    summary="Value the loan now, or as of a past time",
    response_model=models.Valuation,
)
def value_loan(
    loan_id: str,
    request: Request,
    engine: EngineDep,
    principal: Lender,
    body: Annotated[ValueRequest | None, Body()] = None,
) -> dict:
    _loan_for(engine, principal, loan_id)
    doc = loans.value_now(engine, loan_id, body.as_of if body else None)
    request.state.audit_subject = doc["valuation_id"]
    return doc


@router.get(
    "/loans/{loan_id}/valuations",
    tags=["valuations"],
    summary="Valuation history",
    response_model=list[models.ValuationSummary],
)
def list_valuations(loan_id: str, engine: EngineDep, principal: Lender) -> list[dict]:
    _loan_for(engine, principal, loan_id)
    return [
        {
            "valuation_id": v["valuation_id"],
            "as_of": v["as_of"].isoformat(),
            "created_at": v["created_at"].isoformat(),
            "collateral_value_cny": v["result"]["collateral_value_cny"],
            "eligible_value_cny": v["eligible_value_cny"],
            "ltv": v["ltv"],
            "status": v["status"],
            "prices_version": v["prices_version"],
            "policy_version": v["policy_version"],
        }
        for v in loans.list_valuations(engine, loan_id)
    ]


@router.get(
    "/valuations/{valuation_id}",
    tags=["valuations"],
    summary="A valuation with its evidence and formula breakdown",
    response_model=models.Valuation,
)
def get_valuation(
    valuation_id: str, engine: EngineDep, principal: Lender, inputs: bool = False
) -> dict:
    """``?inputs=true`` adds the full input snapshot the figures were computed from."""
    row = loans.get_valuation(engine, valuation_id, with_inputs=inputs)
    _loan_for(engine, principal, row["loan_id"])
    doc = loans.stored_document(row)
    if inputs:
        doc["inputs"] = row["inputs"]
    return doc


@router.get(
    "/valuations/{valuation_id}/report.pdf",
    tags=["valuations"],
    summary="The valuation as a PDF report for the credit file (zh-CN or en)",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
        **PROBLEMS,
    },
)
def valuation_report(
    valuation_id: str,
    request: Request,
    engine: EngineDep,
    principal: Lender,
    lang: Annotated[Literal["zh-CN", "en"] | None, Query()] = None,
) -> Response:
    """Rendered on the server (WeasyPrint, Noto CJK) from the stored figures; without
    ``lang`` the language is the request's Accept-Language (Chinese or English)."""
    row = loans.get_valuation(engine, valuation_id, with_inputs=False)
    loan = _loan_for(engine, principal, row["loan_id"])
    doc = loans.stored_document(row)
    locale = lang or request_locale(request)
    pdf = valuation_pdf(engine, doc, loan, locale)
    filename = f"{row['loan_id']}-{valuation_id[:12]}-{locale}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="{filename}"',
            "Content-Language": locale,
        },
    )


@router.get(
    "/valuations/{valuation_id}/verify",
    tags=["valuations"],
    summary="Recompute the valuation from its stored inputs and compare",
    response_model=models.Verification,
)
def verify_valuation(valuation_id: str, engine: EngineDep, principal: Lender) -> dict:
    row = loans.get_valuation(engine, valuation_id)
    _loan_for(engine, principal, row["loan_id"])
    return loans.verify(engine, valuation_id)


@router.get(
    "/prices",
    tags=["prices"],
    summary="Imported price and policy table versions",
    response_model=list[models.TableVersion],
)
def list_prices(engine: EngineDep, _caller: Annotated[Principal, Depends(ANY_ROLE)]) -> list[dict]:
    return [jsonable(r) for r in prices.list_versions(engine)]


@router.get(
    "/prices/in-force",
    tags=["prices"],
    summary="The tables in force on a date",
    response_model=models.TablesInForce,
)
def prices_in_force(
    engine: EngineDep, _caller: Annotated[Principal, Depends(ANY_ROLE)], on: datetime | None = None
) -> dict:
    day = (on or datetime.now()).date()
    return {
        "on": day.isoformat(),
        "prices": prices.table_in_force(engine, "prices", day),
        "policy": prices.table_in_force(engine, "policy", day),
        "carbon": prices.table_in_force(engine, "carbon", day),
    }


@router.post(
    "/prices",
    status_code=201,
    tags=["prices"],
    summary="Import a price or policy table version (YAML, JSON or CSV body)",
    responses=CONFLICT,
    response_model=models.TableImported,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/yaml": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
                "text/csv": {"schema": {"type": "string"}},
            }
        }
    },
)
async def import_prices(
    request: Request, engine: EngineDep, _risk: Annotated[Principal, Depends(RISK)]
) -> dict:
    body = await bounded_body(request)
    try:
        table = prices.parse_upload(body, request.headers.get("content-type", ""))
    except UnicodeDecodeError:
        raise prices.TableError(["the body must be UTF-8 text"]) from None
    request.state.audit_subject = f"{table['kind']}:{table['version']}"
    added = prices.import_table(engine, table, "api upload")
    return {
        "kind": table["kind"],
        "version": table["version"],
        "effective_from": table["effective_from"],
        "imported": added,
    }


@router.get(
    "/portfolio",
    tags=["loans"],
    summary="A branch's portfolio: totals, status, LTV bands, alerts, hectares, headcount, carbon",
    response_model=models.Portfolio,
)
def portfolio(
    engine: EngineDep,
    principal: Lender,
    branch: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """A loan officer sees their own branch; a risk admin any branch, or all without one.
    Every figure lists the loans behind it."""
    if principal.role == "loan_officer":
        if branch not in (None, principal.branch):
            raise errors.NotFound(f"branch {branch!r} is not yours")
        branch = principal.branch
    # plain JSON already (strings, numbers, lists): serialized as it is, not walked again
    body = json.dumps(branch_portfolio(engine, branch, datetime.now(UTC)))
    return Response(body, media_type="application/json")
