"""What each endpoint returns, as pydantic models: /openapi.json describes every response
from these, and FastAPI checks the handlers' answers against them.

Money, ratios and areas in valuations are decimal strings (exact, as computed); times are
ISO 8601 with a UTC offset. The models allow fields they do not name, so an answer never
loses a field the model has not caught up with; the schema names what clients can rely on.
"""

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from collateral.api.examples import LOAN_EXAMPLE, VALUATION_EXAMPLE

# Written back exactly as the domain writes them ("+00:00", not pydantic's "Z").
Timestamp = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str)]


# The kinds of versioned table (collateral.prices.SECTIONS; a test keeps them equal).
TableKind = Literal["prices", "policy", "carbon", "solar"]


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- service ----------------------------------------------------------------------------


class Health(Out):
    status: Literal["ok"]
    database: str = Field(description="sqlite or postgresql")


class Me(Out):
    key_id: str
    role: Literal["loan_officer", "risk_admin", "operator"]
    branch: str | None


# --- loans and valuations ---------------------------------------------------------------


class PledgedHerd(Out):
    farm_id: str
    categories: list[str] | None = None
    tag_ids: list[str] | None = None


class PledgedCarbon(Out):
    parcel_id: str
    basis: Literal["increment", "stock"]
    baseline_date: str | None = None
    market: str


class PledgedPlant(Out):
    plant_id: str


class LatestValuation(Out):
    valuation_id: str
    as_of: Timestamp
    collateral_value_cny: str
    eligible_value_cny: str
    ltv: str | None = Field(description="null when nothing is eligible")
    status: Literal["ok", "watch", "margin_call"]
    carbon_t_co2e: str = Field(
        default="0", description="the carbon the loan's carbon_sink items pledge, t CO2e"
    )
    solar_kwp: str | None = Field(default=None, description="pledged rooftop plants' nameplate")
    solar_energy_30d_kwh: str | None = Field(
        default=None, description="what the pledged plants made in the last 30 days, kWh"
    )
    solar_expected_30d_kwh: str | None = Field(
        default=None, description="what they should have made (the model, calibrated), kWh"
    )
    dscr_p50: str | None = Field(
        default=None, description="debt-service cover from the plants' first-year net fees"
    )
    dscr_p90: str | None = Field(default=None, description="the same in a P90 year")


class Loan(Out):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [LOAN_EXAMPLE]})

    loan_id: str
    borrower: str
    branch: str
    principal_cny: str
    parcel_ids: list[str]
    herds: list[PledgedHerd]
    carbon: list[PledgedCarbon] = Field(default_factory=list)
    solar: list[PledgedPlant] = Field(default_factory=list)
    term_months: int | None = None
    annual_rate: str | None = None
    state: Literal["active", "closed"]
    created_at: Timestamp
    updated_at: Timestamp
    latest_valuation: LatestValuation | None


class ValuationSummary(LatestValuation):
    created_at: Timestamp
    prices_version: str
    policy_version: str


class ValuationItem(Out):
    kind: str = Field(
        description="tea_garden, forest, carbon_sink, herd, solar_plant or solar_equipment"
    )
    ref: str = Field(description="the parcel id, the farm id of a herd, or the plant id")
    value_cny: str
    eligible_value_cny: str
    haircut: str
    confidence: str
    evidence: dict[str, Any] = Field(description="what the figure rests on, with dates")
    formula: str = Field(description="the rule written out with its numbers")


class PlantValue(Out):
    """A plant's value today on its own (no loan): the fee receivable over the scheme's
    remaining years (P50 with P90 in its evidence) and the equipment, by the solar table
    in force. A loan's valuation also bounds the years by its term."""

    plant_id: str
    as_of: Timestamp
    table_version: str
    items: list[ValuationItem]
    value_cny: str
    eligible_value_cny: str


class Valuation(Out):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [VALUATION_EXAMPLE]})

    valuation_id: str
    created_at: Timestamp
    loan_id: str
    as_of: Timestamp
    principal_cny: str
    items: list[ValuationItem]
    collateral_value_cny: str
    eligible_value_cny: str
    ltv: str | None
    status: Literal["ok", "watch", "margin_call"]
    thresholds: dict[str, str]
    formula: str
    prices_version: str
    policy_version: str
    illustrative_tables: bool
    rules_version: str
    changes: Any = Field(default=None, description="what moved since the previous valuation")
    code_version: str | None = None
    inputs: dict[str, Any] | None = Field(
        default=None, description="the full input snapshot (with ?inputs=true)"
    )


class Difference(Out):
    field: str
    stored: Any
    recomputed: Any


class Verification(Out):
    valuation_id: str
    identical: bool
    inputs_sha256_matches: bool
    code_version_stored: str
    code_version_now: str
    differences: list[Difference]


# --- price and policy tables ------------------------------------------------------------


class TableVersion(Out):
    kind: TableKind
    version: str
    effective_from: date
    illustrative: bool
    source: str
    imported_at: Timestamp


class TableRow(Out):
    section: str
    region: str
    key: str
    value: str | None = None
    band_min: str | None = None
    band_max: str | None = None


class Table(Out):
    kind: TableKind
    version: str
    effective_from: date
    illustrative: bool
    notes: str | None = None
    rows: list[TableRow]


class TablesInForce(Out):
    on: date
    prices: Table | None
    policy: Table | None
    carbon: Table | None = None


class TableImported(Out):
    kind: TableKind
    version: str
    effective_from: date
    imported: bool = Field(description="false: that version was already there (unchanged)")


# --- parcels ------------------------------------------------------------------------------


class Geometry(Out):
    type: str
    coordinates: list[Any]


class ParcelProperties(Out):
    parcel_id: str
    kind: Literal["tea_garden", "forest"]
    owner: str | None
    area_ha: float
    attributes: dict[str, Any]
    health_index: float | None
    clear_dates_60d: int | None = Field(description="clear images behind the health index")
    largest_gap_days: float | None = Field(description="longest wait for a clear image")
    disturbance: str | None
    suspected: str | None = Field(description="drops not confirmed for want of clear images")


class ParcelFeature(Out):
    type: Literal["Feature"]
    id: str
    geometry: Geometry
    properties: ParcelProperties


class ParcelCollection(Out):
    type: Literal["FeatureCollection"]
    features: list[ParcelFeature]
    numberMatched: int  # noqa: N815 (OGC API Features names)
    numberReturned: int  # noqa: N815
    next_offset: int | None


class Observation(Out):
    scene_id: str
    acquired_at: Timestamp
    ndvi_mean: float | None
    ndvi_median: float | None
    ndvi_p10: float | None
    ndvi_p90: float | None
    ndvi_std: float | None
    pixel_count: int
    valid_fraction: float
    cloud_fraction: float


class Profile(Out):
    parcel_id: str
    kind: str
    area_ha: float
    as_of: Timestamp | None
    observations: list[Observation]
    smoothed: list[dict[str, Any]] = Field(description="{date, ndvi} on a 5-day grid")
    baseline: list[dict[str, Any]] = Field(description="{date, expected, spread, z, source}")
    outliers: list[Any]
    seasons: list[dict[str, Any]]
    health_index: float | None
    anomaly_z: float | None
    sampling: dict[str, Any] | None = Field(
        description="{window_days, clear_dates, largest_gap_days}: how sure health and z are"
    )
    events: list[dict[str, Any]] = Field(
        description="disturbances: start, end, confirmed, detection_delay_days, severity, ..."
    )
    suspected: list[dict[str, Any]] = Field(
        description="drops not confirmed for want of clear dates: start, state, reason, ..."
    )


class Overlay(Out):
    parcel_id: str
    scene_id: str
    acquired_at: Timestamp
    bounds: list[list[float]] = Field(description="[[south, west], [north, east]] (WGS84)")
    image: str
    legend: str


# --- livestock ----------------------------------------------------------------------------


class FarmProperties(Out):
    farm_id: str
    name: str | None
    owner: str | None


class FarmFeature(Out):
    type: Literal["Feature"]
    id: str
    geometry: Geometry
    properties: FarmProperties


class FarmCollection(Out):
    type: Literal["FeatureCollection"]
    features: list[FarmFeature]


class Coded(Out):
    """A composed sentence's catalogue key and parameters (agri_common/locales)."""

    code: str
    params: dict[str, str]


class Unverified(Out):
    tag_id: str
    reason: str
    reason_coded: Coded | None = None


class CategoryCount(Out):
    registered: int
    verified: int
    unverified: list[Unverified]


class Headcount(Out):
    farm_id: str
    at: Timestamp
    categories: dict[str, CategoryCount]


class AnimalState(Out):
    tag_id: str
    farm_id: str
    species: str
    category: str
    sex: str | None
    birth_date: date | None
    parity: int | None
    lactation: int | None
    status: str
    status_at: Timestamp | None
    registered_at: Timestamp
    last_seen: Timestamp | None
    open_alerts: list[Any]


class TrackPoint(Out):
    observed_at: Timestamp
    lat: float | None
    lon: float | None
    gateway_id: str | None = None


class Track(Out):
    tag_id: str
    since: Timestamp
    until: Timestamp
    points: list[TrackPoint]


class AnimalOnMap(Out):
    tag_id: str
    category: str
    lat: float | None
    lon: float | None
    last_seen: Timestamp | None
    verified: bool
    reason: str | None
    reason_coded: Coded | None = None


class FarmAnimals(Out):
    farm_id: str
    at: Timestamp
    animals: list[AnimalOnMap]


class HeadcountPoint(Out):
    at: Timestamp
    verified: dict[str, int]
    registered: dict[str, int]


class HeadcountHistory(Out):
    farm_id: str
    series: list[HeadcountPoint]


class Alert(Out):
    source: Literal["livestock", "solar", "parcel", "loan"]
    kind: str
    subject: str
    opened_at: Timestamp
    closed_at: Timestamp | None
    detail: str = Field(description="in English; code and params word it in any language")
    code: str | None = Field(default=None, description="agri_common/locales catalogue key")
    params: dict[str, str] | None = None
    farm_id: str | None = None
    parcel_id: str | None = None
    loan_id: str | None = None


class Imported(Out):
    added: int
    updated: int


class AnimalsImported(Imported):
    rejected: list[Any] = Field(default_factory=list, description="bad rows with reasons")


class LoanGroup(Out):
    count: int
    loan_ids: list[str]


class AlertGroup(Out):
    count: int
    oldest_days: int = Field(description="days since the oldest of them opened")
    loan_ids: list[str]


class PledgedLand(Out):
    ha: str
    loan_ids: list[str]


class PledgedSolar(Out):
    """The rooftop plants pledged: nameplate, what they made in the last 30 days against
    what they should have, and the loans whose plants' fees would not cover a P90 year's
    debt service."""

    kwp: str
    energy_30d_kwh: str
    expected_30d_kwh: str
    loan_ids: list[str]
    dscr_p90_under_1: LoanGroup


class Portfolio(Out):
    """A branch's (or, for the risk desk, every branch's) active loans from each one's latest
    valuation; every figure lists the loans behind it."""

    branch: str | None
    as_of: str
    loans: int
    principal_cny: str
    collateral_value_cny: str
    eligible_value_cny: str
    ltv: str | None
    by_status: dict[str, LoanGroup]
    ltv_bands: dict[str, LoanGroup]
    open_alerts: dict[str, AlertGroup]
    pledged_ha: dict[str, PledgedLand]
    verified_headcount: dict[str, int]
    pledged_carbon_t_co2e: str
    pledged_solar: PledgedSolar


class CarbonAccount(Out):
    """A forest's carbon by the IPCC biomass-expansion method, every factor shown."""

    parcel_id: str
    as_of: str
    since: str | None
    species_group: str
    age_class: str
    area_ha: str
    disturbed_ha: str
    stand_volume_m3_per_ha: str
    volume_growth_m3_per_ha_yr: str
    factors: dict[str, str]
    t_co2e_per_m3: str
    growth_scale: str
    health_index: float | None
    stock_t_co2e: str
    reversed_t_co2e: str
    annual_t_co2e: str
    years: str | None
    increment_t_co2e: str | None
    table_version: str
    notes: list[str]
    formula: str
    formula_coded: list[Coded]


class ClaimReport(Out):
    """What the satellite record says of a claimed plot (English; ``words``: the request's
    language)."""

    verdict: str
    words: dict[str, Any] | None = None


class Claim(Out):
    claim_id: str
    kind: Literal["tea_garden", "forest"]
    owner: str | None
    branch: str | None
    attributes: dict[str, Any]
    crs: str
    submitted_geometry: dict[str, Any] = Field(description="as drawn, in its declared system")
    geometry: dict[str, Any] = Field(description="WGS84 GeoJSON")
    area_ha: float
    state: Literal["open", "accepted"]
    verdict: str
    report: ClaimReport
    inputs_sha256: str
    model_version: str
    parcel_id: str | None = Field(description="the parcel it became, once accepted")
    created_at: str
    updated_at: str


class Subscription(Out):
    """A subscription to notices (its secret is never sent back)."""

    id: int
    branch: str | None = Field(description="None: every branch (a risk desk)")
    label: str
    kinds: list[str]
    channel: Literal["webhook", "wecom", "dingtalk", "email"]
    target: str
    language: str | None
    active: bool
    created_at: str


class Delivery(Out):
    id: int
    subscription_id: int
    notice_key: str
    notice: dict[str, Any]
    state: Literal["pending", "delivered", "dead"]
    attempts: int
    next_attempt_at: str
    last_error: str | None
    delivered_at: str | None
    created_at: str


class ClaimSummary(Out):
    claim_id: str
    kind: Literal["tea_garden", "forest"]
    owner: str | None
    branch: str | None
    state: Literal["open", "accepted"]
    verdict: str
    area_ha: str
    parcel_id: str | None
    created_at: str


class PlantDay(Out):
    plant_id: str
    day: str
    energy_kwh: float | None = Field(description="null: the counter could not say")
    expected_kwh: float | None
    modelled_kwh: float | None
    insolation_kwh_m2: float | None
    peer_ratio: float | None = Field(description="yield over the median of plants within 10 km")
    performance_ratio: float | None
    availability: float | None
    daylight_h: float | None
    readings: int
    serial: str | None
    flags: list[str]


class PlantAlert(Out):
    farm_id: str
    subject: str = Field(description="the plant id")
    kind: str
    state: Literal["open", "closed"]
    opened_at: Timestamp
    closed_at: Timestamp | None
    detail: str
    code: str | None = None
    params: dict[str, str] | None = None
