"""Alert rules: which conditions hold for a farm at time T, and syncing them to alerts.

One open alert per (subject, condition); it closes by itself when the condition clears.
``conditions`` is pure (state in, conditions out); ``evaluate_farm`` does the I/O.
"""

import json
from datetime import datetime, timedelta

import numpy as np
import shapely
from shapely.geometry import Point, shape

from bioassets import store
from bioassets.headcount import FEVER_C, farm_headcount, last_by_tag, status_at

SILENT_AFTER = {"cattle": timedelta(hours=6), "pig": timedelta(hours=6)}
GATEWAY_OFFLINE_AFTER = timedelta(minutes=30)
INACTIVE_SHARE = 0.3  # activity below 30 % of the animal's own recent median
INACTIVE_HISTORY = timedelta(hours=72)
EVENT_ALERT_FOR = timedelta(days=7)
HEADCOUNT_DROP = 0.05
KINDS = {
    "silent_tag",
    "out_of_geofence",
    "fever",
    "inactivity",
    "death",
    "sale",
    "unknown_tag",
    "headcount_drop",
    "gateway_offline",
}


def animal_conditions(animal: dict, history: list[dict], geofence, at: datetime) -> dict[str, str]:
    """Conditions of one alive animal from its readings up to ``at`` (oldest first)."""
    out: dict[str, str] = {}
    seen = last_by_tag(history).get(animal["tag_id"])
    last_seen = seen["last_seen"] if seen else None
    since = last_seen or animal["registered_at"]
    if since is not None and at - since > SILENT_AFTER[animal["species"]]:
        out["silent_tag"] = f"no reading since {since.isoformat()}"
    if not seen:
        return out
    if "position" in seen and not geofence.covers(Point(seen["position"][1], seen["position"][0])):
        out["out_of_geofence"] = "last position {:.5f}, {:.5f} outside the geofence".format(
            *seen["position"]
        )
    temperature = seen.get("temperature_c")
    if temperature is not None and temperature >= FEVER_C[animal["species"]]:
        out["fever"] = f"{temperature:.1f} °C (threshold {FEVER_C[animal['species']]} °C)"
    activity = [r["activity"] for r in history if r["activity"] is not None]
    if len(activity) >= 7:
        usual = float(np.median(activity[:-1]))
        if usual > 0 and activity[-1] < INACTIVE_SHARE * usual:
            out["inactivity"] = f"activity {activity[-1]:.0f} vs usual {usual:.0f}"
    return out


def evaluate_farm(
    engine, farm_id: str, at: datetime, gateway_offline_after: timedelta = GATEWAY_OFFLINE_AFTER
) -> None:
    """Open and close the farm's alerts so they match the conditions at ``at``.

    A gateway is offline when nothing arrived from it for ``gateway_offline_after``: its
    animals then go silent together, which tells "the gateway lost power" apart from
    "the animals vanished" (silent tags under a gateway that still talks).
    """
    farm = store.get_farm(engine, farm_id)
    geofence = shape(json.loads(farm["geofence_geojson"]))
    shapely.prepare(geofence)
    rows = store.last_readings(engine, farm_id, at, at - INACTIVE_HISTORY)
    by_tag: dict[str, list[dict]] = {}
    for r in rows:
        by_tag.setdefault(r["tag_id"], []).append(r)
    animals = store.farm_animals(engine, farm_id)
    registered = {a["tag_id"] for a in animals}
    active: dict[tuple[str, str], str] = {}
    for animal in animals:
        if status_at(animal, at) != "alive":
            continue
        for kind, detail in animal_conditions(
            animal, by_tag.get(animal["tag_id"], []), geofence, at
        ).items():
            active[(animal["tag_id"], kind)] = detail
    for tag_id, tag_rows in by_tag.items():
        if tag_id not in registered and at - tag_rows[-1]["observed_at"] <= timedelta(hours=24):
            active[(tag_id, "unknown_tag")] = (
                f"unregistered tag seen by {tag_rows[-1]['gateway_id']}"
            )
    for event in store.farm_events(engine, farm_id, at):
        if event["kind"] in ("death", "sale") and at - event["occurred_at"] <= EVENT_ALERT_FOR:
            active[(event["tag_id"], event["kind"])] = (
                f"{event['kind']} on {event['occurred_at'].isoformat()}"
            )
    last_by_gateway: dict[str, datetime] = {}
    for r in rows:
        last_by_gateway[r["gateway_id"]] = max(
            r["received_at"], last_by_gateway.get(r["gateway_id"], r["received_at"])
        )
    for gateway in store.all_gateways(engine):
        if gateway["farm_id"] != farm_id:
            continue
        last = last_by_gateway.get(gateway["gateway_id"])
        if last is not None and at - last > gateway_offline_after:
            active[(gateway["gateway_id"], "gateway_offline")] = (
                f"nothing received since {last.isoformat()}"
            )
    now_count = _verified(farm_headcount(engine, farm_id, at))
    week_ago = _verified(farm_headcount(engine, farm_id, at - timedelta(days=7)))
    if week_ago and (week_ago - now_count) / week_ago > HEADCOUNT_DROP:
        active[(farm_id, "headcount_drop")] = (
            f"verified animals {week_ago} -> {now_count} in a week"
        )
    with engine.begin() as conn:
        store.sync_alerts(conn, farm_id, active, at, KINDS)


def _verified(headcount: dict) -> int:
    return sum(c["verified"] for c in headcount["categories"].values())
