"""The MQTT ingester: receive, validate, store, then acknowledge.

Two processes, so that parsing and SQL never compete with the network for one
interpreter lock (on one process the ingester stalled at one core while the other sat
idle). In the ingester's process the paho network thread only moves bytes:
``on_message`` puts the message on a queue; the caller's thread takes batches bounded by
rows and milliseconds and hands them to the writer process (``writer.py``), which parses
them (``payloads.py``, with the domains' schemas), commits what the domains store and
the rejects in one transaction and answers; only then does the ingester send the PUBACKs
(paho manual ack) and tell each gateway which of its messages are committed
(``acks.py``). A message whose rows are not committed is never acknowledged, so the
broker redelivers it after a crash of either process, to the same client id
(``mqtt_connection.ingester_client_id``: stable across restarts); duplicates are dropped
by each domain's own keys. The broker never has more than
``receive_maximum`` unacknowledged messages in flight to us (MQTT 5 Receive Maximum),
and at most ``MAX_PENDING_BATCHES`` batches wait for the writer, which bounds memory.
"""

import logging
import multiprocessing
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import Counter, Histogram
from sqlalchemy import Engine

from telemetry.mqtt_connection import new_client, notify_ready, parse_mqtt_url
from telemetry.topics import all_filters
from telemetry.topics import shared as shared_filter
from telemetry.writer import WRITER_READY, BatchResult, Incoming, writer_main

log = logging.getLogger("agri.ingest")

# Batches handed to the writer and not yet answered: one being stored, one waiting.
MAX_PENDING_BATCHES = 2
SESSION_TAKEN_OVER = ReasonCode(PacketTypes.DISCONNECT, "Session taken over")


# What an operator watches (agri_common.metrics serves them).
RECEIVED = Counter("agri_ingest_messages_received", "MQTT messages received from gateways")
STORED = Counter("agri_ingest_readings_stored", "items committed (new ones)")
REJECTED = Counter("agri_ingest_rejected", "items or whole messages refused")
DUPLICATES = Counter("agri_ingest_duplicates", "items received again and not stored twice")
ACKS_SENT = Counter("agri_ingest_acks_sent", "commit acknowledgements published to gateways")
COMMIT_SECONDS = Histogram(
    "agri_ingest_commit_seconds",
    "storing one batch, database retries included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


@dataclass
class IngestStats:
    messages: int = 0
    readings_stored: int = 0
    rejects: int = 0
    batches: int = 0
    db_retries: int = 0
    writer_restarts: int = 0
    started: float = field(default_factory=time.monotonic)
    failure: str | None = None  # why the ingester stopped on its own (the database refused)


class Ingester:
    """One ingester's MQTT session and its writer process. ``run()`` returns after
    ``stop()``. ``open_engine(database_url)`` builds the writer's engine in its process;
    ``domains`` names (``module:Class``) the domains whose payload schemas it stores."""

    def __init__(
        self,
        database_url: str,
        mqtt_url: str,
        client_id: str | None,
        *,
        open_engine: Callable[[str], Engine],
        domains: Sequence[str],
        gateway_offline_after: timedelta,
        batch_rows: int = 5000,
        batch_ms: int = 100,
        receive_maximum: int = 2000,
        ca_file: str | None = None,
        session_expiry_s: int = 24 * 3600,
        alert_interval_s: float = 30.0,
        shared: bool = True,
        topics: list[str] | None = None,
        client_factory: Callable[[str], mqtt.Client] | None = None,
    ):
        self.database_url = database_url
        self.open_engine = open_engine
        self.domains = tuple(domains)
        self.address = parse_mqtt_url(mqtt_url)
        # Shared: N ingesters split the stream. Plain: one ingester, but its subscription
        # survives a Mosquitto restart (Mosquitto 2.0 does not restore shared subscriptions
        # from its persistence file, so until the group's members resubscribe, what
        # gateways publish after a restart has no subscriber and is dropped).
        # ``topics``: a partition's own farms' topics (partitions.py), plain subscriptions.
        # ``client_id`` None: no session yet; partitions add theirs (add_session).
        topics = (
            list(topics)
            if topics is not None
            else [shared_filter(t) if shared else t for t in all_filters()]
        )
        self.batch_rows = batch_rows
        self.batch_ms = batch_ms
        self.stats = IngestStats()
        self._inbox: queue.Queue[tuple[Session, mqtt.MQTTMessage]] = queue.Queue()
        self._stop = threading.Event()
        self._running = False
        self._ca_file = ca_file
        # What makes each session's MQTT client (as Telegraf's mqtt_consumer is given its
        # client): paho on the broker by default; a test hands in its own to drive the
        # session logic without a broker.
        self.client_factory = client_factory or self._paho_client
        self._gateway_offline_after = gateway_offline_after
        self.sessions: dict[str, Session] = {}
        self.announce_ready = True  # a session subscribed says READY=1 (partitions say it)
        if client_id is not None:
            self.sessions[client_id] = Session(self, client_id, topics)
        self._receive_maximum = receive_maximum
        self._session_expiry_s = session_expiry_s
        self._alert_interval_s = alert_interval_s
        # The writer process and what it has been given; guarded by _lock.
        self._mp = multiprocessing.get_context("spawn")
        self._lock = threading.Condition()
        self._pending: deque[list[tuple[Session, mqtt.MQTTMessage]]] = deque()
        self._writer = None
        self._to_writer = None
        self._from_writer = None
        self._giving_up = self._mp.Event()
        self._closing = False

    # --- sessions: one MQTT connection each, all feeding one queue -------------------

    def _paho_client(self, client_id: str) -> mqtt.Client:
        return new_client(self.address, client_id, ca_file=self._ca_file, manual_ack=True)

    def add_session(self, client_id: str, topics: list[str]) -> "Session":
        """Another persistent session (a partition) feeding this ingester's writer."""
        session = self.sessions[client_id] = Session(self, client_id, topics)
        if self._running:
            session.connect()
        return session

    def remove_session(self, client_id: str) -> None:
        """Leave a session (its partition goes to another process). Messages of it not
        yet acknowledged are redelivered to the session's next holder; stored ones are
        then duplicates, skipped."""
        session = self.sessions.pop(client_id, None)
        if session is not None:
            session.close()

    @property
    def client(self) -> mqtt.Client:
        return next(iter(self.sessions.values())).client

    @property
    def client_id(self) -> str:
        return next(iter(self.sessions))

    @property
    def topics(self) -> list[str]:
        return next(iter(self.sessions.values())).topics

    def _publisher(self) -> mqtt.Client | None:
        """A connected session's client, to publish notices and acks (the ingester's
        account may publish to any gateway's)."""
        for session in list(self.sessions.values()):
            if session.connected.is_set():
                return session.client
        return next(iter(self.sessions.values())).client if self.sessions else None

    # --- batching and acknowledging --------------------------------------------------

    def stop(self) -> None:
        """Drain and leave; a writer retrying through a database outage gives up after 5 s
        (what it could not commit stays unacknowledged, for the broker to redeliver)."""
        self._stop.set()
        self._giving_up.set()

    def wait_connected(self, timeout: float) -> bool:
        return all(s.connected.wait(timeout) for s in list(self.sessions.values()))

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker has granted every session's subscriptions: from then on
        what gateways publish is kept for this ingester."""
        return all(s.subscribed.wait(timeout) for s in list(self.sessions.values()))

    def run(self) -> IngestStats:
        """Connect, then hand batches to the writer until stopped; drain before leaving."""
        with self._lock:
            self._start_writer()
        answers = threading.Thread(target=self._answers, name="ingest-answers", daemon=True)
        answers.start()
        self._running = True
        for session in list(self.sessions.values()):
            session.connect()
        try:
            while not self._stop.is_set():
                batch = self._take_batch()
                if batch:
                    self._submit(batch)
            if self.stats.failure is None:
                # SIGTERM: what already arrived is stored and acknowledged, then we leave.
                while batch := self._take_batch(wait=False):
                    self._submit(batch)
                self._drain()
        finally:
            self._stop_writer()
            answers.join(10)
            for session in list(self.sessions.values()):
                session.close()
        return self.stats

    def _take_batch(self, wait: bool = True) -> list[tuple["Session", mqtt.MQTTMessage]]:
        batch: list[tuple[Session, mqtt.MQTTMessage]] = []
        rows = 0
        deadline = time.monotonic() + self.batch_ms / 1000
        while rows < self.batch_rows:
            timeout = deadline - time.monotonic() if wait else 0
            if timeout <= 0 and (batch or not wait):
                try:
                    message = self._inbox.get_nowait()
                except queue.Empty:
                    break
            else:
                try:
                    message = self._inbox.get(timeout=max(timeout, 0.001))
                except queue.Empty:
                    if self._stop.is_set() or batch:
                        break
                    deadline = time.monotonic() + self.batch_ms / 1000
                    continue
            batch.append(message)
            rows += max(1, message[1].payload.count(b"{") - 1)  # about one object an item
        return batch

    def _submit(self, batch: list[tuple["Session", mqtt.MQTTMessage]]) -> None:
        """Hand a batch to the writer, waiting while it already has enough to do."""
        with self._lock:
            while len(self._pending) >= MAX_PENDING_BATCHES:
                self._lock.wait(0.5)
            self._pending.append(batch)
            self._to_writer.put(_incoming(batch))

    def _drain(self) -> None:
        """Wait for the writer's answers to everything handed to it."""
        with self._lock:
            while self._pending and self.stats.failure is None:
                self._lock.wait(0.5)

    def _answers(self) -> None:
        """Acknowledge each batch once the writer has committed it (answers come in
        order), and replace a writer process that died, handing it the unanswered batches."""
        while True:
            with self._lock:
                if self._closing:
                    return
                results, writer = self._from_writer, self._writer
            try:
                result: BatchResult = results.get(timeout=0.5)
            except queue.Empty:
                if not writer.is_alive():
                    with self._lock:
                        if not self._closing:
                            self._replace_dead_writer()
                continue
            except (EOFError, OSError, ValueError):
                continue  # a queue of a writer that died or was closed: checked above
            if result.fatal:
                self._fail(result.fatal)
                return
            with self._lock:
                batch = self._pending.popleft()
                self._lock.notify_all()
            self.stats.db_retries += result.db_retries
            if not result.stored:
                continue  # not acknowledged: the broker keeps the messages for us
            for session, message in batch:
                session.client.ack(message.mid, message.qos)
            publisher = self._publisher()
            for topic, payload in result.notices if publisher else ():
                publisher.publish(topic, payload, qos=0)
            for topic, payload in result.acks if publisher else ():  # committed: forget them
                publisher.publish(topic, payload, qos=1)
            STORED.inc(result.inserted)
            REJECTED.inc(result.rejects)
            DUPLICATES.inc(result.duplicates)
            ACKS_SENT.inc(len(result.acks))
            COMMIT_SECONDS.observe(result.seconds)
            self.stats.messages += len(batch)
            self.stats.readings_stored += result.inserted
            self.stats.rejects += result.rejects
            self.stats.batches += 1

    def _fail(self, reason: str) -> None:
        """The database refused the work itself: stop without acknowledging anything
        unstored (the broker keeps it for this client id), and say why."""
        log.error("stopping: %s", reason)
        with self._lock:
            self.stats.failure = reason
            self._pending.clear()
            self._lock.notify_all()
        self._stop.set()
        self._giving_up.set()

    def _start_writer(self) -> None:
        """Start a writer process and wait until it can store: only then does the ingester
        subscribe (or hand over batches), so the broker, not this process's memory, keeps
        the stream meanwhile."""
        self._to_writer, self._from_writer = self._mp.Queue(), self._mp.Queue()
        self._writer = self._mp.Process(
            target=writer_main,
            args=(
                self._to_writer,
                self._from_writer,
                self.database_url,
                self.open_engine,
                self.domains,
                self._alert_interval_s,
                self._gateway_offline_after,
                self._giving_up,
                os.getpid(),
            ),
            name="agri-ingest-writer",
            daemon=True,
        )
        self._writer.start()
        try:
            ready = self._from_writer.get(timeout=120.0)
        except queue.Empty:
            ready = None
        if ready != WRITER_READY:
            raise RuntimeError(
                f"the writer process did not start (exit code {self._writer.exitcode})"
            )

    def _replace_dead_writer(self) -> None:
        """Unanswered batches were never acknowledged; the new writer stores them again
        (rows it had already committed are duplicates and are skipped)."""
        self.stats.writer_restarts += 1
        log.error(
            "writer process exited (code %s); starting a new one and handing it %d batches",
            self._writer.exitcode,
            len(self._pending),
        )
        self._abandon_queues()
        self._start_writer()
        for batch in self._pending:
            self._to_writer.put(_incoming(batch))

    def _stop_writer(self) -> None:
        self._giving_up.set()
        with self._lock:
            self._closing = True
            writer, to_writer = self._writer, self._to_writer
        to_writer.put(None)
        writer.join(30)
        if writer.is_alive():
            log.error("writer process did not stop; terminating it")
            writer.terminate()
            writer.join(5)
        with self._lock:
            self._abandon_queues()

    def _abandon_queues(self) -> None:
        """Let this process exit without waiting to deliver batches to a writer that will
        never read them (a queue's feeder thread would otherwise block the exit for good);
        they were never acknowledged, so nothing is lost."""
        for channel in (self._to_writer, self._from_writer):
            channel.cancel_join_thread()
            channel.close()


def _incoming(batch: list[tuple["Session", mqtt.MQTTMessage]]) -> list[Incoming]:
    """What the writer process is handed: plain (topic, payload) pairs, cheap to pickle."""
    return [(m.topic, bytes(m.payload)) for _, m in batch]


class Session:
    """One persistent MQTT session of an ingester: its client id, its subscriptions and
    its connection. The paho network thread only moves messages to the ingester's queue."""

    def __init__(self, ingester: Ingester, client_id: str, topics: list[str]):
        self.ingester, self.client_id, self.topics = ingester, client_id, list(topics)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._closed = False
        client = ingester.client_factory(client_id)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self.client = client

    def connect(self) -> None:
        properties = Properties(PacketTypes.CONNECT)
        # Keep our queue while we restart; an ingester retired for good should be given
        # a session expiry of 0 on its last run (or the broker keeps its share for a day).
        properties.SessionExpiryInterval = self.ingester._session_expiry_s
        properties.ReceiveMaximum = self.ingester._receive_maximum
        address = self.ingester.address
        self.client.connect_async(
            address.host, address.port, keepalive=30, clean_start=False, properties=properties
        )
        self.client.loop_start()

    def close(self) -> None:
        self._closed = True
        self.client.disconnect()
        self.client.loop_stop()

    def add_topics(self, topics: list[str]) -> None:
        """Subscribe to more topics (a partition's newly registered farms); kept for the
        next connection too."""
        self.topics += topics
        if self.connected.is_set():
            self.client.subscribe([(topic, 1) for topic in topics])

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        if self.topics:
            client.subscribe([(topic, 1) for topic in self.topics])
        else:  # a partition with no farms yet: its session waits for them
            log.info("subscribed to nothing yet (no farms) as %s", self.client_id)
            self.subscribed.set()
            if self.ingester.announce_ready:
                notify_ready()
        self.connected.set()
        address = self.ingester.address
        log.info("connected to %s:%s", address.host, address.port)

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("broker refused the subscription: %s", ", ".join(failed))
            return
        log.info("subscribed to %s as %s", ", ".join(self.topics), self.client_id)
        self.subscribed.set()
        if self.ingester.announce_ready:
            notify_ready()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self.connected.clear()
        if self._closed or self.ingester._stop.is_set():
            return
        if reason_code == SESSION_TAKEN_OVER:
            log.error(
                "another client connected as %s and took this session over: give each "
                "ingester on a host its own --instance N",
                self.client_id,
            )
        log.warning("disconnected (%s); reconnecting with backoff", reason_code)

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        RECEIVED.inc()
        self.ingester._inbox.put((self, message))
