"""The demo's rooftop plants with a fortnight of simulated readings, stored as a vendor
export's are (no broker), their days processed, and the demo's loan on two of them
valued: the officer's page and API tests read a solar loan like any other."""

import json
from datetime import datetime, timedelta

from bioassets import store as bio_store
from collateral import loans, prices, solar_demo
from solar import daily, payloads, plants, simulator


def add_plants_and_loan(engine, now: datetime, days: int = 14) -> dict:
    """Returns the loan as created."""
    registered = plants.parse_plants(
        solar_demo.FLEET / "plants.csv", set(bio_store.farm_ids(engine))
    )
    assert registered.errors == [], registered.errors
    plants.upsert_plants(engine, registered.records)
    last = daily.yesterday(now)
    records = sorted(registered.records, key=lambda p: p["plant_id"])
    fleet = simulator.fleet(records, last - timedelta(days=days - 1), last, {})
    farm_of = {p["plant_id"]: p["farm_id"] for p in records}
    rows = []
    for line in fleet.lines:
        value = payloads.READINGS.check(json.loads(line), now)
        rows.append(
            payloads.reading_row(value, farm_of[value["plant_id"]], "import", "import", now)
        )
    with engine.begin() as conn:
        payloads.store_readings(conn, rows)
    daily.run(engine, last, now)
    for path in prices.default_tables():
        prices.import_file(engine, path)
    spec = json.loads((solar_demo.FLEET / "demo.json").read_text(encoding="utf-8"))["loan"]
    loan = loans.create_loan(engine, loans.LoanIn.model_validate(spec))
    loans.value_now(engine, loan["loan_id"], now)
    return loan
