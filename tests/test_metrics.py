"""Prometheus metrics, scraped over HTTP from real processes: `agri ingest` and
`agri gateway run` on their --metrics-port, and `GET /metrics` of the API."""

import json
import urllib.request

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bioassets import store as bio_store
from collateral import auth
from collateral.api.app import create_app
from collateral.db import engine_url
from telemetry.local_broker import free_port
from tests.support.livestock import (
    Broker,
    Gateway,
    message,
    no_retained_statuses_left,  # noqa: F401 (an autouse fixture)
    reading,
    wait_for,
)
from tests.support.processes import AgriProcess
from tests.test_gateway_agent import T0, Agent, _keys, _lines, _tags


def sample(text: str, name: str, **labels) -> float | None:
    """The value of one sample of a metrics page (None: not there)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


@pytest.mark.broker
def test_the_ingester_counts_what_it_received_stored_refused_and_acknowledged(
    livestock_engine, tmp_path
):
    engine = livestock_engine
    broker = Broker(tmp_path / "mosquitto")  # its own: no retained statuses of other tests
    port = free_port()
    env = {"AGRI_DATABASE_URL": engine_url(engine), "AGRI_MQTT_URL": broker.url()}
    ingest = AgriProcess(
        ["ingest", "--session-expiry", "0", "--metrics-port", str(port)],
        env,
        tmp_path / "ingest.log",
    )  # fmt: skip
    try:
        ingest.wait_ready()
        tags = _tags(engine, "GW-SOW-1")
        gw = Gateway(broker, "GW-SOW-1")
        first = message("GW-SOW-1", 1, [reading(t, T0) for t in tags[:10]])
        gw.publish(first)
        gw.publish(first)  # a re-send: 10 duplicates
        gw.publish(message("GW-SOW-1", 2, [reading("12345", T0)]))  # refused
        assert wait_for(lambda: gw.committed_seqs() == {1, 2}, timeout=30)
        gw.close()
        page = scrape(port)
    finally:
        ingest.process.terminate()
        ingest.process.wait(30)
        ingest.close()
        broker.stop()
    assert bio_store.count_readings(engine) == 10
    assert sample(page, "agri_ingest_messages_received_total") == 3
    assert sample(page, "agri_ingest_readings_stored_total") == 10
    assert sample(page, "agri_ingest_duplicates_total") == 10
    assert sample(page, "agri_ingest_rejected_total") == 1
    assert sample(page, "agri_ingest_acks_sent_total") >= 1  # one per gateway per batch
    assert sample(page, "agri_ingest_commit_seconds_count") >= 1
    assert sample(page, "agri_ingest_partitions_held") == 8  # SQLite: one process holds all


@pytest.mark.broker
def test_the_gateway_agent_counts_published_acknowledged_and_its_outbox(
    livestock_engine, broker, tmp_path
):
    from tests.support.livestock import ingesting

    engine = livestock_engine
    gateway = "GW-CAT-1"
    port = free_port()
    agent = Agent(broker, gateway, tmp_path / gateway, spool=True)
    agent.command += ["--metrics-port", str(port), "--per-message", "10"]
    lines = _lines(_tags(engine, gateway)[:20], range(5))  # 100 readings: 10 messages
    agent.drop("reader", [*lines, "not json"])
    with ingesting(engine, broker, client_id="metrics-agent"):
        agent.start().wait_connected()
        # every message acknowledged (an empty outbox alone could be one not yet read from
        # the spool: seen once in a clean-clone run), then the depth gauge's next round
        assert wait_for(
            lambda: sample(scrape(port), "agri_gateway_acked_total", gateway=gateway) == 10,
            timeout=60,
        )
        assert wait_for(lambda: agent.depth() == 0, timeout=60)
        assert wait_for(
            lambda: sample(scrape(port), "agri_gateway_outbox_depth", gateway=gateway) == 0
        )
        page = scrape(port)
        assert agent.stop() == 0
    assert bio_store.reading_keys(engine) == _keys(lines)
    assert sample(page, "agri_gateway_published_total", gateway=gateway) == 10
    assert sample(page, "agri_gateway_acked_total", gateway=gateway) == 10
    assert sample(page, "agri_gateway_resent_total", gateway=gateway) == 0
    assert sample(page, "agri_gateway_refused_lines_total", gateway=gateway) == 1


def test_the_api_counts_requests_by_route_template_and_status(world):
    client = TestClient(create_app(world))
    key = auth.create_key(world, "loan_officer", "ANXI-01")
    before = client.get("/metrics").text
    route = "/v1/loans/{loan_id}"

    def count(page: str, status: str) -> float:
        return sample(page, "agri_api_requests_total", method="GET", route=route, status=status)

    for loan_id in ("NO-SUCH-1", "NO-SUCH-2"):
        answer = client.get(f"/v1/loans/{loan_id}", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 404
    assert client.get("/v1/nowhere").status_code == 404
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    page = after.text
    assert count(page, "404") - (count(before, "404") or 0) == 2  # one series for both ids
    assert "NO-SUCH-1" not in page
    assert sample(page, "agri_api_requests_total", route="(no route)", status="404") >= 1
    latency = sample(page, "agri_api_request_seconds_count", method="GET", route=route)
    assert latency >= 2
    json.dumps(page)  # a plain text page
