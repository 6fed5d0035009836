"""A new scene's profile work finds its rows by index on PostgreSQL: every statement the
imagery job's in-transaction step sends (the scene's peers, each parcel's newest dates,
its window, its season table, its observations since, the writes) is explained on a
database that holds years of other parcels' history (analysed, so the planner knows the
tables' sizes), and none reads a growing table (dates, observations, season tables,
parcels and dates) from end to end (dropping the index on a date's scene, for one, makes
it fail)."""

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from shapely.geometry import box, mapping
from sqlalchemy import event, insert

from collateral.db import make_engine, upgrade
from remote_sensing.tables import observations, parcels, profile_dates, scene_peers
from tests.support import cloudy_gardens as cg
from tests.support.databases import empty_all_tables

pytestmark = pytest.mark.postgres
# per parcel and date or year (scene_peers has a row per scene and kind: a few hundred a
# year, which the planner rightly reads whole while it is that small)
GROWING = ("profile_dates", "observations", "season_tables")
OTHERS, YEARS = 200, 4  # other parcels and years of 5-day history beside the gardens


def _history_of_others(engine) -> None:
    """Years of stored observations, profile dates and peers of other parcels."""
    start = datetime(2018, 1, 1, 2, 55, tzinfo=UTC)
    days = [start + timedelta(days=5 * k) for k in range(YEARS * 73)]
    now = datetime.now(UTC)
    square = json.dumps(mapping(box(118, 25, 118.001, 25.001)))
    with engine.begin() as conn:
        conn.execute(
            insert(parcels),
            [
                {
                    "parcel_id": f"O-{k}",
                    "kind": "forest",
                    "owner": None,
                    "attributes": {},
                    "geometry_geojson": square,
                    "area_ha": 1.0,
                    "updated_at": now,
                }
                for k in range(OTHERS)
            ],
        )
        for n, when in enumerate(days):
            scene = f"OLD_{when:%Y%m%d}"
            conn.execute(
                insert(observations),
                [
                    {
                        "parcel_id": f"O-{k}",
                        "scene_id": scene,
                        "acquired_at": when,
                        "ndvi_mean": 0.8,
                        "pixel_count": 100,
                        "valid_fraction": 1.0,
                        "cloud_fraction": 0.0,
                    }
                    for k in range(OTHERS)
                ],
            )
            conn.execute(
                insert(profile_dates),
                [
                    {
                        "parcel_id": f"O-{k}",
                        "seq": n,
                        "scene_id": scene,
                        "acquired_at": when,
                        "ndvi": 0.8,
                        "weight": 1.0,
                        "outlier": False,
                        "allowance": 0.0,
                        "shared": 0.0,
                        "clear_dates": n + 1,
                        "view": {"events": [], "suspected": []},
                    }
                    for k in range(OTHERS)
                ],
            )
            conn.execute(
                insert(scene_peers),
                {
                    "scene_id": scene,
                    "kind": "forest",
                    "acquired_at": when,
                    "median": 0.8,
                    "spread": 0.01,
                    "count": OTHERS,
                    "dip": 0.0,
                },
            )
        conn.exec_driver_sql("ANALYZE")


def test_a_scenes_profile_statements_use_indexes(postgres_url, tmp_path):
    sim = cg.simulate(tmp_path, 10, seed=11, last=date(2023, 8, 31))
    engine = make_engine(postgres_url)
    upgrade(engine)
    empty_all_tables(engine)
    _history_of_others(engine)
    cg.insert_parcels(engine, sim)
    scenes = cg.scenes_of(sim)
    assert cg.store_scene_by_scene(engine, sim, scenes[:-1]) == {}
    sent: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if not executemany and statement.lstrip().upper().startswith(
            ("SELECT", "DELETE", "UPDATE")
        ):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        assert cg.store_scene_by_scene(engine, sim, scenes[-1:]) == {}
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    touching = [(s, p) for s, p in sent if any(t in s for t in GROWING)]
    assert len(touching) >= 8  # peers, starts, window, tables, observations, writes, ...
    scans = []
    with engine.begin() as conn:
        for statement, parameters in touching:
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
            for table in GROWING:
                if f"Seq Scan on {table}" in plan:
                    scans.append((table, statement.split("\n")[0][:120]))
    assert scans == [], "\n".join(map(str, scans))
    engine.dispose()
