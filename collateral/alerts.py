"""Every alert an officer reads, from its sources, in one list: a farm's device alerts
(livestock's and solar plants', by farm), parcel disturbances (by parcel) and loan status
alerts (by loan).

A read: the alert rules run where the data arrives (the ingester's writer, after each
batch) and from cron (`agri alerts evaluate`, for what silence alone reveals: a gateway
gone offline, a tag not heard from), never when someone looks.
"""

from typing import Literal, TypedDict

from sqlalchemy import Engine

from agri_common.rows import jsonable
from agri_common.wording import Said, worded
from collateral import loans
from remote_sensing import store as rs_store
from solar.alerts import KINDS as SOLAR_KINDS
from telemetry import farm_alerts


class Scope(TypedDict):
    """What to list; None: every one (of farms, parcels; of loans: every one the caller
    may see, named by ``branch`` None for every branch)."""

    farms: set[str] | None
    parcels: set[str] | None
    loan_ids: set[str] | None
    branch: str | None


def alert_list(
    engine: Engine, scope: Scope, state: Literal["open", "closed", "all"] = "open"
) -> list[dict]:
    """The alerts in ``scope`` in ``state``, oldest first, as the API sends them."""
    out = []
    for a in farm_alerts.list_alerts(engine, open_only=state == "open"):
        if scope["farms"] is None or a["farm_id"] in scope["farms"]:
            out.append(
                {
                    "source": "solar" if a["kind"] in SOLAR_KINDS else "livestock",
                    "kind": a["kind"],
                    "farm_id": a["farm_id"],
                    "subject": a["subject"],
                    "opened_at": a["opened_at"],
                    "closed_at": a["closed_at"],
                    "detail": a["detail"],
                    "code": a["code"],
                    "params": a["params"],
                }
            )
    for e in rs_store.stored_events(engine, state="open" if state == "open" else None):
        if scope["parcels"] is None or e["parcel_id"] in scope["parcels"]:
            out.append(_parcel_alert(e))
    loan_ids = scope["loan_ids"]
    if loan_ids is None:
        visible = loans.list_loans(engine, scope["branch"])
        loan_ids = {loan["loan_id"] for loan in visible}
    for a in loans.list_loan_alerts(engine, sorted(loan_ids)):
        out.append(
            {
                "source": "loan",
                "kind": a["kind"],
                "loan_id": a["loan_id"],
                "subject": a["loan_id"],
                "opened_at": a["opened_at"],
                "closed_at": a["closed_at"],
                "detail": a["detail"],
                "code": a["code"],
                "params": a["params"],
            }
        )
    if state != "all":
        out = [a for a in out if (a["closed_at"] is None) == (state == "open")]
    return [jsonable(a) for a in sorted(out, key=lambda a: a["opened_at"])]


def _parcel_alert(event: dict) -> dict:
    facts = {
        "kind": event["kind"],
        "since": event["start"].date(),
        "severity": f"{event['severity']:.0%}",
    }
    if event["affected_ha"] is None:
        detail = Said("alert.parcel_event", **facts)
    else:
        detail = Said("alert.parcel_event_ha", **facts, ha=f"{event['affected_ha']:.2f}")
    return {
        "source": "parcel",
        "kind": event["kind"],
        "parcel_id": event["parcel_id"],
        "subject": event["parcel_id"],
        "opened_at": event["confirmed_at"],
        "closed_at": event["end"],
        **worded(detail),
    }
