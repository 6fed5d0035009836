"""Loans, their valuations and revaluation: the store side of the valuation engine.

A valuation is written once, with its input snapshot; ``verify`` recomputes it from that
snapshot alone. ``revalue_all`` is what cron runs: every active loan, valued now, at most
one new valuation a day per loan unless its figures moved, and a loan alert when a loan's
status worsens.
"""

import hashlib
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Engine, insert, select, update

from agri_common.times import parse_time
from agri_common.wording import Said, worded
from collateral import evidence, snapshot
from collateral.errors import Conflict, NotFound
from collateral.pledges import CarbonPledge, Herd, SolarPledge, check_pledges
from collateral.snapshot import ValuationInputs
from collateral.tables import loan_alerts, loans, valuations
from collateral.valuation import figures, value_loan

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def _principal(value: Decimal) -> str:
    if not value.is_finite() or value < 0 or value > Decimal("1e13"):
        raise ValueError("principal_cny must be a non-negative amount below 10^13")
    return str(value.quantize(Decimal("0.01")))


class LoanIn(BaseModel):
    """A loan as created: ``POST /v1/loans`` and ``agri loans create FILE.json``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "loan_id": "LN-2024-0001",
                    "borrower": "Wang Hui",
                    "branch": "ANXI-01",
                    "principal_cny": "1200000.00",
                    "parcel_ids": ["F-08", "T-04"],
                    "herds": [{"farm_id": "FARM-SOW", "categories": ["breeding_sow"]}],
                }
            ]
        },
    )

    loan_id: str = Field(pattern=ID_PATTERN)
    borrower: str = Field(min_length=1, max_length=200)
    branch: str = Field(pattern=ID_PATTERN)
    principal_cny: Decimal = Field(examples=["1200000.00"])
    parcel_ids: list[str] = Field(default_factory=list, max_length=10_000)
    herds: list[Herd] = Field(default_factory=list, max_length=1_000)
    carbon: list[CarbonPledge] = Field(default_factory=list, max_length=10_000)
    solar: list[SolarPledge] = Field(default_factory=list, max_length=1_000)
    term_months: int | None = Field(default=None, ge=1, le=480, description="for DSCR")
    annual_rate: Decimal | None = Field(
        default=None, ge=0, le=1, examples=["0.0435"], description="for DSCR"
    )

    @field_validator("principal_cny")
    @classmethod
    def _money(cls, value: Decimal) -> Decimal:
        return Decimal(_principal(value))


class LoanPatch(BaseModel):
    """``PATCH /v1/loans/{loan_id}``: the principal and the pledges; absent fields stay."""

    model_config = ConfigDict(extra="forbid")

    principal_cny: Decimal | None = Field(default=None, examples=["950000.00"])
    parcel_ids: list[str] | None = Field(default=None, max_length=10_000)
    herds: list[Herd] | None = Field(default=None, max_length=1_000)
    carbon: list[CarbonPledge] | None = Field(default=None, max_length=10_000)
    solar: list[SolarPledge] | None = Field(default=None, max_length=1_000)
    term_months: int | None = Field(default=None, ge=1, le=480)
    annual_rate: Decimal | None = Field(default=None, ge=0, le=1)
    borrower: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("principal_cny")
    @classmethod
    def _money(cls, value: Decimal | None) -> Decimal | None:
        return None if value is None else Decimal(_principal(value))


def _loan_row(row) -> dict:
    return _loan_row_of(dict(row._mapping))


def _loan_row_of(loan: dict) -> dict:
    loan["carbon"] = loan.get("carbon") or []  # loans from before revision 0011: none
    loan["solar"] = loan.get("solar") or []  # loans from before revision 0019: none
    return loan


def create_loan(engine: Engine, loan: LoanIn) -> dict:
    check_pledges(engine, loan.parcel_ids, loan.herds, loan.loan_id, loan.carbon, loan.solar)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        if conn.execute(select(loans.c.loan_id).where(loans.c.loan_id == loan.loan_id)).first():
            raise Conflict(f"loan {loan.loan_id!r} exists")
        conn.execute(
            insert(loans).values(
                loan_id=loan.loan_id,
                borrower=loan.borrower,
                branch=loan.branch,
                principal_cny=str(loan.principal_cny),
                parcel_ids=loan.parcel_ids,
                herds=[h.model_dump(exclude_none=True) for h in loan.herds],
                carbon=[c.model_dump(mode="json") for c in loan.carbon],
                solar=[s.model_dump(mode="json") for s in loan.solar],
                term_months=loan.term_months,
                annual_rate=None if loan.annual_rate is None else str(loan.annual_rate),
                state="active",
                created_at=now,
                updated_at=now,
            )
        )
    return get_loan(engine, loan.loan_id)


def get_loan(engine: Engine, loan_id: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(select(loans).where(loans.c.loan_id == loan_id)).first()
    if row is None:
        raise NotFound(Said("problem.not_found", what="loan", id=repr(loan_id)))
    return _loan_row(row)


def list_loans(engine: Engine, branch: str | None = None, active_only: bool = False) -> list[dict]:
    query = select(loans).order_by(loans.c.loan_id)
    if branch is not None:
        query = query.where(loans.c.branch == branch)
    if active_only:
        query = query.where(loans.c.state == "active")
    with engine.connect() as conn:
        return [_loan_row(r) for r in conn.execute(query)]


def update_loan(engine: Engine, loan_id: str, patch: LoanPatch) -> dict:
    loan = get_loan(engine, loan_id)
    changes = patch.model_dump(exclude_unset=True, exclude_none=True)
    herds = patch.herds if patch.herds is not None else [Herd(**h) for h in loan["herds"]]
    carbon = (
        patch.carbon
        if patch.carbon is not None
        else [CarbonPledge(**c) for c in loan.get("carbon") or []]
    )
    solar = patch.solar if patch.solar is not None else [SolarPledge(**s) for s in loan["solar"]]
    check_pledges(
        engine, changes.get("parcel_ids", loan["parcel_ids"]), herds, loan_id, carbon, solar
    )
    values = {"updated_at": datetime.now(UTC)}
    if patch.principal_cny is not None:
        values["principal_cny"] = str(patch.principal_cny)
    if patch.parcel_ids is not None:
        values["parcel_ids"] = patch.parcel_ids
    if patch.herds is not None:
        values["herds"] = [h.model_dump(exclude_none=True) for h in patch.herds]
    if patch.carbon is not None:
        values["carbon"] = [c.model_dump(mode="json") for c in patch.carbon]
    if patch.solar is not None:
        values["solar"] = [s.model_dump(mode="json") for s in patch.solar]
    if patch.term_months is not None:
        values["term_months"] = patch.term_months
    if patch.annual_rate is not None:
        values["annual_rate"] = str(patch.annual_rate)
    if patch.borrower is not None:
        values["borrower"] = patch.borrower
    with engine.begin() as conn:
        conn.execute(update(loans).where(loans.c.loan_id == loan_id).values(**values))
    return get_loan(engine, loan_id)


def close_loan(engine: Engine, loan_id: str) -> dict:
    """Loans are closed, never deleted: their valuations stay explainable."""
    get_loan(engine, loan_id)
    with engine.begin() as conn:
        conn.execute(
            update(loans)
            .where(loans.c.loan_id == loan_id)
            .values(state="closed", updated_at=datetime.now(UTC))
        )
    return get_loan(engine, loan_id)


# --- valuations -----------------------------------------------------------------------


def _previous_summary(valuation: dict | None) -> dict | None:
    if valuation is None:
        return None
    result = valuation["result"]
    return {
        "valuation_id": valuation["valuation_id"],
        "as_of": result["as_of"],
        "eligible_value_cny": result["eligible_value_cny"],
        "ltv": result["ltv"],
        "status": result["status"],
        "items": {i["ref"]: i["eligible_value_cny"] for i in result["items"]},
    }


def inputs_sha256(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def compute(engine: Engine, loan_id: str, as_of: datetime) -> tuple[dict, dict]:
    """(inputs, result) for a loan as of a time, previous valuation included; not stored."""
    loan = get_loan(engine, loan_id)
    previous = _previous_summary(latest_valuation(engine, loan_id, before=as_of))
    inputs = evidence.gather_inputs(engine, loan, as_of, previous)
    return inputs, value_loan(inputs)


def value_now(engine: Engine, loan_id: str, as_of: datetime | None = None) -> dict:
    """Value a loan (now, or as of a past time), store the valuation, return its document;
    pledged carbon that a disturbance reversed opens its loan alert."""
    inputs, result = compute(engine, loan_id, as_of or datetime.now(UTC))
    stored = store_valuation(engine, inputs, result)
    sync_carbon_alerts(engine, stored, datetime.now(UTC))
    return stored


def store_valuation(engine: Engine, inputs: ValuationInputs, result: dict) -> dict:
    """Store a valuation with its snapshot; a snapshot of another shape than the declared
    one (collateral.snapshot) is refused before anything is written."""
    snapshot.checked(inputs)
    valuation_id = f"VAL-{uuid.uuid4().hex[:20]}"
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(valuations).values(
                valuation_id=valuation_id,
                loan_id=result["loan_id"],
                as_of=parse_time(result["as_of"]),
                created_at=now,
                prices_version=result["prices_version"],
                policy_version=result["policy_version"],
                code_version=inputs["code_version"],
                inputs_sha256=inputs_sha256(inputs),
                inputs=inputs,
                result=result,
                eligible_value_cny=result["eligible_value_cny"],
                ltv=result["ltv"],
                status=result["status"],
                figures=figures(result),
            )
        )
    return document(valuation_id, result, now)


def document(valuation_id: str, result: dict, created_at: datetime) -> dict:
    """The API/CLI form: the valuation id first, then the result."""
    return {"valuation_id": valuation_id, "created_at": created_at.isoformat(), **result}


def stored_document(row: dict) -> dict:
    """A stored valuation row (``get_valuation``) in the API/CLI form, with the code
    version that made it."""
    return {
        **document(row["valuation_id"], row["result"], row["created_at"]),
        "code_version": row["code_version"],
    }


def _valuation_row(row) -> dict:
    return dict(row._mapping)


# Everything but the input snapshot (tens of kB of JSON): what listing and showing need.
WITHOUT_INPUTS = [c for c in valuations.c if c.name != "inputs"]


def get_valuation(engine: Engine, valuation_id: str, with_inputs: bool = True) -> dict:
    columns = valuations.c if with_inputs else WITHOUT_INPUTS
    with engine.connect() as conn:
        row = conn.execute(
            select(*columns).where(valuations.c.valuation_id == valuation_id)
        ).first()
    if row is None:
        raise NotFound(Said("problem.not_found", what="valuation", id=repr(valuation_id)))
    return _valuation_row(row)


def list_valuations(engine: Engine, loan_id: str) -> list[dict]:
    get_loan(engine, loan_id)
    query = (
        select(*WITHOUT_INPUTS)
        .where(valuations.c.loan_id == loan_id)
        .order_by(valuations.c.created_at, valuations.c.valuation_id)
    )
    with engine.connect() as conn:
        return [_valuation_row(r) for r in conn.execute(query)]


def latest_valuation(engine: Engine, loan_id: str, before: datetime | None = None) -> dict | None:
    """The most recently made valuation of the loan whose as_of is not after ``before``."""
    with engine.connect() as conn:
        row = conn.execute(_latest_valuation_query(loan_id, before)).first()
    return _valuation_row(row) if row else None


def _latest_valuation_query(loan_id: str, before: datetime | None = None):
    query = select(*WITHOUT_INPUTS).where(valuations.c.loan_id == loan_id)
    if before is not None:
        query = query.where(valuations.c.as_of <= before)
    return query.order_by(valuations.c.as_of.desc(), valuations.c.created_at.desc()).limit(1)


def verify(engine: Engine, valuation_id: str) -> dict:
    """Recompute a stored valuation from its own input snapshot; list any difference."""
    stored = get_valuation(engine, valuation_id)
    found = differences(stored["result"], value_loan(stored["inputs"]))
    return {
        "valuation_id": valuation_id,
        "identical": not found,
        "inputs_sha256_matches": inputs_sha256(stored["inputs"]) == stored["inputs_sha256"],
        "code_version_stored": stored["code_version"],
        "code_version_now": evidence.CODE_VERSION,
        "differences": found,
    }


def differences(stored: object, again: object, path: str = "") -> list[dict]:
    """Where a recomputed valuation document differs from the stored one: every value the
    stored document holds must come back the same, at any depth. A member the stored
    document lacks is not compared: later rules versions add words for the page (coded
    formulas and reasons), never figures the earlier document should have had."""
    if isinstance(stored, dict) and isinstance(again, dict):
        return [
            d
            for key in sorted(stored)
            for d in differences(
                stored[key], again.get(key, MISSING), f"{path}.{key}" if path else key
            )
        ]
    if isinstance(stored, list) and isinstance(again, list) and len(stored) == len(again):
        return [
            d
            for i, (a, b) in enumerate(zip(stored, again, strict=True))
            for d in differences(a, b, f"{path}[{i}]")
        ]
    if stored == again:
        return []
    shown = None if again is MISSING else again
    return [{"field": path, "stored": stored, "recomputed": shown}]


MISSING = object()  # a member the recomputation no longer has


FIGURES = ("items", "collateral_value_cny", "eligible_value_cny", "ltv", "status")


def revalue_all(engine: Engine, now: datetime | None = None) -> list[dict]:
    """Value every active loan now. A loan whose latest valuation was made the same UTC
    day with the same figures gets no new one (cron may run as often as it likes); a
    status that worsened opens a loan alert, one that recovered to ok closes it."""
    now = now or datetime.now(UTC)
    out = []
    for loan in list_loans(engine, active_only=True):
        try:
            inputs, result = compute(engine, loan["loan_id"], now)
        except Exception as exc:  # one loan's missing table row must not stop the rest
            out.append({"loan_id": loan["loan_id"], "outcome": "failed", "error": str(exc)})
            continue
        latest = latest_valuation(engine, loan["loan_id"])
        if (
            latest is not None
            and latest["as_of"].date() == now.date()
            and all(latest["result"].get(k) == result.get(k) for k in FIGURES)
        ):
            out.append(
                {
                    "loan_id": loan["loan_id"],
                    "outcome": "unchanged",
                    "valuation_id": latest["valuation_id"],
                    "status": result["status"],
                }
            )
            continue
        try:
            stored = store_valuation(engine, inputs, result)
        except Exception as exc:  # nothing was written for this loan; the rest go on
            out.append({"loan_id": loan["loan_id"], "outcome": "failed", "error": str(exc)})
            continue
        _sync_loan_alert(engine, stored, now)
        out.append(
            {
                "loan_id": loan["loan_id"],
                "outcome": "valued",
                "valuation_id": stored["valuation_id"],
                "status": result["status"],
                "status_worsened": bool((result["changes"] or {}).get("status_worsened")),
            }
        )
    return out


def carbon_reversals(valuation: dict) -> list[tuple[str, str]]:
    """(parcel id, alert detail) for each carbon-pledged parcel whose carbon an open
    disturbance has reversed."""
    out = []
    for item in valuation["items"]:
        account = item["evidence"].get("carbon") if item["kind"] == "carbon_sink" else None
        if account and Decimal(account["reversed_t_co2e"]) > 0:
            out.append(
                (
                    item["ref"],
                    Said(
                        "alert.carbon_reversed",
                        parcel=item["ref"],
                        t_co2e=account["reversed_t_co2e"],
                        ha=account["disturbed_ha"],
                    ),
                )
            )
    return out


def sync_carbon_alerts(engine: Engine, valuation: dict, now: datetime) -> None:
    """Open a carbon_reversed loan alert for each carbon-pledged parcel whose carbon a
    disturbance reversed (once per parcel while open)."""
    reversals = carbon_reversals(valuation)
    if not reversals:
        return
    with engine.begin() as conn:
        # the parcel an open alert is about: its params; an alert stored before alerts had
        # params (revision 0013) names it at the start of its English detail
        open_parcels = {
            (r.params or {}).get("parcel") or r.detail.removeprefix("parcel ").split(":")[0]
            for r in conn.execute(
                select(loan_alerts.c.detail, loan_alerts.c.params).where(
                    loan_alerts.c.loan_id == valuation["loan_id"],
                    loan_alerts.c.kind == "carbon_reversed",
                    loan_alerts.c.closed_at.is_(None),
                )
            )
        }
        for parcel_id, detail in reversals:
            if parcel_id not in open_parcels:
                conn.execute(
                    insert(loan_alerts).values(
                        loan_id=valuation["loan_id"],
                        kind="carbon_reversed",
                        valuation_id=valuation["valuation_id"],
                        opened_at=now,
                        **worded(detail),
                    )
                )


def _sync_loan_alert(engine: Engine, valuation: dict, now: datetime) -> None:
    sync_carbon_alerts(engine, valuation, now)
    changes = valuation["changes"]
    with engine.begin() as conn:
        if changes and changes["status_worsened"]:
            detail = Said(
                "alert.status_worsened",
                from_status=changes["status"]["from"],
                to_status=changes["status"]["to"],
                from_ltv=changes["ltv"]["from"],
                to_ltv=changes["ltv"]["to"],
            )
            conn.execute(
                insert(loan_alerts).values(
                    loan_id=valuation["loan_id"],
                    kind="status_worsened",
                    valuation_id=valuation["valuation_id"],
                    opened_at=now,
                    **worded(detail),
                )
            )
        elif valuation["status"] == "ok":
            conn.execute(
                update(loan_alerts)
                .where(
                    loan_alerts.c.loan_id == valuation["loan_id"],
                    loan_alerts.c.kind == "status_worsened",
                    loan_alerts.c.closed_at.is_(None),
                )
                .values(closed_at=now)
            )


def list_loan_alerts(engine: Engine, loan_ids: list[str] | None = None) -> list[dict]:
    query = select(loan_alerts).order_by(loan_alerts.c.opened_at, loan_alerts.c.id)
    if loan_ids is not None:
        query = query.where(loan_alerts.c.loan_id.in_(loan_ids))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
