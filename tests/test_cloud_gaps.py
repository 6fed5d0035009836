"""Crop profiles under Fujian's clouds: routine tea work and forests raise nothing at any
clear revisit; a frost and half-parcel clear-cuts are found with their area up to a
20-day revisit, and at 30 days are found or reported as not enough clear dates.

The gardens are generated (tests/support/cloudy_gardens.py): real NDVI GeoTIFFs per pass,
observations computed from the same pixels, profiles built as the imagery job builds them.
"""

from datetime import UTC, date, datetime, timedelta

import pytest

from remote_sensing.profiles import profiles
from remote_sensing.profiles.profile_update import build_profile
from tests.support import cloudy_gardens as cg

REVISITS = (5, 10, 20, 30)
SEEDS = (1, 2, 3)  # three draws of work dates, clouds and noise per revisit
# as-of dates in the pruning, spring-flush and summer-plucking seasons
AS_OF = ("2023-12-20", "2024-01-20", "2024-04-20", "2024-06-30", "2024-12-20")


@pytest.fixture(
    scope="module",
    params=[(r, s) for r in REVISITS for s in SEEDS],
    ids=lambda p: f"every-{p[0]}-days-seed-{p[1]}",
)
def garden(request, tmp_path_factory):
    revisit, seed = request.param
    out = tmp_path_factory.mktemp(f"revisit{revisit}-seed{seed}")
    sim = cg.simulate(out, revisit, seed=seed * 1000 + revisit)
    peers = profiles.peer_table(cg.peer_rows(sim, profiles.MIN_VALID_FRACTION))
    built = {
        pid: build_profile(parcel, sim.observations[pid], peers, sim.ndvi_paths)
        for pid, parcel in sim.parcels.items()
    }
    return revisit, sim, built


def _clear_days(sim, parcel_id) -> list[date]:
    return [
        o["acquired_at"].date()
        for o in sim.observations[parcel_id]
        if o["ndvi_mean"] is not None and o["valid_fraction"] >= profiles.MIN_VALID_FRACTION
    ]


def test_routine_gardens_and_forests_raise_nothing(garden):
    revisit, sim, built = garden
    for parcel_id in [*cg.ROUTINE_TEA, *cg.ROUTINE_FOREST]:
        assert built[parcel_id]["events"] == [], (revisit, parcel_id)
        assert built[parcel_id]["suspected"] == [], (revisit, parcel_id)
    # the tea work is seen (dips below the usual course) and widened the range instead
    tea = built[cg.ROUTINE_TEA[0]]
    assert {b["allowance_source"] for b in tea["baseline"]} & {"calendar", "history", "peers"}
    assert max(b["allowance"] for b in tea["baseline"]) >= 0.08


def test_health_stays_high_through_plucking_and_pruning(garden):
    revisit, sim, _ = garden
    for as_of_day in AS_OF:
        as_of = datetime.fromisoformat(f"{as_of_day}T23:59:59+00:00")
        peers = profiles.peer_table(cg.peer_rows(sim, profiles.MIN_VALID_FRACTION, as_of))
        for parcel_id in [*cg.ROUTINE_TEA, *cg.ROUTINE_FOREST]:
            profile = build_profile(
                sim.parcels[parcel_id], sim.observations[parcel_id], peers, sim.ndvi_paths, as_of
            )
            floor = 0.75 if parcel_id in cg.ROUTINE_TEA else 0.6
            assert profile["health_index"] >= floor, (revisit, as_of_day, parcel_id, profile)


def _found_or_reported(revisit, found, suspected, window: tuple[date, date]):
    """Up to 20 days the event is found; at 30 it may instead be reported as suspected
    (never neither)."""
    inside = lambda e: window[0] <= date.fromisoformat(e["start"]) <= window[1]  # noqa: E731
    events = [e for e in found if inside(e)]
    if revisit <= 20 or events:
        assert len(found) == 1 and events, (revisit, found, suspected)
        return events[0]
    (reported,) = [s for s in suspected if inside(s)]
    assert reported["state"] in ("unconfirmed", "pending")
    assert "clear dates" in reported["reason"]
    return None


def test_frost_is_found_with_its_area_and_delay(garden):
    revisit, sim, built = garden
    profile = built[cg.FROST["parcel_id"]]
    start = cg.FROST["start"]
    window = (start - timedelta(days=revisit), start + timedelta(days=cg.FROST["days"]))
    event = _found_or_reported(revisit, profile["events"], profile["suspected"], window)
    if event is None:
        return
    area = sim.parcels[cg.FROST["parcel_id"]]["area_ha"]
    if revisit <= 20:  # at 30 days a cloud on the one date at depth can hide part of it
        assert event["affected_ha"] == pytest.approx(area, rel=0.15)
    confirmed = date.fromisoformat(event["confirmed"])
    assert event["detection_delay_days"] == (confirmed - date.fromisoformat(event["start"])).days
    clear_after = [d for d in _clear_days(sim, cg.FROST["parcel_id"]) if d >= start]
    assert confirmed <= clear_after[2]  # by the third clear date after the frost
    assert event["state"] == "closed"  # and it recovered


@pytest.mark.parametrize("parcel_id", cg.CUT["parcel_ids"])
def test_half_parcel_clear_cut_is_found_with_its_area_and_delay(garden, parcel_id):
    revisit, sim, built = garden
    profile = built[parcel_id]
    cut = cg.CUT["date"]
    window = (cut - timedelta(days=revisit + 5), cut + timedelta(days=2 * revisit))
    event = _found_or_reported(revisit, profile["events"], profile["suspected"], window)
    if event is None:
        return
    if revisit <= 20:
        assert event["affected_ha"] == pytest.approx(sim.half_ha[parcel_id], rel=0.15)
    assert event["state"] == "open"  # a cleared half does not grow back in months
    assert event["last_normal"] < cut.isoformat() <= event["confirmed"]
    confirmed = date.fromisoformat(event["confirmed"])
    assert event["detection_delay_days"] == (confirmed - date.fromisoformat(event["start"])).days
    clear_after = [d for d in _clear_days(sim, parcel_id) if d >= cut]
    assert confirmed <= clear_after[2]


def test_health_carries_how_many_clear_dates_back_it(garden):
    revisit, sim, built = garden
    sampling = built[cg.ROUTINE_TEA[0]]["sampling"]
    assert sampling["window_days"] == 60
    as_of = datetime(2024, 12, 31, tzinfo=UTC)
    used = [d for d in _clear_days(sim, cg.ROUTINE_TEA[0])]
    recent = [d for d in used if (as_of.date() - d).days < 60]
    assert sampling["clear_dates"] <= len(recent)  # outliers do not count
    assert sampling["clear_dates"] >= len(recent) - 1
    assert sampling["largest_gap_days"] >= 0.75 * revisit
