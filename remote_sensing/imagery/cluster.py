"""The imagery job on a Dask distributed cluster: one task per scene, a large scene split
into row windows computed on any worker. The scenes' own work is ``scene_processing``;
this module only places it and recovers what a dead worker lost."""

import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from sqlalchemy import Engine

from agri_common.files import atomic_write
from remote_sensing import store
from remote_sensing.imagery.band_reads import edges, overlap, scene_arrays, shift
from remote_sensing.imagery.cog import safe_name
from remote_sensing.imagery.scene_processing import (
    GDAL_SETTINGS,
    Radiometry,
    SceneOutcome,
    Window,
    parcel_blocks,
    parcels_on_grid,
    run_scene,
    scene_radiometry,
)
from remote_sensing.imagery.scenes import SceneSource, scene_layout
from remote_sensing.parcel_set import ParcelSet

log = logging.getLogger("agri.imagery")


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


# A scene whose task is lost (its worker died and took the task's inputs with it) is
# started again from its plan this many times before it is failed.
CLUSTER_RETRIES = 2


def run_on_cluster(
    engine: Engine,
    cluster: Cluster,
    sources: list[SceneSource],
    done: set[tuple[str, str]],
    parcels: ParcelSet,
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
        future = client.submit(plan_on_worker, source, parcels_on_cluster(), pure=False)
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
                client.submit(
                    window_on_worker,
                    source,
                    (r0, r1),
                    scratch,
                    result.radiometry,
                    parcels_on_cluster(),
                    pure=False,
                )
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
            decided=result.radiometry,
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
    scene task fails it with the reason), its size in pixels, and how its numbers are
    read (decided once, so every window of the scene reads them the same way)."""

    checksum: str | None
    height: int = 0
    width: int = 0
    radiometry: Radiometry | None = None


def plan_on_worker(source: SceneSource, parcels: ParcelSet) -> ScenePlan:
    try:
        checksum = source.checksum()
        with rasterio.Env(**GDAL_SETTINGS):
            meta = source.meta()
            layout = scene_layout(meta)
            grid = layout.grid
            decided = scene_radiometry(meta, parcels, layout)
    except Exception:
        return ScenePlan(None)
    return ScenePlan(checksum, grid.height, grid.width, decided)


def window_on_worker(
    source: SceneSource,
    rows: tuple[int, int],
    scratch: Path,
    decided: Radiometry,
    parcels: ParcelSet,
) -> Window:
    """NDVI and pixel state of the blocks under parcels in one band of rows (as the serial
    job reads them: over HTTP a block not read is bytes not fetched), saved block by block
    for the scene's task to assemble."""
    with rasterio.Env(**GDAL_SETTINGS):
        meta = source.meta()
        layout = scene_layout(meta)
        grid = layout.grid
        band = (slice(*rows), slice(0, grid.width))
        under = parcel_blocks(parcels_on_grid(parcels, grid), grid, layout.chunk)
        blocks = [part for block in under if (part := overlap(block, band))]
        ndvi, state = scene_arrays(meta, layout, decided.encoding, band, blocks)
    saved = {"edges": np.array([edges(block) for block in blocks]).reshape(-1, 4)}
    for i, (r, c) in enumerate(blocks):
        inside = (shift(r, rows[0]), c)
        saved[f"ndvi_{i}"], saved[f"state_{i}"] = ndvi[inside], state[inside]
    path = scratch / f"rows-{rows[0]:06d}-{rows[1]:06d}.npz"
    atomic_write(path, lambda fh: np.savez(fh, **saved))
    return (*rows, path)


_WORKER_ENGINES: dict[str, Engine] = {}


def _worker_engine(database_url: str, open_engine: Callable[[str], Engine]) -> Engine:
    engine = _WORKER_ENGINES.get(database_url)
    if engine is None:
        engine = _WORKER_ENGINES.setdefault(database_url, open_engine(database_url))
    return engine


def scene_on_worker(
    source: SceneSource,
    done: set[tuple[str, str]],
    parcels: ParcelSet,
    database_url: str,
    open_engine: Callable[[str], Engine],
    data_dir: Path,
    checksum: str | None = None,
    windows: list[Window] = (),
    decided: Radiometry | None = None,
) -> tuple[SceneOutcome, list[str]]:
    """One scene on a Dask worker: (its outcome, the parcels it touched).

    With ``windows`` the arrays were computed by window tasks; their scratch files go when
    the scene is done.
    """
    engine = _worker_engine(database_url, open_engine)
    touched: set[str] = set()
    try:
        outcome = run_scene(
            engine, source, done, parcels, data_dir, touched, checksum, windows, decided
        )
    finally:
        if windows:
            shutil.rmtree(windows[0][2].parent, ignore_errors=True)
    return outcome, sorted(touched)
