"""Band files over HTTP: a real nginx serves the sample scenes; items in an inbox name their
bands by URL. Only allowed hosts are read, a broken asset fails its scene only, and the
parcels' statistics equal those from the same files read locally."""

import contextlib
import json
import shutil
import urllib.request
from pathlib import Path

import pytest
import shapely.affinity
from shapely.geometry import shape

from collateral.db import make_engine, upgrade
from remote_sensing import store
from remote_sensing.claims.plot_history import holds_plot, stored_scenes
from remote_sensing.imagery import http_assets
from remote_sensing.imagery.job import run_inbox
from remote_sensing.parcels import read_parcel_file
from tests.support.paths import SAMPLE_TILES
from tests.support.range_server import range_server
from tests.support.waiting import wait_for

SCENES = sorted(p.parent.name for p in (SAMPLE_TILES / "scenes").glob("*/item.json"))[:3]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with range_server(SAMPLE_TILES / "scenes", tmp_path_factory.mktemp("nginx")) as served:
        yield served


def _inbox(folder, base_url: str, rewrite=lambda scene, key, url: url):
    """The sample items with every asset href an absolute URL under ``base_url``."""
    for scene in SCENES:
        item = json.loads((SAMPLE_TILES / "scenes" / scene / "item.json").read_text())
        for key, asset in item["assets"].items():
            asset["href"] = rewrite(scene, key, f"{base_url}/{scene}/{asset['href']}")
        (folder / scene).mkdir(parents=True)
        (folder / scene / "item.json").write_text(json.dumps(item))
    return folder


def _engine(path):
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    store.upsert_parcels(engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels)
    return engine


def _means(engine) -> dict:
    return {
        (o["parcel_id"], o["scene_id"]): (o["ndvi_mean"], o["valid_fraction"], o["pixel_count"])
        for pid in store.load_parcels_frame(engine).parcel_id
        for o in store.parcel_observations(engine, pid)
        for o in [{**o, "parcel_id": pid}]
    }


def test_the_server_answers_ranges_byte_exact(server):
    name = f"{SCENES[0]}/B04.tif"
    request = urllib.request.Request(server.url(name), headers={"Range": "bytes=100-199"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 206
        body = response.read()
    assert body == (SAMPLE_TILES / "scenes" / name).read_bytes()[100:200]
    # nginx logs a request once it has sent the answer, a moment after the client has it
    assert wait_for(lambda: server.requests() and server.requests()[-1].range == "bytes=100-199")


def test_remote_bands_give_the_statistics_of_the_same_files_read_locally(server, tmp_path):
    local_inbox = tmp_path / "local"
    for scene in SCENES:
        shutil.copytree(SAMPLE_TILES / "scenes" / scene, local_inbox / scene)
    local = _engine(tmp_path / "local.db")
    assert run_inbox(local, local_inbox, tmp_path / "data-local").ok
    remote = _engine(tmp_path / "remote.db")
    inbox = _inbox(tmp_path / "remote", server.base_url)
    host = server.base_url.removeprefix("http://")
    before = len(server.requests())
    summary = run_inbox(remote, inbox, tmp_path / "data-remote", allowed_hosts=frozenset({host}))
    assert summary.ok and summary.count("processed") == len(SCENES), summary.as_json()
    assert _means(remote) == _means(local)
    # nginx logs a request once it has sent it: wait until the log has them all
    counted = sum(o.http_requests for o in summary.scenes)
    assert wait_for(lambda: len(server.requests()) - before >= counted)
    fetched = server.requests()[before:]
    assert fetched and {r.status for r in fetched} <= {200, 206}
    assert all(r.path.endswith(".tif") for r in fetched)  # no directory listing, no sidecars
    # what each scene cost, from GDAL's own statistics, is what the server sent
    assert counted == len(fetched)
    assert sum(o.http_bytes for o in summary.scenes) == sum(r.bytes_sent for r in fetched)
    ledger = {r["scene_id"]: r for r in store.scene_ledger(remote)}
    for outcome in summary.scenes:
        assert ledger[outcome.scene_id]["http_bytes"] == outcome.http_bytes > 0
    # a second run reads nothing: the ledger knows the items
    before = len(server.requests())
    again = run_inbox(remote, inbox, tmp_path / "data-remote", allowed_hosts=frozenset({host}))
    assert again.count("processed") == 0 and len(server.requests()) == before


def test_a_url_on_a_host_not_allowed_is_refused_and_recorded(server, tmp_path):
    engine = _engine(tmp_path / "agri.db")
    host = server.base_url.removeprefix("http://")

    def elsewhere(scene, key, url):
        return url.replace("127.0.0.1", "localhost") if scene == SCENES[1] else url

    inbox = _inbox(tmp_path / "inbox", server.base_url, elsewhere)
    before = len(server.requests())
    summary = run_inbox(engine, inbox, tmp_path / "data", allowed_hosts=frozenset({host}))
    by_scene = {o.scene_id: o for o in summary.scenes}
    refused = next(o for o in summary.scenes if o.status == "failed")
    assert "not in AGRI_IMAGERY_ALLOWED_HOSTS" in refused.error and "localhost" in refused.error
    assert summary.count("processed") == len(SCENES) - 1, by_scene
    assert all("localhost" not in r.path for r in server.requests()[before:])
    # and with no allow-list at all, no URL is read
    none = run_inbox(_engine(tmp_path / "none.db"), inbox, tmp_path / "data-none")
    assert none.count("processed") == 0 and none.count("failed") == len(SCENES)
    assert all("URLs and other schemes are refused" in o.error for o in none.scenes)


@pytest.mark.parametrize(("prefix", "status"), [("/fail", "500"), ("/missing", "404")])
def test_a_broken_asset_fails_its_scene_only_naming_the_url_and_status(
    server, tmp_path, prefix, status
):
    """A 500 is retried (object stores answer one now and then), then fails the scene; a
    404 (the catalogue names a file that is gone) fails it at once."""
    engine = _engine(tmp_path / "agri.db")
    host = server.base_url.removeprefix("http://")

    def broken(scene, key, url):
        if scene == SCENES[0] and key == "nir":
            return url.replace(server.base_url, f"{server.base_url}{prefix}")
        return url

    inbox = _inbox(tmp_path / "inbox", server.base_url, broken)
    summary = run_inbox(engine, inbox, tmp_path / "data", allowed_hosts=frozenset({host}))
    (failed,) = [o for o in summary.scenes if o.status == "failed"]
    assert f"{server.base_url}{prefix}/{SCENES[0]}" in failed.error, failed.error
    assert status in failed.error, failed.error
    attempts = [r for r in server.requests() if r.path.startswith(f"{prefix}/")]
    assert len(attempts) > 1 if status == "500" else len(attempts) >= 1
    assert summary.count("processed") == len(SCENES) - 1
    assert store.done_scene_keys(engine)  # the others are in the ledger


def test_an_overloaded_server_is_retried_until_the_scene_is_read(server, tmp_path):
    """503s (the server sheds load) are retried with back-off: the scenes are processed,
    with the statistics of the same files read locally."""
    host = server.base_url.removeprefix("http://")
    busy = _inbox(tmp_path / "busy", f"{server.base_url}/busy")
    engine = _engine(tmp_path / "busy.db")
    summary = run_inbox(engine, busy, tmp_path / "data", allowed_hosts=frozenset({host}))
    assert summary.ok and summary.count("processed") == len(SCENES), summary.as_json()
    assert wait_for(lambda: any(r.status == 503 for r in server.requests()))
    local_inbox = tmp_path / "local"
    for scene in SCENES:
        shutil.copytree(SAMPLE_TILES / "scenes" / scene, local_inbox / scene)
    local = _engine(tmp_path / "local.db")
    assert run_inbox(local, local_inbox, tmp_path / "data-local").ok
    assert _means(engine) == _means(local)


def test_allowed_hosts_setting_is_parsed_and_checked():
    hosts = http_assets.parse_allowed_hosts(
        "earth-search.aws.element84.com, sentinel-cogs.s3.us-west-2.amazonaws.com  127.0.0.1:8080"
    )
    assert "127.0.0.1:8080" in hosts and len(hosts) == 3
    assert http_assets.gdal_path(
        "https://sentinel-cogs.s3.us-west-2.amazonaws.com/a/B04.tif", hosts
    ).startswith("/vsicurl/https://")
    with pytest.raises(http_assets.HostNotAllowed, match="169.254.169.254"):
        http_assets.gdal_path("http://169.254.169.254/latest/meta-data", hosts)
    with pytest.raises(http_assets.HostNotAllowed, match="only http, https and s3"):
        http_assets.gdal_path("file:///etc/passwd", hosts)
    with pytest.raises(ValueError, match="without scheme"):
        http_assets.parse_allowed_hosts("https://example.com/")
    # S3 buckets are named as s3://BUCKET and read through /vsis3/
    buckets = http_assets.parse_allowed_hosts("s3://eodata, S3://usgs-landsat")
    assert http_assets.gdal_path("s3://eodata/Sentinel-2/B04.jp2", buckets) == (
        "/vsis3/eodata/Sentinel-2/B04.jp2"
    )
    assert http_assets.shown_url("/vsis3/eodata/Sentinel-2/B04.jp2") == (
        "s3://eodata/Sentinel-2/B04.jp2"
    )
    with pytest.raises(http_assets.HostNotAllowed, match="bucket 's3://other'"):
        http_assets.gdal_path("s3://other/B04.tif", buckets)
    with pytest.raises(http_assets.HostNotAllowed, match="host 'eodata'"):
        http_assets.gdal_path("https://eodata/B04.tif", buckets)  # a bucket is not a host
    with pytest.raises(ValueError, match="not an S3 bucket"):
        http_assets.parse_allowed_hosts("s3://Bad_Bucket/key")


def test_s3_buckets_need_credentials_at_start(monkeypatch, tmp_path):
    """Listing a bucket with no credentials anywhere GDAL looks fails when the settings are
    read, not scene by scene; any one source of credentials is enough."""
    from collateral.settings import Settings

    monkeypatch.setenv("HOME", str(tmp_path))
    for names in http_assets.S3_CREDENTIALS:
        for name in names:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AGRI_IMAGERY_ALLOWED_HOSTS", "s3://eodata")
    with pytest.raises(ValueError, match="no S3 credentials are configured"):
        Settings()
    monkeypatch.setenv("AGRI_IMAGERY_ALLOWED_HOSTS", "earth-search.aws.element84.com")
    assert Settings().allowed_hosts == {"earth-search.aws.element84.com"}  # none needed
    monkeypatch.setenv("AGRI_IMAGERY_ALLOWED_HOSTS", "s3://eodata")
    monkeypatch.setenv("AWS_NO_SIGN_REQUEST", "YES")
    assert Settings().allowed_hosts == {"s3://eodata"}
    monkeypatch.delenv("AWS_NO_SIGN_REQUEST")
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\naws_access_key_id = A\n")
    assert Settings().allowed_hosts == {"s3://eodata"}


def test_s3_assets_are_read_signed_from_the_configured_endpoint(server, tmp_path, monkeypatch):
    """Items naming their bands s3://eodata/... (as Copernicus Data Space's do) are read
    through GDAL's /vsis3/ from the endpoint in AWS_S3_ENDPOINT, each request signed with
    the configured key: the statistics are those of the same files read locally, and a
    bucket not allowed is refused."""
    monkeypatch.setenv("AWS_S3_ENDPOINT", server.base_url.removeprefix("http://"))
    monkeypatch.setenv("AWS_HTTPS", "NO")
    monkeypatch.setenv("AWS_VIRTUAL_HOSTING", "FALSE")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAAGRITEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    monkeypatch.setenv("AWS_REGION", "default")

    def in_bucket(scene, key, url):
        bucket = "eodata" if scene != SCENES[2] else "another-bucket"
        return url.replace(server.base_url, f"s3://{bucket}")

    inbox = _inbox(tmp_path / "s3", server.base_url, in_bucket)
    # the second item names its files as USGS Landsat items do: an HTTPS URL (a host not
    # allowed here) with the S3 copy as an alternate, which is what gets read
    item_path = inbox / SCENES[1] / "item.json"
    item = json.loads(item_path.read_text())
    for asset in item["assets"].values():
        s3 = asset["href"]
        asset["href"] = s3.replace("s3://eodata", "https://landsatlook.usgs.gov/data")
        asset["alternate"] = {"s3": {"href": s3}}
    item_path.write_text(json.dumps(item))
    local_inbox = tmp_path / "local"
    for scene in SCENES[:2]:
        shutil.copytree(SAMPLE_TILES / "scenes" / scene, local_inbox / scene)
    local = _engine(tmp_path / "local.db")
    assert run_inbox(local, local_inbox, tmp_path / "data-local").ok
    remote = _engine(tmp_path / "remote.db")
    before = len(server.requests())
    summary = run_inbox(
        remote, inbox, tmp_path / "data-s3", allowed_hosts=frozenset({"s3://eodata"})
    )
    status = {o.scene_id: o for o in summary.scenes}
    assert [status[s].status for s in SCENES] == ["processed", "processed", "failed"]
    assert "bucket 's3://another-bucket' is not in AGRI_IMAGERY_ALLOWED_HOSTS" in (
        status[SCENES[2]].error
    )
    assert _means(remote) == _means(local)
    counted = sum(o.http_requests or 0 for o in summary.scenes)
    assert wait_for(lambda: len(server.requests()) - before >= counted)
    fetched = server.requests()[before:]
    assert counted == len(fetched) > 0
    assert all(r.path.startswith("/eodata/") and r.status in (200, 206) for r in fetched)
    # every request carried a signature made with the configured key (AWS signature v4)
    assert all(
        r.authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIAAGRITEST/") for r in fetched
    )


# --- a full-size-like scene: only the blocks over the parcels are fetched ----------------


@contextlib.contextmanager
def _cluster(where: str, database_url: str):
    """No cluster (the serial job), or two local worker processes that cut every scene
    into bands of 1000 rows (not the blocks' 1024: the scene task puts the cut blocks
    together again)."""
    if where == "serial":
        yield None
        return
    from distributed import Client, LocalCluster

    from remote_sensing.imagery.cluster import Cluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as local,
        Client(local) as client,
    ):
        yield Cluster(client, database_url, make_engine, split_pixels=0, window_rows=1000)


def _dense_scene(folder, size=4096):
    """Red, NIR (10 m) and SCL (20 m) COGs of ``size`` px with 1024-px internal tiles, DEFLATE,
    like Earth Search's; numbers carry the baseline-04.00 offset. Returns the item (hrefs
    relative) and six parcels in the top-left 1024-px block."""
    import numpy as np
    import rasterio
    import shapely
    from affine import Affine
    from pyproj import Transformer
    from shapely.geometry import box, mapping

    rng = np.random.default_rng(16)
    transform = Affine(10, 0, 600_000, 0, -10, 2_800_020)
    coarse = rng.uniform(0, 1, (size // 256 + 2, size // 256 + 2))
    field = np.kron(coarse, np.ones((256, 256)))[:size, :size]
    red = (1400 + 400 * field + rng.integers(0, 60, (size, size))).astype("uint16")
    nir = (3500 + 1000 * field + rng.integers(0, 200, (size, size))).astype("uint16")
    scl = np.full((size // 2, size // 2), 4, dtype="uint8")
    scl[100:140, 100:160] = 9  # a cloud over part of one parcel
    profile = {
        "driver": "COG",
        "crs": "EPSG:32650",
        "count": 1,
        "compress": "DEFLATE",
        "blocksize": 1024,
        "overviews": "AUTO",
        "predictor": "YES",
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array, t in (
        ("B04", red, transform),
        ("B08", nir, transform),
        ("SCL", scl, transform * Affine.scale(2)),
    ):
        with rasterio.open(
            folder / f"{name}.tif",
            "w",
            width=array.shape[1],
            height=array.shape[0],
            dtype=array.dtype,
            transform=t,
            nodata=0,
            **profile,
        ) as dst:
            dst.write(array, 1)
    item = json.loads((SAMPLE_TILES / "scenes" / SCENES[0] / "item.json").read_text())
    item["id"] = "S2B_DENSE_T50RLN"
    for key, name in (("red", "B04"), ("nir", "B08"), ("scl", "SCL")):
        item["assets"][key]["href"] = f"{name}.tif"
    to_wgs84 = Transformer.from_crs(32650, 4326, always_xy=True).transform
    features = []
    for k, (col, row) in enumerate(
        [(60, 60), (200, 90), (400, 300), (700, 150), (120, 800), (900, 900)]
    ):
        x, y = transform * (col, row)
        square = shapely.transform(box(x, y - 300, x + 300, y), to_wgs84, interleaved=False)
        features.append(
            {
                "type": "Feature",
                "properties": {"parcel_id": f"D-{k}", "kind": "forest"},
                "geometry": mapping(square),
            }
        )
    return item, features


@pytest.mark.parametrize("where", ["serial", "cluster"])
def test_only_the_blocks_over_the_parcels_are_fetched(tmp_path, where):
    """Serially and on a Dask cluster that cuts the scene into bands of rows (each window
    task reads the blocks under parcels in its rows), a remote scene costs the blocks
    the parcels need, and gives the statistics of the same files read locally."""
    from remote_sensing.parcels import read_parcel_file

    files = tmp_path / "files"
    item, features = _dense_scene(files / "dense")
    parcels = tmp_path / "parcels.geojson"
    parcels.write_text(json.dumps({"type": "FeatureCollection", "features": features}))

    def engine(name):
        e = make_engine(f"sqlite:///{tmp_path / name}")
        upgrade(e)
        store.upsert_parcels(e, read_parcel_file(parcels).parcels)
        return e

    local_inbox = tmp_path / "local" / "dense"
    local_inbox.mkdir(parents=True)
    for name in ("B04", "B08", "SCL"):
        shutil.copy(files / "dense" / f"{name}.tif", local_inbox / f"{name}.tif")
    (local_inbox / "item.json").write_text(json.dumps(item))
    local = engine("local.db")
    assert run_inbox(local, local_inbox.parent, tmp_path / "data-local").ok

    with range_server(files, tmp_path / "nginx") as served:
        remote_item = json.loads(json.dumps(item))
        for asset in remote_item["assets"].values():
            if asset["href"].endswith(".tif"):
                asset["href"] = served.url(f"dense/{asset['href']}")
        inbox = tmp_path / "remote" / "dense"
        inbox.mkdir(parents=True)
        (inbox / "item.json").write_text(json.dumps(remote_item))
        remote = engine("remote.db")
        host = served.base_url.removeprefix("http://")
        before = len(served.requests())
        with _cluster(where, f"sqlite:///{tmp_path / 'remote.db'}") as cluster:
            summary = run_inbox(
                remote,
                inbox.parent,
                tmp_path / "data-remote",
                allowed_hosts=frozenset({host}),
                cluster=cluster,
            )
        assert summary.ok, summary.as_json()
        wait_for(lambda: len(served.requests()) > before, timeout=5)
        fetched = sum(r.bytes_sent for r in served.requests()[before:])
    local_means, remote_means = _means(local), _means(remote)
    assert remote_means.keys() == local_means.keys() and len(remote_means) == 6
    for key, (mean, valid, count) in local_means.items():
        assert remote_means[key][1:] == (valid, count)
        assert remote_means[key][0] == pytest.approx(mean, abs=1e-6)
    total = sum((files / "dense" / f"{n}.tif").stat().st_size for n in ("B04", "B08", "SCL"))
    # the parcels lie in one of 16 blocks: a fraction of the files is fetched
    print(f"{where}: fetched {fetched:,} of {total:,} bytes")
    assert 0 < fetched < 0.2 * total, (fetched, total)
    # the NDVI stored holds the parcels' block only: a claim elsewhere on this scene is
    # read from the catalogue again (claims.gather_inputs), not taken as seen and empty
    (scene,) = stored_scenes(remote, None, None)
    ndvi = Path(scene["ndvi_path"])
    assert all(holds_plot(ndvi, shape(f["geometry"])) for f in features)
    # D-0 moved about 3,000 px south-east, still on the scene
    moved = shapely.affinity.translate(shape(features[0]["geometry"]), xoff=0.3, yoff=-0.27)
    assert not holds_plot(ndvi, moved)
