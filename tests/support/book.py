"""A loan book of any size for the read benchmarks and their tests: the sample world with the
two demo loans valued for real, then ``n_loans`` more loans of ``per_branch`` each over
branches BOOK-00, BOOK-01, ..., each pledging a parcel of its own (a one-hectare square on a
grid near Anxi, tea and forest in turn) and holding one valuation copied from a real one.
Every tenth loan has an open status alert and every twenty-fifth parcel an open disturbance,
so that the portfolio's alert figures have something to gather.

Bulk inserts through the package's tables: a 10,000-loan book takes seconds, where creating
each loan through ``loans.create_loan`` (which checks every pledge against every active
loan) would take the benchmark's whole budget.
"""

import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert, select

from collateral import loans
from collateral.tables import loan_alerts, valuations
from collateral.tables import loans as loan_rows
from remote_sensing.tables import parcel_events, parcels
from tests.support.paths import SAMPLE_TILES

ATTRIBUTES = {  # as the sample parcels carry them (sample_tiles/parcels.geojson)
    "tea_garden": {"variety": "Tieguanyin", "planted_year": 2010},
    "forest": {
        "species_group": "chinese_fir",
        "age_class": "middle",
        "stand_volume_m3_per_ha": 150,
    },
}
STEP_DEG = 0.002  # grid spacing: squares of ~0.0009 deg (~100 m) never touch


def branch_of(n: int, per_branch: int) -> str:
    return f"BOOK-{n // per_branch:02d}"


def parcel_of(n: int) -> str:
    return f"BK-{n:05d}"


def loan_of(n: int) -> str:
    return f"LN-BK-{n:05d}"


def _square(n: int) -> dict:
    lon = 117.6 + (n % 200) * STEP_DEG
    lat = 24.9 + (n // 200) * STEP_DEG
    side = 0.0009
    ring = [[lon, lat], [lon + side, lat], [lon + side, lat + side], [lon, lat + side]]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def loan_row(n: int, parcel_ids: list[str], per_branch: int, now: datetime) -> dict:
    """Loan ``n`` of the book as stored, pledging ``parcel_ids``."""
    return {
        "loan_id": loan_of(n),
        "borrower": f"Borrower {n}",
        "branch": branch_of(n, per_branch),
        "principal_cny": f"{100000 + 37 * n}.00",
        "parcel_ids": parcel_ids,
        "herds": [],
        "carbon": [],
        "state": "active",
        "created_at": now,
        "updated_at": now,
    }


def value_demo_loans(engine: Engine) -> list[dict]:
    """The demo loans created and valued for real; their stored valuation rows."""
    demo = json.loads((SAMPLE_TILES / "loans" / "demo-loans.json").read_text())
    for entry in demo:
        loans.create_loan(engine, loans.LoanIn.model_validate(entry))
        loans.value_now(engine, entry["loan_id"])
    with engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(select(valuations))]


def add_book(
    engine: Engine,
    n_loans: int,
    per_branch: int,
    templates: list[dict],
    first: int = 0,
    history: int = 1,
) -> None:
    """Loans ``first`` .. ``first + n_loans - 1``, each with its parcel and ``history``
    valuations a day apart copied from ``templates`` (stored valuation rows): the latest
    from template ``n % len(templates)``, the older ones from the next template, so that
    a read that takes the wrong one shows it. Inserted in batches."""
    now = datetime.now(UTC)
    batch = 2000
    for start in range(first, first + n_loans, batch):
        numbers = range(start, min(start + batch, first + n_loans))
        parcel_rows, loan_list, valuation_rows, alert_rows, event_rows = [], [], [], [], []
        for n in numbers:
            kind = "tea_garden" if n % 2 == 0 else "forest"
            parcel_rows.append(
                {
                    "parcel_id": parcel_of(n),
                    "kind": kind,
                    "owner": f"Borrower {n}",
                    "attributes": ATTRIBUTES[kind],
                    "geometry_geojson": json.dumps(_square(n)),
                    "area_ha": 0.93,
                    "updated_at": now,
                }
            )
            loan_list.append(loan_row(n, [parcel_of(n)], per_branch, now))
            for age in range(history - 1, -1, -1):
                template = templates[(n + (age > 0)) % len(templates)]
                valuation_id = f"VAL-{uuid.uuid4().hex[:20]}"
                valuation_rows.append(
                    {
                        **template,
                        "valuation_id": valuation_id,
                        "loan_id": loan_of(n),
                        "as_of": template["as_of"] - timedelta(days=age),
                        "created_at": template["created_at"] - timedelta(days=age),
                        "result": {**template["result"], "loan_id": loan_of(n)},
                    }
                )
            if n % 10 == 0:
                alert_rows.append(
                    {
                        "loan_id": loan_of(n),
                        "kind": "status_worsened",
                        "valuation_id": valuation_id,
                        "opened_at": now - timedelta(days=n % 30),
                        "closed_at": None,
                        "detail": "status worsened from OK to WATCH",
                        "code": None,
                        "params": None,
                    }
                )
            if n % 25 == 0:
                event_rows.append(
                    {
                        "parcel_id": parcel_of(n),
                        "kind": "disturbance",
                        "start": now - timedelta(days=40),
                        "end": None,
                        "confirmed_at": now - timedelta(days=30),
                        "severity": 0.4,
                        "affected_ha": 0.5,
                        "state": "open",
                        "updated_at": now,
                    }
                )
        with engine.begin() as c:
            c.execute(insert(parcels), parcel_rows)
            c.execute(insert(loan_rows), loan_list)
            c.execute(insert(valuations), valuation_rows)
            if alert_rows:
                c.execute(insert(loan_alerts), alert_rows)
            if event_rows:
                c.execute(insert(parcel_events), event_rows)
