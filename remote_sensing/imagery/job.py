"""The imagery job: every new scene in an inbox becomes an NDVI COG and parcel observations.

The ledger (``scenes`` table) keys each scene by id and content checksum, so a run only
does what no earlier run finished. A scene is one database transaction: its observations
and its ledger row commit together or not at all, and a kill midway leaves nothing that
the next run would mistake for done.
"""

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from remote_sensing import store
from remote_sensing.imagery.cluster import Cluster, run_on_cluster
from remote_sensing.imagery.scene_processing import SceneOutcome, run_scene
from remote_sensing.imagery.scenes import SceneSource, find_scenes
from remote_sensing.parcel_set import ParcelSet
from remote_sensing.profiles.profile_update import profiles_while_writing, update_profiles

log = logging.getLogger("agri.imagery")

__all__ = ["Cluster", "RunSummary", "SceneOutcome", "run_inbox"]


@dataclass
class RunSummary:
    scenes: list[SceneOutcome] = field(default_factory=list)
    profiles_updated: int = 0
    profile_failures: dict[str, str] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for s in self.scenes if s.status == status)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0 and not self.profile_failures

    def as_json(self) -> dict:
        return {
            "processed": self.count("processed"),
            "skipped": self.count("skipped"),
            "superseded": self.count("superseded"),
            "failed": self.count("failed"),
            "offset_contradicted": sum(1 for s in self.scenes if s.offset_contradicted),
            "profiles_updated": self.profiles_updated,
            "profile_failures": self.profile_failures,
            "scenes": [asdict(s) for s in self.scenes],
        }


def run_inbox(
    engine: Engine,
    inbox: Path,
    data_dir: Path,
    on_scene: Callable[[SceneOutcome], None] | None = None,
    cluster: Cluster | None = None,
    allowed_hosts: frozenset[str] = frozenset(),
) -> RunSummary:
    """Process every scene in ``inbox`` not yet done; one bad scene never stops the others.

    Items may name their band files by URL on ``allowed_hosts``: those are read over HTTP.

    With a ``cluster`` the scenes are spread over its workers, one task per scene; each
    scene is still one transaction and the ledger still skips what is done, so the result
    is the serial run's. Profiles are then updated here, once, for the touched parcels.
    """
    return run_sources(engine, find_scenes(Path(inbox), allowed_hosts), data_dir, on_scene, cluster)


def run_sources(
    engine: Engine,
    sources: list[SceneSource],
    data_dir: Path,
    on_scene: Callable[[SceneOutcome], None] | None = None,
    cluster: Cluster | None = None,
    parcels: ParcelSet | None = None,
) -> RunSummary:
    """run_inbox for scenes found elsewhere (a STAC API's items, staged by stac_sync);
    ``parcels``: the stored parcels, where the caller has just loaded them."""
    done = store.done_scene_keys(engine)
    parcels = store.load_parcel_set(engine) if parcels is None else parcels
    summary = RunSummary()
    touched: set[str] = set()
    current: set[str] = set()  # touched parcels whose stored profile counts every scene
    if cluster is None:
        results = _serial(engine, sources, done, parcels, Path(data_dir), touched, current)
    else:
        results = run_on_cluster(engine, cluster, sources, done, parcels, Path(data_dir))
    for outcome, parcel_ids in results:
        touched.update(parcel_ids)
        summary.scenes.append(outcome)
        if on_scene is not None:
            on_scene(outcome)
    order = {str(source.path): i for i, source in enumerate(sources)}
    summary.scenes.sort(key=lambda o: order[o.path])  # the inbox's order, however they ran
    if touched:
        # what the run's scenes changed and no scene's transaction advanced (scenes run on
        # a cluster): replayed from the earliest of them
        since = store.earliest_acquired(engine, [s.scene_id for s in summary.scenes])
        summary.profile_failures = update_profiles(engine, sorted(touched - current), since)
        summary.profiles_updated = len(touched) - len(summary.profile_failures)
    return summary


def _serial(
    engine: Engine,
    sources: list[SceneSource],
    done: set[tuple[str, str]],
    parcels: ParcelSet,
    data_dir: Path,
    touched: set[str],
    current: set[str],
) -> Iterator[tuple[SceneOutcome, tuple]]:
    """The scenes one after another in this process. Each scene's parcels have their
    profiles advanced inside its transaction while its COG is written
    (profile_update.profiles_while_writing), so they commit with it; ``current`` gains
    those and loses the scene's others (update_profiles rebuilds them after the run). A
    scene that fails rolls back, profiles and all."""
    for source in sources:
        meanwhile = _ProfilesMeanwhile()
        outcome = run_scene(
            engine, source, done, parcels, data_dir, touched, while_writing=meanwhile
        )
        if outcome.status in ("processed", "superseded"):  # committed
            current.difference_update(meanwhile.parcel_ids)
            current.update(meanwhile.advanced)
        yield outcome, ()


class _ProfilesMeanwhile:
    """The while_writing of a scene (scene_processing.process_scene): the profiles
    advanced in its transaction. An error in advancing them only leaves them to
    update_profiles after the run. A database error is raised: it has aborted the
    scene's transaction, so the scene is redone if the database was briefly away (a
    restart) or fails as any other does. Kept here, the next statement of the transaction
    failed with "invalid transaction", which is no reason to retry, and a PostgreSQL
    restart during the profiles failed the scene."""

    def __init__(self) -> None:
        self.parcel_ids: list[str] = []
        self.advanced: set[str] = set()

    def __call__(
        self, conn: Connection, scene_id: str, parcel_ids: list[str], pending: dict
    ) -> None:
        self.parcel_ids, self.advanced = parcel_ids, set()  # a scene retried starts afresh
        try:
            failed = profiles_while_writing(conn, scene_id, parcel_ids, pending)
            self.advanced = set(parcel_ids) - set(failed)
        except DBAPIError:
            raise
        except Exception as exc:  # the profiles are built after the run instead
            log.warning("profiles not built while the COG was written: %s", exc)
