"""The imagery job: every new scene in an inbox becomes an NDVI COG and parcel observations.

The ledger (``scenes`` table) keys each scene by id and content checksum, so a run only
does what no earlier run finished. A scene is one database transaction: its observations
and its ledger row commit together or not at all, and a kill midway leaves nothing that
the next run would mistake for done.
"""

import ctypes
import logging
import os
import shutil
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dask.array as da
import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from remote_sensing import indices, store
from remote_sensing.cog import safe_name, write_cog
from remote_sensing.coverage import Grid, cached_weights
from remote_sensing.files import atomic_write
from remote_sensing.profile_update import update_profiles
from remote_sensing.scenes import SceneSource, find_scenes, load_scene, parse_datetime, scene_size
from remote_sensing.zonal import parcel_statistics

log = logging.getLogger("agri.imagery")

# GDAL's block cache defaults to 5 % of RAM and would fill with tiles we read exactly once;
# a small cache keeps a full-tile scene under 2 GB. Set GDAL_CACHEMAX to override.
os.environ.setdefault("GDAL_CACHEMAX", "128")


@dataclass
class SceneOutcome:
    scene_id: str
    path: str
    status: str  # processed | skipped | failed
    seconds: float = 0.0
    observations: int = 0
    error: str | None = None


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
            "failed": self.count("failed"),
            "profiles_updated": self.profiles_updated,
            "profile_failures": self.profile_failures,
            "scenes": [asdict(s) for s in self.scenes],
        }


@dataclass(frozen=True)
class Cluster:
    """Where scenes go when they run on Dask distributed: the client, and how a worker
    opens the same database (a URL and a picklable function; workers share the database
    and the data directory, which must be the same path on every worker).

    A scene of more than ``split_pixels`` pixels is split into bands of ``window_rows``
    rows: each band's NDVI and pixel state is computed on whichever worker is free, and
    one task writes the COG and the parcel statistics from them (the serial run's
    numbers to the bit: both are per-pixel functions)."""

    client: object  # distributed.Client
    database_url: str
    open_engine: Callable[[str], Engine]
    split_pixels: int = 4096 * 4096
    window_rows: int = 2048


def run_inbox(
    engine: Engine,
    inbox: Path,
    data_dir: Path,
    on_scene: Callable[[SceneOutcome], None] | None = None,
    cluster: Cluster | None = None,
) -> RunSummary:
    """Process every scene in ``inbox`` not yet done; one bad scene never stops the others.

    With a ``cluster`` the scenes are spread over its workers, one task per scene; each
    scene is still one transaction and the ledger still skips what is done, so the result
    is the serial run's. Profiles are then updated here, once, for the touched parcels.
    """
    sources = find_scenes(Path(inbox))
    done = store.done_scene_keys(engine)
    parcels = store.load_parcels_frame(engine)
    summary = RunSummary()
    touched: set[str] = set()
    if cluster is None:
        results = (
            (_run_one(engine, source, done, parcels, Path(data_dir), touched), ())
            for source in sources
        )
    else:
        results = _run_on_cluster(engine, cluster, sources, done, parcels, Path(data_dir))
    for outcome, parcel_ids in results:
        touched.update(parcel_ids)
        summary.scenes.append(outcome)
        if on_scene is not None:
            on_scene(outcome)
    order = {str(source.path): i for i, source in enumerate(sources)}
    summary.scenes.sort(key=lambda o: order[o.path])  # the inbox's order, however they ran
    if touched:
        summary.profile_failures = update_profiles(engine, sorted(touched))
        summary.profiles_updated = len(touched) - len(summary.profile_failures)
    return summary


# A scene whose task is lost (its worker died and took the task's inputs with it) is
# started again from its plan this many times before it is failed.
CLUSTER_RETRIES = 2


def _run_on_cluster(
    engine: Engine,
    cluster: Cluster,
    sources: list[SceneSource],
    done: set[tuple[str, str]],
    parcels: gpd.GeoDataFrame,
    data_dir: Path,
):
    """Plan every scene on the workers (checksum and size: the files are read there, not
    here), then one task per scene, with window tasks before it for a large one. The
    ledger and the parcels are read once, here, and the parcels sent to the workers once.

    Dask redoes a task whose worker died; a task that lost its inputs too (the parcels
    may live on one worker only: Dask trims extra copies) is started again here from its
    plan, with the parcels sent again. A scene that keeps failing that way is failed in
    the ledger, and the run goes on."""
    from distributed import as_completed

    client = cluster.client
    shared_parcels = None

    def parcels_on_cluster():
        nonlocal shared_parcels
        if shared_parcels is None or shared_parcels.status != "finished":
            [shared_parcels] = client.scatter([parcels], broadcast=True)
        return shared_parcels

    source_of: dict[str, SceneSource] = {}
    scratch_of: dict[str, Path] = {}
    attempts: dict[str, int] = {}
    running = as_completed()

    def plan(source: SceneSource) -> None:
        future = client.submit(plan_on_worker, source, pure=False)
        source_of[future.key] = source
        running.add(future)

    for source in sources:
        plan(source)
    for future in running:
        source = source_of.pop(future.key)
        scratch = scratch_of.pop(future.key, None)
        try:
            result = future.result()
        except Exception as exc:  # a worker lost for good, or inputs lost with it
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            attempts[source.scene_id] = attempts.get(source.scene_id, 0) + 1
            if attempts[source.scene_id] <= CLUSTER_RETRIES:
                log.warning("scene %s lost on the cluster (%s); again", source.scene_id, exc)
                plan(source)
            else:
                yield _lost_on_cluster(engine, source, exc), []
            continue
        if not isinstance(result, ScenePlan):
            yield result
            continue
        if result.checksum is not None and (source.scene_id, result.checksum) in done:
            yield SceneOutcome(source.scene_id, str(source.path), "skipped"), []
            continue
        windows = []
        if result.checksum is not None and result.height * result.width > cluster.split_pixels:
            scratch = data_dir / "scratch" / f"{safe_name(source.scene_id)}-{uuid.uuid4().hex}"
            windows = [
                client.submit(window_on_worker, source, (r0, r1), scratch, pure=False)
                for r0, r1 in _row_bands(result.height, cluster.window_rows)
            ]
        scene = client.submit(
            scene_on_worker,
            source,
            done=done,
            parcels=parcels_on_cluster(),
            database_url=cluster.database_url,
            open_engine=cluster.open_engine,
            data_dir=data_dir,
            checksum=result.checksum,
            windows=windows,
            pure=False,
        )
        source_of[scene.key] = source
        if scratch is not None:
            scratch_of[scene.key] = scratch
        running.add(scene)


def _row_bands(height: int, rows: int) -> list[tuple[int, int]]:
    return [(r0, min(r0 + rows, height)) for r0 in range(0, height, rows)]


def _lost_on_cluster(engine: Engine, source: SceneSource, exc: Exception) -> SceneOutcome:
    error = f"{type(exc).__name__}: {exc}"
    log.error("scene %s lost on the cluster: %s", source.scene_id, error)
    ledger = {"scene_id": source.scene_id, "source_path": str(source.path), "checksum": ""}
    store.record_scene_failed(engine, ledger, error)
    return SceneOutcome(source.scene_id, str(source.path), "failed", error=error)


@dataclass(frozen=True)
class ScenePlan:
    """What the client needs to place a scene: its checksum (None: unreadable, and the
    scene task fails it with the reason) and its size in pixels."""

    checksum: str | None
    height: int = 0
    width: int = 0


# On a worker, dask's default scheduler is the cluster itself: a scene's own arrays
# computed that way would be nested tasks waiting for the worker's own busy thread (a
# deadlock with one thread per worker). Every task below computes on local threads.
_LOCAL_THREADS = {"scheduler": "threads"}


def plan_on_worker(source: SceneSource) -> ScenePlan:
    try:
        checksum = source.checksum()
        height, width = scene_size(source.path, source.roots)
    except Exception:
        return ScenePlan(None)
    return ScenePlan(checksum, height, width)


Window = tuple[int, int, Path]  # rows r0:r1 of a scene, and the file holding their arrays


def window_on_worker(source: SceneSource, rows: tuple[int, int], scratch: Path) -> Window:
    """NDVI and pixel state of one band of rows, saved for the scene's task to assemble."""
    import dask

    with dask.config.set(_LOCAL_THREADS):
        ds = load_scene(source.path, source.roots)
        ndvi, state = scene_arrays(ds.isel(y=slice(*rows)))
    path = scratch / f"rows-{rows[0]:06d}-{rows[1]:06d}.npz"
    atomic_write(path, lambda fh: np.savez(fh, ndvi=ndvi, state=state))
    return (*rows, path)


def _assembled(windows: list[Window], grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    if windows[-1][1] != grid.height:
        raise RuntimeError("the scene changed size while it was split into windows")
    ndvi = np.empty((grid.height, grid.width), dtype=np.float32)
    state = np.empty((grid.height, grid.width), dtype=np.uint8)
    for r0, r1, path in windows:
        with np.load(path) as part:
            ndvi[r0:r1], state[r0:r1] = part["ndvi"], part["state"]
    return ndvi, state


_WORKER_ENGINES: dict[str, Engine] = {}


def _worker_engine(database_url: str, open_engine: Callable[[str], Engine]) -> Engine:
    engine = _WORKER_ENGINES.get(database_url)
    if engine is None:
        engine = _WORKER_ENGINES.setdefault(database_url, open_engine(database_url))
    return engine


def scene_on_worker(
    source: SceneSource,
    done: set[tuple[str, str]],
    parcels: gpd.GeoDataFrame,
    database_url: str,
    open_engine: Callable[[str], Engine],
    data_dir: Path,
    checksum: str | None = None,
    windows: list[Window] = (),
) -> tuple[SceneOutcome, list[str]]:
    """One scene on a Dask worker: (its outcome, the parcels it touched).

    With ``windows`` the arrays were computed by window tasks; their scratch files go when
    the scene is done.
    """
    import dask

    engine = _worker_engine(database_url, open_engine)
    touched: set[str] = set()
    try:
        with dask.config.set(_LOCAL_THREADS):
            outcome = _run_one(engine, source, done, parcels, data_dir, touched, checksum, windows)
    finally:
        if windows:
            shutil.rmtree(windows[0][2].parent, ignore_errors=True)
    return outcome, sorted(touched)


def _run_one(
    engine: Engine,
    source: SceneSource,
    done: set[tuple[str, str]],
    parcels: gpd.GeoDataFrame,
    data_dir: Path,
    touched: set[str],
    checksum: str | None = None,
    windows: list[Window] = (),
) -> SceneOutcome:
    started = time.perf_counter()
    outcome = SceneOutcome(source.scene_id, str(source.path), "processed")
    ledger = {"scene_id": source.scene_id, "source_path": str(source.path), "checksum": ""}
    try:
        ledger["checksum"] = checksum or source.checksum()
        if (source.scene_id, ledger["checksum"]) in done:
            outcome.status = "skipped"
            return outcome
        parcel_ids = _with_database_retries(
            lambda: process_scene(engine, source, ledger, parcels, data_dir, windows),
            source.scene_id,
        )
        outcome.observations = len(parcel_ids)
        touched.update(parcel_ids)
    except Exception as exc:  # one bad scene must not stop the others
        outcome.status = "failed"
        outcome.error = f"{type(exc).__name__}: {exc}"
        ledger["seconds"] = time.perf_counter() - started
        store.record_scene_failed(engine, ledger, outcome.error + "\n" + traceback.format_exc())
    outcome.seconds = round(time.perf_counter() - started, 3)
    return outcome


DATABASE_RETRY_S = (1, 2, 4, 8, 15, 30)  # about a minute: a restart or a failover


def _with_database_retries(work, scene_id: str):
    """Redo the scene while the database is briefly away (restart, failover).

    A scene is one transaction and its COG is replaced atomically, so redoing it is safe;
    anything but a lost database connection fails the scene at once.
    """
    for wait in (*DATABASE_RETRY_S, None):
        try:
            return work()
        except DBAPIError as exc:
            if wait is None or not (
                isinstance(exc, OperationalError) or exc.connection_invalidated
            ):
                raise
            log.warning(
                "database unavailable during %s (%s); redoing it in %s s",
                scene_id,
                exc.__class__.__name__,
                wait,
            )
            time.sleep(wait)


def process_scene(
    engine: Engine,
    source: SceneSource,
    ledger: dict,
    parcels: gpd.GeoDataFrame,
    data_dir: Path,
    windows: list[Window] = (),
) -> list[str]:
    """Load, mask, write the NDVI COG, compute parcel statistics and commit.

    Returns the ids of the parcels that got an observation. With ``windows`` (what
    window_on_worker made, covering every row) the arrays are assembled, not computed.
    """
    started = time.perf_counter()
    ds = load_scene(source.path, source.roots)
    crs = CRS.from_wkt(ds.rio.crs.to_wkt())
    grid = Grid(crs, ds.rio.transform(), ds.sizes["y"], ds.sizes["x"])
    acquired_at = parse_datetime(ds.attrs["acquired_at"])
    with ds:
        ndvi, state = _assembled(windows, grid) if windows else scene_arrays(ds)
    _release_freed_memory()
    ndvi_path = data_dir / "ndvi" / f"{safe_name(source.scene_id)}.tif"
    write_cog(
        ndvi_path,
        ndvi,
        crs,
        grid.transform,
        nodata=float("nan"),
        tags={"SCENE_ID": source.scene_id, "DATETIME": acquired_at.isoformat(), "INDEX": "NDVI"},
    )
    rows = observation_rows(parcels, grid, ndvi, state, data_dir / "coverage")
    for row in rows:
        row.update(scene_id=source.scene_id, acquired_at=acquired_at)
    ledger.update(
        acquired_at=acquired_at,
        crs=crs.to_string(),
        ndvi_path=str(ndvi_path),
        seconds=time.perf_counter() - started,
    )
    with engine.begin() as conn:
        store.record_scene_done(conn, ledger, rows)
    return [row["parcel_id"] for row in rows]


def _release_freed_memory() -> None:
    """Hand the chunk temporaries' freed heap back to the system (glibc keeps it)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def scene_arrays(ds) -> tuple[np.ndarray, np.ndarray]:
    """Masked NDVI (float32) and pixel state (uint8), computed chunk-wise on all cores.

    Chunks are stored straight into preallocated arrays, so a full tile never exists
    twice in memory (dask.compute would concatenate the chunks into a second copy).
    """
    red, nir, scl = ds["red"].data, ds["nir"].data, ds["scl"].data
    ndvi = np.empty(red.shape, dtype=np.float32)
    state = np.empty(red.shape, dtype=np.uint8)
    da.store(
        [
            da.map_blocks(indices.masked_ndvi, red, nir, scl, dtype=np.float32),
            da.map_blocks(indices.pixel_state, red, nir, scl, dtype=np.uint8),
        ],
        [ndvi, state],
        lock=False,
    )
    return ndvi, state


def observation_rows(
    parcels: gpd.GeoDataFrame,
    grid: Grid,
    ndvi: np.ndarray,
    state: np.ndarray,
    cache_dir: Path,
) -> list[dict]:
    """One row per parcel the scene imaged at least partly; parcels given in any CRS."""
    local = parcels_on_grid(parcels, grid)
    if local.empty:
        return []
    weights = cached_weights(local, grid, cache_dir)
    stats = parcel_statistics(weights, ndvi, state)
    imaged_px = stats.pop("imaged_px")
    rows = []
    for i, parcel_id in enumerate(weights.parcel_ids):
        if imaged_px[i] == 0:
            continue  # the swath never reached it: we did not look, so no row
        row = {"parcel_id": str(parcel_id)}
        for name, values in stats.items():
            value = values[i]
            row[name] = int(value) if name == "pixel_count" else float(value)
        rows.append(row)
    return rows


def parcels_on_grid(parcels: gpd.GeoDataFrame, grid: Grid) -> gpd.GeoDataFrame:
    """Parcels reprojected into the grid's CRS, keeping those that touch the grid."""
    if parcels.empty:
        return parcels
    local = parcels.to_crs(grid.crs)
    footprint = shapely.box(*grid.bounds)
    return local[local.intersects(footprint)].reset_index(drop=True)
