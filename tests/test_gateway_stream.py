"""A gateway running today's agent keeps working whatever moves behind the broker: a stream
captured from `agri gateway run` (tests/data/gateway_stream: the agent's status, three
readings/v1 messages and an events/v1 message, as the broker carried them) is replayed
under the gateway's own account into a real Mosquitto and ingester, and is stored,
acknowledged and rejected exactly as the transport handled it when it was captured."""

import json
import uuid
from datetime import UTC, datetime

import pytest

from bioassets import store as bio_store
from telemetry import gateways
from tests.support.livestock import Gateway, ingesting
from tests.support.paths import REPO_ROOT
from tests.support.waiting import wait_for

pytestmark = pytest.mark.broker
STREAM = REPO_ROOT / "tests" / "data" / "gateway_stream" / "agent-2026-12-07.jsonl"
FAT_TAG = "156100000000181"


def _captured() -> list[dict]:
    return [json.loads(line) for line in STREAM.read_text().splitlines()]


def test_the_captured_stream_is_what_the_agent_sends():
    messages = _captured()
    assert [m["topic"].rsplit("/", 1)[1] for m in messages] == [
        "status",
        "readings",
        "readings",
        "readings",
        "events",
    ]
    bodies = [json.loads(m["payload"]) for m in messages[1:]]
    assert {b["schema"] for b in bodies} == {"readings/v1", "events/v1"}
    assert [len(b.get("readings") or b["events"]) for b in bodies] == [20, 20, 12, 2]
    assert all(m["qos"] == 1 for m in messages)


def test_a_captured_stream_is_stored_acked_and_rejected_as_before(livestock_engine, broker):
    engine = livestock_engine
    messages = _captured()
    bodies = [json.loads(m["payload"]) for m in messages if m["topic"].endswith("s")]
    seqs = {b["seq"] for b in bodies if "seq" in b}
    gateway = Gateway(broker, "GW-SOW-1")
    with ingesting(engine, broker, client_id=f"replay-{uuid.uuid4().hex[:6]}"):
        for m in messages:
            gateway.client.publish(m["topic"], m["payload"].encode(), qos=1).wait_for_publish(10)
        assert wait_for(lambda: gateway.committed_seqs() >= seqs, timeout=20), gateway.committed
        assert wait_for(lambda: len(gateways.list_rejects(engine, "GW-SOW-1")) >= 1)
    gateway.close()
    # every sequence number acknowledged once committed, and nothing else
    assert gateway.committed_seqs() == seqs and len(seqs) == 4
    # 52 readings sent: 45 distinct, 5 of them again (stored once), one fever, one tag of
    # another farm (refused, reading by reading)
    keys = bio_store.reading_keys(engine)
    assert len(keys) == 46
    assert all(tag != FAT_TAG for tag, _ in keys)
    (rejected,) = gateways.list_rejects(engine, "GW-SOW-1")
    assert f"tag {FAT_TAG} is registered to farm 'FARM-FAT'" in rejected["reason"]
    assert any(n["rejected"] for n in gateway.notices)  # the gateway is told which one
    # the events: a death and a vaccination
    assert bio_store.get_animal(engine, "156100000000101")["status"] == "dead"
    status, seen = gateways.gateway_statuses(engine)["GW-SOW-1"]
    assert status == "online" and seen <= datetime.now(UTC)
