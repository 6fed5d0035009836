"""Reads and writes of the stored profiles: each scene's peers, each parcel's clear dates
(profile_state.DateRow with the walk to continue from and the view as of the date) and its
season tables. Every query here is bounded by what it returns: a parcel's recent window,
a scene's peers, the dates a replay re-adds; none reads a parcel's whole record except the
document that lists it."""

import functools
import math
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, or_, select, update

from remote_sensing.profiles import disturbances, profile_state, profiles
from remote_sensing.store import Bind, _reading
from remote_sensing.tables import observations, profile_dates, scene_peers, season_tables

ROW_FIELDS = tuple(f for f in profile_state.DateRow.__dataclass_fields__ if f not in ("day",))
# a date's columns without its state and view (JSON: read only where they are needed)
ROW_COLUMNS = [profile_dates.c[f] for f in ("parcel_id", "acquired_at", *ROW_FIELDS)]
# parcels per statement: SQLite takes up to 32,766 parameters, and a window's OR of
# (parcel, position) pairs takes two each
CHUNK = 400


def peers_of_kind(
    bind: Bind, kind: str, since: datetime
) -> list[tuple[str, profiles.Peer, datetime]]:
    """(scene id, Peer, acquired_at) of one kind's scenes acquired from ``since`` on, in
    time order."""
    query = (
        select(scene_peers)
        .where(scene_peers.c.kind == kind, scene_peers.c.acquired_at >= since)
        .order_by(scene_peers.c.acquired_at, scene_peers.c.scene_id)
    )
    with _reading(bind) as c:
        return [(r.scene_id, _peer(r), r.acquired_at) for r in c.execute(query)]


def peers_of_scenes(bind: Bind, scene_ids: set[str]) -> dict[str, dict[str, profiles.Peer]]:
    """kind -> scene id -> Peer for the given scenes."""
    out: dict[str, dict[str, profiles.Peer]] = defaultdict(dict)
    ids = sorted(scene_ids)
    with _reading(bind) as c:
        for start in range(0, len(ids), 5 * CHUNK):
            query = select(scene_peers).where(
                scene_peers.c.scene_id.in_(ids[start : start + 5 * CHUNK])
            )
            for r in c.execute(query):
                out[r.kind][r.scene_id] = _peer(r)
    return dict(out)


def _peer(r) -> profiles.Peer:
    day = profiles.to_days(r.acquired_at)
    return profiles.Peer(r.median, r.spread, r.count, day, r.dip)


def save_peers(
    conn: Connection,
    kind: str,
    peers: list[tuple[str, profiles.Peer]],
    times: dict[str, datetime],
) -> None:
    """Replace the stored peers of these scenes of ``kind`` (``times``: scene id -> its
    acquisition time, stored as it is, not as the Peer's day)."""
    if not peers:
        return
    ids = [sid for sid, _ in peers]
    conn.execute(
        delete(scene_peers).where(scene_peers.c.kind == kind, scene_peers.c.scene_id.in_(ids))
    )
    conn.execute(
        insert(scene_peers),
        [
            {
                "scene_id": sid,
                "kind": kind,
                "acquired_at": times[sid],
                "median": p.median,
                "spread": p.spread,
                "count": p.count,
                "dip": p.dip,
            }
            for sid, p in peers
        ],
    )


def drop_peers(conn: Connection, scene_ids: list[str]) -> None:
    """Forget the peers of scenes that no longer hold observations (superseded copies)."""
    if scene_ids:
        conn.execute(delete(scene_peers).where(scene_peers.c.scene_id.in_(scene_ids)))


def clear_means_of_scene(bind: Bind, scene_id: str, min_valid_fraction: float) -> dict:
    """kind -> the mean NDVIs of the parcels of that kind seen clear in the scene."""
    from remote_sensing.tables import parcels

    query = (
        select(parcels.c.kind, observations.c.ndvi_mean)
        .join(parcels, parcels.c.parcel_id == observations.c.parcel_id)
        .where(
            observations.c.scene_id == scene_id,
            observations.c.valid_fraction >= min_valid_fraction,
            observations.c.ndvi_mean.is_not(None),
        )
    )
    out: dict[str, list[float]] = defaultdict(list)
    with _reading(bind) as c:
        for kind, ndvi in c.execute(query):
            if math.isfinite(ndvi):
                out[kind].append(ndvi)
    return dict(out)


def replay_starts(bind: Bind, since: dict[str, datetime]) -> dict[str, tuple[int, int]]:
    """parcel id -> (its clear dates stored, the first position a replay from ``since``
    re-adds): the date before the first stored one on or after ``since`` (its outlier flag
    waits for its next date, which may now be another), else the newest. Index seeks: the
    newest date of each parcel, and its dates from ``since`` on."""
    from remote_sensing.tables import parcels

    by_time: dict[datetime, list[str]] = defaultdict(list)
    for pid, when in since.items():
        by_time[when].append(pid)
    newest = (
        select(profile_dates.c.seq)
        .where(profile_dates.c.parcel_id == parcels.c.parcel_id)
        .order_by(profile_dates.c.acquired_at.desc(), profile_dates.c.seq.desc())
        .limit(1)
        .scalar_subquery()
    )
    out: dict[str, tuple[int, int]] = {}
    with _reading(bind) as c:
        for when, pids in by_time.items():
            for start in range(0, len(pids), 5 * CHUNK):
                chunk = pids[start : start + 5 * CHUNK]
                last = dict(
                    c.execute(
                        select(parcels.c.parcel_id, newest).where(parcels.c.parcel_id.in_(chunk))
                    ).all()
                )
                firsts = dict(
                    c.execute(
                        select(profile_dates.c.parcel_id, func.min(profile_dates.c.seq))
                        .where(
                            profile_dates.c.parcel_id.in_(chunk),
                            profile_dates.c.acquired_at >= when,
                        )
                        .group_by(profile_dates.c.parcel_id)
                    ).all()
                )
                for pid in chunk:
                    count = 0 if last.get(pid) is None else last[pid] + 1
                    first = firsts.get(pid, count)
                    out[pid] = (count, max(0, first - 1))
    return out


BIG = 2**31 - 1  # an open upper bound


@functools.cache
def _ranges(table_name: str, key: str, column: str, n: int):
    """(key = :k AND :lo <= column < :hi) OR ... for ``n`` items, built once per size: an
    expression of 400 such terms took longer to build than the statement took to run.
    SQLite and PostgreSQL answer each term by an index seek."""
    table = {"profile_dates": profile_dates, "season_tables": season_tables}[table_name]
    return or_(
        *(
            and_(
                table.c[key] == bindparam(f"k{i}"),
                table.c[column] >= bindparam(f"lo{i}"),
                table.c[column] < bindparam(f"hi{i}"),
            )
            for i in range(n)
        )
    )


def _in_ranges(table_name: str, key: str, column: str, items: list[tuple]) -> tuple:
    """The where-clause of _ranges for ``items`` ((key, lo, hi), at most CHUNK; padded to
    a size of 1, 10, 100 or CHUNK with the last, so few statements are ever compiled) and
    its parameters."""
    n = next(size for size in (1, 10, 100, CHUNK) if size >= len(items))
    padded = items + [items[-1]] * (n - len(items))
    params = {}
    for i, (k, lo, hi) in enumerate(padded):
        params[f"k{i}"], params[f"lo{i}"], params[f"hi{i}"] = k, lo, hi
    return _ranges(table_name, key, column, n), params


def newest_positions(bind: Bind, parcel_ids: list[str]) -> dict[str, tuple[int, str]]:
    """parcel id -> (the position of its newest date, that date's scene), for those with
    dates (an index seek each)."""
    from remote_sensing.tables import parcels

    newest = (
        select(profile_dates.c.seq, profile_dates.c.scene_id)
        .where(profile_dates.c.parcel_id == parcels.c.parcel_id)
        .order_by(profile_dates.c.acquired_at.desc(), profile_dates.c.seq.desc())
        .limit(1)
    )
    seq = newest.with_only_columns(profile_dates.c.seq).scalar_subquery()
    scene = newest.with_only_columns(profile_dates.c.scene_id).scalar_subquery()
    query = select(parcels.c.parcel_id, seq, scene).where(parcels.c.parcel_id.in_(parcel_ids))
    with _reading(bind) as c:
        return {pid: (s, sid) for pid, s, sid in c.execute(query) if s is not None}


def resume_rows(
    bind: Bind, starts: dict[str, int], through: dict[str, int] | None = None
) -> dict[str, dict]:
    """parcel id -> {"state": the stored state of the date before its start (None: from
    the beginning), "at": that date's (acquired_at, scene id), "rows": the stored dates a
    replay from there reads (the walk's references, the dates before them, up to position
    ``through``, exclusive; its start by default), seq -> DateRow, "times": seq ->
    acquired_at of those rows}."""
    through = through or {}
    out: dict[str, dict] = {pid: {"state": None, "rows": {}, "times": {}} for pid in starts}
    with _reading(bind) as c:
        items = list(starts.items())
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            resumed = [(pid, p - 1, p) for pid, p in chunk if p > 0]
            if resumed:
                before, params = _in_ranges("profile_dates", "parcel_id", "seq", resumed)
                wanted = select(
                    profile_dates.c.parcel_id,
                    profile_dates.c.state,
                    profile_dates.c.acquired_at,
                    profile_dates.c.scene_id,
                )
                for r in c.execute(wanted.where(before), params):
                    out[r.parcel_id]["state"] = r.state
                    out[r.parcel_id]["at"] = (r.acquired_at, r.scene_id)
            windows = []
            for pid, p in chunk:
                state = out[pid]["state"]
                walk = disturbances.Walk.from_json(state["walk"]) if state else disturbances.Walk()
                refs = [p - 2, *walk.refers_to()]
                if walk.previous is not None:
                    refs.append(walk.previous)
                end = through.get(pid, p)
                if end > 0:
                    windows.append((pid, max(0, min(refs) - 2 * disturbances.PRE_EVENT_DATES), end))
            if not windows:
                continue
            window, params = _in_ranges("profile_dates", "parcel_id", "seq", windows)
            for r in c.execute(select(*ROW_COLUMNS).where(window), params):
                out[r.parcel_id]["rows"][r.seq] = date_row(r)
                out[r.parcel_id]["times"][r.seq] = r.acquired_at
    return out


def views_at(bind: Bind, positions: dict[str, int]) -> dict[str, dict]:
    """parcel id -> the view stored with its date at the given position."""
    out: dict[str, dict] = {}
    items = [(pid, seq, seq + 1) for pid, seq in positions.items()]
    with _reading(bind) as c:
        for start in range(0, len(items), CHUNK):
            wanted, params = _in_ranges(
                "profile_dates", "parcel_id", "seq", items[start : start + CHUNK]
            )
            query = select(profile_dates.c.parcel_id, profile_dates.c.view).where(wanted)
            for pid, view in c.execute(query, params):
                out[pid] = view
    return out


# A date keeps the state to continue from while it is among its parcel's newest this many
# (200 days of 5-day passes all clear, longer under cloud); a scene older than that (a
# delivery months late) replays the parcel from its first date. The state is most of a
# date's row: kept on every date, a parcel-year cost about 70 KB in the database.
STATE_DATES_KEPT = 40


def forget_states(conn: Connection, spans: dict[str, tuple[int, int]]) -> None:
    """Within the caller's transaction: per parcel (first position written, newest), clear
    the state of the dates that fell out of its newest STATE_DATES_KEPT."""
    items = [
        (pid, max(0, first - 1 - STATE_DATES_KEPT), newest - STATE_DATES_KEPT)
        for pid, (first, newest) in spans.items()
        if newest - STATE_DATES_KEPT > max(0, first - 1 - STATE_DATES_KEPT)
    ]
    for start in range(0, len(items), CHUNK):
        old, params = _in_ranges("profile_dates", "parcel_id", "seq", items[start : start + CHUNK])
        conn.execute(update(profile_dates).where(old).values(state=None), params)


def recent_clear(bind: Bind, parcel_id: str, newest_seq: int, newest_day: float) -> list[list]:
    """[scene id, day] of a parcel's clear dates (no outliers) before position
    ``newest_seq`` in the RECENT_CLEAR_DAYS before ``newest_day``, and the one before
    them: what a state keeps, read from the rows where the state is no longer kept."""
    start = profiles.EPOCH + timedelta(days=newest_day - profiles.RECENT_CLEAR_DAYS)
    base = select(profile_dates.c.scene_id, profile_dates.c.acquired_at).where(
        profile_dates.c.parcel_id == parcel_id,
        profile_dates.c.seq < newest_seq,
        profile_dates.c.outlier.is_(False),
    )
    with _reading(bind) as c:
        inside = list(c.execute(base.where(profile_dates.c.acquired_at > start)))
        before = c.execute(
            base.where(profile_dates.c.acquired_at <= start)
            .order_by(profile_dates.c.acquired_at.desc())
            .limit(1)
        ).all()
    rows = sorted([*before, *inside], key=lambda r: r.acquired_at)
    return [[r.scene_id, profiles.to_days(r.acquired_at)] for r in rows]


def settle_rows(conn: Connection, settled: dict[str, dict]) -> None:
    """Within the caller's transaction: per parcel, the outlier flag and state of its date
    that the next one settled ({"row": DateRow, "state": ...})."""
    if not settled:
        return
    conn.execute(
        update(profile_dates)
        .where(
            profile_dates.c.parcel_id == bindparam("key"),
            profile_dates.c.seq == bindparam("position"),
        )
        .values(outlier=bindparam("new_outlier"), state=bindparam("new_state")),
        [
            {
                "key": pid,
                "position": item["row"].seq,
                "new_outlier": item["row"].outlier,
                "new_state": item["state"],
            }
            for pid, item in settled.items()
        ],
    )


def rows_between(bind: Bind, parcel_id: str, since: datetime, before_seq: int) -> list:
    """A parcel's stored dates from ``since`` up to position ``before_seq`` (exclusive):
    the BASELINE_YEARS a new year's season table is made from."""
    query = select(*ROW_COLUMNS).where(
        profile_dates.c.parcel_id == parcel_id,
        profile_dates.c.acquired_at >= since,
        profile_dates.c.seq < before_seq,
    )
    with _reading(bind) as c:
        return [date_row(r) for r in c.execute(query)]


def date_row(r) -> profile_state.DateRow:
    """A stored date as profile_state.DateRow (NULL numbers as NaN)."""
    nan = lambda v: float("nan") if v is None else float(v)  # noqa: E731
    return profile_state.DateRow(
        seq=r.seq,
        scene_id=r.scene_id,
        day=profiles.to_days(r.acquired_at),
        ndvi=r.ndvi,
        weight=r.weight,
        outlier=bool(r.outlier),
        expected=nan(r.expected),
        spread=nan(r.spread),
        allowance=r.allowance,
        allowance_source=r.allowance_source,
        source=r.source,
        shared=r.shared,
        offset=nan(r.offset),
        clear_dates=r.clear_dates,
    )


def season_tables_of(bind: Bind, years: dict[str, int]) -> dict[str, profile_state.SeasonTable]:
    """parcel id -> its stored season table of the given year (where there is one)."""
    out: dict[str, profile_state.SeasonTable] = {}
    items = list(years.items())
    with _reading(bind) as c:
        for start in range(0, len(items), CHUNK):
            wanted, params = _in_ranges(
                "season_tables",
                "parcel_id",
                "year",
                [(pid, year, year + 1) for pid, year in items[start : start + CHUNK]],
            )
            for r in c.execute(select(season_tables).where(wanted), params):
                out[r.parcel_id] = profile_state.SeasonTable.from_bytes(r.year, r.bins)
    return out


def write_replays(conn: Connection, replays: dict[str, tuple]) -> None:
    """Within the caller's transaction, per parcel (first, rows, tables, first year): its
    dates from position ``first`` on are ``rows`` (as stored_row makes them), and its
    season tables after ``first year`` (None: all) are those of ``tables`` (year ->
    table) after it."""
    items = list(replays.items())
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        stale, params = _in_ranges(
            "profile_dates", "parcel_id", "seq", [(pid, first, BIG) for pid, (first, *_) in chunk]
        )
        conn.execute(delete(profile_dates).where(stale), params)
        rows = [row for _, (_, stored, *_) in chunk for row in stored]
        if rows:
            conn.execute(insert(profile_dates), rows)
        stale, params = _in_ranges(
            "season_tables",
            "parcel_id",
            "year",
            [(pid, (year or 0) + 1, BIG) for pid, (_, _, _, year) in chunk],
        )
        conn.execute(delete(season_tables).where(stale), params)
        fresh = [
            {"parcel_id": pid, "year": y, "bins": table.to_bytes()}
            for pid, (_, _, tables, year) in chunk
            for y, table in tables.items()
            if y > (year or 0)
        ]
        if fresh:
            conn.execute(insert(season_tables), fresh)


def newest_dates(bind: Bind, parcel_id: str, as_of: datetime | None) -> list[tuple]:
    """The parcel's two newest dates up to ``as_of``, oldest first: (DateRow, view,
    state, acquired_at) each."""
    query = (
        select(profile_dates)
        .where(profile_dates.c.parcel_id == parcel_id)
        .order_by(profile_dates.c.acquired_at.desc(), profile_dates.c.seq.desc())
        .limit(2)
    )
    if as_of is not None:
        query = query.where(profile_dates.c.acquired_at <= as_of)
    with _reading(bind) as c:
        return [(date_row(r), r.view, r.state, r.acquired_at) for r in c.execute(query)][::-1]


def newest_judged(
    bind: Bind, parcel_id: str, as_of: datetime | None = None
) -> profile_state.DateRow | None:
    """A parcel's newest date up to ``as_of`` with a baseline that is no outlier (or is
    the newest)."""
    top = select(func.max(profile_dates.c.seq)).where(profile_dates.c.parcel_id == parcel_id)
    if as_of is not None:
        top = top.where(profile_dates.c.acquired_at <= as_of)
    query = (
        select(*ROW_COLUMNS)
        .where(
            profile_dates.c.parcel_id == parcel_id,
            profile_dates.c.expected.is_not(None),
            profile_dates.c.seq <= top.scalar_subquery(),
            or_(profile_dates.c.outlier.is_(False), profile_dates.c.seq == top.scalar_subquery()),
        )
        .order_by(profile_dates.c.seq.desc())
        .limit(1)
    )
    with _reading(bind) as c:
        r = c.execute(query).first()
    return None if r is None else date_row(r)


def stored_row(
    parcel_id: str,
    row: profile_state.DateRow,
    acquired_at: datetime,
    state: dict | None,
    view: dict,
) -> dict:
    """A DateRow as a profile_dates row (NaN as NULL)."""
    null = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
    values = {f: null(getattr(row, f)) for f in ROW_FIELDS}
    return {
        **values,
        "parcel_id": parcel_id,
        "acquired_at": acquired_at,
        "state": state,
        "view": view,
    }


def dates_of(bind: Bind, parcel_id: str, as_of: datetime | None = None) -> list[dict]:
    """A parcel's stored dates up to ``as_of`` in order, each with its view: the rows a
    profile document lists."""
    query = (
        select(profile_dates)
        .where(profile_dates.c.parcel_id == parcel_id)
        .order_by(profile_dates.c.seq)
    )
    if as_of is not None:
        query = query.where(profile_dates.c.acquired_at <= as_of)
    with _reading(bind) as c:
        return [{"row": date_row(r), "view": r.view} for r in c.execute(query)]


def kinds_with_peers(bind: Bind, scene_id: str) -> list[str]:
    """The kinds a scene has peers stored for."""
    query = select(scene_peers.c.kind).where(scene_peers.c.scene_id == scene_id)
    with _reading(bind) as c:
        return list(c.scalars(query))


def parcels_dated_in(bind: Bind, scenes: dict[str, datetime]) -> dict[str, datetime]:
    """parcel id -> the earliest of ``scenes`` (scene id -> its time) among its dates."""
    out: dict[str, datetime] = {}
    if not scenes:
        return out
    query = select(profile_dates.c.parcel_id, profile_dates.c.scene_id).where(
        profile_dates.c.scene_id.in_(list(scenes))
    )
    with _reading(bind) as c:
        for parcel_id, scene_id in c.execute(query):
            when = scenes[scene_id]
            out[parcel_id] = min(out.get(parcel_id, when), when)
    return out


def superseded_with_peers(bind: Bind, acquisition_key: str | None = None) -> list[str]:
    """Scenes with peers stored whose observations a better copy replaced (of one
    acquisition, when ``acquisition_key`` is given)."""
    from remote_sensing.tables import scenes

    done = select(scenes.c.scene_id).where(scenes.c.status == "done")
    query = select(scene_peers.c.scene_id).where(~scene_peers.c.scene_id.in_(done))
    if acquisition_key is not None:
        copies = select(scenes.c.scene_id).where(scenes.c.acquisition_key == acquisition_key)
        query = query.where(scene_peers.c.scene_id.in_(copies))
    with _reading(bind) as c:
        return list(c.scalars(query.distinct()))


def scenes_without_peers(bind: Bind) -> list[tuple[str, datetime]]:
    """(scene id, acquired_at) of processed scenes with clear observations and no peers
    stored, in time order."""
    from remote_sensing.tables import scenes

    seen_clear = (
        select(observations.c.scene_id)
        .where(observations.c.scene_id == scenes.c.scene_id)  # by the scene index
        .where(observations.c.valid_fraction >= profiles.MIN_VALID_FRACTION)
        .where(observations.c.ndvi_mean.is_not(None))
        .exists()
    )
    has_peers = (
        select(scene_peers.c.scene_id).where(scene_peers.c.scene_id == scenes.c.scene_id).exists()
    )
    query = (
        select(scenes.c.scene_id, scenes.c.acquired_at)
        .where(scenes.c.status == "done", seen_clear, ~has_peers)
        .order_by(scenes.c.acquired_at, scenes.c.scene_id)
    )
    with _reading(bind) as c:
        return [tuple(r) for r in c.execute(query)]


def clear_peers(conn: Connection) -> None:
    conn.execute(delete(scene_peers))
