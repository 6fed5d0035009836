"""Asset files over HTTP: which hosts the job may read, and how GDAL reads them.

A STAC item from a public catalogue names its band files by URL. The job reads a URL only
when its host is in the operator's allow-list (``AGRI_IMAGERY_ALLOWED_HOSTS``): an item
is data from outside, and a URL in it must not make the job fetch from anywhere it likes
(an internal service, a metadata endpoint). Allowed URLs are read through GDAL's
``/vsicurl/``, which fetches only the byte ranges (internal tiles) a read needs, with the
settings cloud-native readers use (``scene_processing.GDAL_SETTINGS`` scopes them with
``rasterio.Env`` where the reads happen).
"""

import ctypes
import ctypes.util
import functools
import json
from pathlib import Path
from urllib.parse import urlsplit

import rasterio

# GDAL's settings for reading cloud-optimised GeoTIFFs over HTTP (the values rioxarray,
# odc-stac and the GDAL COG docs recommend). As data, so every reader uses the same.
GDAL_HTTP_OPTIONS: dict[str, str] = {
    # opening a file must not list its "directory" (one more request, or thousands)
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    # only these suffixes go to the network; anything else is refused without a request
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.JP2",
    # neighbouring tiles in one request, several ranges in one request where served
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIRANGE": "YES",
    # a transient failure (429, 502, 503, 504, timeouts) is retried, with back-off
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_TIMEOUT": "60",
    # the header of a COG is at its start: one 64 kB read gets it with the tile index
    "GDAL_INGESTED_BYTES_AT_OPEN": "65536",
    "VSI_CACHE": "TRUE",
    # the tiles the offset check fetched are fetched again by the scene's read unless the
    # download cache (16 MB by default) holds them: a few compressed 1024-px tiles per band
    "CPL_VSIL_CURL_CACHE_SIZE": str(256 * 1024 * 1024),
    # count requests and bytes, so the ledger can say what each scene cost
    "CPL_VSIL_NETWORK_STATS_ENABLED": "YES",
}
SCHEMES = ("http", "https")


class HostNotAllowed(ValueError):
    """An asset URL whose scheme or host the operator has not allowed."""


def parse_allowed_hosts(text: str | None) -> frozenset[str]:
    """``AGRI_IMAGERY_ALLOWED_HOSTS``: host names (optionally ``host:port``), comma or
    space separated, case-insensitive. Empty: no URL is read."""
    if not text:
        return frozenset()
    hosts = {h.strip().lower() for h in text.replace(",", " ").split()}
    for host in hosts:
        if "/" in host or "@" in host:
            raise ValueError(f"{host!r} is not a host name (write it without scheme or path)")
    return frozenset(hosts)


def is_url(href: str) -> bool:
    return urlsplit(href).scheme.lower() in SCHEMES


def gdal_path(href: str, allowed_hosts: frozenset[str]) -> str:
    """The GDAL path of an allowed asset URL (``/vsicurl/URL``); HostNotAllowed names the
    host and the setting otherwise."""
    parts = urlsplit(href)
    if parts.scheme.lower() not in SCHEMES:
        raise HostNotAllowed(f"{href!r}: only http and https URLs are read")
    host = (parts.hostname or "").lower()
    with_port = f"{host}:{parts.port}" if parts.port else host
    if host not in allowed_hosts and with_port not in allowed_hosts:
        listed = ", ".join(sorted(allowed_hosts)) or "none"
        raise HostNotAllowed(
            f"{href!r}: host {with_port!r} is not in AGRI_IMAGERY_ALLOWED_HOSTS (allowed: {listed})"
        )
    return f"/vsicurl/{href}"


@functools.cache
def _gdal() -> ctypes.CDLL | None:
    """The GDAL library rasterio uses (the wheel's bundled copy, else the system's): its
    network statistics (VSINetworkStats*) are not exposed by rasterio."""
    bundled = sorted((Path(rasterio.__file__).parent.parent / "rasterio.libs").glob("libgdal*.so*"))
    name = str(bundled[0]) if bundled else ctypes.util.find_library("gdal")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.VSINetworkStatsGetAsSerializedJSON.restype = ctypes.c_void_p
        lib.VSINetworkStatsGetAsSerializedJSON.argtypes = [ctypes.c_void_p]
        lib.VSIFree.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return lib


def reset_scene_reads() -> None:
    """Start counting this process's HTTP requests and bytes afresh, and empty GDAL's
    download cache: a scene's tiles are reused within the scene (CPL_VSIL_CURL_CACHE_SIZE),
    and a sync over 70 scenes must not keep 70 scenes' tiles."""
    lib = _gdal()
    if lib is not None:
        lib.VSINetworkStatsReset()
        lib.VSICurlClearCache()


def network_stats() -> tuple[int, int] | None:
    """(requests, bytes downloaded) by GDAL's network readers in this process since the
    last reset (None where GDAL's statistics are not available). Needs
    CPL_VSIL_NETWORK_STATS_ENABLED, which GDAL_HTTP_OPTIONS sets."""
    lib = _gdal()
    if lib is None:
        return None
    pointer = lib.VSINetworkStatsGetAsSerializedJSON(None)
    if not pointer:
        return None
    try:
        stats = json.loads(ctypes.string_at(pointer).decode())
    finally:
        lib.VSIFree(pointer)
    methods = stats.get("methods", {})
    requests = sum(int(m.get("count", 0)) for m in methods.values())
    downloaded = sum(int(m.get("downloaded_bytes", 0)) for m in methods.values())
    return requests, downloaded
