"""What is new in a STAC API over the stored parcels: search, stage, hand to the scene job.

One sync, per collection: search (pystac-client) over the parcels' footprint, grouped in
cells so that a portfolio over two provinces is a handful of small boxes rather than one
giant one; from the last successful sync of that API and collection less an overlap
(catalogues ingest late and reprocess, so "after the newest datetime seen" would miss
items); filtered by cloud cover. Each item found is staged as JSON under the data
directory and processed like an inbox item whose band files are URLs; its ledger key is
(API, collection, item id) with the item's ``updated`` time, or a hash of its properties
and asset hrefs where the catalogue has none (Planetary Computer): a changed item is
processed again, an unchanged one is skipped. The sync's start is recorded only after
every scene is in the ledger, so a sync killed midway is completed by the next one.

Some catalogues hand out URLs that must be signed before they can be read (Planetary
Computer's blob storage takes a short-lived SAS token): the search pages are signed as
they arrive (a signer that fails fails the search), and each item again just before its
files are read (a sync of many scenes outlasts a token), by the catalogue's own package
(SIGNERS), an optional dependency.
"""

import hashlib
import importlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pystac_client
import shapely
from pystac_client.exceptions import APIError
from sqlalchemy import Engine

from agri_common.files import atomic_write_text
from remote_sensing import store
from remote_sensing.imagery import catalogues
from remote_sensing.imagery.cog import safe_name
from remote_sensing.imagery.job import Cluster, RunSummary, run_sources
from remote_sensing.imagery.scene_processing import SceneOutcome
from remote_sensing.imagery.scenes import SceneSource
from remote_sensing.parcel_set import ParcelSet

SEARCH_CELL_DEG = 0.5  # parcels within one cell of this size (about 50 km) share a search
OVERLAP = timedelta(days=10)  # searched again before the last successful sync
PAGE_SIZE = 100

# How a catalogue's asset URLs are signed: the module and in-place signing function of
# its package (a pystac-client modifier), and the extra that installs it.
SIGNERS: dict[str, tuple[str, str, str]] = {
    "planetary-computer": ("planetary_computer", "sign_inplace", "planetary-computer"),
}
# The signer a catalogue needs, by its API's host (an operator can say --sign none).
SIGNER_OF_API = {host: "planetary-computer" for host in catalogues.PLANETARY_COMPUTER}
NO_SIGNING = "none"


class SigningError(ValueError):
    """A signer that is unknown or whose package is not installed."""


def signer_for(api_url: str, requested: str | None = None) -> str | None:
    """The signer a sync uses: ``requested`` ("none": no signing), else the one the API's
    host needs (SIGNER_OF_API), else none."""
    if requested == NO_SIGNING:
        return None
    if requested is not None:
        if requested not in SIGNERS:
            known = ", ".join([*SIGNERS, NO_SIGNING])
            raise SigningError(f"unknown URL signer {requested!r} (known: {known})")
        return requested
    return SIGNER_OF_API.get((urlsplit(api_url).hostname or "").lower())


def signing_modifier(name: str) -> Callable[[dict], None]:
    """The signer's function, which signs the asset URLs of a search page or an item in
    place (again, with a fresh token, if they were signed before); its errors say that
    signing failed and for which catalogue."""
    module_name, function, extra = SIGNERS[name]
    try:
        sign = getattr(importlib.import_module(module_name), function)
    except ImportError as exc:
        raise SigningError(
            f"signing URLs for {name} needs the {module_name!r} package: "
            f"pip install 'agri-collateral[{extra}]'"
        ) from exc

    def modifier(page: dict) -> None:
        # a URL signed before is signed afresh: its old token (a query string) goes first,
        # as the signer leaves a URL that carries one as it is
        items = page.get("features") if page.get("type") == "FeatureCollection" else [page]
        for item in items or []:
            for asset in (item.get("assets") or {}).values():
                if isinstance(asset, dict) and isinstance(asset.get("href"), str):
                    asset["href"] = _without_query(asset["href"])
        try:
            sign(page)
        except Exception as exc:  # the signer's own errors (HTTP, token) vary by package
            raise SigningError(f"signing asset URLs with {name} failed: {exc}") from exc

    return modifier


@dataclass
class SyncSummary:
    """A sync's result: the job's summary of its scenes and, per collection, what was
    searched and found (or why the search failed)."""

    run: RunSummary
    searches: dict[str, dict] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.run.ok and all("error" not in s for s in self.searches.values())

    def as_json(self) -> dict:
        return {**self.run.as_json(), "searches": self.searches}


def search_areas(parcels: ParcelSet, cell_deg: float = SEARCH_CELL_DEG) -> list[tuple]:
    """(west, south, east, north) of the parcels in each occupied cell, in WGS84."""
    if parcels.empty:
        return []
    points = shapely.point_on_surface(parcels.geometry)
    xs, ys = shapely.get_x(points), shapely.get_y(points)
    cells = [
        (math.floor(x / cell_deg), math.floor(y / cell_deg)) for x, y in zip(xs, ys, strict=True)
    ]
    groups: dict[tuple, list[int]] = {}
    for i, cell in enumerate(cells):
        groups.setdefault(cell, []).append(i)
    return [
        tuple(round(float(v), 6) for v in shapely.total_bounds(parcels.geometry[rows]))
        for _, rows in sorted(groups.items())
    ]


def item_version(api_url: str, collection: str, item: dict) -> str:
    """The ledger's version of an item: API, collection and the item's ``updated`` time,
    else a hash of its properties and asset hrefs without query strings (a signed URL's
    token changes on every request, the file it names does not)."""
    properties = item.get("properties") or {}
    stamp = properties.get("updated")
    if not stamp:
        hrefs = sorted(
            _without_query(str(a.get("href", "")))
            for a in (item.get("assets") or {}).values()
            if isinstance(a, dict)
        )
        content = json.dumps({"properties": properties, "hrefs": hrefs}, sort_keys=True)
        stamp = "sha256:" + hashlib.sha256(content.encode()).hexdigest()
    return f"{api_url}|{collection}|{stamp}"


def search_start(last_success: datetime | None, since: datetime | None) -> datetime | None:
    """Where a search begins: ``since`` when given, else the last successful sync less
    OVERLAP, else the beginning (None)."""
    if since is not None:
        return since
    return None if last_success is None else last_success - OVERLAP


def sync(
    engine: Engine,
    api_url: str,
    collections: list[str],
    data_dir: Path,
    allowed_hosts: frozenset[str],
    since: datetime | None = None,
    max_cloud: float | None = None,
    on_scene: Callable[[SceneOutcome], None] | None = None,
    cluster: Cluster | None = None,
    sign: Callable[[dict], None] | None = None,
) -> SyncSummary:
    """Search each collection for items over the parcels and process what is new; each
    search page's asset URLs are signed in place by ``sign`` (signing_modifier) if given."""
    started = datetime.now(UTC)
    api_url = api_url.rstrip("/")
    parcels = store.load_parcel_set(engine)
    areas = search_areas(parcels)
    staging = Path(data_dir) / "stac" / safe_name(api_url)
    sources: list[SceneSource] = []
    searches: dict[str, dict] = {}
    try:
        client = pystac_client.Client.open(api_url, modifier=sign)
    except (APIError, OSError, ValueError) as exc:
        failed = {c: {"error": f"cannot open the STAC API {api_url}: {exc}"} for c in collections}
        return SyncSummary(RunSummary(), failed)
    starts: dict[str, datetime | None] = {}
    for collection in collections:
        start = starts[collection] = search_start(
            store.last_stac_sync(engine, api_url, collection), since
        )
        searches[collection] = {
            "from": start.isoformat() if start else None,
            "areas": len(areas),
        }
        try:
            items = _search(client, collection, areas, start, max_cloud)
        except (APIError, OSError, ValueError) as exc:
            searches[collection]["error"] = f"search failed: {exc}"
            continue
        searches[collection]["found"] = len(items)
        for item in items:
            path = staging / safe_name(collection) / f"{safe_name(item['id'])}.json"
            atomic_write_text(path, json.dumps(item, sort_keys=True))
            version = item_version(api_url, collection, item)
            sources.append(
                SceneSource(item["id"], path, (path,), path.parent, allowed_hosts, version, sign)
            )
    run = run_sources(engine, sources, Path(data_dir), on_scene, cluster, parcels)
    for collection, search in searches.items():
        if "error" not in search:
            store.record_stac_sync(
                engine, api_url, collection, starts[collection], started, search["found"]
            )
    return SyncSummary(run, searches)


def _search(client, collection: str, areas: list[tuple], start, max_cloud) -> list[dict]:
    """Every item of ``collection`` over any of ``areas`` since ``start``, once each."""
    found: dict[str, dict] = {}
    for bbox in areas:
        search = client.search(
            collections=[collection],
            bbox=list(bbox),
            datetime=f"{start.isoformat()}/.." if start else None,
            query={"eo:cloud_cover": {"lte": max_cloud}} if max_cloud is not None else None,
            limit=PAGE_SIZE,
        )
        for item in search.items_as_dicts():
            found.setdefault(item["id"], item)
    return [found[key] for key in sorted(found)]


def _without_query(href: str) -> str:
    parts = urlsplit(href)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
