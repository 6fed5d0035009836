"""A parcel's profile as its readers see it: the document the API, the chart, the PDF and
the CLI show (observations, the smoothed curve and seasons over the rows returned, each
clear date's baseline, health, sampling) and the view of its disturbances stored with
each date. Pure: rows in, JSON values out."""

import math
from dataclasses import replace
from datetime import datetime

import numpy as np

from agri_common.rows import jsonable
from agri_common.wording import Said
from remote_sensing.profiles import disturbances, profile_state, profiles

EMPTY_VIEW: dict = {"events": [], "suspected": []}


def view_json(found: list[disturbances.Disturbance]) -> dict:
    """The disturbances of a profile as it documents them: confirmed events, and the
    suspected runs nobody could confirm or rule out."""
    return {
        "events": [_event_json(e) for e in found if e.confirmed_index is not None],
        "suspected": [_suspected_json(e) for e in found if e.confirmed_index is None],
    }


def document(
    parcel: dict,
    observations: list[dict],
    rows: list[profile_state.DateRow],
    view: dict,
    as_of: datetime | None,
) -> dict:
    """The profile document from a parcel's observations up to ``as_of``, its stored
    dates up to then (the newest taken as no outlier: nothing after it says so) and the
    view as of the newest. ``baseline`` lists, per clear date, the expected NDVI, its
    spread and the z-score."""
    if rows and rows[-1].outlier:
        rows = [*rows[:-1], replace(rows[-1], outlier=False)]
    fit = [r for r in rows if not r.outlier]
    days = np.array([r.day for r in fit], dtype=float)
    grid, smoothed = profiles.whittaker(
        days, np.array([r.ndvi for r in fit], dtype=float), np.array([r.weight for r in fit])
    )
    judged = [r for r in fit if math.isfinite(r.expected)]
    anomaly_z = judged[-1].anomaly() if judged else None
    effective_as_of = as_of or (observations[-1]["acquired_at"] if observations else None)
    sampling = (
        profiles.sampling(days, profiles.to_days(effective_as_of))
        if effective_as_of is not None
        else None
    )
    seasons = profiles.seasons(grid, smoothed)
    if parcel["kind"] == "tea_garden":
        dips = profiles.dips(_series(rows), grid, smoothed)
        for season in seasons:
            season["dips"] = [d for d in dips if d["date"].startswith(str(season["year"]))]
    return {
        "parcel_id": parcel["parcel_id"],
        "kind": parcel["kind"],
        "area_ha": parcel["area_ha"],
        "as_of": effective_as_of.isoformat() if effective_as_of else None,
        "observations": [jsonable(o) for o in observations],
        "smoothed": [
            {"date": profiles.to_date(d).isoformat(), "ndvi": round(float(v), 4)}
            for d, v in zip(grid, smoothed, strict=True)
        ],
        "baseline": [baseline_json(r) for r in rows if math.isfinite(r.expected)],
        "outliers": [r.scene_id for r in rows if r.outlier],
        "seasons": seasons,
        "health_index": profiles.health_index(anomaly_z),
        "anomaly_z": None if anomaly_z is None else round(anomaly_z, 3),
        "sampling": sampling,
        "events": view["events"],
        "suspected": view["suspected"],
    }


def _series(rows: list[profile_state.DateRow]) -> profiles.Series:
    return profiles.Series(
        np.array([r.day for r in rows], dtype=float),
        np.array([r.ndvi for r in rows], dtype=float),
        np.array([r.weight for r in rows], dtype=float),
        tuple(r.scene_id for r in rows),
        np.array([r.outlier for r in rows], dtype=bool),
    )


def baseline_json(row: profile_state.DateRow) -> dict:
    return {
        "date": profiles.to_date(row.day).isoformat(),
        "expected": round(row.expected, 4),
        "spread": round(row.spread, 4),
        "allowance": round(row.allowance, 4),
        "allowance_source": row.allowance_source,
        "z": round((row.ndvi - row.expected) / row.spread, 3),
        "anomaly_z": round(row.anomaly(), 3),
        "source": row.source,
    }


def _event_json(event: disturbances.Disturbance) -> dict:
    day = lambda name: profiles.to_date(event.days[name])  # noqa: E731
    start, confirmed = day("start"), day("confirmed")
    end = day("end") if "end" in event.days else None
    return {
        "kind": "disturbance",
        "start": start.isoformat(),
        "end": end.isoformat() if end else None,
        "confirmed": confirmed.isoformat(),
        "detection_delay_days": (confirmed - start).days,
        "last_normal": day("previous").isoformat() if "previous" in event.days else None,
        "low_dates": event.low_dates,
        "severity": round(event.severity, 4),
        "affected_ha": event.affected_ha,
        "state": event.state,
    }


def _suspected_json(event: disturbances.Disturbance) -> dict:
    """A low run nobody could confirm or rule out, with the reason in an officer's words."""
    day = lambda name: profiles.to_date(event.days[name])  # noqa: E731
    first, last = day("start"), day("last_low")
    if event.next_index is None:
        reason = Said("suspected.waiting", count=event.low_dates, since=first)
    else:
        gap = (day("next") - last).days
        reason = Said("suspected.unclear", count=event.low_dates, since=first, gap=gap)
    return {
        "kind": "suspected",
        "start": first.isoformat(),
        "last_low": last.isoformat(),
        "next_clear": None if event.next_index is None else day("next").isoformat(),
        "low_dates": event.low_dates,
        "severity": round(event.severity, 4),
        "affected_ha": event.affected_ha,
        "state": event.state,
        "reason": str(reason),
        "reason_coded": reason.coded(),  # the officer's language (agri_common.wording)
    }
