"""The types every part of the imagery shares, at the bottom of it: where a band lives,
what a scene's metadata says before any pixel is read, and the error of a scene that
cannot be used. Scenes build them, band reads read by them, the job reports them."""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from remote_sensing.imagery.radiometry import Encoding


class SceneError(ValueError):
    """A scene that cannot be used: unreadable, incomplete, or without a CRS."""


@dataclass(frozen=True)
class BandRef:
    """Where one band lives and its no-data number."""

    path: Path | str  # a file, or the GDAL path of an allowed URL (/vsicurl/..., /vsis3/...)
    index: int  # 1-based band index inside the file
    nodata: float | None = 0


@dataclass(frozen=True)
class SceneMeta:
    """Everything the item (or GeoTIFF header) says about a scene, before any pixel.

    ``encoding`` is what the metadata says about red and NIR (radiometry's rule order);
    the job may overrule it after looking at the numbers. ``acquisition_key`` (platform,
    tile, time) is shared by reprocessed copies of one acquisition, ``processing_rank``
    orders them.
    """

    path: Path  # the item or GeoTIFF that defines the scene
    scene_id: str
    acquired_at: datetime
    sensor: str
    family: str
    catalogue: str
    acquisition_key: str
    processing_rank: str
    bands: dict[str, BandRef]
    mask: str  # scl | qa_pixel
    encoding: Encoding
    bandpass: str | None = None
