"""A branch's portfolio at a glance, each figure with the loans behind it.

Read from each active loan's latest valuation (what the officer would defend: its stored
figures, valuation.Figures, not its document), the open loan alerts, the pledged herds'
and rooftop plants' open alerts and the pledged parcels' open disturbances.
Pure aggregation in ``summarise``; ``branch_portfolio`` gathers.
"""

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine

from collateral import book
from collateral.pledges import pledged_parcel_ids
from remote_sensing import store as rs_store
from solar.alerts import KINDS as SOLAR_ALERTS
from telemetry import farm_alerts

# LTV bands as the policy's thresholds draw them (watch 0.70, margin call 0.85 by default)
LTV_BANDS = (
    ("< 0.50", Decimal("0.5")),
    ("0.50-0.70", Decimal("0.7")),
    ("0.70-0.85", Decimal("0.85")),
)


def branch_portfolio(engine: Engine, branch: str | None, now: datetime) -> dict:
    """The portfolio of ``branch`` (None: every branch) at ``now``: four queries whatever
    the size of the book (the loans with their latest valuations' figures, and the open
    alerts of loans, farms and parcels), then one pass over what they return."""
    rows = book.loans_with_latest(engine, branch, True, book.PORTFOLIO_LOAN, book.PORTFOLIO_LATEST)
    active = [loan for loan, _ in rows]
    latest = {loan["loan_id"]: valuation for loan, valuation in rows}
    farm_loans = defaultdict(set)
    parcel_loans = defaultdict(set)
    plant_loans = defaultdict(set)
    for x in active:
        for herd in x["herds"]:
            farm_loans[herd["farm_id"]].add(x["loan_id"])
        for pledge in x["solar"] or []:  # loans from before revision 0019: None
            plant_loans[pledge["plant_id"]].add(x["loan_id"])
        for pid in pledged_parcel_ids(x):
            parcel_loans[pid].add(x["loan_id"])
    alerts = [
        {"kind": a["kind"], "opened_at": a["opened_at"], "loan_ids": [a["loan_id"]]}
        for a in book.open_loan_alerts(engine, branch)
    ]
    for a in farm_alerts.list_alerts(engine, open_only=True):
        # a plant's alert concerns the loans that pledge the plant, a herd's the farm's
        held = (
            plant_loans.get(a["subject"])
            if a["kind"] in SOLAR_ALERTS
            else farm_loans.get(a["farm_id"])
        )
        if held:
            alerts.append(
                {"kind": a["kind"], "opened_at": a["opened_at"], "loan_ids": sorted(held)}
            )
    for e in rs_store.stored_events(engine, state="open"):
        if e["parcel_id"] in parcel_loans:
            alerts.append(
                {
                    "kind": "disturbance",
                    "opened_at": e["confirmed_at"],
                    "loan_ids": sorted(parcel_loans[e["parcel_id"]]),
                }
            )
    return summarise(branch, active, latest, alerts, now)


def summarise(branch, active: list[dict], latest: dict, alerts: list[dict], now: datetime) -> dict:
    by_status: dict[str, list[str]] = defaultdict(list)
    bands: dict[str, list[str]] = {label: [] for label, _ in LTV_BANDS} | {">= 0.85": [], "n/a": []}
    principal = eligible = collateral = carbon = Decimal(0)
    hectares: dict[str, Decimal] = defaultdict(Decimal)
    hectare_loans: dict[str, set] = defaultdict(set)
    headcount: dict[str, int] = defaultdict(int)
    solar = {"kwp": Decimal(0), "energy_30d_kwh": Decimal(0), "expected_30d_kwh": Decimal(0)}
    solar_loans: list[str] = []
    cover_under_1: list[str] = []
    for x in active:
        principal += Decimal(x["principal_cny"])
        v = latest[x["loan_id"]]
        if v is None:
            by_status["not_valued"].append(x["loan_id"])
            bands["n/a"].append(x["loan_id"])
            continue
        by_status[v["status"]].append(x["loan_id"])
        eligible += Decimal(v["eligible_value_cny"])
        totals = v["figures"]
        collateral += Decimal(totals["collateral_value_cny"])
        ltv = Decimal(v["ltv"]) if v["ltv"] else None
        band = (
            "n/a"
            if ltv is None
            else next((label for label, top in LTV_BANDS if ltv < top), ">= 0.85")
        )
        bands[band].append(x["loan_id"])
        for kind, ha in totals["ha"].items():
            hectares[kind] += Decimal(ha)
            hectare_loans[kind].add(x["loan_id"])
        carbon += Decimal(totals["carbon_t_co2e"])
        for category, count in totals["headcount"].items():
            headcount[category] += count
        if "solar_kwp" in totals:
            solar_loans.append(x["loan_id"])
            solar["kwp"] += Decimal(totals["solar_kwp"])
            for key in ("energy_30d_kwh", "expected_30d_kwh"):
                solar[key] += Decimal(totals.get(f"solar_{key}", "0"))
            if totals.get("dscr_p90") is not None and Decimal(totals["dscr_p90"]) < 1:
                cover_under_1.append(x["loan_id"])
    kinds: dict[str, dict] = {}
    for a in alerts:
        entry = kinds.setdefault(a["kind"], {"count": 0, "oldest_days": 0, "loan_ids": set()})
        entry["count"] += 1
        entry["oldest_days"] = max(entry["oldest_days"], (now - a["opened_at"]).days)
        entry["loan_ids"].update(a["loan_ids"])
    return {
        "branch": branch,
        "as_of": now.isoformat(),
        "loans": len(active),
        "principal_cny": str(principal),
        "collateral_value_cny": str(collateral),
        "eligible_value_cny": str(eligible),
        "ltv": str((principal / eligible).quantize(Decimal("0.0001"))) if eligible else None,
        "by_status": {k: {"count": len(v), "loan_ids": v} for k, v in sorted(by_status.items())},
        "ltv_bands": {k: {"count": len(v), "loan_ids": v} for k, v in bands.items()},
        "open_alerts": {
            k: {**v, "loan_ids": sorted(v["loan_ids"])} for k, v in sorted(kinds.items())
        },
        "pledged_ha": {
            k: {"ha": str(v), "loan_ids": sorted(hectare_loans[k])}
            for k, v in sorted(hectares.items())
        },
        "verified_headcount": dict(sorted(headcount.items())),
        "pledged_carbon_t_co2e": str(carbon),
        "pledged_solar": {
            **{k: str(v) for k, v in solar.items()},
            "loan_ids": solar_loans,
            "dscr_p90_under_1": {"count": len(cover_under_1), "loan_ids": cover_under_1},
        },
    }
