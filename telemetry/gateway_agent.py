"""The farm side: a gateway agent that loses nothing between farm devices and the bank.

A device's reader (ear tags, an inverter's logger) or a farm's own software hands items
over as JSON lines, on standard input or as ``*.jsonl`` files dropped into a spool
folder. The agent checks each with the ingester's own rule (its payload schema's
``check``: what it sends is what the ingester takes), numbers them into messages and
keeps them in an on-disk SQLite outbox in the same transaction that takes the input (a
spool file is deleted only after that, and remembered by name, so a crash between the
two does not take it twice). It publishes at QoS 1 and deletes a message only when the
ingester's commit acknowledgement covers its ``seq`` (``acks.py``); what is not
acknowledged within ``resend_after`` seconds is published again with its original
``seq``. So a reading survives the agent's own restart (the outbox is on disk), the
broker losing what it had not yet written to disk, and hours without a network; the
outbox is bounded (``max_messages``): when it is full the agent stops taking input,
which stays where it was (the spool file, the pipe), and says so loudly. Its MQTT Will
marks the gateway offline.
"""

import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import Counter, Gauge

from telemetry import acks, topics
from telemetry.mqtt_connection import BrokerAddress, new_client
from telemetry.payloads import Schema, envelope

log = logging.getLogger("agri.gateway")

DEPTH_EVERY_S = 1.0  # how often the outbox depth gauge is counted
SPOOLED_KEPT = timedelta(days=7)  # how long the names of spool files taken are remembered
# What the farm's operator (or the bank's, for a hosted gateway) watches, per gateway.
PUBLISHED = Counter("agri_gateway_published", "messages published", ["gateway"])
RESENT = Counter("agri_gateway_resent", "messages published again: no ack in time", ["gateway"])
ACKED = Counter("agri_gateway_acked", "messages the ingester acknowledged", ["gateway"])
REFUSED_LINES = Counter("agri_gateway_refused_lines", "input lines refused", ["gateway"])
OUTBOX_FULL = Counter(
    "agri_gateway_outbox_full", "times input waited on a full outbox", ["gateway"]
)
OUTBOX_DEPTH = Gauge(
    "agri_gateway_outbox_depth", "messages kept, not yet acknowledged", ["gateway"]
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after deletes
    kind TEXT NOT NULL,                     -- the channel: readings | events | ...
    items TEXT NOT NULL,                    -- JSON list, as checked
    created_at TEXT NOT NULL,               -- the envelope's sent_at, the same on re-sends
    sent_at REAL                            -- wall time of the last publish; NULL: never
);
CREATE TABLE IF NOT EXISTS spooled (name TEXT PRIMARY KEY, taken_at TEXT NOT NULL);
"""


class OutboxFull(Exception):
    """The outbox holds ``max_messages``: input waits where it is."""


@dataclass
class Taken:
    """The lines of one piece of input that were refused, with why."""

    refused: list[tuple[int, str, str]] = field(default_factory=list)  # (line no, reason, line)


class Outbox:
    """The agent's on-disk queue of numbered messages (SQLite, one writer: the agent)."""

    def __init__(self, path: Path, max_messages: int = 100_000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a taken reading is on disk
        self.db.executescript(SCHEMA)
        # A new outbox numbers from the current time in milliseconds, not from 1: a gateway
        # whose outbox was lost (a new disk) must not reuse the numbers of the one before,
        # or an ack the broker kept for it from then would delete readings never stored.
        with self._transaction():
            if not self.db.execute(
                "SELECT 1 FROM sqlite_sequence WHERE name = 'outbox'"
            ).fetchone():
                start = time.time_ns() // 1_000_000
                self.db.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (start,)
                )

    def close(self) -> None:
        self.db.close()

    def add(self, messages: list[tuple[str, list]], spool_name: str | None = None) -> list[int]:
        """Number and keep ``messages`` ((kind, items) each), and remember ``spool_name``
        as taken, in one transaction: their seqs. OutboxFull if they do not fit."""
        depth = self.depth()
        if depth + len(messages) > self.max_messages:
            raise OutboxFull(f"outbox {self.path} holds {depth} of {self.max_messages}")
        now = datetime.now(UTC).isoformat()
        insert = "INSERT INTO outbox (kind, items, created_at) VALUES (?, ?, ?)"
        with self._transaction():
            seqs = [
                self.db.execute(insert, (kind, json.dumps(items), now)).lastrowid
                for kind, items in messages
            ]
            if spool_name is not None:
                self.db.execute("INSERT INTO spooled VALUES (?, ?)", (spool_name, now))
                # a file taken a week ago and still there would be a new one by now
                week_ago = (datetime.now(UTC) - SPOOLED_KEPT).isoformat()
                self.db.execute("DELETE FROM spooled WHERE taken_at < ?", (week_ago,))
        return seqs

    def message(self, seq: int) -> tuple | None:
        """(seq, kind, items, created_at) of a message still kept, else None."""
        return self.db.execute(
            "SELECT seq, kind, items, created_at FROM outbox WHERE seq = ?", (seq,)
        ).fetchone()

    def was_spooled(self, name: str) -> bool:
        return (
            self.db.execute("SELECT 1 FROM spooled WHERE name = ?", (name,)).fetchone() is not None
        )

    def due(self, now: float, resend_after: float, limit: int) -> list[tuple]:
        """(seq, kind, items, created_at, sent_at) never sent or sent longer ago than
        ``resend_after`` and not acknowledged, oldest first."""
        return self.db.execute(
            "SELECT seq, kind, items, created_at, sent_at FROM outbox "
            "WHERE sent_at IS NULL OR sent_at < ? ORDER BY seq LIMIT ?",
            (now - resend_after, limit),
        ).fetchall()

    def in_flight(self, now: float, resend_after: float) -> int:
        """Messages sent and not yet acknowledged nor due again."""
        row = self.db.execute(
            "SELECT count(*) FROM outbox WHERE sent_at >= ?", (now - resend_after,)
        ).fetchone()
        return row[0]

    def mark_sent(self, seqs: list[int], now: float) -> None:
        with self._transaction():
            self.db.executemany(
                "UPDATE outbox SET sent_at = ? WHERE seq = ?", [(now, s) for s in seqs]
            )

    def acknowledge(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Forget the messages an ack covers; how many there were."""
        with self._transaction():
            # only what was sent can have been acknowledged
            delete = "DELETE FROM outbox WHERE seq BETWEEN ? AND ? AND sent_at IS NOT NULL"
            return sum(self.db.execute(delete, r).rowcount for r in ranges)

    def depth(self) -> int:
        return self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    @contextlib.contextmanager
    def _transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")


def read_lines(
    lines: Iterable[str], now: datetime, per_message: int, schemas: Sequence[Schema]
) -> tuple[list, Taken]:
    """JSON lines to messages ((channel, items), up to ``per_message`` items each, one
    channel apiece) and the lines refused with their reason. A line is the first schema's
    that takes it (``Schema.takes``), else the last's (whose check then says why not)."""
    taken = Taken()
    # messages in the contract's order of channels, whatever order the schemas are asked in
    items: dict[str, list] = {c: [] for c in topics.DATA if any(s.channel == c for s in schemas)}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            item = json.loads(text)
            if not isinstance(item, dict):
                raise ValueError("a line must be a JSON object")
            schema = next((s for s in schemas if s.takes(item)), schemas[-1])
            value = schema.check(item, now)
        except ValueError as exc:  # JSONDecodeError is one
            taken.refused.append((number, str(exc), text))
            continue
        items[schema.channel].append(schema.dump(value))
    messages = [
        (kind, chunk[i : i + per_message])
        for kind, chunk in items.items()
        for i in range(0, len(chunk), per_message)
    ]
    return messages, taken


@dataclass
class AgentStats:
    published: int = 0
    resent: int = 0
    acked: int = 0
    refused_lines: int = 0


class GatewayAgent:
    """One gateway's agent: ``take_*`` puts input in the outbox, ``pump`` publishes what is
    due and applies the acknowledgements that came in. The MQTT network runs on paho's
    thread; the outbox is used from the caller's thread only."""

    def __init__(
        self,
        outbox: Outbox,
        address: BrokerAddress,
        farm_id: str,
        gateway_id: str,
        *,
        resend_after: float = 30.0,
        window: int = 1000,
        schemas: Sequence[Schema],
        per_message: int = 100,
        ca_file: str | None = None,
    ):
        self.outbox = outbox
        self.schemas = tuple(schemas)
        self._names = {schema.channel: schema.name for schema in schemas}
        self.farm_id, self.gateway_id = farm_id, gateway_id
        self.resend_after, self.window, self.per_message = resend_after, window, per_message
        self.stats = AgentStats()
        self._acks: queue.Queue[bytes] = queue.Queue()
        self._connected = threading.Event()
        self._depth_due = 0.0
        for metric in (PUBLISHED, RESENT, ACKED, REFUSED_LINES, OUTBOX_FULL, OUTBOX_DEPTH):
            metric.labels(gateway_id)  # every series from the start, at 0
        client = new_client(address, f"gw-{gateway_id}", ca_file=ca_file)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(window)
        client.will_set(self.topic("status"), b'{"status": "offline"}', qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *_: self._connected.clear()
        client.on_message = lambda _c, _u, message: self._acks.put(message.payload)
        self.client = client
        self.address = address

    # --- network thread -----------------------------------------------------------

    def _envelope(self, seq: int, channel: str, items: str, created_at: str) -> bytes:
        """The MQTT payload of an outbox message: the same bytes on every send."""
        return envelope(self.gateway_id, seq, self._names[channel], channel, items, created_at)

    def topic(self, channel: str) -> str:
        """This gateway's topic of ``channel`` (telemetry.topics)."""
        return topics.topic(self.farm_id, self.gateway_id, channel)

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused gateway %s: %s", self.gateway_id, reason_code)
            return
        client.subscribe(self.topic("acks"), qos=1)
        client.publish(self.topic("status"), b'{"status": "online"}', qos=1, retain=True)
        self._connected.set()
        log.info("gateway %s connected to %s:%s", self.gateway_id, *self._where())

    def _where(self) -> tuple[str, int]:
        return self.address.host, self.address.port

    # --- caller's thread ----------------------------------------------------------

    def start(self) -> None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 24 * 3600  # acks sent while we are away wait
        self.client.connect_async(
            *self._where(), keepalive=30, clean_start=False, properties=properties
        )
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def take_lines(self, lines: Iterable[str], spool_name: str | None = None) -> Taken:
        """Check and keep input lines (OutboxFull: nothing of them was kept)."""
        messages, taken = read_lines(lines, datetime.now(UTC), self.per_message, self.schemas)
        if messages or spool_name is not None:
            self.outbox.add(messages, spool_name)
        self.stats.refused_lines += len(taken.refused)
        REFUSED_LINES.labels(self.gateway_id).inc(len(taken.refused))
        return taken

    def take_spool(self, folder: Path) -> int:
        """Take every complete ``*.jsonl`` file in ``folder`` (writers write another name and
        rename), oldest first; refused lines go to ``rejected/NAME.errors.jsonl`` beside it.
        Files stay while the outbox is full. Returns the files taken."""
        taken_files = 0
        for path in sorted(folder.glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name)):
            name = f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
            if self.outbox.was_spooled(name):
                path.unlink(missing_ok=True)  # taken before a crash, not yet deleted
                continue
            try:
                taken = self.take_lines(path.read_text().splitlines(), spool_name=name)
            except OutboxFull as exc:
                self.warn_full(exc)
                break
            if taken.refused:
                errors = folder / "rejected" / f"{path.stem}.errors.jsonl"
                errors.parent.mkdir(exist_ok=True)
                with open(errors, "a") as out:
                    for number, reason, line in taken.refused:
                        out.write(json.dumps({"line": number, "reason": reason, "raw": line}))
                        out.write("\n")
                log.warning("%s: %d line(s) refused, see %s", path.name, len(taken.refused), errors)
            path.unlink()
            taken_files += 1
        return taken_files

    def warn_full(self, exc: OutboxFull) -> None:
        OUTBOX_FULL.labels(self.gateway_id).inc()
        log.error("OUTBOX FULL, input waits until the ingester acknowledges: %s", exc)

    def pump(self) -> int:
        """Apply the acks that arrived, then publish what is due (new, or unacknowledged for
        ``resend_after``), at most ``window`` unacknowledged at once, while connected.
        Returns how many messages it acknowledged and published (0: nothing to do)."""
        work = 0
        while True:
            try:
                payload = self._acks.get_nowait()
            except queue.Empty:
                break
            try:
                acked = self.outbox.acknowledge(acks.parse_ack(payload))
                work += acked
                self.stats.acked += acked
                ACKED.labels(self.gateway_id).inc(acked)
            except ValueError as exc:
                log.warning("gateway %s: ignored an unreadable ack: %s", self.gateway_id, exc)
        if time.monotonic() >= self._depth_due:  # a count of the outbox: once a second
            OUTBOX_DEPTH.labels(self.gateway_id).set(self.outbox.depth())
            self._depth_due = time.monotonic() + DEPTH_EVERY_S
        if not self._connected.is_set():
            return work
        now = time.time()
        room = self.window - self.outbox.in_flight(now, self.resend_after)
        if room <= 0:
            return work
        due = self.outbox.due(now, self.resend_after, room)
        for seq, kind, items, created_at, sent_at in due:
            payload = self._envelope(seq, kind, items, created_at)
            self.client.publish(self.topic(kind), payload, qos=1)
            self.stats.published += 1
            self.stats.resent += sent_at is not None
            PUBLISHED.labels(self.gateway_id).inc()
            if sent_at is not None:
                RESENT.labels(self.gateway_id).inc()
        if due:
            self.outbox.mark_sent([row[0] for row in due], now)
        return work + len(due)

    def republish(self, seq: int) -> bool:
        """Publish a kept message once more, now: a gateway repeating itself (the
        simulator's duplicate fault); the ingester stores its readings once."""
        row = self.outbox.message(seq)
        if row is None or not self._connected.is_set():
            return False
        seq, kind, items, created_at = row
        payload = self._envelope(seq, kind, items, created_at)
        self.client.publish(self.topic(kind), payload, qos=1)
        return True

    def drained(self) -> bool:
        return self.outbox.depth() == 0


END_OF_INPUT = None  # what a line reader puts on its queue when its input ends
LINES_PER_ROUND = 10_000  # input lines taken into the outbox in one transaction at most


def read_stream(stream, lines: "queue.Queue[str | None]") -> None:
    """Copy a text stream's lines onto a bounded queue (a full queue holds the producer
    back: a pipe is never read faster than the outbox takes), then END_OF_INPUT."""
    for line in stream:
        lines.put(line)
    lines.put(END_OF_INPUT)


def serve(
    agent: GatewayAgent,
    stop: threading.Event,
    lines: "queue.Queue[str | None] | None" = None,
    spool: Path | None = None,
    poll_s: float = 0.05,
    spool_every_s: float = 0.5,
) -> None:
    """Take input (lines from a queue fed by read_stream, or a spool folder), publish and
    apply acks until ``stop``; with lines, also return once their input has ended and the
    outbox is empty (everything acknowledged). It waits ``poll_s`` only when a round found
    nothing to do: a stream is taken as fast as the outbox and the broker allow."""
    pending: list[str] = []
    ended = False
    next_spool = 0.0
    while not stop.is_set():
        busy = False
        if spool is not None and time.monotonic() >= next_spool:
            busy = agent.take_spool(spool) > 0
            next_spool = time.monotonic() + spool_every_s
        if lines is not None and not ended:
            while len(pending) < LINES_PER_ROUND:
                try:
                    line = lines.get_nowait()
                except queue.Empty:
                    break
                if line is END_OF_INPUT:
                    ended = True
                    break
                pending.append(line)
        if pending:
            try:
                taken = agent.take_lines(pending)
            except OutboxFull as exc:
                agent.warn_full(exc)
                stop.wait(1.0)
            else:
                for number, reason, line in taken.refused:
                    log.warning("input line %d refused (%s): %s", number, reason, line[:200])
                pending = []
                busy = True
        busy = agent.pump() > 0 or busy
        if ended and not pending and agent.drained():
            return
        if not busy:
            stop.wait(poll_s)
