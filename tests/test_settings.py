"""One setting, one decision: AGRI_GATEWAY_OFFLINE_MINUTES read once per process and
passed to every path that decides whether a gateway is offline (the running ingester, and
cron's `agri alerts evaluate`), so the same alert opens and closes alike whoever runs the
rules; the readers (GET /v1/alerts, `agri alerts list`) show what they decided and decide
nothing."""

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
from telemetry import farm_alerts
from telemetry.tables import alerts
from tests.support.livestock import Broker, Gateway, message, reading, seed_livestock
from tests.support.paths import REPO_ROOT
from tests.support.processes import AGRI, AgriProcess

pytestmark = [pytest.mark.broker]

SOW = "156100000000001"


def _offline_gateways(engine) -> set[str]:
    return {
        a["subject"]
        for a in farm_alerts.list_alerts(engine, "FARM-SOW", open_only=True)
        if a["kind"] == "gateway_offline"
    }


def _agri(env: dict, *args: str) -> str:
    done = subprocess.run(
        [*AGRI, *args],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.mark.parametrize("minutes, offline", [(10, True), (60, False)])
def test_the_offline_setting_reaches_the_ingester_and_cron_and_readers_only_read(
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

    # the readers decide nothing: with the alert closed by hand, they show it closed
    with engine.begin() as conn:
        conn.execute(alerts.update().values(closed_at=datetime.now(UTC)))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    key = auth.create_key(engine, "risk_admin", None, "settings test")
    client = TestClient(create_app(engine))

    def api_says() -> set[str]:
        answer = client.get(
            "/v1/alerts",
            params={"farm_id": "FARM-SOW"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 200, answer.text
        return {a["subject"] for a in answer.json() if a["kind"] == "gateway_offline"}

    def cli_says() -> set[str]:
        rows = json.loads(_agri(env, "alerts", "list", "--farm", "FARM-SOW", "--open", "--json"))
        return {r["subject"] for r in rows if r["kind"] == "gateway_offline"}

    assert api_says() == cli_says() == _offline_gateways(engine) == set()

    # cron's evaluation, in a process of its own, decides as the ingester did
    assert "1 farms evaluated" in _agri(env, "alerts", "evaluate", "--farm", "FARM-SOW")
    assert _offline_gateways(engine) == expected, "cron's decision"
    assert api_says() == cli_says() == expected
    engine.dispose()
