"""Which scenes' NDVI COGs may be deleted: those acquired before a cutoff that no parcel's
profile still reads.

A profile reads a scene's COG only to find where a parcel's pixels fell: for a run of low
dates not yet decided, and for a disturbance's extent over its first weeks, with the
clear dates just before them. Those are the dates a profile's next replay loads
(profile_store.resume_rows from the newest date), so their scenes are kept whatever
their age. Claims read the COGs of every stored scene when a plot is submitted (a verdict
needs 270 days of looks): the cutoff should leave them well more than that. The
observations and profiles stay; only the pixel files go, and the ledger forgets their
path, so nothing later looks for them.
"""

from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, select, update

from remote_sensing import store
from remote_sensing.profiles import profile_store
from remote_sensing.tables import parcels, scenes


def scenes_still_read(bind: store.Bind) -> set[str]:
    """Scene ids whose COGs some parcel's profile reads again: the dates its next replay
    loads (its newest, the undecided run, the first weeks of events whose extent is not
    final, and the clear dates before them)."""
    parcel_ids = _parcel_ids(bind)
    kept: set[str] = set()
    for start in range(0, len(parcel_ids), profile_store.CHUNK):
        newest = profile_store.newest_positions(
            bind, parcel_ids[start : start + profile_store.CHUNK]
        )
        resumed = profile_store.resume_rows(bind, {pid: seq for pid, (seq, _) in newest.items()})
        for pid, (_, scene_id) in newest.items():
            kept.add(scene_id)
            kept.update(row.scene_id for row in resumed[pid]["rows"].values())
    return kept


def _parcel_ids(bind: store.Bind) -> list[str]:
    with store._reading(bind) as c:
        return list(c.scalars(select(parcels.c.parcel_id).order_by(parcels.c.parcel_id)))


def prune_ndvi(engine: Engine, before: datetime, dry_run: bool = False) -> dict:
    """Delete the NDVI COGs of scenes acquired before ``before`` that no profile still
    reads, and clear their path in the ledger. Returns what was (or, with ``dry_run``,
    would be) removed: scene ids, files and bytes, and the old scenes kept and why."""
    kept = scenes_still_read(engine)
    query = select(scenes.c.id, scenes.c.scene_id, scenes.c.ndvi_path).where(
        scenes.c.acquired_at < before, scenes.c.ndvi_path.is_not(None)
    )
    with engine.connect() as c:
        old = list(c.execute(query))
    removed, kept_old, freed = [], [], 0
    for row_id, scene_id, path in old:
        if scene_id in kept:
            kept_old.append(scene_id)
            continue
        file = Path(path)
        size = file.stat().st_size if file.exists() else 0
        if not dry_run:
            file.unlink(missing_ok=True)
            with engine.begin() as conn:
                conn.execute(update(scenes).where(scenes.c.id == row_id).values(ndvi_path=None))
        removed.append(scene_id)
        freed += size
    return {
        "before": before.isoformat(),
        "dry_run": dry_run,
        "removed": sorted(set(removed)),
        "bytes": freed,
        "kept_for_profiles": sorted(set(kept_old)),
    }
