"""Ingest partitions: several ingesters that survive a broker restart and each other.

Mosquitto never saves shared subscriptions, so after a restart the `$share` group has
no member until each ingester resubscribes, and what arrives meanwhile has no taker;
and an ingester that dies for good leaves its session's queue to nobody. Instead the
farms are split into a fixed number of partitions (``partition_of``: a stable hash of
the farm id). Each partition is one plain, persistent MQTT session with a stable client
id (``agri-ingest-p{k}``) subscribed to the topics of its farms, which Mosquitto saves
and restores. A partition is served by at most one process at a time: the one holding
its PostgreSQL advisory lock (``Leases``). Processes announce themselves with a member
lock and each takes its fair share, ceil(partitions / members): a process that dies
releases its locks with its connection, and the others take its partitions over on
their next round (every ``LEASE_ROUND_S``), connecting under the same client id and
so draining what the broker kept. On SQLite (one machine) one process, the holder of
a file lock, serves every partition.
"""

import fcntl
import logging
import math
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Gauge
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from telemetry import topics
from telemetry.mqtt_connection import notify_ready

log = logging.getLogger("agri.ingest")

DEFAULT_PARTITIONS = 8  # `agri ingest`'s; every ingester of a deployment must use the same
LEASE_ROUND_S = 2.0  # how often a process looks for partitions to take, give or resubscribe
PARTITION_LOCKS = 0x61677270  # the advisory locks' first key ("agrp"): one per partition
MEMBER_LOCKS = 0x6167726D  # ("agrm"): one per live ingest process, keyed by its backend pid
HELD = Gauge("agri_ingest_partitions_held", "ingest partitions this process serves")


def partition_of(farm_id: str, partitions: int) -> int:
    """The partition of a farm: the same in every process and on every run."""
    return zlib.crc32(farm_id.encode()) % partitions


def partition_client_id(k: int) -> str:
    return f"agri-ingest-p{k}"


def partition_topics(farm_ids: set[str], k: int, partitions: int) -> list[str]:
    return [
        topic
        for farm in sorted(farm_ids)
        if partition_of(farm, partitions) == k
        for topic in topics.farm_filters(farm)
    ]


def fair_share(partitions: int, members: int) -> int:
    return math.ceil(partitions / max(1, members))


class Leases:
    """Which partitions this process may serve. PostgreSQL: session advisory locks on one
    connection of its own (released by the server when the connection or the process
    dies); SQLite: an exclusive file lock beside the database, for all of them."""

    def __init__(self, database_url: str, partitions: int):
        self.partitions = partitions
        self.url = make_url(database_url)
        self.held: set[int] = set()
        self._engine: Engine | None = None
        self._conn = None
        self._file = None
        self._standing_by = False  # SQLite: another process holds the file lock

    @property
    def sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    def refresh(self) -> set[int]:
        """The partitions to serve: those held, up to the fair share, and free ones taken
        up to it. One held above the share stays locked until ``give_back`` (after its
        session stopped, so two sessions never share a client id). A lost database
        connection loses every lock: then none."""
        if self.sqlite:
            return self._refresh_file_lock()
        try:
            if self._conn is None:
                self._connect()
            # advisory locks belong to a database; pg_locks shows the whole server's
            members = self._conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid = :cls AND granted AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"cls": MEMBER_LOCKS},
            ).scalar_one()
            share = fair_share(self.partitions, members)
            wanted = set(sorted(self.held)[:share])
            for k in range(self.partitions):
                if len(wanted) >= share:
                    break
                if k not in self.held and self._try_lock(k):
                    self.held.add(k)
                    wanted.add(k)
        except DBAPIError as exc:
            log.warning("partition leases lost with the database connection: %s", exc.orig)
            self._drop_connection()
            return set()
        return wanted

    def give_back(self, k: int) -> None:
        """Release one partition (after its session stopped)."""
        if k in self.held and not self.sqlite:
            try:
                self._unlock(k)
            except DBAPIError:
                self._drop_connection()
        self.held.discard(k)

    def close(self) -> None:
        """Hand every partition back now: unlocked before the connection closes, so a
        peer's next round finds them free (the server releases a closed connection's
        locks only once its backend has noticed, which a fast peer can beat)."""
        if self._conn is not None and not self.sqlite:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
            except DBAPIError:  # the server is gone: it released them itself
                pass
        self._drop_connection()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _connect(self) -> None:
        self._engine = create_engine(
            self.url, isolation_level="AUTOCOMMIT", pool_size=1, pool_pre_ping=True
        )
        self._conn = self._engine.connect()
        pid = self._conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        self._conn.execute(
            text("SELECT pg_advisory_lock(:cls, :pid)"), {"cls": MEMBER_LOCKS, "pid": pid}
        )

    def _try_lock(self, k: int) -> bool:
        return self._conn.execute(
            text("SELECT pg_try_advisory_lock(:cls, :k)"), {"cls": PARTITION_LOCKS, "k": k}
        ).scalar_one()

    def _unlock(self, k: int) -> None:
        self._conn.execute(
            text("SELECT pg_advisory_unlock(:cls, :k)"), {"cls": PARTITION_LOCKS, "k": k}
        )
        self.held.discard(k)

    def _drop_connection(self) -> None:
        """Forget the connection and with it every lock (the server has released them, or
        does when it sees the connection close)."""
        self.held = set()
        if self._conn is not None:
            try:
                self._conn.close()  # a checked-out connection: dispose() would not close it
            except DBAPIError:  # already gone with the server
                pass
            self._engine.dispose()
        self._conn = self._engine = None

    def _refresh_file_lock(self) -> set[int]:
        if self._file is None:
            path = Path(self.url.database or "agri.db").with_suffix(".ingest-partitions.lock")
            self._file = open(path, "a")
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._file.close()
                self._file = None
                if not self._standing_by:
                    log.info("another agri ingest serves every partition (%s): standing by", path)
                    self._standing_by = True
                return set()
            self.held = set(range(self.partitions))
        return set(self.held)


class PartitionedIngest:
    """One process's share of the partitions: a session of one ingester (one writer
    process) per partition held, added and removed as the leases change, subscribed to
    new farms as they are registered."""

    def __init__(self, leases: Leases, farm_ids: Callable[[], set[str]], ingester):
        self.leases, self.farm_ids, self.ingester = leases, farm_ids, ingester
        self.held: set[int] = set()
        # Ready (systemd's READY=1) once every partition first taken is subscribed, not
        # when the first of them is: what is published before goes to no session yet.
        ingester.announce_ready = False
        self.ready = False

    def run(self, stop: threading.Event) -> None:
        worker = threading.Thread(target=self.ingester.run, name="ingest", daemon=True)
        worker.start()
        try:
            while not stop.is_set() and worker.is_alive():
                self.round()
                if not self.ready and self.held:
                    self.ready = self.ingester.wait_subscribed(LEASE_ROUND_S)
                    if self.ready:
                        notify_ready()
                        continue
                stop.wait(LEASE_ROUND_S)
        finally:
            self.ingester.stop()
            worker.join(120)
            for k in list(self.held):
                self.leases.give_back(k)
            self.leases.close()

    def round(self) -> None:
        """Follow the leases; resubscribe sessions to farms registered since."""
        wanted = self.leases.refresh()
        for k in sorted(self.held - wanted):
            log.info("partition %d: lease lost or above this process's share, stopping", k)
            self.ingester.remove_session(partition_client_id(k))
            self.held.discard(k)
            self.leases.give_back(k)
        for k in sorted(self.leases.held - wanted - self.held):
            self.leases.give_back(k)
        try:
            farms = self.farm_ids()
        except Exception as exc:  # the database is away: keep the current subscriptions
            log.warning("cannot list farms (%s); subscriptions unchanged", exc)
            farms = None
        for k in sorted(wanted - self.held):
            filters = partition_topics(farms or set(), k, self.leases.partitions)
            log.info("partition %d: serving it as %s", k, partition_client_id(k))  # then its
            self.ingester.add_session(partition_client_id(k), filters)  # session's own lines
            self.held.add(k)
        HELD.set(len(self.held))
        if farms is not None:
            for k in self.held:
                session = self.ingester.sessions.get(partition_client_id(k))
                if session is None:
                    continue
                known = set(session.topics)  # thousands of farms: a set, not a list scan
                new = [t for t in partition_topics(farms, k, self.leases.partitions)
                       if t not in known]  # fmt: skip
                if new:
                    session.add_topics(new)
