"""The shape of a valuation's input snapshot: what `agri valuations verify` must be able to
read for as long as the bank keeps the loan file.

A snapshot is written once, with the valuation, by ``evidence.gather_inputs``, and read by
``valuation.value_loan`` alone. Its shape grows with the rules: a field added by a later
rules version is ``NotRequired`` here (the version that added it is named beside it), and
the rules read it with a default, so a snapshot of every earlier version keeps its figures
(tests/test_valuation_versions.py recomputes stored valuations of each one).
"""

from typing import (
    Any,
    NotRequired,  # pydantic reads these on Python 3.11
)

from pydantic import ConfigDict, TypeAdapter, with_config
from typing_extensions import TypedDict

from solar.record import PlantRecord

# A snapshot holds what its fields name and nothing else: a field no version declared is
# an error of the code that wrote it.
EXACT = with_config(ConfigDict(extra="forbid"))


@EXACT
class LoanFacts(TypedDict):
    loan_id: str
    borrower: str
    branch: str
    principal_cny: str  # decimal text
    term_months: NotRequired[int | None]  # 2026.12.5: the term and rate DSCR reads
    annual_rate: NotRequired[str | None]  # 2026.12.5
    start: NotRequired[str]  # 2026.12.5: the loan's date, where its term starts


@EXACT
class Disturbance(TypedDict):
    """An open disturbance of a parcel at as_of (remote_sensing's event, as stored)."""

    kind: str
    start: str
    severity: float
    affected_ha: float | None


@EXACT
class Sampling(TypedDict):
    """How densely the parcel was seen clear in the policy's window (since 2026.12.1)."""

    window_days: int
    clear_dates: int
    largest_gap_days: float | None  # None: no clear date in the window


@EXACT
class ParcelEvidence(TypedDict):
    """What the imagery says of a pledged parcel at as_of, and its registry facts."""

    parcel_id: str
    kind: str  # tea_garden | forest
    owner: str | None
    attributes: dict[str, Any]
    area_ha: float
    centroid: list[float]  # lon, lat
    county: str | None
    health_index: float | None
    anomaly_z: float | None
    latest_clear_at: str | None
    latest_clear_scene: str | None
    clear_images: int
    scenes_used: list[tuple[str, str]]  # (scene id, date) of the clear images used
    open_disturbances: list[dict[str, Any]]
    sampling: NotRequired[Sampling | None]  # 2026.12.1
    suspected: NotRequired[list[dict[str, Any]]]  # 2026.12.1


@EXACT
class AnimalEvidence(TypedDict):
    tag_id: str
    category: str
    parity: int | None
    lactation: int | None
    last_seen: str | None
    weight_kg: float | None
    weight_at: str | None
    reason: str | None  # why it is not counted; None: verified
    reason_coded: NotRequired[dict[str, Any] | None]  # 2026.12.3: the reason, coded


@EXACT
class HerdEvidence(TypedDict):
    farm_id: str
    categories: list[str] | None
    tag_ids: list[str] | None
    centroid: list[float] | None
    county: str | None
    last_reading_at: str | None
    animals: list[AnimalEvidence]
    missing_tags: list[str]


@EXACT
class CarbonPledgeEvidence(TypedDict):
    """A carbon pledge with the evidence of the forest it stands on (since 2026.12.2)."""

    parcel_id: str
    basis: str  # increment | stock
    baseline_date: str | None
    market: str
    parcel: ParcelEvidence


@EXACT
class SolarPledgeEvidence(TypedDict):
    """A pledged rooftop plant with its own record at as_of (since 2026.12.5)."""

    plant_id: str
    record: PlantRecord


@EXACT
class Table(TypedDict):
    """A price, policy, carbon or solar table in force at as_of, whole (collateral.prices)."""

    kind: str
    version: str
    effective_from: str
    illustrative: bool
    notes: str | None
    rows: list[dict[str, Any]]


@EXACT
class ValuationInputs(TypedDict):
    """Everything a valuation depends on; ``value_loan(inputs)`` recomputes it."""

    code_version: str  # "agri-collateral rules X": the rules the figures were made with
    as_of: str
    loan: LoanFacts
    prices: Table
    policy: Table
    parcels: list[ParcelEvidence]
    herds: list[HerdEvidence]
    previous: dict[str, Any] | None  # the latest valuation before, summarised
    carbon: NotRequired[list[CarbonPledgeEvidence]]  # 2026.12.2
    carbon_table: NotRequired[Table | None]  # 2026.12.2
    solar: NotRequired[list[SolarPledgeEvidence]]  # 2026.12.5
    solar_table: NotRequired[Table | None]  # 2026.12.5


SNAPSHOT = TypeAdapter(ValuationInputs)


def checked(inputs: dict) -> ValuationInputs:
    """``inputs`` if it has the snapshot's shape; pydantic's ValidationError names what
    does not fit (a snapshot written by hand, or by code that broke the contract)."""
    SNAPSHOT.validate_python(inputs, strict=False)
    return inputs  # type: ignore[return-value]
