"""The production layout on one machine: two `agri ingest` and two `agri serve` processes
against one PostgreSQL database and one Mosquitto (deploy/README.md)."""

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from bioassets import store as bio_store
from collateral import auth, prices
from collateral.db import make_engine, upgrade
from remote_sensing import store as rs_store
from remote_sensing.parcels import read_parcel_file
from telemetry.local_broker import free_port
from tests.support.databases import fresh_postgres_database
from tests.support.livestock import Gateway, message, reading, seed_livestock
from tests.support.paths import REPO_ROOT, SAMPLE_TILES
from tests.support.processes import AgriProcess, partitions_served
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.slow]

AGRI = [sys.executable, "-m", "collateral.cli"]


def _call(base: str, key: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def test_two_ingesters_and_two_api_processes_on_one_postgresql(tmp_path, broker):
    with fresh_postgres_database("agri_layout") as url:
        engine = make_engine(url)
        upgrade(engine)
        seed_livestock(engine)
        rs_store.upsert_parcels(engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels)
        for path in prices.default_tables():
            prices.import_file(engine, path)
        key = auth.create_key(engine, "loan_officer", "ANXI-01")
        env = {
            **os.environ,
            "AGRI_DATABASE_URL": url,
            "AGRI_DATA_DIR": str(tmp_path / "data"),
            "AGRI_MQTT_URL": broker.url(),
        }
        processes = []
        try:
            # two ingesters, as in production: they share the partitions (advisory locks),
            # the first to start keeps 0-3, the other takes 4-7: FARM-SOW is in 5, FARM-FAT
            # and FARM-CATTLE in 2 (partition_of), so both have work
            logs = [tmp_path / f"ingest-{n}.log" for n in range(2)]
            ingesters = [AgriProcess(["ingest", "--session-expiry", "0"], env, log) for log in logs]
            processes += [i.process for i in ingesters]
            ports = [free_port(), free_port()]
            for port in ports:
                processes.append(
                    subprocess.Popen(
                        [*AGRI, "serve", "--port", str(port)],
                        env=env,
                        cwd=REPO_ROOT,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            for ingester in ingesters:
                ingester.wait_ready(60)
            served = lambda: [partitions_served(log) for log in logs]  # noqa: E731
            assert wait_for(lambda: sorted(map(len, served())) == [4, 4], timeout=60), served()
            assert set().union(*served()) == set(range(8))  # each partition in one process
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            for base in bases:
                assert wait_for(lambda base=base: _healthy(base), timeout=30)

            start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
            sent = 0
            for name in ("GW-SOW-1", "GW-FAT-1", "GW-CAT-1"):  # farms in both processes' shares
                gateway = Gateway(broker, name)
                tags = [a["tag_id"] for a in bio_store.farm_animals(engine, gateway.farm_id)]
                for seq in range(100):
                    items = [
                        reading(
                            tags[(seq * 10 + k) % len(tags)],
                            start + timedelta(seconds=seq * 10 + k),
                        )
                        for k in range(10)
                    ]
                    gateway.publish(message(name, seq, items))
                    sent += len(items)
                gateway.close()
            assert wait_for(lambda: bio_store.count_readings(engine) >= sent, timeout=60)

            # the API is stateless: what one process writes, the other serves
            loan = {
                "loan_id": "LAYOUT-1",
                "borrower": "Lin Fang",
                "branch": "ANXI-01",
                "principal_cny": "100000.00",
                "parcel_ids": ["F-04"],
                "herds": [{"farm_id": "FARM-SOW", "categories": ["breeding_sow"]}],
            }
            assert _call(bases[0], key, "POST", "/v1/loans", loan)["loan_id"] == "LAYOUT-1"
            valued = _call(bases[1], key, "POST", "/v1/loans/LAYOUT-1/valuations", {})
            herd = next(i for i in valued["items"] if i["kind"] == "herd")
            assert herd["evidence"]["verified"] == 180  # every sow reported through the two
            history = _call(bases[0], key, "GET", "/v1/loans/LAYOUT-1/valuations")
            assert [h["valuation_id"] for h in history] == [valued["valuation_id"]]
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(30)
        stored = []
        for log in logs:
            found = re.search(r"(\d+) readings stored", log.read_text())
            assert found, log.read_text()[-2000:]
            stored.append(int(found.group(1)))
        assert sum(stored) == sent == 3000 and min(stored) > 0, stored  # both worked, once
        assert bio_store.count_readings(engine) == 3000
        engine.dispose()


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/v1/health", timeout=1):
            return True
    except OSError:
        return False
