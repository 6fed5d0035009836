"""Building and storing parcel profiles: the I/O around the pure functions of profiles.py."""

import json
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

import numpy as np
import shapely
from sqlalchemy import Connection, Engine

from agri_common.rows import jsonable
from agri_common.wording import Said
from remote_sensing import disturbances, profiles, store
from remote_sensing.parcel_pixels import parcel_pixel_stack

# no scene's COG is being written (scene id -> the write under way; see PixelEvidence)
NOTHING_PENDING: Mapping[str, Future] = MappingProxyType({})


def peer_statistics(
    bind: store.Bind, as_of: datetime | None = None
) -> dict[str, dict[str, profiles.Peer]]:
    """kind -> scene_id -> Peer (median, spread, count, day, shared dip) of clear parcels."""
    return profiles.peer_table(store.clear_means(bind, profiles.MIN_VALID_FRACTION, as_of))


def parcel_profile(
    engine: Engine,
    parcel_id: str,
    as_of: datetime | None = None,
    peers: dict[str, dict[str, profiles.Peer]] | None = None,
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
    peers: dict[str, dict[str, profiles.Peer]],
    ndvi_paths: dict[str, str],
    as_of: datetime | None = None,
    min_valid_fraction: float = profiles.MIN_VALID_FRACTION,
    pending: Mapping[str, Future] = NOTHING_PENDING,
) -> dict:
    """parcel_profile from what it reads: one parcel's row and observations, the peers'
    statistics and the scenes' NDVI files (read only to measure a disturbance's area;
    ``pending``: scene id -> the write of its file, still under way, to wait for)."""
    parcel_id = parcel["parcel_id"]
    observations = [o for o in observations if as_of is None or o["acquired_at"] <= as_of]
    series = profiles.clean_series(observations, min_valid_fraction)
    fit = ~series.outlier
    grid, smoothed = profiles.whittaker(series.days[fit], series.ndvi[fit], series.weights[fit])
    pixels = PixelEvidence(series, parcel, ndvi_paths, pending)
    baseline, found = profiles.analyse(
        series,
        peers.get(parcel["kind"], {}),
        parcel["kind"],
        pixels.affected_ha,
        parcel["area_ha"],
    )
    anomaly = baseline.anomaly(series.ndvi)
    judged = np.flatnonzero(fit & np.isfinite(baseline.expected))
    anomaly_z = float(anomaly[judged[-1]]) if len(judged) else None
    effective_as_of = as_of or (observations[-1]["acquired_at"] if observations else None)
    sampling = (
        profiles.sampling(series.days[fit], profiles.to_days(effective_as_of))
        if effective_as_of is not None
        else None
    )
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
                "allowance": round(float(baseline.allowed()[i]), 4),
                "allowance_source": baseline.allowance_source[i],
                "z": round(float((series.ndvi[i] - baseline.expected[i]) / baseline.spread[i]), 3),
                "anomaly_z": round(float(anomaly[i]), 3),
                "source": baseline.source[i],
            }
            for i in range(len(series.days))
            if np.isfinite(baseline.expected[i])
        ],
        "outliers": [series.scene_ids[i] for i in np.flatnonzero(series.outlier)],
        "seasons": seasons,
        "health_index": profiles.health_index(anomaly_z),
        "anomaly_z": None if anomaly_z is None else round(anomaly_z, 3),
        "sampling": sampling,
        "events": [_event_json(e, series) for e in found if e.confirmed_index is not None],
        "suspected": [_suspected_json(e, series) for e in found if e.confirmed_index is None],
    }


# Profiles built and stored per transaction by update_profiles: one commit per parcel was
# 60 % of a 10,000-parcel scene's job; one commit for all would hold the write lock for as
# long as the building takes.
PROFILE_CHUNK = 500
# At most this many profiles are built inside a scene's transaction while its COG is
# written (profiles_while_writing): they wait in memory for the commit, and SQLite's write
# lock is held meanwhile. A township portfolio's 2,000 take about as long as its COG.
PROFILES_WHILE_WRITING = 2_000


def update_profiles(engine: Engine, parcel_ids: list[str]) -> dict[str, str]:
    """Rebuild and store the profiles (summary and events) of the given parcels.

    A parcel that fails (bad geometry, unreadable file, a row the database refuses) is
    reported (parcel id -> error) and the others are still updated.
    """
    failures: dict[str, str] = {}
    for built, failed in built_by_chunk(engine, parcel_ids):
        failures.update(failed)
        failures.update(store_profiles(engine, built))
    return failures


def profiles_while_writing(
    conn: Connection, parcel_ids: list[str], pending: Mapping[str, Future]
) -> dict[str, dict]:
    """Inside a scene's transaction, once its observations are written and while its
    COG is (``pending``: scene id -> that write): the profiles of the first
    PROFILES_WHILE_WRITING of ``parcel_ids``, built from what the transaction sees, for
    store_profiles once it has committed.

    The COG's compression leaves the GIL and the profiles are Python: built here they
    take the time the commit waits for the file anyway (0.4-0.7 s of a township's sync).
    One that needs the new scene's pixels (a disturbance's area) waits for its file. A
    parcel that fails here is simply not returned: update_profiles, after the commit,
    builds it again and reports why.
    """
    wanted = parcel_ids[:PROFILES_WHILE_WRITING]
    built: dict[str, dict] = {}
    for chunk, _failed in built_by_chunk(conn, wanted, pending):
        built.update(chunk)
    return built


def built_by_chunk(
    bind: store.Bind,
    parcel_ids: list[str],
    pending: Mapping[str, Future] = NOTHING_PENDING,
) -> Iterator[tuple[dict[str, dict], dict[str, str]]]:
    """The profiles of ``parcel_ids`` from what ``bind`` reads, PROFILE_CHUNK parcels at a
    time (two queries a chunk, the peers and NDVI paths once): per chunk, parcel id ->
    document, and parcel id -> error for those that failed (one parcel's bad geometry or
    file must not stop the rest)."""
    peers = peer_statistics(bind)
    ndvi_paths = store.scene_ndvi_paths(bind)
    for start in range(0, len(parcel_ids), PROFILE_CHUNK):
        chunk = parcel_ids[start : start + PROFILE_CHUNK]
        parcels = store.get_parcels(bind, chunk)
        observations = store.observations_by_parcel(bind, chunk)
        built: dict[str, dict] = {}
        failures: dict[str, str] = {}
        for parcel_id in chunk:
            try:
                built[parcel_id] = build_profile(
                    parcels[parcel_id],
                    observations.get(parcel_id, []),
                    peers,
                    ndvi_paths,
                    pending=pending,
                )
            except Exception as exc:  # reported; the others are built
                failures[parcel_id] = _failure(exc)
        yield built, failures


def store_profiles(engine: Engine, built: dict[str, dict]) -> dict[str, str]:
    """Store built profiles in one transaction; if the database refuses it, parcel by
    parcel, so only the parcel it refuses is left out (parcel id -> error)."""
    if not built:
        return {}
    try:
        store.save_profiles(engine, built)
        return {}
    except Exception:  # find the parcel the database refuses; store the others
        failures: dict[str, str] = {}
        for parcel_id, profile in built.items():
            try:
                store.save_profiles(engine, {parcel_id: profile})
            except Exception as exc:
                failures[parcel_id] = _failure(exc)
        return failures


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _event_json(event: disturbances.Disturbance, series: profiles.Series) -> dict:
    day = lambda i: profiles.to_date(series.days[i])  # noqa: E731
    start, confirmed = day(event.start_index), day(event.confirmed_index)
    end = None if event.end_index is None else day(event.end_index)
    return {
        "kind": "disturbance",
        "start": start.isoformat(),
        "end": end.isoformat() if end else None,
        "confirmed": confirmed.isoformat(),
        "detection_delay_days": (confirmed - start).days,
        "last_normal": None
        if event.previous_index is None
        else day(event.previous_index).isoformat(),
        "low_dates": event.low_dates,
        "severity": round(event.severity, 4),
        "affected_ha": event.affected_ha,
        "state": event.state,
    }


def _suspected_json(event: disturbances.Disturbance, series: profiles.Series) -> dict:
    """A low run nobody could confirm or rule out, with the reason in an officer's words."""
    day = lambda i: profiles.to_date(series.days[i])  # noqa: E731
    low = event.event_indices
    if event.next_index is None:
        reason = Said("suspected.waiting", count=len(low), since=day(low[0]))
    else:
        gap = (day(event.next_index) - day(low[-1])).days
        reason = Said("suspected.unclear", count=len(low), since=day(low[0]), gap=gap)
    return {
        "kind": "suspected",
        "start": day(low[0]).isoformat(),
        "last_low": day(low[-1]).isoformat(),
        "next_clear": None if event.next_index is None else day(event.next_index).isoformat(),
        "low_dates": len(low),
        "severity": round(event.severity, 4),
        "affected_ha": event.affected_ha,
        "state": event.state,
        "reason": str(reason),
        "reason_coded": reason.coded(),  # the officer's language (agri_common.wording)
    }


class PixelEvidence:
    """Where a parcel's own pixels fell, from the scenes' NDVI COGs: each pixel's level
    on the dates before a run (their median) against the first of its low dates (deepest
    first) that saw it.
    Remembered per question: every year's pass of the detector re-walks the series."""

    def __init__(
        self,
        series: profiles.Series,
        parcel: dict,
        ndvi_paths: dict[str, str],
        pending: Mapping[str, Future] = NOTHING_PENDING,
    ):
        self.series, self.parcel, self.ndvi_paths = series, parcel, ndvi_paths
        self.pending = pending  # scene id -> the write of its COG, still under way
        self.seen: dict[tuple, float | None] = {}

    def affected_ha(self, before: list[int], low: list[int], pixel_drop: float) -> float | None:
        key = (tuple(before), tuple(low), round(pixel_drop, 6))
        if key not in self.seen:
            self.seen[key] = self._measure(before, low, pixel_drop)
        return self.seen[key]

    def _measure(self, before: list[int], low: list[int], pixel_drop: float) -> float | None:
        scenes = [self.series.scene_ids[i] for i in [*before, *low]]
        for scene in scenes:
            if scene in self.pending:  # its file is whole once written (or the write raises)
                self.pending[scene].result()
        paths = [self.ndvi_paths.get(s) for s in scenes]
        if any(p is None or not Path(p).exists() for p in paths):
            return None
        stack, coverage, pixel_area = parcel_pixel_stack(
            [Path(p) for p in paths],
            shapely.geometry.shape(json.loads(self.parcel["geometry_geojson"])),
        )
        pre = disturbances.pixel_levels(stack[: len(before)])
        post = disturbances.first_finite(stack[len(before) :])
        return round(disturbances.affected_area_ha(pre, post, coverage, pixel_area, pixel_drop), 4)
