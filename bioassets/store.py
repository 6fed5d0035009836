"""Reads and writes of bioassets' tables. The caller passes the engine or connection."""

import json
from datetime import UTC, datetime

from shapely.geometry import shape
from sqlalchemy import (
    Connection,
    Engine,
    String,
    and_,
    any_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql

from agri_common.sql import bulk_insert_ignoring_duplicates, insert_ignoring_duplicates
from agri_common.wording import worded
from bioassets.tables import animal_events, animals, readings
from telemetry.tables import alerts, farms

READING_FIELDS = ("lat", "lon", "temperature_c", "activity", "weight_kg", "battery_pct", "rssi")


def _upsert(conn: Connection, table, key: str, rows: list[dict]) -> tuple[int, int]:
    existing = set(
        conn.scalars(select(table.c[key]).where(table.c[key].in_([r[key] for r in rows])))
    )
    new = [r for r in rows if r[key] not in existing]
    if new:
        conn.execute(insert(table), new)
    for r in rows:
        if r[key] in existing:
            conn.execute(update(table).where(table.c[key] == r[key]).values(r))
    return len(new), len(rows) - len(new)


def upsert_farms(engine: Engine, records: list[dict]) -> tuple[int, int]:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        return _upsert(conn, farms, "farm_id", [{**r, "updated_at": now} for r in records])


def upsert_animals(engine: Engine, records: list[dict]) -> tuple[int, int]:
    """New animals start alive; re-imported ones keep their status (events own it)."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        existing = set(conn.scalars(select(animals.c.tag_id)))
        new = [
            {**r, "status": "alive", "registered_at": now}
            for r in records
            if r["tag_id"] not in existing
        ]
        if new:
            conn.execute(insert(animals), new)
        for r in records:
            if r["tag_id"] in existing:
                conn.execute(update(animals).where(animals.c.tag_id == r["tag_id"]).values(r))
    return len(new), len(records) - len(new)


def farm_ids(engine: Engine) -> set[str]:
    with engine.connect() as c:
        return set(c.scalars(select(farms.c.farm_id)))


def get_farm(engine: Engine, farm_id: str) -> dict | None:
    with engine.connect() as c:
        row = c.execute(select(farms).where(farms.c.farm_id == farm_id)).first()
    return dict(row._mapping) if row else None


def geofence(farm: dict):
    """A farm row's geofence as a shapely geometry (WGS84)."""
    return shape(json.loads(farm["geofence_geojson"]))


def tag_farms(engine: Engine) -> dict[str, str]:
    with engine.connect() as c:
        return {r.tag_id: r.farm_id for r in c.execute(select(animals.c.tag_id, animals.c.farm_id))}


READING_COLUMNS = (
    "tag_id",
    "observed_at",
    "farm_id",
    "gateway_id",
    "received_at",
    *READING_FIELDS,
    "seq",
)
# reading_row relies on this order (bulk inserts take the table's).
assert READING_COLUMNS == tuple(c.name for c in readings.columns), "readings columns moved"


def reading_row(reading, farm_id: str, gateway_id: str, received_at: datetime, seq) -> tuple:
    """One readings row as a tuple in READING_COLUMNS order: what insert_readings takes.
    ``reading`` is a messages.Reading (a dict whose optional fields may be absent)."""
    return (
        reading["tag_id"],
        reading["observed_at"],
        farm_id,
        gateway_id,
        received_at,
        reading.get("lat"),
        reading.get("lon"),
        reading.get("temperature_c"),
        reading.get("activity"),
        reading.get("weight_kg"),
        reading.get("battery_pct"),
        reading.get("rssi"),
        seq,
    )


def insert_readings(conn: Connection, rows: list[tuple]) -> int:
    """Insert readings (tuples from reading_row), skipping (tag_id, observed_at) already
    stored; returns rows added. The ingest hot path: straight to the driver
    (agri_common.sql.bulk_insert_ignoring_duplicates)."""
    return bulk_insert_ignoring_duplicates(conn, readings, rows)


def event_row(event, farm_id: str, gateway_id: str, received_at: datetime) -> dict:
    """A life event (payloads.Event) as its row."""
    return {
        "tag_id": event.tag_id,
        "kind": event.kind,
        "occurred_at": event.occurred_at,
        "farm_id": farm_id,
        "gateway_id": gateway_id,
        "details": event.model_dump(mode="json", exclude_none=True),
        "received_at": received_at,
    }


def write_batch(conn: Connection, reading_rows: list[tuple], event_rows: list[dict]) -> int:
    """Within the caller's transaction: readings and events (duplicates ignored). Life
    events also update the animal's status. Returns readings inserted."""
    inserted = insert_readings(conn, reading_rows)
    if event_rows:
        insert_ignoring_duplicates(conn, animal_events, event_rows)
        for e in event_rows:
            status = {"death": "dead", "sale": "sold"}.get(e["kind"])
            if status:
                conn.execute(
                    update(animals)
                    .where(animals.c.tag_id == e["tag_id"])
                    .values(status=status, status_at=e["occurred_at"])
                )
            if e["kind"] == "tag_replaced":
                conn.execute(
                    update(animals)
                    .where(animals.c.tag_id == e["tag_id"])
                    .values(status="replaced", status_at=e["occurred_at"])
                )
    return inserted


def count_readings(engine: Engine) -> int:
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(readings)).scalar()


def reading_keys(engine: Engine) -> set[tuple[str, datetime]]:
    with engine.connect() as c:
        return {
            (r.tag_id, r.observed_at)
            for r in c.execute(select(readings.c.tag_id, readings.c.observed_at))
        }


def farm_animals(engine: Engine, farm_id: str) -> list[dict]:
    with engine.connect() as c:
        rows = c.execute(
            select(animals).where(animals.c.farm_id == farm_id).order_by(animals.c.tag_id)
        ).all()
    return [dict(r._mapping) for r in rows]


def get_animal(engine: Engine, tag_id: str) -> dict | None:
    with engine.connect() as c:
        row = c.execute(select(animals).where(animals.c.tag_id == tag_id)).first()
    if not row:
        return None
    return dict(row._mapping)


def tag_states(
    engine: Engine, since: datetime, at: datetime, tag_ids: list[str]
) -> dict[str, dict]:
    """Per tag, from its readings in [since, at]: what the alerts and the headcount need.

    last_seen and its gateway; the latest non-null position, temperature, weight and
    activity with their times; the mean and count of activity. Grouped maxima computed by
    the database over the (tag_id, observed_at) primary key, so the cost follows the
    number of tags asked about, not how often they report, and ingest pays for no
    second index.
    """
    out: dict[str, dict] = {}
    with engine.connect() as c:
        for start in range(0, len(tag_ids), 2000):
            chunk = tag_ids[start : start + 2000]
            scope = [
                _one_of(c, readings.c.tag_id, chunk),
                readings.c.observed_at >= since,
                readings.c.observed_at <= at,
            ]
            stats = (
                select(
                    readings.c.tag_id,
                    func.max(readings.c.observed_at).label("last_seen"),
                    func.count().label("count"),
                    func.avg(readings.c.activity).label("activity_mean"),
                    func.count(readings.c.activity).label("activity_count"),
                )
                .where(*scope)
                .group_by(readings.c.tag_id)
            )
            for r in c.execute(stats):
                out[r.tag_id] = {
                    "last_seen": r.last_seen,
                    "count": r.count,
                    "activity_mean": r.activity_mean,
                    "activity_count": r.activity_count,
                }
            for column in ("gateway_id", "lat", "temperature_c", "weight_kg", "activity"):
                for tag, value, row, when in _latest(c, scope, column):
                    state = out.setdefault(tag, {})
                    if column == "lat":
                        state["position"] = (value, row.lon)
                    else:
                        state[column] = value
                        state[f"{column}_at"] = when
    return out


def _one_of(conn: Connection, column, values: list[str]):
    """``column IN values``; on PostgreSQL as ``= ANY(array)``, one parameter: an IN list
    of a farm's hundreds of tags was rendered, cast and parsed anew for every query (most
    of a headcount's Python time, which the API pays while it answers other requests)."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(String)))
    return column.in_(values)


def note_unknown_tags(
    conn: Connection, sightings: dict[tuple[str, str], str], at: datetime
) -> None:
    """Open an unknown_tag alert for each (farm, tag) seen that has none open yet."""
    if not sightings:
        return
    open_now = {
        (r.farm_id, r.subject)
        for r in conn.execute(
            select(alerts.c.farm_id, alerts.c.subject).where(
                alerts.c.kind == "unknown_tag", alerts.c.closed_at.is_(None)
            )
        )
    }
    new = [
        {"farm_id": farm, "subject": tag, "kind": "unknown_tag", "opened_at": at, **worded(detail)}
        for (farm, tag), detail in sightings.items()
        if (farm, tag) not in open_now
    ]
    if new:
        conn.execute(insert(alerts), new)


def _latest(conn: Connection, scope: list, column: str):
    """(tag, value, row, observed_at) of each tag's latest reading with ``column`` set."""
    col = readings.c[column]
    latest = (
        select(readings.c.tag_id, func.max(readings.c.observed_at).label("at"))
        .where(*scope, col.is_not(None))
        .group_by(readings.c.tag_id)
        .subquery()
    )
    query = select(readings.c.tag_id, col, readings.c.lon, readings.c.observed_at).join(
        latest,
        and_(readings.c.tag_id == latest.c.tag_id, readings.c.observed_at == latest.c.at),
    )
    for row in conn.execute(query):
        yield row.tag_id, row[1], row, row.observed_at


def count_tag_readings(engine: Engine, tag_id: str) -> int:
    with engine.connect() as c:
        return c.execute(
            select(func.count()).select_from(readings).where(readings.c.tag_id == tag_id)
        ).scalar()


def farm_events(engine: Engine, farm_id: str, at: datetime) -> list[dict]:
    query = (
        select(animal_events)
        .where(animal_events.c.farm_id == farm_id)
        .where(animal_events.c.occurred_at <= at)
        .order_by(animal_events.c.occurred_at)
    )
    with engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(query)]


def tag_track(
    engine: Engine, tag_id: str, since: datetime, until: datetime, limit: int
) -> list[dict]:
    """The tag's positions in [since, until], oldest first, at most ``limit`` (the newest)."""
    query = (
        select(readings.c.observed_at, readings.c.lat, readings.c.lon, readings.c.gateway_id)
        .where(
            readings.c.tag_id == tag_id,
            readings.c.observed_at >= since,
            readings.c.observed_at <= until,
            readings.c.lat.is_not(None),
        )
        .order_by(readings.c.observed_at.desc())
        .limit(limit)
    )
    with engine.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(query)]
    return rows[::-1]
