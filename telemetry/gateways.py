"""The gateways of the farm gateway protocol in the database: which farm each belongs to
(a topic's farm must be its gateway's), what each last said about itself on its status
channel (its Will says "offline"), and the messages and items refused, kept with their raw
bytes. The caller passes the engine or connection."""

import json
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, insert, select, update

from telemetry.tables import gateway_status, gateways, rejects


def add_gateway(engine: Engine, gateway_id: str, farm_id: str, password_hash: str) -> None:
    with engine.begin() as conn:
        exists = conn.execute(
            select(gateways.c.gateway_id).where(gateways.c.gateway_id == gateway_id)
        ).first()
        values = {"farm_id": farm_id, "password_hash": password_hash}
        if exists:
            conn.execute(update(gateways).where(gateways.c.gateway_id == gateway_id).values(values))
        else:
            conn.execute(
                insert(gateways).values(
                    gateway_id=gateway_id, created_at=datetime.now(UTC), **values
                )
            )


def all_gateways(engine: Engine) -> list[dict]:
    with engine.connect() as c:
        return [
            dict(r._mapping) for r in c.execute(select(gateways).order_by(gateways.c.gateway_id))
        ]


def gateway_farms(engine: Engine) -> dict[str, str]:
    with engine.connect() as c:
        return {
            r.gateway_id: r.farm_id
            for r in c.execute(select(gateways.c.gateway_id, gateways.c.farm_id))
        }


def add_rejects(conn: Connection, rows: list[dict]) -> None:
    """Within the caller's transaction: rows of refused messages or items."""
    if rows:
        conn.execute(insert(rejects), rows)


def list_rejects(engine: Engine, gateway_id: str | None = None) -> list[dict]:
    query = select(rejects).order_by(rejects.c.id)
    if gateway_id:
        query = query.where(rejects.c.gateway_id == gateway_id)
    with engine.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(query)]
    for r in rows:
        r["raw"] = bytes(r["raw"]).decode("utf-8", errors="replace")
        r["item"] = json.loads(r["item"]) if r["item"] else None
    return rows


def set_gateway_status(conn: Connection, gateway_id: str, status: str, at: datetime) -> None:
    """Record what a gateway said about itself (online/offline) in the caller's transaction."""
    key = gateway_status.c.gateway_id == gateway_id
    if conn.execute(select(gateway_status.c.gateway_id).where(key)).first():
        conn.execute(update(gateway_status).where(key).values(status=status, changed_at=at))
    else:
        conn.execute(
            insert(gateway_status).values(gateway_id=gateway_id, status=status, changed_at=at)
        )


def gateway_statuses(engine: Engine) -> dict[str, tuple[str, datetime]]:
    with engine.connect() as c:
        return {r.gateway_id: (r.status, r.changed_at) for r in c.execute(select(gateway_status))}
