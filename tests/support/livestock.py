"""The livestock side's test world: a real Mosquitto with the shipped settings and the test
gateways' passwords, the sample farms in a database, gateways that publish, and an
in-process ingester that is known to be subscribed before a test publishes."""

import json
import threading
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collateral import domains
from collateral.db import engine_url, make_engine
from collateral.settings import Settings
from telemetry import accounts, gateways, topics
from telemetry.acks import parse_ack
from telemetry.ingester import Ingester
from telemetry.local_broker import LocalBroker
from tests.support.paths import SAMPLE_TILES
from tests.support.waiting import wait_for  # noqa: F401 (re-exported for the tests)

# The shipped default of AGRI_GATEWAY_OFFLINE_MINUTES: what in-process ingesters use here.
DEFAULT_OFFLINE_AFTER = timedelta(minutes=Settings.model_fields["gateway_offline_minutes"].default)

GATEWAY_PASSWORDS = {
    "GW-SOW-1": "sow-secret",
    "GW-FAT-1": "fat-secret",
    "GW-CAT-1": "cattle-secret",
}
GATEWAY_FARMS = {"GW-SOW-1": "FARM-SOW", "GW-FAT-1": "FARM-FAT", "GW-CAT-1": "FARM-CATTLE"}
INGESTER_PASSWORD = "ingest-secret"


class Broker(LocalBroker):
    """The test session's broker: the shipped settings, the test gateways' passwords."""

    def __init__(self, root: Path):
        logins = [
            {
                "gateway_id": g,
                "farm_id": GATEWAY_FARMS[g],
                "password_hash": accounts.mosquitto_hash(p),
            }
            for g, p in GATEWAY_PASSWORDS.items()
        ]
        super().__init__(root, logins, INGESTER_PASSWORD)
        self.start()

    def url(self, user: str = "agri-ingester", password: str = INGESTER_PASSWORD) -> str:
        return super().url(user, password)


def seed_livestock(engine) -> None:
    """The sample farms and animals, and the test gateways with the broker's passwords."""
    from bioassets import registry
    from bioassets import store as bio_store

    bio_store.upsert_farms(engine, registry.parse_farms(SAMPLE_TILES / "farms.geojson").records)
    animals = registry.parse_animals(SAMPLE_TILES / "animals.csv", bio_store.farm_ids(engine))
    bio_store.upsert_animals(engine, animals.records)
    for gateway_id, password in GATEWAY_PASSWORDS.items():
        gateways.add_gateway(
            engine, gateway_id, GATEWAY_FARMS[gateway_id], accounts.mosquitto_hash(password)
        )


def reading(tag: str, at: datetime, **fields) -> dict:
    return {"tag_id": tag, "observed_at": at.isoformat(), **fields}


def message(gateway_id: str, seq: int, items: list[dict], kind: str = "readings") -> bytes:
    body = {
        "schema": f"{kind}/v1",
        "gateway_id": gateway_id,
        "sent_at": datetime.now(UTC).isoformat(),
        "seq": seq,
        kind: items,
    }
    return json.dumps(body).encode()


class Gateway:
    """A farm gateway: an MQTT 5 client publishing at QoS 1 under its own topic."""

    def __init__(self, broker, gateway_id: str, password: str | None = None):
        self.gateway_id = gateway_id
        self.farm_id = GATEWAY_FARMS[gateway_id]
        self.notices: list[dict] = []  # reject notices
        self.committed: list[tuple[int, int]] = []  # the ingester's commit acks (seq ranges)
        self.acks: dict[int, object] = {}  # the broker's PUBACKs, by message id
        self.connect_result = None
        self._connected = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{gateway_id}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(gateway_id, password or GATEWAY_PASSWORDS[gateway_id])
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_publish = lambda c, u, mid, rc, p: self.acks.__setitem__(mid, rc)
        client.connect(broker.host, broker.port)
        client.loop_start()
        self.client = client
        self._connected.wait(10)

    def _on_connect(self, client, _u, _f, reason_code, _p) -> None:
        self.connect_result = reason_code
        if not reason_code.is_failure:
            mine = [topics.topic(self.farm_id, self.gateway_id, c) for c in topics.TO_GATEWAY]
            client.subscribe([(name, 1) for name in mine])
        self._connected.set()

    def _on_message(self, _client, _userdata, message) -> None:
        if message.topic.endswith("/acks"):
            self.committed += parse_ack(message.payload)
        else:
            self.notices.append(json.loads(message.payload))

    def committed_seqs(self) -> set[int]:
        return {seq for first, last in self.committed for seq in range(first, last + 1)}

    def publish(self, payload: bytes, kind: str = "readings", farm_id: str | None = None):
        topic = topics.topic(farm_id or self.farm_id, self.gateway_id, kind)
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        return info

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def ingesting(engine, broker, client_id: str = "test-ingester", **kwargs):
    # session expiry 0: a finished test's ingester must not keep a share of the stream
    worker = Ingester(
        engine_url(engine),
        broker.url(),
        client_id,
        open_engine=make_engine,
        domains=domains.INGEST,
        gateway_offline_after=kwargs.pop("gateway_offline_after", DEFAULT_OFFLINE_AFTER),
        batch_ms=50,
        session_expiry_s=0,
        **kwargs,
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.wait_subscribed(10), "ingester did not subscribe"
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
        assert not thread.is_alive()


def forget_session(broker, client_id: str) -> None:
    """End a persistent ingester session so it stops taking a share of later streams."""

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set("agri-ingester", "ingest-secret")
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect(broker.host, broker.port, clean_start=True, properties=properties)
    client.loop_start()
    assert connected.wait(10), "could not reach the broker to end the session"
    client.disconnect()
    client.loop_stop()


def clear_retained_statuses(broker) -> None:
    """Forget the retained online/offline statuses the test gateways left on a shared
    broker (an empty retained message clears one), so a later test's ingester does not
    receive them as messages."""
    for gateway_id in GATEWAY_PASSWORDS:
        gw = Gateway(broker, gateway_id)
        topic = topics.topic(gw.farm_id, gateway_id, "status")
        gw.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
        gw.close()


@pytest.fixture(autouse=True)
def no_retained_statuses_left(request):
    """Autouse where imported: agents publish a retained status, and the session's broker
    must not keep them for the tests after (their ingesters would receive them)."""
    yield
    if "broker" in request.fixturenames:
        clear_retained_statuses(request.getfixturevalue("broker"))
