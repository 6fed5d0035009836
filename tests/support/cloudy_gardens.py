"""Tea gardens and forests near Anxi seen through Fujian's clouds, for the profile tests.

Two years (2023-2024) of 5-day Sentinel-2 passes over a strip of 13 parcels (16 x 16
pixels of 10 m, 2.56 ha each) in UTM 50N. Only every ``revisit``-th day or so (jittered by
a quarter) is clear enough to see the ground (a little cloud on some parcels); every
other pass is overcast (90-100 % cloud: the rare hole may still show a parcel). Each
year one clear pass is hazy (all parcels' NDVI lower by 0.08, which a cloud mask misses).

What grows, per parcel (numbers are our assumption of a plausible 10 m NDVI, not
measurements):
- tea: 0.66 + 0.07 sin(season) and the Anxi work calendar, each garden on its own days
  every year: spring plucking about 8 April (depth 0.10), summer about 25 June (0.07),
  autumn about 28 September (0.08), each recovering with an 18-day e-fold; pruning about
  25 November (0.14) with slow winter regrowth (45-day e-fold).
- forest: 0.80 + 0.04 sin(season), nothing else.
- T-FROST: a frost on 8 March 2024: NDVI -0.25 for 40 days, back over the next 20.
- T-CUT and F-CUT: the west half cleared on 10 July 2024 (NDVI 0.22, slowly regrowing).
Every pixel has its own level (sd 0.02) and noise per pass (sd 0.015); each pass a
scene-wide offset (sd 0.01).

``simulate`` writes one NDVI GeoTIFF per pass (float32, NaN under cloud, as the imagery
job writes them) and returns the parcels and their observations, computed from the same
pixels the profile later reads back.
"""

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.features import rasterize
from shapely.geometry import box, mapping

EPSG = 32650
PIXEL = 10.0
SIDE, GAP = 16, 4  # parcel side and gap between parcels, pixels
X0, Y0 = 620_000.0, 2_772_000.0
FIRST, LAST = date(2023, 1, 2), date(2024, 12, 31)
ROUTINE_TEA = [f"T-{i}" for i in range(1, 7)]
ROUTINE_FOREST = [f"F-{i}" for i in range(1, 5)]
PARCELS = [*ROUTINE_TEA, "T-FROST", "T-CUT", *ROUTINE_FOREST, "F-CUT"]
FROST = {"parcel_id": "T-FROST", "start": date(2024, 3, 8), "days": 40, "back_in": 20}
CUT = {"parcel_ids": ("T-CUT", "F-CUT"), "date": date(2024, 7, 10)}
HAZE = 0.08
# (name, month, day, depth, recovery e-fold days): the calendar the gardens follow
TEA_WORK = (
    ("spring plucking", 4, 8, 0.10, 18.0),
    ("summer plucking", 6, 25, 0.07, 18.0),
    ("autumn plucking", 9, 28, 0.08, 18.0),
    ("pruning", 11, 25, 0.14, 45.0),
)


@dataclass(frozen=True)
class Simulation:
    parcels: dict[str, dict]  # parcel_id -> the row build_profile takes
    observations: dict[str, list[dict]]  # parcel_id -> observations as stored
    ndvi_paths: dict[str, str]  # scene_id -> NDVI GeoTIFF
    clear_passes: list[date]
    half_ha: dict[str, float]  # cleared parcels: area of the cleared half


def _kind(parcel_id: str) -> str:
    return "tea_garden" if parcel_id.startswith("T-") else "forest"


def _season(day: date, peak_doy: int) -> float:
    return float(np.sin(2 * np.pi * (day.timetuple().tm_yday - peak_doy + 91) / 365.25))


def _work_dates(rng, years) -> list[tuple[date, float, float]]:
    """One garden's own work: each operation within a week or so of the calendar."""
    shift = rng.integers(-7, 8)
    out = []
    for year in years:
        for _, month, dom, depth, efold in TEA_WORK:
            day = date(year, month, dom) + timedelta(days=int(shift + rng.integers(-4, 5)))
            out.append((day, depth * rng.uniform(0.85, 1.15), efold))
    return out


def _garden_level(parcel_id: str, day: date, work, level: float) -> float:
    if _kind(parcel_id) == "forest":
        return 0.80 + level + 0.04 * _season(day, 100)
    value = 0.66 + level + 0.07 * _season(day, 110)
    for when, depth, efold in work:
        since = (day - when).days
        if since >= 0:
            value -= depth * np.exp(-since / efold)
    if parcel_id == FROST["parcel_id"]:
        since = (day - FROST["start"]).days
        if 0 <= since < FROST["days"]:
            value -= 0.25
        elif 0 <= since - FROST["days"] < FROST["back_in"]:
            value -= 0.25 * (1 - (since - FROST["days"]) / FROST["back_in"])
    return value


def _passes(rng, revisit: float, last: date) -> tuple[list[date], set[date]]:
    """Every 5-day pass, and which of them are clear: one about every ``revisit`` days."""
    passes = [FIRST + timedelta(days=5 * i) for i in range((last - FIRST).days // 5 + 1)]
    clear, next_clear = set(), FIRST + timedelta(days=int(rng.uniform(0, revisit)))
    for day in passes:
        if day >= next_clear:
            clear.add(day)
            next_clear = day + timedelta(days=float(revisit * rng.uniform(0.75, 1.25)))
    return passes, clear


def _cloud(rng, shape, cover: float) -> np.ndarray:
    """Blobs covering about ``cover`` of the strip (True = cloud)."""
    if cover <= 0:
        return np.zeros(shape, bool)
    field = rng.standard_normal((shape[0] // 4 + 2, shape[1] // 4 + 2))
    coarse = np.kron(field, np.ones((4, 4)))[: shape[0], : shape[1]]
    return coarse > np.quantile(coarse, 1 - cover)


def simulate(out: Path, revisit: float, seed: int, last: date = LAST) -> Simulation:
    """The gardens from FIRST to ``last`` (more years: the same work calendar each year,
    one hazy pass each)."""
    rng = np.random.default_rng(seed)
    height, width = SIDE + 2 * GAP, len(PARCELS) * (SIDE + GAP) + GAP
    transform = Affine(PIXEL, 0, X0, 0, -PIXEL, Y0)
    to_wgs84 = Transformer.from_crs(EPSG, 4326, always_xy=True).transform
    masks, parcels, half_ha = {}, {}, {}
    for k, parcel_id in enumerate(PARCELS):
        col = GAP + k * (SIDE + GAP)
        x, y = X0 + col * PIXEL, Y0 - GAP * PIXEL
        square = box(x, y - SIDE * PIXEL, x + SIDE * PIXEL, y)
        masks[parcel_id] = rasterize([square], (height, width), transform=transform) > 0
        wgs84 = shapely.transform(square, lambda x, y: to_wgs84(x, y), interleaved=False)
        parcels[parcel_id] = {
            "parcel_id": parcel_id,
            "kind": _kind(parcel_id),
            "area_ha": square.area / 10_000,
            "geometry_geojson": json.dumps(mapping(wgs84)),
        }
        if parcel_id in CUT["parcel_ids"]:
            half_ha[parcel_id] = square.area / 2 / 10_000
    cut_px = np.zeros((height, width), bool)
    for parcel_id in CUT["parcel_ids"]:
        cols = np.flatnonzero(masks[parcel_id].any(axis=0))
        cut_px[:, cols[: len(cols) // 2]] = True
    cut_px &= np.logical_or.reduce([masks[p] for p in CUT["parcel_ids"]])
    levels = {p: rng.normal(0, 0.02) for p in PARCELS}
    years = tuple(range(FIRST.year, last.year + 1))
    work = {p: _work_dates(rng, (FIRST.year - 1, *years)) for p in PARCELS}
    pixel_level = rng.normal(0, 0.02, (height, width))
    passes, clear = _passes(rng, revisit, last)
    hazy = {
        sorted(d for d in clear if d.year == year)[len([d for d in clear if d.year == year]) // 2]
        for year in years
    }
    observations: dict[str, list[dict]] = {p: [] for p in PARCELS}
    ndvi_paths = {}
    for day in passes:
        ndvi = pixel_level + rng.normal(0, 0.015, (height, width)) + rng.normal(0, 0.01)
        for parcel_id in PARCELS:
            ndvi[masks[parcel_id]] += _garden_level(
                parcel_id, day, work[parcel_id], levels[parcel_id]
            )
        if day >= CUT["date"]:
            regrowth = 0.1 * min((day - CUT["date"]).days / 200, 1.0)
            ndvi[cut_px] = 0.22 + regrowth + pixel_level[cut_px]
        if day in hazy:
            ndvi -= HAZE
        cover = rng.uniform(0.0, 0.15) if day in clear else rng.uniform(0.9, 1.0)
        ndvi[_cloud(rng, ndvi.shape, cover)] = np.nan
        scene_id = f"SIM{int(revisit):02d}_{day:%Y%m%d}"
        path = out / f"{scene_id}_ndvi.tif"
        _write(path, ndvi.astype(np.float32), transform)
        ndvi_paths[scene_id] = str(path)
        acquired = datetime(day.year, day.month, day.day, 2, 55, tzinfo=UTC)
        for parcel_id in PARCELS:
            values = ndvi[masks[parcel_id]]
            seen = np.isfinite(values)
            observations[parcel_id].append(
                {
                    "scene_id": scene_id,
                    "acquired_at": acquired,
                    "ndvi_mean": float(values[seen].mean()) if seen.any() else None,
                    "valid_fraction": float(seen.mean()),
                    "pixel_count": int(values.size),
                }
            )
    return Simulation(parcels, observations, ndvi_paths, sorted(clear), half_ha)


def peer_rows(sim: Simulation, min_valid_fraction: float, as_of: datetime | None = None):
    """(kind, scene_id, acquired_at, ndvi_mean) of clear observations, as the store gives."""
    return [
        (sim.parcels[p]["kind"], o["scene_id"], o["acquired_at"], o["ndvi_mean"])
        for p, observations in sim.observations.items()
        for o in observations
        if o["ndvi_mean"] is not None
        and o["valid_fraction"] >= min_valid_fraction
        and (as_of is None or o["acquired_at"] <= as_of)
    ]


def _write(path: Path, array: np.ndarray, transform: Affine) -> None:
    profile = {
        "driver": "GTiff",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": "float32",
        "crs": f"EPSG:{EPSG}",
        "transform": transform,
        "nodata": float("nan"),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def insert_parcels(engine, sim: Simulation) -> None:
    """The simulation's parcels as stored parcels."""
    from sqlalchemy import insert

    from remote_sensing.tables import parcels

    now = datetime.now(UTC)
    rows = [{**p, "owner": None, "attributes": {}, "updated_at": now} for p in sim.parcels.values()]
    with engine.begin() as conn:
        conn.execute(insert(parcels), rows)


def scenes_of(sim: Simulation) -> list[tuple[str, datetime, list[dict]]]:
    """(scene id, acquired_at, its observation rows as stored) in time order."""
    by_scene: dict[str, list[dict]] = {}
    for parcel_id, observations in sim.observations.items():
        for o in observations:
            by_scene.setdefault(o["scene_id"], []).append(
                {
                    "parcel_id": parcel_id,
                    "scene_id": o["scene_id"],
                    "acquired_at": o["acquired_at"],
                    "sensor": "sentinel-2a",
                    "ndvi_mean": o["ndvi_mean"],
                    "pixel_count": o["pixel_count"],
                    "valid_fraction": o["valid_fraction"],
                    "cloud_fraction": 1.0 - o["valid_fraction"],
                }
            )
    return sorted(
        ((sid, rows[0]["acquired_at"], rows) for sid, rows in by_scene.items()),
        key=lambda s: (s[1], s[0]),
    )


def ledger_of(sim: Simulation, scene_id: str, acquired_at: datetime) -> dict:
    """The imagery ledger's row of a simulated scene (its NDVI file is the COG)."""
    return {
        "scene_id": scene_id,
        "checksum": "sim",
        "source_path": sim.ndvi_paths[scene_id],
        "acquired_at": acquired_at,
        "ndvi_path": sim.ndvi_paths[scene_id],
    }


def store_scene_by_scene(engine, sim: Simulation, scenes) -> dict[str, str]:
    """Each scene in its own transaction, its profiles advanced inside it, as the imagery
    job does (profile_update.profiles_while_writing); parcel id -> error."""
    from remote_sensing import store
    from remote_sensing.profiles.profile_update import profiles_while_writing

    failures: dict[str, str] = {}
    for scene_id, acquired_at, rows in scenes:
        with engine.begin() as conn:
            store.record_scene_done(conn, ledger_of(sim, scene_id, acquired_at), rows)
            changed = sorted({r["parcel_id"] for r in rows})
            failures.update(profiles_while_writing(conn, scene_id, changed))
    return failures
