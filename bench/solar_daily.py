"""The solar daily job at a fleet's size: one day of 5-minute inverter readings for N
rooftop plants in PostgreSQL, then `agri solar daily`'s work for that day end to end
(readings read, energy and quality flags, expected energy, peers, PR, availability, the
day's rows stored, alerts synced), against pvlib's ModelChain run one plant at a time.

    .venv/bin/python bench/solar_daily.py [--plants 20000] [--sample 100] [--history 0]

- The fleet: N plants of 5-50 kWp over Fujian (24.5-26.5 N, 117-119.5 E), mostly facing
  south, each with a day of readings on a clear-day course scaled by a cloudiness of its
  area, 2 % of them with something for the careful path (a lone zero, a stuck counter, a
  spike); loaded with COPY (the bench's shortcut: the ingester stores live readings).
- Ours: ``solar.daily.run_day`` then ``solar.alerts.evaluate`` for the day, in a process
  of its own (its peak memory is its own).
- Reference: each plant's expected energy for the day with pvlib's ModelChain (PVWatts
  DC and AC, the same clear sky, geometry and losses), timed on ``--sample`` plants and
  scaled to N: what computing each plant on its own would cost.
- ``--history D``: D earlier days are stored and processed first (untimed), to show that
  a day's cost does not grow with what is stored.
- ``--stored-days D``: D earlier days' results (``solar_days`` rows: an ordinary day each)
  are written straight in first, without their readings (the bench's shortcut for a
  fleet's month: a month of a 20,000-plant fleet's readings takes 15 minutes to load), so
  that the alerts read the month they read in service.
Results go to stdout and, with --out, a JSON file.
"""

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DAY = date(2026, 11, 20)
ZONE = "Asia/Shanghai"
DIRTY_SHARE = 0.02


def fleet(n: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(20261207)
    return pd.DataFrame(
        {
            "plant_id": [f"PV-{k:06d}" for k in range(n)],
            "farm_id": [f"FARM-{k // 20:05d}" for k in range(n)],
            "lat": rng.uniform(24.5, 26.5, n),
            "lon": rng.uniform(117.0, 119.5, n),
            "kwp": rng.uniform(5, 50, n).round(1),
            "tilt": rng.uniform(10, 30, n).round(0),
            "azimuth": rng.normal(180, 15, n).clip(120, 240).round(0),
        }
    ).assign(ac_kw=lambda f: f.kwp)


def load(engine, plants, days: list[date]) -> None:
    """The plants and their farms, and each day's readings, with COPY."""
    import numpy as np
    import pandas as pd
    from sqlalchemy import insert

    from solar.tables import solar_plants
    from telemetry.tables import farms

    now = datetime.now(UTC)
    with engine.begin() as c:
        c.execute(
            insert(farms),
            [
                {"farm_id": f, "geofence_geojson": "{}", "updated_at": now}
                for f in sorted(set(plants.farm_id))
            ],
        )
        rows = plants.assign(
            commissioned=date(2024, 3, 1),
            grid_connected=date(2024, 3, 15),
            serial=lambda f: "S-" + f.plant_id,
            tariff="fujian-coal-benchmark",
            updated_at=now,
        )
        c.execute(insert(solar_plants), rows.to_dict("records"))
    rng = np.random.default_rng(1)
    kwp = plants.kwp.to_numpy()
    counter = rng.uniform(1e6, 3e7, len(plants))
    for day in days:
        times = pd.date_range(pd.Timestamp(day).tz_localize(ZONE), periods=288, freq="5min")
        hour = (times.hour + times.minute / 60).to_numpy()
        course = np.clip(np.sin(np.pi * (hour - 6.5) / 11), 0, None)
        cloud = 0.4 + 0.5 * rng.random()  # one day's weather over the province
        power = np.outer(kwp * 1000 * 0.75 * cloud, course)  # plants x steps, W
        energy = np.cumsum(power * 5 / 60, axis=1) + counter[:, None]
        counter = energy[:, -1].copy()
        dirty = rng.random(len(plants)) < DIRTY_SHARE
        energy[dirty, 150] = 0.0  # a lone zero: the careful path
        stamps = [t.tz_convert("UTC").to_pydatetime() for t in times]
        raw = connection = engine.raw_connection()
        try:
            with raw.cursor() as cur:
                copy_sql = (
                    "COPY solar_readings (plant_id, observed_at, serial, lifetime_wh, power_w,"
                    " status, farm_id, gateway_id, source, received_at, raw)"
                    " FROM STDIN"
                )
                with cur.copy(copy_sql) as copy:
                    for k, (pid, farm) in enumerate(
                        zip(plants.plant_id, plants.farm_id, strict=True)
                    ):
                        serial = "S-" + pid
                        for j, at in enumerate(stamps):
                            copy.write_row(
                                (
                                    pid,
                                    at,
                                    serial,
                                    float(energy[k, j]),
                                    float(power[k, j]),
                                    4 if power[k, j] > 0 else 2,
                                    farm,
                                    "bench",
                                    "import",
                                    now,
                                    "{}",
                                )
                            )
            connection.commit()
        finally:
            raw.close()


def store_days(engine, plants, before: date, count: int) -> None:
    """``count`` ordinary days' rows per plant before ``before``, with COPY: a fleet in
    service (each plant's calibration final, carried)."""
    now = datetime.now(UTC)
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            columns = (
                "plant_id, day, energy_kwh, expected_kwh, modelled_kwh, peer_ratio,"
                " insolation_kwh_m2, daylight_h, performance_ratio, availability, serial,"
                " readings, flags, computed_at, calibration, calibration_days"
            )
            with cur.copy(f"COPY solar_days ({columns}) FROM STDIN") as copy:
                for pid, kwp in zip(plants.plant_id, plants.kwp, strict=True):
                    for k in range(1, count + 1):
                        made = 3.4 * kwp
                        copy.write_row(
                            (pid, before - timedelta(days=k), made, made * 1.02, made * 1.02,
                             1.0, 4.2, 10.6, 0.81, 0.99, "S-" + pid, 288, "[]", now,
                             0.98, 60)
                        )  # fmt: skip
        raw.commit()
    finally:
        raw.close()


def reference_per_plant(plants, sample: int) -> float:
    """Seconds per plant for pvlib's ModelChain, one plant at a time."""
    import pandas as pd
    import pvlib

    from solar import expected

    times = expected.day_times(pd.Timestamp(DAY), ZONE)
    started = time.perf_counter()
    for row in plants.head(sample).itertuples(index=False):
        location = pvlib.location.Location(row.lat, row.lon)
        weather = location.get_clearsky(times)
        system = pvlib.pvsystem.PVSystem(
            surface_tilt=row.tilt,
            surface_azimuth=row.azimuth,
            module_parameters={"pdc0": row.kwp * 1000, "gamma_pdc": expected.GAMMA_PDC},
            inverter_parameters={"pdc0": row.ac_kw * 1000 / expected.ETA_INVERTER},
            temperature_model_parameters=expected.TEMPERATURE_MODEL,
        )
        chain = pvlib.modelchain.ModelChain.with_pvwatts(system, location)
        chain.run_model(weather)
        float(chain.results.ac.sum())
    return (time.perf_counter() - started) / sample


def child(n: int, sample: int, history: int, stored_days: int = 0) -> dict:
    import pandas as pd

    from collateral import prices, solar_policy
    from collateral.db import make_engine, upgrade
    from solar import alerts, daily
    from solar.plants import list_plants
    from tests.support.databases import fresh_postgres_database

    plants = fleet(n)
    days = [DAY - timedelta(days=history - k) for k in range(history)] + [DAY]
    with fresh_postgres_database() as url:
        engine = make_engine(url)
        upgrade(engine)
        for path in prices.default_tables():
            prices.import_file(engine, path)
        started = time.perf_counter()
        load(engine, plants, days)
        if stored_days:
            store_days(engine, plants, days[0], stored_days)
        loaded_s = time.perf_counter() - started
        registered = pd.DataFrame(list_plants(engine))
        now = datetime(2026, 11, 21, 1, tzinfo=UTC)
        for day in days[:-1]:
            daily.run_day(engine, registered, day, now)
        rules = solar_policy.thresholds(engine, DAY)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        daily.run_day(engine, registered, DAY, now)
        day_s = time.perf_counter() - started
        started = time.perf_counter()
        alerts.evaluate(engine, DAY, rules, now)
        alerts_s = time.perf_counter() - started
        engine.dispose()
    per_plant = reference_per_plant(plants, min(sample, n))
    return {
        "plants": n,
        "readings": n * 288,
        "history_days": history,
        "stored_days": stored_days,
        "load_s": round(loaded_s, 1),
        "daily_s": round(day_s, 2),
        "alerts_s": round(alerts_s, 2),
        "ours_s": round(day_s + alerts_s, 2),
        "reference_s_per_plant": round(per_plant, 4),
        "reference_scaled_s": round(per_plant * n, 1),
        "speedup": round(per_plant * n / (day_s + alerts_s), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_mb": round(rss_before, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plants", type=int, default=20000)
    parser.add_argument("--sample", type=int, default=100, help="plants timed with ModelChain")
    parser.add_argument("--history", type=int, default=0, help="days stored before the day")
    parser.add_argument(
        "--stored-days", type=int, default=0, help="days' results written in before the day"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.plants, args.sample, args.history, args.stored_days)))
        return
    command = [sys.executable, __file__, "--child", "--plants", str(args.plants)]
    command += ["--sample", str(args.sample), "--history", str(args.history)]
    command += ["--stored-days", str(args.stored_days)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(done.stderr[-4000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=2))
    target = result["ours_s"] < 60 and result["speedup"] >= 20
    print(
        f"{result['plants']:,} plants, {result['readings']:,} readings: ours {result['ours_s']} s"
        f" (reference {result['reference_scaled_s']} s, {result['speedup']}x);"
        f" {'meets' if target else 'misses'} < 60 s and >= 20x"
        + ("" if math.isfinite(result["speedup"]) else "")
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
