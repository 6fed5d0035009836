"""Profiles that a new scene advances, not rebuilds: three years of the cloudy gardens
(tests/support/cloudy_gardens.py: routine tea and forests, a frost, two half-parcel
clear-cuts, a hazy pass a year) stored scene by scene through the imagery job's own
in-transaction step, against the same observations rebuilt by `agri profiles rebuild`,
and against scenes that arrive late.

Tolerance: none. Both ways take the same dates through the same arithmetic, so every
stored number (each date's judgement, the walk, the views, the season tables, the peers,
the summary and the events) is compared for exact equality.
"""

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from collateral.db import make_engine, upgrade
from remote_sensing import store
from remote_sensing.profiles import profile_update
from remote_sensing.profiles.profile_update import parcel_profile
from remote_sensing.tables import (
    parcel_events,
    parcel_profiles,
    profile_dates,
    scene_peers,
    season_tables,
)
from tests.support import cloudy_gardens as cg

LAST = date(2025, 12, 31)  # three years: 2023, 2024, 2025


@pytest.fixture(scope="module")
def gardens(tmp_path_factory):
    return cg.simulate(tmp_path_factory.mktemp("gardens"), 10, seed=7, last=LAST)


def _database(tmp_path, name: str, sim: cg.Simulation):
    engine = make_engine(f"sqlite:///{tmp_path / name}")
    upgrade(engine)
    cg.insert_parcels(engine, sim)
    return engine


def _stored(engine) -> dict:
    """Everything a profile stores, without row ids and write times."""
    out = {}
    with engine.connect() as c:
        for table, order, drop in (
            (profile_dates, ("parcel_id", "seq"), ()),
            (season_tables, ("parcel_id", "year"), ()),
            (scene_peers, ("kind", "scene_id"), ()),
            (parcel_profiles, ("parcel_id",), ("updated_at",)),
            (parcel_events, ("parcel_id", "start"), ("id", "updated_at")),
        ):
            rows = c.execute(select(table).order_by(*(table.c[k] for k in order)))
            out[table.name] = [{k: v for k, v in r._mapping.items() if k not in drop} for r in rows]
    return out


def _differences(a: dict, b: dict) -> list[str]:
    found = []
    for table in a:
        if len(a[table]) != len(b[table]):
            found.append(f"{table}: {len(a[table])} rows against {len(b[table])}")
            continue
        for x, y in zip(a[table], b[table], strict=True):
            if x != y:
                keys = [k for k in x if x[k] != y[k]]
                found.append(
                    f"{table} {[x.get(k) for k in ('parcel_id', 'seq', 'scene_id')]}: {keys}"
                )
    return found


def test_scene_by_scene_equals_a_rebuild_over_three_years(gardens, tmp_path, agri, monkeypatch):
    scenes = cg.scenes_of(gardens)
    assert len({s[1].year for s in scenes}) == 3
    incremental = _database(tmp_path, "incremental.db", gardens)
    assert cg.store_scene_by_scene(incremental, gardens, scenes) == {}

    rebuilt = _database(tmp_path, "rebuilt.db", gardens)
    for scene_id, acquired_at, rows in scenes:  # the observations, no profiles
        with rebuilt.begin() as conn:
            store.record_scene_done(conn, cg.ledger_of(gardens, scene_id, acquired_at), rows)
    monkeypatch.setenv("AGRI_DATABASE_URL", f"sqlite:///{tmp_path / 'rebuilt.db'}")
    result = agri("profiles", "rebuild", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["parcels"] == len(gardens.parcels)

    a, b = _stored(incremental), _stored(rebuilt)
    assert _differences(a, b) == []
    assert len(a["profile_dates"]) > 13 * 60  # every clear date of every parcel
    # what an officer reads: the same health, anomaly, events and suspected runs, and
    # the planted events are there (the frost closed, both cuts open with their area)
    for parcel_id in gardens.parcels:
        one, other = parcel_profile(incremental, parcel_id), parcel_profile(rebuilt, parcel_id)
        assert one == other, parcel_id
    events = {e["parcel_id"]: e for e in store.stored_events(incremental)}
    assert set(events) == {"T-FROST", "T-CUT", "F-CUT"}
    assert events["T-FROST"]["state"] == "closed"
    for parcel_id in cg.CUT["parcel_ids"]:
        assert events[parcel_id]["state"] == "open"
        assert events[parcel_id]["affected_ha"] == pytest.approx(
            gardens.half_ha[parcel_id], rel=0.2
        )
    incremental.dispose()
    rebuilt.dispose()


def test_late_scenes_replay_from_their_date_to_the_in_order_result(gardens, tmp_path):
    """Clear scenes held back (one in the frost, one in the cut, one at a year's turn)
    and stored months later give exactly the rows of the in-order run."""
    scenes = cg.scenes_of(gardens)
    clear = {f"SIM10_{d:%Y%m%d}" for d in gardens.clear_passes}

    def first_clear_after(day: date) -> str:
        return next(s for s, at, _ in scenes if s in clear and at.date() > day)

    late_ids = {
        first_clear_after(cg.FROST["start"]),
        first_clear_after(cg.CUT["date"]),
        first_clear_after(date(2024, 12, 20)),
    }
    late = [s for s in scenes if s[0] in late_ids]
    on_time = [s for s in scenes if s[0] not in late_ids]
    split = next(k for k, s in enumerate(on_time) if s[1].date() >= date(2025, 4, 1))

    in_order = _database(tmp_path, "in_order.db", gardens)
    assert cg.store_scene_by_scene(in_order, gardens, scenes) == {}
    delivered = _database(tmp_path, "late.db", gardens)
    calls: list[dict] = []
    replay = profile_update.replay

    def counting(conn, since, pending=profile_update.NOTHING_PENDING):
        calls.append(dict(since))
        return replay(conn, since, pending)

    profile_update.replay = counting
    try:
        arrival = [*on_time[:split], *late, *on_time[split:]]
        assert cg.store_scene_by_scene(delivered, gardens, arrival) == {}
    finally:
        profile_update.replay = replay
    assert _differences(_stored(in_order), _stored(delivered)) == []
    # a late scene replays its own parcels from its date; an on-time one only the newest
    late_calls = calls[split : split + len(late)]
    for (scene_id, acquired_at, _), since in zip(late, late_calls, strict=True):
        assert min(v for v in since.values() if v is not None) <= acquired_at, scene_id
    in_order.dispose()
    delivered.dispose()


def test_old_ndvi_files_go_but_those_profiles_still_read_stay(gardens, tmp_path, agri, monkeypatch):
    """`agri imagery prune` on three years of gardens with every scene older than the
    cutoff: the files of each parcel's newest date and of the dates its next replay reads
    stay; the others go and the ledger forgets them; the stored profiles read the same,
    and the next scene advances them as before."""
    import shutil

    from remote_sensing.tables import scenes as scenes_table

    folder = tmp_path / "ndvi"
    folder.mkdir()
    copies = {}
    for scene_id, path in gardens.ndvi_paths.items():
        copies[scene_id] = str(shutil.copy(path, folder))
    sim = cg.Simulation(
        gardens.parcels, gardens.observations, copies, gardens.clear_passes, gardens.half_ha
    )
    scenes = cg.scenes_of(sim)
    engine = _database(tmp_path, "agri.db", sim)
    assert cg.store_scene_by_scene(engine, sim, scenes[:-1]) == {}
    before = {pid: parcel_profile(engine, pid) for pid in sim.parcels}
    monkeypatch.setenv("AGRI_DATABASE_URL", f"sqlite:///{tmp_path / 'agri.db'}")

    dry = agri("imagery", "prune", "--older-than-days", "1", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert len(list(folder.iterdir())) == len(copies)  # a dry run deletes nothing
    done = agri("imagery", "prune", "--older-than-days", "1", "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["removed"] == planned["removed"] and result["bytes"] > 0
    kept = set(result["kept_for_profiles"])
    newest = {rows[-1].scene_id for rows in (_rows(engine, pid) for pid in sim.parcels)}
    assert newest <= kept and len(result["removed"]) > len(kept)
    with engine.connect() as c:
        paths = dict(c.execute(select(scenes_table.c.scene_id, scenes_table.c.ndvi_path)).all())
    for scene_id in result["removed"]:
        assert paths[scene_id] is None and not (folder / Path(copies[scene_id]).name).exists()
    for scene_id in kept:
        assert Path(paths[scene_id]).exists()
    assert {pid: parcel_profile(engine, pid) for pid in sim.parcels} == before

    assert cg.store_scene_by_scene(engine, sim, scenes[-1:]) == {}
    engine.dispose()


def _rows(engine, parcel_id: str) -> list:
    from remote_sensing.profiles import profile_store

    return [d["row"] for d in profile_store.dates_of(engine, parcel_id)]


def test_old_dates_forget_their_state_and_what_needs_it_still_works(gardens, tmp_path, monkeypatch):
    """With only the newest 6 dates keeping the state to continue from: older dates lose
    it, a valuation's reading of the profile at a past date gives the profile's own
    sampling, and a scene delivered later than the kept dates replays its parcels from
    their first date to the in-order rows."""
    from collateral.evidence import parcel_evidence
    from remote_sensing.profiles import profile_store

    monkeypatch.setattr(profile_store, "STATE_DATES_KEPT", 6)
    scenes = [s for s in cg.scenes_of(gardens) if s[1].year == 2023]
    clear = {f"SIM10_{d:%Y%m%d}" for d in gardens.clear_passes}
    late = next(s for s in scenes if s[0] in clear and s[1].month == 5)
    in_order = _database(tmp_path, "in_order.db", gardens)
    assert cg.store_scene_by_scene(in_order, gardens, scenes) == {}
    with in_order.connect() as c:
        kept = c.execute(
            select(profile_dates.c.parcel_id, profile_dates.c.seq, profile_dates.c.state)
        ).all()
    newest = {}
    for pid, seq, _ in kept:
        newest[pid] = max(newest.get(pid, -1), seq)
    for pid, seq, state in kept:  # the newest has none yet: the next date settles it
        assert (state is not None) == (newest[pid] - 6 <= seq < newest[pid]), (pid, seq)

    as_of = late[1] + timedelta(days=1)
    for parcel_id in ("T-1", "F-1"):
        evidence = parcel_evidence(in_order, parcel_id, as_of, 60)
        assert evidence["sampling"] == parcel_profile(in_order, parcel_id, as_of)["sampling"]

    delivered = _database(tmp_path, "late.db", gardens)
    arrival = [s for s in scenes if s[0] != late[0]] + [late]
    assert cg.store_scene_by_scene(delivered, gardens, arrival) == {}
    assert _differences(_stored(in_order), _stored(delivered)) == []
    in_order.dispose()
    delivered.dispose()
