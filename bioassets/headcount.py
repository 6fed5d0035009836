"""Animal state and verified headcount at any time T, past or present.

Everything is derived from the registry, the life events and the stored readings up to
T, so "how many verified breeding sows did farm F have at T" has one answer, whenever
it is asked.
"""

from datetime import datetime, timedelta

import shapely
from shapely.geometry import Point

from agri_common.wording import Said, coded
from bioassets import store
from telemetry import farm_alerts

SEEN_WINDOW = timedelta(hours=24)
FEVER_C = {"cattle": 39.5, "pig": 40.0}  # rectal/ear-tag equivalents; above is fever
CATEGORIES = ("dairy_cow", "beef_cattle", "breeding_sow", "fattening_pig")


def status_at(animal: dict, at: datetime) -> str:
    """alive, dead, sold or replaced at ``at`` (a status change after ``at`` is ignored)."""
    if (
        animal["status"] != "alive"
        and animal["status_at"] is not None
        and animal["status_at"] <= at
    ):
        return animal["status"]
    return "alive"


def verification(animal: dict, seen: dict | None, geofence, at: datetime) -> str | None:
    """None when the animal counts as verified at ``at``, else the reason it does not."""
    if seen is None or seen.get("last_seen") is None:
        hours = int(SEEN_WINDOW.total_seconds() // 3600)
        return Said("unverified.not_seen", hours=hours, at=at.isoformat())
    if "position" in seen and not geofence.covers(Point(seen["position"][1], seen["position"][0])):
        lat, lon = seen["position"]
        return Said("unverified.outside", lat=f"{lat:.5f}", lon=f"{lon:.5f}")
    temperature = seen.get("temperature_c")
    if temperature is not None and temperature >= FEVER_C[animal["species"]]:
        return Said(
            "unverified.fever",
            temperature=f"{temperature:.1f}",
            at=seen["temperature_c_at"].isoformat(),
        )
    return None


WEIGHT_WINDOW = timedelta(days=90)  # a weight older than this says nothing about today


def herd_animals(engine, farm_id: str, at: datetime, window: timedelta = SEEN_WINDOW) -> list[dict]:
    """Every animal registered to the farm and alive at ``at``, with its verification:
    ``reason`` is None for a verified animal, else why it does not count. Also its last
    weight within WEIGHT_WINDOW (growing animals are valued by weight) and last sighting."""
    farm = store.get_farm(engine, farm_id)
    geofence = store.geofence(farm)
    shapely.prepare(geofence)
    animals = [a for a in store.farm_animals(engine, farm_id) if status_at(a, at) == "alive"]
    tags = [a["tag_id"] for a in animals]
    seen = store.tag_states(engine, at - window, at, tags)
    weighed = store.tag_states(engine, at - WEIGHT_WINDOW, at, tags)
    out = []
    for animal in animals:
        state = seen.get(animal["tag_id"])
        weight = weighed.get(animal["tag_id"], {})
        out.append(
            {
                "tag_id": animal["tag_id"],
                "species": animal["species"],
                "category": animal["category"],
                "parity": animal["parity"],
                "lactation": animal["lactation"],
                "last_seen": (state or {}).get("last_seen"),
                "weight_kg": weight.get("weight_kg"),
                "weight_at": weight.get("weight_kg_at"),
                "reason": verification(animal, state, geofence, at),
            }
        )
    return out


def farm_headcount(engine, farm_id: str, at: datetime, window: timedelta = SEEN_WINDOW) -> dict:
    """Registered (alive, not sold at ``at``) and verified animals per category."""
    categories = {c: {"registered": 0, "verified": 0, "unverified": []} for c in CATEGORIES}
    for animal in herd_animals(engine, farm_id, at, window):
        entry = categories[animal["category"]]
        entry["registered"] += 1
        if animal["reason"] is None:
            entry["verified"] += 1
        else:
            entry["unverified"].append(
                {
                    "tag_id": animal["tag_id"],
                    "reason": animal["reason"],
                    "reason_coded": coded(animal["reason"]),
                }
            )
    return {"farm_id": farm_id, "at": at.isoformat(), "categories": categories}


def animal_state(engine, tag_id: str, at: datetime) -> dict | None:
    """Registry record plus what the tag says at ``at`` (last seen, position, alerts)."""
    animal = store.get_animal(engine, tag_id)
    if animal is None:
        return None
    farm = store.get_farm(engine, animal["farm_id"])
    geofence = store.geofence(farm)
    seen = store.tag_states(engine, at - timedelta(days=3650), at, [tag_id]).get(tag_id, {})
    recent = store.tag_states(engine, at - timedelta(hours=72), at, [tag_id]).get(tag_id, {})
    usual = recent.get("activity_mean")
    position = seen.get("position")
    return {
        **animal,
        "status": status_at(animal, at),
        "last_seen": seen.get("last_seen"),
        "last_position": {"lat": position[0], "lon": position[1]} if position else None,
        "inside_geofence": (geofence.covers(Point(position[1], position[0])) if position else None),
        "last_weight_kg": seen.get("weight_kg"),
        "last_temperature_c": seen.get("temperature_c"),
        "last_activity": seen.get("activity"),
        # latest activity over the animal's own 72-hour mean: 1 is usual, well below is idle
        "activity_trend": (
            round(seen["activity"] / usual, 3)
            if usual and seen.get("activity") is not None
            else None
        ),
        "readings_stored": store.count_tag_readings(engine, tag_id),
        "open_alerts": [
            {"kind": a["kind"], "opened_at": a["opened_at"].isoformat(), "detail": a["detail"]}
            for a in farm_alerts.list_alerts(engine, animal["farm_id"], open_only=True)
            if a["subject"] == tag_id
        ],
    }
