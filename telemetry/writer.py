"""The ingester's writer: parse, authorise and store batches of MQTT messages.

It runs in a process of its own (``writer_main``), so that parsing and SQL never compete
with the network thread for one interpreter lock. Each batch is one transaction; the
answer (``BatchResult``) tells the ingester what it may acknowledge. A database that is
briefly away is waited for (``agri_common.retry``); a database that refuses the work for
any other reason (a schema mismatch, bad SQL) ends the writer with that message, so the
operator sees it instead of a silent retry loop.
"""

import json
import logging
import os
import queue
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError

from agri_common.retry import DatabaseUnavailable, backoff, with_retries
from telemetry import acks, gateways, topics
from telemetry.payloads import Counts, Parsed, Rejection, by_channel, load_domains, parse_message

log = logging.getLogger("agri.ingest")

WRITER_READY = "ready"  # the writer's first word: it has started and can store
GIVE_UP_AFTER_DELAY_S = 5  # a stop during an outage gives up once retries wait this long


@dataclass
class WriterTotals:
    messages: int = 0
    rejects: int = 0
    db_retries: int = 0


Incoming = tuple[str, bytes]  # (topic, payload) of one MQTT message


@dataclass
class Stored:
    """What storing messages did: items inserted, rejections, items already stored
    (duplicates), reject notices to send, and the seqs handled per (farm, gateway)."""

    inserted: int = 0
    rejects: int = 0
    duplicates: int = 0
    notices: list[tuple[str, bytes]] = field(default_factory=list)
    handled: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def add(self, other: "Stored") -> None:
        self.inserted += other.inserted
        self.rejects += other.rejects
        self.duplicates += other.duplicates
        self.notices += other.notices
        for gateway, seqs in other.handled.items():
            self.handled.setdefault(gateway, []).extend(seqs)


@dataclass
class BatchResult:
    """The writer's answer for one batch. ``stored`` False: it gave up (a stop during a
    database outage), so nothing of the batch may be acknowledged."""

    stored: bool
    inserted: int = 0
    rejects: int = 0
    db_retries: int = 0
    duplicates: int = 0  # items that were already stored (a re-send, a repeat)
    seconds: float = 0.0  # storing it, retries included
    notices: list[tuple[str, bytes]] = field(default_factory=list)  # rejects, QoS 0
    acks: list[tuple[str, bytes]] = field(default_factory=list)  # commit acks, QoS 1
    fatal: str | None = None  # the database refused the work itself: the ingester stops


def writer_main(
    batches,
    results,
    database_url: str,
    open_engine: Callable[[str], Engine],
    domains: Sequence[str],
    alert_interval_s: float,
    gateway_offline_after: timedelta,
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
    writer = BatchWriter(engine, domains, gateway_offline_after, alert_interval_s)
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
            try:
                result = writer.store_until_done(batch, lambda: giving_up.is_set() or orphaned())
            except Exception as exc:  # not "briefly away": stop, say why, store nothing more
                log.error("the database refused the ingester's work: %s", exc)
                results.put(BatchResult(stored=False, fatal=f"{type(exc).__name__}: {exc}"))
                break
            results.put(result)
    finally:
        results.close()
        results.join_thread()
        engine.dispose()


class BatchWriter:
    """Parse, authorise and store batches of messages: all the ingester's database work.

    It runs in the ingester's writer process; it is also the unit the fuzz test drives.
    """

    def __init__(
        self,
        engine: Engine,
        domains: Sequence[str],
        gateway_offline_after: timedelta,
        alert_interval_s: float = 30.0,
    ):
        self.engine = engine
        self.domains = load_domains(domains, engine)
        self._schemas = by_channel(s for d in self.domains for s in d.schemas)
        self._domain_of = {s.channel: d for d in self.domains for s in d.schemas}
        self._gateway_offline_after = gateway_offline_after
        self._alert_interval_s = alert_interval_s
        self._gateway_farm: dict[str, str] = {}
        self._registry_loaded = 0.0
        self._farms_since_alerts: set[str] = set()
        self._alerts_evaluated = time.monotonic()
        self._progress_logged = time.monotonic()
        self._stored_since_log = 0
        self._totals = WriterTotals()

    def store_until_done(self, batch: list[Incoming], give_up: Callable[[], bool]) -> BatchResult:
        """Commit the batch, retrying while the database is briefly away.

        A stop during an outage (``give_up``) answers "not stored" once the retries wait
        5 s or more: the batch stays unacknowledged for the broker to redeliver. Any error
        that is not an outage is raised.
        """
        started = time.perf_counter()
        try:
            stored, retries = with_retries(
                lambda: self._store_or_isolate(batch),
                backoff(0.2, 10),
                "storing a batch of messages",
                give_up=lambda delay: give_up() and delay >= GIVE_UP_AFTER_DELAY_S,
            )
        except DatabaseUnavailable as exc:
            self._totals.db_retries += exc.retries
            return BatchResult(stored=False, db_retries=exc.retries)
        self._totals.messages += len(batch)
        self._totals.rejects += stored.rejects
        self._totals.db_retries += retries
        self._stored_since_log += stored.inserted
        self._evaluate_alerts_when_due()
        self._log_progress_when_due()
        return BatchResult(
            stored=True,
            inserted=stored.inserted,
            rejects=stored.rejects,
            db_retries=retries,
            duplicates=stored.duplicates,
            seconds=time.perf_counter() - started,
            notices=stored.notices,
            acks=_acks(stored.handled),
        )

    def _store_or_isolate(self, batch: list[Incoming]) -> Stored:
        try:
            return self.store(batch)
        except (DataError, IntegrityError) as exc:
            # Not transient: find the message the database refuses and reject it.
            log.error("database refused a batch (%s); storing message by message", exc)
            return self._store_one_by_one(batch)

    def _log_progress_when_due(self, every_s: float = 60.0) -> None:
        """One line a minute for the operator: what was stored, refused and retried."""
        now = time.monotonic()
        if now - self._progress_logged < every_s:
            return
        stored, elapsed = self._stored_since_log, now - self._progress_logged
        log.info(
            "stored %d items in the last %.0f s (%.0f/s); totals: %d messages, %d rejects, "
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
        for domain in self.domains:
            try:
                domain.after_commit(farms, now, self._gateway_offline_after)
            except Exception:  # alerting must never stop ingestion
                log.exception("after-commit work failed for farms %s", sorted(farms))

    def _store_one_by_one(self, batch: list[Incoming]) -> Stored:
        total = Stored()
        for message in batch:
            try:
                total.add(self.store([message]))
            except (DataError, IntegrityError) as exc:
                reason = f"database refused the message: {exc.orig}"
                row = _reject_row(message, None, None, Rejection(reason), datetime.now(UTC))
                with self.engine.begin() as conn:
                    gateways.add_rejects(conn, [row])
                handled = _handled([parse_message(*message, datetime.now(UTC), self._schemas)])
                total.add(Stored(rejects=1, handled=handled))
        return total

    def store(self, batch: list[Incoming]) -> Stored:
        """Store one batch in one transaction; what it did, with the seqs handled per
        (farm, gateway), to acknowledge once committed."""
        now = datetime.now(UTC)
        self._refresh_registry()
        reject_rows: list[dict] = []
        statuses: list[tuple[str, str, str]] = []  # (farm, gateway, online|offline)
        notices: list[tuple[str, bytes]] = []
        farms: set[str] = set()
        parsed_all: list[Parsed] = []
        per_domain: dict[int, list[Parsed]] = {}
        for message in batch:
            topic, payload = message
            parsed = parse_message(topic, payload, now, self._schemas)
            parsed_all.append(parsed)
            self._authorise(parsed)
            if parsed.status and not parsed.message_rejected:
                statuses.append((parsed.farm_id, parsed.gateway_id, parsed.status))
                farms.add(parsed.farm_id)
            if not parsed.message_rejected and parsed.channel in self._domain_of:
                domain = self._domain_of[parsed.channel]
                domain.authorise(parsed)
                per_domain.setdefault(id(domain), []).append(parsed)
            reject_rows += [
                _reject_row(message, parsed.farm_id, parsed.gateway_id, rejection, now)
                for rejection in parsed.rejections
            ]
            if parsed.rejections and parsed.farm_id and parsed.gateway_id:
                notices.append(_reject_notice(parsed))
            if parsed.items:
                farms.add(parsed.farm_id)
        counts = Counts()
        with self.engine.begin() as conn:
            for domain in self.domains:
                done = domain.store(conn, per_domain.get(id(domain), []), now)
                counts.stored += done.stored
                counts.duplicates += done.duplicates
            gateways.add_rejects(conn, reject_rows)
            for _farm, gateway, status in statuses:
                gateways.set_gateway_status(conn, gateway, status, now)
        self._farms_since_alerts.update(farms & self._known_farms())
        return Stored(
            counts.stored,
            len(reject_rows),
            counts.duplicates,
            notices,
            _handled(parsed_all),
        )

    def _known_farms(self) -> set[str]:
        return set(self._gateway_farm.values())

    def _refresh_registry(self, force: bool = False) -> None:
        if force or time.monotonic() - self._registry_loaded > 5:
            self._gateway_farm = gateways.gateway_farms(self.engine)
            self._registry_loaded = time.monotonic()

    def _authorise(self, parsed: Parsed) -> None:
        """The topic's farm must be the gateway's (the items' own owners are the domain's
        to judge)."""
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
            parsed.items = []
            parsed.message_rejected = True


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


def _handled(messages: list[Parsed]) -> dict[tuple[str, str], list[int]]:
    """The seqs of data messages handled (stored or rejected for good),
    per (farm, gateway) of their topic."""
    handled: dict[tuple[str, str], list[int]] = {}
    for parsed in messages:
        if parsed.seq is not None and parsed.farm_id and parsed.channel in topics.DATA:
            handled.setdefault((parsed.farm_id, parsed.gateway_id), []).append(parsed.seq)
    return handled


def _acks(handled: dict[tuple[str, str], list[int]]) -> list[tuple[str, bytes]]:
    return [
        (acks.ack_topic(farm, gateway), acks.ack_payload(gateway, seqs))
        for (farm, gateway), seqs in sorted(handled.items())
    ]


def _reject_notice(parsed: Parsed) -> tuple[str, bytes]:
    topic = topics.topic(parsed.farm_id, parsed.gateway_id, "rejects")
    body = {
        "schema": "rejects/v1",
        "seq": parsed.seq,
        "rejected": [{"index": r.index, "reason": r.reason} for r in parsed.rejections][:50],
    }
    return topic, json.dumps(body).encode()
