"""One scene, start to finish: load, mask, NDVI, COG, parcel statistics, one commit.

Both drivers call this: the serial job (``job.py``) in its own process, the Dask driver
(``cluster.py``) on a worker. A scene is one database transaction: its observations and
its ledger row commit together or not at all, and a kill midway leaves nothing that the
next run would mistake for done.
"""

import ctypes
import logging
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.windows import Window
from sqlalchemy import Connection, Engine

from agri_common.retry import DatabaseUnavailable, with_retries
from remote_sensing import store
from remote_sensing.coverage import NO_WEIGHTS, CoverageWeights, Grid, cached_weights
from remote_sensing.imagery import band_reads, catalogues, http_assets, radiometry
from remote_sensing.imagery.cog import safe_name, write_cog
from remote_sensing.imagery.scenes import (
    SceneMeta,
    SceneSource,
    scene_layout,
)
from remote_sensing.imagery.zonal import parcel_statistics
from remote_sensing.parcel_set import ParcelSet

log = logging.getLogger("agri.imagery")

# GDAL's block cache defaults to 5 % of RAM and would fill with tiles we read exactly once;
# a small cache keeps a full-tile scene under 2 GB. Scoped to the scene's work
# (rasterio.Env), so importing this module changes nothing for other code in the process.
GDAL_SETTINGS = {"GDAL_CACHEMAX": 128, **http_assets.GDAL_HTTP_OPTIONS}

DATABASE_RETRY_S = (1, 2, 4, 8, 15, 30)  # about a minute: a restart or a failover

RowBlock = tuple[int, int, Path]  # rows r0:r1 of a scene, and the file holding their arrays


# The offset check reads whole cells of CHECK_CELL_PX square around the parcels, at most
# CHECK_CELLS of them spread over the scene: a compressed tile is decoded a block at a
# time, and each read of a window has a fixed cost, so a few large reads where the
# parcels are (a few MB) beat many small ones scattered over the tile (seconds).
CHECK_CELL_PX = 1024
CHECK_CELLS = 6


@dataclass
class SceneOutcome:
    scene_id: str
    path: str
    status: str  # processed | skipped | superseded | failed
    seconds: float = 0.0
    observations: int = 0
    error: str | None = None
    sensor: str | None = None
    catalogue: str | None = None
    offset_rule: str | None = None
    offset_contradicted: bool = False
    warning: str | None = None
    http_requests: int | None = None  # made to read the scene's files over HTTP
    http_bytes: int | None = None  # downloaded for it


@dataclass(frozen=True)
class Radiometry:
    """How a scene's numbers were read: what the metadata said, what the numbers said,
    and the encoding used. Computed once per scene and handed to every task of it."""

    metadata: radiometry.Encoding
    encoding: radiometry.Encoding
    check: radiometry.OffsetCheck | None
    contradicted: bool
    bandpass: str | None = None

    def as_json(self) -> dict:
        return {
            "rule": self.encoding.rule,
            "metadata_rule": self.metadata.rule,
            "scale": self.encoding.scale,
            "offset": self.encoding.offset,
            "metadata_offset": self.metadata.offset,
            "nodata": self.encoding.nodata,
            "contradicted": self.contradicted,
            "check": self.check.as_json() if self.check else None,
            "bandpass": self.bandpass,
        }

    def warning(self, scene_id: str) -> str | None:
        if not self.contradicted:
            return None
        said = "carry" if radiometry.carries_offset(self.metadata) else "do not carry"
        found = "do" if radiometry.carries_offset(self.encoding) else "do not"
        share = self.check.share_below if self.check else None
        return (
            f"scene {scene_id}: its metadata ({self.metadata.rule}) says the numbers "
            f"{said} the +1000 offset, but they {found} ({share:.0%} of "
            f"{self.check.checked} vegetation/water values below 1000); read with offset "
            f"{self.encoding.offset:+g}"
        )


def scene_radiometry(meta: SceneMeta, parcels: ParcelSet, layout: band_reads.Layout) -> Radiometry:
    """The metadata's encoding, checked against the numbers under the parcels.

    Only Sentinel-2 numbers carry the baseline offset, so only they are checked; the
    check looks where the bank looks (the parcels), which also keeps it a small read
    on a full tile.
    """
    if meta.family != catalogues.SENTINEL_2:
        return Radiometry(meta.encoding, meta.encoding, None, False, meta.bandpass)
    return band_reads.checked_encoding(meta, layout, radiometry_check(meta, parcels, layout.grid))


def radiometry_check(meta: SceneMeta, parcels: ParcelSet, grid: Grid) -> band_reads.EncodingCheck:
    """The offset check of a Sentinel-2 scene: its cells (check_windows) and what decides
    from their raw numbers (checked_radiometry)."""
    cells = [w.toslices() for w in check_windows(parcels_on_grid(parcels, grid), grid)]
    return band_reads.EncodingCheck(cells, partial(checked_radiometry, meta))


def checked_radiometry(
    meta: SceneMeta, red: np.ndarray, nir: np.ndarray, scl: np.ndarray
) -> Radiometry:
    """What the numbers (raw red, NIR and SCL of the check's cells) say of the metadata's
    encoding of a Sentinel-2 scene."""
    check = radiometry.check_offset(red, nir, scl, meta.encoding.nodata)
    encoding, contradicted = radiometry.decide(meta.encoding, check)
    return Radiometry(meta.encoding, encoding, check, contradicted, meta.bandpass)


def check_windows(local: ParcelSet, grid: Grid) -> list[Window]:
    """Up to CHECK_CELLS cells of the grid that hold parcels, spread over the scene."""
    inverse = ~grid.transform
    cells = set()
    for xmin, ymin, xmax, ymax in local.bounds:
        col, row = inverse * ((xmin + xmax) / 2, (ymin + ymax) / 2)
        if 0 <= row < grid.height and 0 <= col < grid.width:
            cells.add((int(row) // CHECK_CELL_PX, int(col) // CHECK_CELL_PX))
    cells = sorted(cells)
    chosen = cells[:: max(1, len(cells) // CHECK_CELLS)][:CHECK_CELLS]
    size = CHECK_CELL_PX
    return [
        Window(
            c * size, r * size, min(size, grid.width - c * size), min(size, grid.height - r * size)
        )
        for r, c in chosen
    ]


# Called inside a scene's transaction while its COG is written: (the transaction, the
# parcels whose observations changed, scene id -> the COG's write); see process_scene.
WhileWriting = Callable[[Connection, str, list[str], dict[str, Future]], None]


def run_scene(
    engine: Engine,
    source: SceneSource,
    done: set[tuple[str, str]],
    parcels: ParcelSet,
    data_dir: Path,
    touched: set[str],
    checksum: str | None = None,
    windows: list[RowBlock] = (),
    decided: Radiometry | None = None,
    while_writing: WhileWriting | None = None,
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
        result, _retries = with_retries(
            lambda: process_scene(
                engine, source, ledger, parcels, data_dir, windows, decided, while_writing
            ),
            DATABASE_RETRY_S,
            f"scene {source.scene_id}",
        )
        outcome.observations = len(result.parcel_ids)
        outcome.sensor = result.meta.sensor
        outcome.catalogue = result.meta.catalogue
        outcome.offset_rule = result.radiometry.encoding.rule
        outcome.offset_contradicted = result.radiometry.contradicted
        outcome.http_requests, outcome.http_bytes = result.http
        outcome.warning = result.radiometry.warning(source.scene_id)
        if outcome.warning:
            log.warning(outcome.warning)
        if result.superseded_by:
            outcome.status = "superseded"
            outcome.warning = (
                f"scene {source.scene_id} is a copy of {result.superseded_by} (same platform, "
                "tile and day) with no higher processing baseline: not counted"
            )
        touched.update(result.parcel_ids)
    except Exception as exc:  # one bad scene must not stop the others
        outcome.status = "failed"
        outcome.error = f"{type(exc).__name__}: {exc}"
        ledger["seconds"] = time.perf_counter() - started
        details = outcome.error + "\n" + traceback.format_exc()
        try:  # the database may be what failed the scene: recording it waits for it too
            with_retries(
                lambda: store.record_scene_failed(engine, ledger, details),
                DATABASE_RETRY_S,
                f"recording scene {source.scene_id} as failed",
            )
        except DatabaseUnavailable as away:  # not done, so the next run takes it again
            log.error("scene %s failed and could not be recorded: %s", source.scene_id, away)
    outcome.seconds = round(time.perf_counter() - started, 3)
    return outcome


@dataclass(frozen=True)
class SceneResult:
    parcel_ids: list[str]  # parcels whose observations changed (added or removed)
    meta: SceneMeta
    radiometry: Radiometry
    superseded_by: str | None = None
    http: tuple[int | None, int | None] = (None, None)  # requests, bytes read over HTTP


@dataclass(frozen=True)
class SceneRead:
    """A scene's NDVI and pixel state over the part that was read, and how it was read."""

    meta: SceneMeta
    radiometry: Radiometry
    area: Grid  # the part of the scene read: the NDVI's grid
    ndvi: np.ndarray
    state: np.ndarray
    http: tuple[int | None, int | None]  # requests, bytes read over HTTP
    parcels: ParcelSet  # the parcels on the scene's grid, in its CRS
    # the windows of ``area`` that were read (rows, columns in it; None: all of it); the
    # NDVI elsewhere is undefined (band_reads.scene_arrays)
    blocks: list[tuple[slice, slice]] | None = None
    # the parcels' coverage of ``area`` (parcel_weights), when read_scene was asked for it
    weights: CoverageWeights | None = None


def read_scene(
    source: SceneSource,
    parcels: ParcelSet,
    windows: list[RowBlock] = (),
    decided: Radiometry | None = None,
    weights_dir: Path | None = None,
) -> SceneRead:
    """Decide how to read the numbers, then load and mask the blocks ``parcels`` touch.

    With ``windows`` (what window_on_worker made, covering every row, read with
    ``decided``) the arrays are assembled, not computed. With ``weights_dir`` (the
    coverage cache) the parcels' coverage of the area read is worked out while its pixels
    are fetched: both only need the area, and a new portfolio's exactextract pass (0.3 s
    for 2,000 parcels) is then hidden behind the network.
    """
    with rasterio.Env(**GDAL_SETTINGS):
        # one scene at a time per process (threads within it); inside the settings, so the
        # download cache is made again with their size
        http_assets.reset_scene_reads()
        meta = source.meta()
        layout = scene_layout(meta)
        grid = layout.grid
        local = parcels_on_grid(parcels, grid)  # once: every step below works on the grid
        if windows:
            area = grid
        else:
            if decided is None and meta.family == catalogues.SENTINEL_2:
                how = radiometry_check(meta, local, grid)  # sampled by the NDVI's reads
            else:
                decided = decided or scene_radiometry(meta, local, layout)
                how = decided.encoding
            blocks = parcel_blocks(local, grid, layout.chunk)
            area, where, blocks = read_area(grid, blocks, layout.chunk)
        with ThreadPoolExecutor(1, thread_name_prefix="weights") as helper:
            weighing = (
                None
                if weights_dir is None
                else helper.submit(parcel_weights, local, area, weights_dir)
            )
            if windows:
                ndvi, state, inner = assembled(windows, grid)
            else:
                ndvi, state = band_reads.scene_arrays(meta, layout, how, where, blocks)
                decided = decided or how.result
                inner = None
                if blocks is not None:  # as windows of the area
                    inner = [
                        (band_reads.shift(r, where[0].start), band_reads.shift(c, where[1].start))
                        for r, c in blocks
                    ]
            weights = None if weighing is None else weighing.result()
        http = http_assets.network_stats() or (None, None)
    _release_freed_memory()
    return SceneRead(meta, decided, area, ndvi, state, http, local, inner, weights)


def process_scene(
    engine: Engine,
    source: SceneSource,
    ledger: dict,
    parcels: ParcelSet,
    data_dir: Path,
    windows: list[RowBlock] = (),
    decided: Radiometry | None = None,
    while_writing: WhileWriting | None = None,
) -> SceneResult:
    """Read the scene (read_scene), write the NDVI COG, compute parcel statistics and
    commit.

    The observations and the ledger row are written as soon as the statistics are, and
    committed once the COG is whole; ``while_writing(conn, changed parcel ids, {scene id:
    the COG's write})`` is called in between, inside that transaction (the imagery job
    builds the parcels' profiles there, while GDAL compresses)."""
    started = time.perf_counter()
    read = read_scene(source, parcels, windows, decided, data_dir / "coverage")
    meta, decided, area = read.meta, read.radiometry, read.area
    acquired_at = meta.acquired_at
    ndvi_path = data_dir / "ndvi" / f"{safe_name(source.scene_id)}.tif"
    tags = {
        "SCENE_ID": source.scene_id,
        "DATETIME": acquired_at.isoformat(),
        "INDEX": "NDVI",
        "SENSOR": meta.sensor,
    }
    # GDAL compresses the COG without the GIL: the statistics are computed meanwhile, and
    # the scene is committed only once the file is whole (its error, if any, is raised).
    # The statistics are NumPy's sums over weights worked out during the read: they leave
    # the GIL to the writer's averaging of the overviews (exactextract did not: the
    # overviews of a township portfolio's first scene took 0.5 s instead of 0.12 s).
    overviews_done = threading.Event()  # from then on the writer leaves the GIL
    with ThreadPoolExecutor(1, thread_name_prefix="cog") as writer:
        written = writer.submit(
            write_cog,
            ndvi_path,
            read.ndvi,
            area.crs,
            area.transform,
            float("nan"),
            tags,
            read.blocks,
            overviews_done,
        )
        written.add_done_callback(lambda _: overviews_done.set())  # a write that failed
        rows = statistics_rows(read.weights, read.ndvi, read.state)
        http_requests, http_bytes = read.http
        for row in rows:
            row.update(scene_id=source.scene_id, acquired_at=acquired_at, sensor=meta.sensor)
        ledger.update(
            acquired_at=acquired_at,
            crs=area.crs.to_string(),
            ndvi_path=str(ndvi_path),
            sensor=meta.sensor,
            catalogue=meta.catalogue,
            acquisition_key=meta.acquisition_key,
            processing_rank=meta.processing_rank,
            offset_rule=decided.encoding.rule,
            offset_contradicted=decided.contradicted,
            radiometry=decided.as_json(),
            seconds=time.perf_counter() - started,
            http_requests=http_requests,
            http_bytes=http_bytes,
        )
        with engine.begin() as conn:
            superseded_by, dropped = store.record_scene_done(conn, ledger, rows)
            changed = sorted(
                set(dropped if superseded_by else [row["parcel_id"] for row in rows] + dropped)
            )
            if while_writing is not None:
                # Python beside the overviews' NumPy passes made them wait for the GIL
                # (0.13 s became 0.7 s); beside GDAL's compression it costs it nothing
                overviews_done.wait()
                while_writing(conn, source.scene_id, changed, {source.scene_id: written})
            written.result()  # the scene commits only once its COG is whole (or raises)
            ledger["seconds"] = time.perf_counter() - started
            store.record_scene_seconds(conn, ledger)
    return SceneResult(changed, meta, decided, superseded_by, (http_requests, http_bytes))


def _release_freed_memory() -> None:
    """Hand the chunk temporaries' freed heap back to the system (glibc keeps it)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def read_area(
    grid: Grid, blocks: list[tuple[slice, slice]], size: int
) -> tuple[Grid, tuple[slice, slice], list[tuple[slice, slice]] | None]:
    """The part of the scene that holds ``blocks``: its grid, its rows and columns in the
    scene, and the blocks to read in it (None: all of it). The
    NDVI COG and the statistics are made on it, so a scene over one parcel writes a block,
    not a tile (2.6 s a scene for a full tile). Without blocks (no parcel on the scene),
    the first block, read as nothing."""
    if not blocks:
        rows, cols = slice(0, min(size, grid.height)), slice(0, min(size, grid.width))
        return Grid(grid.crs, grid.transform, rows.stop, cols.stop), (rows, cols), []
    r0, r1 = min(b[0].start for b in blocks), max(b[0].stop for b in blocks)
    c0, c1 = min(b[1].start for b in blocks), max(b[1].stop for b in blocks)
    area = Grid(grid.crs, grid.transform * Affine.translation(c0, r0), r1 - r0, c1 - c0)
    if len(blocks) == -(-area.height // size) * -(-area.width // size):
        return area, (slice(r0, r1), slice(c0, c1)), None  # every block: read it whole
    return area, (slice(r0, r1), slice(c0, c1)), blocks


def parcel_blocks(local: ParcelSet, grid: Grid, size: int) -> list[tuple[slice, slice]]:
    """The ``size``-px blocks of the grid (the scene's read chunks, from its origin) that
    some parcel's bounds touch, a pixel to spare on each side: all of the scene the
    parcels' statistics need."""
    inverse = ~grid.transform
    touched = set()
    for xmin, ymin, xmax, ymax in local.bounds:
        cols, rows = zip(
            *(inverse * corner for corner in ((xmin, ymin), (xmax, ymax))), strict=True
        )
        r0, r1 = max(0, int(min(rows)) - 1), min(grid.height - 1, int(max(rows)) + 1)
        c0, c1 = max(0, int(min(cols)) - 1), min(grid.width - 1, int(max(cols)) + 1)
        if r0 > r1 or c0 > c1:
            continue
        for r in range(r0 // size, r1 // size + 1):
            for c in range(c0 // size, c1 // size + 1):
                touched.add((r, c))
    return [
        (
            slice(r * size, min((r + 1) * size, grid.height)),
            slice(c * size, min((c + 1) * size, grid.width)),
        )
        for r, c in sorted(touched)
    ]


def observation_rows(
    parcels: ParcelSet,
    grid: Grid,
    ndvi: np.ndarray,
    state: np.ndarray,
    cache_dir: Path,
) -> list[dict]:
    """One row per parcel the scene imaged at least partly; parcels given in any CRS."""
    return statistics_rows(parcel_weights(parcels, grid, cache_dir), ndvi, state)


def parcel_weights(parcels: ParcelSet, grid: Grid, cache_dir: Path) -> CoverageWeights:
    """How much of each pixel of ``grid`` each parcel (in any CRS) covers; those that do
    not touch the grid are left out."""
    local = parcels_on_grid(parcels, grid)
    return NO_WEIGHTS if local.empty else cached_weights(local, grid, cache_dir)


def statistics_rows(weights: CoverageWeights, ndvi: np.ndarray, state: np.ndarray) -> list[dict]:
    """observation_rows from the parcels' weights on the NDVI's grid."""
    if len(weights.parcel_ids) == 0:
        return []
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


def parcels_on_grid(parcels: ParcelSet, grid: Grid) -> ParcelSet:
    """Parcels reprojected into the grid's CRS, keeping those that touch the grid."""
    if parcels.empty:
        return parcels
    local = parcels.to_crs(grid.crs)
    return local.take(shapely.intersects(local.geometry, shapely.box(*grid.bounds)))


def assembled(
    windows: list[RowBlock], grid: Grid
) -> tuple[np.ndarray, np.ndarray, list[tuple[slice, slice]]]:
    """The NDVI and pixel state of a scene from its windows' files (rows in order), and
    the blocks they hold (window_on_worker read only those; elsewhere the NDVI is
    undefined and the state NOT_IMAGED, as band_reads.scene_arrays leaves them)."""
    if windows[-1][1] != grid.height:
        raise RuntimeError("the scene changed size while it was split into windows")
    ndvi = np.zeros((grid.height, grid.width), dtype=np.float32)
    state = np.zeros((grid.height, grid.width), dtype=np.uint8)
    pieces = []
    for _r0, _r1, path in windows:
        with np.load(path) as saved:
            for i, (r0, r1, c0, c1) in enumerate(saved["edges"].tolist()):
                block = (slice(r0, r1), slice(c0, c1))
                ndvi[block], state[block] = saved[f"ndvi_{i}"], saved[f"state_{i}"]
                pieces.append((c0, c1, r0, r1))
    # a block the bands of rows cut is whole again (the COG's overviews are made block by
    # block, from blocks that start on the grid's 1024-px lines)
    blocks: list[tuple[slice, slice]] = []
    for c0, c1, r0, r1 in sorted(pieces):
        last = blocks[-1] if blocks else None
        if last and (last[1].start, last[1].stop, last[0].stop) == (c0, c1, r0):
            blocks[-1] = (slice(last[0].start, r1), last[1])
        else:
            blocks.append((slice(r0, r1), slice(c0, c1)))
    return ndvi, state, blocks
