"""Alert rules: which conditions hold for a farm at time T, and syncing them to alerts.

One open alert per (subject, condition); it closes by itself when the condition clears.
``conditions`` is pure (state in, conditions out); ``evaluate_farm`` does the I/O.
"""

from datetime import datetime, timedelta

import shapely
from shapely.geometry import Point

from agri_common.wording import Said
from bioassets import store
from bioassets.headcount import FEVER_C, farm_headcount, status_at
from telemetry import farm_alerts, gateways

SILENT_AFTER = {"cattle": timedelta(hours=6), "pig": timedelta(hours=6)}
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


def animal_conditions(animal: dict, seen: dict | None, geofence, at: datetime) -> dict[str, str]:
    """Conditions of one alive animal from its tag state at ``at`` (``store.tag_states``)."""
    out: dict[str, str] = {}
    last_seen = seen.get("last_seen") if seen else None
    since = last_seen or animal["registered_at"]
    if since is not None and at - since > SILENT_AFTER[animal["species"]]:
        out["silent_tag"] = Said("alert.silent_tag", since=since.isoformat())
    if not last_seen:
        return out
    if "position" in seen and not geofence.covers(Point(seen["position"][1], seen["position"][0])):
        lat, lon = seen["position"]
        out["out_of_geofence"] = Said("alert.out_of_geofence", lat=f"{lat:.5f}", lon=f"{lon:.5f}")
    temperature = seen.get("temperature_c")
    if temperature is not None and temperature >= FEVER_C[animal["species"]]:
        out["fever"] = Said(
            "alert.fever",
            temperature=f"{temperature:.1f}",
            threshold=FEVER_C[animal["species"]],
        )
    activity, usual = seen.get("activity"), seen.get("activity_mean")
    if activity is not None and usual and seen.get("activity_count", 0) >= 7:
        if activity < INACTIVE_SHARE * usual:
            out["inactivity"] = Said(
                "alert.inactivity", activity=f"{activity:.0f}", usual=f"{usual:.0f}"
            )
    return out


def evaluate_farm(engine, farm_id: str, at: datetime, gateway_offline_after: timedelta) -> None:
    """Open and close the farm's alerts so they match the conditions at ``at``.

    A gateway is offline when nothing arrived from it for ``gateway_offline_after`` (the
    operator's setting, which every caller passes so that all agree): its
    animals then go silent together, which tells "the gateway lost power" apart from
    "the animals vanished" (silent tags under a gateway that still talks).
    """
    farm = store.get_farm(engine, farm_id)
    geofence = store.geofence(farm)
    shapely.prepare(geofence)
    animals = store.farm_animals(engine, farm_id)
    registered = {a["tag_id"] for a in animals}
    # unknown tags are reported by the ingester as it sees them; here they only close
    unknown = [
        a["subject"]
        for a in farm_alerts.list_alerts(engine, farm_id, open_only=True)
        if a["kind"] == "unknown_tag" and a["subject"] not in registered
    ]
    states = store.tag_states(engine, at - INACTIVE_HISTORY, at, sorted(registered) + unknown)
    active: dict[tuple[str, str], str] = {}
    for animal in animals:
        if status_at(animal, at) != "alive":
            continue
        conditions = animal_conditions(animal, states.get(animal["tag_id"]), geofence, at)
        for kind, detail in conditions.items():
            active[(animal["tag_id"], kind)] = detail
    for tag_id in unknown:
        state = states.get(tag_id)
        if state and at - state["last_seen"] <= timedelta(hours=24):
            active[(tag_id, "unknown_tag")] = Said("alert.unknown_tag", gateway=state["gateway_id"])
    for event in store.farm_events(engine, farm_id, at):
        if event["kind"] in ("death", "sale") and at - event["occurred_at"] <= EVENT_ALERT_FOR:
            active[(event["tag_id"], event["kind"])] = Said(
                f"alert.{event['kind']}", at=event["occurred_at"].isoformat()
            )
    last_by_gateway: dict[str, datetime] = {}  # from each tag's latest reading
    for state in states.values():
        gateway, seen = state.get("gateway_id"), state.get("last_seen")
        if gateway and seen and seen > last_by_gateway.get(gateway, seen - timedelta(1)):
            last_by_gateway[gateway] = seen
    said = gateways.gateway_statuses(engine)
    for gateway in gateways.all_gateways(engine):
        if gateway["farm_id"] != farm_id:
            continue
        last = last_by_gateway.get(gateway["gateway_id"])
        status, changed = said.get(gateway["gateway_id"], ("online", None))
        if status == "offline" and changed <= at and (last is None or last <= changed):
            active[(gateway["gateway_id"], "gateway_offline")] = Said(
                "alert.gateway_will", at=changed.isoformat()
            )
        elif last is not None and at - last > gateway_offline_after:
            active[(gateway["gateway_id"], "gateway_offline")] = Said(
                "alert.gateway_silent", since=last.isoformat()
            )
    now_count = _verified(farm_headcount(engine, farm_id, at))
    week_ago = _verified(farm_headcount(engine, farm_id, at - timedelta(days=7)))
    if week_ago and (week_ago - now_count) / week_ago > HEADCOUNT_DROP:
        active[(farm_id, "headcount_drop")] = Said(
            "alert.headcount_drop", before=week_ago, now=now_count
        )
    with engine.begin() as conn:
        farm_alerts.sync_alerts(conn, farm_id, active, at, KINDS)


def _verified(headcount: dict) -> int:
    return sum(c["verified"] for c in headcount["categories"].values())
