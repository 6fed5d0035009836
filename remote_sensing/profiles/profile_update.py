"""Profiles kept up to date and read: the I/O around profile_state.ProfileState.

A parcel's profile is stored date by date (profile_store). A new scene advances the
profiles of the parcels it saw from their stored state: it settles each one's newest
date, judges the new one and continues the detector's walk, so its cost does not grow
with the record. A scene older than a parcel's newest date (a late delivery, a
reprocessed copy, Landsat after Sentinel-2), or a recent scene whose peers' dip became
final, replays the parcel's dates from there. ``update_profiles`` rebuilds parcels from
their first date by the same steps (``agri profiles rebuild``): the two give the same
rows. Reading a profile (``parcel_profile``) reads the stored rows; it computes nothing
but the chart's smoothed curve and seasons over what it returns.
"""

import json
import math
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import numpy as np
import shapely
from sqlalchemy import Connection, Engine, select

from agri_common.rows import jsonable
from remote_sensing import store
from remote_sensing.parcel_pixels import parcel_pixel_stack
from remote_sensing.profiles import (
    disturbances,
    profile_document,
    profile_state,
    profile_store,
    profiles,
)
from remote_sensing.tables import scenes as scenes_table

# no scene's COG is being written (scene id -> the write under way; see PixelEvidence)
NOTHING_PENDING: Mapping[str, Future] = MappingProxyType({})
# Parcels replayed and stored per statement batch.
PROFILE_CHUNK = 400


# --- building (the state machine over clear dates) -------------------------------------


def peer_statistics(
    bind: store.Bind,
    as_of: datetime | None = None,
    min_valid_fraction: float = profiles.MIN_VALID_FRACTION,
) -> dict[str, dict[str, profiles.Peer]]:
    """kind -> scene_id -> Peer of every scene up to ``as_of``, computed from the stored
    observations (what the stored peers are, for a profile built from scratch)."""
    return profiles.peer_table(store.clear_means(bind, min_valid_fraction, as_of))


def clear(observations: list[dict], min_valid_fraction: float = profiles.MIN_VALID_FRACTION):
    """The observations a profile takes, in order: enough of the parcel seen, a number."""
    return [
        o
        for o in sorted(observations, key=lambda o: (o["acquired_at"], o["scene_id"]))
        if o["ndvi_mean"] is not None
        and math.isfinite(o["ndvi_mean"])
        and o["valid_fraction"] >= min_valid_fraction
    ]


def advance(
    state: profile_state.ProfileState,
    dates: list[dict],
    peers: Mapping[str, profiles.Peer],
    area_of: disturbances.AreaOf | None,
    tables: dict[int, profile_state.SeasonTable] | None = None,
    settled: list[dict] | None = None,
) -> list[dict]:
    """Take ``dates`` (clear observations later than the state's) in turn; per date, what
    is stored: its row, the state once the next date settled it (None for the newest) and
    its view (the disturbances as of that date). A newest date the state already held
    unsettled is settled by the first of them: ``settled`` then receives its row and
    state."""
    out: list[dict] = []
    prior = state.count - 1 if state.settled < state.count else None
    for o in dates:
        row = state.add(
            o["scene_id"],
            profiles.to_days(o["acquired_at"]),
            float(o["ndvi_mean"]),
            float(o["valid_fraction"]),
            peers.get(o["scene_id"]),
            area_of,
            tables,
        )
        if out:  # settled now: its outlier flag is final and the walk has taken it
            out[-1]["row"] = state.rows[out[-1]["row"].seq]
            out[-1]["state"] = state.as_json()
        elif prior is not None and settled is not None:
            settled.append({"row": state.rows[prior], "state": state.as_json()})
        if tables is not None and state.table is not None:
            tables.setdefault(state.table.year, state.table)
        out.append(
            {
                "row": row,
                "acquired_at": o["acquired_at"],
                "state": None,
                "view": profile_document.view_json(state.events(area_of)),
            }
        )
    return out


def build_profile(
    parcel: dict,
    observations: list[dict],
    peers: dict[str, dict[str, profiles.Peer]],
    ndvi_paths: dict[str, str],
    as_of: datetime | None = None,
    min_valid_fraction: float = profiles.MIN_VALID_FRACTION,
    pending: Mapping[str, Future] = NOTHING_PENDING,
) -> dict:
    """A parcel's profile document built from scratch: every clear date up to ``as_of``
    taken in turn, as the imagery job takes them scene by scene. ``peers``: kind -> scene
    id -> Peer; ``ndvi_paths``: scene id -> NDVI COG (read only to measure where pixels
    fell); ``pending``: scene id -> the write of its COG, still under way."""
    observations = [o for o in observations if as_of is None or o["acquired_at"] <= as_of]
    state = profile_state.ProfileState(parcel["kind"], parcel["area_ha"])
    pixels = PixelEvidence(state, parcel, ndvi_paths.get, pending)
    taken = advance(
        state,
        clear(observations, min_valid_fraction),
        peers.get(parcel["kind"], {}),
        pixels.affected_ha,
    )
    rows = [t["row"] for t in taken]
    return profile_document.document(
        parcel,
        observations,
        rows,
        taken[-1]["view"] if taken else profile_document.EMPTY_VIEW,
        as_of,
    )


# --- reading -----------------------------------------------------------------------------


def parcel_profile(
    engine: Engine,
    parcel_id: str,
    as_of: datetime | None = None,
    min_valid_fraction: float = profiles.MIN_VALID_FRACTION,
) -> dict:
    """The profile document of one parcel from data acquired up to ``as_of`` (inclusive),
    read from its stored dates. Observations that saw less than ``min_valid_fraction`` of
    the parcel are shown but not used; a fraction other than the one the stored profiles
    use builds the profile from scratch (peers included), as asked."""
    parcel = store.get_parcel(engine, parcel_id)
    if parcel is None:
        raise KeyError(parcel_id)
    observations = [
        o
        for o in store.parcel_observations(engine, parcel_id)
        if as_of is None or o["acquired_at"] <= as_of
    ]
    if min_valid_fraction != profiles.MIN_VALID_FRACTION:
        peers = peer_statistics(engine, as_of, min_valid_fraction)
        ndvi_paths = store.scene_ndvi_paths(engine)
        return build_profile(parcel, observations, peers, ndvi_paths, as_of, min_valid_fraction)
    dates = profile_store.dates_of(engine, parcel_id, as_of)
    rows = [d["row"] for d in dates]
    return profile_document.document(
        parcel,
        observations,
        rows,
        dates[-1]["view"] if dates else profile_document.EMPTY_VIEW,
        as_of,
    )


def profile_heads(bind: store.Bind, parcel_id: str, as_of: datetime | None) -> dict | None:
    """What a valuation reads of a parcel's profile at ``as_of``, without its record: the
    health and anomaly of the newest judged date, the view (events, suspected), the clear
    dates of the last RECENT_CLEAR_DAYS (with the one before them) as [scene id, day],
    and how many clear dates there are in all (outliers left out, the newest counted).
    None for a parcel never seen clear. Two rows, whatever the record."""
    newest = profile_store.newest_dates(bind, parcel_id, as_of)
    if not newest:
        return None
    row, view, _, acquired_at = newest[-1]
    state = profile_state.ProfileState("", None)
    if len(newest) == 2 and newest[0][2] is not None:
        state.resume(newest[0][2], row.seq)
    elif len(newest) == 2:  # an old date: its state is no longer kept (STATE_DATES_KEPT)
        state.recent_clear = profile_store.recent_clear(bind, parcel_id, row.seq, row.day)
    state.put(row)
    state.count = row.seq + 1
    judged = row if math.isfinite(row.expected) else None
    judged = judged or profile_store.newest_judged(bind, parcel_id, as_of)
    anomaly = None if judged is None else judged.anomaly()
    return {
        "health_index": profiles.health_index(anomaly),
        "anomaly_z": None if anomaly is None else round(anomaly, 3),
        "clear": state.recent(),
        "clear_count": row.clear_dates,
        "newest": row,
        "newest_at": acquired_at,
        "events": view["events"],
        "suspected": view["suspected"],
    }


# --- keeping them up to date -------------------------------------------------------------


def update_profiles(
    engine: Engine, parcel_ids: list[str], since: datetime | None = None
) -> dict[str, str]:
    """Rebuild the stored profiles of the given parcels from their first clear date, or
    replay them from ``since`` (the peers of scenes that have none stored are computed
    first, and the parcels judged on the dips they changed are replayed from there). A
    parcel that fails (an unknown parcel, an unreadable file, a row the database refuses)
    is reported (parcel id -> error) and the others are still stored."""
    if not parcel_ids:
        return {}
    with engine.begin() as conn:
        moved = ensure_peers(conn)
    starts: dict[str, datetime | None] = {**moved, **dict.fromkeys(parcel_ids, since)}
    failures: dict[str, str] = {}
    items = list(starts.items())
    for start in range(0, len(items), PROFILE_CHUNK):
        chunk = dict(items[start : start + PROFILE_CHUNK])
        try:
            with engine.begin() as conn:
                failures.update(replay(conn, chunk))
        except Exception:  # find the parcel the database refuses; store the others
            for parcel_id, when in chunk.items():
                try:
                    with engine.begin() as conn:
                        failures.update(replay(conn, {parcel_id: when}))
                except Exception as exc:
                    failures[parcel_id] = _failure(exc)
    return failures


def profiles_while_writing(
    conn: Connection,
    scene_id: str,
    parcel_ids: list[str],
    pending: Mapping[str, Future] = NOTHING_PENDING,
) -> dict[str, str]:
    """Inside a scene's transaction, once its observations are written and while its COG
    is (``pending``: scene id -> that write): the scene's peers, and the profiles of the
    parcels whose observations changed advanced from their stored state (with those
    whose dates in a recent scene were judged on a peers' dip that this scene made
    final). A profile that needs the new scene's pixels (a disturbance's area) waits for
    its file. Everything commits with the scene, or nothing does. parcel id -> error for
    the parcels that failed (left for update_profiles after the run)."""
    acquired_at = conn.execute(
        select(scenes_table.c.acquired_at).where(scenes_table.c.scene_id == scene_id)
    ).scalar()
    since: dict[str, datetime | None] = dict.fromkeys(parcel_ids, acquired_at)
    if acquired_at is not None:
        for parcel_id, when in scene_peers_changed(conn, scene_id, acquired_at).items():
            since[parcel_id] = min(since.get(parcel_id) or when, when)
    return replay(conn, since, pending)


def scene_peers_changed(conn: Connection, scene_id: str, acquired_at: datetime) -> dict:
    """Store the scene's peers per kind and the dips this scene changes (those of the
    PEER_EDGE usable scenes before it become final, later ones move if it came late).
    parcel id -> the earliest of its dates judged on a dip that changed."""
    key = conn.execute(
        select(scenes_table.c.acquisition_key).where(scenes_table.c.scene_id == scene_id)
    ).scalar()
    if key:  # the copies of this acquisition it replaced
        profile_store.drop_peers(conn, profile_store.superseded_with_peers(conn, key))
    changed_scenes: dict[str, datetime] = {}
    means = profile_store.clear_means_of_scene(conn, scene_id, profiles.MIN_VALID_FRACTION)
    kinds = set(means) | set(profile_store.kinds_with_peers(conn, scene_id))
    profile_store.drop_peers(conn, [scene_id])  # stored again below, for the kinds it has
    day = profiles.to_days(acquired_at)
    for kind in sorted(kinds):
        since = acquired_at - timedelta(days=2 * profiles.PEER_WINDOW_DAYS)
        found = profile_store.peers_of_kind(conn, kind, since)
        times = {s: at for s, _, at in found} | {scene_id: acquired_at}
        stored = [(s, p) for s, p, _ in found if s != scene_id]
        if kind in means:
            stored.append((scene_id, profiles.scene_peer(means[kind], day)))
        stored.sort(key=lambda item: (item[1].day, item[0]))
        ids = [s for s, _ in stored]
        old = dict(stored)
        here = next((k for k, (s, _) in enumerate(stored) if s == scene_id), None)
        usable_before = [
            k for k, (_, p) in enumerate(stored) if p.day <= day and p.count >= profiles.MIN_PEERS
        ]
        first = (
            usable_before[-profiles.PEER_EDGE - 1] if len(usable_before) > profiles.PEER_EDGE else 0
        )
        dipped = profiles.with_dips([p for _, p in stored], first)
        moved = [
            (ids[k], dipped[k])
            for k in range(first, len(stored))
            if k == here or dipped[k] != old.get(ids[k])
        ]
        profile_store.save_peers(conn, kind, moved, times)
        for sid, _ in moved:
            changed_scenes[sid] = min(changed_scenes.get(sid, times[sid]), times[sid])
    changed_scenes.pop(scene_id, None)  # its parcels are replayed from it anyway
    return profile_store.parcels_dated_in(conn, changed_scenes)


def ensure_peers(conn: Connection) -> dict[str, datetime]:
    """Compute the peers of every scene processed without them (on a cluster's workers,
    or before the profiles were stored), in time order, and forget those of superseded
    copies. parcel id -> the earliest of its dates judged on a dip that changed."""
    profile_store.drop_peers(conn, profile_store.superseded_with_peers(conn))
    moved: dict[str, datetime] = {}
    for scene_id, acquired_at in profile_store.scenes_without_peers(conn):
        for parcel_id, when in scene_peers_changed(conn, scene_id, acquired_at).items():
            moved[parcel_id] = min(moved.get(parcel_id, when), when)
    return moved


def rebuild_peers(conn: Connection) -> int:
    """Recompute every scene's peers from the stored observations (after a rules change);
    returns how many (scene, kind) rows were stored."""
    means = store.clear_means(conn, profiles.MIN_VALID_FRACTION)
    table = profiles.peer_table(means)
    times = {scene_id: at for _, scene_id, at, _ in means}
    profile_store.clear_peers(conn)
    for kind, scenes in table.items():
        profile_store.save_peers(conn, kind, sorted(scenes.items()), times)
    return sum(len(s) for s in table.values())


def replay(
    conn: Connection,
    since: dict[str, datetime | None],
    pending: Mapping[str, Future] = NOTHING_PENDING,
) -> dict[str, str]:
    """Within the caller's transaction: each parcel's stored dates from ``since`` (None:
    from its first) re-taken with its clear observations from there, and its summary and
    events stored; PROFILE_CHUNK parcels at a time, a few statements a chunk. parcel id
    -> error for those that could not be (the others are)."""
    failures: dict[str, str] = {}
    ids = list(since)
    for start in range(0, len(ids), PROFILE_CHUNK):
        chunk = {pid: since[pid] for pid in ids[start : start + PROFILE_CHUNK]}
        failures.update(_replay_chunk(conn, chunk, pending))
    return failures


def _replay_chunk(
    conn: Connection, since: dict[str, datetime | None], pending: Mapping[str, Future]
) -> dict[str, str]:
    failures: dict[str, str] = {}
    parcels = store.get_parcels(conn, list(since))
    for parcel_id in since:
        if parcel_id not in parcels:
            failures[parcel_id] = _failure(KeyError(parcel_id))
    known = {pid: when for pid, when in since.items() if pid in parcels}
    counts = profile_store.replay_starts(
        conn, {pid: when for pid, when in known.items() if when is not None}
    )
    # a scene later than every stored date continues from the newest, which it settles
    # (its row keeps its judgement and view); any other replays from the date before
    appending = {
        pid
        for pid, (count, start) in counts.items()
        if count > 0 and start == count - 1 and known[pid] is not None
    }
    starts = {pid: counts[pid][1] if known[pid] is not None else 0 for pid in known}
    through = {pid: starts[pid] + 1 for pid in appending}
    resumed = profile_store.resume_rows(conn, starts, through)
    for pid, r in resumed.items():  # no state to continue from: from the first date
        lost = r["state"] is None or starts[pid] - 1 not in r["rows"]
        if starts[pid] > 0 and lost:
            starts[pid], r["state"], r["rows"], r["times"] = 0, None, {}, {}
            appending.discard(pid)
    after: dict[str, tuple | None] = {}
    for pid in known:
        r = resumed[pid]
        if pid in appending:  # after the newest stored date
            after[pid] = (r["times"][starts[pid]], r["rows"][starts[pid]].scene_id)
        else:
            after[pid] = r.get("at") if starts[pid] > 0 else None
    years = {pid: at[0].year for pid, at in after.items() if at is not None}
    tables = profile_store.season_tables_of(conn, years)
    observations = store.observations_after(conn, {pid: at and at[0] for pid, at in after.items()})
    dates = {
        pid: [
            o
            for o in clear(observations.get(pid, []))
            if after[pid] is None or (o["acquired_at"], o["scene_id"]) > after[pid]
        ]
        for pid in known
    }
    peers = profile_store.peers_of_scenes(conn, {o["scene_id"] for d in dates.values() for o in d})
    paths = _PathCache(conn)
    writes: dict[str, tuple] = {}
    states: dict[str, profile_state.ProfileState] = {}
    settled: dict[str, dict] = {}
    for parcel_id in known:
        parcel = parcels[parcel_id]
        try:
            state, taken, made, prior = _replay_one(
                conn,
                parcel,
                starts[parcel_id],
                parcel_id in appending,
                resumed[parcel_id],
                tables.get(parcel_id),
                dates[parcel_id],
                peers.get(parcel["kind"], {}),
                paths,
                pending,
            )
        except Exception as exc:  # reported; the others are advanced
            failures[parcel_id] = _failure(exc)
            continue
        states[parcel_id] = state
        if prior:
            settled[parcel_id] = prior[0]
        stored = [
            profile_store.stored_row(parcel_id, t["row"], t["acquired_at"], t["state"], t["view"])
            for t in taken
        ]
        first = starts[parcel_id] + (1 if parcel_id in appending else 0)
        writes[parcel_id] = (first, stored, made, years.get(parcel_id), taken)
    profile_store.settle_rows(conn, settled)
    profile_store.write_replays(conn, {pid: w[:4] for pid, w in writes.items()})
    profile_store.forget_states(
        conn, {pid: (w[0], states[pid].count - 1) for pid, w in writes.items() if w[1]}
    )
    views = profile_store.views_at(
        conn,
        {pid: states[pid].count - 1 for pid, w in writes.items() if not w[4] and states[pid].count},
    )
    heads = _heads(parcels, states, {pid: w[4] for pid, w in writes.items()}, views, observations)
    for pid, state in states.items():  # the newest judged date further back than the state
        if heads[pid]["baseline"] == [] and state.count:
            older = profile_store.newest_judged(conn, pid)
            if older is not None:
                heads[pid].update(_judged_head(older))
    store.save_profiles_in(conn, heads)
    return failures


def _replay_one(
    conn: Connection,
    parcel: dict,
    first: int,
    appending: bool,
    resumed: dict,
    table: profile_state.SeasonTable | None,
    dates: list[dict],
    peers: Mapping[str, profiles.Peer],
    paths: "_PathCache",
    pending: Mapping[str, Future],
) -> tuple[
    profile_state.ProfileState, list[dict], dict[int, profile_state.SeasonTable], list[dict]
]:
    """One parcel's replay from position ``first`` (the state stored with the date before
    it, ``resumed``), or, ``appending``, its continuation after its newest date (position
    ``first``, unsettled); returns the state, what to store per date, the season tables it
    made and the newest date it settled (appending)."""
    state = profile_state.ProfileState(parcel["kind"], parcel["area_ha"])
    made: dict[int, profile_state.SeasonTable] = {}
    prior: list[dict] = []
    if first > 0 or appending:
        for row in resumed["rows"].values():
            state.put(row)
        if first > 0:
            state.resume(resumed["state"], first)
        if appending:  # the newest stored date, not settled yet
            state.count = first + 1
            last_year = resumed["times"][first].year
        else:
            last_year = resumed["at"][0].year
        state.table = table
        if table is not None:
            made[last_year] = table
        if dates and dates[-1]["acquired_at"].year > last_year:
            # a new year's season table reads the years before it
            jan1 = datetime(last_year + 1 - profile_state.BASELINE_YEARS, 1, 1, tzinfo=UTC)
            for row in profile_store.rows_between(conn, parcel["parcel_id"], jan1, first):
                state.put(row)
    pixels = PixelEvidence(state, parcel, paths.get, pending)
    taken = advance(state, dates, peers, pixels.affected_ha, made, prior)
    return state, taken, made, prior


def _heads(
    parcels: dict[str, dict],
    states: dict[str, profile_state.ProfileState],
    taken: dict[str, list[dict]],
    views: dict[str, dict],
    observations: dict[str, list[dict]],
) -> dict[str, dict]:
    """The newest part of each replayed profile, what save_profiles stores (summary and
    events): from the state in memory, the observations read for the replay and the
    stored view of a newest date that nothing new followed (``views``)."""
    heads: dict[str, dict] = {}
    for pid, state in states.items():
        newest = observations.get(pid, [])
        when = newest[-1]["acquired_at"] if newest else None
        rows = sorted(state.rows.values(), key=lambda r: r.seq)
        if rows and state.settled < state.count:
            rows[-1] = replace(rows[-1], outlier=False)  # the newest: no outlier
        judged = [r for r in rows if not r.outlier and math.isfinite(r.expected)]
        view = taken[pid][-1]["view"] if taken[pid] else views.get(pid, profile_document.EMPTY_VIEW)
        latest = next((o for o in reversed(newest) if o["ndvi_mean"] is not None), None)
        sampling = None
        if when is not None:
            days = np.array([day for _, day in state.recent()])
            sampling = profiles.sampling(days, profiles.to_days(when))
        heads[pid] = {
            "as_of": when.isoformat() if when else None,
            "observations": [jsonable(latest)] if latest else [],
            **_judged_head(judged[-1] if judged else None),
            "sampling": sampling,
            "events": view["events"],
            "suspected": view["suspected"],
        }
    return heads


def _judged_head(last: profile_state.DateRow | None) -> dict:
    """A summary's figures from the newest judged date (None: none)."""
    anomaly = None if last is None else last.anomaly()
    return {
        "baseline": [] if last is None else [profile_document.baseline_json(last)],
        "anomaly_z": None if anomaly is None else round(anomaly, 3),
        "health_index": profiles.health_index(anomaly),
    }


class _PathCache:
    """scene id -> its NDVI COG path, asked of the ledger once per scene."""

    def __init__(self, bind: store.Bind):
        self.bind, self.known = bind, {}

    def get(self, scene_id: str) -> str | None:
        if scene_id not in self.known:
            self.known[scene_id] = store.scene_ndvi_path(self.bind, scene_id)
        return self.known[scene_id]


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


class PixelEvidence:
    """Where a parcel's own pixels fell, from the scenes' NDVI COGs: each pixel's level
    on the dates before a run (their median) against the first of its low dates (deepest
    first) that saw it. Remembered per question (a run is asked again at each date)."""

    def __init__(
        self,
        state: profile_state.ProfileState,
        parcel: dict,
        path_of: Callable[[str], str | None],
        pending: Mapping[str, Future] = NOTHING_PENDING,
    ):
        self.state, self.parcel, self.path_of = state, parcel, path_of
        self.pending = pending  # scene id -> the write of its COG, still under way
        self.seen: dict[tuple, float | None] = {}

    def affected_ha(self, before: list[int], low: list[int], pixel_drop: float) -> float | None:
        scenes = tuple(self.state.rows[i].scene_id for i in [*before, *low])
        key = (scenes, len(before), round(pixel_drop, 6))
        if key not in self.seen:
            self.seen[key] = self._measure(list(scenes), len(before), pixel_drop)
        return self.seen[key]

    def _measure(self, scenes: list[str], before: int, pixel_drop: float) -> float | None:
        for scene in scenes:
            if scene in self.pending:  # its file is whole once written (or the write raises)
                self.pending[scene].result()
        paths = [self.path_of(s) for s in scenes]
        if any(p is None or not Path(p).exists() for p in paths):
            return None
        stack, coverage, pixel_area = parcel_pixel_stack(
            [Path(p) for p in paths],
            shapely.geometry.shape(json.loads(self.parcel["geometry_geojson"])),
        )
        pre = disturbances.pixel_levels(stack[:before])
        post = disturbances.first_finite(stack[before:])
        return round(disturbances.affected_area_ha(pre, post, coverage, pixel_area, pixel_drop), 4)
