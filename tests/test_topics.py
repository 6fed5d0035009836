"""The topic contract has one home (telemetry.topics) and the broker enforces it: the ACL
the registry writes lets each gateway write exactly its own readings, events and status and
read exactly its own acks and rejects, and lets the ingester do the rest; a real Mosquitto
run with that ACL delivers what is allowed and nothing else."""

import queue
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from telemetry import accounts, topics
from tests.support.livestock import GATEWAY_FARMS, GATEWAY_PASSWORDS, INGESTER_PASSWORD


def test_a_topic_round_trips_and_nothing_else_parses():
    for channel in topics.FROM_GATEWAY:
        name = topics.topic("FARM-A", "GW-1", channel)
        assert topics.parse(name) == ("FARM-A", "GW-1", channel)
    for other in (
        topics.topic("FARM-A", "GW-1", "acks"),  # a gateway reads it, never sends it
        topics.topic(topics.ANY, "GW-1", "readings"),  # a filter, not a topic
        "agri/v1/farms/FARM-A/readings",
        "agri/v2/farms/FARM-A/gateways/GW-1/readings",
    ):
        assert topics.parse(other) is None, other
    with pytest.raises(ValueError, match="channel"):
        topics.topic("FARM-A", "GW-1", "commands")


def _lines(acl: str) -> dict[str, set[tuple[str, str]]]:
    """user -> {(read|write, topic)} of a Mosquitto ACL file."""
    out: dict[str, set[tuple[str, str]]] = {}
    user = None
    for line in acl.splitlines():
        if line.startswith("user "):
            user = line.split(" ", 1)[1]
            out[user] = set()
        elif line.startswith("topic "):
            _, access, name = line.split(" ", 2)
            out[user].add((access, name))
    return out


def test_the_acl_grants_each_party_exactly_its_channels():
    gateways = [
        {"gateway_id": g, "farm_id": f, "password_hash": "x"} for g, f in GATEWAY_FARMS.items()
    ]
    acl = _lines(accounts.mosquitto_files(gateways, "y")[1])
    for gateway, farm in GATEWAY_FARMS.items():
        assert acl[gateway] == {
            *(("write", topics.topic(farm, gateway, c)) for c in topics.FROM_GATEWAY),
            *(("read", topics.topic(farm, gateway, c)) for c in topics.TO_GATEWAY),
        }
    ingester = acl[accounts.INGESTER_USER]
    assert {("write", t) for t in topics.all_filters(topics.TO_GATEWAY)} <= ingester
    assert {("read", t) for t in topics.all_filters(topics.FROM_GATEWAY)} <= ingester
    assert {a for a, t in ingester if t.startswith("$share/")} == {"read"}


def _client(broker, user: str, password: str) -> tuple[mqtt.Client, queue.Queue]:
    got: queue.Queue = queue.Queue()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{user}-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(user, password)
    # retained messages are earlier tests' gateway statuses: not this test's deliveries
    client.on_message = lambda _c, _u, m: None if m.retain else got.put((m.topic, m.payload))
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client, got


def _drain(got: queue.Queue, seconds: float) -> set[str]:
    seen, deadline = set(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            seen.add(got.get(timeout=0.1)[0])
        except queue.Empty:
            pass
    return seen


@pytest.mark.broker
def test_the_broker_delivers_what_the_contract_allows_and_nothing_else(broker):
    sow, fat = "GW-SOW-1", "GW-FAT-1"
    farm = GATEWAY_FARMS[sow]
    ingester, to_ingester = _client(broker, accounts.INGESTER_USER, INGESTER_PASSWORD)
    gateway, to_gateway = _client(broker, sow, GATEWAY_PASSWORDS[sow])
    try:
        for name in topics.all_filters(topics.FROM_GATEWAY):
            ingester.subscribe(name, qos=1)
        # the gateway asks for its own channels and for another gateway's
        for channel in topics.TO_GATEWAY:
            gateway.subscribe(topics.topic(farm, sow, channel), qos=1)
            gateway.subscribe(topics.topic(GATEWAY_FARMS[fat], fat, channel), qos=1)
        time.sleep(0.5)
        for channel in topics.FROM_GATEWAY:  # its own, and posing as another farm's
            gateway.publish(topics.topic(farm, sow, channel), b"{}", qos=1).wait_for_publish(5)
            gateway.publish(topics.topic(GATEWAY_FARMS[fat], sow, channel), b"{}", qos=1)
        for channel in topics.TO_GATEWAY:
            ingester.publish(topics.topic(farm, sow, channel), b"{}", qos=1).wait_for_publish(5)
            ingester.publish(topics.topic(GATEWAY_FARMS[fat], fat, channel), b"{}", qos=1)
        assert _drain(to_ingester, 2) == {topics.topic(farm, sow, c) for c in topics.FROM_GATEWAY}
        assert _drain(to_gateway, 1) == {topics.topic(farm, sow, c) for c in topics.TO_GATEWAY}
    finally:
        for client in (ingester, gateway):
            client.loop_stop()
            client.disconnect()
