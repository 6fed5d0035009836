"""Crop profiles: the NDVI story of one parcel, as pure functions on its observations.

Days are plain floats (days since 1970-01-01, UTC), NDVI is unitless in [-1, 1]. Nothing
here reads files or databases; ``profile_update.py`` does the I/O around these functions.

The steps, in the order a profile is built:
1. ``clean_series``: keep observations that saw enough of the parcel (valid fraction >=
   0.6 by default), weight them by valid fraction, and drop a single-date drop that both
   neighbours within 20 days contradict (residual cloud or haze); a drop the next date
   confirms is kept, and with wider gaps a lone low date is judged, not dropped.
2. ``whittaker``: smooth onto a regular 5-day grid.
3. ``seasons`` and ``dips``: seasonal metrics and the plucking/pruning dips of tea.
4. ``analyse``: for every observation, the NDVI expected at that time of year from
   the parcel's own earlier years, or from its peers in the same scene while it has less
   than a year of history, and the *allowance*: how far below that a normal date may
   fall at that time of year (tea's plucking and pruning dips, a hazy scene), from the
   parcel's own earlier dips, its peers dipping together, or the work calendar.
   Then ``disturbances.detect_disturbances``: drops confirmed by clear dates whose weight falls with
   the gap between them, and only where the parcel's own pixels fell beyond the usual
   dip (a place); what sparse dates leave undecided is returned unconfirmed.
5. ``health_index``, ``sampling`` (how many clear dates back it) and ``affected_area_ha``.
"""

import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

import numpy as np

MIN_VALID_FRACTION = 0.6
GRID_STEP_DAYS = 5.0
# Whittaker smoothing weight on a 5-day grid; the smoother's reach is about lambda^(1/4)
# grid steps, i.e. ~16 days: short enough to keep tea's plucking dips, long enough to
# bridge single cloudy dates.
WHITTAKER_LAMBDA = 100.0
OUTLIER_DROP = 0.1  # a single-date drop of this much that both neighbours contradict
# ...but only with both neighbours this close: with wider gaps a lone low date may be a
# short event, so it is judged (and reported unconfirmed if nothing confirms it).
OUTLIER_NEIGHBOUR_DAYS = 20.0
BASELINE_WINDOW_DAYS = 15.0  # same time of year = within +/- 15 days of day-of-year
SPREAD_FLOOR = 0.03  # smallest NDVI spread a baseline may claim
MIN_PEERS = 3
ALLOWANCE_WINDOW_DAYS = 20.0  # earlier years' dips within +/- this many days of the date
MIN_OWN_DATES = 2  # earlier-year clear dates in that window before history speaks for itself
MAX_ALLOWANCE = 0.15  # no usual dip is deeper: beyond this it is damage whatever the source
PEER_LAMBDA = 2000.0  # peers' seasonal course: stiff (~45 days) so their joint dips stand out
SAMPLING_WINDOW_DAYS = 60.0  # "how sure": clear dates and the largest gap over this window
# a profile's state keeps its clear dates this far back (and one before), so sampling over
# a policy's window up to this long reads the state, not the record
RECENT_CLEAR_DAYS = 180.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def median(values: np.ndarray | list[float]) -> float:
    """np.median's number (NaN if any value is NaN) for the few values of a parcel's dates
    or a scene's peers, by the standard library: NumPy's median checks for NaN through
    numpy.ma, whose import was 0.08 s of a township scene's profile step, and costs 40 us
    a call on a handful of values (1,750 calls in that step)."""
    array = np.asarray(values, dtype=np.float64)
    if np.isnan(array).any():
        return float("nan")
    return float(statistics.median(array.tolist()))


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
    # imported on first use: 0.12-0.16 s of imports (SciPy's array-API layer) that a
    # parcel's first observations (fewer than three grid days) never need
    from scipy.linalg import solve_banded

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
class WorkSeason:
    """A time of year when routine work lowers a kind's NDVI for a few weeks."""

    name: str
    first: tuple[int, int]  # (month, day), inclusive
    last: tuple[int, int]  # (month, day), inclusive; before ``first`` means it wraps the year
    depth: float  # NDVI a clear date may sit below the usual level then

    def covers(self, day: date) -> bool:
        at = (day.month, day.day)
        if self.first <= self.last:
            return self.first <= at <= self.last
        return at >= self.first or at <= self.last


# The default work calendar, used at a time of year the parcel's own history has not seen
# often enough. Tea in Anxi, Fujian: spring flush plucked March-May (the main harvest,
# Tieguanyin's spring tea), summer tea June-July, autumn tea September-October, pruning
# after the last harvest, November-February, with slow winter regrowth. The windows are
# the local practice; the depths are our assumption of a routine dip at 10 m (plucking
# takes the young shoots, pruning the top of the canopy), to be replaced by calibration.
# Forests have no routine work that dips NDVI in a season.
WORK_CALENDARS: dict[str, tuple[WorkSeason, ...]] = {
    "tea_garden": (
        WorkSeason("spring flush plucking", (3, 1), (5, 31), 0.10),
        WorkSeason("summer plucking", (6, 1), (7, 31), 0.08),
        WorkSeason("autumn plucking", (9, 1), (10, 31), 0.08),
        WorkSeason("pruning", (11, 1), (2, 29), 0.12),
    ),
    "forest": (),
}


def calendar_depth(kind: str, day: float) -> float:
    """The default calendar's routine dip for ``kind`` on ``day`` (0 outside its seasons)."""
    when = to_date(day)
    return max((s.depth for s in WORK_CALENDARS.get(kind, ()) if s.covers(when)), default=0.0)


class Peer(NamedTuple):
    """The parcels of one kind seen clear in one scene."""

    median: float
    spread: float  # robust (1.4826 MAD)
    count: int
    day: float
    dip: float = 0.0  # how far the median sits below the peers' own seasonal course


PEER_WINDOW_DAYS = 365.0  # a scene's shared dip is read against the peers' course this far back
# ...and this many usable scenes after it: until they have come, the dip is provisional and
# the scene is left out of the course it is compared with (a smoother follows the last
# points, there is nothing after them: a hazy or plucked latest scene is the one a health
# index reads). Once they have, it is final: a scene's dip never depends on what came
# later than that, so what one new scene changes is bounded.
PEER_EDGE = 3


def peer_table(rows: list[tuple[str, str, datetime, float]]) -> dict[str, dict[str, Peer]]:
    """kind -> scene_id -> Peer, from (kind, scene_id, acquired_at, ndvi_mean) of clear
    observations: each scene's peers (scene_peer) with its shared dip (with_dips)."""
    groups: dict[tuple[str, str], list[float]] = {}
    when: dict[str, float] = {}
    for kind, scene_id, acquired_at, ndvi in rows:
        groups.setdefault((kind, scene_id), []).append(ndvi)
        when[scene_id] = to_days(acquired_at)
    out: dict[str, dict[str, Peer]] = {}
    for (kind, scene_id), values in groups.items():
        out.setdefault(kind, {})[scene_id] = scene_peer(values, when[scene_id])
    for scenes in out.values():
        order = sorted(scenes, key=lambda sid: (scenes[sid].day, sid))
        dipped = with_dips([scenes[sid] for sid in order], 0)
        scenes.update(zip(order, dipped, strict=True))
    return out


def scene_peer(values: list[float], day: float) -> Peer:
    """The parcels of one kind seen clear in one scene (their mean NDVIs): median, robust
    spread and count; the dip comes from with_dips."""
    arr = np.asarray(values, dtype=float)
    middle = median(arr)
    return Peer(middle, 1.4826 * median(np.abs(arr - middle)), len(arr), day)


def with_dips(scenes: list[Peer], first: int) -> list[Peer]:
    """``scenes`` (one kind's, in time order) with the shared dips of those from position
    ``first`` on: how far each median sits below the peers' seasonal course, a stiff
    smooth of the medians of the usable scenes of the PEER_WINDOW_DAYS before it and the
    PEER_EDGE after it. When most gardens were plucked just before a scene (or it is
    hazy), a garden that dips with them is not damaged."""
    out = list(scenes)
    usable = [k for k, p in enumerate(scenes) if p.count >= MIN_PEERS]
    for n, k in enumerate(usable):
        if k < first:
            continue
        later = usable[n + 1 : n + 1 + PEER_EDGE]
        fit = [j for j in usable[:n] if scenes[j].day >= scenes[k].day - PEER_WINDOW_DAYS] + [
            k,
            *later,
        ]
        days = np.array([scenes[j].day for j in fit])
        medians = np.array([scenes[j].median for j in fit])
        weights = np.ones(len(fit))
        if len(later) < PEER_EDGE:  # provisional: compared with the course without it
            weights[fit.index(k)] = 0.0
        dip = _peer_dip(days, medians, weights, scenes[k])
        out[k] = scenes[k]._replace(dip=dip)
    return out


def _peer_dip(days: np.ndarray, medians: np.ndarray, weights: np.ndarray, peer: Peer) -> float:
    """max(0, the course at the scene's day less its median); 0 when the weighted scenes
    hold fewer than three grid days (no course to speak of)."""
    start = np.floor(days.min() / GRID_STEP_DAYS) * GRID_STEP_DAYS
    nodes = np.rint((days - start) / GRID_STEP_DAYS)[weights > 0]
    if len(set(nodes.tolist())) < 3:
        return 0.0
    grid, course = whittaker(days, medians, weights, lam=PEER_LAMBDA)
    return float(max(0.0, np.interp(peer.day, grid, course) - peer.median))


@dataclass(frozen=True)
class Baseline:
    """Expected NDVI, its spread and the usual dip below it at each observation of a
    Series (NaN expected: no baseline)."""

    expected: np.ndarray
    spread: np.ndarray
    source: tuple[str | None, ...]  # "history", "peers" or None
    allowance: np.ndarray | None = None  # NDVI a normal date may sit below expected
    allowance_source: tuple[str | None, ...] = ()  # "history", "peers", "calendar"
    shared: np.ndarray | None = None  # the peers' shared dip in that scene (haze, work)

    def allowed(self) -> np.ndarray:
        return np.zeros(len(self.expected)) if self.allowance is None else self.allowance

    def scene_level(self) -> np.ndarray:
        """Expected less the shared dip of each scene: where every pixel of every garden
        should be that day (a hazy scene lowers them all)."""
        return self.expected - (
            np.zeros(len(self.expected)) if self.shared is None else self.shared
        )

    def anomaly(self, ndvi: np.ndarray) -> np.ndarray:
        """Spreads outside the usual range: above expected positive, within the allowance
        below it 0, beyond the allowance negative. Health and events read this."""
        with np.errstate(invalid="ignore", divide="ignore"):
            above = (ndvi - self.expected) / self.spread
            beyond = (ndvi - (self.expected - self.allowed())) / self.spread
        return np.where(above >= 0, above, np.minimum(beyond, 0.0))


def history_baseline(
    prior_days: np.ndarray, prior_ndvi: np.ndarray, prior_weights: np.ndarray
) -> "HistoryCurve | None":
    """The smoothed curve of earlier years' observations, or None with too few of them."""
    if len(prior_days) < 4:
        return None
    grid, smooth = whittaker(prior_days, prior_ndvi, prior_weights)
    residuals = prior_ndvi - np.interp(prior_days, grid, smooth)
    scatter = 1.4826 * median(np.abs(residuals - median(residuals)))
    return HistoryCurve(grid, smooth, scatter, prior_days, np.maximum(0.0, -residuals))


@dataclass(frozen=True)
class HistoryCurve:
    grid: np.ndarray
    smoothed: np.ndarray
    scatter: float  # robust scatter of the observations around the curve
    days: np.ndarray  # the earlier clear dates
    below: np.ndarray  # how far each sat below the curve (0 when above): its dips

    def at(self, day: float) -> tuple[float, float] | None:
        """Expected NDVI and spread at ``day``: the median of the curve at the same time of
        year (+/- 15 days) over the earlier years; the spread is the largest of the
        observations' scatter, the spread between years, and SPREAD_FLOOR."""
        near = _same_time_of_year(self.grid, day, BASELINE_WINDOW_DAYS)
        if not near.any():
            return None
        years = _years(self.grid[near])
        values = self.smoothed[near]
        per_year = [median(values[years == y]) for y in sorted(set(years.tolist()))]
        between = float(np.std(per_year)) if len(per_year) > 1 else 0.0
        return median(per_year), max(SPREAD_FLOOR, self.scatter, between)

    def dip_at(self, day: float) -> float | None:
        """The deepest the parcel's own clear dates fell below its curve at this time of
        year (+/- ALLOWANCE_WINDOW_DAYS) in earlier years; None while they are fewer than
        MIN_OWN_DATES. Read from dates, not the curve: a dip one year caught on one date
        and the next on two is still a dip."""
        near = _same_time_of_year(self.days, day, ALLOWANCE_WINDOW_DAYS)
        if near.sum() < MIN_OWN_DATES:
            return None
        return float(self.below[near].max())


def allowance(own: float | None, peer: Peer | None, kind: str, day: float) -> tuple[float, str]:
    """The usual dip on ``day`` and where it comes from: the deepest of the parcel's own
    earlier dips at this time of year, the peers' shared dip on that scene and the default
    work calendar; never beyond MAX_ALLOWANCE. The calendar stays a floor even with
    history: on a sparse record earlier years' clear dates often missed the dip."""
    candidates = [(calendar_depth(kind, day), "calendar")]
    if own is not None:
        candidates.append((own, "history"))
    if peer is not None and peer.count >= MIN_PEERS:
        candidates.append((peer.dip, "peers"))
    depth, source = max(candidates, key=lambda c: c[0])
    return min(depth, MAX_ALLOWANCE), source


def sampling(days: np.ndarray, as_of: float, window: float = SAMPLING_WINDOW_DAYS) -> dict:
    """How well clear dates back a figure at ``as_of``: the clear dates in the last
    ``window`` days and the largest gap without one, counting from the last clear date
    before the window and up to ``as_of`` (None when the parcel was never seen clear)."""
    seen = np.sort(days[days <= as_of])
    inside = seen[seen > as_of - window]
    before = seen[seen <= as_of - window][-1:]
    points = np.concatenate([before, inside, [as_of]])
    gap = float(np.diff(points).max()) if len(points) > 1 else None
    return {
        "window_days": int(window),
        "clear_dates": int(len(inside)),
        "largest_gap_days": None if gap is None else round(gap, 1),
    }


def health_index(z: float | None) -> float | None:
    """Health in [0, 1] from the latest anomaly z-score: 1 - max(0, -z) / 4, clipped.

    At or above the parcel's usual NDVI for the time of year the index is 1; it falls
    linearly to 0 at four spreads below. Above-normal greenness is not rewarded (a value
    above 1 would let a lush season inflate collateral).
    """
    if z is None or not np.isfinite(z):
        return None
    return float(np.clip(1.0 - max(0.0, -z) / 4.0, 0.0, 1.0))


def _years(days: np.ndarray) -> np.ndarray:
    """Calendar year of each day since the epoch, vectorised."""
    dates = (np.asarray(days, dtype=float) * 86400.0).astype("datetime64[s]")
    return dates.astype("M8[Y]").astype(int) + 1970


def _doy(days: float) -> float:
    return float(to_date(days).timetuple().tm_yday)


def _doy_array(days: np.ndarray) -> np.ndarray:
    """Day of year (1-based) of each day since the epoch, vectorised: the baseline asks
    it of every earlier date for every date judged."""
    dates = (np.asarray(days, dtype=float) * 86400.0).astype("datetime64[s]").astype("M8[D]")
    return (dates - dates.astype("M8[Y]")).astype(int).astype(float) + 1.0


def _same_time_of_year(days: np.ndarray, day: float, within: float) -> np.ndarray:
    distance = np.abs(_doy_array(days) - _doy(day))
    return np.minimum(distance, 365.25 - distance) <= within
