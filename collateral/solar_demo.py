"""The rooftop solar part of `make demo`: the farmers' plants registered from their own list,
a month of 5-minute inverter readings published by each farm's gateway agent through a
private Mosquitto to a real ingester, the grid company's statement imported, the daily
job and its alerts (run twice: the morning a logger has been silent for three days, then
today), and a loan that pledges two plants valued with its debt-service cover.
Functions return data; the CLI prints it.
"""

import csv
import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import median

from sqlalchemy import Engine

from bioassets import store as bio_store
from collateral import domains, errors, loans, prices, solar_policy
from collateral.demo import SAMPLE, private_transport, register_sample_farms
from collateral.settings import Settings
from solar import alerts, daily, plants, settlements, simulator
from telemetry import farm_alerts, gateways
from telemetry.gateway_agent import LINES_PER_ROUND, GatewayAgent, Outbox
from telemetry.ingester import IngestStats
from telemetry.mqtt_connection import parse_mqtt_url

FLEET = SAMPLE / "solar"
DRAIN_S = 120.0  # how long the agents wait, at most, for the ingester's last acks


@dataclass
class SolarDemo:
    first: date
    last: date
    readings_sent: int
    ingested: IngestStats
    unacknowledged: int
    settled_month: date
    silent_morning: date  # the morning after the silent logger's third day
    alerts_then: list[dict]  # open solar alerts that morning
    alerts_now: list[dict]  # open solar alerts today
    closed: list[dict]  # solar alerts opened and closed in between
    silent_days: list[dict]  # the silent logger's days, as the daily job now labels them
    plants: list[dict]  # per plant: kwp, last 30 days' energy and expected, peers, PR, flags
    loan: dict
    valuation: dict


def _scenario() -> tuple[dict[str, simulator.Fault], dict]:
    spec = json.loads((FLEET / "demo.json").read_text(encoding="utf-8"))
    faults = {pid: simulator.Fault(**f) for pid, f in spec["faults"].items()}
    return faults, spec["loan"]


def _publish(engine: Engine, lines: list[str], passwords: dict[str, str], url: str) -> int:
    """Every farm's lines through its gateway agent (outbox, QoS 1, kept until the
    ingester's commit ack); returns the messages still unacknowledged at the end."""
    farm_of = plants.plant_farms(engine)
    per_farm: dict[str, list[str]] = {}
    for line in lines:
        per_farm.setdefault(farm_of[json.loads(line)["plant_id"]], []).append(line)
    gateway_of = {g["farm_id"]: g["gateway_id"] for g in gateways.all_gateways(engine)}
    address = parse_mqtt_url(url)
    with tempfile.TemporaryDirectory(prefix="agri-solar-agents-") as folder:
        agents = []
        for farm_id, farm_lines in per_farm.items():
            gateway_id = gateway_of[farm_id]
            agent = GatewayAgent(
                Outbox(Path(folder) / f"{gateway_id}.db"),
                dataclasses.replace(address, username=gateway_id, password=passwords[gateway_id]),
                farm_id,
                gateway_id,
                schemas=domains.agent_schemas(),
            )
            agent.start()
            agent.wait_connected(10)
            agents.append((agent, farm_lines))
        try:
            for agent, farm_lines in agents:
                for start in range(0, len(farm_lines), LINES_PER_ROUND):
                    agent.take_lines(farm_lines[start : start + LINES_PER_ROUND])
                    agent.pump()
            deadline = time.monotonic() + DRAIN_S
            while not all(a.drained() for a, _ in agents) and time.monotonic() < deadline:
                if not sum(a.pump() for a, _ in agents):
                    time.sleep(0.02)
            return sum(a.outbox.depth() for a, _ in agents)
        finally:
            for agent, _ in agents:
                agent.stop()
                agent.outbox.close()


def _alerts(engine: Engine) -> list[dict]:
    return [a for a in farm_alerts.list_alerts(engine) if a["kind"] in alerts.KINDS]


def _judge(engine: Engine, through: date, at: datetime) -> None:
    """The daily job's cron run on the morning after ``through``."""
    daily.run(engine, through, at)
    alerts.evaluate(engine, through, solar_policy.thresholds(engine, through), at)


def _plant_rows(engine: Engine, through: date) -> list[dict]:
    out = []
    for plant in plants.list_plants(engine):
        days = [d for d in daily.plant_days(engine, plant["plant_id"]) if d["day"] <= through]
        recent = days[-30:]
        ratios = [d["peer_ratio"] for d in recent if d["peer_ratio"] is not None]
        energy = sum(d["energy_kwh"] or 0.0 for d in recent)
        insolation = sum(d["insolation_kwh_m2"] or 0.0 for d in recent if d["energy_kwh"])
        out.append(
            {
                "plant_id": plant["plant_id"],
                "farm_id": plant["farm_id"],
                "kwp": plant["kwp"],
                "energy_30d_kwh": energy,
                "expected_30d_kwh": sum(d["expected_kwh"] or 0.0 for d in recent),
                "peer_ratio": median(ratios) if ratios else None,
                "performance_ratio": energy / (plant["kwp"] * insolation) if insolation else None,
                "flags": sorted({f for d in recent for f in d["flags"]}),
            }
        )
    return out


def run_solar(engine: Engine, settings: Settings, now: datetime) -> SolarDemo:
    """The whole solar demo at ``now``: the period is the previous calendar month and this
    one up to yesterday (a statement covers a whole month)."""
    passwords = register_sample_farms(engine)
    registered = plants.parse_plants(FLEET / "plants.csv", set(bio_store.farm_ids(engine)))
    if registered.errors:
        raise ValueError("; ".join(registered.errors))
    plants.upsert_plants(engine, registered.records)
    faults, loan_spec = _scenario()
    last = daily.yesterday(now)
    settled = (last.replace(day=1) - timedelta(days=1)).replace(day=1)
    records = sorted(registered.records, key=lambda p: p["plant_id"])
    fleet = simulator.fleet(records, settled, last, faults)

    with private_transport(engine, settings, "agri-demo-solar") as (broker, worker):
        left = _publish(engine, fleet.lines, passwords, broker.url())

    for path in prices.default_tables():
        prices.import_file(engine, path)
    price = solar_policy.tariff(engine, records[0]["tariff"], last)
    statement = Path(settings.data_dir) / "solar" / f"statement-{settled:%Y-%m}.csv"
    statement.parent.mkdir(parents=True, exist_ok=True)
    with statement.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(settlements.COLUMNS))
        writer.writeheader()
        writer.writerows(simulator.settlements(fleet, records, settled, faults, price))
    parsed = settlements.parse(statement, {p["plant_id"] for p in records})
    settlements.store(engine, parsed.records)

    silent = next(f for f in faults.values() if f.kind == "comms_gap")
    days = [settled + timedelta(days=k) for k in range((last - settled).days + 1)]
    morning_of = days[silent.day] + timedelta(days=silent.days - 1)
    morning = datetime.combine(morning_of + timedelta(days=1), datetime.min.time(), UTC)
    _judge(engine, morning_of, morning)
    then = [a for a in _alerts(engine) if a["closed_at"] is None]
    _judge(engine, last, now)
    everything = _alerts(engine)
    loan = _demo_loan(engine, loan_spec)
    return SolarDemo(
        first=settled,
        last=last,
        readings_sent=len(fleet.lines),
        ingested=worker.stats,
        unacknowledged=left,
        settled_month=settled,
        silent_morning=morning_of + timedelta(days=1),
        alerts_then=then,
        alerts_now=[a for a in everything if a["closed_at"] is None],
        closed=[a for a in everything if a["closed_at"] is not None],
        silent_days=[
            d
            for pid, f in faults.items()
            if f.kind == "comms_gap"
            for d in daily.plant_days(engine, pid)
            if {"no_data", "catch_up"} & set(d["flags"])
        ],
        plants=_plant_rows(engine, last),
        loan=loan,
        valuation=loans.value_now(engine, loan["loan_id"], now),
    )


def _demo_loan(engine: Engine, spec: dict) -> dict:
    try:
        return loans.get_loan(engine, spec["loan_id"])
    except errors.NotFound:
        return loans.create_loan(engine, loans.LoanIn.model_validate(spec))
