"""Reads and writes of remote_sensing's tables. The caller passes the engine or connection."""

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime

import geopandas as gpd
import shapely
from sqlalchemy import Connection, Engine, delete, insert, select, update

from remote_sensing.parcels import WGS84, Parcel, attributes_json
from remote_sensing.tables import observations, parcels, scenes
from remote_sensing.zonal import STATISTICS

OBSERVATION_FIELDS = ("scene_id", "acquired_at", *STATISTICS)


def upsert_parcels(engine: Engine, items: Iterable[Parcel]) -> tuple[int, int]:
    """Insert new parcels and update existing ones by parcel_id; returns (new, updated)."""
    now = datetime.now(UTC)
    created = updated = 0
    with engine.begin() as conn:
        existing = set(conn.scalars(select(parcels.c.parcel_id)))
        for p in items:
            row = {
                "kind": p.kind,
                "owner": p.owner,
                "attributes": json.loads(attributes_json(p.attributes)),
                "geometry_geojson": json.dumps(shapely.geometry.mapping(p.geometry)),
                "area_ha": p.area_ha,
                "updated_at": now,
            }
            if p.parcel_id in existing:
                conn.execute(update(parcels).where(parcels.c.parcel_id == p.parcel_id).values(row))
                updated += 1
            else:
                conn.execute(insert(parcels).values(parcel_id=p.parcel_id, **row))
                existing.add(p.parcel_id)
                created += 1
    return created, updated


def load_parcels_frame(engine: Engine) -> gpd.GeoDataFrame:
    """All parcels as a WGS84 GeoDataFrame (parcel_id, kind, owner, area_ha, geometry)."""
    query = select(
        parcels.c.parcel_id,
        parcels.c.kind,
        parcels.c.owner,
        parcels.c.area_ha,
        parcels.c.geometry_geojson,
    ).order_by(parcels.c.parcel_id)
    with engine.connect() as c:
        rows = c.execute(query).all()
    return gpd.GeoDataFrame(
        {
            "parcel_id": [r.parcel_id for r in rows],
            "kind": [r.kind for r in rows],
            "owner": [r.owner for r in rows],
            "area_ha": [r.area_ha for r in rows],
        },
        geometry=[shapely.geometry.shape(json.loads(r.geometry_geojson)) for r in rows],
        crs=WGS84,
    )


def get_parcel(engine: Engine, parcel_id: str) -> dict | None:
    with engine.connect() as c:
        row = c.execute(select(parcels).where(parcels.c.parcel_id == parcel_id)).first()
    return dict(row._mapping) if row else None


def done_scene_keys(engine: Engine) -> set[tuple[str, str]]:
    """(scene_id, checksum) of every scene already processed successfully."""
    query = select(scenes.c.scene_id, scenes.c.checksum).where(scenes.c.status == "done")
    with engine.connect() as c:
        return {(r.scene_id, r.checksum) for r in c.execute(query)}


def record_scene_done(
    conn: Connection,
    ledger: dict,
    rows: list[dict],
) -> None:
    """Within the caller's transaction: replace the scene's observations, mark it done."""
    conn.execute(delete(observations).where(observations.c.scene_id == ledger["scene_id"]))
    if rows:
        conn.execute(insert(observations), [_nan_to_none(r) for r in rows])
    _write_ledger(conn, {**ledger, "status": "done", "error": None})


def record_scene_failed(engine: Engine, ledger: dict, error: str) -> None:
    """Mark a scene failed with its error, in a transaction of its own."""
    with engine.begin() as conn:
        _write_ledger(conn, {**ledger, "status": "failed", "error": error})


def _write_ledger(conn: Connection, ledger: dict) -> None:
    key = (scenes.c.scene_id == ledger["scene_id"]) & (scenes.c.checksum == ledger["checksum"])
    previous = conn.execute(select(scenes.c.attempts).where(key)).scalar()
    values = {**ledger, "processed_at": datetime.now(UTC), "attempts": (previous or 0) + 1}
    if previous is None:
        conn.execute(insert(scenes).values(values))
    else:
        conn.execute(update(scenes).where(key).values(values))


def parcel_observations(engine: Engine, parcel_id: str) -> list[dict]:
    """A parcel's observations in acquisition order, NaN statistics as None."""
    query = (
        select(*(observations.c[f] for f in OBSERVATION_FIELDS))
        .where(observations.c.parcel_id == parcel_id)
        .order_by(observations.c.acquired_at, observations.c.scene_id)
    )
    with engine.connect() as c:
        rows = c.execute(query).all()
    return [_as_utc(dict(r._mapping)) for r in rows]


def latest_clear_summary(engine: Engine, min_valid_fraction: float) -> dict[str, dict]:
    """Per parcel: number of clear observations and the latest clear one (date, mean NDVI)."""
    query = (
        select(observations.c.parcel_id, observations.c.acquired_at, observations.c.ndvi_mean)
        .where(observations.c.valid_fraction >= min_valid_fraction)
        .where(observations.c.ndvi_mean.is_not(None))
        .order_by(observations.c.parcel_id, observations.c.acquired_at)
    )
    summary: dict[str, dict] = {}
    with engine.connect() as c:
        for r in c.execute(query):
            entry = summary.setdefault(r.parcel_id, {"clear_count": 0})
            entry["clear_count"] += 1
            entry["latest_acquired_at"] = _utc(r.acquired_at)
            entry["latest_ndvi"] = r.ndvi_mean
    return summary


def scene_ledger(engine: Engine) -> list[dict]:
    with engine.connect() as c:
        rows = c.execute(select(scenes).order_by(scenes.c.scene_id, scenes.c.id)).all()
    return [dict(r._mapping) for r in rows]


def _nan_to_none(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _as_utc(row: dict) -> dict:
    row["acquired_at"] = _utc(row["acquired_at"])
    return row
