"""Disturbances in a parcel's NDVI: low runs of clear dates confirmed by evidence that
weighs each date by the gap before it, with a place where the parcel's own pixels fell.

Pure functions on a profile's Series and Baseline (profiles.py builds them and calls
``detect_disturbances`` year by year); the pixels are read by profile_update.PixelEvidence,
handed in as ``area_of``.
"""

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from remote_sensing.profiles.profiles import Baseline, Series

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
    (``pending``) or the next clear date came too late to tell (``unconfirmed``).

    Indices are positions among the parcel's clear dates (``JudgedDate.seq``); the days
    of the ones an account names are kept beside them (``days``), so a stored event reads
    without the dates it points at."""

    start_index: int
    confirmed_index: int | None
    end_index: int | None = None  # first recovered date, once recovery is confirmed
    severity: float = 0.0  # largest relative drop below baseline, 0..1
    # dates below baseline: all of an unconfirmed run; of a confirmed event those within
    # EXTENT_DAYS of its start (its extent is read on them); ``low_dates`` counts them all
    event_indices: list[int] = field(default_factory=list)
    previous_index: int | None = None  # the last judged clear date before the run
    next_index: int | None = None  # unconfirmed: the clear date after the run
    affected_ha: float | None = None  # at the last check
    pixel_drop: float = PIXEL_DROP  # what made a pixel count as fallen for this event
    low_dates: int = 0
    extent_ha: float | None = None  # affected_ha over its first weeks, once they are past
    extent_final: bool = False
    days: dict[str, float] = field(default_factory=dict)  # start, confirmed, end, ... -> day

    @property
    def state(self) -> str:
        if self.confirmed_index is None:
            return "pending" if self.next_index is None else "unconfirmed"
        return "open" if self.end_index is None else "closed"

    def as_json(self) -> dict:
        """The event as a profile's stored walk holds it (JSON values only)."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__}
        return {**out, "event_indices": list(self.event_indices), "days": dict(self.days)}

    @classmethod
    def from_json(cls, data: dict) -> "Disturbance":
        return cls(
            **{**data, "event_indices": list(data["event_indices"]), "days": dict(data["days"])}
        )


@dataclass(frozen=True)
class JudgedDate:
    """One clear date of a parcel as the detector reads it: its NDVI against the baseline
    of its time of year. ``seq`` is its position among the parcel's clear dates."""

    seq: int
    day: float
    ndvi: float
    outlier: bool
    expected: float  # NaN: no baseline, not judged
    spread: float
    allowance: float  # the usual dip then
    shared: float  # the peers' shared dip in that scene

    @property
    def drop(self) -> float:
        return self.expected - self.ndvi

    @property
    def relative(self) -> float:
        """The drop as a share of expected, 0..1 (0 without a baseline)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            value = float(np.clip(np.float64(self.drop) / self.expected, 0.0, 1.0))
        return value if np.isfinite(value) else 0.0

    @property
    def beyond(self) -> float:
        return self.drop - self.allowance

    @property
    def level(self) -> float:
        """Where every pixel of every garden should be that day (a hazy scene lowers all)."""
        return self.expected - self.shared


@dataclass
class Walk:
    """The detector between two dates: all it needs to take the next one. Stored with a
    parcel's profile, so a new date continues the walk instead of starting it again."""

    events: list[Disturbance] = field(default_factory=list)
    current: int | None = None  # index in ``events`` of the confirmed event still open
    run: list[int] = field(default_factory=list)  # low (or, in an event, recovered) dates
    previous: int | None = None  # the last judged date before ``run``

    def as_json(self) -> dict:
        return {
            "events": [e.as_json() for e in self.events],
            "current": self.current,
            "run": list(self.run),
            "previous": self.previous,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Walk":
        events = [Disturbance.from_json(e) for e in data["events"]]
        return cls(events, data["current"], list(data["run"]), data["previous"])

    def copy(self) -> "Walk":
        events = [
            replace(e, event_indices=list(e.event_indices), days=dict(e.days)) for e in self.events
        ]
        return Walk(events, self.current, list(self.run), self.previous)

    def forget_suspected(self, day: float) -> None:
        """Drop the unconfirmed runs whose last low date is more than SUSPECTED_KEEP_DAYS
        before ``day``: a profile reports them for a year, and its state does not grow
        with every dip a cloudy record could neither confirm nor rule out."""
        kept = [
            e
            for e in self.events
            if e.confirmed_index is not None
            or e.days.get("last_low", day) >= day - SUSPECTED_KEEP_DAYS
        ]
        if len(kept) == len(self.events):
            return
        current = None if self.current is None else self.events[self.current]
        self.events = kept
        self.current = None if current is None else kept.index(current)

    def refers_to(self) -> list[int]:
        """The date positions the walk reads again when it takes the next dates: its run,
        and the first weeks' dates of events whose extent is not final."""
        refs = list(self.run)
        for event in self.events:
            if event.confirmed_index is not None and not event.extent_final:
                refs += event.event_indices
        return refs


# An unconfirmed run stays in a profile this long after its last low date.
SUSPECTED_KEEP_DAYS = 365.0
# At most this many of a run's deepest dates are read to find where its pixels fell: a
# long mild decline with no place would otherwise read more files at every new date.
MEASURE_DATES = 8


class Detector:
    """The walk of detect_disturbances one date at a time, resumable from a stored Walk.
    ``dates``: position -> JudgedDate, holding at least the dates the walk refers to, the
    PRE_EVENT_DATES before its run and the dates it takes."""

    def __init__(
        self,
        dates: Mapping[int, JudgedDate],
        area_of: AreaOf | None = None,
        parcel_ha: float | None = None,
        walk: Walk | None = None,
    ):
        self.dates, self.area_of, self.parcel_ha = dates, area_of, parcel_ha
        self.walk = Walk() if walk is None else walk
        self.min_area_ha = 0.0 if parcel_ha is None else min_affected_ha(parcel_ha)

    def _evidence(self, run: list[int]) -> float:
        return evidence(np.array([self.dates[j].day for j in run]), list(range(len(run))))

    def _before(self, first: int) -> list[int]:
        """The PRE_EVENT_DATES clear dates (outliers left out) before position ``first``."""
        out: list[int] = []
        j = first - 1
        while j >= 0 and len(out) < PRE_EVENT_DATES and j in self.dates:
            if not self.dates[j].outlier:
                out.append(j)
            j -= 1
        return out[::-1]

    def _measure(self, run: list[int], pixel_drop: float) -> float | None:
        """Fallen area, net of the change the baseline expects between the dates compared
        (months apart on a sparse record, the season alone moves every pixel; a hazy
        scene lowers them all)."""
        before = self._before(run[0])
        if self.area_of is None or not before:
            return None
        # furthest below expected first: a pixel under cloud on the deepest is read on the next
        deepest = sorted(run, key=lambda j: -self.dates[j].drop)[:MEASURE_DATES]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # no baseline before: no change
            levels = np.array([self.dates[j].level for j in before])
            seasonal = float(np.nanmedian(levels) - self.dates[deepest[0]].level)
        return self.area_of(
            before, deepest, pixel_drop + (seasonal if np.isfinite(seasonal) else 0.0)
        )

    def _placed(self, run: list[int]) -> tuple[bool, float | None, float]:
        deepest = self.dates[max(run, key=lambda j: self.dates[j].beyond)]
        # outside the usual range by the measure that decides recovery: the whole parcel is
        whole = deepest.beyond > max(CLOSE_SIGMA * deepest.spread, CLOSE_MIN_DROP)
        usual = max(self.dates[j].allowance for j in run)
        pixel_drop = PIXEL_DROP if whole else PIXEL_DROP + float(usual)
        area = self._measure(run, pixel_drop)
        return area is None or area >= self.min_area_ha, area, pixel_drop

    def _mark(self, event: Disturbance, name: str, index: int | None) -> None:
        if index is not None:
            event.days[name] = self.dates[index].day

    def step(self, i: int) -> None:
        """Take date ``i``, whose outlier flag is settled (the next date is known, or it is
        the last and the walk is finished next)."""
        date, walk = self.dates[i], self.walk
        self._fix_extents(date.day)
        walk.forget_suspected(date.day)
        if date.outlier or not np.isfinite(date.expected):
            return
        suspect = date.drop > max(OPEN_SIGMA * date.spread, OPEN_MIN_DROP)
        current = None if walk.current is None else walk.events[walk.current]
        # a local event (a cleared half) recovers when the parcel is back at expected: the
        # usual dip of the rest of the garden says nothing about the cleared part
        local = current is not None and _local(current, self.parcel_ha)
        recovered = (date.drop if local else date.beyond) < max(
            CLOSE_SIGMA * date.spread, CLOSE_MIN_DROP
        )
        if current is None:
            if suspect:
                walk.run.append(i)
                if self._evidence(walk.run) >= CONFIRM_EVIDENCE:
                    self._confirm(walk, i)
                return
            if walk.run and date.day - self.dates[walk.run[-1]].day > SHORT_DIP_DAYS:
                walk.events.extend(self._unconfirmed(walk.run, walk.previous, i))
            walk.run, walk.previous = [], i
            return
        if suspect:
            current.low_dates += 1
            if date.day - current.days["start"] <= EXTENT_DAYS:
                current.event_indices.append(i)
            current.severity = max(current.severity, date.relative)
        walk.run = [*walk.run, i] if recovered else []
        if walk.run and self._evidence(walk.run) >= CONFIRM_EVIDENCE:
            current.end_index = walk.run[0]
            self._mark(current, "end", current.end_index)
            walk.current, walk.run = None, []
        walk.previous = i

    def _confirm(self, walk: Walk, i: int) -> None:
        """The run opens an event on date ``i`` when its pixels fell somewhere."""
        ok, area, pixel_drop = self._placed(walk.run)
        if not ok:
            return
        event = Disturbance(walk.run[0], i, event_indices=list(walk.run), affected_ha=area)
        event.previous_index, event.pixel_drop = walk.previous, pixel_drop
        event.severity = max(self.dates[j].relative for j in walk.run)
        event.low_dates = len(walk.run)
        self._mark(event, "start", event.start_index)
        self._mark(event, "confirmed", i)
        self._mark(event, "previous", walk.previous)
        walk.events.append(event)
        walk.current = len(walk.events) - 1
        walk.run, walk.previous = [], i

    def finish(self) -> list[Disturbance]:
        """The events once every date is taken: a run still open is pending, and each
        confirmed event's extent is read over its first weeks' low dates. The walk is left
        as it was, for the next date to continue."""
        walk = self.walk
        events = walk.copy().events
        if walk.current is None and walk.run:
            events.extend(self._unconfirmed(walk.run, walk.previous, None))
        for event in events:
            if event.confirmed_index is not None:
                event.affected_ha = self._extent(event)
        return events

    def _extent(self, event: Disturbance) -> float | None:
        """Where pixels fell over the event's low dates of its first EXTENT_DAYS."""
        if event.extent_final:
            return event.extent_ha
        start = event.days["start"]
        first = [j for j in event.event_indices if self.dates[j].day - start <= EXTENT_DAYS]
        return self._measure(first, event.pixel_drop)

    def _fix_extents(self, day: float) -> None:
        """Events whose first weeks are past keep their extent: the dates it is read on
        are then needed no more."""
        for event in self.walk.events:
            if event.confirmed_index is None or event.extent_final:
                continue
            if day - event.days["start"] > EXTENT_DAYS:
                event.extent_ha, event.extent_final = self._extent(event), True

    def _unconfirmed(
        self, run: list[int], previous: int | None, next_index: int | None
    ) -> list[Disturbance]:
        """The run as an unconfirmed event, when it had a place (else nothing to report)."""
        ok, area, pixel_drop = self._placed(run)
        if not ok:
            return []
        event = Disturbance(run[0], None, event_indices=list(run), previous_index=previous)
        event.next_index, event.affected_ha, event.pixel_drop = next_index, area, pixel_drop
        event.severity = max(self.dates[j].relative for j in run)
        event.low_dates = len(run)
        for name, index in (("start", run[0]), ("last_low", run[-1]), ("previous", previous)):
            self._mark(event, name, index)
        self._mark(event, "next", next_index)
        return [event]


def evidence(days: np.ndarray, indices: list[int]) -> float:
    """What consecutive clear dates say together: the first counts 1, each next one
    min(1, CONFIRM_GAP_DAYS / days since the previous one)."""
    gaps = np.diff(days[indices])
    return 1.0 + float(np.sum(np.minimum(1.0, CONFIRM_GAP_DAYS / np.maximum(gaps, 1e-9))))


def judged_dates(series: "Series", baseline: "Baseline") -> dict[int, JudgedDate]:
    """Position -> JudgedDate of a whole Series and its Baseline."""
    allowed = baseline.allowed()
    shared = np.zeros(len(series.days)) if baseline.shared is None else baseline.shared
    return {
        i: JudgedDate(
            i,
            float(series.days[i]),
            float(series.ndvi[i]),
            bool(series.outlier[i]),
            float(baseline.expected[i]),
            float(baseline.spread[i]),
            float(allowed[i]),
            float(shared[i]),
        )
        for i in range(len(series.days))
    }


def detect_disturbances(
    series: "Series",
    baseline: "Baseline",
    area_of: AreaOf | None = None,
    parcel_ha: float | None = None,
) -> list[Disturbance]:
    """Walk the clear dates (a Detector over the whole series); open on enough evidence of
    low dates with a place, close on as much evidence of recovery.

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
    detector = Detector(judged_dates(series, baseline), area_of, parcel_ha)
    for i in range(len(series.days)):
        detector.step(i)
    return detector.finish()


def _local(event: Disturbance, parcel_ha: float | None) -> bool:
    """Whether an event holds part of the parcel only (LOCAL_SHARE or less of it fell)."""
    if event.pixel_drop > PIXEL_DROP:
        return True
    return (
        None not in (event.affected_ha, parcel_ha) and event.affected_ha <= LOCAL_SHARE * parcel_ha
    )


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
