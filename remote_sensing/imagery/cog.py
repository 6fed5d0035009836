"""Writing rasters as Cloud-Optimized GeoTIFFs, atomically.

A COG is written to a temporary file beside its destination and renamed into place only
when GDAL has finished, so a killed job never leaves a half-written file that looks done.
"""

import math
import re
import threading
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.dtypes
import rasterio.errors
import rasterio.shutil
import rasterio.windows
from affine import Affine
from pyproj import CRS

from agri_common.files import atomic_path, sweep_stale

# ZSTD at level 1: the ratio of DEFLATE at about half the time on a full tile (GDAL >= 2.3
# reads it, and only our own services read these files). The float predictor suits NDVI.
COG_OPTIONS = {
    "compress": "ZSTD",
    "level": 1,
    "predictor": "YES",
    "blocksize": 512,
    "num_threads": "ALL_CPUS",
    "bigtiff": "IF_SAFER",
    # tiles that are all nodata (the blocks of a scene's area no parcel needed) are not
    # stored: a reader gets nodata for them, the writer skips compressing them
    "sparse_ok": "TRUE",
    # the overviews are the source's: write_cog computes them from the blocks
    "overviews": "FORCE_USE_EXISTING",
}
BLOCK_PX = 512  # overviews halve the raster until it fits in one block


def safe_name(scene_id: str) -> str:
    """A file name for a scene id (which may contain slashes or colons)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", scene_id)


def write_cog(
    path: Path,
    array: np.ndarray,
    crs: CRS,
    transform: Affine,
    nodata: float | int | None,
    tags: dict[str, str] | None = None,
    blocks: list[tuple[slice, slice]] | None = None,
    overviews_done: threading.Event | None = None,
) -> Path:
    """Write a single-band 2-D float array as a COG at ``path`` (replacing any previous
    file); NaN is missing. ``overviews_done`` is set once the overviews are computed
    (NumPy, which takes the GIL between its passes) and the rest is GDAL's, which leaves
    it: a caller running Python meanwhile starts then, or the overviews wait for it.

    ``blocks`` (rows, columns of the array, starting on multiples of the overview
    factors, as the job's 1024-px windows do) are the parts that hold data; the rest is
    written as nodata without being read, so a scene's area can be an array whose unread
    part was never touched (for four townships spread over a tile, most of it).

    GDAL reads the array where it is: a VRT whose sources are MEM datasets over the
    blocks' own memory (GDAL's documented ``MEM:::DATAPOINTER`` form): a full tile's NDVI
    is 480 MB, and the in-memory GeoTIFF copy this used to go through put the job over
    2 GB. The overviews (average of the pixels that are not NaN) are computed block by
    block and given to the COG driver as the VRT's own: the driver would read the whole
    area at full resolution, empty or not (0.55 of the 0.8 s a township portfolio's
    sparse COG took). The copy is one GDAL call that lets go of Python's GIL, so the job
    computes the parcel statistics meanwhile (rasterio's build_overviews holds the GIL).
    """
    path = Path(path)
    array = np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"write_cog writes float rasters (NaN missing), not {array.dtype}")
    if blocks is None:  # all of it, in pieces whose overviews' temporaries stay small
        step = 2 * BLOCK_PX
        blocks = [
            (slice(r, min(r + step, array.shape[0])), slice(c, min(c + step, array.shape[1])))
            for r in range(0, array.shape[0], step)
            for c in range(0, array.shape[1], step)
        ]
    levels = overview_levels(array, blocks)  # kept alive: the VRT reads their memory
    if overviews_done is not None:
        overviews_done.set()
    vrt = _vrt_over(array, blocks, crs, transform, nodata, tags or {}, levels)
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_MEM_ENABLE_OPEN="YES"):
        # one thread reads the VRT's sources (memory: nothing to gain from more), the one
        # this Env is set in: GDAL's worker threads would not see GDAL_MEM_ENABLE_OPEN
        with rasterio.open(vrt, NUM_THREADS="1") as src:
            # the file exists only while GDAL writes it: a kill leaves as little as can be
            with atomic_path(path) as tmp:
                rasterio.shutil.copy(src, tmp, driver="COG", **COG_OPTIONS)
                _check_complete(tmp, array, path.name, blocks)
    sweep_stale(path, STALE_TMP_S)
    return path


Level = tuple[int, int, list[tuple[int, int, np.ndarray]]]  # height, width, placed parts


def overview_levels(array: np.ndarray, blocks: list[tuple[slice, slice]]) -> list[Level]:
    """The overviews of the blocks of ``array``: each level half the one before (2, 4,
    8, ... until it fits in one block), as (height, width, [(row, col, part)]), each
    part the average of the non-NaN pixels under it (GDAL's AVERAGE with NaN missing)."""
    height, width = array.shape
    parts = [(rows.start, cols.start, array[rows, cols]) for rows, cols in blocks]
    count = max(0, math.ceil(math.log2(max(height, width) / BLOCK_PX)))
    if any(r % 2**count or c % 2**count for r, c, _ in parts):
        raise ValueError(f"blocks must start on multiples of {2**count} px (the overviews')")
    levels: list[Level] = []
    while max(height, width) > BLOCK_PX:
        height, width = -(-height // 2), -(-width // 2)
        parts = [(r // 2, c // 2, _halved(part)) for r, c, part in parts]
        levels.append((height, width, parts))
    return levels


def _halved(part: np.ndarray) -> np.ndarray:
    """The mean of each 2 x 2 cell's pixels that are not NaN (NaN where none is); a cell
    over the edge averages what it has. Strided sums of the quarter-size grids in the
    array's own float type (in float64, as GDAL sums, it took twice as long for the same
    values to 2e-7: a display's overview), in place where they can be."""
    h, w = part.shape
    if h % 2 or w % 2:
        part = np.pad(part, ((0, h % 2), (0, w % 2)), constant_values=np.nan)
    valid = ~np.isnan(part)
    values = np.where(valid, part, part.dtype.type(0))
    first, *others = [(slice(i, None, 2), slice(j, None, 2)) for i in (0, 1) for j in (0, 1)]
    total, count = values[first].copy(), valid[first].view(np.uint8).copy()
    for corner in others:
        total += values[corner]
        count += valid[corner].view(np.uint8)
    with np.errstate(invalid="ignore"):
        total /= count
    return total


def _vrt_over(
    array: np.ndarray,
    blocks: list[tuple[slice, slice]],
    crs: CRS,
    transform: Affine,
    nodata: float | int | None,
    tags: dict[str, str],
    levels: list[Level] = (),
) -> str:
    """A VRT (as XML, which GDAL opens as a dataset) of the array's size and georeference
    whose only sources are ``blocks``, each a MEM dataset over the array's own buffer
    (LINEOFFSET: a block's rows are the array's rows), and whose overviews are
    ``levels`` (VRTs of their parts, inline). Elsewhere it reads as nodata."""
    height, width = array.shape
    parts = [(rows.start, cols.start, array[rows, cols]) for rows, cols in blocks]
    overviews = "".join(
        f"<Overview><SourceFilename>{escape(_vrt_xml(h, w, level, array.dtype, nodata))}"
        "</SourceFilename>"
        "<SourceBand>1</SourceBand></Overview>"
        for h, w, level in levels
    )
    metadata = "".join(
        f'<MDI key="{escape(str(k))}">{escape(str(v))}</MDI>' for k, v in tags.items()
    )
    geotransform = ", ".join(repr(float(v)) for v in transform.to_gdal())
    header = (
        f"<SRS>{escape(crs.to_wkt())}</SRS><GeoTransform>{geotransform}</GeoTransform>"
        f"<Metadata>{metadata}</Metadata>"
    )
    return _vrt_xml(height, width, parts, array.dtype, nodata, header, overviews)


def _vrt_xml(
    height: int,
    width: int,
    parts: list[tuple[int, int, np.ndarray]],
    dtype: np.dtype,
    nodata: float | int | None,
    header: str = "",
    overviews: str = "",
) -> str:
    """A one-band VRT of ``height`` x ``width`` whose sources are ``parts`` (placed at
    their row and column), each read where it lies in memory (a view's strides kept)."""
    gdal_type = _gdal_data_type(dtype)
    sources = []
    for r0, c0, part in parts:
        h, w = part.shape
        name = (
            f"MEM:::DATAPOINTER={part.ctypes.data},PIXELS={w},LINES={h},BANDS=1,"
            f"DATATYPE={gdal_type},PIXELOFFSET={part.strides[1]},LINEOFFSET={part.strides[0]}"
        )
        sources.append(
            f"<SimpleSource><SourceFilename>{escape(name)}</SourceFilename>"
            f'<SourceBand>1</SourceBand><SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
            f'<DstRect xOff="{c0}" yOff="{r0}" xSize="{w}" ySize="{h}"/></SimpleSource>'
        )
    no_data = "" if nodata is None else f"<NoDataValue>{float(nodata)!r}</NoDataValue>"
    return (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">{header}'
        f'<VRTRasterBand dataType="{gdal_type}" band="1">{no_data}{"".join(sources)}'
        f"{overviews}</VRTRasterBand></VRTDataset>"
    )


def _gdal_data_type(dtype: np.dtype) -> str:
    """GDAL's name of a NumPy type, from rasterio's own tables."""
    try:
        return rasterio.dtypes.typename_fwd[rasterio.dtypes.dtype_rev[dtype.name]]
    except KeyError:
        raise ValueError(f"cannot write {dtype.name} rasters") from None


STALE_TMP_S = 600  # a COG write never leaves its temp file untouched this long


def _check_complete(
    path: Path, array: np.ndarray, name: str, blocks: list[tuple[slice, slice]] | None = None
) -> None:
    """Raise if the file on disk is not all there.

    GDAL reports a failed write (disk full, file size limit) only as a logged error and
    leaves a truncated file. A COG stores its full-resolution tiles last; tiles that are
    all nodata are not stored at all (SPARSE_OK). So the tile stored last, the one at the
    highest offset (GDAL's BLOCK_OFFSET_X_Y), must end within the file and read back equal
    to the array where ``blocks`` (what was written) cover it: that finds a truncation
    for the cost of one block.
    """
    try:
        with rasterio.open(path) as src:
            block_h, block_w = src.block_shapes[0]
            last, end = None, 0
            for y in range(-(-src.height // block_h)):
                for x in range(-(-src.width // block_w)):
                    offset = int(src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=1) or 0)
                    if offset and offset >= end:
                        size = int(src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=1) or 0)
                        last, end = (y, x), offset + size
            if last is None:
                return  # nothing but nodata: no tile stored, nothing to truncate
            rows = slice(last[0] * block_h, min((last[0] + 1) * block_h, src.height))
            cols = slice(last[1] * block_w, min((last[1] + 1) * block_w, src.width))
            block = src.read(1, window=rasterio.windows.Window.from_slices(rows, cols))
    except rasterio.errors.RasterioError as exc:
        raise OSError(f"NDVI COG {name} was not written completely (disk full?): {exc}") from exc
    written = [(rows, cols)] if blocks is None else blocks
    equal_nan = np.issubdtype(array.dtype, np.floating)
    for r, c in written:
        r = slice(max(r.start, rows.start), min(r.stop, rows.stop))
        c = slice(max(c.start, cols.start), min(c.stop, cols.stop))
        if r.start >= r.stop or c.start >= c.stop:
            continue
        there = block[
            r.start - rows.start : r.stop - rows.start, c.start - cols.start : c.stop - cols.start
        ]
        if not np.array_equal(there, array[r, c], equal_nan=equal_nan):
            raise OSError(f"NDVI COG {name} was not written completely (disk full?)")
    if path.stat().st_size < end:
        raise OSError(f"NDVI COG {name} was not written completely (disk full?)")
