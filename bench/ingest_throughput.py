"""Ingest benchmark: readings committed per second vs a bare paho subscriber, same broker.

    .venv/bin/python bench/ingest_throughput.py [--messages N] [--skip-postgres]
        [--agent] [--farms F] [--ingesters K --skip-sqlite]

One run, one private Mosquitto with the shipped settings (deploy/mosquitto/), the same
stream each time (N messages of 20 readings, QoS 1, from a publisher process). For SQLite,
then PostgreSQL:
  1. a bare paho subscriber (QoS 1, automatic acks, nothing else) receives it;
  2. `agri ingest` (a separate process) stores it;
  3. the bare subscriber receives it again;
  4. with --agent: the same readings, as JSON lines, through `agri gateway run` (its
     outbox, QoS 1, kept until the ingester's commit ack), then the bare subscriber again;
  5. with --solar: as many inverter readings (solar/v1: 200 rooftop plants of the farm,
     5-minute readings with the lifetime counter, power, state and two MPPT inputs)
     through the same agent, then the bare subscriber again.
The reference rate is the mean of the two bare runs around the ingester's: this machine's
speed drifts by 10-30 % within a minute, and one bare run a minute away from the ingester
gave ratios from 0.43 to 0.80 for the same code.
Reported: readings/s for each, the ratio to the bare subscriber, loss (stored vs sent)
and latency from the gateway's sent_at to the start of the batch that stored the message
(p50/p99; the commit itself follows within milliseconds).

With ``--farms F`` the stream comes from F gateways on F farms at once (one publisher
process each, N / F messages), the farms chosen so that `agri ingest`'s partitions get
equal shares: ``--farms 8 --ingesters 2`` is two partitioned processes of four partitions
each against ``--ingesters 1``, one process holding all eight.

Rates are measured on the same basis: the bare subscriber from its first message to its
last; the ingester from the start of its first batch (the earliest received_at) to the
moment every row was counted in the database (polled every 50 ms: up to 50 ms against
the ingester; the first batch fills for up to 100 ms before its received_at: up to 100 ms
in its favour). ``readings_per_s_end_to_end`` also counts the publisher process's start-up
and the first message's trip, from the moment the publisher was launched.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from gateway_publisher import reading_key, tags  # noqa: E402

from bioassets import registry  # noqa: E402
from bioassets import store as bio_store  # noqa: E402
from bioassets.tables import readings  # noqa: E402
from collateral.db import make_engine, upgrade  # noqa: E402
from solar import plants as solar_plants  # noqa: E402
from solar.tables import solar_readings  # noqa: E402
from telemetry import accounts, gateways  # noqa: E402
from telemetry.local_broker import LocalBroker  # noqa: E402
from telemetry.partitions import DEFAULT_PARTITIONS, fair_share, partition_of  # noqa: E402
from tests.support.databases import fresh_postgres_database  # noqa: E402
from tests.support.processes import AgriProcess, partitions_served  # noqa: E402

GATEWAY, FARM, PASSWORD, INGEST_PASSWORD = "GW-BENCH-1", "FARM-SOW", "bench-secret", "ingest-bench"
PER_MESSAGE = 20
EXTRA_INGEST_ARGS: list[str] = []
INGESTERS = 1
FARMS = 1


def bench_farms(count: int) -> list[tuple[str, str, int]]:
    """(farm, gateway, herd) of the stream's sources: the sample's sow farm first, then
    farms picked so each partition of `agri ingest` gets as many as the others."""
    sources = [(FARM, GATEWAY, 0)]
    per_partition = {partition_of(FARM, DEFAULT_PARTITIONS): 1}
    n = 0
    while len(sources) < count:
        n += 1
        farm = f"FARM-BENCH-{n:03d}"
        k = partition_of(farm, DEFAULT_PARTITIONS)
        if per_partition.get(k, 0) < -(-count // DEFAULT_PARTITIONS):
            per_partition[k] = per_partition.get(k, 0) + 1
            sources.append((farm, f"GW-BENCH-F{n:03d}", len(sources)))
    return sources


def messages_sent(n: int) -> int:
    """What a stream of ``n`` messages sends: N / FARMS from each source, whole."""
    return (n // FARMS) * FARMS


def publish(broker, n: int, start_ms: int) -> dict:
    """N messages from the FARMS sources at once, N / FARMS each: {"publish_s", "sent_at":
    {(gateway, seq): epoch seconds}}."""
    sources = bench_farms(FARMS)
    each = n // len(sources)
    publishers = [
        (gateway, subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "gateway_publisher.py"), broker.host,
             str(broker.port), gateway, PASSWORD, farm, str(each), str(PER_MESSAGE),
             str(start_ms), str(herd)],
            stdout=subprocess.PIPE, text=True,
        ))
        for farm, gateway, herd in sources
    ]  # fmt: skip
    sent_at, slowest = {}, 0.0
    for gateway, process in publishers:
        out = json.loads(process.communicate(timeout=600)[0])
        assert process.returncode == 0
        sent_at |= {(gateway, seq): at for seq, at in enumerate(out["sent_at"])}
        slowest = max(slowest, out["publish_s"])
    return {"publish_s": slowest, "sent_at": sent_at}


def last_keys(start_ms: int, n: int) -> list[tuple]:
    """The last reading of each source's stream."""
    each = n // FARMS
    return [
        reading_key(start_ms, PER_MESSAGE, each - 1, PER_MESSAGE - 1, herd)
        for _farm, _gateway, herd in bench_farms(FARMS)
    ]


def bare_subscriber(broker, n: int) -> dict:
    sub = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "bare_subscriber.py"),
            broker.host,
            str(broker.port),
            accounts.INGESTER_USER,
            INGEST_PASSWORD,
            str(messages_sent(n)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sub.stdout.readline().strip() == "ready"
    publish(broker, n, int(time.time() * 1000) - 3_600_000)
    result = json.loads(sub.stdout.readline())
    sub.wait(30)
    result["readings_per_s"] = result["received"] * PER_MESSAGE / result["seconds"]
    result["messages_per_s"] = result["received"] / result["seconds"]
    return result


def wait_until_stored(engine, last: list[tuple], expected: int, timeout_s: float = 120) -> None:
    """Until every row is stored. The poll must not steal the CPU it measures (a count(*)
    of the growing table every 50 ms took ~10 % of a core): it looks up each stream's last
    reading by its key, and only then counts, and goes on counting if rows are missing."""
    deadline = time.perf_counter() + timeout_s
    for tag, at in last:
        query = select(readings.c.seq).where(readings.c.tag_id == tag, readings.c.observed_at == at)
        while time.perf_counter() < deadline:
            with engine.connect() as c:
                if c.execute(query).first() is not None:
                    break
            time.sleep(0.05)
    while bio_store.count_readings(engine) < expected and time.perf_counter() < deadline:
        time.sleep(0.05)


def seed(engine) -> None:
    """The sample farms and animals, and the benchmark's gateway."""
    farms = registry.parse_farms(ROOT / "sample_tiles" / "farms.geojson").records
    bio_store.upsert_farms(engine, farms)
    animals = registry.parse_animals(
        ROOT / "sample_tiles" / "animals.csv", bio_store.farm_ids(engine)
    )
    bio_store.upsert_animals(engine, animals.records)
    sows = [a for a in animals.records if a["farm_id"] == FARM]
    (template,) = [f for f in farms if f["farm_id"] == FARM]
    for farm, gateway, herd in bench_farms(FARMS):
        if herd:  # the sows again, under their own farm and tag ids
            bio_store.upsert_farms(engine, [{**template, "farm_id": farm}])
            bio_store.upsert_animals(
                engine,
                [
                    {**a, "farm_id": farm, "tag_id": t}
                    for a, t in zip(sows, tags(herd), strict=True)
                ],
            )
        gateways.add_gateway(engine, gateway, farm, accounts.mosquitto_hash(PASSWORD))


def start_ingesters(env: dict, label: str, folder: Path) -> list[AgriProcess]:
    procs = []
    for k in range(INGESTERS):
        command = ["ingest", "--session-expiry", "0"]  # the default: partitions
        ingester = AgriProcess([*command, *EXTRA_INGEST_ARGS], env, folder / f"ingest-{k}.log")
        # what is published before the first subscription has no taker
        ingester.wait_ready(60)
        procs.append(ingester)
    if len(procs) > 1:  # until the first has handed the others their share
        share = fair_share(DEFAULT_PARTITIONS, len(procs))
        served = lambda: [len(partitions_served(p.log)) for p in procs]  # noqa: E731
        deadline = time.monotonic() + 60
        while served() != [share] * len(procs) and time.monotonic() < deadline:
            time.sleep(0.2)
    return procs


TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its living descendants
    (an `agri ingest` is a network process and its writer process)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def stop_ingesters(procs: list[AgriProcess]) -> None:
    for ingester in procs:
        ingester.process.terminate()
        ingester.process.wait(60)
        ingester.close()


def ingest(broker, db_url: str, n: int, label: str) -> dict:
    engine = make_engine(db_url)
    upgrade(engine)
    seed(engine)
    env = {"AGRI_DATABASE_URL": db_url, "AGRI_MQTT_URL": broker.url(password=INGEST_PASSWORD)}
    procs = start_ingesters(env, label, Path(tempfile.mkdtemp(prefix="agri-bench-ingest-")))
    start_ms = int(time.time() * 1000) - 7_200_000 - (0 if label == "sqlite" else 3_600_000)
    expected = messages_sent(n) * PER_MESSAGE
    cpu_before = sum(tree_cpu_s(p.process.pid) for p in procs)
    t0 = time.perf_counter()
    published = publish(broker, n, start_ms)
    wait_until_stored(engine, last_keys(start_ms, n), expected)
    elapsed = time.perf_counter() - t0
    done_wall = time.time()
    cpu_s = sum(tree_cpu_s(p.process.pid) for p in procs) - cpu_before
    stored = bio_store.count_readings(engine)
    stop_ingesters(procs)
    query = select(
        readings.c.gateway_id, readings.c.seq, func.min(readings.c.received_at)
    ).group_by(readings.c.gateway_id, readings.c.seq)
    with engine.connect() as c:
        first_stored = {(gw, seq): at.timestamp() for gw, seq, at in c.execute(query)}
    lag = np.array([first_stored[s] - published["sent_at"][s] for s in first_stored])
    # Same basis as the bare subscriber (first message received to last one handled): from
    # the start of the first batch (its received_at) to the moment all rows were counted.
    active = done_wall - min(first_stored.values())
    return {
        "database": label,
        "sent": expected,
        "stored": stored,
        "lost": expected - stored,
        "publish_s": published["publish_s"],
        "end_to_end_s": elapsed,
        "readings_per_s_end_to_end": stored / elapsed,
        "active_s": active,
        "readings_per_s": stored / active,
        "latency_p50_ms": float(np.percentile(lag, 50) * 1000),
        "latency_p99_ms": float(np.percentile(lag, 99) * 1000),
        # what the ingesters' processes spent: with more of them, any cost of sharing
        # (leases, more connections) shows here, whatever the cores
        "ingest_cpu_s": cpu_s,
        "cpu_s_per_1000_readings": 1000 * cpu_s / max(stored, 1),
        "engine": engine,
    }


def livestock_lines(out, n: int, start_ms: int) -> None:
    for seq in range(n):
        for k in range(PER_MESSAGE):
            tag, at = reading_key(start_ms, PER_MESSAGE, seq, k)
            out.write(
                f'{{"tag_id": "{tag}", "observed_at": "{at.isoformat()}", '
                '"temperature_c": 38.9, "activity": 97.0, "lat": 25.0391, "lon": 118.222}\n'
            )


SOLAR_PLANTS = 200


def seed_plants(engine) -> None:
    """The farm's rooftop plants (10 kWp each, within a few km)."""
    solar_plants.upsert_plants(
        engine,
        [
            {
                "plant_id": f"PV-BENCH-{k:03d}",
                "farm_id": FARM,
                "name": None,
                "lat": 25.0 + (k % 20) * 0.002,
                "lon": 118.2 + (k // 20) * 0.002,
                "kwp": 10.0,
                "ac_kw": 10.0,
                "tilt": 20.0,
                "azimuth": 180.0,
                "commissioned": datetime(2024, 3, 1).date(),
                "grid_connected": datetime(2024, 3, 15).date(),
                "make": None,
                "model": None,
                "serial": f"INV-{k:03d}",
                "tariff": "fujian-coal-benchmark",
            }
            for k in range(SOLAR_PLANTS)
        ],
    )


def solar_lines(out, n: int, start_ms: int) -> None:
    """n x PER_MESSAGE inverter readings: each plant every 5 minutes, counters rising."""
    start = datetime.fromtimestamp(start_ms / 1000, UTC).replace(microsecond=0)
    for k in range(n * PER_MESSAGE):
        plant, step = k % SOLAR_PLANTS, k // SOLAR_PLANTS
        at = start - timedelta(minutes=5 * step)  # back in time from start: never future
        watts = 4000.0 + (k % 97) * 10
        out.write(
            f'{{"plant_id": "PV-BENCH-{plant:03d}", "SN": "INV-{plant:03d}", '
            f'"observed_at": "{at.isoformat()}", "W": {watts}, '
            f'"WH": {9_000_000.0 - step * 350.0}, "St": 4, "Evt1": 0, '
            f'"DCV": [380.5, 381.0], "DCA": [{watts / 761:.3f}, {watts / 762:.3f}]}}\n'
        )


def count_rows(engine, table) -> int:
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(table)).scalar_one()


# stream -> (lines writer, table its readings land in, what the database needs first)
STREAMS = {
    "livestock": (livestock_lines, readings, lambda engine: None),
    "solar": (solar_lines, solar_readings, seed_plants),
}


def through_agent(broker, db_url: str, n: int, label: str, stream: str = "livestock") -> dict:
    """The same number of readings through the reference gateway agent (`agri gateway run`,
    its SQLite outbox, QoS 1, kept until the ingester's commit ack): from the agent's launch
    to its exit, which is when everything is acknowledged."""
    write_lines, table, prepare = STREAMS[stream]
    engine = make_engine(db_url)
    upgrade(engine)
    seed(engine)
    prepare(engine)
    env = {"AGRI_DATABASE_URL": db_url, "AGRI_MQTT_URL": broker.url(password=INGEST_PASSWORD)}
    work = Path(tempfile.mkdtemp(prefix="agri-bench-agent-"))
    procs = start_ingesters(env, f"{label}-agent", work)
    before = count_rows(engine, table)  # the plain run's rows are in this database
    start_ms = int(time.time() * 1000) - 7_200_000 - (1_800_000 if label == "sqlite" else 5_400_000)
    lines = work / "readings.jsonl"
    with open(lines, "w") as out:
        write_lines(out, n, start_ms)
    command = [
        sys.executable, "-m", "collateral.cli", "gateway", "run", "--farm", FARM,
        "--gateway", GATEWAY, "--mqtt-url", broker.url(GATEWAY, PASSWORD),
        "--outbox", str(work / "outbox.db"), "--per-message", str(PER_MESSAGE),
    ]  # fmt: skip
    t0 = time.perf_counter()
    with open(lines) as stdin, open(work / "agent.log", "w") as log:
        code = subprocess.run(command, stdin=stdin, stderr=log, cwd=ROOT, timeout=600).returncode
    elapsed = time.perf_counter() - t0
    done_wall = time.time()
    stored = count_rows(engine, table) - before
    stop_ingesters(procs)
    with engine.connect() as c:
        since = datetime.fromtimestamp(done_wall - elapsed, UTC)
        query = select(func.min(table.c.received_at)).where(table.c.received_at >= since)
        first = c.execute(query).scalar_one()
    engine.dispose()
    expected = n * PER_MESSAGE
    return {
        "database": label,
        "stream": stream,
        "agent_exit_code": code,
        "agent_summary": (work / "agent.log").read_text().strip().splitlines()[-1],
        "sent": expected,
        "stored": stored,
        "lost": expected - stored,
        "end_to_end_s": elapsed,
        "readings_per_s_end_to_end": stored / elapsed,
        "active_s": done_wall - first.timestamp(),
        "readings_per_s": stored / (done_wall - first.timestamp()),
    }


def against_bare(broker, n: int, run: dict, before: dict) -> tuple[dict, dict]:
    """A run with the bare subscriber's runs either side of it and its ratio to their
    mean; returns it and the run after (the next one's run before)."""
    after = bare_subscriber(broker, n)
    run["bare_paho_subscriber"] = [before, after]
    reference = (before["readings_per_s"] + after["readings_per_s"]) / 2
    run["ratio_to_bare_subscriber"] = run["readings_per_s"] / reference
    return run, after


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--batch-ms", type=int, help="passed to agri ingest")
    parser.add_argument("--ingesters", type=int, default=1, help="agri ingest processes")
    parser.add_argument("--farms", type=int, default=1, help="gateways on farms publishing at once")
    parser.add_argument(
        "--agent", action="store_true", help="also through a gateway agent (outbox and acks)"
    )
    parser.add_argument(
        "--solar", action="store_true", help="also inverter readings (solar/v1) through the agent"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ingest_results.json")
    args = parser.parse_args()
    if args.ingesters > 1 and not args.skip_sqlite:
        parser.error("on SQLite one agri ingest serves every partition: --skip-sqlite")
    results = {"messages": args.messages, "readings_per_message": PER_MESSAGE}
    global INGESTERS, FARMS
    INGESTERS, FARMS = args.ingesters, args.farms
    results["ingesters"], results["farms"] = args.ingesters, args.farms
    if args.batch_ms:
        EXTRA_INGEST_ARGS.extend(["--batch-ms", str(args.batch_ms)])
    with tempfile.TemporaryDirectory(prefix="agri-bench-broker-") as root:
        logins = [
            {
                "gateway_id": gateway,
                "farm_id": farm,
                "password_hash": accounts.mosquitto_hash(PASSWORD),
            }
            for farm, gateway, _herd in bench_farms(FARMS)
        ]
        broker = LocalBroker(Path(root), logins, INGEST_PASSWORD).start()
        try:
            with (
                tempfile.TemporaryDirectory(prefix="agri-bench-db-") as db_dir,
                contextlib.ExitStack() as databases,
            ):
                runs = [] if args.skip_sqlite else [("sqlite", f"sqlite:///{db_dir}/bench.db")]
                if not args.skip_postgres:
                    pg_url = databases.enter_context(fresh_postgres_database("agri_bench"))
                    runs.append(("postgresql", pg_url))
                for label, url in runs:
                    before = bare_subscriber(broker, args.messages)
                    run = ingest(broker, url, args.messages, label)
                    run.pop("engine").dispose()
                    results[label], after = against_bare(broker, args.messages, run, before)
                    streams = [("through_agent", "livestock")] if args.agent else []
                    streams += [("solar_through_agent", "solar")] if args.solar else []
                    for name, stream in streams:
                        agent_run = through_agent(broker, url, args.messages, label, stream)
                        results[f"{label}_{name}"], after = against_bare(
                            broker, args.messages, agent_run, after
                        )
        finally:
            broker.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
