"""What one new scene costs as the record grows: 1 month, 1, 3 and 5 years of 5-day
Sentinel-2 history over a township's parcels, where nothing happens.

    make bench            (or: .venv/bin/python bench/history_growth.py [--parcels 2000]
                                [--years 0.083,1,3,5] [--runs 3])

Per history length, in a process of its own (its peak memory is its own), on a fresh
SQLite database:
  1. the history is stored through the package's own functions: each scene's observations
     (store.record_scene_done), then every profile built by `agri profiles rebuild`'s path
     (profile_update.rebuild_peers and update_profiles);
  2. timed, ``--runs`` times, side by side:
     - ours: a new scene's observations and profiles in its transaction, as the imagery
       job stores them (record_scene_done, then profiles_while_writing: the scene's peers,
       each parcel advanced from its stored state);
     - the reference: the same scene's parcels' profiles rebuilt from every observation,
       what the job did before profiles were stored (update_profiles on them);
     - a valuation's reading of a 20-parcel loan's profiles (collateral.evidence's
       parcel_evidence, as `agri valuate` gathers it);
  3. once, after those scenes: cron's `agri revalue --all` (loans.revalue_all) over a book
     of ``--loans`` one-parcel loans, with the shipped price and policy tables.
The ratio that matters is each figure at 5 years against its figure at 1 month (target:
within 1.2x); the reference shows what the same work cost when it grew with the record.
The raster part of a scene (read, NDVI, COG, statistics) does not depend on the history
and is measured by bench/raster_pipeline.py. Results go to stdout and, with --out, a JSON
file.
"""

import argparse
import gc
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.book import ATTRIBUTES, loan_row  # noqa: E402

END = datetime(2026, 6, 30, 2, 55, 19, 24000, tzinfo=UTC)  # the new scene's day
STEP_DAYS = 5
CLEAR_SHARE = 0.35  # Fujian: about one pass in three sees a parcel clear


def _parcel_rows(count: int) -> list[dict]:
    """Small tea gardens and fir stands on a grid near Anxi (about 0.6 ha each)."""
    import shapely
    from shapely.geometry import box, mapping

    rows, side = [], 0.0008
    per_row = int(count**0.5) + 1
    for k in range(count):
        lon, lat = 117.9 + (k % per_row) * 0.001, 25.0 + (k // per_row) * 0.001
        geometry = box(lon, lat, lon + side, lat + side * 0.9)
        rows.append(
            {
                "parcel_id": f"P-{k:05d}",
                "kind": "tea_garden" if k % 2 else "forest",
                "owner": None,
                "attributes": ATTRIBUTES["tea_garden" if k % 2 else "forest"],
                "geometry_geojson": json.dumps(mapping(shapely.normalize(geometry))),
                "area_ha": 0.61,
                "updated_at": datetime.now(UTC),
            }
        )
    return rows


def _scene(parcels: list[dict], when: datetime, rng: random.Random) -> tuple[str, list[dict]]:
    """One pass: each parcel's mean NDVI on its seasonal course, clear or clouded."""
    import math

    scene_id = f"S2B_MSIL2A_{when:%Y%m%dT%H%M%S}_T50RNN"
    doy = when.timetuple().tm_yday
    rows = []
    for p in parcels:
        tea = p["kind"] == "tea_garden"
        level = (0.66 if tea else 0.8) + (0.07 if tea else 0.04) * math.sin(
            2 * math.pi * (doy - 20) / 365.25
        )
        clear = rng.random() < CLEAR_SHARE
        valid = rng.uniform(0.8, 1.0) if clear else rng.uniform(0.0, 0.3)
        rows.append(
            {
                "parcel_id": p["parcel_id"],
                "scene_id": scene_id,
                "acquired_at": when,
                "sensor": "sentinel-2b",
                "ndvi_mean": level + rng.gauss(0, 0.015) if valid > 0.05 else None,
                "pixel_count": 60,
                "valid_fraction": valid,
                "cloud_fraction": 1 - valid,
            }
        )
    return scene_id, rows


def _ledger(scene_id: str, when: datetime) -> dict:
    return {
        "scene_id": scene_id,
        "checksum": "bench",
        "source_path": f"/bench/{scene_id}",
        "acquired_at": when,
        "ndvi_path": None,
    }


def child(parcel_count: int, years: float, runs: int, loan_count: int) -> dict:
    """One history length, measured in this process."""
    from sqlalchemy import insert

    from collateral import loans, prices
    from collateral.db import make_engine, upgrade
    from collateral.evidence import parcel_evidence
    from collateral.tables import loans as loans_table
    from remote_sensing import store
    from remote_sensing.profiles import profile_update
    from remote_sensing.tables import parcels as parcels_table

    rng = random.Random(20_261_207)
    folder = Path(tempfile.mkdtemp(prefix="history-growth-"))
    engine = make_engine(f"sqlite:///{folder / 'agri.db'}")
    upgrade(engine)
    parcels = _parcel_rows(parcel_count)
    with engine.begin() as conn:
        conn.execute(insert(parcels_table), parcels)
    scenes = max(1, round(years * 365.25 / STEP_DAYS))
    started = time.perf_counter()
    for k in range(scenes, 0, -1):
        when = END - timedelta(days=STEP_DAYS * k)
        scene_id, rows = _scene(parcels, when, rng)
        with engine.begin() as conn:
            store.record_scene_done(conn, _ledger(scene_id, when), rows)
    stored_s = time.perf_counter() - started
    started = time.perf_counter()
    with engine.begin() as conn:
        profile_update.rebuild_peers(conn)
    ids = [p["parcel_id"] for p in parcels]
    failures = profile_update.update_profiles(engine, ids)
    assert not failures, failures
    built_s = time.perf_counter() - started
    # The cron job is a fresh `agri` process: the objects this one made building the
    # history are not in its heap (frozen out of the collector's sight here), and the
    # command raises the collector's threshold before its imports (collateral.cli).
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, *gc.get_threshold()[1:])
    ours, reference, valuation = [], [], []
    loan = ids[:: max(1, len(ids) // 20)][:20]
    for run in range(runs):
        when = END + timedelta(days=STEP_DAYS * run)
        scene_id, rows = _scene(parcels, when, rng)
        t0 = time.perf_counter()
        with engine.begin() as conn:
            store.record_scene_done(conn, _ledger(scene_id, when), rows)
            failed = profile_update.profiles_while_writing(conn, scene_id, ids)
        ours.append(time.perf_counter() - t0)
        assert not failed, failed
        t0 = time.perf_counter()
        assert profile_update.update_profiles(engine, ids) == {}
        reference.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for parcel_id in loan:
            parcel_evidence(engine, parcel_id, when + timedelta(hours=1), 60)
        valuation.append(time.perf_counter() - t0)
    # cron's `agri revalue --all` over a book of one-parcel loans, once, after the new scenes
    for path in prices.default_tables():
        prices.import_file(engine, path)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(loans_table),
            [loan_row(n, [ids[n]], 1000, now) for n in range(min(loan_count, len(ids)))],
        )
    t0 = time.perf_counter()
    outcomes = loans.revalue_all(engine, when + timedelta(hours=1))
    revalue_s = time.perf_counter() - t0
    assert {o["outcome"] for o in outcomes} == {"valued"}, outcomes[:3]
    with engine.connect() as c:  # the file as the rows need it (a rebuild leaves free pages)
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        c.exec_driver_sql("VACUUM")
    engine.dispose()
    database_bytes = (folder / "agri.db").stat().st_size
    return {
        "database_mb": round(database_bytes / 1e6, 1),
        "bytes_per_parcel_year": round(database_bytes / parcel_count / max(years, 1 / 12)),
        "years": years,
        "scenes": scenes,
        "parcels": parcel_count,
        "history_stored_s": round(stored_s, 2),
        "profiles_built_s": round(built_s, 2),
        "new_scene_s": [round(x, 3) for x in ours],
        "reference_rebuild_s": [round(x, 3) for x in reference],
        "valuation_20_parcels_s": [round(x, 3) for x in valuation],
        "revalue_all_s": round(revalue_s, 2),
        "loans": len(outcomes),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parcels", type=int, default=2000)
    parser.add_argument("--years", default="0.083,1,3,5", help="history lengths, in years")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loans", type=int, default=1000, help="revalue --all's book")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.parcels, float(args.years), args.runs, args.loans)))
        return
    results = []
    for years in [float(y) for y in args.years.split(",")]:
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                "--parcels",
                str(args.parcels),
                "--years",
                str(years),
                "--runs",
                str(args.runs),
                "--loans",
                str(args.loans),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            sys.exit(done.stderr[-4000:])
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        print(
            f"{years:>5} y ({result['scenes']} scenes, {result['parcels']} parcels): "
            f"new scene {_median(result['new_scene_s']):.3f} s "
            f"(rebuilding them {_median(result['reference_rebuild_s']):.3f} s), "
            f"valuation's 20 profiles {_median(result['valuation_20_parcels_s']):.3f} s, "
            f"revalue --all of {result['loans']} loans {result['revalue_all_s']} s, "
            f"peak {result['peak_rss_mb']} MB; database {result['database_mb']} MB "
            f"({result['bytes_per_parcel_year']} bytes a parcel-year); history built in "
            f"{result['history_stored_s']} + {result['profiles_built_s']} s",
            flush=True,
        )
    first = results[0]
    for result in results[1:]:
        print(
            f"{result['years']} y against {first['years']} y: "
            f"new scene {_ratio(result, first, 'new_scene_s'):.2f}x, "
            f"valuation {_ratio(result, first, 'valuation_20_parcels_s'):.2f}x, "
            f"revalue --all {result['revalue_all_s'] / first['revalue_all_s']:.2f}x, "
            f"rebuild {_ratio(result, first, 'reference_rebuild_s'):.2f}x"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


def _ratio(result: dict, first: dict, key: str) -> float:
    return _median(result[key]) / _median(first[key])


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


if __name__ == "__main__":
    main()
