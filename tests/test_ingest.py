"""The ingester against a real Mosquitto (the deploy/ settings) and real databases."""

import json
import os
import re
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bioassets import store as bio_store
from collateral import domains
from collateral.db import make_engine, upgrade
from telemetry import farm_alerts, gateways
from telemetry.partitions import DEFAULT_PARTITIONS, partition_client_id, partition_of
from telemetry.writer import BatchWriter
from tests.support.livestock import (
    DEFAULT_OFFLINE_AFTER,
    GATEWAY_PASSWORDS,
    Broker,
    Gateway,
    ingesting,
    message,
    reading,
    seed_livestock,
)
from tests.support.processes import AgriProcess
from tests.support.waiting import wait_for

SOW_TAGS = [f"156{100000000000 + i:012d}" for i in range(1, 181)]
FAT_TAGS = [f"156{100000000000 + i:012d}" for i in range(181, 481)]
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=12)


def test_known_stream_stores_exactly_the_valid_unique_readings(livestock_engine, broker):
    engine = livestock_engine
    expected: set[tuple[str, datetime]] = set()
    gw = Gateway(broker, "GW-SOW-1")
    with ingesting(engine, broker, client_id=f"known-{uuid.uuid4().hex[:6]}"):
        seq = 0
        for batch in range(10):  # 10 messages x 20 readings, some repeated below
            items = []
            for k in range(20):
                at = T0 + timedelta(minutes=batch * 20 + k)
                items.append(reading(SOW_TAGS[k], at, temperature_c=38.5, lat=25.039, lon=118.222))
                expected.add((SOW_TAGS[k], at))
            seq += 1
            gw.publish(message("GW-SOW-1", seq, items))
            if batch in (3, 7):  # the gateway resends a batch: duplicates
                gw.publish(message("GW-SOW-1", seq, items))
        late = [
            reading(SOW_TAGS[50], T0 - timedelta(days=3)),
            reading(SOW_TAGS[51], T0 - timedelta(days=2)),
        ]
        expected |= {(SOW_TAGS[50], T0 - timedelta(days=3)), (SOW_TAGS[51], T0 - timedelta(days=2))}
        gw.publish(message("GW-SOW-1", 100, list(reversed(late))))  # late and out of order
        mixed = [
            reading(SOW_TAGS[60], T0 + timedelta(minutes=1)),
            reading("12345", T0 + timedelta(minutes=1)),  # bad tag id
            reading(SOW_TAGS[61], datetime.now(UTC) + timedelta(hours=1)),  # future
            reading(FAT_TAGS[0], T0 + timedelta(minutes=2)),  # another farm's tag
            reading(SOW_TAGS[62], T0 + timedelta(minutes=3), temperature_c=99),  # absurd
        ]
        expected.add((SOW_TAGS[60], T0 + timedelta(minutes=1)))
        gw.publish(message("GW-SOW-1", 101, mixed))
        gw.publish(b"{not json", kind="readings")
        gw.publish(
            json.dumps(
                {
                    "schema": "readings/v1",
                    "gateway_id": "GW-OTHER",
                    "sent_at": T0.isoformat(),
                    "seq": 102,
                    "readings": [],
                }
            ).encode()
        )
        gw.publish(
            json.dumps(
                {
                    "schema": "events/v1",
                    "gateway_id": "GW-SOW-1",
                    "sent_at": T0.isoformat(),
                    "readings": [],
                }
            ).encode()
        )
        assert wait_for(lambda: len(gateways.list_rejects(engine)) >= 7)
        ok = wait_for(lambda: bio_store.count_readings(engine) >= len(expected))
        assert ok, (
            bio_store.count_readings(engine),
            len(expected),
            sorted(expected - bio_store.reading_keys(engine))[:3],
            sorted(bio_store.reading_keys(engine) - expected)[:3],
        )
        assert wait_for(lambda: len(gw.notices) >= 4, timeout=10)
        handled = {*range(1, 11), 100, 101, 102}
        assert wait_for(lambda: gw.committed_seqs() >= handled, timeout=10), gw.committed
    gw.close()
    assert bio_store.reading_keys(engine) == expected
    reasons = [r["reason"] for r in gateways.list_rejects(engine, "GW-SOW-1")]
    assert len(reasons) == 7, reasons
    joined = "\n".join(reasons)
    assert "reading 1: tag_id" in joined and "not 15 digits" in joined
    assert "reading 2: observed_at is more than 5 minutes in the future" in joined
    assert f"tag {FAT_TAGS[0]} is registered to farm 'FARM-FAT'" in joined
    assert "reading 4: temperature_c" in joined
    assert "payload is not JSON" in joined
    assert "does not match the topic" in joined
    assert "schema 'events/v1' on a readings topic" in joined
    raw = {r["raw"] for r in gateways.list_rejects(engine, "GW-SOW-1")}
    assert "{not json" in raw
    assert any(n["seq"] == 101 and len(n["rejected"]) == 4 for n in gw.notices)
    # after each commit the gateway is told which of its messages are handled: stored,
    # partly rejected (101) or refused whole but numbered (102); never the unnumbered ones
    assert gw.committed_seqs() == handled


def test_a_batch_holding_duplicates_stores_each_reading_once(livestock_engine):
    """Within one batch, repeats (in one message, or a resent message) are left to the
    insert to skip; the same instant written in another time zone is the same reading."""
    writer = BatchWriter(livestock_engine, domains.INGEST, DEFAULT_OFFLINE_AFTER)
    topic = "agri/v1/farms/FARM-SOW/gateways/GW-SOW-1/readings"
    items = [reading(SOW_TAGS[0], T0), reading(SOW_TAGS[1], T0), reading(SOW_TAGS[0], T0)]
    payload = message("GW-SOW-1", 1, items)
    stored = writer.store([(topic, payload), (topic, payload)])
    assert (stored.inserted, stored.rejects, stored.duplicates) == (2, 0, 4)
    shanghai = T0.astimezone(timezone(timedelta(hours=8)))
    later = T0 + timedelta(seconds=1, microseconds=250)
    again = message("GW-SOW-1", 2, [reading(SOW_TAGS[0], shanghai), reading(SOW_TAGS[0], later)])
    stored = writer.store([(topic, again)])
    assert (stored.inserted, stored.rejects, stored.duplicates) == (1, 0, 1)
    keys = bio_store.reading_keys(livestock_engine)
    assert keys == {(SOW_TAGS[0], T0), (SOW_TAGS[1], T0), (SOW_TAGS[0], later)}


def test_events_update_the_registry(livestock_engine, broker):
    engine = livestock_engine
    gw = Gateway(broker, "GW-SOW-1")
    died = SOW_TAGS[5]
    with ingesting(engine, broker, client_id=f"events-{uuid.uuid4().hex[:6]}"):
        events = [
            {"kind": "death", "tag_id": died, "occurred_at": T0.isoformat(), "cause": "disease"},
            {
                "kind": "vaccination",
                "tag_id": SOW_TAGS[6],
                "occurred_at": T0.isoformat(),
                "vaccine": "CSF",
            },
            {"kind": "tag_replaced", "tag_id": SOW_TAGS[7], "occurred_at": T0.isoformat()},
        ]
        gw.publish(message("GW-SOW-1", 1, events, kind="events"), kind="events")
        assert wait_for(lambda: bio_store.get_animal(engine, died)["status"] == "dead")
        assert wait_for(lambda: len(gateways.list_rejects(engine)) == 1)
    gw.close()
    assert "tag_replaced needs new_tag_id" in gateways.list_rejects(engine)[0]["reason"]


def test_two_ingesters_share_the_load_and_store_each_reading_once(livestock_engine, broker):
    engine = livestock_engine
    gw = Gateway(broker, "GW-FAT-1")
    expected = set()
    group = uuid.uuid4().hex[:6]
    with (
        ingesting(engine, broker, client_id=f"a-{group}") as a,
        ingesting(engine, broker, client_id=f"b-{group}") as b,
    ):
        for seq in range(200):
            items = [reading(FAT_TAGS[k], T0 + timedelta(seconds=seq * 20 + k)) for k in range(20)]
            expected |= {(i["tag_id"], datetime.fromisoformat(i["observed_at"])) for i in items}
            gw.publish(message("GW-FAT-1", seq, items))
        assert wait_for(lambda: bio_store.count_readings(engine) >= len(expected))
    gw.close()
    assert bio_store.reading_keys(engine) == expected
    assert a.stats.messages > 0 and b.stats.messages > 0
    assert a.stats.messages + b.stats.messages == 200


def test_a_writer_process_killed_mid_stream_is_replaced_and_nothing_is_lost(
    livestock_engine, broker
):
    """SIGKILL the ingester's writer process while it stores: the ingester starts a new
    one, hands it every batch that was not answered (never acknowledged), and each reading
    ends up stored exactly once."""
    engine = livestock_engine
    gw = Gateway(broker, "GW-FAT-1")
    expected = set()
    with ingesting(engine, broker, client_id=f"writer-kill-{uuid.uuid4().hex[:6]}") as worker:
        first_writer = worker._writer.pid
        for seq in range(400):
            items = [reading(FAT_TAGS[k], T0 + timedelta(seconds=seq * 20 + k)) for k in range(20)]
            expected |= {(i["tag_id"], datetime.fromisoformat(i["observed_at"])) for i in items}
            gw.publish(message("GW-FAT-1", seq, items))
            if seq == 150:
                assert wait_for(lambda: worker.stats.batches > 0)
                os.kill(first_writer, signal.SIGKILL)
        assert wait_for(lambda: bio_store.count_readings(engine) >= len(expected), timeout=60)
        assert worker._writer.pid != first_writer and worker.stats.writer_restarts == 1
    gw.close()
    assert bio_store.reading_keys(engine) == expected
    assert bio_store.count_readings(engine) == len(expected)


def test_acl_keeps_a_gateway_out_of_another_farm_and_bad_passwords_out(broker):
    gw = Gateway(broker, "GW-SOW-1")
    info = gw.publish(message("GW-SOW-1", 1, [reading(FAT_TAGS[0], T0)]), farm_id="FARM-FAT")
    assert wait_for(lambda: info.mid in gw.acks, timeout=5)
    assert gw.acks[info.mid].is_failure  # PUBACK: not authorized
    gw.close()
    intruder = Gateway(broker, "GW-SOW-1", password="wrong")
    assert intruder.connect_result is not None and intruder.connect_result.is_failure
    intruder.close()


def _ingest_process(tmp_path, broker, db_url: str) -> AgriProcess:
    """A plain `agri ingest`, as an operator or systemd starts it: default options, so the
    default partitions (sessions agri-ingest-pK) and session expiry; ready once every
    partition's session is subscribed."""
    env = {"AGRI_DATABASE_URL": db_url, "AGRI_MQTT_URL": broker.url()}
    ingester = AgriProcess(["ingest"], env, tmp_path / "ingest.log")
    ingester.wait_ready()
    return ingester


@pytest.mark.broker
@pytest.mark.slow
def test_a_plain_restart_after_sigkill_collects_everything_the_broker_kept(tmp_path):
    """Two plain `agri ingest` runs with a SIGKILL between them, then a SIGTERM and a
    downtime: the restart comes back under the same default client id, collects what the
    broker kept for its session (queued, and sent but never acknowledged), and every
    reading is stored exactly once."""
    broker = Broker(tmp_path / "mosquitto")  # its own: the default session must not linger
    db_url = f"sqlite:///{tmp_path / 'agri.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    seed_livestock(engine)
    gw = Gateway(broker, "GW-CAT-1")
    cattle = [f"156{100000000000 + i:012d}" for i in range(481, 601)]
    sent: dict[int, set] = {}

    def publish(first: int, count: int, per_message: int = 20) -> None:
        for seq in range(first, first + count):
            items = [
                reading(cattle[k % len(cattle)], T0 + timedelta(seconds=seq * per_message + k))
                for k in range(per_message)
            ]
            sent[seq] = {(i["tag_id"], datetime.fromisoformat(i["observed_at"])) for i in items}
            gw.publish(message("GW-CAT-1", seq, items))

    try:
        # the first start creates the session: what is published before it subscribes has
        # no subscriber to be kept for (every later restart finds its session waiting)
        ingester = _ingest_process(tmp_path, broker, db_url)
        publisher = threading.Thread(target=publish, args=(0, 300))
        publisher.start()
        assert wait_for(lambda: bio_store.count_readings(engine) > 1000, timeout=30)
        ingester.process.send_signal(signal.SIGKILL)  # mid-stream, no chance to drain
        ingester.process.wait()
        ingester.close()
        publisher.join()
        ingester = _ingest_process(tmp_path, broker, db_url)
        expected = set().union(*sent.values())
        assert wait_for(lambda: bio_store.count_readings(engine) >= len(expected), timeout=60)
        ingester.process.send_signal(signal.SIGTERM)
        assert ingester.process.wait(30) == 0  # SIGTERM drains and exits cleanly
        ingester.close()
        publish(300, 2000, per_message=5)  # while the ingester is down
        ingester = _ingest_process(tmp_path, broker, db_url)
        expected = set().union(*sent.values())
        assert wait_for(lambda: bio_store.count_readings(engine) >= len(expected), timeout=120)
        ingester.process.send_signal(signal.SIGTERM)
        assert ingester.process.wait(30) == 0
        ingester.close()
    finally:
        gw.close()
        broker.stop()
    log = (tmp_path / "ingest.log").read_text()
    cattle_session = partition_client_id(partition_of("FARM-CATTLE", DEFAULT_PARTITIONS))
    subscribed = re.findall(rf"subscribed to \S.* as {cattle_session}$", log, re.MULTILINE)
    assert len(subscribed) == 3, log[-2000:]  # each run under the same identity
    stored = bio_store.reading_keys(engine)
    lost = sorted(seq for seq, keys in sent.items() if not keys <= stored)
    assert lost == [], f"messages lost (by gateway seq): {lost[:20]}"
    assert stored == expected  # nothing else, and the primary key forbids duplicates
    assert bio_store.count_readings(engine) == len(expected)


@pytest.mark.parametrize("url", ["http://host:1883", "mqtt://"])
def test_bad_broker_urls_are_refused(url):
    from telemetry.mqtt_connection import parse_mqtt_url

    with pytest.raises(ValueError):
        parse_mqtt_url(url)


def test_simulator_traffic_is_accounted_for_reading_by_reading(livestock_engine, broker):
    from bioassets.simulator import Faults, Simulator

    engine = livestock_engine
    faults = Faults(
        silent_tags=2,
        wanderer=True,
        fever=True,
        duplicates=True,
        out_of_order=True,
        late=True,
        malformed=True,
    )
    sim = Simulator(
        engine,
        broker.url(),
        GATEWAY_PASSWORDS,
        farm_ids=["FARM-SOW"],
        animals_per_farm=100,
        faults=faults,
    )
    with ingesting(engine, broker, client_id=f"sim-{uuid.uuid4().hex[:6]}") as worker:
        stats = sim.run(duration_s=3.0, interval_s=0.4)
        ok = wait_for(lambda: bio_store.count_readings(engine) >= stats.readings, timeout=30)
        assert ok, (
            bio_store.count_readings(engine),
            stats,
            [r["reason"] for r in gateways.list_rejects(engine)][:5],
        )
        assert wait_for(lambda: len(gateways.list_rejects(engine)) >= stats.malformed)
    assert stats.malformed >= 1 and stats.duplicate_messages >= 1
    assert bio_store.count_readings(engine) == stats.readings  # every unique reading, once
    assert worker.stats.rejects == stats.malformed
    # the agent numbered every message but the malformed ones, and the ingester
    # acknowledged them all
    numbered = stats.seq["GW-SOW-1"] - stats.first_seq["GW-SOW-1"] + 1
    assert numbered == stats.messages - stats.duplicate_messages - stats.malformed
    assert stats.unacknowledged == 0


def test_the_running_ingester_raises_alerts(livestock_engine, broker):
    engine = livestock_engine
    gw = Gateway(broker, "GW-SOW-1")
    now = datetime.now(UTC).replace(microsecond=0)
    with ingesting(engine, broker, client_id=f"alerts-{uuid.uuid4().hex[:6]}", alert_interval_s=0):
        gw.publish(message("GW-SOW-1", 1, [reading(SOW_TAGS[9], now, temperature_c=41.5)]))
        gw.publish(message("GW-SOW-1", 2, [reading("156999000000001", now)]))

        def kinds():
            return {
                (a["subject"], a["kind"])
                for a in farm_alerts.list_alerts(engine, "FARM-SOW", open_only=True)
            }

        assert wait_for(
            lambda: {(SOW_TAGS[9], "fever"), ("156999000000001", "unknown_tag")} <= kinds()
        )
    gw.close()


def test_a_locked_sqlite_database_makes_the_ingester_wait_not_drop(tmp_path, broker):
    import sqlite3

    from collateral.db import upgrade

    db = tmp_path / "agri.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    seed_livestock(engine)
    gw = Gateway(broker, "GW-SOW-1")
    blocker = sqlite3.connect(db, isolation_level=None)
    with ingesting(engine, broker, client_id=f"locked-{uuid.uuid4().hex[:6]}"):
        blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        for seq in range(20):
            gw.publish(
                message("GW-SOW-1", seq, [reading(SOW_TAGS[seq], T0 + timedelta(minutes=seq))])
            )
        time.sleep(2.0)
        assert bio_store.count_readings(engine) == 0  # waiting, not failing, not skipping
        blocker.execute("ROLLBACK")  # the lock goes away
        assert wait_for(lambda: bio_store.count_readings(engine) == 20, timeout=60)
    blocker.close()
    gw.close()


def test_a_gateway_that_loses_power_is_reported_offline_by_its_will(livestock_engine, broker):
    engine = livestock_engine
    status = "agri/v1/farms/FARM-FAT/gateways/GW-FAT-1/status"
    with ingesting(engine, broker, client_id=f"will-{uuid.uuid4().hex[:6]}", alert_interval_s=0):
        # a gateway with a last will, then a dead socket
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="will-gw", protocol=mqtt.MQTTv5)
        client.username_pw_set("GW-FAT-1", GATEWAY_PASSWORDS["GW-FAT-1"])
        client.will_set(status, b'{"status": "offline"}', qos=1)
        client.connect(broker.host, broker.port, keepalive=5)
        client.loop_start()
        client.publish(status, b"online", qos=1).wait_for_publish(5)
        now = datetime.now(UTC).replace(microsecond=0)
        client.publish(
            "agri/v1/farms/FARM-FAT/gateways/GW-FAT-1/readings",
            message("GW-FAT-1", 1, [reading(FAT_TAGS[3], now - timedelta(seconds=5))]),
            qos=1,
        ).wait_for_publish(5)
        assert wait_for(
            lambda: gateways.gateway_statuses(engine).get("GW-FAT-1", ("",))[0] == "online"
        )
        client.loop_stop()
        client.socket().close()  # power cut: no DISCONNECT, the broker sends the will

        def offline() -> bool:
            return any(
                a["kind"] == "gateway_offline" and "MQTT will" in a["detail"]
                for a in farm_alerts.list_alerts(engine, "FARM-FAT", open_only=True)
            )

        assert wait_for(offline, timeout=30)


def test_the_agent_s_message_numbers_are_stored_whole(livestock_engine):
    """The reference agent numbers a new outbox from the time in milliseconds (about
    1.8e12): past 32 bits, which PostgreSQL's binary COPY once wrote truncated."""
    from sqlalchemy import select

    from bioassets.tables import readings

    writer = BatchWriter(livestock_engine, domains.INGEST, DEFAULT_OFFLINE_AFTER)
    topic = "agri/v1/farms/FARM-SOW/gateways/GW-SOW-1/readings"
    seq = 1_765_000_000_123
    writer.store([(topic, message("GW-SOW-1", seq, [reading(SOW_TAGS[0], T0)]))])
    with livestock_engine.connect() as c:
        assert c.execute(select(readings.c.seq)).scalar_one() == seq
