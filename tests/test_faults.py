"""Faults against the real components: a broker restarted in the middle of a stream."""

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bioassets import store as bio_store
from collateral import domains
from collateral.db import engine_url, make_engine, upgrade
from telemetry import accounts
from telemetry.ingester import Ingester
from tests.support.livestock import (
    DEFAULT_OFFLINE_AFTER,
    GATEWAY_PASSWORDS,
    Broker,
    message,
    reading,
    seed_livestock,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CATTLE = [f"156{100000000000 + i:012d}" for i in range(481, 601)]


class PersistentGateway:
    """A gateway as a real one should be: an MQTT 5 session that outlives a disconnect, so
    what it published but saw no PUBACK for is sent again after reconnecting."""

    def __init__(self, broker):
        self.acked: set[int] = set()
        self.lock = threading.Lock()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"GW-CAT-1-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set("GW-CAT-1", GATEWAY_PASSWORDS["GW-CAT-1"])
        client.max_inflight_messages_set(50)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.on_publish = self._on_publish
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 600
        client.connect(broker.host, broker.port, clean_start=False, properties=properties)
        client.loop_start()
        self.client = client

    def _on_publish(self, _client, _userdata, mid, _rc, _properties) -> None:
        with self.lock:
            self.acked.add(mid)

    def publish(self, payload: bytes) -> int:
        info = self.client.publish(
            "agri/v1/farms/FARM-CATTLE/gateways/GW-CAT-1/readings", payload, 1
        )
        return info.mid  # queued by paho even while disconnected, sent after reconnecting

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_broker_restart_mid_stream_loses_and_duplicates_nothing(tmp_path):
    """A single ingester on a plain persistent subscription (`agri ingest --no-shared`):
    Mosquitto saves its queue on SIGTERM and restores it; the gateway resends what it had
    no PUBACK for. (With a shared subscription Mosquitto 2.0 drops what arrives before the
    group resubscribes: see README, "Broker restarts".)"""
    broker = Broker(tmp_path / "mosquitto")
    engine = make_engine(f"sqlite:///{tmp_path / 'agri.db'}")
    upgrade(engine)
    seed_livestock(engine)
    worker = Ingester(
        engine_url(engine),
        broker.url(),
        "restart-ingester",
        open_engine=make_engine,
        domains=domains.INGEST,
        gateway_offline_after=DEFAULT_OFFLINE_AFTER,
        batch_ms=50,
        session_expiry_s=600,
        shared=False,
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.wait_subscribed(10)
    gateway = PersistentGateway(broker)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    sent, mids = {}, []
    try:
        for seq in range(600):
            items = [
                reading(CATTLE[k % 120], start + timedelta(seconds=seq * 10 + k)) for k in range(10)
            ]
            sent[seq] = {(i["tag_id"], datetime.fromisoformat(i["observed_at"])) for i in items}
            mids.append(gateway.publish(message("GW-CAT-1", seq, items)))
            if seq == 200:
                broker.stop()  # SIGTERM: Mosquitto saves its persistence file
                time.sleep(1.0)
                broker.start()
            time.sleep(0.003)
        assert wait_for(lambda: gateway.acked >= set(mids), timeout=60), "PUBACKs missing"
        expected = set().union(*sent.values())
        assert wait_for(lambda: bio_store.count_readings(engine) >= len(expected), timeout=60)
        time.sleep(1.0)  # anything redelivered late must still find its row there
    finally:
        gateway.close()
        worker.stop()
        thread.join(30)
        broker.stop()
    stored = bio_store.reading_keys(engine)
    lost = sorted(seq for seq, keys in sent.items() if not keys <= stored)
    assert lost == [], f"messages lost (by gateway seq): {lost[:20]}"
    assert stored == expected and bio_store.count_readings(engine) == len(expected)
    assert worker.stats.readings_stored == len(expected)  # each row written once


@pytest.mark.postgres
def test_a_postgres_restart_during_ingestion_makes_it_wait_and_lose_nothing(broker, tmp_path):
    """`agri ingest` as deployed (partitions on PostgreSQL advisory locks): PostgreSQL
    restarted mid-stream cuts the writer's connection and the leases' one. The writer
    waits; the sessions stop with their leases, the broker keeps their queues, and once
    the locks are taken again the sessions drain them: every reading stored once."""
    from tests.support.livestock import Gateway
    from tests.support.private_postgres import PrivatePostgres
    from tests.support.processes import AgriProcess

    pg = PrivatePostgres().start()
    engine = make_engine(pg.url())
    log = tmp_path / "ingest.log"
    try:
        upgrade(engine)
        seed_livestock(engine)
        env = {"AGRI_DATABASE_URL": pg.url(), "AGRI_MQTT_URL": broker.url()}
        ingest = AgriProcess(["ingest", "--session-expiry", "60"], env, log)
        ingest.wait_ready(60)
        gateway = Gateway(broker, "GW-CAT-1")
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        sent = {}

        def publish() -> None:
            for seq in range(400):
                items = [
                    reading(CATTLE[k % 120], start + timedelta(seconds=seq * 20 + k))
                    for k in range(20)
                ]
                sent[seq] = {(i["tag_id"], datetime.fromisoformat(i["observed_at"])) for i in items}
                gateway.publish(message("GW-CAT-1", seq, items))
                time.sleep(0.005)

        try:
            publisher = threading.Thread(target=publish)
            publisher.start()
            assert wait_for(lambda: bio_store.count_readings(engine) > 1000, timeout=30)
            pg.restart(down_s=2.0)  # fast shutdown: every open connection is cut
            publisher.join()
            expected = set().union(*sent.values())
            assert wait_for(lambda: bio_store.count_readings(engine) >= len(expected), timeout=90)
        finally:
            gateway.close()
            ingest.process.terminate()
            assert ingest.process.wait(60) == 0
            ingest.close()
        text = log.read_text()
        assert "partition leases lost with the database connection" in text  # met the outage
        stored = bio_store.reading_keys(engine)
        lost = sorted(s for s, keys in sent.items() if not keys <= stored)
        print(f"postgres restart: sent {len(expected)}, stored {len(stored)}, lost {len(lost)}")
        assert lost == []
        assert stored == expected and bio_store.count_readings(engine) == len(expected)
    finally:
        engine.dispose()
        pg.destroy()


@pytest.mark.postgres
def test_a_postgres_restart_during_an_imagery_run_redoes_the_scene(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from remote_sensing import store as rs_store
    from remote_sensing.imagery.job import run_inbox
    from remote_sensing.parcels import read_parcel_file
    from tests.support.paths import REPO_ROOT, SAMPLE_TILES
    from tests.support.private_postgres import PrivatePostgres

    parcels = read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels
    reference = make_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    upgrade(reference)
    rs_store.upsert_parcels(reference, parcels)
    run_inbox(reference, SAMPLE_TILES / "scenes", tmp_path / "ref-data")

    pg = PrivatePostgres().start()
    engine = make_engine(pg.url())
    try:
        upgrade(engine)
        rs_store.upsert_parcels(engine, parcels)
        env = {**os.environ, "AGRI_DATABASE_URL": pg.url(), "AGRI_DATA_DIR": str(tmp_path / "d")}
        job = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "collateral.cli",
                "imagery",
                "run",
                "--inbox",
                str(SAMPLE_TILES / "scenes"),
                "--json",
            ],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        done = lambda: sum(r["status"] == "done" for r in rs_store.scene_ledger(engine))  # noqa: E731
        assert wait_for(lambda: done() >= 3, timeout=120, interval=0.05)
        pg.restart(down_s=3.0)
        out, err = job.communicate(timeout=300)
        assert job.returncode == 0, err
        summary = json.loads(out)
        assert summary["processed"] == 30 and summary["failed"] == 0
        assert "database unavailable during scene" in err and "retrying in" in err

        def observations(eng):
            from sqlalchemy import select

            from remote_sensing.tables import observations as table

            with eng.connect() as c:
                rows = c.execute(select(table.c.parcel_id, table.c.scene_id, table.c.ndvi_mean))
                return sorted((p, s, round(m, 6) if m is not None else None) for p, s, m in rows)

        assert observations(engine) == observations(reference)  # each scene once, all there
        ledger = rs_store.scene_ledger(engine)
        assert len({r["scene_id"] for r in ledger if r["status"] == "done"}) == 30
    finally:
        engine.dispose()
        pg.destroy()


# --- MQTT over TLS, with a CA made by the test ----------------------------------------


def _test_ca(folder) -> tuple:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl, as an operator would)."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.crt", "s.key", "s.csr", "s.crt")
    )
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def openssl(*args) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        ca_key,
        "-out",
        ca,
        "-days",
        "2",
        "-subj",
        "/CN=agri test CA",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        csr,
        "-subj",
        "/CN=127.0.0.1",
    )
    openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        "2",
        "-extfile",
        ext,
    )
    for path in (key, cert, ca):
        path.chmod(0o644)
    return ca, cert, key


def _tls_client(broker, user: str, password: str, ca) -> tuple:
    """A paho MQTT 5 client over TLS; returns (client, connect reason code or the error)."""
    import ssl

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{user}-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(user, password)
    client.tls_set(ca_certs=str(ca) if ca else None, cert_reqs=ssl.CERT_REQUIRED)
    result: dict = {}
    connected = threading.Event()

    def on_connect(_c, _u, _f, reason_code, _p) -> None:
        result["code"] = reason_code
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(broker.host, broker.port)
    except Exception as exc:  # an untrusted server certificate fails the handshake here
        return client, exc
    client.loop_start()
    connected.wait(10)
    return client, result.get("code")


def test_mqtt_over_tls_for_gateways_and_the_ingester(tmp_path):
    from tests.support.livestock import GATEWAY_FARMS, INGESTER_PASSWORD

    ca, cert, key = _test_ca(tmp_path / "ca")
    gateways = [
        {"gateway_id": g, "farm_id": GATEWAY_FARMS[g], "password_hash": accounts.mosquitto_hash(p)}
        for g, p in GATEWAY_PASSWORDS.items()
    ]
    from telemetry.local_broker import LocalBroker

    broker = LocalBroker(tmp_path / "mosquitto", gateways, INGESTER_PASSWORD, (ca, cert, key))
    broker.start()
    engine = make_engine(f"sqlite:///{tmp_path / 'agri.db'}")
    upgrade(engine)
    seed_livestock(engine)
    url = broker.url(password=INGESTER_PASSWORD)
    assert url.startswith("mqtts://")
    worker = Ingester(
        engine_url(engine),
        url,
        "tls-ingester",
        open_engine=make_engine,
        domains=domains.INGEST,
        gateway_offline_after=DEFAULT_OFFLINE_AFTER,
        batch_ms=50,
        session_expiry_s=0,
        ca_file=str(ca),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert worker.wait_subscribed(10), "the ingester did not subscribe over TLS"
        gateway, code = _tls_client(broker, "GW-CAT-1", GATEWAY_PASSWORDS["GW-CAT-1"], ca)
        assert code is not None and not code.is_failure, code
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        for seq in range(50):
            items = [reading(CATTLE[k], at + timedelta(seconds=seq * 10 + k)) for k in range(10)]
            topic = "agri/v1/farms/FARM-CATTLE/gateways/GW-CAT-1/readings"
            gateway.publish(topic, message("GW-CAT-1", seq, items), 1).wait_for_publish(10)
        # the ACL holds over TLS too: another farm's topic is refused by the broker
        gateway.publish(
            "agri/v1/farms/FARM-SOW/gateways/GW-CAT-1/readings",
            message("GW-CAT-1", 99, [reading(CATTLE[0], at - timedelta(days=1))]),
            1,
        ).wait_for_publish(10)
        assert wait_for(lambda: bio_store.count_readings(engine) >= 500, timeout=30)
        time.sleep(0.5)
        assert bio_store.count_readings(engine) == 500  # nothing from the refused topic
        gateway.disconnect()
        gateway.loop_stop()

        intruder, code = _tls_client(broker, "GW-CAT-1", "wrong password", ca)
        assert code is not None and code.is_failure  # refused by the broker
        intruder.loop_stop()
        stranger, error = _tls_client(broker, "GW-CAT-1", GATEWAY_PASSWORDS["GW-CAT-1"], None)
        assert isinstance(error, Exception) and "certificate" in str(error).lower()
    finally:
        worker.stop()
        thread.join(30)
        broker.stop()


def test_a_database_error_while_a_scenes_profiles_are_built_is_raised(postgres_url):
    """The imagery job advances a scene's profiles inside its transaction (while its COG is
    written). A database error there has lost the transaction: it must reach the scene's
    retry, not be logged and kept (the next statement then failed with "invalid
    transaction", which is no reason to retry, and a PostgreSQL restart failed the scene)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from remote_sensing.imagery import job
    from remote_sensing.profiles.profile_update import NOTHING_PENDING

    engine = make_engine(postgres_url)
    upgrade(engine)
    try:
        with engine.connect() as conn:  # its transaction begins with the first statement
            backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with engine.connect() as other:  # the server ends the scene's connection
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
            meanwhile = job._ProfilesMeanwhile()
            with pytest.raises(DBAPIError) as raised:
                meanwhile(conn, "S2A-SCENE", ["T-01"], NOTHING_PENDING)
            assert raised.value.connection_invalidated
            assert meanwhile.advanced == set()
    finally:
        engine.dispose()
