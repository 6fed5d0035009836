"""An ingester session's logic without a broker: the ingester is given the factory of its
MQTT clients (as Telegraf's mqtt_consumer is), here one that records what the session asks
of its client and lets the test play the broker's answers. The real-broker tests
(test_ingest.py, test_partitions.py, test_faults.py) stay the proof that it works."""

from datetime import timedelta
from types import SimpleNamespace

import pytest

from collateral import domains
from collateral.db import make_engine
from telemetry import topics
from telemetry.ingester import Ingester, Session


class RecordingClient:
    """The part of paho's client a session uses, recording each call."""

    def __init__(self, client_id: str):
        self.client_id = client_id
        self.calls: list[tuple] = []

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))

        return call

    def subscriptions(self) -> list[str]:
        return [t for name, args, _ in self.calls if name == "subscribe" for t, _q in args[0]]


def _ingester(tmp_path, **kwargs) -> tuple[Ingester, dict[str, RecordingClient]]:
    made: dict[str, RecordingClient] = {}

    def factory(client_id: str) -> RecordingClient:
        made[client_id] = RecordingClient(client_id)
        return made[client_id]

    ingester = Ingester(
        f"sqlite:///{tmp_path / 'agri.db'}",
        "mqtt://agri-ingester:pw@127.0.0.1:1",
        None,
        open_engine=make_engine,
        domains=domains.INGEST,
        gateway_offline_after=timedelta(minutes=30),
        client_factory=factory,
        **kwargs,
    )
    ingester.announce_ready = False
    return ingester, made


OK = SimpleNamespace(is_failure=False)
REFUSED = SimpleNamespace(is_failure=True)


def test_a_session_subscribes_its_topics_once_connected_and_more_as_farms_come(tmp_path):
    ingester, made = _ingester(tmp_path)
    session = ingester.add_session("agri-ingest-p3", topics.farm_filters("FARM-A"))
    client = made["agri-ingest-p3"]
    assert client.subscriptions() == []  # nothing before the broker accepted the connection
    session.add_topics(topics.farm_filters("FARM-B"))  # not connected: kept for later
    assert client.subscriptions() == []
    session._on_connect(client, None, None, OK, None)
    wanted = topics.farm_filters("FARM-A") + topics.farm_filters("FARM-B")
    assert client.subscriptions() == wanted
    assert all(q == 1 for name, args, _ in client.calls if name == "subscribe" for _t, q in args[0])
    assert not session.subscribed.is_set()  # until the broker grants them
    session._on_subscribe(client, None, 1, [OK] * len(wanted), None)
    assert session.subscribed.is_set()
    session.add_topics(topics.farm_filters("FARM-C"))  # connected: at once, only the new
    assert client.subscriptions()[len(wanted) :] == topics.farm_filters("FARM-C")


def test_a_refused_connection_or_subscription_is_not_taken_for_ready(tmp_path):
    ingester, made = _ingester(tmp_path)
    session = ingester.add_session("agri-ingest-p0", topics.farm_filters("FARM-A"))
    client = made["agri-ingest-p0"]
    session._on_connect(client, None, None, REFUSED, None)
    assert client.subscriptions() == [] and not session.connected.is_set()
    session._on_connect(client, None, None, OK, None)
    session._on_subscribe(client, None, 1, [OK, REFUSED, OK], None)
    assert not session.subscribed.is_set()


def test_messages_go_to_the_ingesters_one_queue_with_their_session(tmp_path):
    ingester, made = _ingester(tmp_path)
    first = ingester.add_session("agri-ingest-p0", [])
    second = ingester.add_session("agri-ingest-p1", [])
    message = SimpleNamespace(topic=topics.topic("FARM-A", "GW-1", "readings"), payload=b"{}")
    second._on_message(made["agri-ingest-p1"], None, message)
    first._on_message(made["agri-ingest-p0"], None, message)
    assert [s.client_id for s, _ in (ingester._inbox.get_nowait() for _ in range(2))] == [
        "agri-ingest-p1",
        "agri-ingest-p0",
    ]
    assert isinstance(first, Session) and ingester._inbox.empty()


@pytest.mark.parametrize("shared", [True, False])
def test_a_named_ingester_subscribes_every_farm_shared_or_plain(tmp_path, shared):
    made: dict[str, RecordingClient] = {}
    named = Ingester(
        f"sqlite:///{tmp_path / 'agri.db'}",
        "mqtt://agri-ingester:pw@127.0.0.1:1",
        "agri-ingest-HOST",
        open_engine=make_engine,
        domains=domains.INGEST,
        gateway_offline_after=timedelta(minutes=30),
        shared=shared,
        client_factory=lambda cid: made.setdefault(cid, RecordingClient(cid)),
    )
    every = topics.all_filters()
    assert named.sessions["agri-ingest-HOST"].topics == (
        [topics.shared(t) for t in every] if shared else every
    )
    assert list(made) == ["agri-ingest-HOST"]
