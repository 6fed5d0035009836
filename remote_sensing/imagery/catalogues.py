"""How each STAC catalogue names its assets and encodes its numbers: one table, no branches.

Operators point the imagery job at what public catalogues publish, and each catalogue
has its own dialect: Earth Search v1 calls the bands ``red``/``nir``/``scl`` and flags
(``earthsearch:boa_offset_applied``) that it already removed the baseline-04.00 offset
while ``raster:bands`` still declares it; Planetary Computer uses ``B04``/``B08``/``SCL``
and declares no scale at all; Copernicus Data Space (STAC 1.1) puts ``raster:scale``,
``raster:offset`` and ``nodata`` on the asset and suffixes keys with the resolution;
USGS Landsat Collection 2 items declare nothing and the product guide fixes the numbers.
Each row below is one such dialect. An item is matched to a row by what it says about
itself (its links' host, its collection, its platform), never by an operator's flag;
an item that matches no named catalogue (our own sample items, a local archive) gets
the generic row of its sensor family, whose rules are the STAC ones: asset fields, then
``raster:bands``, then the processing-baseline rule.
"""

from dataclasses import dataclass
from urllib.parse import urlparse

SENTINEL_2 = "sentinel-2"
LANDSAT = "landsat"

# The mask band each family has: Sentinel-2's scene classification, or Landsat's
# QA_PIXEL bit flags (remote_sensing.imagery.indices maps them onto SCL classes).
MASK_OF_FAMILY = {SENTINEL_2: "scl", LANDSAT: "qa_pixel"}

# Landsat Collection 2 Level-2 surface reflectance: USGS product guide (LSDS-1619),
# reflectance = DN * 2.75e-5 - 0.2, 0 = fill.
LANDSAT_C2_L2 = {"scale": 2.75e-5, "offset": -0.2, "nodata": 0}

EARTH_SEARCH = ("earth-search.aws.element84.com",)
PLANETARY_COMPUTER = ("planetarycomputer.microsoft.com",)
COPERNICUS_DATA_SPACE = ("stac.dataspace.copernicus.eu",)
USGS = ("landsatlook.usgs.gov",)
BOA_FLAG = "earthsearch:boa_offset_applied"

S2_COMMON = {"red": ("red",), "nir": ("nir",), "mask": ()}
LANDSAT_COMMON = {"red": ("red",), "nir": ("nir08",), "mask": ()}
LANDSAT_KEYS = {
    "red": ("red", "SR_B4"),
    "nir": ("nir08", "SR_B5"),
    "mask": ("qa_pixel", "QA_PIXEL"),
}


@dataclass(frozen=True)
class Convention:
    """One catalogue's dialect for one collection.

    ``keys`` lists, per band we read (red, nir, mask), the asset keys in order of
    preference; ``common_names`` the ``eo:common_name`` values that identify a band when
    no key matches (never ``nir08`` for Sentinel-2: that is the 20 m B8A, and a 10 m
    ``nir``/``B08`` always exists). ``scale``/``offset``/``nodata`` are the encoding the
    catalogue uses when its items declare none. ``offset_applied_flag`` names the item
    property that says the baseline offset was already removed from the numbers.
    ``bandpass`` names the cross-sensor adjustment (remote_sensing.imagery.radiometry) that makes
    this sensor's reflectance comparable with Sentinel-2's.
    """

    name: str
    family: str
    hosts: tuple[str, ...] = ()  # hosts of the item's links; () = any
    collections: tuple[str, ...] = ()  # the item's collection id; () = any
    keys: dict[str, tuple[str, ...]] | None = None
    common_names: dict[str, tuple[str, ...]] | None = None
    scale: float | None = None
    offset: float | None = None
    nodata: float | None = 0
    offset_applied_flag: str | None = None
    bandpass: str | None = None


CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "earth-search-v1/sentinel-2-l2a",
        SENTINEL_2,
        EARTH_SEARCH,
        ("sentinel-2-l2a",),
        keys={"red": ("red",), "nir": ("nir",), "mask": ("scl",)},
        offset_applied_flag=BOA_FLAG,
    ),
    Convention(
        "earth-search-v1/sentinel-2-c1-l2a",
        SENTINEL_2,
        EARTH_SEARCH,
        ("sentinel-2-c1-l2a",),
        keys={"red": ("red",), "nir": ("nir",), "mask": ("scl",)},
        offset_applied_flag=BOA_FLAG,
    ),
    Convention(
        "planetary-computer/sentinel-2-l2a",
        SENTINEL_2,
        PLANETARY_COMPUTER,
        ("sentinel-2-l2a",),
        keys={"red": ("B04",), "nir": ("B08",), "mask": ("SCL",)},
    ),
    Convention(
        "copernicus-data-space/sentinel-2-l2a",
        SENTINEL_2,
        COPERNICUS_DATA_SPACE,
        ("sentinel-2-l2a",),
        keys={"red": ("B04_10m",), "nir": ("B08_10m",), "mask": ("SCL_20m",)},
    ),
    Convention(
        "planetary-computer/landsat-c2-l2",
        LANDSAT,
        PLANETARY_COMPUTER,
        ("landsat-c2-l2",),
        keys=LANDSAT_KEYS,
        bandpass="hls-oli-to-msi",
        **LANDSAT_C2_L2,
    ),
    Convention(
        "earth-search-v1/landsat-c2-l2",
        LANDSAT,
        EARTH_SEARCH,
        ("landsat-c2-l2",),
        keys=LANDSAT_KEYS,
        bandpass="hls-oli-to-msi",
        **LANDSAT_C2_L2,
    ),
    Convention(
        "usgs/landsat-c2l2-sr",
        LANDSAT,
        USGS,
        ("landsat-c2l2-sr",),
        keys=LANDSAT_KEYS,
        bandpass="hls-oli-to-msi",
        **LANDSAT_C2_L2,
    ),
    # Any other catalogue, and our own items: the STAC rules for the item's sensor.
    Convention(
        "generic/landsat-c2-l2",
        LANDSAT,
        keys=LANDSAT_KEYS,
        common_names=LANDSAT_COMMON,
        bandpass="hls-oli-to-msi",
        **LANDSAT_C2_L2,
    ),
    Convention(
        "generic/sentinel-2-l2a",
        SENTINEL_2,
        keys={
            "red": ("red", "B04", "B04_10m"),
            "nir": ("nir", "B08", "B08_10m"),
            "mask": ("scl", "SCL", "SCL_20m"),
        },
        common_names=S2_COMMON,
        offset_applied_flag=BOA_FLAG,
    ),
)

# Platform names as catalogues spell them -> ours; and from an item id's prefix when
# the item names no platform.
PLATFORM_SPELLINGS = {
    "sentinel-2a": "sentinel-2a",
    "sentinel-2b": "sentinel-2b",
    "sentinel-2c": "sentinel-2c",
    "landsat-8": "landsat-8",
    "landsat-9": "landsat-9",
}
PLATFORM_FROM_ID = {
    "S2A": "sentinel-2a",
    "S2B": "sentinel-2b",
    "S2C": "sentinel-2c",
    "LC08": "landsat-8",
    "LC09": "landsat-9",
}

# Where each catalogue puts the tile (MGRS square or WRS path/row) and the processing
# version, in order of preference: what makes two items "the same acquisition".
TILE_PROPERTIES = ("s2:mgrs_tile", "grid:code", "tile")
VERSION_PROPERTIES = ("processing:version", "s2:processing_baseline")
PROCESSED_PROPERTIES = ("processing:datetime", "s2:generation_time", "updated", "created")


class UnknownSensor(ValueError):
    """An item whose platform is neither Sentinel-2 nor Landsat 8/9."""


def link_hosts(item: dict) -> set[str]:
    """Hosts of the item's self/root/parent/collection links: where it was published."""
    hosts = set()
    for link in item.get("links") or []:
        if isinstance(link, dict) and link.get("rel") in ("self", "root", "parent", "collection"):
            host = urlparse(str(link.get("href", ""))).hostname
            if host:
                hosts.add(host.lower())
    return hosts


def platform(item: dict) -> str | None:
    """Our spelling of the item's platform (``sentinel-2a``, ``landsat-9``), if it has one."""
    props = item.get("properties") or {}
    raw = str(props.get("platform") or "").strip().lower().replace("_", "-")
    if raw in PLATFORM_SPELLINGS:
        return PLATFORM_SPELLINGS[raw]
    item_id = str(item.get("id") or "")
    for prefix, name in PLATFORM_FROM_ID.items():
        if item_id.startswith(prefix):
            return name
    if raw.startswith("sentinel-2") or str(props.get("constellation", "")).lower() == SENTINEL_2:
        return "sentinel-2"
    return None


def family_of(sensor: str | None) -> str:
    if sensor is None or sensor.startswith(SENTINEL_2):
        return SENTINEL_2  # our own items have always been Sentinel-2 L2A
    if sensor.startswith(LANDSAT):
        return LANDSAT
    raise UnknownSensor(f"platform {sensor!r} is neither Sentinel-2 nor Landsat 8/9")


def recognise(item: dict) -> Convention:
    """The conventions row for a STAC item, from its links, collection and platform."""
    hosts = link_hosts(item)
    collection = str(item.get("collection") or "")
    family = family_of(platform(item))
    for row in CONVENTIONS:
        if row.family != family:
            continue
        if row.hosts and not hosts.intersection(row.hosts):
            continue
        if row.collections and collection not in row.collections:
            continue
        return row
    raise UnknownSensor(f"no convention for a {family} item")  # the generic rows match all


def tile(item: dict) -> str:
    """The item's tile: MGRS square for Sentinel-2, WRS path/row for Landsat."""
    props = item.get("properties") or {}
    for key in TILE_PROPERTIES:
        if props.get(key):
            return str(props[key]).removeprefix("MGRS-")
    if props.get("mgrs:utm_zone"):
        return f"{props['mgrs:utm_zone']}{props.get('mgrs:latitude_band', '')}" + str(
            props.get("mgrs:grid_square", "")
        )
    if props.get("landsat:wrs_path"):
        return f"{props['landsat:wrs_path']}{props.get('landsat:wrs_row', '')}"
    return ""


def processing_rank(item: dict) -> str:
    """A sortable account of how late and how well the item was processed: baseline
    (``05.11``), then processing time. Two items of one acquisition keep the higher."""
    props = item.get("properties") or {}
    version = next((str(props[k]) for k in VERSION_PROPERTIES if props.get(k)), "")
    processed = next((str(props[k]) for k in PROCESSED_PROPERTIES if props.get(k)), "")
    if not processed:
        # Landsat ids carry the processing date: LC08_L2SP_PPPRRR_YYYYMMDD_YYYYMMDD_02_T1
        parts = str(item.get("id") or "").split("_")
        processed = parts[4] if len(parts) > 4 and parts[4].isdigit() else ""
    return f"{version or '00.00'}|{processed}"
