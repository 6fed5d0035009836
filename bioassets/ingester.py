"""The MQTT ingester: receive, validate, store, then acknowledge.

Two processes, so that parsing and SQL never compete with the network for one
interpreter lock (on one process the ingester stalled at one core while the other sat
idle). In the ingester's process the paho network thread only moves bytes: ``on_message``
puts the message on a queue; the caller's thread takes batches bounded by rows and
milliseconds and hands them to the writer process. The writer (``BatchWriter``) parses
them (``messages.py``), commits readings, events and rejects in one transaction and
answers; only then does the ingester send the PUBACKs (paho manual ack). A message whose
rows are not committed is never acknowledged, so the broker redelivers it after a crash
of either process; duplicates are dropped by the (tag_id, observed_at) key. The broker
never has more than ``receive_maximum`` unacknowledged messages in flight to us (MQTT 5
Receive Maximum), and at most ``MAX_PENDING_BATCHES`` batches wait for the writer, which
bounds memory.
"""

import json
import logging
import multiprocessing
import os
import queue
import signal
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote, urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from bioassets import rules, store
from bioassets.messages import READING, Parsed, Rejection, parse_message

log = logging.getLogger("agri.ingest")

SHARE_GROUP = "agri-ingest"
# Batches handed to the writer and not yet answered: one being stored, one waiting.
MAX_PENDING_BATCHES = 2
WRITER_READY = "ready"  # the writer's first word: it has started and can store
TOPICS = (
    "agri/v1/farms/+/gateways/+/readings",
    "agri/v1/farms/+/gateways/+/events",
    "agri/v1/farms/+/gateways/+/status",
)


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_mqtt_url(url: str) -> BrokerAddress:
    """``mqtt://user:pass@host:port`` or ``mqtts://...`` (TLS)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"MQTT URL {url!r} must start with mqtt:// or mqtts://")
    if not parsed.hostname:
        raise ValueError(f"MQTT URL {url!r} has no host")
    tls = parsed.scheme == "mqtts"
    return BrokerAddress(
        parsed.hostname,
        parsed.port or (8883 if tls else 1883),
        unquote(parsed.username) if parsed.username else None,
        unquote(parsed.password) if parsed.password else None,
        tls,
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


Incoming = tuple[str, bytes]  # (topic, payload) of one MQTT message


@dataclass
class BatchResult:
    """The writer's answer for one batch. ``stored`` False: it gave up (a stop during a
    database outage), so nothing of the batch may be acknowledged."""

    stored: bool
    inserted: int = 0
    rejects: int = 0
    db_retries: int = 0
    notices: list[tuple[str, bytes]] = field(default_factory=list)


class Ingester:
    """One ingester's MQTT session and its writer process. ``run()`` returns after
    ``stop()``. ``open_engine(database_url)`` builds the writer's engine in its process."""

    def __init__(
        self,
        database_url: str,
        mqtt_url: str,
        client_id: str,
        *,
        open_engine: Callable[[str], Engine],
        batch_rows: int = 5000,
        batch_ms: int = 100,
        receive_maximum: int = 2000,
        ca_file: str | None = None,
        session_expiry_s: int = 24 * 3600,
        alert_interval_s: float = 30.0,
        shared: bool = True,
    ):
        self.database_url = database_url
        self.open_engine = open_engine
        self.address = parse_mqtt_url(mqtt_url)
        # Shared: N ingesters split the stream. Plain: one ingester, but its subscription
        # survives a Mosquitto restart (Mosquitto 2.0 does not restore shared subscriptions
        # from its persistence file, so until the group's members resubscribe, what
        # gateways publish after a restart has no subscriber and is dropped).
        self.topics = [f"$share/{SHARE_GROUP}/{t}" if shared else t for t in TOPICS]
        self.batch_rows = batch_rows
        self.batch_ms = batch_ms
        self.stats = IngestStats()
        self._inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._stop = threading.Event()
        self._connected = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self.client = client
        self._receive_maximum = receive_maximum
        self._session_expiry_s = session_expiry_s
        self._alert_interval_s = alert_interval_s
        # The writer process and what it has been given; guarded by _lock.
        self._mp = multiprocessing.get_context("spawn")
        self._lock = threading.Condition()
        self._pending: deque[list[mqtt.MQTTMessage]] = deque()
        self._writer = None
        self._to_writer = None
        self._from_writer = None
        self._giving_up = self._mp.Event()
        self._closing = False

    # --- network thread: only moves messages to the queue ---------------------------

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        client.subscribe([(topic, 1) for topic in self.topics])
        self._connected.set()
        log.info("connected to %s:%s", self.address.host, self.address.port)

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("broker refused the subscription: %s", ", ".join(failed))
        else:
            log.info("subscribed to %s", ", ".join(self.topics))

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected (%s); reconnecting with backoff", reason_code)

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        self._inbox.put(message)

    # --- batching and acknowledging --------------------------------------------------

    def stop(self) -> None:
        """Drain and leave; a writer retrying through a database outage gives up after 5 s
        (what it could not commit stays unacknowledged, for the broker to redeliver)."""
        self._stop.set()
        self._giving_up.set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def run(self) -> IngestStats:
        """Connect, then hand batches to the writer until stopped; drain before leaving."""
        with self._lock:
            self._start_writer()
        answers = threading.Thread(target=self._answers, name="ingest-answers", daemon=True)
        answers.start()
        properties = Properties(PacketTypes.CONNECT)
        # Keep our queue while we restart; an ingester retired for good should be given
        # a session expiry of 0 on its last run (or the broker keeps its share for a day).
        properties.SessionExpiryInterval = self._session_expiry_s
        properties.ReceiveMaximum = self._receive_maximum
        self.client.connect_async(
            self.address.host,
            self.address.port,
            keepalive=30,
            clean_start=False,
            properties=properties,
        )
        self.client.loop_start()
        try:
            while not self._stop.is_set():
                batch = self._take_batch()
                if batch:
                    self._submit(batch)
            # SIGTERM: what already arrived is stored and acknowledged, then we leave.
            while batch := self._take_batch(wait=False):
                self._submit(batch)
            self._drain()
        finally:
            self._stop_writer()
            answers.join(10)
            self.client.disconnect()
            self.client.loop_stop()
        return self.stats

    def _take_batch(self, wait: bool = True) -> list[mqtt.MQTTMessage]:
        batch: list[mqtt.MQTTMessage] = []
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
            rows += max(1, message.payload.count(b"tag_id"))
        return batch

    def _submit(self, batch: list[mqtt.MQTTMessage]) -> None:
        """Hand a batch to the writer, waiting while it already has enough to do."""
        with self._lock:
            while len(self._pending) >= MAX_PENDING_BATCHES:
                self._lock.wait(0.5)
            self._pending.append(batch)
            self._to_writer.put(_incoming(batch))

    def _drain(self) -> None:
        """Wait for the writer's answers to everything handed to it."""
        with self._lock:
            while self._pending:
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
            with self._lock:
                batch = self._pending.popleft()
                self._lock.notify_all()
            self.stats.db_retries += result.db_retries
            if not result.stored:
                continue  # not acknowledged: the broker keeps the messages for us
            for message in batch:
                self.client.ack(message.mid, message.qos)
            for topic, payload in result.notices:
                self.client.publish(topic, payload, qos=0)
            self.stats.messages += len(batch)
            self.stats.readings_stored += result.inserted
            self.stats.rejects += result.rejects
            self.stats.batches += 1

    def _start_writer(self) -> None:
        """Start a writer process and wait until it can store: only then does the ingester
        subscribe (or hand over batches), so the broker, not this process's memory, keeps
        the stream meanwhile."""
        self._to_writer, self._from_writer = self._mp.Queue(), self._mp.Queue()
        self._writer = self._mp.Process(
            target=_writer_main,
            args=(
                self._to_writer,
                self._from_writer,
                self.database_url,
                self.open_engine,
                self._alert_interval_s,
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


def _incoming(batch: list[mqtt.MQTTMessage]) -> list[Incoming]:
    """What the writer process is handed: plain (topic, payload) pairs, cheap to pickle."""
    return [(m.topic, bytes(m.payload)) for m in batch]


def _writer_main(
    batches,
    results,
    database_url: str,
    open_engine: Callable[[str], Engine],
    alert_interval_s: float,
    giving_up,
    parent_pid: int,
) -> None:
    """The writer process: store each batch it is handed and answer, until told to stop
    or its ingester is gone. Signals are the ingester's business: it drains, then stops us."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    engine = open_engine(database_url)
    writer = BatchWriter(engine, alert_interval_s)
    results.put(WRITER_READY)

    def orphaned() -> bool:
        return os.getppid() != parent_pid

    try:
        while not orphaned():
            try:
                batch = batches.get(timeout=1.0)
            except queue.Empty:
                continue
            if batch is None:
                break
            results.put(writer.store_until_done(batch, lambda: giving_up.is_set() or orphaned()))
    finally:
        results.close()
        results.join_thread()
        engine.dispose()


class BatchWriter:
    """Parse, authorise and store batches of messages: all the ingester's database work.

    It runs in the ingester's writer process; it is also the unit the fuzz test drives.
    """

    def __init__(self, engine: Engine, alert_interval_s: float = 30.0):
        self.engine = engine
        self._alert_interval_s = alert_interval_s
        self._gateway_farm: dict[str, str] = {}
        self._tag_farm: dict[str, str] = {}
        self._registry_loaded = 0.0
        self._farms_since_alerts: set[str] = set()
        self._alerts_evaluated = time.monotonic()
        self._progress_logged = time.monotonic()
        self._stored_since_log = 0
        self._totals = IngestStats()

    def store_until_done(self, batch: list[Incoming], give_up: Callable[[], bool]) -> BatchResult:
        """Commit the batch, retrying while the database is unavailable.

        A stop during an outage (``give_up``) answers "not stored" once the retries have
        reached 5 s: the batch stays unacknowledged for the broker to redeliver.
        """
        delay, retries = 0.2, 0
        while True:
            try:
                inserted, rejected, notices = self.store(batch)
                break
            except (DataError, IntegrityError) as exc:
                # Not transient: find the message the database refuses and reject it.
                log.error("database refused a batch (%s); storing message by message", exc)
                inserted, rejected, notices = self._store_one_by_one(batch)
                break
            except (OperationalError, DBAPIError) as exc:
                retries += 1
                log.warning(
                    "database unavailable (%s); retrying in %.1f s", exc.__class__.__name__, delay
                )
                if give_up() and delay >= 5:
                    return BatchResult(stored=False, db_retries=retries)
                time.sleep(delay)
                delay = min(delay * 2, 10)
        self._totals.messages += len(batch)
        self._totals.rejects += rejected
        self._totals.db_retries += retries
        self._stored_since_log += inserted
        self._evaluate_alerts_when_due()
        self._log_progress_when_due()
        return BatchResult(True, inserted, rejected, retries, notices)

    def _log_progress_when_due(self, every_s: float = 60.0) -> None:
        """One line a minute for the operator: what was stored, refused and retried."""
        now = time.monotonic()
        if now - self._progress_logged < every_s:
            return
        stored, elapsed = self._stored_since_log, now - self._progress_logged
        log.info(
            "stored %d readings in the last %.0f s (%.0f/s); totals: %d messages, %d rejects, "
            "%d database retries",
            stored,
            elapsed,
            stored / elapsed,
            self._totals.messages,
            self._totals.rejects,
            self._totals.db_retries,
        )
        self._progress_logged, self._stored_since_log = now, 0

    def _evaluate_alerts_when_due(self) -> None:
        """Alert rules for the farms that sent data, at most every ``alert_interval_s``."""
        if time.monotonic() - self._alerts_evaluated < self._alert_interval_s:
            return
        farms, self._farms_since_alerts = self._farms_since_alerts, set()
        self._alerts_evaluated = time.monotonic()
        now = datetime.now(UTC)
        for farm_id in sorted(farms):
            try:
                rules.evaluate_farm(self.engine, farm_id, now)
            except Exception:  # alerting must never stop ingestion
                log.exception("alert rules failed for farm %s", farm_id)

    def _store_one_by_one(self, batch: list[Incoming]) -> tuple[int, int, list]:
        inserted, rejected, notices = 0, 0, []
        for message in batch:
            try:
                added, refused, said = self.store([message])
            except (DataError, IntegrityError) as exc:
                reason = f"database refused the message: {exc.orig}"
                row = _reject_row(message, None, None, Rejection(reason), datetime.now(UTC))
                with self.engine.begin() as conn:
                    store.write_batch(conn, [], [], [row])
                rejected += 1
                continue
            inserted, rejected, notices = inserted + added, rejected + refused, notices + said
        return inserted, rejected, notices

    def store(self, batch: list[Incoming]) -> tuple[int, int, list[tuple[str, bytes]]]:
        """Store one batch in one transaction: (readings inserted, rejects, reject notices)."""
        now = datetime.now(UTC)
        self._refresh_registry()
        reading_rows: list[tuple] = []  # duplicates are left to the insert to skip
        event_rows: list[dict] = []
        reject_rows: list[dict] = []
        statuses: list[tuple[str, str, str]] = []  # (farm, gateway, online|offline)
        notices: list[tuple[str, bytes]] = []
        unknown: dict[tuple[str, str], str] = {}  # (farm, tag) -> detail
        farms: set[str] = set()
        for message in batch:
            topic, payload = message
            parsed = parse_message(topic, payload, now)
            self._authorise(parsed)
            if parsed.status and not parsed.message_rejected:
                statuses.append((parsed.farm_id, parsed.gateway_id, parsed.status))
                farms.add(parsed.farm_id)
            reject_rows += [
                _reject_row(message, parsed.farm_id, parsed.gateway_id, rejection, now)
                for rejection in parsed.rejections
            ]
            if parsed.rejections and parsed.farm_id and parsed.gateway_id:
                notices.append(_reject_notice(parsed))
            if parsed.readings:
                farms.add(parsed.farm_id)
            for r in parsed.readings:
                reading_rows.append(
                    store.reading_row(r, parsed.farm_id, parsed.gateway_id, now, parsed.seq)
                )
                if r["tag_id"] not in self._tag_farm:
                    unknown[parsed.farm_id, r["tag_id"]] = (
                        f"unregistered tag seen by {parsed.gateway_id}"
                    )
            for e in parsed.events:
                event_rows.append(
                    {
                        "tag_id": e.tag_id,
                        "kind": e.kind,
                        "occurred_at": e.occurred_at,
                        "farm_id": parsed.farm_id,
                        "gateway_id": parsed.gateway_id,
                        "details": e.model_dump(mode="json", exclude_none=True),
                        "received_at": now,
                    }
                )
        with self.engine.begin() as conn:
            inserted = store.write_batch(conn, reading_rows, event_rows, reject_rows)
            store.note_unknown_tags(conn, unknown, now)
            for _farm, gateway, status in statuses:
                store.set_gateway_status(conn, gateway, status, now)
        self._farms_since_alerts.update(farms & self._known_farms())
        return inserted, len(reject_rows), notices

    def _known_farms(self) -> set[str]:
        return set(self._gateway_farm.values())

    def _refresh_registry(self, force: bool = False) -> None:
        if force or time.monotonic() - self._registry_loaded > 5:
            self._gateway_farm = store.gateway_farms(self.engine)
            self._tag_farm = store.tag_farms(self.engine)
            self._registry_loaded = time.monotonic()

    def _authorise(self, parsed: Parsed) -> None:
        """The topic's farm must be the gateway's; a tag of another farm is rejected."""
        if parsed.message_rejected or parsed.gateway_id is None:
            return
        farm = self._gateway_farm.get(parsed.gateway_id)
        if farm is None:
            self._refresh_registry(force=True)
            farm = self._gateway_farm.get(parsed.gateway_id)
        if farm != parsed.farm_id:
            reason = (
                f"gateway {parsed.gateway_id!r} is not registered"
                if farm is None
                else f"gateway {parsed.gateway_id!r} belongs to farm {farm!r}, "
                f"not {parsed.farm_id!r}"
            )
            parsed.rejections = [Rejection(reason)]
            parsed.readings, parsed.events = [], []
            parsed.message_rejected = True
            return
        kept = []
        readings = parsed.kind == "readings"
        for item in parsed.readings if readings else parsed.events:
            tag = item["tag_id"] if readings else item.tag_id
            owner = self._tag_farm.get(tag)
            if owner is not None and owner != parsed.farm_id:
                parsed.rejections.append(
                    Rejection(
                        f"tag {tag} is registered to farm {owner!r}, not {parsed.farm_id!r}",
                        READING.dump_python(item, mode="json")
                        if readings
                        else item.model_dump(mode="json"),
                    )
                )
            else:
                kept.append(item)
        if readings:
            parsed.readings = kept
        else:
            parsed.events = kept


def _reject_row(
    message: Incoming, farm_id, gateway_id, rejection: Rejection, now: datetime
) -> dict:
    """A rejects-table row: the reason, where it came from, and the raw bytes as received."""
    topic, payload = message
    return {
        "received_at": now,
        "topic": topic,
        "farm_id": farm_id,
        "gateway_id": gateway_id,
        "reason": rejection.reason,
        "item": None if rejection.item is None else json.dumps(rejection.item, default=str),
        "raw": payload,
    }


def _reject_notice(parsed: Parsed) -> tuple[str, bytes]:
    topic = f"agri/v1/farms/{parsed.farm_id}/gateways/{parsed.gateway_id}/rejects"
    body = {
        "schema": "rejects/v1",
        "seq": parsed.seq,
        "rejected": [{"index": r.index, "reason": r.reason} for r in parsed.rejections][:50],
    }
    return topic, json.dumps(body).encode()
