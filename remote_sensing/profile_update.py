"""Building and storing parcel profiles: the I/O around the pure functions of profiles.py."""

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import shapely
from sqlalchemy import Engine

from agri_common.rows import jsonable
from remote_sensing import profiles, store
from remote_sensing.parcel_pixels import parcel_pixel_stack

PRE_EVENT_DATES = 3  # clear dates before an event that define each pixel's own level


def peer_statistics(
    engine: Engine, as_of: datetime | None = None
) -> dict[str, dict[str, tuple[float, float, int]]]:
    """kind -> scene_id -> (median NDVI, robust spread, count) of clear parcels in that scene."""
    groups: dict[tuple[str, str], list[float]] = {}
    for kind, scene_id, ndvi in store.clear_means(engine, profiles.MIN_VALID_FRACTION, as_of):
        groups.setdefault((kind, scene_id), []).append(ndvi)
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for (kind, scene_id), values in groups.items():
        arr = np.asarray(values)
        median = float(np.median(arr))
        spread = 1.4826 * float(np.median(np.abs(arr - median)))
        out.setdefault(kind, {})[scene_id] = (median, spread, len(arr))
    return out


def parcel_profile(
    engine: Engine,
    parcel_id: str,
    as_of: datetime | None = None,
    peers: dict[str, dict[str, tuple[float, float, int]]] | None = None,
    min_valid_fraction: float = profiles.MIN_VALID_FRACTION,
) -> dict:
    """The profile document of one parcel from data acquired up to ``as_of`` (inclusive).

    Observations that saw less than ``min_valid_fraction`` of the parcel are shown but not
    used. ``baseline`` lists, per clear date, the expected NDVI, its spread and the z-score.
    """
    parcel = store.get_parcel(engine, parcel_id)
    if parcel is None:
        raise KeyError(parcel_id)
    if peers is None:
        peers = peer_statistics(engine, as_of)
    return build_profile(
        parcel,
        store.parcel_observations(engine, parcel_id),
        peers,
        store.scene_ndvi_paths(engine),
        as_of,
        min_valid_fraction,
    )


def build_profile(
    parcel: dict,
    observations: list[dict],
    peers: dict[str, dict[str, tuple[float, float, int]]],
    ndvi_paths: dict[str, str],
    as_of: datetime | None = None,
    min_valid_fraction: float = profiles.MIN_VALID_FRACTION,
) -> dict:
    """parcel_profile from what it reads: one parcel's row and observations, the peers'
    statistics and the scenes' NDVI files (read only to measure a disturbance's area)."""
    parcel_id = parcel["parcel_id"]
    observations = [o for o in observations if as_of is None or o["acquired_at"] <= as_of]
    series = profiles.clean_series(observations, min_valid_fraction)
    fit = ~series.outlier
    grid, smoothed = profiles.whittaker(series.days[fit], series.ndvi[fit], series.weights[fit])
    baseline, events = profiles.analyse(series, peers.get(parcel["kind"], {}))

    judged = np.flatnonzero(fit & np.isfinite(baseline.expected))
    anomaly_z = None
    if len(judged):
        last = judged[-1]
        anomaly_z = float((series.ndvi[last] - baseline.expected[last]) / baseline.spread[last])
    effective_as_of = as_of or (observations[-1]["acquired_at"] if observations else None)
    seasons = profiles.seasons(grid, smoothed)
    if parcel["kind"] == "tea_garden":
        dips = profiles.dips(series, grid, smoothed)
        for season in seasons:
            season["dips"] = [d for d in dips if d["date"].startswith(str(season["year"]))]
    return {
        "parcel_id": parcel_id,
        "kind": parcel["kind"],
        "area_ha": parcel["area_ha"],
        "as_of": effective_as_of.isoformat() if effective_as_of else None,
        "observations": [jsonable(o) for o in observations],
        "smoothed": [
            {"date": profiles.to_date(d).isoformat(), "ndvi": round(float(v), 4)}
            for d, v in zip(grid, smoothed, strict=True)
        ],
        "baseline": [
            {
                "date": profiles.to_date(series.days[i]).isoformat(),
                "expected": round(float(baseline.expected[i]), 4),
                "spread": round(float(baseline.spread[i]), 4),
                "z": round(float((series.ndvi[i] - baseline.expected[i]) / baseline.spread[i]), 3),
                "source": baseline.source[i],
            }
            for i in range(len(series.days))
            if np.isfinite(baseline.expected[i])
        ],
        "outliers": [series.scene_ids[i] for i in np.flatnonzero(series.outlier)],
        "seasons": seasons,
        "health_index": profiles.health_index(anomaly_z),
        "anomaly_z": None if anomaly_z is None else round(anomaly_z, 3),
        "events": [_event_json(e, series, parcel, ndvi_paths) for e in events],
    }


# Profiles built and stored per transaction by update_profiles: one commit per parcel was
# 60 % of a 10,000-parcel scene's job; one commit for all would hold the write lock for as
# long as the building takes.
PROFILE_CHUNK = 500


def update_profiles(engine: Engine, parcel_ids: list[str]) -> dict[str, str]:
    """Rebuild and store the profiles (summary and events) of the given parcels.

    A parcel that fails (bad geometry, unreadable file, a row the database refuses) is
    reported (parcel id -> error) and the others are still updated.
    """
    peers = peer_statistics(engine)
    ndvi_paths = store.scene_ndvi_paths(engine)
    failures: dict[str, str] = {}
    for start in range(0, len(parcel_ids), PROFILE_CHUNK):
        chunk = parcel_ids[start : start + PROFILE_CHUNK]
        parcels = store.get_parcels(engine, chunk)
        observations = store.observations_by_parcel(engine, chunk)
        built = {}
        for parcel_id in chunk:
            try:
                parcel = parcels[parcel_id]
                built[parcel_id] = build_profile(
                    parcel, observations.get(parcel_id, []), peers, ndvi_paths
                )
            except Exception as exc:  # one parcel's bad geometry or file must not stop the rest
                failures[parcel_id] = _failure(exc)
        if not built:
            continue
        try:
            store.save_profiles(engine, built)
        except Exception:  # find the parcel the database refuses; store the others
            for parcel_id, profile in built.items():
                try:
                    store.save_profiles(engine, {parcel_id: profile})
                except Exception as exc:
                    failures[parcel_id] = _failure(exc)
    return failures


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _event_json(event, series, parcel: dict, ndvi_paths: dict[str, str]) -> dict:
    start = profiles.to_date(series.days[event.start_index])
    end = None if event.end_index is None else profiles.to_date(series.days[event.end_index])
    return {
        "kind": "disturbance",
        "start": start.isoformat(),
        "end": end.isoformat() if end else None,
        "confirmed": profiles.to_date(series.days[event.confirmed_index]).isoformat(),
        "severity": round(event.severity, 4),
        "affected_ha": _affected_ha(event, series, parcel, ndvi_paths),
        "state": event.state,
    }


def _affected_ha(event, series, parcel: dict, ndvi_paths: dict[str, str]) -> float | None:
    """Area whose own pixels fell: pre-event level vs the event's deepest clear date."""
    before = [i for i in range(event.start_index) if not series.outlier[i]][-PRE_EVENT_DATES:]
    deepest = sorted(event.event_indices, key=lambda i: series.ndvi[i])
    scenes = [series.scene_ids[i] for i in [*before, *deepest]]
    if not before or any(s not in ndvi_paths or not Path(ndvi_paths[s]).exists() for s in scenes):
        return None
    stack, coverage, pixel_area = parcel_pixel_stack(
        [Path(ndvi_paths[s]) for s in scenes],
        shapely.geometry.shape(json.loads(parcel["geometry_geojson"])),
    )
    pre = profiles.pixel_levels(stack[: len(before)])
    post = profiles.first_finite(stack[len(before) :])
    return round(profiles.affected_area_ha(pre, post, coverage, pixel_area), 4)
