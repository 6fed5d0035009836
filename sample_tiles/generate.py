"""Regenerate the sample study area near Anxi, Fujian, byte for byte.

    python sample_tiles/generate.py [OUT_DIR]   (default: the folder of this script)

A 5 km x 5 km area in UTM 50N (EPSG:32650) at 10 m, two growing years (2023-2024) of
Sentinel-2 L2A-like scenes as STAC items with COG assets: B04 (red) and B08 (nir) as
uint16 with the baseline-04.00 offset (DN = reflectance * 10000 + 1000, 0 = no data)
and SCL as uint8 at 20 m with real class codes.

Everything is drawn from one seeded generator, so the same code and library versions
give the same bytes. ``truth.json`` records what was planted: the clear-cut forest, the
frost-damaged tea garden, each scene's cloud cover, the almost-cloudy and swath-edge
scenes. The reflectances are synthetic; the seasonality follows published patterns for
evergreen subtropical forest and tea (plucking in spring, summer and autumn; pruning in
winter), not measurements.
"""

import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.features import rasterize
from scipy.ndimage import gaussian_filter
from shapely.geometry import MultiPolygon, Polygon, mapping

SEED = 20230104
EPSG = 32650
X0, Y0 = 618_000.0, 2_775_000.0  # top-left corner, UTM 50N
SIZE = 500  # pixels at 10 m
RES = 10.0
TRANSFORM = Affine(RES, 0, X0, 0, -RES, Y0)
SCL_TRANSFORM = Affine(2 * RES, 0, X0, 0, -2 * RES, Y0)

# land cover codes of the synthetic map
FOREST, TEA, SHRUB, BARE, WATER, CROP = 1, 2, 3, 4, 5, 6
SCL_FOR_COVER = {FOREST: 4, TEA: 4, SHRUB: 4, BARE: 5, WATER: 6, CROP: 4}
LAND_COVER_CODES = {
    FOREST: "forest",
    TEA: "tea",
    SHRUB: "shrub",
    BARE: "bare",
    WATER: "water",
    CROP: "cropland",
}

FIRST_SCENE = date(2023, 1, 6)
REVISIT_DAYS = 25  # five Sentinel-2 revisits between the scenes we keep
N_SCENES = 30
ALMOST_CLOUDY = 13  # index of the scene that is ~95 % cloud
SWATH_EDGE = 8  # index of the scene that only partly covers the area
CLEAR_CUT = {"parcel_id": "F-08", "date": date(2024, 5, 8), "share": 0.6}
FROST = {"parcel_id": "T-05", "start": date(2024, 1, 22), "recovered": date(2024, 4, 12)}

# Landsat 8/9 Collection 2 Level-2 scenes of the same area at 30 m, between the
# Sentinel-2 dates (a separate generator, so the Sentinel-2 bytes do not change).
LANDSAT_SEED = SEED + 8
LANDSAT_RES = 30.0
LANDSAT_SIZE = 167  # 5,010 m: the 10 m area padded by one 10 m row/column
LANDSAT_TRANSFORM = Affine(LANDSAT_RES, 0, X0, 0, -LANDSAT_RES, Y0)
LANDSAT_FIRST = date(2023, 1, 20)
LANDSAT_REVISIT_DAYS = 64  # four 16-day revisits between the scenes we keep
N_LANDSAT = 12
# HLS v2.0 bandpass line, OLI = slope * MSI + offset (Sentinel-2A): what OLI would see of
# the same surface. The loader inverts it.
OLI_FROM_MSI = {"red": (0.9765, 0.0009), "nir": (0.9983, -0.0001)}
QA_CLEAR = 0b0101_0101_0100_0000  # bits 6 (clear), 8/10/12/14 (low confidences)
QA_BITS = {"water": 7, "cloud": 3, "dilated_cloud": 1, "cloud_shadow": 4}

TEA_VARIETIES = ["Tieguanyin", "Huangjingui", "Benshan", "Maoxie"]
SPECIES = ["chinese_fir", "masson_pine", "broadleaf_evergreen", "eucalyptus"]
AGE_CLASSES = ["young", "middle", "near_mature", "mature"]
OWNERS = [
    "Chen Wei",
    "Lin Fang",
    "Huang Min",
    "Zhang Lei",
    "Wang Hui",
    "Liu Yang",
    "Xie Ping",
    "Wu Jun",
    "Zheng Li",
    "Su Qiang",
    "Guo Hong",
    "Ke Jian",
]


TO_WGS84 = Transformer.from_crs(EPSG, 4326, always_xy=True)


def _reproject(geom):
    """UTM 50N geometry to WGS84 (lon, lat)."""
    return shapely.transform(
        geom, lambda xy: np.column_stack(TO_WGS84.transform(xy[:, 0], xy[:, 1]))
    )


def px(col: float, row: float) -> tuple[float, float]:
    """Pixel (col, row) of the 10 m grid to UTM coordinates."""
    return X0 + col * RES, Y0 - row * RES


def quad(rng, cx, cy, w, h, angle_deg) -> Polygon:
    """A slightly irregular rotated quadrilateral centred at pixel (cx, cy), w x h pixels."""
    a = np.deg2rad(angle_deg)
    corners = []
    for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        dx = sx * w / 2 * rng.uniform(0.9, 1.1)
        dy = sy * h / 2 * rng.uniform(0.9, 1.1)
        col = cx + dx * np.cos(a) - dy * np.sin(a)
        row = cy + dx * np.sin(a) + dy * np.cos(a)
        corners.append(px(col, row))
    return Polygon(corners)


def make_parcels(rng) -> list[dict]:
    """About 30 parcels on a 6 x 5 layout, with the special cases the tests need."""
    parcels = []
    tea_n = forest_n = 0
    for r in range(5):
        for c in range(6):
            cx, cy = 45 + c * 80 + rng.uniform(-8, 8), 45 + r * 80 + rng.uniform(-8, 8)
            is_tea = (r + c) % 2 == 0
            angle = rng.uniform(-25, 25)
            if is_tea:
                tea_n += 1
                pid = f"T-{tea_n:02d}"
                geom = quad(rng, cx, cy, rng.uniform(14, 24), rng.uniform(11, 20), angle)
            else:
                forest_n += 1
                pid = f"F-{forest_n:02d}"
                geom = quad(rng, cx, cy, rng.uniform(30, 46), rng.uniform(26, 40), angle)
            parcels.append(
                {"parcel_id": pid, "kind": "tea_garden" if is_tea else "forest", "geometry": geom}
            )
    by_id = {p["parcel_id"]: p for p in parcels}
    # A tea garden in two pieces (MultiPolygon).
    t2 = by_id["T-02"]
    b = t2["geometry"].bounds
    second = shapely.affinity.translate(
        shapely.affinity.scale(t2["geometry"], 0.6, 0.6), xoff=0, yoff=-(b[3] - b[1]) * 1.1
    )
    t2["geometry"] = MultiPolygon([t2["geometry"], second])
    # A forest with a pond in the middle (polygon with a hole).
    f1 = by_id["F-01"]["geometry"]
    hole = shapely.affinity.scale(f1, 0.35, 0.35)
    by_id["F-01"]["geometry"] = Polygon(f1.exterior.coords, [hole.exterior.coords[::-1]])
    by_id["F-01"]["pond"] = hole
    # A forest running off the east edge of the scene footprint.
    east = [p for p in parcels if p["kind"] == "forest" and p["geometry"].centroid.x > X0 + 4300]
    edge = east[0]
    edge["geometry"] = quad(rng, 488, (Y0 - edge["geometry"].centroid.y) / RES, 40, 30, 5)
    # A tiny tea plot smaller than one pixel (6 m x 6 m), off the pixel grid.
    tiny_x, tiny_y = px(262.3, 243.6)
    parcels.append(
        {
            "parcel_id": "T-99",
            "kind": "tea_garden",
            "geometry": shapely.box(tiny_x, tiny_y - 6, tiny_x + 6, tiny_y),
        }
    )
    for p in parcels:
        if p["kind"] == "tea_garden":
            p["owner"] = OWNERS[int(rng.integers(len(OWNERS)))]
            p["attributes"] = {
                "variety": TEA_VARIETIES[int(rng.integers(4))],
                "planted_year": int(rng.integers(1995, 2018)),
            }
        else:
            p["owner"] = OWNERS[int(rng.integers(len(OWNERS)))]
            p["attributes"] = {
                "species_group": SPECIES[int(rng.integers(4))],
                "age_class": AGE_CLASSES[int(rng.integers(4))],
                "stand_volume_m3_per_ha": int(rng.integers(60, 260)),
            }
    return parcels


def smooth_noise(rng, shape, sigma) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / field.std()


def land_cover(rng, parcels) -> np.ndarray:
    """Background of forest, shrub, a village, a reservoir and the valley's rice fields;
    parcels drawn on top."""
    base = smooth_noise(rng, (SIZE, SIZE), 18)
    cover = np.where(base > 0.9, SHRUB, FOREST).astype(np.uint8)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    cover[(rows - 430) ** 2 / 30**2 + (cols - 70) ** 2 / 55**2 < 1] = WATER  # reservoir
    cover[(rows > 200) & (rows < 235) & (cols > 205) & (cols < 250)] = BARE  # village
    cover[(rows > 418) & (rows < 470) & (cols > 150) & (cols < 290)] = CROP  # rice fields
    cover[np.abs(rows - (0.35 * cols + 180)) < 1.5] = BARE  # a road
    for p in parcels:
        burned = rasterize([p["geometry"]], (SIZE, SIZE), transform=TRANSFORM, all_touched=True)
        cover[burned > 0] = TEA if p["kind"] == "tea_garden" else FOREST
        if "pond" in p:
            pond = rasterize([p["pond"]], (SIZE, SIZE), transform=TRANSFORM)
            cover[pond > 0] = WATER
    return cover


def tea_ndvi(day: date) -> float:
    """Evergreen tea: green most of the year, dips after each plucking and the pruning."""
    doy = day.timetuple().tm_yday
    value = 0.66 + 0.07 * np.sin(2 * np.pi * (doy - 110) / 365)
    for year in (day.year - 1, day.year):
        for month, dom, depth in ((4, 10, 0.09), (6, 25, 0.07), (9, 25, 0.07), (12, 5, 0.13)):
            since = (day - date(year, month, dom)).days
            if since >= 0:
                value -= depth * np.exp(-since / 22)
    return float(value)


def forest_ndvi(day: date) -> float:
    doy = day.timetuple().tm_yday
    return float(0.79 + 0.05 * np.sin(2 * np.pi * (doy - 100) / 365))


def shrub_ndvi(day: date) -> float:
    doy = day.timetuple().tm_yday
    return float(0.55 + 0.15 * np.sin(2 * np.pi * (doy - 105) / 365))


def rice_ndvi(day: date) -> float:
    """Double-cropped rice, as in Fujian's valleys: fallow in winter, early rice planted in
    April and cut in mid-July, late rice planted in late July and cut in early November."""
    doy = day.timetuple().tm_yday
    early = 0.55 * np.exp(-(((doy - 150) / 28) ** 2))
    late = 0.52 * np.exp(-(((doy - 265) / 25) ** 2))
    return float(0.22 + early + late)


def frost_loss(day: date) -> float:
    """NDVI lost to the frost: sudden, then recovering linearly until FROST['recovered']."""
    since = (day - FROST["start"]).days
    span = (FROST["recovered"] - FROST["start"]).days
    return 0.0 if since < 0 or since >= span else 0.3 * (1 - since / span)


def clear_cut_ndvi(day: date) -> float:
    since = (day - CLEAR_CUT["date"]).days
    return 0.2 + 0.12 * min(since / 200, 1.0)


def reflectances(ndvi: np.ndarray, water: np.ndarray, bare: np.ndarray):
    """Red and NIR surface reflectance for a target NDVI, per cover type."""
    red = np.clip(0.085 - 0.065 * ndvi, 0.02, 0.2)
    nir = red * (1 + ndvi) / (1 - ndvi)
    red = np.where(bare, 0.16, red)
    nir = np.where(bare, 0.21, nir)
    red = np.where(water, 0.045, red)
    nir = np.where(water, 0.022, nir)
    return red, nir


def surface(day: date, cover, vigour, cut_px, frost_px):
    """Cloud-free red and NIR surface reflectance of the whole area on ``day`` (10 m)."""
    ndvi = (
        np.select(
            [cover == TEA, cover == FOREST, cover == SHRUB, cover == CROP],
            [tea_ndvi(day), forest_ndvi(day), shrub_ndvi(day), rice_ndvi(day)],
            0.1,
        )
        + vigour
    )
    if day >= CLEAR_CUT["date"]:
        ndvi = np.where(cut_px, clear_cut_ndvi(day) + vigour, ndvi)
    ndvi = np.where(frost_px & (cover == TEA), ndvi - frost_loss(day), ndvi)
    return reflectances(np.clip(ndvi, -0.9, 0.95), cover == WATER, cover == BARE)


def scene_dates() -> list[date]:
    return [FIRST_SCENE + timedelta(days=REVISIT_DAYS * i) for i in range(N_SCENES)]


def cloud_masks(rng, index: int):
    """Cloud, thin cirrus and shadow masks at 20 m, and the target cloud cover."""
    half = SIZE // 2
    if index == ALMOST_CLOUDY:
        cover = 0.95
    else:
        cover = float(rng.choice([0.0, 0.0, 0.0, 0.05, 0.12, 0.25, 0.4]))
    field = smooth_noise(rng, (half, half), 9)
    if cover == 0.0:
        cloud = np.zeros((half, half), bool)
    else:
        cloud = field > np.quantile(field, 1 - cover)
    cirrus = (field > np.quantile(field, 1 - min(cover + 0.04, 1.0))) & ~cloud if cover else cloud
    shadow = np.roll(np.roll(cloud, -12, axis=0), -9, axis=1) & ~cloud & ~cirrus
    return cloud, cirrus, shadow, cover


def write_cog(path: Path, array: np.ndarray, transform: Affine, nodata) -> None:
    profile = {
        "driver": "COG",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": f"EPSG:{EPSG}",
        "transform": transform,
        "nodata": nodata,
        "compress": "DEFLATE",
        "predictor": "YES",
        "blocksize": 256,
        "overviews": "NONE",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def footprint_wgs84(no_data_cols: int) -> Polygon:
    xmin, ymax = px(no_data_cols, 0)
    xmax, ymin = px(SIZE, SIZE)
    return _reproject(shapely.box(xmin, ymin, xmax, ymax))


def cog_asset(name: str, common: str | None, raster: dict) -> dict:
    """A band file beside the item, as a STAC asset with its raster:bands entry."""
    asset = {
        "href": f"./{name}.tif",
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "roles": ["data"],
        "raster:bands": [raster],
    }
    if common:
        asset["eo:bands"] = [{"name": name, "common_name": common}]
    return asset


def stac_item(scene_id: str, when: datetime, cloud_cover: float, footprint: Polygon) -> dict:
    def band(name, common, res, dtype, scaled):
        raster = {"nodata": 0, "data_type": dtype, "spatial_resolution": res}
        if scaled:
            raster.update(scale=0.0001, offset=-0.1)
        return cog_asset(name, common, raster)

    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
        ],
        "id": scene_id,
        "bbox": [round(v, 7) for v in footprint.bounds],
        "geometry": _rounded(mapping(footprint)),
        "properties": {
            "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "platform": "sentinel-2a" if scene_id.startswith("S2A") else "sentinel-2b",
            "constellation": "sentinel-2",
            "eo:cloud_cover": round(100 * cloud_cover, 2),
            "s2:processing_baseline": "05.09",
            "proj:epsg": EPSG,
            "description": "synthetic sample scene (agri-collateral sample_tiles)",
        },
        "assets": {
            "red": band("B04", "red", 10, "uint16", True),
            "nir": band("B08", "nir", 10, "uint16", True),
            "scl": band("SCL", None, 20, "uint8", False),
        },
        "links": [],
    }


def _rounded(obj):
    if isinstance(obj, float):
        return round(obj, 8)
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    return obj


def landsat_item(scene_id: str, when: datetime, cloud_cover: float) -> dict:
    def band(name, common, dtype, scaled):
        raster = {"nodata": 0 if scaled else 1, "data_type": dtype, "spatial_resolution": 30}
        if scaled:
            raster.update(scale=2.75e-05, offset=-0.2)
        return cog_asset(name, common, raster)

    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
        "id": scene_id,
        "bbox": [round(v, 7) for v in footprint_wgs84(0).bounds],
        "geometry": _rounded(mapping(footprint_wgs84(0))),
        "properties": {
            "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "platform": "landsat-8" if scene_id.startswith("LC08") else "landsat-9",
            "eo:cloud_cover": round(100 * cloud_cover, 2),
            "landsat:wrs_path": "119",
            "landsat:wrs_row": "042",
            "landsat:correction": "L2SP",
            "proj:epsg": EPSG,
            "description": "synthetic sample scene (agri-collateral sample_tiles)",
        },
        "assets": {
            "red": band("SR_B4", "red", "uint16", True),
            "nir08": band("SR_B5", "nir08", "uint16", True),
            "qa_pixel": band("QA_PIXEL", None, "uint16", False),
        },
        "links": [],
    }


def landsat_scenes(out: Path, cover, vigour, cut_px, frost_px) -> list[dict]:
    """Landsat C2 L2 scenes of the area: the same surface seen at 30 m (3 x 3 means of the
    10 m reflectance) through OLI's bandpass, with their own clouds and QA_PIXEL bits."""
    rng = np.random.default_rng(LANDSAT_SEED)
    pad = LANDSAT_SIZE * 3 - SIZE

    def at_30m(array):
        padded = np.pad(array, ((0, pad), (0, pad)), mode="edge")
        return padded.reshape(LANDSAT_SIZE, 3, LANDSAT_SIZE, 3).mean(axis=(1, 3))

    water = at_30m((cover == WATER).astype(float)) > 0.5
    truth = []
    for i in range(N_LANDSAT):
        day = LANDSAT_FIRST + timedelta(days=LANDSAT_REVISIT_DAYS * i)
        platform = "LC08" if i % 2 == 0 else "LC09"
        scene_id = f"{platform}_L2SP_119042_{day:%Y%m%d}_{day:%Y%m%d}_02_T1_sample"
        red, nir = (at_30m(band) for band in surface(day, cover, vigour, cut_px, frost_px))
        cloud_cover = float(rng.choice([0.0, 0.0, 0.0, 0.1, 0.3]))
        field = smooth_noise(rng, (LANDSAT_SIZE, LANDSAT_SIZE), 4)
        cloud = field > np.quantile(field, 1 - cloud_cover) if cloud_cover else field > 99
        dilated = (np.roll(cloud, 1, 0) | np.roll(cloud, 1, 1) | np.roll(cloud, -1, 0)) & ~cloud
        shadow = np.roll(np.roll(cloud, -4, axis=0), -3, axis=1) & ~cloud & ~dilated
        red = np.where(cloud, 0.42, np.where(shadow, red * 0.25, red))
        nir = np.where(cloud, 0.46, np.where(shadow, nir * 0.3, nir))
        qa = np.full((LANDSAT_SIZE, LANDSAT_SIZE), QA_CLEAR, dtype=np.uint16)
        for mask, bit in (
            (water, "water"),
            (shadow, "cloud_shadow"),
            (dilated, "dilated_cloud"),
            (cloud, "cloud"),
        ):
            qa[mask] = (qa[mask] & ~np.uint16(1 << 6)) | np.uint16(1 << QA_BITS[bit])
        qa[water & ~cloud & ~shadow & ~dilated] |= np.uint16(1 << 6)  # clear water
        folder = out / "landsat" / scene_id
        folder.mkdir(parents=True, exist_ok=True)
        for name, msi, band in (("SR_B4", red, "red"), ("SR_B5", nir, "nir")):
            slope, offset = OLI_FROM_MSI[band]
            dn = np.clip(np.rint((slope * msi + offset + 0.2) / 2.75e-5), 1, 65535)
            write_cog(folder / f"{name}.tif", dn.astype(np.uint16), LANDSAT_TRANSFORM, 0)
        write_cog(folder / "QA_PIXEL.tif", qa, LANDSAT_TRANSFORM, 1)
        when = datetime(day.year, day.month, day.day, 2, 40, 11, tzinfo=UTC)
        item = landsat_item(scene_id, when, cloud_cover)
        (folder / "item.json").write_text(json.dumps(item, indent=2) + "\n")
        truth.append({"scene_id": scene_id, "date": day.isoformat(), "cloud_cover": cloud_cover})
    return truth


def main(out: Path) -> None:
    rng = np.random.default_rng(SEED)
    parcels = make_parcels(rng)
    cover = land_cover(rng, parcels)
    # The land cover that was planted, for training and testing the land-cover model
    # (`agri landcover train`): codes in LAND_COVER_CODES, 0 nowhere.
    write_cog(out / "landcover.tif", cover, TRANSFORM, 0)
    by_id = {p["parcel_id"]: p for p in parcels}

    # The clear-cut: the western share of F-03, by area.
    f3 = by_id[CLEAR_CUT["parcel_id"]]["geometry"]
    xmin, ymin, xmax, ymax = f3.bounds
    lo, hi = xmin, xmax
    for _ in range(60):  # bisect the cut line to hit the planned share of the area
        mid = (lo + hi) / 2
        share = f3.intersection(shapely.box(xmin, ymin, mid, ymax)).area / f3.area
        lo, hi = (mid, hi) if share < CLEAR_CUT["share"] else (lo, mid)
    cut_poly = f3.intersection(shapely.box(xmin, ymin, (lo + hi) / 2, ymax))
    cut_px = rasterize([cut_poly], (SIZE, SIZE), transform=TRANSFORM) > 0
    frost_px = (
        rasterize(
            [by_id[FROST["parcel_id"]]["geometry"]],
            (SIZE, SIZE),
            transform=TRANSFORM,
            all_touched=True,
        )
        > 0
    )

    # Within-field vigour texture, fixed over time, at 20 m so the sample stays small.
    vigour = np.kron(0.012 * smooth_noise(rng, (SIZE // 2, SIZE // 2), 4), np.ones((2, 2)))
    scl_cover = np.vectorize(SCL_FOR_COVER.get, otypes=[np.uint8])(cover[::2, ::2])

    scenes_dir = out / "scenes"
    truth_scenes = []
    for i, day in enumerate(scene_dates()):
        platform = "S2A" if i % 2 == 0 else "S2B"
        scene_id = f"{platform}_MSIL2A_{day:%Y%m%d}_T50RLN_sample"
        red, nir = surface(day, cover, vigour, cut_px, frost_px)

        cloud20, cirrus20, shadow20, cloud_cover = cloud_masks(rng, i)
        up = np.ones((2, 2), bool)
        cloud, cirrus, shadow = (np.kron(m, up) for m in (cloud20, cirrus20, shadow20))
        # What the sensor sees under weather: bright cloud, hazy cirrus, dark shadow.
        red = np.where(cloud, 0.42 + 0.05 * vigour, red)
        nir = np.where(cloud, 0.46 + 0.05 * vigour, nir)
        red = np.where(cirrus, red + 0.12, red)
        nir = np.where(cirrus, nir + 0.08, nir)
        red = np.where(shadow, red * 0.25, red)
        nir = np.where(shadow, nir * 0.3, nir)

        scl = scl_cover.copy()
        scl[shadow20] = 3
        scl[cirrus20] = 10
        scl[cloud20] = 9
        scl[cloud20 & (np.roll(~cloud20, 1, 0) | np.roll(~cloud20, 1, 1))] = 8
        # No per-pixel sensor noise: it would triple the size of the committed sample.
        red_dn = np.clip(np.rint(red * 10000 + 1000), 1, 65535).astype(np.uint16)
        nir_dn = np.clip(np.rint(nir * 10000 + 1000), 1, 65535).astype(np.uint16)
        if i == 20:  # a few saturated pixels on the village roofs
            sat = (cover == BARE) & (vigour > 0.05)
            red_dn[sat] = 65535
            scl[sat[::2, ::2]] = 1
        no_data_cols = 0
        if i == SWATH_EDGE:  # the orbit's swath edge: the western 40 % was not imaged
            no_data_cols = 200
            red_dn[:, :no_data_cols] = 0
            nir_dn[:, :no_data_cols] = 0
            scl[:, : no_data_cols // 2] = 0

        when = datetime(day.year, day.month, day.day, 2, 55, 19, tzinfo=UTC)
        folder = scenes_dir / scene_id
        folder.mkdir(parents=True, exist_ok=True)
        write_cog(folder / "B04.tif", red_dn, TRANSFORM, 0)
        write_cog(folder / "B08.tif", nir_dn, TRANSFORM, 0)
        write_cog(folder / "SCL.tif", scl, SCL_TRANSFORM, 0)
        item = stac_item(scene_id, when, cloud_cover, footprint_wgs84(no_data_cols))
        (folder / "item.json").write_text(json.dumps(item, indent=2) + "\n")
        truth_scenes.append(
            {
                "scene_id": scene_id,
                "date": day.isoformat(),
                "cloud_cover": cloud_cover,
                "swath_edge": i == SWATH_EDGE,
                "almost_cloudy": i == ALMOST_CLOUDY,
            }
        )

    features = []
    for p in parcels:
        props = {
            "parcel_id": p["parcel_id"],
            "kind": p["kind"],
            "owner": p["owner"],
            **p["attributes"],
        }
        geom = _rounded(mapping(_reproject(p["geometry"])))
        features.append({"type": "Feature", "properties": props, "geometry": geom})
    collection = {
        "type": "FeatureCollection",
        "name": "anxi_sample_parcels",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        "features": features,
    }
    (out / "parcels.geojson").write_text(json.dumps(collection, indent=1) + "\n")

    truth = {
        "description": "What sample_tiles/generate.py planted; areas in ha on the UTM 50N grid.",
        "crs": f"EPSG:{EPSG}",
        "grid": {"x0": X0, "y0": Y0, "resolution_m": RES, "size_px": SIZE},
        "clear_cut": {
            "parcel_id": CLEAR_CUT["parcel_id"],
            "date": CLEAR_CUT["date"].isoformat(),
            "affected_ha": round(cut_poly.area / 10_000, 4),
            "parcel_ha": round(f3.area / 10_000, 4),
            "geometry_wgs84": _rounded(mapping(_reproject(cut_poly))),
        },
        "frost": {
            "parcel_id": FROST["parcel_id"],
            "start": FROST["start"].isoformat(),
            "recovered": FROST["recovered"].isoformat(),
            "max_ndvi_loss": 0.3,
        },
        "special_parcels": {
            "multipolygon": "T-02",
            "with_hole": "F-01",
            "tiny": "T-99",
            "partly_outside": next(
                p["parcel_id"] for p in parcels if p["geometry"].bounds[2] > X0 + SIZE * RES
            ),
        },
        "scenes": truth_scenes,
        "landsat_scenes": landsat_scenes(out, cover, vigour, cut_px, frost_px),
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
