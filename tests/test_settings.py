"""One setting, one decision: AGRI_GATEWAY_OFFLINE_MINUTES read once per process and
passed to every path that decides whether a gateway is offline (the running ingester,
GET /v1/alerts, `agri alerts list`), so the same alert opens and closes alike whoever
looks."""

import json
import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from bioassets import store as bio_store
from collateral import auth
from collateral.api.app import create_app
from collateral.db import make_engine, upgrade
from tests.support.livestock import Broker, Gateway, message, reading, seed_livestock
from tests.support.paths import REPO_ROOT
from tests.support.processes import AGRI, AgriProcess

pytestmark = [pytest.mark.broker]

SOW = "156100000000001"


def _offline_gateways(engine) -> set[str]:
    return {
        a["subject"]
        for a in bio_store.list_alerts(engine, "FARM-SOW", open_only=True)
        if a["kind"] == "gateway_offline"
    }


@pytest.mark.parametrize("minutes, offline", [(10, True), (60, False)])
def test_the_offline_setting_reaches_the_ingester_the_api_and_the_cli(
    tmp_path, monkeypatch, minutes, offline
):
    """GW-SOW-1's last reading was taken 20 minutes ago: offline after 10 minutes of
    silence, not after 60, for every reader."""
    broker = Broker(tmp_path / "mosquitto")
    db_url = f"sqlite:///{tmp_path / 'agri.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    seed_livestock(engine)
    env = {
        "AGRI_DATABASE_URL": db_url,
        "AGRI_MQTT_URL": broker.url(),
        "AGRI_GATEWAY_OFFLINE_MINUTES": str(minutes),
    }
    expected = {"GW-SOW-1"} if offline else set()

    # the ingester evaluates the farm's alerts right after storing the batch, before it
    # acknowledges: the gateway's PUBACK means the decision has been made
    ingester = AgriProcess(
        ["ingest", "--alert-interval", "0", "--session-expiry", "0"], env, tmp_path / "ingest.log"
    )
    try:
        ingester.wait_ready()
        gateway = Gateway(broker, "GW-SOW-1")
        taken = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
        gateway.publish(message("GW-SOW-1", 1, [reading(SOW, taken)]))
        gateway.close()
    finally:
        ingester.process.send_signal(signal.SIGTERM)
        assert ingester.process.wait(30) == 0
        ingester.close()
        broker.stop()
    assert bio_store.count_readings(engine) == 1
    assert _offline_gateways(engine) == expected, "the ingester's decision"

    # the API, its settings read from the environment as `agri serve` reads them
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    key = auth.create_key(engine, "risk_admin", None, "settings test")
    client = TestClient(create_app(engine))
    answer = client.get(
        "/v1/alerts", params={"farm_id": "FARM-SOW"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 200, answer.text
    said = {a["subject"] for a in answer.json() if a["kind"] == "gateway_offline"}
    assert said == expected, "the API's decision"

    # the CLI, in a process of its own
    listed = subprocess.run(
        [*AGRI, "alerts", "list", "--farm", "FARM-SOW", "--open", "--json"],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(listed.stdout)
    assert {r["subject"] for r in rows if r["kind"] == "gateway_offline"} == expected
    assert _offline_gateways(engine) == expected
    engine.dispose()
