"""One retry policy for "the database is briefly away": real outages are waited for,
anything else (a schema that does not match, bad SQL) fails at once with its message,
in the policy itself, in the ingester's writer and in a running `agri ingest`."""

import signal
import sqlite3
import threading

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from agri_common.retry import DatabaseUnavailable, is_transient, with_retries
from bioassets import store as bio_store
from collateral import domains
from collateral.db import make_engine, upgrade
from telemetry.local_broker import free_port
from telemetry.writer import BatchWriter
from tests.support.livestock import (
    DEFAULT_OFFLINE_AFTER,
    Broker,
    Gateway,
    message,
    reading,
    seed_livestock,
)
from tests.support.processes import AgriProcess
from tests.support.waiting import wait_for


def _error(engine, sql: str) -> DBAPIError:
    with pytest.raises(DBAPIError) as caught, engine.connect() as conn:
        conn.execute(text(sql))
    return caught.value


def test_sqlite_busy_is_an_outage_a_missing_table_is_not(tmp_path):
    path = tmp_path / "agri.db"
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    assert not is_transient(_error(engine, "SELECT * FROM no_such_table"))
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        assert "locked" in str(caught.value) and is_transient(caught.value)
    finally:
        holder.rollback()
        holder.close()
    engine.dispose()


def test_postgresql_unreachable_is_an_outage_a_missing_table_is_not(postgres_url):
    refused = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres")
    assert is_transient(_error(refused, "SELECT 1"))
    engine = make_engine(postgres_url)
    missing = _error(engine, "SELECT * FROM no_such_table")
    assert missing.orig.sqlstate == "42P01" and not is_transient(missing)
    engine.dispose()


def test_the_policy_waits_through_an_outage_and_gives_up_when_told(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}", connect_args={"timeout": 0.05})
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    holder = sqlite3.connect(tmp_path / "a.db")
    holder.execute("BEGIN EXCLUSIVE")
    waits = []

    def insert() -> int:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        return 1

    def release_after_two(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            holder.rollback()

    assert with_retries(insert, [1, 2, 4], "a test", sleep=release_after_two) == (1, 2)
    assert waits == [1, 2]
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(DatabaseUnavailable) as gave_up:
        with_retries(insert, [1, 2, 4], "a test", sleep=lambda _s: None)
    assert gave_up.value.retries == 3 and "during a test" in str(gave_up.value)
    with pytest.raises(DatabaseUnavailable) as told:
        with_retries(insert, [1, 2, 4], "a test", give_up=lambda d: d >= 2, sleep=lambda _s: None)
    assert told.value.retries == 1
    holder.rollback()
    holder.close()
    engine.dispose()


def test_the_writer_does_not_retry_a_schema_mismatch(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'agri.db'}")
    upgrade(engine)
    seed_livestock(engine)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE readings RENAME TO readings_elsewhere"))
    writer = BatchWriter(engine, domains.INGEST, DEFAULT_OFFLINE_AFTER)
    topic = "agri/v1/farms/FARM-SOW/gateways/GW-SOW-1/readings"
    payload = message("GW-SOW-1", 1, [reading("156100000000001", _now())])
    outcome: list = []
    worker = threading.Thread(
        target=lambda: outcome.append(_raised(writer.store_until_done, [(topic, payload)])),
        daemon=True,
    )
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the writer kept retrying a schema mismatch"
    assert isinstance(outcome[0], DBAPIError) and "no such table" in str(outcome[0])
    engine.dispose()


@pytest.mark.broker
def test_a_running_ingester_stops_on_a_schema_mismatch_and_loses_nothing(tmp_path):
    """`agri ingest` exits 1 with the database's message, acknowledges nothing; once the
    schema is put right, a plain restart stores what the broker kept."""
    broker = Broker(tmp_path / "mosquitto")
    url = f"sqlite:///{tmp_path / 'agri.db'}"
    engine = make_engine(url)
    upgrade(engine)
    seed_livestock(engine)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE readings RENAME TO readings_elsewhere"))
    env = {"AGRI_DATABASE_URL": url, "AGRI_MQTT_URL": broker.url()}
    log = tmp_path / "ingest.log"
    try:
        ingester = AgriProcess(["ingest"], env, log)
        ingester.wait_ready()
        gateway = Gateway(broker, "GW-SOW-1")
        gateway.client.publish(
            "agri/v1/farms/FARM-SOW/gateways/GW-SOW-1/readings",
            message("GW-SOW-1", 1, [reading("156100000000001", _now())]),
            qos=1,
        )
        assert ingester.process.wait(60) == 1
        ingester.close()
        assert "no such table: readings" in log.read_text()
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE readings_elsewhere RENAME TO readings"))
        assert bio_store.count_readings(engine) == 0
        ingester = AgriProcess(["ingest"], env, log)
        ingester.wait_ready()
        assert wait_for(lambda: bio_store.count_readings(engine) == 1, timeout=30)
        ingester.process.send_signal(signal.SIGTERM)
        assert ingester.process.wait(30) == 0
        ingester.close()
        gateway.close()
    finally:
        broker.stop()
    engine.dispose()


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC).replace(microsecond=0)


def _raised(function, *args):
    try:
        function(*args, give_up=lambda: False)
    except Exception as exc:
        return exc
    return None
