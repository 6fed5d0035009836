"""A farm's alerts, whichever device raised them: one open alert per (subject, kind),
opened when a domain's rule first finds the condition and closed when it clears. The
domains' rules decide (bioassets.rules, solar.alerts); this is where their verdicts are
kept, worded in every language (agri_common.wording)."""

from datetime import datetime

from sqlalchemy import Connection, Engine, and_, insert, select, update

from agri_common.wording import worded
from telemetry.tables import alerts


def list_alerts(engine: Engine, farm_id: str | None = None, open_only: bool = False) -> list[dict]:
    query = select(alerts).order_by(alerts.c.opened_at, alerts.c.id)
    if farm_id:
        query = query.where(alerts.c.farm_id == farm_id)
    if open_only:
        query = query.where(alerts.c.closed_at.is_(None))
    with engine.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(query)]
    for r in rows:
        r["state"] = "open" if r["closed_at"] is None else "closed"
    return rows


def sync_alerts(
    conn: Connection,
    farm_id: str,
    active: dict[tuple[str, str], str],
    at: datetime,
    kinds: set[str],
) -> None:
    """Make the open alerts of ``kinds`` for a farm equal ``active`` ((subject, kind) ->
    detail): open the new ones, close the ones that cleared, leave the rest untouched."""
    open_rows = conn.execute(
        select(alerts.c.id, alerts.c.subject, alerts.c.kind).where(
            and_(
                alerts.c.farm_id == farm_id, alerts.c.closed_at.is_(None), alerts.c.kind.in_(kinds)
            )
        )
    ).all()
    open_keys = {(r.subject, r.kind): r.id for r in open_rows}
    for key, alert_id in open_keys.items():
        if key not in active:
            conn.execute(update(alerts).where(alerts.c.id == alert_id).values(closed_at=at))
    new = [
        {"farm_id": farm_id, "subject": s, "kind": k, "opened_at": at, **worded(d)}
        for (s, k), d in active.items()
        if (s, k) not in open_keys
    ]
    if new:
        conn.execute(insert(alerts), new)
