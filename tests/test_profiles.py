"""Crop profiles: pure functions on generated series, then the planted truth of sample_tiles."""

import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from agri_common.times import parse_as_of
from collateral.db import make_engine, upgrade
from remote_sensing import store
from remote_sensing.imagery import job
from remote_sensing.imagery.job import run_inbox
from remote_sensing.parcels import read_parcel_file
from remote_sensing.profiles import disturbances, profile_state, profiles
from remote_sensing.profiles.profile_update import (
    NOTHING_PENDING,
    parcel_profile,
    peer_statistics,
    update_profiles,
)
from tests.support.paths import SAMPLE_TILES

TRUTH = json.loads((SAMPLE_TILES / "truth.json").read_text())
START = datetime(2023, 1, 1, tzinfo=UTC)


def _obs(days, values, valid=None):
    valid = np.ones(len(days)) if valid is None else valid
    return [
        {
            "scene_id": f"S{i:03d}",
            "acquired_at": START + timedelta(days=float(d)),
            "ndvi_mean": float(v),
            "valid_fraction": float(f),
        }
        for i, (d, v, f) in enumerate(zip(days, values, valid, strict=True))
    ]


# --- pure functions -------------------------------------------------------------------


def test_whittaker_recovers_a_known_curve_across_a_long_gap():
    """Tolerance: RMSE < 0.02 and max error < 0.05 NDVI with 0.02 noise and a 90-day gap."""
    rng = np.random.default_rng(5)
    days = np.arange(0, 730, 5.0)
    days = days[(days < 150) | (days > 240)]  # a monsoon season without a clear view
    truth = lambda d: 0.6 + 0.2 * np.sin(2 * np.pi * (d - 80) / 365)  # noqa: E731
    values = truth(days) + rng.normal(0, 0.02, len(days))
    grid, smooth = profiles.whittaker(days, values, np.ones(len(days)))
    error = smooth - truth(grid)
    assert np.sqrt(np.mean(error**2)) < 0.02
    assert np.abs(error).max() < 0.05
    assert grid[1] - grid[0] == profiles.GRID_STEP_DAYS


@pytest.mark.parametrize("count", [2, 3, 4, 9, 60])
def test_whittaker_solves_its_defining_system(count):
    """The banded solve against the textbook form: (W + lambda D'D) z = W y, dense."""
    rng = np.random.default_rng(count)
    days = np.sort(rng.uniform(0, 400, count))
    values, weights = rng.uniform(0.2, 0.9, count), rng.uniform(0.3, 1.0, count)
    grid, smooth = profiles.whittaker(days, values, weights)
    step = profiles.GRID_STEP_DAYS
    node = np.clip(np.rint((days - grid[0]) / step).astype(int), 0, len(grid) - 1)
    w = np.bincount(node, weights, minlength=len(grid))
    wy = np.bincount(node, weights * values, minlength=len(grid))
    d = np.diff(np.eye(len(grid)), 2, axis=0)
    expected = np.linalg.solve(np.diag(w) + profiles.WHITTAKER_LAMBDA * d.T @ d, wy)
    np.testing.assert_allclose(smooth, expected, rtol=1e-9, atol=1e-12)


def test_single_contradicted_drop_is_an_outlier_but_a_persistent_drop_is_not():
    values = [0.7, 0.7, 0.4, 0.7, 0.7, 0.3, 0.3, 0.3]
    series = profiles.clean_series(_obs(np.arange(8) * 10.0, values))
    assert series.outlier.tolist() == [False, False, True, False, False, False, False, False]


def test_low_valid_fraction_observations_are_left_out():
    series = profiles.clean_series(_obs([0, 10, 20], [0.7, 0.2, 0.7], valid=[1.0, 0.3, 0.9]))
    assert series.scene_ids == ("S000", "S002")
    assert series.weights.tolist() == [1.0, 0.9]


def _flat(n, value=0.7, spread=0.03):
    return profiles.Baseline(np.full(n, value), np.full(n, spread), ("history",) * n)


def test_disturbance_opens_on_two_clear_dates_and_closes_on_recovery():
    values = [0.7, 0.7, 0.4, 0.35, 0.45, 0.69, 0.7, 0.7]
    series = profiles.clean_series(_obs(np.arange(8) * 20.0, values))
    (event,) = disturbances.detect_disturbances(series, _flat(8))
    assert (event.start_index, event.confirmed_index, event.end_index) == (2, 3, 5)
    assert event.state == "closed"
    assert event.severity == pytest.approx((0.7 - 0.35) / 0.7)


def _judged_all(series):
    """The same series with no date set aside as an outlier: the detector judges each."""
    n = len(series.days)
    return profiles.Series(
        series.days, series.ndvi, series.weights, series.scene_ids, np.zeros(n, bool)
    )


@pytest.mark.parametrize("step", [5.0, 10.0])
def test_one_low_date_or_a_shallow_dip_raises_nothing(step):
    values = [0.7, 0.45, 0.7, 0.64, 0.63, 0.7]
    series = _judged_all(profiles.clean_series(_obs(np.arange(6) * step, values)))
    assert disturbances.detect_disturbances(series, _flat(6)) == []


def test_a_lone_low_date_between_long_gaps_is_reported_not_confirmed():
    """20 days to the next clear date: a short dip and lasting damage look the same."""
    values = [0.7, 0.45, 0.7, 0.64, 0.63, 0.7]
    series = _judged_all(profiles.clean_series(_obs(np.arange(6) * 20.0, values)))
    (event,) = disturbances.detect_disturbances(series, _flat(6))
    assert (event.confirmed_index, event.state) == (None, "unconfirmed")
    assert (event.start_index, event.previous_index, event.next_index) == (1, 0, 2)
    # ...and one at the end of the record waits for the next clear date
    (event,) = disturbances.detect_disturbances(
        _judged_all(profiles.clean_series(_obs(np.arange(3) * 20.0, [0.7, 0.7, 0.45]))), _flat(3)
    )
    assert event.state == "pending" and event.next_index is None


@pytest.mark.parametrize(("step", "dates"), [(5.0, 2), (20.0, 2), (30.0, 2), (40.0, 3), (60.0, 3)])
def test_evidence_to_confirm_grows_with_the_gap_between_clear_dates(step, dates):
    values = [0.7, 0.7, 0.35, 0.35, 0.35, 0.35]
    series = profiles.clean_series(_obs(np.arange(6) * step, values))
    (event,) = disturbances.detect_disturbances(series, _flat(6))
    assert event.confirmed_index - event.start_index + 1 == dates


def test_a_drop_with_no_place_opens_nothing_and_one_with_a_place_does():
    values = [0.7, 0.7, 0.45, 0.45, 0.45, 0.45]
    series = profiles.clean_series(_obs(np.arange(6) * 10.0, values))
    asked = []

    def nowhere(before, low, pixel_drop):
        asked.append((list(before), list(low)))
        return 0.0

    assert disturbances.detect_disturbances(series, _flat(6), nowhere, 4.0) == []
    assert asked[0] == ([0, 1], [2, 3])  # asked as soon as the evidence was there, again as it grew
    (event,) = disturbances.detect_disturbances(series, _flat(6), lambda s, i, d: 1.5, 4.0)
    assert event.state == "open" and event.affected_ha == 1.5
    assert disturbances.min_affected_ha(10.0) == 0.5 and disturbances.min_affected_ha(1.0) == 0.2
    assert disturbances.min_affected_ha(0.1) == 0.05


def test_the_usual_dip_widens_the_range_and_health_stays_whole_inside_it():
    """Every pixel 0.11 lower (a plucked garden) is no disturbance, and inside the usual
    dip not even a health reduction; half the pixels 0.3 lower is a disturbance."""
    values = np.array([0.7, 0.7, 0.59, 0.59, 0.62, 0.7])
    series = profiles.clean_series(_obs(np.arange(6) * 10.0, values))
    plain = _flat(6)
    widened = profiles.Baseline(
        plain.expected, plain.spread, plain.source, np.full(6, 0.12), ("calendar",) * 6
    )
    uniform = lambda before, low, drop: 4.0 if drop < 0.11 else 0.0  # noqa: E731
    half = lambda before, low, drop: 2.0 if drop < 0.3 else 0.0  # noqa: E731
    for baseline in (plain, widened):
        assert disturbances.detect_disturbances(series, baseline, uniform, 4.0) == []
        (event,) = disturbances.detect_disturbances(series, baseline, half, 4.0)
        assert event.affected_ha == 2.0
    assert event.pixel_drop == pytest.approx(0.27)  # fell beyond the usual dip
    np.testing.assert_allclose(widened.anomaly(values), 0.0)
    assert profiles.health_index(float(plain.anomaly(values)[3])) < 0.2
    deeper = widened.anomaly(np.array([0.4]))[0]
    assert deeper == pytest.approx((0.4 - (0.7 - 0.12)) / 0.03)


def test_default_calendar_covers_the_tea_seasons_and_wraps_the_year():
    day = lambda y, m, d: profiles.to_days(datetime(y, m, d, tzinfo=UTC))  # noqa: E731
    assert profiles.calendar_depth("tea_garden", day(2024, 4, 15)) == 0.10
    assert profiles.calendar_depth("tea_garden", day(2024, 1, 20)) == 0.12
    assert profiles.calendar_depth("tea_garden", day(2023, 12, 1)) == 0.12
    assert profiles.calendar_depth("tea_garden", day(2024, 8, 15)) == 0.0
    assert profiles.calendar_depth("forest", day(2024, 4, 15)) == 0.0


def test_sampling_counts_clear_dates_and_the_largest_gap():
    days = np.array([0.0, 50.0, 70.0, 110.0])
    assert profiles.sampling(days, 120.0) == {
        "window_days": 60,
        "clear_dates": 2,
        "largest_gap_days": 40.0,
    }
    assert profiles.sampling(days, 200.0) == {
        "window_days": 60,
        "clear_dates": 0,
        "largest_gap_days": 90.0,
    }
    assert profiles.sampling(np.zeros(0), 10.0)["largest_gap_days"] is None


def test_dates_without_baseline_are_not_judged():
    series = profiles.clean_series(_obs(np.arange(4) * 20.0, [0.2, 0.2, 0.2, 0.2]))
    none = profiles.Baseline(np.full(4, np.nan), np.full(4, np.nan), (None,) * 4)
    assert disturbances.detect_disturbances(series, none) == []


def test_history_baseline_comes_from_earlier_years_and_peers_fill_the_first_year():
    days = np.arange(0, 730, 10.0)
    values = 0.6 + 0.2 * np.sin(2 * np.pi * (days - 80) / 365)
    obs = _obs(days, values)
    peers = {  # peers move alike
        o["scene_id"]: profiles.Peer(
            o["ndvi_mean"] + 0.01, 0.02, 5, profiles.to_days(o["acquired_at"])
        )
        for o in obs
    }
    series = profiles.clean_series(obs)
    baseline, events = profile_state.analyse(series, peers)
    first_year = series.days < profiles.to_days(START) + 365
    assert set(np.array(baseline.source)[first_year]) == {"peers"}
    assert set(np.array(baseline.source)[~first_year][3:]) == {"history"}
    later = ~first_year & (np.array(baseline.source) == "history")
    np.testing.assert_allclose(baseline.expected[later], series.ndvi[later], atol=0.03)
    assert events == []


def test_a_parcel_never_seen_has_an_empty_profile_not_an_error():
    series = profiles.clean_series([])
    baseline, events = profile_state.analyse(series, {}, "tea_garden")
    assert (len(baseline.expected), events) == (0, [])
    assert profiles.sampling(series.days, 100.0)["clear_dates"] == 0


def test_health_index_formula():
    assert profiles.health_index(1.5) == 1.0
    assert profiles.health_index(0.0) == 1.0
    assert profiles.health_index(-2.0) == 0.5
    assert profiles.health_index(-9.0) == 0.0
    assert profiles.health_index(None) is None


def test_affected_area_counts_covered_pixels_that_fell():
    pre = np.array([0.8, 0.8, 0.8, np.nan])
    post = np.array([0.2, 0.75, 0.3, 0.1])
    coverage = np.array([1.0, 1.0, 0.5, 1.0])
    assert disturbances.affected_area_ha(pre, post, coverage, 100.0) == pytest.approx(0.015)


def test_seasons_find_the_peak_and_half_amplitude_dates():
    grid = np.arange(0, 365, 5.0) + profiles.to_days(START)
    doy = np.arange(0, 365, 5.0)
    smooth = 0.3 + 0.4 * np.exp(-(((doy - 180) / 40) ** 2))
    (season,) = profiles.seasons(grid, smooth)
    assert season["year"] == 2023
    assert abs((date.fromisoformat(season["peak"]) - date(2023, 6, 30)).days) <= 5
    assert season["amplitude"] == pytest.approx(0.4, abs=0.01)
    half_width = (date.fromisoformat(season["end"]) - date.fromisoformat(season["start"])).days
    assert abs(half_width - 2 * 40 * np.sqrt(np.log(2))) <= 10


def test_parse_as_of_takes_a_whole_day_or_an_exact_time():
    assert parse_as_of("2024-05-31") == datetime(2024, 5, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert parse_as_of("2024-05-31T02:00:00Z") == datetime(2024, 5, 31, 2, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_as_of("last tuesday")


# --- the sample study area: planted clear-cut and frost -------------------------------


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory):
    root = tmp_path_factory.mktemp("profiles")
    engine = make_engine(f"sqlite:///{root / 'agri.db'}")
    upgrade(engine)
    store.upsert_parcels(engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels)
    summary = run_inbox(engine, SAMPLE_TILES / "scenes", root / "data")
    assert summary.ok and summary.profiles_updated == 31, summary.as_json()
    return engine, root


def _by_date(scenes):
    return [date.fromisoformat(s["date"]) for s in scenes]


def test_clear_cut_is_found_at_the_first_or_second_clear_scene_with_its_area(sample_db):
    engine, _ = sample_db
    cut = TRUTH["clear_cut"]
    (event,) = store.stored_events(engine, cut["parcel_id"])
    cut_day = date.fromisoformat(cut["date"])
    clear_after = [
        o["acquired_at"].date()
        for o in store.parcel_observations(engine, cut["parcel_id"])
        if o["acquired_at"].date() >= cut_day and o["valid_fraction"] >= 0.6
    ]
    assert event["start"].date() == clear_after[0]
    assert event["confirmed_at"].date() in clear_after[:2]
    assert event["state"] == "open" and event["end"] is None
    assert event["affected_ha"] == pytest.approx(cut["affected_ha"], rel=0.15)
    assert event["severity"] > 0.3


def test_a_cut_confirmed_by_the_runs_last_scene_is_measured_on_that_scenes_own_cog(
    sample_db, tmp_path, caplog, monkeypatch
):
    """The profiles of a scene's parcels are built inside its transaction while its COG is
    still being written (profile_update.profiles_while_writing): the area of a cut that
    this very scene confirms is measured on its COG once the file is whole, the same as a
    rebuild after the run finds."""
    engine, _ = sample_db
    cut = TRUTH["clear_cut"]
    (full_run_event,) = store.stored_events(engine, cut["parcel_id"])
    confirmed = full_run_event["confirmed_at"].date()
    inbox = tmp_path / "inbox"
    for scene in TRUTH["scenes"]:
        if date.fromisoformat(scene["date"]) <= confirmed:
            shutil.copytree(SAMPLE_TILES / "scenes" / scene["scene_id"], inbox / scene["scene_id"])
    fresh = make_engine(f"sqlite:///{tmp_path / 'agri.db'}")
    upgrade(fresh)
    store.upsert_parcels(fresh, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels)
    after_the_run: list[list[str]] = []  # what was left to build once the scenes were in
    rebuild = job.update_profiles
    monkeypatch.setattr(
        job,
        "update_profiles",
        lambda e, ids, since=None: after_the_run.append(ids) or rebuild(e, ids, since),
    )
    with caplog.at_level("WARNING", logger="agri.imagery"):
        summary = run_inbox(fresh, inbox, tmp_path / "data")
    assert summary.ok and summary.profiles_updated == 31, summary.as_json()
    assert "profiles not built while the COG was written" not in caplog.text
    assert after_the_run == [[]]  # every profile was built in its scene's transaction
    (event,) = store.stored_events(fresh, cut["parcel_id"])
    assert event["confirmed_at"].date() == confirmed  # by the last scene of the run
    assert event["affected_ha"] == pytest.approx(cut["affected_ha"], rel=0.15)
    stored = store.stored_events(fresh)
    assert update_profiles(fresh, list(store.load_parcels_frame(fresh).parcel_id)) == {}
    without_time = lambda events: [  # noqa: E731
        {k: v for k, v in e.items() if k != "updated_at"} for e in events
    ]
    assert without_time(store.stored_events(fresh)) == without_time(stored)
    fresh.dispose()


def test_a_profile_waits_for_the_cog_still_being_written_that_its_area_needs(sample_db, tmp_path):
    """PixelEvidence waits for a pending COG write instead of finding no file: the cut's
    area is the same as with every file in place (and unknown without the wait)."""
    import threading
    from concurrent.futures import Future

    from remote_sensing.profiles.profile_update import build_profile

    engine, _ = sample_db
    parcel_id = TRUTH["clear_cut"]["parcel_id"]
    (event,) = store.stored_events(engine, parcel_id)
    copies = {}
    for scene_id, path in store.scene_ndvi_paths(engine).items():
        copies[scene_id] = tmp_path / Path(path).name
        shutil.copy(path, copies[scene_id])
    observations = store.parcel_observations(engine, parcel_id)
    confirmed = event["confirmed_at"].date()
    (confirming,) = [o["scene_id"] for o in observations if o["acquired_at"].date() == confirmed]
    build = lambda pending=NOTHING_PENDING: build_profile(  # noqa: E731
        store.get_parcel(engine, parcel_id),
        observations,
        peer_statistics(engine),
        {k: str(v) for k, v in copies.items()},
        pending=pending,
    )
    (measured,) = build()["events"]
    assert measured["affected_ha"] == pytest.approx(event["affected_ha"])
    kept = copies[confirming].rename(tmp_path / "being-written")
    (unseen,) = build()["events"]
    assert unseen["affected_ha"] is None  # the file is not there yet
    written: Future = Future()

    def finish_the_write() -> None:
        kept.rename(copies[confirming])
        written.set_result(copies[confirming])

    threading.Timer(0.3, finish_the_write).start()
    (waited,) = build({confirming: written})["events"]
    assert waited["affected_ha"] == measured["affected_ha"]


def test_frost_damage_is_found_and_closes_after_recovery(sample_db):
    engine, _ = sample_db
    frost = TRUTH["frost"]
    (event,) = store.stored_events(engine, frost["parcel_id"])
    start, recovered = date.fromisoformat(frost["start"]), date.fromisoformat(frost["recovered"])
    assert start <= event["start"].date() < recovered
    assert event["state"] == "closed"
    assert start < event["end"].date() <= recovered + timedelta(days=60)
    parcel = store.get_parcel(engine, frost["parcel_id"])
    assert event["affected_ha"] == pytest.approx(parcel["area_ha"], rel=0.15)


def test_healthy_parcels_including_plucked_and_pruned_tea_raise_no_event(sample_db):
    engine, _ = sample_db
    damaged = {TRUTH["clear_cut"]["parcel_id"], TRUTH["frost"]["parcel_id"]}
    assert {e["parcel_id"] for e in store.stored_events(engine)} == damaged
    for parcel_id in set(store.load_parcels_frame(engine).parcel_id) - damaged:
        assert parcel_profile(engine, parcel_id)["suspected"] == [], parcel_id
    tea = parcel_profile(engine, "T-03")
    # planted: plucking around Apr 10, Jun 25, Sep 25 and pruning on Dec 5, every year
    work = [date(y, m, d) for y in (2023, 2024) for m, d in ((4, 10), (6, 25), (9, 25), (12, 5))]
    for season in tea["seasons"]:
        assert len(season["dips"]) >= 2, season  # the plucking and pruning dips are seen...
        for dip in season["dips"]:
            since = [(date.fromisoformat(dip["date"]) - w).days for w in work]
            assert any(0 <= d <= 30 for d in since), dip
    assert tea["events"] == []  # ...and are not mistaken for damage
    assert tea["health_index"] > 0.7


def test_almost_cloudy_scene_creates_no_anomaly(sample_db):
    engine, _ = sample_db
    cloudy = next(s for s in TRUTH["scenes"] if s["almost_cloudy"])
    for parcel_id in store.load_parcels_frame(engine).parcel_id:
        profile = parcel_profile(engine, parcel_id)
        judged = {b["date"]: b for b in profile["baseline"]}
        assert cloudy["date"] not in judged, parcel_id
        assert all(e["start"] != cloudy["date"] for e in profile["events"])


def test_reruns_give_the_same_events(sample_db):
    engine, root = sample_db
    before = [
        {k: v for k, v in e.items() if k != "updated_at"} for e in store.stored_events(engine)
    ]
    assert update_profiles(engine, list(store.load_parcels_frame(engine).parcel_id)) == {}
    summary = run_inbox(engine, SAMPLE_TILES / "scenes", root / "data")
    assert summary.count("processed") == 0
    after = [{k: v for k, v in e.items() if k != "updated_at"} for e in store.stored_events(engine)]
    assert after == before


def test_as_of_uses_only_data_up_to_that_date(sample_db):
    engine, _ = sample_db
    cut = TRUTH["clear_cut"]["parcel_id"]
    early = parcel_profile(engine, cut, as_of=parse_as_of("2024-05-31"))
    assert early["events"] == []  # one low date is not yet a confirmed disturbance
    assert max(o["acquired_at"] for o in early["observations"]) <= "2024-05-31T23:59"
    later = parcel_profile(engine, cut, as_of=parse_as_of("2024-06-30"))
    assert [e["state"] for e in later["events"]] == ["open"]


def test_profile_json_contract_and_png(sample_db, monkeypatch, agri, tmp_path):
    engine, root = sample_db
    monkeypatch.setenv("AGRI_DATABASE_URL", f"sqlite:///{root / 'agri.db'}")
    result = agri("parcels", "profile", "F-08", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {
        "parcel_id",
        "kind",
        "as_of",
        "observations",
        "smoothed",
        "seasons",
        "health_index",
        "anomaly_z",
        "events",
    } <= set(doc)
    assert set(doc["smoothed"][0]) == {"date", "ndvi"}
    assert {"date", "expected", "spread", "z"} <= set(doc["baseline"][-1])
    assert doc["baseline"][-1]["anomaly_z"] == doc["anomaly_z"]
    strict = json.loads(
        agri("parcels", "profile", "F-08", "--json", "--min-valid-fraction", "0.99").stdout
    )
    assert len(strict["baseline"]) < len(doc["baseline"])
    assert {"year", "start", "peak", "end", "peak_ndvi", "amplitude", "integral"} <= set(
        doc["seasons"][0]
    )
    assert {"kind", "start", "end", "severity", "affected_ha", "state"} <= set(doc["events"][0])
    assert date.fromisoformat(doc["smoothed"][1]["date"]) - date.fromisoformat(
        doc["smoothed"][0]["date"]
    ) == timedelta(days=5)
    png = tmp_path / "f08.png"
    result = agri("parcels", "profile", "F-08", "--png", png)
    assert result.exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    shutil.copy(png, root / "f08.png")
    bad = agri("parcels", "profile", "F-08", "--as-of", "yesterday-ish")
    assert bad.exit_code == 2 and "not an ISO 8601" in bad.output


def test_save_profiles_is_idempotent_on_both_databases(engine):
    store.upsert_parcels(engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels)
    doc = {
        "as_of": "2024-06-30T00:00:00+00:00",
        "observations": [{"acquired_at": "2024-06-14T02:55:19+00:00", "ndvi_mean": 0.45}],
        "baseline": [{"date": "2024-06-14", "expected": 0.8, "spread": 0.03, "source": "history"}],
        "anomaly_z": -11.6,
        "health_index": 0.0,
        "events": [
            {
                "kind": "disturbance",
                "start": "2024-05-20",
                "end": None,
                "confirmed": "2024-06-14",
                "severity": 0.45,
                "affected_ha": 7.3,
                "state": "open",
            }
        ],
    }
    healthy = {**doc, "anomaly_z": 0.2, "health_index": 0.9, "events": []}
    store.save_profiles(engine, {"F-08": doc, "T-03": healthy})
    store.save_profiles(engine, {"F-08": doc, "T-03": healthy})
    assert store.stored_profile(engine, "T-03")["health_index"] == 0.9
    store.save_profiles(engine, {"T-03": {**healthy, "health_index": 0.7}})
    assert store.stored_profile(engine, "T-03")["health_index"] == 0.7
    assert store.stored_profile(engine, "F-08")["anomaly_z"] == -11.6
    (event,) = store.stored_events(engine, "F-08")
    assert event["state"] == "open" and event["start"] == datetime(2024, 5, 20, tzinfo=UTC)
    closed = {**doc, "events": [{**doc["events"][0], "end": "2024-09-01", "state": "closed"}]}
    store.save_profiles(engine, {"F-08": closed})
    (event,) = store.stored_events(engine, "F-08")
    assert event["state"] == "closed" and event["end"] == datetime(2024, 9, 1, tzinfo=UTC)
    store.save_profiles(engine, {"F-08": {**doc, "events": []}})
    assert store.stored_events(engine, "F-08") == []
    assert store.stored_profile(engine, "F-08")["health_index"] == 0.0


def test_a_parcel_that_fails_does_not_stop_the_others(sample_db):
    """An unknown parcel and a row the database refuses are reported; the rest of their
    batch is still stored."""
    engine, _ = sample_db
    ids = sorted(store.load_parcels_frame(engine).parcel_id)
    before = {pid: store.stored_profile(engine, pid)["updated_at"] for pid in ids}
    with engine.begin() as c:
        c.exec_driver_sql(
            "CREATE TRIGGER refuse_t03 BEFORE UPDATE ON parcel_profiles "
            "WHEN NEW.parcel_id = 'T-03' BEGIN SELECT RAISE(ABORT, 'refused by the database'); END"
        )
    try:
        failures = update_profiles(engine, [*ids, "NO-SUCH"])
    finally:
        with engine.begin() as c:
            c.exec_driver_sql("DROP TRIGGER refuse_t03")
    assert set(failures) == {"T-03", "NO-SUCH"}
    assert "refused by the database" in failures["T-03"]
    assert failures["NO-SUCH"].startswith("KeyError")
    after = {pid: store.stored_profile(engine, pid)["updated_at"] for pid in ids}
    assert [pid for pid in ids if after[pid] == before[pid]] == ["T-03"]


# --- Sentinel-2 and Landsat on one time axis ------------------------------------------


@pytest.fixture(scope="module")
def combined_db(tmp_path_factory):
    root = tmp_path_factory.mktemp("combined")
    engine = make_engine(f"sqlite:///{root / 'agri.db'}")
    upgrade(engine)
    store.upsert_parcels(engine, read_parcel_file(SAMPLE_TILES / "parcels.geojson").parcels)
    for inbox in ("scenes", "landsat"):
        summary = run_inbox(engine, SAMPLE_TILES / inbox, root / "data")
        assert summary.ok, summary.as_json()
    return engine


def _event(engine, parcel_id):
    (event,) = store.stored_events(engine, parcel_id)
    return event


def test_landsat_dates_count_as_clear_observations_in_the_profile(combined_db):
    frost = TRUTH["frost"]["parcel_id"]
    observations = store.parcel_observations(combined_db, frost)
    landsat = {o["scene_id"] for o in observations if o["sensor"].startswith("landsat")}
    assert len(landsat) == len(TRUTH["landsat_scenes"])
    series = profiles.clean_series(observations)
    used = set(series.scene_ids) & landsat
    assert len(used) >= len(landsat) - 2  # a cloudy Landsat date may miss the parcel
    # and they fill the gaps between Sentinel-2 dates on the one time axis
    assert list(series.days) == sorted(series.days)


def test_sentinel2_and_landsat_find_the_clear_cut_and_frost_at_least_as_well(
    sample_db, combined_db
):
    s2_only, _ = sample_db
    cut, frost = TRUTH["clear_cut"], TRUTH["frost"]
    alone, both = _event(s2_only, cut["parcel_id"]), _event(combined_db, cut["parcel_id"])
    assert both["confirmed_at"] <= alone["confirmed_at"]
    assert both["affected_ha"] == pytest.approx(cut["affected_ha"], rel=0.15)
    alone, both = _event(s2_only, frost["parcel_id"]), _event(combined_db, frost["parcel_id"])
    start, recovered = date.fromisoformat(frost["start"]), date.fromisoformat(frost["recovered"])
    assert start <= both["start"].date() <= alone["start"].date()
    assert both["confirmed_at"] <= alone["confirmed_at"]
    assert both["state"] == "closed" and both["end"].date() <= recovered + timedelta(days=60)
    damaged = {cut["parcel_id"], frost["parcel_id"]}
    assert {e["parcel_id"] for e in store.stored_events(combined_db)} == damaged


def test_pixel_stack_reads_the_same_ground_from_cogs_of_different_extents(tmp_path):
    """Each scene's NDVI COG holds the blocks read for that day's parcels, so COGs of one
    grid differ in extent: the stack must line their pixels up (and refuse another lattice)."""
    import shapely
    from affine import Affine
    from pyproj import CRS, Transformer
    from shapely.geometry import box

    from remote_sensing.imagery.cog import write_cog
    from remote_sensing.parcel_pixels import parcel_pixel_stack

    crs = CRS.from_epsg(32650)
    origin = Affine(10, 0, 618_000, 0, -10, 2_775_000)
    ndvi = np.random.default_rng(3).uniform(0.2, 0.9, (60, 60)).astype("float32")
    whole, part, shifted = tmp_path / "whole.tif", tmp_path / "part.tif", tmp_path / "shift.tif"
    write_cog(whole, ndvi, crs, origin, float("nan"))
    write_cog(part, ndvi[20:, 25:], crs, origin * Affine.translation(25, 20), float("nan"))
    write_cog(shifted, ndvi, crs, origin * Affine.translation(0.5, 0), float("nan"))
    x, y = origin * (30, 30)
    square = box(x, y - 150, x + 150, y)  # 15 x 15 pixels inside both extents
    to_wgs84 = Transformer.from_crs(32650, 4326, always_xy=True).transform
    stack, coverage, pixel_area = parcel_pixel_stack(
        [whole, part, shifted], shapely.transform(square, to_wgs84, interleaved=False)
    )
    seen = coverage > 0.99
    assert seen.sum() >= 13 * 13 and pixel_area == pytest.approx(100.0)
    np.testing.assert_array_equal(stack[0][seen], stack[1][seen])
    assert np.isnan(stack[2]).all()
    # a parcel partly beyond a COG's extent reads NaN there, the rest as it is
    x, y = origin * (20, 15)
    edge = shapely.transform(box(x, y - 100, x + 100, y), to_wgs84, interleaved=False)
    stack, coverage, _ = parcel_pixel_stack([whole, part], edge)
    inside_whole = np.isfinite(stack[0])
    assert inside_whole.sum() > 50 and np.isnan(stack[1]).sum() > 0
    both = np.isfinite(stack[1])
    np.testing.assert_array_equal(stack[0][both], stack[1][both])


def test_median_is_numpys_median_without_numpy_ma():
    """profiles.median stands in for np.median (whose NaN check imports numpy.ma): the
    same number for odd and even counts, one value, integers, and NaN among them."""
    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 4, 7, 10, 1001):
        values = rng.normal(0.6, 0.2, n)
        assert profiles.median(values) == float(np.median(values))
        assert profiles.median(list(values)) == float(np.median(values))
    assert profiles.median(np.array([3, 1, 2, 10])) == 2.5
    assert np.isnan(profiles.median([np.nan, 0.4, 0.5, 0.6]))  # statistics.median: 0.45
