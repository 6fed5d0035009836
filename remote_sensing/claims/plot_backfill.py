"""A claim's history from a STAC API: the catalogue's scenes over a plot that the system
has not processed, read only where the plot is.

A borrower's plot is often outside every stored parcel, so the scenes synced for the
portfolio may never have read its ground, and a claim should not wait for the next
scheduled run. When a STAC API is configured, every item over the plot in the claim's
window that the imagery ledger does not hold is searched (pystac-client), read over HTTP
for the plot's blocks only (the job's own reader, masks and radiometry), and its NDVI
written as a small COG under ``data_dir/claims/ndvi`` for plot_history to read like a
stored scene. These scenes are not put in the ledger: they are the claim's evidence, not
the portfolio's observations. An item that cannot be read is named and skipped.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pystac_client
from pystac_client.exceptions import APIError
from shapely.geometry.base import BaseGeometry

from agri_common.files import atomic_write_text
from remote_sensing.imagery.cog import safe_name, write_cog
from remote_sensing.imagery.scene_processing import read_scene
from remote_sensing.imagery.scenes import SceneSource
from remote_sensing.imagery.stac_sync import PAGE_SIZE, item_version
from remote_sensing.parcel_set import ParcelSet
from remote_sensing.parcels import WGS84


@dataclass(frozen=True)
class Catalogue:
    """Where a claim's missing scenes are searched, and what may be read."""

    api_url: str
    collections: tuple[str, ...]
    allowed_hosts: frozenset[str]
    sign: object = None  # a pystac-client modifier (stac_sync.signing_modifier) or None
    max_cloud: float | None = None


@dataclass
class Backfill:
    scenes: list[dict] = field(default_factory=list)  # like store.scene_ledger rows
    problems: list[str] = field(default_factory=list)
    searched: int = 0


def catalogue_scenes(
    catalogue: Catalogue,
    geometry: BaseGeometry,
    start: datetime,
    end: datetime,
    known_ids: set[str],
    data_dir: Path,
) -> Backfill:
    """The plot's scenes from the catalogue that are not among ``known_ids``."""
    out = Backfill()
    try:
        client = pystac_client.Client.open(catalogue.api_url, modifier=catalogue.sign)
    except (APIError, OSError, ValueError) as exc:
        out.problems.append(f"cannot open the STAC API {catalogue.api_url}: {exc}")
        return out
    plot = ParcelSet.of(["claim"], [geometry], WGS84)
    staging = Path(data_dir) / "claims" / "stac"
    # one file per item and plot: two claims over one scene never overwrite each other
    plot_key = hashlib.sha256(geometry.wkb).hexdigest()[:12]
    for collection in catalogue.collections:
        try:
            items = list(
                client.search(
                    collections=[collection],
                    bbox=list(geometry.bounds),
                    datetime=f"{start.isoformat()}/{end.isoformat()}",
                    query={"eo:cloud_cover": {"lte": catalogue.max_cloud}}
                    if catalogue.max_cloud is not None
                    else None,
                    limit=PAGE_SIZE,
                ).items_as_dicts()
            )
        except (APIError, OSError, ValueError) as exc:
            out.problems.append(f"search of {collection} failed: {exc}")
            continue
        out.searched += len(items)
        for item in items:
            if item["id"] in known_ids:
                continue
            known_ids.add(item["id"])
            path = staging / safe_name(collection) / f"{safe_name(item['id'])}.json"
            atomic_write_text(path, json.dumps(item, sort_keys=True))
            version = item_version(catalogue.api_url, collection, item)
            source = SceneSource(
                item["id"],
                path,
                (path,),
                path.parent,
                catalogue.allowed_hosts,
                version,
                catalogue.sign,
            )
            try:
                read = read_scene(source, plot)
            except Exception as exc:  # one bad item must not stop the others
                out.problems.append(f"{item['id']}: {type(exc).__name__}: {exc}")
                continue
            name = f"{safe_name(item['id'])}-{plot_key}.tif"
            ndvi_path = Path(data_dir) / "claims" / "ndvi" / name
            area = read.area
            write_cog(
                ndvi_path, read.ndvi, area.crs, area.transform, float("nan"), blocks=read.blocks
            )
            out.scenes.append(
                {
                    "scene_id": item["id"],
                    "acquired_at": read.meta.acquired_at,
                    "sensor": read.meta.sensor,
                    "ndvi_path": str(ndvi_path),
                    "source": "catalogue",
                }
            )
    return out
