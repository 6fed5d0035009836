"""A valued world: the sample parcels through the imagery job, the sample farms with a
round of readings, and the shipped price and policy tables."""

import json
from pathlib import Path

from collateral.db import make_engine, upgrade
from tests.support.livestock import GATEWAY_FARMS, seed_livestock
from tests.support.paths import SAMPLE_TILES

WORLD_AS_OF = "2024-12-31T12:00:00+00:00"  # after the last sample scene (2024-12-31)
WORLD_SEEN = "2024-12-31T10:00:00+00:00"  # when the ear tags last reported
SILENT_SOWS = 3  # the first sows' tags never report


def seed_world_readings(engine, seen) -> None:
    """Every registered animal reports once at ``seen`` from inside its farm's fence,
    growing animals with a weight; the first SILENT_SOWS sows stay silent."""
    import shapely

    from bioassets import store as bio_store
    from bioassets.payloads import Reading
    from bioassets.simulator import growing_weight_kg

    rows = []
    for farm_id in sorted(bio_store.farm_ids(engine)):
        farm = bio_store.get_farm(engine, farm_id)
        point = shapely.geometry.shape(json.loads(farm["geofence_geojson"])).representative_point()
        animals = bio_store.farm_animals(engine, farm_id)
        sows = [a["tag_id"] for a in animals if a["category"] == "breeding_sow"]
        for animal in animals:
            if animal["tag_id"] in sows[:SILENT_SOWS]:
                continue
            reading = Reading(
                tag_id=animal["tag_id"],
                observed_at=seen,
                lat=point.y,
                lon=point.x,
                temperature_c=38.7,
                activity=100.0,
                weight_kg=growing_weight_kg(animal, seen),
            )
            gateway = next(g for g, f in GATEWAY_FARMS.items() if f == farm_id)
            rows.append(bio_store.reading_row(reading, farm_id, gateway, seen, None))
    with engine.begin() as conn:
        bio_store.write_batch(conn, rows, [])


def build_world(url: str, data_dir: Path, seen):
    """The sample parcels with every sample scene processed, the sample farms and animals
    with one round of readings at ``seen``, and the shipped price and policy tables."""
    from collateral import prices
    from remote_sensing import store as rs_store
    from remote_sensing.imagery.job import run_inbox
    from remote_sensing.parcels import read_parcel_file

    engine = make_engine(url)
    upgrade(engine)
    rs_store.upsert_parcels(engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels)
    summary = run_inbox(engine, SAMPLE_TILES / "scenes", data_dir)
    assert summary.ok, summary.as_json()
    seed_livestock(engine)
    seed_world_readings(engine, seen)
    for path in prices.default_tables():
        prices.import_file(engine, path)
    return engine
