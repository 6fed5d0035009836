"""Crop profiles: the NDVI story of one parcel, as pure functions on its observations.

Days are plain floats (days since 1970-01-01, UTC), NDVI is unitless in [-1, 1]. Nothing
here reads files or databases; ``profile_update.py`` does the I/O around these functions.

The steps, in the order a profile is built:
1. ``clean_series``: keep observations that saw enough of the parcel (valid fraction >=
   0.6 by default), weight them by valid fraction, and drop a single-date drop that both
   neighbours contradict (residual cloud or haze); a drop the next date confirms is kept.
2. ``whittaker``: smooth onto a regular 5-day grid.
3. ``seasons`` and ``dips``: seasonal metrics and the plucking/pruning dips of tea.
4. ``analyse``: for every observation, the NDVI expected at that time of year from
   the parcel's own earlier years, or from its peers in the same scene while it has less
   than a year of history.
   Then ``detect_disturbances``: drops below that baseline confirmed by two clear dates.
5. ``health_index`` and ``affected_area_ha``.
"""

import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
from scipy.linalg import solve_banded

MIN_VALID_FRACTION = 0.6
GRID_STEP_DAYS = 5.0
# Whittaker smoothing weight on a 5-day grid; the smoother's reach is about lambda^(1/4)
# grid steps, i.e. ~16 days: short enough to keep tea's plucking dips, long enough to
# bridge single cloudy dates.
WHITTAKER_LAMBDA = 100.0
OUTLIER_DROP = 0.1  # a single-date drop of this much that both neighbours contradict
OUTLIER_NEIGHBOUR_DAYS = 60.0
BASELINE_WINDOW_DAYS = 15.0  # same time of year = within +/- 15 days of day-of-year
SPREAD_FLOOR = 0.03  # smallest NDVI spread a baseline may claim
MIN_PEERS = 3
OPEN_SIGMA, OPEN_MIN_DROP = 3.0, 0.1  # below baseline by more than both: a suspect date
CLOSE_SIGMA, CLOSE_MIN_DROP = 2.0, 0.05  # back within both: a recovered date
CONFIRM_DATES = 2  # clear dates needed to open or to close an event
PIXEL_DROP = 0.15  # a pixel is affected when it fell this far below its own pre-event level
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_days(when: datetime) -> float:
    return (when - EPOCH).total_seconds() / 86400.0


def to_date(days: float) -> date:
    return (EPOCH + timedelta(days=float(days))).date()


@dataclass(frozen=True)
class Series:
    """Clear observations of one parcel in time order."""

    days: np.ndarray  # float, days since epoch
    ndvi: np.ndarray  # float
    weights: np.ndarray  # valid fraction, (0, 1]
    scene_ids: tuple[str, ...]
    outlier: np.ndarray  # bool: contradicted single-date drop, excluded from fits


def clean_series(
    observations: list[dict], min_valid_fraction: float = MIN_VALID_FRACTION
) -> Series:
    """Clear observations with quality weights and residual-cloud outliers flagged.

    ``observations`` are dicts as stored (acquired_at, ndvi_mean, valid_fraction, scene_id).
    """
    kept = [
        o
        for o in sorted(observations, key=lambda o: o["acquired_at"])
        if o["ndvi_mean"] is not None
        and np.isfinite(o["ndvi_mean"])
        and o["valid_fraction"] >= min_valid_fraction
    ]
    days = np.array([to_days(o["acquired_at"]) for o in kept], dtype=float)
    ndvi = np.array([o["ndvi_mean"] for o in kept], dtype=float)
    weights = np.array([o["valid_fraction"] for o in kept], dtype=float)
    outlier = np.zeros(len(kept), dtype=bool)
    for i in range(1, len(kept) - 1):
        if days[i + 1] - days[i - 1] > 2 * OUTLIER_NEIGHBOUR_DAYS:
            continue
        before, after = ndvi[i - 1], ndvi[i + 1]
        drop = min(before, after) - ndvi[i]
        if drop > OUTLIER_DROP and abs(before - after) < drop / 2:
            outlier[i] = True
    return Series(days, ndvi, weights, tuple(o["scene_id"] for o in kept), outlier)


def whittaker(
    days: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    lam: float = WHITTAKER_LAMBDA,
    step: float = GRID_STEP_DAYS,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Whittaker smoother (second differences) onto a regular grid of ``step`` days.

    Chosen over Savitzky-Golay because it takes the observation weights directly and
    treats a gap as "no data" rather than as a shorter window: across a long cloudy
    season it interpolates smoothly instead of breaking down when a window holds too
    few points. Each observation goes to its nearest grid day (weighted mean if several).
    Returns (grid_days, smoothed); empty arrays when there is nothing to smooth.
    """
    if len(days) == 0:
        return np.zeros(0), np.zeros(0)
    start = np.floor(days.min() / step) * step
    n = int(np.ceil((days.max() - start) / step)) + 1
    grid = start + step * np.arange(n)
    node = np.clip(np.rint((days - start) / step).astype(int), 0, n - 1)
    w = np.bincount(node, weights, minlength=n)
    wy = np.bincount(node, weights * values, minlength=n)
    if n < 3:
        with np.errstate(invalid="ignore"):
            return grid, np.full(n, wy.sum() / w.sum())
    return grid, solve_banded((2, 2), _whittaker_bands(w, lam), wy, check_finite=False)


def _whittaker_bands(w: np.ndarray, lam: float) -> np.ndarray:
    """diag(w) + lam * D'D (D: second differences) in solve_banded's layout. The system is
    pentadiagonal: a banded solve is ~10x faster than building a sparse matrix, which
    mattered once every scene re-smooths thousands of parcels."""
    n = len(w)
    second = np.array([1.0, -2.0, 1.0])
    main, upper1, upper2 = np.zeros(n), np.zeros(n - 1), np.zeros(n - 2)
    for a in range(3):  # each row of D adds its outer product with itself
        main[a : a + n - 2] += second[a] ** 2
    for a in range(2):
        upper1[a : a + n - 2] += second[a] * second[a + 1]
    upper2 += second[0] * second[2]
    bands = np.zeros((5, n))
    bands[0, 2:] = bands[4, :-2] = lam * upper2
    bands[1, 1:] = bands[3, :-1] = lam * upper1
    bands[2] = w + lam * main
    return bands


def seasons(grid: np.ndarray, smoothed: np.ndarray) -> list[dict]:
    """Per calendar year: start, peak and end of season, peak NDVI, amplitude, integral.

    Start/end are where the smoothed curve crosses half its amplitude (above the year's
    minimum) before/after the peak; the integral is the area above the year's minimum
    between them, in NDVI-days. Years with less than 180 days of curve are skipped.
    """
    out = []
    years = np.array([to_date(d).year for d in grid])
    for year in sorted(set(years.tolist())):
        sel = np.flatnonzero(years == year)
        if len(sel) * GRID_STEP_DAYS < 180:
            continue
        z = smoothed[sel]
        peak = int(np.argmax(z))
        low = float(z.min())
        amplitude = float(z[peak] - low)
        half = low + amplitude / 2
        start = peak
        while start > 0 and z[start - 1] >= half:
            start -= 1
        end = peak
        while end < len(z) - 1 and z[end + 1] >= half:
            end += 1
        integral = float(np.sum(z[start : end + 1] - low) * GRID_STEP_DAYS)
        out.append(
            {
                "year": year,
                "start": to_date(grid[sel[start]]).isoformat(),
                "peak": to_date(grid[sel[peak]]).isoformat(),
                "end": to_date(grid[sel[end]]).isoformat(),
                "peak_ndvi": round(float(z[peak]), 4),
                "amplitude": round(amplitude, 4),
                "integral": round(integral, 2),
            }
        )
    return out


def dips(
    series: Series, grid: np.ndarray, smoothed: np.ndarray, min_depth: float = 0.015
) -> list[dict]:
    """Clear dates that sit below both neighbours and ``min_depth`` below the smoothed curve.

    For tea these are the plucking (spring, summer, autumn) and pruning (winter) dips.
    They are read from the observations rather than the curve: a dip recovers within a few
    weeks, so with a sparse clear-sky record it is often one date that the smoother (by
    design) flattens. Depth is the distance below the curve.
    """
    use = np.flatnonzero(~series.outlier)
    if len(use) < 3 or len(grid) == 0:
        return []
    days, ndvi = series.days[use], series.ndvi[use]
    expected = np.interp(days, grid, smoothed)
    out = []
    for i in range(1, len(use) - 1):
        depth = expected[i] - ndvi[i]
        if depth >= min_depth and ndvi[i] < ndvi[i - 1] and ndvi[i] < ndvi[i + 1]:
            out.append({"date": to_date(days[i]).isoformat(), "depth": round(float(depth), 4)})
    return out


@dataclass(frozen=True)
class Baseline:
    """Expected NDVI and its spread at each observation of a Series (NaN: no baseline)."""

    expected: np.ndarray
    spread: np.ndarray
    source: tuple[str | None, ...]  # "history", "peers" or None


def history_baseline(
    prior_days: np.ndarray, prior_ndvi: np.ndarray, prior_weights: np.ndarray
) -> "HistoryCurve | None":
    """The smoothed curve of earlier years' observations, or None with too few of them."""
    if len(prior_days) < 4:
        return None
    grid, smooth = whittaker(prior_days, prior_ndvi, prior_weights)
    residuals = prior_ndvi - np.interp(prior_days, grid, smooth)
    scatter = 1.4826 * float(np.median(np.abs(residuals - np.median(residuals))))
    return HistoryCurve(grid, smooth, scatter)


@dataclass(frozen=True)
class HistoryCurve:
    grid: np.ndarray
    smoothed: np.ndarray
    scatter: float  # robust scatter of the observations around the curve

    def at(self, day: float) -> tuple[float, float] | None:
        """Expected NDVI and spread at ``day``: the median of the curve at the same time of
        year (+/- 15 days) over the earlier years; the spread is the largest of the
        observations' scatter, the spread between years, and SPREAD_FLOOR."""
        distance = np.abs(_doy_array(self.grid) - _doy(day))
        near = np.minimum(distance, 365.25 - distance) <= BASELINE_WINDOW_DAYS
        if not near.any():
            return None
        years = np.array([to_date(g).year for g in self.grid[near]])
        values = self.smoothed[near]
        per_year = [float(np.median(values[years == y])) for y in sorted(set(years.tolist()))]
        between = float(np.std(per_year)) if len(per_year) > 1 else 0.0
        return float(np.median(per_year)), max(SPREAD_FLOOR, self.scatter, between)


def analyse(
    series: Series, peers: dict[str, tuple[float, float, int]]
) -> tuple[Baseline, list["Disturbance"]]:
    """Baseline and disturbances, built year by year.

    The baseline of year Y comes from the parcel's clear observations before Y (its own
    history), leaving out outliers and dates inside disturbances found so far, so a
    clear-cut does not become next year's normal. Dates with no history at that time of
    year fall back to ``peers``: scene_id -> (median NDVI, spread, count) of the parcels of
    the same kind seen clear in that scene.
    """
    n = len(series.days)
    expected, spread = np.full(n, np.nan), np.full(n, np.nan)
    source: list[str | None] = [None] * n
    years = np.array([to_date(d).year for d in series.days], dtype=int)
    excluded = series.outlier.copy()
    events: list[Disturbance] = []
    for year in sorted(set(years.tolist())):
        jan1 = to_days(datetime(year, 1, 1, tzinfo=UTC))
        prior = ~excluded & (series.days < jan1)
        curve = history_baseline(series.days[prior], series.ndvi[prior], series.weights[prior])
        for i in np.flatnonzero(years == year):
            own = curve.at(series.days[i]) if curve is not None else None
            peer = peers.get(series.scene_ids[i])
            if own is not None:
                (expected[i], spread[i]), source[i] = own, "history"
            elif peer is not None and peer[2] >= MIN_PEERS:
                expected[i], spread[i] = peer[0], max(SPREAD_FLOOR, peer[1])
                source[i] = "peers"
        events = detect_disturbances(series, Baseline(expected, spread, tuple(source)))
        for event in events:
            last = event.end_index if event.end_index is not None else n
            excluded[event.start_index : last] = True
    return Baseline(expected, spread, tuple(source)), events


@dataclass
class Disturbance:
    """A drop below baseline confirmed by CONFIRM_DATES clear dates; closed by recovery."""

    start_index: int
    confirmed_index: int
    end_index: int | None = None  # first recovered date, once recovery is confirmed
    severity: float = 0.0  # largest relative drop below baseline, 0..1
    event_indices: list[int] = field(default_factory=list)  # dates below baseline

    @property
    def state(self) -> str:
        return "open" if self.end_index is None else "closed"


def detect_disturbances(series: Series, baseline: Baseline) -> list[Disturbance]:
    """Walk the clear dates; open on CONFIRM_DATES suspect dates, close on as many recovered.

    A suspect date is more than max(3 spreads, 0.1) below baseline, a recovered one
    within max(2 spreads, 0.05): the gap between the two keeps one noisy date from
    flapping an event. Outliers and dates without a baseline are not judged. Normal
    plucking and pruning dips are in the baseline (history, or peers that dip together),
    so they do not open events.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        drop = baseline.expected - series.ndvi
        relative = np.clip(drop / baseline.expected, 0.0, 1.0)
    events: list[Disturbance] = []
    current: Disturbance | None = None
    run: list[int] = []
    for i in range(len(series.days)):
        if series.outlier[i] or not np.isfinite(baseline.expected[i]):
            continue
        suspect = drop[i] > max(OPEN_SIGMA * baseline.spread[i], OPEN_MIN_DROP)
        recovered = drop[i] < max(CLOSE_SIGMA * baseline.spread[i], CLOSE_MIN_DROP)
        if current is None:
            run = [*run, i] if suspect else []
            if len(run) == CONFIRM_DATES:
                current = Disturbance(run[0], i, event_indices=run)
                current.severity = float(relative[run].max())
                events.append(current)
                run = []
            continue
        if suspect:
            current.event_indices.append(i)
            current.severity = max(current.severity, float(relative[i]))
        run = [*run, i] if recovered else []
        if len(run) == CONFIRM_DATES:
            current.end_index = run[0]
            current, run = None, []
    return events


def health_index(z: float | None) -> float | None:
    """Health in [0, 1] from the latest anomaly z-score: 1 - max(0, -z) / 4, clipped.

    At or above the parcel's usual NDVI for the time of year the index is 1; it falls
    linearly to 0 at four spreads below. Above-normal greenness is not rewarded (a value
    above 1 would let a lush season inflate collateral).
    """
    if z is None or not np.isfinite(z):
        return None
    return float(np.clip(1.0 - max(0.0, -z) / 4.0, 0.0, 1.0))


def affected_area_ha(
    pre: np.ndarray,
    post: np.ndarray,
    coverage: np.ndarray,
    pixel_area_m2: float,
    min_drop: float = PIXEL_DROP,
) -> float:
    """Hectares of the parcel whose pixels fell more than ``min_drop`` below their own
    pre-event NDVI. Arrays are per covered pixel (same order); NaN pixels do not count."""
    with np.errstate(invalid="ignore"):
        hit = (pre - post) > min_drop
    return float(np.sum(coverage[hit]) * pixel_area_m2 / 10_000)


def pixel_levels(stack: np.ndarray) -> np.ndarray:
    """Per-pixel level across dates (rows: dates): the median of the finite values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN pixel stays NaN
        return np.nanmedian(stack, axis=0)


def first_finite(stack: np.ndarray) -> np.ndarray:
    """Per pixel, the first finite value down the rows (NaN where none is)."""
    out = np.full(stack.shape[1:], np.nan)
    for row in stack:
        fill = np.isnan(out) & np.isfinite(row)
        out[fill] = row[fill]
    return out


def _doy(days: float) -> float:
    return float(to_date(days).timetuple().tm_yday)


def _doy_array(days: np.ndarray) -> np.ndarray:
    return np.array([_doy(d) for d in days])
