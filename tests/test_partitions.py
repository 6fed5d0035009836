"""Ingest partitions: leases on a real PostgreSQL (and SQLite), and `agri ingest
--partitions` processes on a real Mosquitto surviving a broker restart and a dead peer."""

import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

from bioassets import store as bio_store
from collateral.db import make_engine, upgrade
from telemetry import partitions
from telemetry import topics as topics_module
from telemetry.partitions import Leases
from tests.support.databases import fresh_postgres_database
from tests.support.livestock import Broker, Gateway, message, reading, seed_livestock, wait_for
from tests.support.processes import AgriProcess, partitions_served

PARTITIONS = 4
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)


def test_a_farm_always_lands_in_the_same_partition():
    farms = {f"FARM-{i}" for i in range(200)}
    placed = {f: partitions.partition_of(f, 8) for f in farms}
    assert set(placed.values()) == set(range(8))  # all partitions used
    assert placed == {f: partitions.partition_of(f, 8) for f in farms}  # stable
    topics = partitions.partition_topics({"FARM-SOW", "FARM-FAT"}, 0, 1)
    assert "agri/v1/farms/FARM-SOW/gateways/+/readings" in topics and len(topics) == 2 * len(
        topics_module.FROM_GATEWAY
    )
    assert partitions.partition_client_id(3) == "agri-ingest-p3"
    assert [partitions.fair_share(8, m) for m in (0, 1, 2, 3)] == [8, 8, 4, 3]


@pytest.mark.postgres
def test_leases_share_the_partitions_and_a_dead_holder_releases_them():
    with (
        fresh_postgres_database("agri_leases") as url,
        fresh_postgres_database("agri_other_bank") as other,
    ):
        elsewhere = Leases(other, PARTITIONS)  # another database on the same server
        assert elsewhere.refresh() == {0, 1, 2, 3}  # is not a member of this one
        a, b = Leases(url, PARTITIONS), Leases(url, PARTITIONS)
        try:
            assert a.refresh() == {0, 1, 2, 3}  # alone: all of them
            assert b.refresh() == set()  # all taken, but b is now a member
            keep = a.refresh()  # two members: a keeps its fair share...
            assert keep == {0, 1}
            for k in a.held - keep:  # ...and gives the rest back once their sessions stopped
                a.give_back(k)
            assert b.refresh() == {2, 3}
            a.close()  # its connection ends: the server releases its locks
            assert b.refresh() == {0, 1, 2, 3}
        finally:
            a.close()
            b.close()
            elsewhere.close()


def test_on_sqlite_one_process_serves_every_partition(tmp_path):
    url = f"sqlite:///{tmp_path / 'agri.db'}"
    a, b = Leases(url, PARTITIONS), Leases(url, PARTITIONS)
    try:
        assert a.refresh() == {0, 1, 2, 3}
        assert b.refresh() == set()
        a.close()
        assert b.refresh() == {0, 1, 2, 3}
    finally:
        a.close()
        b.close()


@pytest.mark.postgres
@pytest.mark.broker
@pytest.mark.slow
def test_partitioned_ingesters_survive_a_broker_restart_and_a_dead_peer(tmp_path):
    with fresh_postgres_database("agri_partitions") as url:
        engine = make_engine(url)
        upgrade(engine)
        seed_livestock(engine)
        broker = Broker(tmp_path / "mosquitto")
        env = {"AGRI_DATABASE_URL": url, "AGRI_MQTT_URL": broker.url()}
        args = ["ingest", "--partitions", str(PARTITIONS)]
        ingesters = [AgriProcess(args, env, tmp_path / f"ingest-{k}.log") for k in range(2)]
        gateways = {g: Gateway(broker, g) for g in ("GW-SOW-1", "GW-FAT-1", "GW-CAT-1")}
        tags = {
            g: [a["tag_id"] for a in bio_store.farm_animals(engine, gw.farm_id)][:20]
            for g, gw in gateways.items()
        }
        sent: set = set()
        seq = 0

        def publish(rounds: int) -> None:
            nonlocal seq
            for _ in range(rounds):
                seq += 1
                for g, gw in gateways.items():
                    items = [reading(t, T0 + timedelta(seconds=seq, milliseconds=i))
                             for i, t in enumerate(tags[g])]  # fmt: skip
                    sent.update((i["tag_id"], datetime.fromisoformat(i["observed_at"]))
                                for i in items)  # fmt: skip
                    gw.publish(message(g, seq, items))

        try:
            # the two share the partitions between them
            both = lambda: [partitions_served(p.log) for p in ingesters]  # noqa: E731
            assert wait_for(lambda: sorted(len(h) for h in both()) == [2, 2], timeout=60), both()
            assert set().union(*both()) == set(range(PARTITIONS))
            publish(10)
            assert wait_for(lambda: bio_store.count_readings(engine) >= len(sent), timeout=60)

            # the broker restarts (it saves the plain sessions and their subscriptions):
            # what gateways publish before the ingesters are back is kept for them
            broker.stop()
            broker.start()
            # the gateways reconnect (paho, with back-off) before they can publish
            connected = lambda: all(gw.client.is_connected() for gw in gateways.values())  # noqa: E731
            assert wait_for(connected, timeout=30)
            publish(10)
            stored = lambda: bio_store.count_readings(engine) >= len(sent)  # noqa: E731
            assert wait_for(stored, timeout=90), (bio_store.count_readings(engine), len(sent))
            after_restart = bio_store.count_readings(engine)

            # one ingester dies for good; the other takes its partitions over and drains
            # what the broker kept in their sessions
            victim, survivor = ingesters
            orphaned = partitions_served(victim.log)
            seen = len(survivor.log.read_text())
            victim.process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            publish(10)  # into the dead one's sessions too: the broker keeps it for them

            def subscribed_again() -> bool:
                later = survivor.log.read_text()[seen:].splitlines()
                done = [line for line in later if "subscribed to" in line]
                ids = [partitions.partition_client_id(k) for k in orphaned]
                return all(any(line.endswith(f" as {c}") for line in done) for c in ids)

            assert wait_for(subscribed_again, timeout=60, interval=0.05), survivor.log.read_text()[
                -2000:
            ]
            takeover_s = time.monotonic() - killed  # lease taken and its session subscribed
            assert partitions_served(survivor.log) == set(range(PARTITIONS))
            assert wait_for(stored, timeout=90), (bio_store.count_readings(engine), len(sent))
            keys = bio_store.reading_keys(engine)
        finally:
            for gw in gateways.values():
                gw.close()
            for p in ingesters:
                if p.process.poll() is None:
                    p.process.terminate()
                    p.process.wait(60)
                p.close()
            broker.stop()
            engine.dispose()
    print(
        f"partitions: sent {len(sent)}, stored {len(keys & sent)}, lost {len(sent - keys)}; "
        f"{after_restart} stored across the broker restart; take-over {takeover_s:.1f} s"
    )
    assert keys == sent
    assert takeover_s < 30
