"""The MQTT ingester: receive, validate, store, then acknowledge.

The paho network thread only moves bytes: ``on_message`` puts the message on a queue.
The writer (the caller's thread) takes batches bounded by rows and milliseconds, parses
them (``messages.py``), commits readings, events and rejects in one transaction and only
then sends the PUBACKs (paho manual ack). A message whose rows are not committed is
never acknowledged, so the broker redelivers it after a crash; duplicates are dropped by
the (tag_id, observed_at) key. The broker never has more than ``receive_maximum``
unacknowledged messages in flight to us (MQTT 5 Receive Maximum), which bounds memory.
"""

import json
import logging
import queue
import ssl
import threading
import time
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
from bioassets.messages import Parsed, Rejection, parse_message

log = logging.getLogger("agri.ingest")

SHARE_GROUP = "agri-ingest"
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
    started: float = field(default_factory=time.monotonic)


class Ingester:
    """One ingester process's MQTT session and writer. ``run()`` returns after ``stop()``."""

    def __init__(
        self,
        engine: Engine,
        mqtt_url: str,
        client_id: str,
        batch_rows: int = 5000,
        batch_ms: int = 100,
        receive_maximum: int = 2000,
        ca_file: str | None = None,
        session_expiry_s: int = 24 * 3600,
        alert_interval_s: float = 30.0,
        shared: bool = True,
    ):
        self.engine = engine
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
        self._gateway_farm: dict[str, str] = {}
        self._tag_farm: dict[str, str] = {}
        self._registry_loaded = 0.0
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
        self._farms_since_alerts: set[str] = set()
        self._alerts_evaluated = time.monotonic()
        self._progress_logged = time.monotonic()
        self._progress_stored = 0

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

    # --- writer ----------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def run(self) -> IngestStats:
        """Connect, then store batches until stopped; drain and acknowledge before leaving."""
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
                    self._store_until_done(batch)
            # SIGTERM: what already arrived is stored and acknowledged, then we leave.
            while batch := self._take_batch(wait=False):
                self._store_until_done(batch)
        finally:
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

    def _store_until_done(self, batch: list[mqtt.MQTTMessage]) -> None:
        """Commit the batch, retrying while the database is unavailable; then acknowledge.

        Nothing is acknowledged until the commit succeeds: a stop during an outage leaves
        the batch unacknowledged for the broker to redeliver.
        """
        delay = 0.2
        while True:
            try:
                notices = self._store(batch)
                break
            except (DataError, IntegrityError) as exc:
                # Not transient: find the message the database refuses and reject it.
                log.error("database refused a batch (%s); storing message by message", exc)
                notices = self._store_one_by_one(batch)
                break
            except (OperationalError, DBAPIError) as exc:
                self.stats.db_retries += 1
                log.warning(
                    "database unavailable (%s); retrying in %.1f s", exc.__class__.__name__, delay
                )
                if self._stop.is_set() and delay >= 5:
                    return  # not acknowledged: the broker keeps the messages for us
                time.sleep(delay)
                delay = min(delay * 2, 10)
        for message in batch:
            self.client.ack(message.mid, message.qos)
        for topic, payload in notices:
            self.client.publish(topic, payload, qos=0)
        self._evaluate_alerts_when_due()
        self._log_progress_when_due()

    def _log_progress_when_due(self, every_s: float = 60.0) -> None:
        """One line a minute for the operator: what was stored, refused and retried."""
        now = time.monotonic()
        if now - self._progress_logged < every_s:
            return
        stored = self.stats.readings_stored - self._progress_stored
        log.info(
            "stored %d readings in the last %.0f s (%.0f/s); totals: %d messages, %d rejects, "
            "%d database retries",
            stored,
            now - self._progress_logged,
            stored / (now - self._progress_logged),
            self.stats.messages,
            self.stats.rejects,
            self.stats.db_retries,
        )
        self._progress_logged, self._progress_stored = now, self.stats.readings_stored

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

    def _store_one_by_one(self, batch: list[mqtt.MQTTMessage]) -> list[tuple[str, bytes]]:
        notices = []
        for message in batch:
            try:
                notices += self._store([message])
            except (DataError, IntegrityError) as exc:
                reason = f"database refused the message: {exc.orig}"
                row = _reject_row(message, None, None, Rejection(reason), datetime.now(UTC))
                with self.engine.begin() as conn:
                    store.write_batch(conn, [], [], [row])
        return notices

    def _store(self, batch: list[mqtt.MQTTMessage]) -> list[tuple[str, bytes]]:
        now = datetime.now(UTC)
        self._refresh_registry()
        reading_rows: dict[tuple[str, datetime], tuple] = {}
        event_rows: list[dict] = []
        reject_rows: list[dict] = []
        statuses: list[tuple[str, str, str]] = []  # (farm, gateway, online|offline)
        notices: list[tuple[str, bytes]] = []
        unknown: dict[tuple[str, str], str] = {}  # (farm, tag) -> detail
        farms: set[str] = set()
        for message in batch:
            parsed = parse_message(message.topic, message.payload, now)
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
                key = (r.tag_id, r.observed_at)
                if key not in reading_rows:
                    reading_rows[key] = store.reading_row(
                        r, parsed.farm_id, parsed.gateway_id, now, parsed.seq
                    )
                    if r.tag_id not in self._tag_farm:
                        unknown[parsed.farm_id, r.tag_id] = (
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
            inserted = store.write_batch(conn, list(reading_rows.values()), event_rows, reject_rows)
            store.note_unknown_tags(conn, unknown, now)
            for _farm, gateway, status in statuses:
                store.set_gateway_status(conn, gateway, status, now)
        self._farms_since_alerts.update(farms & self._known_farms())
        self.stats.messages += len(batch)
        self.stats.readings_stored += inserted
        self.stats.rejects += len(reject_rows)
        self.stats.batches += 1
        return notices

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
        for item in parsed.readings if parsed.kind == "readings" else parsed.events:
            owner = self._tag_farm.get(item.tag_id)
            if owner is not None and owner != parsed.farm_id:
                parsed.rejections.append(
                    Rejection(
                        f"tag {item.tag_id} is registered to farm {owner!r}, "
                        f"not {parsed.farm_id!r}",
                        item.model_dump(mode="json"),
                    )
                )
            else:
                kept.append(item)
        if parsed.kind == "readings":
            parsed.readings = kept
        else:
            parsed.events = kept


def _reject_row(message, farm_id, gateway_id, rejection: Rejection, now: datetime) -> dict:
    """A rejects-table row: the reason, where it came from, and the raw bytes as received."""
    return {
        "received_at": now,
        "topic": message.topic,
        "farm_id": farm_id,
        "gateway_id": gateway_id,
        "reason": rejection.reason,
        "item": None if rejection.item is None else json.dumps(rejection.item, default=str),
        "raw": bytes(message.payload),
    }


def _reject_notice(parsed: Parsed) -> tuple[str, bytes]:
    topic = f"agri/v1/farms/{parsed.farm_id}/gateways/{parsed.gateway_id}/rejects"
    body = {
        "schema": "rejects/v1",
        "seq": parsed.seq,
        "rejected": [{"index": r.index, "reason": r.reason} for r in parsed.rejections][:50],
    }
    return topic, json.dumps(body).encode()
