"""What an officer may be told about: the alerts of every source, as one kind of notice.

A notice has a stable key (its source row), a kind an officer subscribes to, the branches
whose collateral it concerns, a title and a detail, and the time it was recorded. Sources:
loan alerts (status worsened, pledged carbon reversed), a disturbance confirmed on a
parcel pledged to an active loan, a farm's headcount drop or gateway offline when its
herd is pledged, a rooftop plant's alert (offline, underperforming, inverter changed...)
when the plant is pledged, and a claim's verdict. Only queries here; delivery is notify.py's.
"""

from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import Engine, select

from agri_common.wording import LOCALES, text, translate
from collateral.claim_report import claim_words
from collateral.pledges import pledged_parcel_ids
from collateral.tables import claims, loan_alerts, loans
from remote_sensing import store as rs_store
from solar import alerts as solar_alerts
from solar import plants as solar_plants
from telemetry import farm_alerts

KINDS = (
    "loan_status_worsened",
    "carbon_reversed",
    "disturbance",
    "headcount_drop",
    "gateway_offline",
    "solar_alert",
    "claim_verdict",
)
LOAN_ALERT_KINDS = {"status_worsened": "loan_status_worsened", "carbon_reversed": "carbon_reversed"}
FARM_ALERT_KINDS = ("headcount_drop", "gateway_offline")


def notices_since(engine: Engine, since: datetime) -> list[dict]:
    """Every notice recorded at or after ``since``, oldest first."""
    with engine.connect() as conn:
        active = [
            dict(r._mapping) for r in conn.execute(select(loans).where(loans.c.state == "active"))
        ]
        parcel_branches: dict[str, set[str]] = {}
        farm_branches: dict[str, set[str]] = {}
        plant_branches: dict[str, set[str]] = {}
        for loan in active:
            for pledge in loan["solar"] or []:  # loans from before revision 0019: None
                plant_branches.setdefault(pledge["plant_id"], set()).add(loan["branch"])
            for pid in pledged_parcel_ids(loan):
                parcel_branches.setdefault(pid, set()).add(loan["branch"])
            for herd in loan["herds"]:
                farm_branches.setdefault(herd["farm_id"], set()).add(loan["branch"])
        out = []
        rows = conn.execute(
            select(loan_alerts, loans.c.branch, loans.c.borrower)
            .join(loans, loans.c.loan_id == loan_alerts.c.loan_id)
            .where(loan_alerts.c.opened_at >= since)
        )
        for r in rows:
            out.append(
                _notice(
                    f"loan_alert:{r.id}",
                    LOAN_ALERT_KINDS.get(r.kind, r.kind),
                    [r.branch],
                    ("notice.loan", {"loan": r.loan_id, "borrower": r.borrower, "kind": r.kind}),
                    _coded(r.detail, r.code, r.params),
                    r.opened_at,
                    {"loan_id": r.loan_id},
                )
            )
    for e in rs_store.stored_events(engine):  # the parcels' own store: few rows a portfolio
        if e["updated_at"] >= since and e["parcel_id"] in parcel_branches:
            r = SimpleNamespace(**e)
            facts = {"severity": f"{r.severity:.0%}", "confirmed": f"{r.confirmed_at:%Y-%m-%d}"}
            if r.affected_ha is None:
                detail = ("notice.parcel_detail_unknown", facts)
            else:
                detail = ("notice.parcel_detail", {**facts, "ha": f"{r.affected_ha:.2f}"})
            out.append(
                _notice(
                    f"parcel_event:{r.id}",
                    "disturbance",
                    sorted(parcel_branches[r.parcel_id]),
                    (
                        "notice.parcel",
                        {"parcel": r.parcel_id, "kind": r.kind, "since": f"{r.start:%Y-%m-%d}"},
                    ),
                    detail,
                    r.updated_at,
                    {"parcel_id": r.parcel_id},
                )
            )
    for farm_id in sorted(farm_branches):
        for a in farm_alerts.list_alerts(engine, farm_id):
            if a["opened_at"] < since or a["kind"] not in FARM_ALERT_KINDS:
                continue
            r = SimpleNamespace(**a)
            out.append(
                _notice(
                    f"farm_alert:{r.id}",
                    r.kind,
                    sorted(farm_branches[r.farm_id]),
                    ("notice.farm", {"farm": r.farm_id, "kind": r.kind, "subject": r.subject}),
                    _coded(r.detail, r.code, r.params),
                    r.opened_at,
                    {"farm_id": r.farm_id},
                )
            )
    plant_farms = solar_plants.plant_farms(engine) if plant_branches else {}
    for farm_id in sorted({plant_farms[p] for p in plant_branches if p in plant_farms}):
        for a in farm_alerts.list_alerts(engine, farm_id):
            if (
                a["opened_at"] < since
                or a["kind"] not in solar_alerts.KINDS
                or a["subject"] not in plant_branches
            ):
                continue
            r = SimpleNamespace(**a)
            out.append(
                _notice(
                    f"farm_alert:{r.id}",
                    "solar_alert",
                    sorted(plant_branches[r.subject]),
                    ("notice.plant", {"plant": r.subject, "farm": r.farm_id, "kind": r.kind}),
                    _coded(r.detail, r.code, r.params),
                    r.opened_at,
                    {"farm_id": r.farm_id, "plant_id": r.subject},
                )
            )
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                claims.c.claim_id,
                claims.c.branch,
                claims.c.kind,
                claims.c.owner,
                claims.c.verdict,
                claims.c.report,
                claims.c.created_at,
            ).where(claims.c.created_at >= since, claims.c.branch.is_not(None))
        )
        for r in rows:
            out.append(
                _notice(
                    f"claim:{r.claim_id}",
                    "claim_verdict",
                    [r.branch],
                    (
                        "notice.claim",
                        {
                            "claim": r.claim_id,
                            "owner": r.owner or "-",
                            "kind": r.kind,
                            "verdict": r.verdict,
                        },
                    ),
                    {loc: claim_words(r.report, loc)["summary"] for loc in LOCALES},
                    r.created_at,
                    {"claim_id": r.claim_id},
                )
            )
    return sorted(out, key=lambda n: (n["at"], n["key"]))


def _coded(detail: str, code: str | None, params: dict | None) -> dict[str, str]:
    """A stored alert detail in each language (as stored where it has no code)."""
    form = {"code": code, "params": params} if code else None
    return {loc: translate(detail, form, loc) for loc in LOCALES}


def _notice(key, kind, branches, title, detail, at: datetime, refs: dict) -> dict:
    """A notice worded in every language (``words``); ``title`` and ``detail`` are the
    English, as webhook receivers had them before there was a choice.

    ``title`` is (catalogue code, parameters); ``detail`` the same or the texts per
    language already made."""
    code, params = title
    titles = {loc: text(code, loc, **params) for loc in LOCALES}
    if isinstance(detail, tuple):
        details = {loc: text(detail[0], loc, **detail[1]) for loc in LOCALES}
    else:
        details = detail
    return {
        "key": key,
        "kind": kind,
        "branches": branches,
        "title": titles["en"],
        "detail": details["en"],
        "words": {loc: {"title": titles[loc], "detail": details[loc]} for loc in LOCALES},
        "at": at.isoformat(),
        **refs,
    }
