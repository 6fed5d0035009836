"""One scene, start to finish: load, mask, NDVI, COG, parcel statistics, one commit.

Both drivers call this: the serial job (``job.py``) in its own process, the Dask driver
(``cluster.py``) on a worker. A scene is one database transaction: its observations and
its ledger row commit together or not at all, and a kill midway leaves nothing that the
next run would mistake for done.
"""

import ctypes
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import geopandas as gpd
import numpy as np
import rasterio
import shapely
from pyproj import CRS
from sqlalchemy import Engine

from agri_common.retry import with_retries
from remote_sensing import indices, store
from remote_sensing.cog import safe_name, write_cog
from remote_sensing.coverage import Grid, cached_weights
from remote_sensing.scenes import SceneSource, load_scene, parse_datetime
from remote_sensing.zonal import parcel_statistics

log = logging.getLogger("agri.imagery")

# GDAL's block cache defaults to 5 % of RAM and would fill with tiles we read exactly once;
# a small cache keeps a full-tile scene under 2 GB. Scoped to the scene's work
# (rasterio.Env), so importing this module changes nothing for other code in the process.
GDAL_SETTINGS = {"GDAL_CACHEMAX": 128}

DATABASE_RETRY_S = (1, 2, 4, 8, 15, 30)  # about a minute: a restart or a failover

Window = tuple[int, int, Path]  # rows r0:r1 of a scene, and the file holding their arrays


@dataclass
class SceneOutcome:
    scene_id: str
    path: str
    status: str  # processed | skipped | failed
    seconds: float = 0.0
    observations: int = 0
    error: str | None = None


def run_scene(
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
        # A scene is one transaction and its COG is replaced atomically, so redoing it
        # while the database is briefly away (restart, failover) is safe.
        parcel_ids, _retries = with_retries(
            lambda: process_scene(engine, source, ledger, parcels, data_dir, windows),
            DATABASE_RETRY_S,
            f"scene {source.scene_id}",
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
    with rasterio.Env(**GDAL_SETTINGS):
        ds = load_scene(source.path, source.roots)
        crs = CRS.from_wkt(ds.rio.crs.to_wkt())
        grid = Grid(crs, ds.rio.transform(), ds.sizes["y"], ds.sizes["x"])
        acquired_at = parse_datetime(ds.attrs["acquired_at"])
        with ds:
            ndvi, state = assembled(windows, grid) if windows else scene_arrays(ds)
        _release_freed_memory()
        ndvi_path = data_dir / "ndvi" / f"{safe_name(source.scene_id)}.tif"
        write_cog(
            ndvi_path,
            ndvi,
            crs,
            grid.transform,
            nodata=float("nan"),
            tags={
                "SCENE_ID": source.scene_id,
                "DATETIME": acquired_at.isoformat(),
                "INDEX": "NDVI",
            },
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


def assembled(windows: list[Window], grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """The NDVI and pixel state of a scene from its windows' files (rows in order)."""
    if windows[-1][1] != grid.height:
        raise RuntimeError("the scene changed size while it was split into windows")
    ndvi = np.empty((grid.height, grid.width), dtype=np.float32)
    state = np.empty((grid.height, grid.width), dtype=np.uint8)
    for r0, r1, path in windows:
        with np.load(path) as part:
            ndvi[r0:r1], state[r0:r1] = part["ndvi"], part["state"]
    return ndvi, state
