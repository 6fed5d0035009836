"""A parcel's profile as a state that each new clear date advances (pure): the season
table a year is judged on, each clear date's judgement (``DateRow``) and the state that
carries the detector's walk from one date to the next. ``analyse`` takes a whole series
through it; ``profile_update`` stores it date by date. profiles.py holds the pieces it is
made of (the smoother, the history curve, the allowance, the peers)."""

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

from remote_sensing.profiles.disturbances import (
    PRE_EVENT_DATES,
    AreaOf,
    Detector,
    Disturbance,
    JudgedDate,
    Walk,
)
from remote_sensing.profiles.profiles import (
    MAX_ALLOWANCE,
    MIN_PEERS,
    OUTLIER_DROP,
    OUTLIER_NEIGHBOUR_DAYS,
    RECENT_CLEAR_DAYS,
    SPREAD_FLOOR,
    Baseline,
    Peer,
    Series,
    _doy,
    allowance,
    history_baseline,
    median,
    to_date,
    to_days,
)

# A year's baseline reads the parcel's clear dates of at most this many earlier years, and
# its place among peers the last PLACE_DATES of its usable dates: what one new date costs
# is bounded, whatever the length of the record (a bank keeps parcels for many years).
BASELINE_YEARS = 3
PLACE_DATES = 12
SEASON_BINS = 74  # the seasonal table's bins: 5 days of the year each (day 366 in the last)


def season_bin(day: float) -> int:
    """The seasonal table's bin of ``day`` (days since the epoch): 5 days of the year."""
    return min(int(_doy(day) - 1) // 5, SEASON_BINS - 1)


@dataclass(frozen=True)
class SeasonTable:
    """The parcel's usual NDVI by time of year for one calendar year, from its clear dates
    of the BASELINE_YEARS before it (outliers and confirmed disturbances left out): per
    5-day bin, the expected NDVI, its spread and the deepest usual dip (NaN: not enough
    history at that time of year). Computed once, on the year's first clear date."""

    year: int
    expected: tuple[float, ...]
    spread: tuple[float, ...]
    dip: tuple[float, ...]

    def at(self, day: float) -> tuple[float, float] | None:
        b = season_bin(day)
        return None if math.isnan(self.expected[b]) else (self.expected[b], self.spread[b])

    def dip_at(self, day: float) -> float | None:
        value = self.dip[season_bin(day)]
        return None if math.isnan(value) else value

    def to_bytes(self) -> bytes:
        """Expected, spread and dip as 3 x SEASON_BINS float64 (NaN kept): a table is read
        for every parcel a scene touches, and parsing 222 numbers from JSON cost more than
        the rest of a parcel's step."""
        return np.array([self.expected, self.spread, self.dip], dtype="<f8").tobytes()

    @classmethod
    def from_bytes(cls, year: int, data: bytes) -> "SeasonTable":
        values = np.frombuffer(data, dtype="<f8").reshape(3, SEASON_BINS).tolist()
        return cls(year, tuple(values[0]), tuple(values[1]), tuple(values[2]))


def season_table(
    year: int, prior: list["DateRow"], spans: list[tuple[float, float]]
) -> SeasonTable:
    """The SeasonTable of ``year`` from the parcel's earlier clear dates (``prior``, any
    order; those before the BASELINE_YEARS are ignored) less outliers and the ``spans``
    [start, end) of confirmed disturbances."""
    jan1 = to_days(datetime(year, 1, 1, tzinfo=UTC))
    first = to_days(datetime(year - BASELINE_YEARS, 1, 1, tzinfo=UTC))
    use = sorted(
        (r for r in prior if first <= r.day < jan1 and not r.outlier and not _inside(r.day, spans)),
        key=lambda r: r.seq,
    )
    nan = (float("nan"),) * SEASON_BINS
    curve = history_baseline(
        np.array([r.day for r in use]),
        np.array([r.ndvi for r in use]),
        np.array([r.weight for r in use]),
    )
    if curve is None:
        return SeasonTable(year, nan, nan, nan)
    expected, spread, dip = [], [], []
    for b in range(SEASON_BINS):
        day = jan1 + 5 * b + 2  # the bin's middle day of the year
        own = curve.at(day)
        expected.append(float("nan") if own is None else own[0])
        spread.append(float("nan") if own is None else own[1])
        usual = curve.dip_at(day)
        dip.append(float("nan") if usual is None else usual)
    return SeasonTable(year, tuple(expected), tuple(spread), tuple(dip))


def _inside(day: float, spans: list[tuple[float, float]]) -> bool:
    return any(start <= day < end for start, end in spans)


@dataclass(frozen=True)
class DateRow:
    """One clear date of a parcel with its judgement, as a profile stores it: judged once,
    when it arrives (from the season table, its peers and its place among them); only its
    outlier flag waits for the next date."""

    seq: int  # its position among the parcel's clear dates
    scene_id: str
    day: float
    ndvi: float
    weight: float  # valid fraction
    outlier: bool
    expected: float  # NaN: no baseline
    spread: float
    allowance: float
    allowance_source: str | None
    source: str | None  # "history", "peers" or None
    shared: float  # the peers' shared dip in that scene
    offset: float  # NDVI less its scene's peer median (NaN without peers)
    clear_dates: int = 0  # the parcel's clear dates up to this one (earlier outliers not)

    def judged(self) -> "JudgedDate":
        return JudgedDate(
            self.seq,
            self.day,
            self.ndvi,
            self.outlier,
            self.expected,
            self.spread,
            self.allowance,
            self.shared,
        )

    def anomaly(self) -> float:
        """Spreads outside the usual range (Baseline.anomaly for this date)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            above = (self.ndvi - self.expected) / np.float64(self.spread)
            beyond = (self.ndvi - (self.expected - self.allowance)) / np.float64(self.spread)
        return float(above if above >= 0 else min(beyond, 0.0))


@dataclass
class ProfileState:
    """A parcel's profile as a state that each new clear date advances: the dates it still
    reads (the last two, the detector's run and an open event's first weeks), the season
    table of the current year, the detector's walk and the offsets that place the parcel
    among its peers. ``add`` costs the same with one year of history as with ten: nothing
    in it reads the whole record (the season table is made once a year, from the
    BASELINE_YEARS before it)."""

    kind: str
    area_ha: float | None
    rows: dict[int, DateRow] = field(default_factory=dict)  # seq -> row (a window)
    count: int = 0  # clear dates taken so far (the next one's seq)
    settled: int = 0  # dates whose outlier flag is final (all but the newest)
    walk: Walk = field(default_factory=Walk)  # after the settled dates
    offsets: list[float] = field(default_factory=list)  # the last PLACE_DATES usable
    table: SeasonTable | None = None
    clear_dates: int = 0  # settled dates that are no outliers
    # [scene id, day] of the settled clear dates (no outliers) of the last
    # RECENT_CLEAR_DAYS before the newest settled one, and the one before them
    recent_clear: list[list] = field(default_factory=list)
    judged: dict[int, JudgedDate] = field(default_factory=dict, repr=False)  # of ``rows``

    def put(self, row: DateRow) -> None:
        self.rows[row.seq] = row
        self.judged[row.seq] = row.judged()

    def add(
        self,
        scene_id: str,
        day: float,
        ndvi: float,
        weight: float,
        peer: Peer | None,
        area_of: AreaOf | None = None,
        tables: dict[int, SeasonTable] | None = None,
    ) -> DateRow:
        """Take the next clear date (later than every date taken): settle the previous
        newest (its outlier flag, the detector's step), judge this one. A season table the
        caller has (``tables``, by year) is used, else it is made from ``rows``."""
        self._settle(day, ndvi, area_of)
        year = to_date(day).year
        if self.table is None or self.table.year != year:
            known = (tables or {}).get(year)
            self.table = known or season_table(year, list(self.rows.values()), self.spans())
        row = self._judge(scene_id, day, ndvi, weight, peer)
        self.put(row)
        self.count += 1
        return row

    def _settle(self, day: float, ndvi: float, area_of: AreaOf | None) -> None:
        """The newest date gets its final outlier flag now that the next is known, and the
        detector takes it."""
        if self.settled == self.count:
            return
        i = self.count - 1
        row = self.rows[i]
        if i >= 1:
            before = self.rows[i - 1]
            near = day - before.day <= 2 * OUTLIER_NEIGHBOUR_DAYS
            low = min(before.ndvi, ndvi) - row.ndvi
            if near and low > OUTLIER_DROP and abs(before.ndvi - ndvi) < low / 2:
                row = replace(row, outlier=True)
                self.put(row)
        detector = self.detector(area_of)
        detector.step(i)
        self.settled = self.count
        if not row.outlier and math.isfinite(row.offset) and self.walk.current is None:
            self.offsets = [*self.offsets, row.offset][-PLACE_DATES:]
        if not row.outlier:
            self.clear_dates += 1
            recent = [*self.recent_clear, [row.scene_id, row.day]]
            inside = [r for r in recent if r[1] > row.day - RECENT_CLEAR_DAYS]
            self.recent_clear = recent[-len(inside) - 1 :]

    def _judge(
        self, scene_id: str, day: float, ndvi: float, weight: float, peer: Peer | None
    ) -> DateRow:
        with_peers = peer is not None and peer.count >= MIN_PEERS
        expected, spread, source = float("nan"), float("nan"), None
        own = self.table.at(day) if self.table is not None else None
        if own is not None:
            (expected, spread), source = own, "history"
        elif with_peers:
            place = median(self.offsets) if len(self.offsets) >= MIN_PEERS else 0.0
            expected = peer.median + place
            spread = max(SPREAD_FLOOR, peer.spread)
            source = "peers"
        own_dip = self.table.dip_at(day) if self.table is not None else None
        usual, usual_source = allowance(own_dip, peer, self.kind, day)
        return DateRow(
            self.count,
            scene_id,
            day,
            ndvi,
            weight,
            False,
            float(expected),
            float(spread),
            float(usual),
            usual_source,
            source,
            float(min(peer.dip, MAX_ALLOWANCE)) if with_peers else 0.0,
            float(ndvi - peer.median) if with_peers else float("nan"),
            self.clear_dates + 1,
        )

    def detector(self, area_of: AreaOf | None = None, walk: Walk | None = None) -> Detector:
        return Detector(self.judged, area_of, self.area_ha, self.walk if walk is None else walk)

    def spans(self) -> list[tuple[float, float]]:
        """[start, end) of the confirmed disturbances so far (end: infinity while open)."""
        return [
            (e.days["start"], e.days.get("end", math.inf))
            for e in self.walk.events
            if e.confirmed_index is not None
        ]

    def events(self, area_of: AreaOf | None = None) -> list[Disturbance]:
        """The disturbances as of the newest date (which is taken as no outlier: nothing
        after it says so)."""
        detector = self.detector(area_of, self.walk.copy())
        if self.settled < self.count:
            detector.step(self.count - 1)
        return detector.finish()

    def window(self) -> int:
        """The first date position the next ``add`` may read: the two newest, the walk's
        references and the PRE_EVENT_DATES (and an outlier or two) before them."""
        refs = [self.count - 2, *self.walk.refers_to()]
        if self.walk.previous is not None:
            refs.append(self.walk.previous)
        return max(0, min(refs) - 2 * PRE_EVENT_DATES)

    def forget(self) -> None:
        """Drop the rows outside ``window`` (kept in the database, not in the state)."""
        first = self.window()
        self.rows = {seq: row for seq, row in self.rows.items() if seq >= first}
        self.judged = {seq: row.judged() for seq, row in self.rows.items()}

    def as_json(self) -> dict:
        """What is stored with the newest settled date, to resume from (rows apart)."""
        return {
            "walk": self.walk.as_json(),
            "offsets": list(self.offsets),
            "clear_dates": self.clear_dates,
            "recent_clear": [list(r) for r in self.recent_clear],
        }

    def resume(self, stored: dict, count: int) -> None:
        """Continue from what as_json stored with the date at position ``count - 1``."""
        self.walk = Walk.from_json(stored["walk"])
        self.offsets = list(stored["offsets"])
        self.clear_dates = stored["clear_dates"]
        self.recent_clear = [list(r) for r in stored["recent_clear"]]
        self.count = self.settled = count

    def recent(self) -> list[list]:
        """[scene id, day] of the clear dates sampling reads as of the newest date: the
        settled recent ones and the newest (which nothing after it contradicts)."""
        newest = [self.rows[self.count - 1]] if self.settled < self.count else []
        return [*self.recent_clear, *([r.scene_id, r.day] for r in newest)]


def analyse(
    series: Series,
    peers: dict[str, Peer],
    kind: str = "",
    area_of: "AreaOf | None" = None,
    parcel_ha: float | None = None,
) -> tuple[Baseline, list[Disturbance]]:
    """Baseline and disturbances (confirmed or not) of a whole series: each clear date
    taken in turn by a ProfileState, as the imagery job takes them scene by scene.

    The baseline of year Y comes from the parcel's clear observations of the
    BASELINE_YEARS before Y (its own history), leaving out outliers and dates inside
    disturbances found so far, so a clear-cut does not become next year's normal. Dates
    with no history at that time of year fall back to ``peers``: scene_id -> Peer, the
    parcels of the same kind seen clear in that scene. ``area_of`` measures where pixels
    fell (see detect_disturbances). The outlier flags are the series' own.
    """
    state = ProfileState(kind, parcel_ha)
    for i in range(len(series.days)):
        state.add(
            series.scene_ids[i],
            float(series.days[i]),
            float(series.ndvi[i]),
            float(series.weights[i]),
            peers.get(series.scene_ids[i]),
            area_of,
        )
        if series.outlier[i]:  # the series knows its flags already
            state.put(replace(state.rows[i], outlier=True))
    events = state.events(area_of)
    rows = [state.rows[i] for i in range(len(series.days))]
    baseline = Baseline(
        np.array([r.expected for r in rows], dtype=float),
        np.array([r.spread for r in rows], dtype=float),
        tuple(r.source for r in rows),
        np.array([r.allowance for r in rows], dtype=float),
        tuple(r.allowance_source for r in rows),
        np.array([r.shared for r in rows], dtype=float),
    )
    return baseline, events
