"""Asset files over HTTP and S3: which hosts the job may read, and how GDAL reads them.

A STAC item from a public catalogue names its band files by URL. The job reads a URL only
when its host is in the operator's allow-list (``AGRI_IMAGERY_ALLOWED_HOSTS``): an item
is data from outside, and a URL in it must not make the job fetch from anywhere it likes
(an internal service, a metadata endpoint). Allowed http(s) URLs are read through GDAL's
``/vsicurl/``, allowed ``s3://bucket/key`` URLs (Copernicus Data Space, USGS Landsat)
through ``/vsis3/``, which fetch only the byte ranges (internal tiles) a read needs, with
the settings cloud-native readers use (``scene_processing.GDAL_SETTINGS`` scopes them with
``rasterio.Env`` where the reads happen). S3 needs credentials: GDAL takes them, and the
endpoint, from the standard ``AWS_*`` environment (deploy/README.md shows each catalogue's).
"""

import ctypes
import ctypes.util
import functools
import json
import re
from collections.abc import Mapping
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
# How GDAL reads each scheme of URL the job may read.
GDAL_PREFIX = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/"}
S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Where GDAL finds S3 credentials (its /vsis3/ documentation): any one of these in the
# environment, or a shared credentials file. A public bucket needs AWS_NO_SIGN_REQUEST=YES.
S3_CREDENTIALS = (
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ("AWS_PROFILE",),
    ("AWS_DEFAULT_PROFILE",),
    ("AWS_SHARED_CREDENTIALS_FILE",),
    ("AWS_NO_SIGN_REQUEST",),
)


class HostNotAllowed(ValueError):
    """An asset URL whose scheme or host the operator has not allowed."""


def parse_allowed_hosts(text: str | None) -> frozenset[str]:
    """``AGRI_IMAGERY_ALLOWED_HOSTS``: host names (optionally ``host:port``) for http(s)
    URLs and ``s3://bucket`` for S3 buckets, comma or space separated, case-insensitive.
    Empty: no URL is read."""
    if not text:
        return frozenset()
    hosts = {h.strip().lower() for h in text.replace(",", " ").split()}
    for host in hosts:
        if host.startswith("s3://"):
            if not S3_BUCKET.match(host.removeprefix("s3://")):
                raise ValueError(f"{host!r} is not an S3 bucket (write s3://BUCKET)")
        elif "/" in host or "@" in host:
            raise ValueError(f"{host!r} is not a host name (write it without scheme or path)")
    return frozenset(hosts)


def s3_buckets(allowed_hosts: frozenset[str]) -> list[str]:
    return sorted(h for h in allowed_hosts if h.startswith("s3://"))


def s3_credentials_configured(environ: Mapping[str, str], home: Path) -> bool:
    """Whether GDAL will find S3 credentials (S3_CREDENTIALS, or ~/.aws/credentials)."""
    if any(all(environ.get(name) for name in names) for names in S3_CREDENTIALS):
        return True
    return (home / ".aws" / "credentials").is_file()


def is_url(href: str) -> bool:
    return urlsplit(href).scheme.lower() in GDAL_PREFIX


def gdal_path(href: str, allowed_hosts: frozenset[str]) -> str:
    """The GDAL path of an allowed asset URL (``/vsicurl/URL``, ``/vsis3/BUCKET/KEY``);
    HostNotAllowed names the host (or bucket) and the setting otherwise."""
    parts = urlsplit(href)
    scheme = parts.scheme.lower()
    if scheme not in GDAL_PREFIX:
        raise HostNotAllowed(f"{href!r}: only http, https and s3 URLs are read")
    host = (parts.hostname or "").lower()
    if scheme == "s3":
        wanted = allowed = f"s3://{host}"
        target = f"{host}{parts.path}"
    else:
        wanted = f"{host}:{parts.port}" if parts.port else host
        allowed = host
        target = href
    if allowed not in allowed_hosts and wanted not in allowed_hosts:
        listed = ", ".join(sorted(allowed_hosts)) or "none"
        what = "bucket" if scheme == "s3" else "host"
        raise HostNotAllowed(
            f"{href!r}: {what} {wanted!r} is not in AGRI_IMAGERY_ALLOWED_HOSTS (allowed: {listed})"
        )
    return GDAL_PREFIX[scheme] + target


def readable_href(asset: dict, allowed_hosts: frozenset[str]):
    """The URL to read an asset from: its ``href``, or where that host is not allowed, the
    first of its ``alternate`` URLs (STAC's alternate-assets extension) that is. USGS
    Landsat items name an HTTPS file behind a login and its ``s3://usgs-landsat`` copy,
    which an operator with (requester-pays) S3 credentials can allow instead."""
    href = asset.get("href")
    if not isinstance(href, str) or not is_url(href) or _allowed(href, allowed_hosts):
        return href
    alternates = asset.get("alternate")
    for alternate in alternates.values() if isinstance(alternates, dict) else ():
        other = alternate.get("href") if isinstance(alternate, dict) else None
        if isinstance(other, str) and is_url(other) and _allowed(other, allowed_hosts):
            return other
    return href


def _allowed(href: str, allowed_hosts: frozenset[str]) -> bool:
    try:
        gdal_path(href, allowed_hosts)
    except HostNotAllowed:
        return False
    return True


def is_remote(path: Path | str) -> bool:
    """Whether a GDAL path is read over the network."""
    return str(path).startswith(tuple(set(GDAL_PREFIX.values())))


def shown_url(path: Path | str) -> str:
    """The URL a GDAL path reads, as the item named it (for messages)."""
    text = str(path)
    if text.startswith(GDAL_PREFIX["s3"]):
        return "s3://" + text.removeprefix(GDAL_PREFIX["s3"])
    return text.removeprefix(GDAL_PREFIX["http"])


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
