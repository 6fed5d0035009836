"""Gathering a valuation's input snapshot: the I/O before the pure rules of valuation.py.

Only data acquired or received up to ``as_of`` is read, and the price and policy tables
are the ones in force on that date, so a valuation as of a past date ignores what came
later.
"""

import json
from datetime import datetime, timedelta

import numpy as np
import shapely
from sqlalchemy import Engine

from agri_common.times import parse_time
from agri_common.wording import Said, coded
from bioassets import headcount
from bioassets import store as bio_store
from collateral import prices
from collateral.carbon import CarbonError, carbon_account
from collateral.snapshot import ValuationInputs
from collateral.valuation import RULES_VERSION, ValuationError
from remote_sensing import store as rs_store
from remote_sensing.profiles import profiles
from remote_sensing.profiles.profile_update import profile_heads
from solar.record import plant_record

CODE_VERSION = f"agri-collateral rules {RULES_VERSION}"


def gather_inputs(
    engine: Engine, loan: dict, as_of: datetime, previous: dict | None
) -> ValuationInputs:
    """Everything value_loan needs, as plain JSON values (snapshot.ValuationInputs)."""
    on = as_of.date()
    price_table = prices.table_in_force(engine, "prices", on)
    policy = prices.table_in_force(engine, "policy", on)
    if price_table is None or policy is None:
        missing = "price" if price_table is None else "policy"
        raise ValuationError(
            f"no {missing} table in force on {on}: import one with `agri prices import FILE` "
            "(the shipped defaults are in collateral/defaults/)"
        )
    stale_days = int(prices.value(policy, "stale_after_days", "tags"))
    window = int(prices.value(policy, "stale_after_days", "imagery"))
    return {
        "loan": {
            "loan_id": loan["loan_id"],
            "borrower": loan["borrower"],
            "branch": loan["branch"],
            "principal_cny": loan["principal_cny"],
            "term_months": loan.get("term_months"),
            "annual_rate": loan.get("annual_rate"),
            "start": parse_time(loan["created_at"]).date().isoformat()
            if isinstance(loan["created_at"], str)
            else loan["created_at"].date().isoformat(),
        },
        "as_of": as_of.isoformat(),
        "prices": price_table,
        "policy": policy,
        "parcels": [parcel_evidence(engine, pid, as_of, window) for pid in loan["parcel_ids"]],
        "herds": [herd_evidence(engine, h, as_of, stale_days) for h in loan["herds"]],
        "carbon_table": prices.table_in_force(engine, "carbon", on),
        "carbon": [
            {**pledge, "parcel": parcel_evidence(engine, pledge["parcel_id"], as_of, window)}
            for pledge in loan.get("carbon") or []
        ],
        "solar_table": prices.table_in_force(engine, "solar", on),
        "solar": [
            {"plant_id": s["plant_id"], "record": plant_record(engine, s["plant_id"], as_of)}
            for s in loan.get("solar") or []
        ],
        "previous": previous,
        "code_version": CODE_VERSION,
    }


def parcel_evidence(engine: Engine, parcel_id: str, as_of: datetime, window_days: int = 60) -> dict:
    """A parcel's stored profile at ``as_of`` as valuation evidence; ``window_days`` (the
    policy's imagery staleness) is the window its clear images are counted over. Reads the
    profile's newest dates, never its whole record: a valuation costs the same after ten
    years of scenes as after one. ``scenes_used`` lists the clear scenes of that window
    (and the latest before it)."""
    parcel = rs_store.get_parcel(engine, parcel_id)
    if parcel is None:
        raise ValuationError(f"parcel {parcel_id} is not registered")
    if window_days > profiles.RECENT_CLEAR_DAYS:
        raise ValuationError(
            f"the policy's imagery window of {window_days} days is longer than the "
            f"{profiles.RECENT_CLEAR_DAYS:.0f} days of clear dates a profile keeps at hand"
        )
    head = profile_heads(engine, parcel_id, as_of)
    # [scene id, day] of the clear dates of the window and the one before it, oldest first
    recent = [] if head is None else head["clear"]
    inside = [c for c in recent if c[1] > profiles.to_days(as_of) - window_days]
    clear = recent[-len(inside) - 1 :] if recent else []
    newest = None if head is None else head["newest"]
    geometry = shapely.geometry.shape(json.loads(parcel["geometry_geojson"]))
    centroid = geometry.centroid
    attributes = parcel["attributes"]
    return {
        "parcel_id": parcel_id,
        "kind": parcel["kind"],
        "owner": parcel["owner"],
        "area_ha": parcel["area_ha"],
        "attributes": attributes,
        "county": attributes.get("county"),
        "centroid": [round(centroid.x, 6), round(centroid.y, 6)],
        "health_index": None if head is None else head["health_index"],
        "anomaly_z": None if head is None else head["anomaly_z"],
        "latest_clear_at": None if newest is None else head["newest_at"].isoformat(),
        "latest_clear_scene": None if newest is None else newest.scene_id,
        "clear_images": 0 if head is None else head["clear_count"],
        "sampling": profiles.sampling(
            np.array([day for _, day in clear]),
            profiles.to_days(as_of),
            window_days,
        ),
        "suspected": [
            {k: s.get(k) for k in ("start", "state", "affected_ha", "reason", "reason_coded")}
            for s in ([] if head is None else head["suspected"])
            if parse_time(s["start"]) > as_of - timedelta(days=window_days)
            or s["state"] == "pending"
        ],
        "scenes_used": [[scene_id, profiles.to_date(day).isoformat()] for scene_id, day in clear],
        "open_disturbances": [
            {k: e[k] for k in ("start", "confirmed", "severity", "affected_ha")}
            for e in ([] if head is None else head["events"])
            if e["state"] == "open"
        ],
    }


def herd_evidence(engine: Engine, herd: dict, as_of: datetime, stale_days: int) -> dict:
    farm = bio_store.get_farm(engine, herd["farm_id"])
    if farm is None:
        raise ValuationError(f"farm {herd['farm_id']} is not registered")
    everyone = headcount.herd_animals(engine, herd["farm_id"], as_of)
    categories, tags = herd.get("categories"), herd.get("tag_ids")
    pledged = [
        a
        for a in everyone
        if (categories is None or a["category"] in categories)
        and (tags is None or a["tag_id"] in tags)
    ]
    alive = {a["tag_id"] for a in everyone}
    gone = Said("unverified.not_alive", farm=herd["farm_id"])
    missing = [
        {"tag_id": t, "reason": str(gone), "reason_coded": gone.coded()}
        for t in (tags or [])
        if t not in alive
    ]
    recent = bio_store.tag_states(
        engine, as_of - timedelta(days=stale_days), as_of, [a["tag_id"] for a in everyone]
    )
    seen = [s["last_seen"] for s in recent.values() if s.get("last_seen")]
    fence = bio_store.geofence(farm)
    return {
        "farm_id": herd["farm_id"],
        "categories": categories,
        "tag_ids": tags,
        "centroid": [round(fence.centroid.x, 6), round(fence.centroid.y, 6)],
        "county": None,
        "last_reading_at": max(seen).isoformat() if seen else None,
        "animals": [
            {
                "tag_id": a["tag_id"],
                "category": a["category"],
                "parity": a["parity"],
                "lactation": a["lactation"],
                "weight_kg": a["weight_kg"],
                "weight_at": a["weight_at"].isoformat() if a["weight_at"] else None,
                "last_seen": a["last_seen"].isoformat() if a["last_seen"] else None,
                "reason": a["reason"],
                "reason_coded": coded(a["reason"]),
            }
            for a in pledged
        ],
        "missing_tags": missing,
    }


def parcel_carbon(engine: Engine, parcel_id: str, as_of: datetime, since: datetime | None) -> dict:
    """A forest parcel's carbon account at ``as_of`` (carbon.carbon_account on its evidence
    and the carbon table then in force): stock, annual sequestration, the increment since
    ``since``, the carbon reversed, every factor. CarbonError says why it cannot be made."""
    table = prices.table_in_force(engine, "carbon", as_of.date())
    if table is None:
        raise CarbonError(
            f"no carbon table in force on {as_of.date()}: import one with `agri prices import`"
        )
    parcel = rs_store.get_parcel(engine, parcel_id)
    if parcel is None:
        raise ValuationError(f"parcel {parcel_id} is not registered")
    if parcel["kind"] != "forest":
        raise CarbonError(f"parcel {parcel_id} is a {parcel['kind']}, not a forest")
    window = int(
        prices.value(
            prices.table_in_force(engine, "policy", as_of.date()), "stale_after_days", "imagery"
        )
    )
    evidence = parcel_evidence(engine, parcel_id, as_of, window)
    return carbon_account(evidence, table, as_of, since)
