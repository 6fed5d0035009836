"""STAC sync benchmark: a new scene for a township portfolio, read over HTTP.

    make bench            (or: .venv/bin/python bench/stac_sync.py [--runs N])

A full-size Sentinel-2 tile as real-sized COGs (1024-px tiles, DEFLATE, overviews, like
Earth Search's) served by nginx, one STAC item for it in a stac-fastapi-pgstac API, and
2,000 parcels in four townships covering about 5 % of the tile. Side by side, per run:
  ours: `agri imagery sync` of that item (search, read, mask, NDVI, statistics, store,
        profiles), a fresh database each run;
  peer: `odc.stac.load` of red/nir/scl over the parcels' bounding box, the same mask and
        NDVI, then exactextract's mean per parcel.
Each side is its own child process (peak RSS from GNU time); bytes are what nginx sent.
With ``--later N`` the same comparison is made again for a later scene of a portfolio
with history: each run first syncs N earlier scenes (the same files under other URLs),
untimed, then a new item is published and timed (the parcels' coverage weights are then
cached, and the profiles have a history to smooth); the peer loads that item alone.
Then the first sync of one new parcel with 70 scenes of history (the same files under 70
URLs, so no reader cache is shared): seconds and bytes.
With ``--rate 5m`` the runs are repeated with every connection to nginx limited to that
many bytes a second (nginx ``limit_rate``), as over a far object store: a per-connection
limit, so a reader that opens more connections gets more in all.
Results go to stdout and bench/out/stac_sync.json.
"""

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.shutil
import rasterio.warp
import shapely

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from raster_pipeline import OUT, SIZE, X0, Y0, child, make_tile, rectangles  # noqa: E402

from tests.support.range_server import range_server  # noqa: E402
from tests.support.stac_api import collection, stac_api  # noqa: E402

AGRI = [sys.executable, "-m", "collateral.cli"]
COG_DIR = OUT / "cog"
COLLECTION = "sentinel-2-l2a"
N_PARCELS = int(os.environ.get("AGRI_BENCH_STAC_PARCELS", 2_000))
TOWNSHIPS = 4  # square townships of 12.3 km: 4 x 151 km2 = 5 % of the tile's 12,056 km2
SCALE = SIZE / 10980  # a smaller tile (the smoke test's) keeps the townships' places
TOWNSHIP_M = 12_300 * SCALE
HISTORY_SCENES = int(os.environ.get("AGRI_BENCH_STAC_HISTORY", 70))


def make_cogs() -> None:
    """The benchmark tile as COGs: 1024-px tiles, DEFLATE, overviews (Earth Search's shape)."""
    if not (OUT / "tile" / "SCL.tif").exists():
        print("generating a 10980 x 10980 tile (once)...", flush=True)
        make_tile(OUT / "tile")
    COG_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("B04", "B08", "SCL"):
        target = COG_DIR / f"{name}.tif"
        if not target.exists():
            print(f"writing {target.name} as a COG (once)...", flush=True)
            rasterio.shutil.copy(
                OUT / "tile" / f"{name}.tif",
                target,
                driver="COG",
                BLOCKSIZE=1024,
                COMPRESS="DEFLATE",
                PREDICTOR="YES",
                OVERVIEWS="AUTO",
            )


def make_parcels(path: Path) -> gpd.GeoDataFrame:
    """2,000 rotated rectangles of 0.2-5 ha in four townships, as the importer takes them."""
    rng = np.random.default_rng(11)
    centres = [
        (X0 + 20_000 * SCALE, Y0 - 25_000 * SCALE),
        (X0 + 70_000 * SCALE, Y0 - 30_000 * SCALE),
        (X0 + 35_000 * SCALE, Y0 - 80_000 * SCALE),
        (X0 + 85_000 * SCALE, Y0 - 90_000 * SCALE),
    ]
    town = rng.integers(0, TOWNSHIPS, N_PARCELS)
    cx = np.array([centres[t][0] for t in town]) + rng.uniform(-0.5, 0.5, N_PARCELS) * TOWNSHIP_M
    cy = np.array([centres[t][1] for t in town]) + rng.uniform(-0.5, 0.5, N_PARCELS) * TOWNSHIP_M
    area = np.exp(rng.uniform(np.log(2_000), np.log(50_000), N_PARCELS))
    aspect = rng.uniform(0.5, 2.0, N_PARCELS)
    geoms = rectangles(rng, cx, cy, area, aspect)
    kinds = np.where(rng.random(N_PARCELS) < 0.5, "tea_garden", "forest")
    frame = gpd.GeoDataFrame(
        {"parcel_id": [f"S{i:05d}" for i in range(N_PARCELS)], "kind": kinds},
        geometry=geoms,
        crs="EPSG:32650",
    ).to_crs(4326)
    path.write_text(frame.to_json())
    return frame


def item(item_id: str, day: str, base_url: str) -> dict:
    """A Sentinel-2 L2A item of the tile whose assets are URLs on the test server."""
    west, south, east, north = rasterio.warp.transform_bounds(
        "EPSG:32650", "EPSG:4326", X0, Y0 - SIZE * 10, X0 + SIZE * 10, Y0
    )
    footprint = shapely.box(west, south, east, north)
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": COLLECTION,
        "bbox": [west, south, east, north],
        "geometry": shapely.geometry.mapping(footprint),
        "properties": {
            "datetime": f"{day}T03:00:00Z",
            "platform": "sentinel-2a",
            "s2:processing_baseline": "05.10",
            "eo:cloud_cover": 10.0,
        },
        "links": [],
        "assets": {
            key: {"href": f"{base_url}/{name}.tif", "type": "image/tiff; application=geotiff"}
            for key, name in (("red", "B04"), ("nir", "B08"), ("scl", "SCL"))
        },
    }


COLLECTION_DOC = collection(COLLECTION, "benchmark tile")

PEER_SCRIPT = """
import json, sys
import numpy as np, geopandas as gpd, pystac_client
import odc.stac
from exactextract import exact_extract
from exactextract.raster import NumPyRasterSource
from remote_sensing.imagery.indices import masked_ndvi
api, collection, parcels_path, out = sys.argv[1:5]
ids = sys.argv[5:] or None  # the new item alone, where the catalogue holds others
odc.stac.configure_rio(cloud_defaults=True)
parcels = gpd.read_file(parcels_path)
items = list(pystac_client.Client.open(api).search(
    collections=[collection], bbox=list(parcels.total_bounds), ids=ids).items())
data = odc.stac.load(items, bands=["red", "nir", "scl"], bbox=list(parcels.total_bounds),
                     crs="EPSG:32650", resolution=10, chunks={"x": 2048, "y": 2048},
                     resampling={"scl": "nearest"}).isel(time=0).compute()
red = np.where(data.red.values == 0, np.nan, data.red.values * 1e-4 - 0.1).astype("float32")
nir = np.where(data.nir.values == 0, np.nan, data.nir.values * 1e-4 - 0.1).astype("float32")
ndvi = masked_ndvi(red, nir, data.scl.values.astype("uint8"))
x, y = data.x.values, data.y.values
res = 10.0
src = NumPyRasterSource(ndvi, x.min() - res / 2, y.min() - res / 2, x.max() + res / 2,
                        y.max() + res / 2, nodata=np.nan, srs_wkt=data.odc.crs.wkt)
means = exact_extract(src, parcels.to_crs(32650), ["mean"], include_cols=["parcel_id"],
                      output="pandas")
json.dump(dict(zip(means.parcel_id, means["mean"].astype(float))), open(out, "w"))
"""


def ours(api_url: str, parcels: Path, work: Path, host: str, imported: bool = False) -> dict:
    env = {
        **os.environ,
        "AGRI_DATABASE_URL": f"sqlite:///{work / 'agri.db'}",
        "AGRI_DATA_DIR": str(work / "data"),
        "AGRI_IMAGERY_ALLOWED_HOSTS": host,
    }
    if not imported:
        child([*AGRI, "parcels", "import", str(parcels)], env)
    seconds, peak_mb, out = child(
        [*AGRI, "imagery", "sync", "--stac-api", api_url, "--collection", COLLECTION, "--json"],
        env,
    )
    summary = json.loads(out)
    return {"seconds": seconds, "peak_mb": peak_mb, "summary": summary, "env": env}


def run_once(api_url: str, served, parcels: Path, host: str, later=None) -> dict:
    """One side-by-side run on a fresh database; with ``later`` (the API, the new item),
    the scenes already in the catalogue are synced first, untimed, and the new item,
    published then, is the one timed (and the only one the peer loads)."""
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        work = Path(tmp)
        peer_ids: list[str] = []
        if later is not None:
            api, new_item = later
            ours(api_url, parcels, work, host)  # the portfolio's history, untimed
            api.load([new_item])
            peer_ids = [new_item["id"]]
        try:
            mine, our_log, (peer_s, peer_mb), peer_log = both_sides(
                api_url, served, parcels, work, host, later is not None, peer_ids
            )
        finally:
            if later is not None:
                api.delete(new_item["id"], COLLECTION)
        theirs = json.loads((work / "peer.json").read_text())
        from collateral.db import make_engine
        from remote_sensing import store

        scene = next(s for s in mine["summary"]["scenes"] if s["status"] == "processed")
        engine = make_engine(mine["env"]["AGRI_DATABASE_URL"])
        diffs = []
        for pid, mean in theirs.items():
            rows = [
                r
                for r in store.parcel_observations(engine, pid)
                if r["scene_id"] == scene["scene_id"]
            ]
            if rows and rows[0]["ndvi_mean"] is not None and np.isfinite(mean):
                diffs.append(abs(rows[0]["ndvi_mean"] - mean))
        engine.dispose()
    our_bytes = sum(r.bytes_sent for r in our_log)
    peer_bytes = sum(r.bytes_sent for r in peer_log)
    return {
        "ours_s": mine["seconds"],
        "ours_peak_mb": mine["peak_mb"],
        "ours_bytes": our_bytes,
        "ours_requests": len(our_log),
        "ours_ledger_bytes": scene["http_bytes"],
        "peer_s": peer_s,
        "peer_peak_mb": peer_mb,
        "peer_bytes": peer_bytes,
        "peer_requests": len(peer_log),
        "bytes_ratio": peer_bytes / our_bytes,
        "speed_ratio": peer_s / mine["seconds"],
        "parcels_compared": len(diffs),
        "max_abs_mean_diff": max(diffs) if diffs else None,
    }


def both_sides(api_url, served, parcels: Path, work: Path, host: str, imported, peer_ids):
    """Ours, then the peer, each with the requests nginx logged for it."""
    before = len(served.requests())
    mine = ours(api_url, parcels, work, host, imported)
    time.sleep(0.5)  # nginx logs a request once sent
    our_log = served.requests()[before:]
    before = len(served.requests())
    peer_s, peer_mb, _ = child(
        [
            sys.executable,
            "-c",
            PEER_SCRIPT,
            api_url,
            COLLECTION,
            str(parcels),
            str(work / "peer.json"),
            *peer_ids,
        ],
        {**os.environ, "PYTHONPATH": str(ROOT)},
    )
    time.sleep(0.5)
    return mine, our_log, (peer_s, peer_mb), served.requests()[before:]


def report(result: dict, prefix: str = "") -> None:
    print(
        prefix + f"ours {result['ours_s']:.1f} s, "
        f"{result['ours_bytes'] / 1e6:.1f} MB in {result['ours_requests']} "
        f"requests, peak {result['ours_peak_mb']:.0f} MB | odc-stac + "
        f"exactextract {result['peer_s']:.1f} s, {result['peer_bytes'] / 1e6:.1f} "
        f"MB in {result['peer_requests']} requests, peak "
        f"{result['peer_peak_mb']:.0f} MB | {result['bytes_ratio']:.1f}x fewer "
        f"bytes, {result['speed_ratio']:.2f}x faster; max |mean diff| "
        f"{result['max_abs_mean_diff']:.2e} over {result['parcels_compared']} "
        "parcels",
        flush=True,
    )


def later_runs(served, parcels: Path, host: str, earlier: int, runs: int) -> list[dict]:
    """``runs`` later scenes of a portfolio that has synced ``earlier`` scenes: recent
    dates (the search reaches back OVERLAP before the last sync), other URLs (no cache)."""
    today = dt.datetime.now(dt.UTC).date()
    past = [
        item(
            f"S2A_BENCH_T50RLN_E{k:02d}",
            (today - dt.timedelta(days=5 * (earlier - k) + 1)).isoformat(),
            f"{served.base_url}/copies/{100 + k}",
        )
        for k in range(earlier)
    ]
    new_item = item(
        "S2A_BENCH_T50RLN_NEW", today.isoformat(), f"{served.base_url}/copies/{100 + earlier}"
    )
    out = []
    with stac_api([COLLECTION_DOC], past, OUT / "stac-api-later.log") as api:
        for run in range(runs):
            out.append(run_once(api.url, served, parcels, host, (api, new_item)))
            report(out[-1], f"[a later scene, {earlier} before it] run {run + 1}: ")
    return out


def history(api_url: str, served, parcels: Path, host: str) -> dict:
    """The first sync of one new parcel with HISTORY_SCENES scenes in the catalogue."""
    one = gpd.read_file(parcels).iloc[[0]]
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        work = Path(tmp)
        single = work / "one.geojson"
        single.write_text(one.to_json())
        before = len(served.requests())
        mine = ours(api_url, single, work, host)
        time.sleep(0.5)
        log = served.requests()[before:]
    processed = sum(s["status"] == "processed" for s in mine["summary"]["scenes"])
    return {
        "scenes": processed,
        "seconds": mine["seconds"],
        "peak_mb": mine["peak_mb"],
        "bytes": sum(r.bytes_sent for r in log),
        "requests": len(log),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", help="also run with each connection limited to this (5m)")
    parser.add_argument("--no-history", action="store_true", help="skip the 70-scene sync")
    parser.add_argument(
        "--later", type=int, default=0, help="also time a later scene after N earlier ones"
    )
    args = parser.parse_args()
    make_cogs()
    parcels = OUT / "stac_parcels.geojson"
    if not parcels.exists():
        make_parcels(parcels)
    results: dict = {"runs": [], "limited": {"rate": args.rate, "runs": []}}
    for rate in [None, args.rate] if args.rate else [None]:
        with range_server(COG_DIR, OUT / "nginx", rate=rate) as served:
            host = served.base_url.removeprefix("http://")
            scene = item("S2A_BENCH_T50RLN_20240615", "2024-06-15", served.base_url)
            with stac_api([COLLECTION_DOC], [scene], OUT / "stac-api.log") as api:
                for run in range(args.runs):
                    result = run_once(api.url, served, parcels, host)
                    (results["limited"] if rate else results)["runs"].append(result)
                    report(
                        result,
                        (f"[each connection {rate}B/s] " if rate else "") + f"run {run + 1}: ",
                    )
            if args.later and not rate:
                results["later"] = {
                    "earlier_scenes": args.later,
                    "runs": later_runs(served, parcels, host, args.later, args.runs),
                }
    if args.no_history:
        (OUT / "stac_sync.json").write_text(json.dumps(results, indent=2))
        return
    with range_server(COG_DIR, OUT / "nginx") as served:
        host = served.base_url.removeprefix("http://")
        copies = [
            item(
                f"S2A_BENCH_T50RLN_H{n:03d}",
                f"{2023 + n // 36}-{1 + (n % 36) // 3:02d}-{1 + 9 * (n % 3):02d}",
                f"{served.base_url}/copies/{n}",
            )
            for n in range(HISTORY_SCENES)
        ]
        with stac_api([COLLECTION_DOC], copies, OUT / "stac-api-history.log") as api:
            results["history"] = history(api.url, served, parcels, host)
        h = results["history"]
        print(
            f"first sync of a new parcel with {h['scenes']} scenes: {h['seconds']:.1f} s, "
            f"{h['bytes'] / 1e6:.1f} MB in {h['requests']} requests, peak {h['peak_mb']:.0f} MB",
            flush=True,
        )
    (OUT / "stac_sync.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
