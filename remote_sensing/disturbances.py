"""Disturbances in a parcel's NDVI: low runs of clear dates confirmed by evidence that
weighs each date by the gap before it, with a place where the parcel's own pixels fell.

Pure functions on a profile's Series and Baseline (profiles.py builds them and calls
``detect_disturbances`` year by year); the pixels are read by profile_update.PixelEvidence,
handed in as ``area_of``.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from remote_sensing.profiles import Baseline, Series

OPEN_SIGMA, OPEN_MIN_DROP = 3.0, 0.1  # below baseline by more than both: a suspect date
CLOSE_SIGMA, CLOSE_MIN_DROP = 2.0, 0.05  # back within both: a recovered date
# Evidence to open or close an event: each clear date counts 1, a date more than
# CONFIRM_GAP_DAYS after the previous one counts CONFIRM_GAP_DAYS / gap (two dates 40 days
# apart say less than two 5 days apart: a short dip can hide between them).
CONFIRM_EVIDENCE = 2.0
CONFIRM_GAP_DAYS = 30.0
# A low run that ends unconfirmed is a short dip when a normal date followed within this
# many days; after a longer gap nobody can tell, so it is reported ("not enough clear dates").
SHORT_DIP_DAYS = 15.0
PIXEL_DROP = 0.15  # a pixel is affected when it fell this far below its own pre-event level
# An event needs a place: at least this area of pixels that fell (and this share of the
# parcel, but never more than half of it). A parcel-wide mild decline lowers health only.
MIN_AFFECTED_HA, MIN_AFFECTED_SHARE = 0.2, 0.05
# An event's extent is read on its low dates within this many days of its start: later,
# regrowth and the rest of the parcel's own seasonal work blur what fell.
EXTENT_DAYS = 60.0
LOCAL_SHARE = 0.8  # an event over at most this share of the parcel is local (a cleared part)

# (clear dates before the event, its low dates deepest first, drop) -> hectares whose own
# pixels fell from their level on the first dates to the first low date that saw them by
# more than the drop; None when it cannot be measured (no NDVI files): the event then
# opens, of unknown extent.
AreaOf = Callable[[list[int], list[int], float], "float | None"]
PRE_EVENT_DATES = 3  # clear dates before an event that define each pixel's own level


def min_affected_ha(parcel_ha: float) -> float:
    """The smallest area of fallen pixels that makes a disturbance on a parcel this big."""
    return min(max(MIN_AFFECTED_HA, MIN_AFFECTED_SHARE * parcel_ha), 0.5 * parcel_ha)


@dataclass
class Disturbance:
    """A run of low clear dates: confirmed when their evidence reached CONFIRM_EVIDENCE
    and pixels fell over enough ground; closed by as much evidence of recovery. An
    unconfirmed run is kept when it may hide damage: it is still open at the last date
    (``pending``) or the next clear date came too late to tell (``unconfirmed``)."""

    start_index: int
    confirmed_index: int | None
    end_index: int | None = None  # first recovered date, once recovery is confirmed
    severity: float = 0.0  # largest relative drop below baseline, 0..1
    event_indices: list[int] = field(default_factory=list)  # dates below baseline
    previous_index: int | None = None  # the last judged clear date before the run
    next_index: int | None = None  # unconfirmed: the clear date after the run
    affected_ha: float | None = None  # at the last check
    pixel_drop: float = PIXEL_DROP  # what made a pixel count as fallen for this event

    @property
    def state(self) -> str:
        if self.confirmed_index is None:
            return "pending" if self.next_index is None else "unconfirmed"
        return "open" if self.end_index is None else "closed"


def evidence(days: np.ndarray, indices: list[int]) -> float:
    """What consecutive clear dates say together: the first counts 1, each next one
    min(1, CONFIRM_GAP_DAYS / days since the previous one)."""
    gaps = np.diff(days[indices])
    return 1.0 + float(np.sum(np.minimum(1.0, CONFIRM_GAP_DAYS / np.maximum(gaps, 1e-9))))


def detect_disturbances(
    series: "Series",
    baseline: "Baseline",
    area_of: AreaOf | None = None,
    parcel_ha: float | None = None,
) -> list[Disturbance]:
    """Walk the clear dates; open on enough evidence of low dates with a place, close on
    as much evidence of recovery.

    A low date is more than max(3 spreads, 0.1) below expected. Evidence weighs each date
    by the gap before it (``evidence``). Before an event opens, ``area_of`` must find at
    least ``min_affected_ha(parcel_ha)`` of the parcel's own pixels that fell. How far a
    pixel must have fallen depends on the parcel as a whole: when at the run's deepest
    date its mean is outside the usual range (expected less the allowance, by the measure
    that decides recovery), PIXEL_DROP (a frost browns the whole garden); otherwise the
    usual dip is no evidence, so PIXEL_DROP beyond it (a cleared half stands out of a
    plucked garden; a plucked or pruned garden, uniformly a little lower, does not). A
    drop with no place lowers health only. A recovered date is back within max(2 spreads,
    0.05) of the usual range (of expected, for a local event): the gap between the two
    thresholds keeps one noisy date from flapping an event. Outliers and dates without a
    baseline are not judged.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        drop = baseline.expected - series.ndvi
        relative = np.clip(drop / baseline.expected, 0.0, 1.0)
    allowed = baseline.allowed()
    beyond = drop - allowed
    days = series.days
    min_area_ha = 0.0 if parcel_ha is None else min_affected_ha(parcel_ha)
    events: list[Disturbance] = []
    current: Disturbance | None = None
    run: list[int] = []
    previous: int | None = None  # the last judged date before ``run``

    def measure(run: list[int], pixel_drop: float) -> float | None:
        """Fallen area, net of the change the baseline expects between the dates compared
        (months apart on a sparse record, the season alone moves every pixel; a hazy
        scene lowers them all)."""
        before = [j for j in range(run[0]) if not series.outlier[j]][-PRE_EVENT_DATES:]
        if area_of is None or not before:
            return None
        # furthest below expected first: a pixel under cloud on the deepest is read on the next
        deepest = sorted(run, key=lambda j: -drop[j])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # no baseline before: no change
            level = baseline.scene_level()
            seasonal = float(np.nanmedian(level[before]) - level[deepest[0]])
        return area_of(before, deepest, pixel_drop + (seasonal if np.isfinite(seasonal) else 0.0))

    def placed(run: list[int]) -> tuple[bool, float | None, float]:
        deepest = max(run, key=lambda j: beyond[j])
        # outside the usual range by the measure that decides recovery: the whole parcel is
        whole = beyond[deepest] > max(CLOSE_SIGMA * baseline.spread[deepest], CLOSE_MIN_DROP)
        pixel_drop = PIXEL_DROP if whole else PIXEL_DROP + float(allowed[run].max())
        area = measure(run, pixel_drop)
        return area is None or area >= min_area_ha, area, pixel_drop

    for i in range(len(days)):
        if series.outlier[i] or not np.isfinite(baseline.expected[i]):
            continue
        suspect = drop[i] > max(OPEN_SIGMA * baseline.spread[i], OPEN_MIN_DROP)
        # a local event (a cleared half) recovers when the parcel is back at expected: the
        # usual dip of the rest of the garden says nothing about the cleared part
        local = current is not None and _local(current, parcel_ha)
        recovered = (drop[i] if local else beyond[i]) < max(
            CLOSE_SIGMA * baseline.spread[i], CLOSE_MIN_DROP
        )
        if current is None:
            if suspect:
                run.append(i)
                if evidence(days, run) >= CONFIRM_EVIDENCE:
                    ok, area, pixel_drop = placed(run)
                    if ok:
                        current = Disturbance(run[0], i, event_indices=run, affected_ha=area)
                        current.previous_index, current.pixel_drop = previous, pixel_drop
                        current.severity = float(relative[run].max())
                        events.append(current)
                        run, previous = [], i
                continue
            if run and days[i] - days[run[-1]] > SHORT_DIP_DAYS:
                events.extend(_unconfirmed(run, previous, i, relative, placed(run)))
            run, previous = [], i
            continue
        if suspect:
            current.event_indices.append(i)
            current.severity = max(current.severity, float(relative[i]))
        run = [*run, i] if recovered else []
        if run and evidence(days, run) >= CONFIRM_EVIDENCE:
            current.end_index = run[0]
            current, run = None, []
        previous = i
    if current is None and run:
        events.extend(_unconfirmed(run, previous, None, relative, placed(run)))
    for event in events:  # the extent of each event over its first weeks' low dates
        if event.confirmed_index is not None:
            first = [
                j for j in event.event_indices if days[j] - days[event.start_index] <= EXTENT_DAYS
            ]
            event.affected_ha = measure(first, event.pixel_drop)
    return events


def _local(event: Disturbance, parcel_ha: float | None) -> bool:
    """Whether an event holds part of the parcel only (LOCAL_SHARE or less of it fell)."""
    if event.pixel_drop > PIXEL_DROP:
        return True
    return (
        None not in (event.affected_ha, parcel_ha) and event.affected_ha <= LOCAL_SHARE * parcel_ha
    )


def _unconfirmed(
    run: list[int],
    previous: int | None,
    next_index: int | None,
    relative: np.ndarray,
    placed: tuple[bool, float | None, float],
) -> list[Disturbance]:
    """The run as an unconfirmed event, when it had a place (else nothing to report)."""
    ok, area, pixel_drop = placed
    if not ok:
        return []
    event = Disturbance(run[0], None, event_indices=list(run), previous_index=previous)
    event.next_index, event.affected_ha, event.pixel_drop = next_index, area, pixel_drop
    event.severity = float(relative[run].max())
    return [event]


def affected_area_ha(
    pre: np.ndarray,
    post: np.ndarray,
    coverage: np.ndarray,
    pixel_area_m2: float,
    min_drop: float = PIXEL_DROP,
) -> float:
    """Hectares of the parcel whose pixels fell more than ``min_drop`` below their own
    pre-event NDVI. Arrays are per covered pixel (same order); NaN pixels (never seen) do
    not count: the area is what was seen to fall."""
    with np.errstate(invalid="ignore"):
        hit = (pre - post) > min_drop
    return float(np.sum(coverage[hit]) * pixel_area_m2 / 10_000)


def first_finite(stack: np.ndarray) -> np.ndarray:
    """Per pixel, the first finite value down the rows (NaN where none is)."""
    out = np.full(stack.shape[1:], np.nan)
    for row in stack:
        fill = np.isnan(out) & np.isfinite(row)
        out[fill] = row[fill]
    return out


def pixel_levels(stack: np.ndarray) -> np.ndarray:
    """Per-pixel level across dates (rows: dates): the median of the finite values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN pixel stays NaN
        return np.nanmedian(stack, axis=0)
